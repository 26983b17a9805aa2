//! The report per client key (`report --by key`): what each key's requests
//! were, cost and used, from the `key_name` of table `requests`.

use rusqlite::Connection;
use serde::Serialize;

use super::Window;
use crate::core::numbers;

/// One key's requests in the window.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct KeyReport {
    pub key: String,
    pub requests: i64,
    pub answered: i64,
    pub errors: i64,
    pub cache_hits: i64,
    #[serde(serialize_with = "numbers::serialize_usd")]
    pub cost_usd: f64,
    /// Answered lines whose cost is unknown, left out of `cost_usd`.
    pub cost_unknown_lines: i64,
    /// What its budget was charged: `cost_usd` and the estimates kept for
    /// requests sent whose cost is not known (cut off, timed out, not
    /// priced; a hedge that lost).
    #[serde(serialize_with = "numbers::serialize_usd")]
    pub charged_usd: f64,
    /// Whether any line's cost is known ($0 included).
    #[serde(skip)]
    pub cost_known: bool,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
}

/// Every key's row, most requests first; requests without a key are left out.
pub fn load(
    conn: &Connection,
    window: &Window,
    models: &[String],
) -> rusqlite::Result<Vec<KeyReport>> {
    let mut sql = String::from(
        "SELECT key_name, count(*), sum(ok AND NOT cached), sum(NOT ok), sum(cached),
                total(cost_usd), total(prompt_tokens) FILTER (WHERE NOT cached),
                total(completion_tokens) FILTER (WHERE NOT cached),
                sum(ok AND cost_usd IS NULL), count(cost_usd),
                total(coalesce(charged_usd, cost_usd))
         FROM requests WHERE key_name IS NOT NULL AND ts >= ?",
    );
    let mut params: Vec<rusqlite::types::Value> = vec![rusqlite::types::Value::Integer(
        window.from_ms.unwrap_or(i64::MIN),
    )];
    if !models.is_empty() {
        sql.push_str(&format!(
            " AND model IN ({})",
            vec!["?"; models.len()].join(", ")
        ));
        params.extend(
            models
                .iter()
                .map(|m| rusqlite::types::Value::Text(m.clone())),
        );
    }
    sql.push_str(" GROUP BY key_name ORDER BY count(*) DESC, key_name");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(params.iter()), |r| {
        Ok(KeyReport {
            key: r.get(0)?,
            requests: r.get(1)?,
            answered: r.get::<_, Option<i64>>(2)?.unwrap_or(0),
            errors: r.get::<_, Option<i64>>(3)?.unwrap_or(0),
            cache_hits: r.get::<_, Option<i64>>(4)?.unwrap_or(0),
            cost_usd: r.get(5)?,
            prompt_tokens: r.get::<_, f64>(6)? as i64,
            completion_tokens: r.get::<_, f64>(7)? as i64,
            cost_unknown_lines: r.get::<_, Option<i64>>(8)?.unwrap_or(0),
            cost_known: r.get::<_, i64>(9)? > 0,
            charged_usd: r.get(10)?,
        })
    })?;
    rows.collect()
}

/// The rows as a table for people.
pub fn render(keys: &[KeyReport], window: &str) -> String {
    if keys.is_empty() {
        return format!("no requests with a client key {}\n", super::within(window));
    }
    let (header, rows) = cells(keys);
    super::by_table("key", window, header, rows)
}

