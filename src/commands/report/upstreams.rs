//! The report per upstream (`report --by upstream`): the requests each
//! upstream answered or failed, what they cost and used. A request is on
//! the upstream of the candidate that ended it: `NAME:model` on the named
//! upstream NAME, a plain model id on the default one.

use rusqlite::Connection;
use serde::Serialize;

use super::Window;
use crate::core::numbers;

/// What the default upstream is called in a report and on an output line.
pub const DEFAULT: &str = crate::upstreams::DEFAULT_NAME;

/// One upstream's requests in the window.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct UpstreamReport {
    pub upstream: String,
    pub requests: i64,
    pub answered: i64,
    pub errors: i64,
    pub cache_hits: i64,
    #[serde(serialize_with = "numbers::serialize_usd")]
    pub cost_usd: f64,
    /// Answered lines whose cost is unknown, left out of `cost_usd`.
    pub cost_unknown_lines: i64,
    /// Whether any line's cost is known ($0 included).
    #[serde(skip)]
    pub cost_known: bool,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    /// Its candidates that ended requests.
    pub models: Vec<String>,
}

/// Every upstream's row, most requests first. `names`: the named upstreams
/// of the config. A line that failed counts on the upstream of the last
/// model it tried; one that ended before any model (a bad line) is left
/// out.
pub fn load(
    conn: &Connection,
    window: &Window,
    names: &[String],
    models: &[String],
) -> rusqlite::Result<Vec<UpstreamReport>> {
    let from = window.from_ms.unwrap_or(i64::MIN);
    let mut stmt = conn.prepare(
        "SELECT model, count(*), sum(ok AND NOT cached), sum(NOT ok), sum(cached),
                total(cost_usd), total(prompt_tokens) FILTER (WHERE NOT cached),
                total(completion_tokens) FILTER (WHERE NOT cached),
                sum(ok AND cost_usd IS NULL), count(cost_usd)
         FROM requests WHERE model IS NOT NULL AND ts >= ?1 GROUP BY model",
    )?;
    // `report --model`: only the lines those models ended.
    let asked = |m: &str| models.is_empty() || models.iter().any(|x| x == m);
    let rows = stmt.query_map([from], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, Option<i64>>(2)?.unwrap_or(0),
            r.get::<_, Option<i64>>(3)?.unwrap_or(0),
            r.get::<_, Option<i64>>(4)?.unwrap_or(0),
            r.get::<_, f64>(5)?,
            r.get::<_, f64>(6)? as i64,
            r.get::<_, f64>(7)? as i64,
            r.get::<_, Option<i64>>(8)?.unwrap_or(0),
            r.get::<_, i64>(9)? > 0,
        ))
    })?;
    let mut out: Vec<UpstreamReport> = Vec::new();
    for row in rows {
        let (model, requests, answered, errors, cached, cost, prompt, completion, unknown, known) =
            row?;
        if !asked(&model) {
            continue;
        }
        let u = row_of(&mut out, upstream_of(&model, names));
        u.requests += requests;
        u.answered += answered;
        u.errors += errors;
        u.cache_hits += cached;
        u.cost_usd += cost;
        u.cost_unknown_lines += unknown;
        u.cost_known |= known;
        u.prompt_tokens += prompt;
        u.completion_tokens += completion;
        u.models.push(model);
    }
    for (model, lines) in failed_lines(conn, from)? {
        if !asked(&model) {
            continue;
        }
        let u = row_of(&mut out, upstream_of(&model, names));
        u.requests += lines;
        u.errors += lines;
        if !u.models.contains(&model) {
            u.models.push(model);
        }
    }
    for u in &mut out {
        u.models.sort();
    }
    out.sort_by(|a, b| {
        b.requests
            .cmp(&a.requests)
            .then(a.upstream.cmp(&b.upstream))
    });
    Ok(out)
}

/// How far before the window a failed line's attempts are looked for: a
/// line's attempts come before its end.
const ATTEMPTS_BEFORE_MS: i64 = 3_600_000;

/// The lines from `from` on that failed after trying a model, counted by
/// the last model each tried.
fn failed_lines(conn: &Connection, from: i64) -> rusqlite::Result<Vec<(String, i64)>> {
    let mut stmt = conn.prepare(
        "SELECT run_id, line FROM requests
         WHERE model IS NULL AND NOT ok AND attempts > 0 AND ts >= ?1",
    )?;
    let failed = stmt
        .query_map([from], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })?
        .collect::<rusqlite::Result<std::collections::HashSet<_>>>()?;
    if failed.is_empty() {
        return Ok(Vec::new());
    }
    // The attempts table has no index by line: one pass over the window's
    // attempts, keeping each failed line's last.
    let mut stmt = conn.prepare(
        "SELECT run_id, line, model FROM attempts
         WHERE ts >= ?1 AND NOT cached ORDER BY id",
    )?;
    let mut rows = stmt.query([from.saturating_sub(ATTEMPTS_BEFORE_MS)])?;
    let mut last = std::collections::HashMap::new();
    while let Some(r) = rows.next()? {
        let line = (r.get::<_, String>(0)?, r.get::<_, i64>(1)?);
        if failed.contains(&line) {
            last.insert(line, r.get::<_, String>(2)?);
        }
    }
    let mut by_model: std::collections::BTreeMap<String, i64> = Default::default();
    for model in last.into_values() {
        *by_model.entry(model).or_default() += 1;
    }
    Ok(by_model.into_iter().collect())
}

