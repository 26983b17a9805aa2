//! Reading a report out of the store.
//!
//! One pass over each table, in one read transaction so that both see the
//! same rows even while another process writes. The sums are taken in memory
//! as the rows stream by: that reads each table once, where SQL aggregates
//! would need a second pass for the latencies (and `GROUP BY model` a sort).
//!
//! The store has indexes on `ts` (both tables) and on `(model, ts)`
//! (attempts). Reading most of a table through an index costs a b-tree
//! lookup per row, many times a plain scan, so each table's index is used
//! only when the rows asked for are a small part of it; SQLite has no
//! statistics to know this itself. A column written `+ts` is one SQLite will
//! not look up through an index.

use std::collections::HashMap;

use rusqlite::types::{Type, Value};
use rusqlite::{params_from_iter, Connection};

use super::{ratio, Latencies, ModelReport, Report, Tokens, Window};
use crate::view::data::Series;

/// At most about this many buckets in a report's time series.
pub const SERIES_BUCKETS: usize = 96;

/// Read through an index only below this share of a table's rows.
const INDEX_SHARE: f64 = 0.1;

/// A `WHERE` condition on `ts` and `model`, with its parameters.
#[derive(Debug)]
struct Filter {
    sql: String,
    params: Vec<Value>,
}

/// Which of the filter's columns SQLite may use an index for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Scan,
    Ts,
    ModelTs,
}

impl Filter {
    fn new(window: &Window, models: &[String], access: Access) -> Filter {
        let (ts, model) = match access {
            Access::Scan => ("+ts", "+model"),
            Access::Ts => ("ts", "+model"),
            Access::ModelTs => ("ts", "model"),
        };
        let mut sql = String::from("1");
        let mut params = Vec::new();
        if let Some(from) = window.from_ms {
            sql.push_str(&format!(" AND {ts} >= ?"));
            params.push(Value::Integer(from));
        }
        if !models.is_empty() {
            sql.push_str(&format!(" AND {model} IN ("));
            sql.push_str(&vec!["?"; models.len()].join(", "));
            sql.push(')');
            params.extend(models.iter().map(|m| Value::Text(m.clone())));
        }
        Filter { sql, params }
    }

    fn params(&self) -> impl rusqlite::Params + '_ {
        params_from_iter(self.params.iter())
    }
}

/// Rows of `table` matching `f`, which must be answerable from an index alone.
fn count(conn: &Connection, table: &str, f: &Filter) -> rusqlite::Result<i64> {
    conn.query_row(
        &format!("SELECT count(*) FROM {table} WHERE {}", f.sql),
        f.params(),
        |r| r.get(0),
    )
}

/// How to read `table` for `window` and `models`: through its `ts` index or
/// (attempts only) its `(model, ts)` index when they pick out few rows, else
/// by a plain scan.
fn access(
    conn: &Connection,
    table: &str,
    window: &Window,
    models: &[String],
) -> rusqlite::Result<Access> {
    let total = conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| {
        r.get::<_, i64>(0)
    })?;
    let few = |n: i64| (n as f64) < INDEX_SHARE * total as f64;
    if table == "attempts" && !models.is_empty() {
        let f = Filter::new(window, models, Access::ModelTs);
        if few(count(conn, table, &f)?) {
            return Ok(Access::ModelTs);
        }
    }
    if window.from_ms.is_some() {
        let f = Filter::new(window, &[], Access::Ts);
        if few(count(conn, table, &f)?) {
            return Ok(Access::Ts);
        }
    }
    Ok(Access::Scan)
}

/// Sums over the routed lines.
#[derive(Default)]
struct LineSums {
    requests: i64,
    answered: i64,
    errors: i64,
    cache_hits: i64,
    cost_usd: f64,
    cost_unknown: i64,
    cost_known: bool,
    prompt: i64,
    completion: i64,
    latencies: Vec<f64>,
    series: Series,
}

/// Sums over one model's attempts.
#[derive(Default)]
struct ModelSums {
    attempts: i64,
    errors: i64,
    cost_usd: f64,
    cost_unknown: i64,
    cost_known: bool,
    latencies: Vec<f64>,
}