/// The table's header and rows, for the text and the HTML report.
pub fn cells(keys: &[KeyReport]) -> ([&'static str; 7], Vec<[String; 7]>) {
    let header = [
        "key", "requests", "answered", "errors", "cached", "cost", "tokens",
    ];
    let rows = keys.iter().map(|k| {
        [
            k.key.clone(),
            k.requests.to_string(),
            k.answered.to_string(),
            k.errors.to_string(),
            k.cache_hits.to_string(),
            cost_cell(k),
            (k.prompt_tokens + k.completion_tokens).to_string(),
        ]
    });
    (header, rows.collect())
}

/// The cost, and what the budget was charged when estimates kept for
/// requests of unknown cost make that more.
fn cost_cell(k: &KeyReport) -> String {
    let cost = super::table::total_cost(k.cost_usd, k.cost_known, k.cost_unknown_lines);
    // Sums of the same costs in another order differ in the last bits.
    match k.charged_usd - k.cost_usd > 1e-9 * k.charged_usd {
        true => format!("{cost}; budget charged {}", numbers::usd(k.charged_usd)),
        false => cost,
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{all_time, request, store_of};
    use super::*;
    use crate::engine::ports::RequestRow;

    #[test]
    fn requests_are_summed_per_key() {
        let s = store_of([
            request(Some("m"), Some("a"), true, 0.5),
            request(Some("m"), Some("a"), false, 0.0),
            request(Some("m"), Some("b"), true, 1.0),
            request(Some("m"), None, true, 9.0),
        ]);
        let w = all_time();
        let keys = load(s.conn(), &w, &[]).unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(
            (keys[0].key.as_str(), keys[0].requests, keys[0].errors),
            ("a", 2, 1)
        );
        assert_eq!(keys[0].cost_usd, 0.5);
        assert_eq!(keys[1].prompt_tokens + keys[1].completion_tokens, 7);
        assert!(render(&keys, "all").contains("a "));
    }

    #[test]
    fn an_estimate_kept_by_the_budget_is_shown_as_charged() {
        let cut = RequestRow {
            cost_usd: None,
            charged_usd: Some(0.25),
            ..request(Some("m"), Some("a"), false, 0.0)
        };
        let s = store_of([request(Some("m"), Some("a"), true, 0.5), cut]);
        let keys = load(s.conn(), &all_time(), &[]).unwrap();
        assert_eq!((keys[0].cost_usd, keys[0].charged_usd), (0.5, 0.75));
        assert!(render(&keys, "all").contains("$0.50; budget charged $0.75"));
        // Charged what it cost: said once.
        let s = store_of([request(Some("m"), Some("a"), true, 0.5)]);
        let keys = load(s.conn(), &all_time(), &[]).unwrap();
        assert!(!render(&keys, "all").contains("charged"));
    }

    #[test]
    fn a_cache_hit_counts_as_a_hit_and_its_tokens_do_not() {
        let hit = RequestRow {
            cached: true,
            ..request(Some("m"), Some("a"), true, 0.0)
        };
        let s = store_of([request(Some("m"), Some("a"), true, 0.5), hit]);
        let keys = load(s.conn(), &all_time(), &[]).unwrap();
        assert_eq!((keys[0].requests, keys[0].cache_hits), (2, 1));
        // As the report's totals: tokens of answered lines only.
        assert_eq!(keys[0].prompt_tokens + keys[0].completion_tokens, 7);
    }

    #[test]
    fn an_unknown_cost_is_said_so_not_shown_as_zero() {
        let unknown = RequestRow {
            cost_usd: None,
            ..request(Some("m"), Some("a"), true, 0.0)
        };
        let s = store_of([request(Some("m"), Some("a"), true, 0.5), unknown.clone()]);
        let keys = load(s.conn(), &all_time(), &[]).unwrap();
        assert_eq!((keys[0].cost_usd, keys[0].cost_unknown_lines), (0.5, 1));
        let table = render(&keys, "all");
        assert!(table.contains("$0.50 + unknown for 1 line"), "{table}");
        // A free model's $0 is a cost known, beside the unknown one.
        let s = store_of([request(Some("m"), Some("a"), true, 0.0), unknown.clone()]);
        let keys = load(s.conn(), &all_time(), &[]).unwrap();
        let table = render(&keys, "all");
        assert!(table.contains("$0 + unknown for 1 line"), "{table}");
        let s = store_of([unknown]);
        let keys = load(s.conn(), &all_time(), &[]).unwrap();
        let table = render(&keys, "all");
        assert!(
            table.contains("unknown for 1 line") && !table.contains("$0 "),
            "{table}"
        );
        let json = serde_json::to_value(&keys[0]).unwrap();
        assert_eq!(json["cost_unknown_lines"], 1);
    }
}