/// `name`'s row in `out`, added empty if it has none yet.
fn row_of<'a>(out: &'a mut Vec<UpstreamReport>, name: &str) -> &'a mut UpstreamReport {
    let i = match out.iter().position(|u| u.upstream == name) {
        Some(i) => i,
        None => {
            out.push(UpstreamReport {
                upstream: name.to_string(),
                requests: 0,
                answered: 0,
                errors: 0,
                cache_hits: 0,
                cost_usd: 0.0,
                cost_unknown_lines: 0,
                cost_known: false,
                prompt_tokens: 0,
                completion_tokens: 0,
                models: Vec::new(),
            });
            out.len() - 1
        }
    };
    &mut out[i]
}

/// The upstream a candidate id is on.
pub fn upstream_of<'a>(model: &str, names: &'a [String]) -> &'a str {
    match crate::upstreams::split(model, |n| names.iter().any(|k| k == n)) {
        Some((name, _)) => names.iter().find(|k| *k == name).map_or(DEFAULT, |k| k),
        None => DEFAULT,
    }
}

/// The rows as a table for people. `unrouted`: the window's lines that
/// ended before any model was tried (a bad line, a refusal), on no
/// upstream: said under the table rather than left out unsaid.
pub fn render(upstreams: &[UpstreamReport], window: &str, unrouted: i64) -> String {
    let footnote = match unrouted {
        n if n > 0 => format!(
            "\n{} on no upstream: ended before any model was tried (a bad line or a refusal)\n",
            crate::core::numbers::counted(n as u64, "line")
        ),
        _ => String::new(),
    };
    if upstreams.is_empty() {
        return format!(
            "no requests on an upstream {}\n{footnote}",
            super::within(window)
        );
    }
    let (header, rows) = cells(upstreams);
    super::by_table("upstream", window, header, rows) + &footnote
}

/// The table's header and rows, for the text and the HTML report.
pub fn cells(upstreams: &[UpstreamReport]) -> ([&'static str; 8], Vec<[String; 8]>) {
    let header = [
        "upstream", "requests", "answered", "errors", "cached", "cost", "tokens", "models",
    ];
    let rows = upstreams.iter().map(|u| {
        [
            u.upstream.clone(),
            u.requests.to_string(),
            u.answered.to_string(),
            u.errors.to_string(),
            u.cache_hits.to_string(),
            super::table::total_cost(u.cost_usd, u.cost_known, u.cost_unknown_lines),
            (u.prompt_tokens + u.completion_tokens).to_string(),
            u.models.join(", "),
        ]
    });
    (header, rows.collect())
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{all_time, request, store_of};
    use super::*;
    use crate::engine::ports::RequestRow;

    #[test]
    fn requests_are_summed_per_upstream_of_their_candidate() {
        let s = store_of([
            request(Some("local:llama3"), None, true, 0.0),
            request(Some("local:qwen"), None, false, 0.0),
            request(Some("openai/gpt-5.4"), None, true, 1.0),
            request(Some("meta/llama:free"), None, true, 0.5),
            request(Some("gone:m"), None, true, 0.25),
            request(None, None, false, 0.0),
        ]);
        let w = all_time();
        let names = vec!["local".to_string()];
        let rows = load(s.conn(), &w, &names, &[]).unwrap();
        assert_eq!(rows.len(), 2, "{rows:?}");
        // A name no longer in the config is a plain id on the default upstream.
        let d = &rows[0];
        assert_eq!(
            (d.upstream.as_str(), d.requests, d.errors),
            ("default", 3, 0)
        );
        assert_eq!(d.cost_usd, 1.75);
        assert_eq!(d.models, ["gone:m", "meta/llama:free", "openai/gpt-5.4"]);
        let l = &rows[1];
        assert_eq!(
            (l.upstream.as_str(), l.requests, l.answered, l.errors),
            ("local", 2, 1, 1)
        );
        assert_eq!(l.prompt_tokens + l.completion_tokens, 14);
        let text = render(&rows, "all time", 0);
        assert!(text.contains("local:llama3, local:qwen"), "{text}");
        assert!(!text.contains("no upstream"), "{text}");
        let text = render(&rows, "all time", 1);
        assert!(
            text.ends_with("\n1 line on no upstream: ended before any model was tried (a bad line or a refusal)\n"),
            "{text}"
        );
        let text = render(&[], "last 24h", 2);
        assert!(
            text.starts_with(
                "no requests on an upstream in the last 24h\n\n2 lines on no upstream"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_name_is_shown_with_its_hidden_characters_escaped() {
        let s = store_of([request(Some("local:\u{202e}3amall"), None, true, 0.5)]);
        let rows = load(s.conn(), &all_time(), &["local".to_string()], &[]).unwrap();
        let text = render(&rows, "all time", 0);
        assert!(text.contains("local:\\u{202e}3amall"), "{text}");
        assert!(!text.contains('\u{202e}'), "{text}");
    }

    #[test]
    fn a_cache_hit_counts_as_a_hit_and_its_tokens_do_not() {
        let hit = RequestRow {
            cached: true,
            ..request(Some("local:llama3"), None, true, 0.0)
        };
        let s = store_of([request(Some("local:llama3"), None, true, 0.5), hit]);
        let rows = load(s.conn(), &all_time(), &["local".to_string()], &[]).unwrap();
        assert_eq!((rows[0].requests, rows[0].cache_hits), (2, 1));
        assert_eq!(rows[0].prompt_tokens + rows[0].completion_tokens, 7);
    }

    #[test]
    fn models_asked_for_keep_only_their_lines() {
        let s = store_of([
            request(Some("local:llama3"), None, true, 0.5),
            request(Some("local:qwen"), None, true, 0.25),
            request(Some("m/x"), None, true, 1.0),
        ]);
        let names = ["local".to_string()];
        let rows = load(s.conn(), &all_time(), &names, &["local:qwen".to_string()]).unwrap();
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!((rows[0].requests, rows[0].cost_usd), (1, 0.25));
        assert_eq!(rows[0].models, ["local:qwen"]);
    }
}