/// The sums over the lines `f` selects.
fn line_sums(
    tx: &rusqlite::Transaction<'_>,
    f: &Filter,
    series: Series,
) -> rusqlite::Result<LineSums> {
    let mut t = LineSums {
        series,
        ..LineSums::default()
    };
    let mut stmt = tx.prepare(&format!(
        "SELECT ok, cached, latency_ms, cost_usd, prompt_tokens, completion_tokens, ts
         FROM requests WHERE {}",
        f.sql
    ))?;
    let mut rows = stmt.query(f.params())?;
    while let Some(r) = rows.next()? {
        t.requests += 1;
        let ok = r.get::<_, i64>(0)? != 0;
        let cost = r.get::<_, Option<f64>>(3)?;
        t.series.add(r.get(6)?, ok, r.get::<_, i64>(1)? != 0, cost);
        match cost {
            Some(c) => {
                t.cost_usd += c;
                t.cost_known = true;
            }
            // An answer whose cost nobody knows; a failed line has none.
            None if ok => t.cost_unknown += 1,
            None => {}
        }
        if r.get::<_, i64>(1)? != 0 {
            t.cache_hits += 1;
        } else if ok {
            t.answered += 1;
            t.prompt += r.get::<_, Option<i64>>(4)?.unwrap_or(0);
            t.completion += r.get::<_, Option<i64>>(5)?.unwrap_or(0);
            t.latencies.extend(r.get::<_, Option<f64>>(2)?);
        }
        if !ok {
            t.errors += 1;
        }
    }
    Ok(t)
}

/// The sums of each model over the attempts `f` selects, in the order met.
fn model_sums(
    tx: &rusqlite::Transaction<'_>,
    f: &Filter,
) -> rusqlite::Result<Vec<(String, ModelSums)>> {
    let mut sums: Vec<(String, ModelSums)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut stmt = tx.prepare(&format!(
        "SELECT model, ok, latency_ms, cost_usd, {}
         FROM attempts WHERE {} AND cached = 0",
        crate::store::MODEL_ERROR_SQL,
        f.sql
    ))?;
    let mut rows = stmt.query(f.params())?;
    while let Some(r) = rows.next()? {
        let model = r
            .get_ref(0)?
            .as_str()
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, Type::Text, Box::new(e)))?;
        let i = match index.get(model) {
            Some(&i) => i,
            None => {
                index.insert(model.to_string(), sums.len());
                sums.push((model.to_string(), ModelSums::default()));
                sums.len() - 1
            }
        };
        let s = &mut sums[i].1;
        s.attempts += 1;
        let ok = r.get::<_, i64>(1)? != 0;
        // A hedge that lost, or an attempt the stop ended, did not fail.
        if r.get::<_, i64>(4)? != 0 {
            s.errors += 1;
        } else if let (true, Some(ms)) = (ok, r.get::<_, Option<f64>>(2)?) {
            s.latencies.push(ms);
        }
        match r.get::<_, Option<f64>>(3)? {
            Some(c) => {
                s.cost_usd += c;
                s.cost_known = true;
            }
            None if ok => s.cost_unknown += 1,
            None => {}
        }
    }
    Ok(sums)
}

/// The report over `window`, restricted to `models` when that is not empty.
pub fn load(conn: &Connection, window: &Window, models: &[String]) -> rusqlite::Result<Report> {
    let tx = conn.unchecked_transaction()?;

    let f = Filter::new(window, models, access(&tx, "requests", window, models)?);
    let series = Series::spanning(from(&tx, window)?, window.to_ms, SERIES_BUCKETS);
    let mut t = line_sums(&tx, &f, series)?;
    let latencies = Latencies::new(std::mem::take(&mut t.latencies));
    let f = Filter::new(window, models, access(&tx, "attempts", window, models)?);
    let sums = model_sums(&tx, &f)?;
    drop(tx);

    let attempts: i64 = sums.iter().map(|(_, s)| s.attempts).sum();
    let mut by_model: Vec<ModelReport> = sums
        .into_iter()
        .map(|(model, s)| {
            let latencies = Latencies::new(s.latencies);
            ModelReport {
                model,
                requests: s.attempts,
                share: ratio(s.attempts, attempts),
                errors: s.errors,
                error_rate: ratio(s.errors, s.attempts),
                latency_ms: latencies.summary(),
                cost_usd: s.cost_usd,
                cost_unknown_attempts: s.cost_unknown,
                cost_known: s.cost_known,
                latencies,
            }
        })
        .collect();
    by_model.sort_by(|a, b| {
        b.requests
            .cmp(&a.requests)
            .then_with(|| a.model.cmp(&b.model))
    });

    Ok(Report {
        since: window.label.clone(),
        from_ms: window.from_ms,
        to_ms: window.to_ms,
        requests: t.requests,
        answered: t.answered,
        errors: t.errors,
        cache_hits: t.cache_hits,
        cache_hit_rate: ratio(t.cache_hits, t.requests),
        latency_ms: latencies.summary(),
        cost_usd: t.cost_usd,
        cost_unknown_lines: t.cost_unknown,
        cost_known: t.cost_known,
        tokens: Tokens {
            prompt: t.prompt,
            completion: t.completion,
        },
        attempts,
        models: by_model,
        keys: Vec::new(),
        tasks: Vec::new(),
        upstreams: Vec::new(),
        filter: models.to_vec(),
        latencies,
        series: t.series,
    })
}

/// Windows up to this long are drawn whole, quiet stretches included.
const DRAWN_WHOLE_MS: i64 = 400 * 86_400_000;

/// Where the window's time series starts: its lower bound; for `all`, or
/// a window of years, the first request in it (the `ts` index finds it
/// at once).
fn from(tx: &rusqlite::Transaction<'_>, window: &Window) -> rusqlite::Result<i64> {
    let bound = window.from_ms.unwrap_or(i64::MIN);
    if window.to_ms.saturating_sub(bound) <= DRAWN_WHOLE_MS {
        return Ok(bound);
    }
    let first: Option<i64> = tx.query_row(
        "SELECT min(ts) FROM requests WHERE ts >= ?1",
        [bound],
        |r| r.get(0),
    )?;
    Ok(first.unwrap_or(window.to_ms).max(bound))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Since;
    use crate::store::Store;
    use std::time::Duration;

    #[test]
    fn the_filter_binds_window_and_models() {
        let w = Window::new(Since::Last(Duration::from_secs(60)), 100_000);
        let ab = ["a".to_string(), "b".to_string()];
        let f = Filter::new(&w, &ab, Access::ModelTs);
        assert_eq!(f.sql, "1 AND ts >= ? AND model IN (?, ?)");
        assert_eq!(f.params.len(), 3);
        let f = Filter::new(&w, &ab, Access::Ts);
        assert_eq!(f.sql, "1 AND ts >= ? AND +model IN (?, ?)");
        let f = Filter::new(&w, &ab, Access::Scan);
        assert_eq!(f.sql, "1 AND +ts >= ? AND +model IN (?, ?)");
        let all = Filter::new(&Window::new(Since::All, 1), &[], Access::Scan);
        assert_eq!((all.sql.as_str(), all.params.len()), ("1", 0));
    }

    #[test]
    fn indexes_are_used_only_for_few_rows() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.db")).unwrap();
        let insert = |ts: i64, model: &str| {
            s.conn()
                .execute(
                    "INSERT INTO attempts (ts, run_id, line, model, ok, cached) VALUES (?1, 'r', 1, ?2, 1, 0)",
                    rusqlite::params![ts, model],
                )
                .unwrap();
        };
        for i in 0..95 {
            insert(i, "m/common");
        }
        for i in 0..5 {
            insert(1_000 + i, "m/rare");
        }
        let recent = Window {
            label: "x".into(),
            from_ms: Some(1_000),
            to_ms: 2_000,
        };
        let all = Window::new(Since::All, 2_000);
        let rare = ["m/rare".to_string()];
        let common = ["m/common".to_string()];
        let access = |w: &Window, m: &[String]| access(s.conn(), "attempts", w, m).unwrap();
        assert_eq!(access(&recent, &[]), Access::Ts);
        assert_eq!(access(&all, &[]), Access::Scan);
        assert_eq!(access(&all, &rare), Access::ModelTs);
        assert_eq!(
            access(&recent, &common),
            Access::ModelTs,
            "no common row is recent"
        );
        assert_eq!(access(&all, &common), Access::Scan);
        let everything = Window {
            from_ms: Some(0),
            ..recent.clone()
        };
        assert_eq!(access(&everything, &[]), Access::Scan);
        // The plans SQLite makes of each kind of filter.
        let plan = |w: &Window, m: &[String], a: Access| -> String {
            let f = Filter::new(w, m, a);
            let mut stmt = s
                .conn()
                .prepare(&format!(
                    "EXPLAIN QUERY PLAN SELECT model, ok, latency_ms, cost_usd FROM attempts WHERE {} AND cached = 0",
                    f.sql
                ))
                .unwrap();
            let rows = stmt
                .query_map(f.params(), |r| r.get::<_, String>(3))
                .unwrap();
            rows.map(|r| r.unwrap()).collect::<Vec<_>>().join("; ")
        };
        assert!(plan(&recent, &rare, Access::Scan).starts_with("SCAN attempts"));
        assert!(plan(&recent, &rare, Access::Ts).contains("INDEX attempts_ts"));
        assert!(plan(&recent, &rare, Access::ModelTs).contains("INDEX attempts_model_ts"));
    }

    #[test]
    fn an_empty_store_reports_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.db")).unwrap();
        let r = load(s.conn(), &Window::new(Since::All, 1), &[]).unwrap();
        assert_eq!(
            (r.requests, r.answered, r.errors, r.cache_hits),
            (0, 0, 0, 0)
        );
        assert_eq!((r.cache_hit_rate, r.cost_usd, r.attempts), (0.0, 0.0, 0));
        assert!(r.models.is_empty() && r.latencies.is_empty());
        assert_eq!(r.latency_ms.p50, None);
    }

    #[test]
    fn models_are_sorted_by_attempts_then_name() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.db")).unwrap();
        let rows = [
            ("m/b", 1, 0, 10.0),
            ("m/a", 1, 0, 20.0),
            ("m/c", 1, 0, 5.0),
            ("m/c", 0, 0, 900.0),
            ("m/c", 1, 1, 1.0),
        ];
        for (model, ok, cached, ms) in rows {
            s.conn()
                .execute(
                    "INSERT INTO attempts (ts, run_id, line, model, ok, cached, latency_ms, cost_usd)
                     VALUES (10, 'r', 1, ?1, ?2, ?3, ?4, 0.5)",
                    rusqlite::params![model, ok, cached, ms],
                )
                .unwrap();
        }
        let r = load(s.conn(), &Window::new(Since::All, 20), &[]).unwrap();
        let names: Vec<&str> = r.models.iter().map(|m| m.model.as_str()).collect();
        assert_eq!(names, ["m/c", "m/a", "m/b"]);
        let c = &r.models[0];
        assert_eq!((c.requests, c.errors, r.attempts), (2, 1, 4));
        assert_eq!((c.share, c.error_rate, c.cost_usd), (0.5, 0.5, 1.0));
        assert_eq!(c.latency_ms.max, Some(5.0), "only successful attempts");
    }

    #[test]
    fn a_hedge_that_lost_or_an_attempt_stopped_by_the_user_is_no_error_of_its_model() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.db")).unwrap();
        let rows = [
            (1, None),
            (0, Some("cancelled")),
            (0, Some("interrupted")),
            (0, Some("server")),
        ];
        for (ok, error_type) in rows {
            s.conn()
                .execute(
                    "INSERT INTO attempts (ts, run_id, line, model, ok, cached, latency_ms, error_type)
                     VALUES (10, 'r', 1, 'm/a', ?1, 0, 5.0, ?2)",
                    rusqlite::params![ok, error_type],
                )
                .unwrap();
        }
        let r = load(s.conn(), &Window::new(Since::All, 20), &[]).unwrap();
        let m = &r.models[0];
        assert_eq!((m.requests, m.errors), (4, 1), "{m:?}");
        let (_, n, errors) = s.model_measurements("m/a", i64::MIN).unwrap();
        assert_eq!((n, errors), (4, 1));
    }
}
