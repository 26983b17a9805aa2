//! `llmroute report`: stores with known rows, and stores written by real runs
//! against the fake server. Every expected value is computed here from the
//! rows themselves, independently of the report's code.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Value};

use crate::util::*;

pub const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// One row of `requests`.
#[derive(Debug, Clone)]
pub struct Req {
    pub ts: i64,
    pub model: Option<String>,
    pub ok: bool,
    pub cached: bool,
    pub latency_ms: f64,
    pub cost_usd: Option<f64>,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
}

/// One row of `attempts`.
#[derive(Debug, Clone)]
pub struct Att {
    pub ts: i64,
    pub model: String,
    pub ok: bool,
    pub cached: bool,
    pub latency_ms: Option<f64>,
    pub cost_usd: Option<f64>,
}

#[derive(Debug, Clone, Default)]
pub struct Rows {
    pub reqs: Vec<Req>,
    pub atts: Vec<Att>,
}

/// A model name that needs escaping in the exposition format.
pub const ODD: &str = r#"odd/"quoted"\model"#;

/// A store's worth of rows around `now`:
/// - 100 answered lines in the last 100 minutes over m/a, m/b, m/c, 97 of
///   them fast and 3 very slow (9 s, 15 s, 40 s);
/// - 20 cache hits, 6 failed lines;
/// - per answered line one successful attempt, and for every fifth line a
///   failed attempt on m/d before it; two failed attempts per failed line;
/// - three attempts of a model whose name needs escaping;
/// - two days ago: 10 answered lines (50 s each, $1) and attempts of m/a and
///   m/old, outside the default window.
pub fn rows(now: i64) -> Rows {
    let mut d = Rows::default();
    let models = ["m/a", "m/b", "m/c"];
    for i in 0..100i64 {
        let ts = now - i * MINUTE - 1_000;
        let model = models[(i % 3) as usize];
        let latency = match i {
            97 => 9_000.0,
            98 => 15_000.0,
            99 => 40_000.0,
            _ => 100.0 + ((i * 37) % 200) as f64 + 0.25,
        };
        let cost = (i != 13).then_some(0.0001 + 0.001 * (i % 7) as f64);
        d.reqs.push(Req {
            ts,
            model: Some(model.into()),
            ok: true,
            cached: false,
            latency_ms: latency,
            cost_usd: cost,
            prompt_tokens: (i != 21).then_some(10 + i),
            completion_tokens: Some(5 + i % 4),
        });
        if i % 5 == 0 {
            d.atts.push(Att {
                ts,
                model: "m/d".into(),
                ok: false,
                cached: false,
                latency_ms: (i % 10 == 0).then_some(20_000.0),
                cost_usd: None,
            });
        }
        d.atts.push(Att {
            ts,
            model: model.into(),
            ok: true,
            cached: false,
            latency_ms: Some(latency - 2.0 - (i % 4) as f64),
            cost_usd: cost,
        });
    }
    for i in 0..20i64 {
        let ts = now - i * 3 * MINUTE - 30_000;
        d.reqs.push(Req {
            ts,
            model: Some("m/a".into()),
            ok: true,
            cached: true,
            latency_ms: 0.5,
            cost_usd: Some(0.0),
            prompt_tokens: Some(1_000),
            completion_tokens: Some(1_000),
        });
        d.atts.push(Att {
            ts,
            model: "m/a".into(),
            ok: true,
            cached: true,
            latency_ms: Some(0.4),
            cost_usd: Some(0.0),
        });
    }
    for i in 0..6i64 {
        let ts = now - i * 7 * MINUTE - 2_000;
        d.reqs.push(Req {
            ts,
            model: (i < 2).then(|| "m/b".to_string()),
            ok: false,
            cached: false,
            latency_ms: 3_000.0 + i as f64,
            cost_usd: None,
            prompt_tokens: None,
            completion_tokens: None,
        });
        for (model, ms) in [("m/b", Some(1_500.0)), ("m/d", None)] {
            d.atts.push(Att {
                ts,
                model: model.into(),
                ok: false,
                cached: false,
                latency_ms: ms,
                cost_usd: Some(0.0005),
            });
        }
    }
    for (i, ok) in [true, false, true].into_iter().enumerate() {
        d.atts.push(Att {
            ts: now - 5 * MINUTE - i as i64,
            model: ODD.into(),
            ok,
            cached: false,
            latency_ms: Some(700.0 + i as f64),
            cost_usd: Some(0.01),
        });
    }
    let old = now - 48 * HOUR;
    for i in 0..10i64 {
        d.reqs.push(Req {
            ts: old - i,
            model: Some("m/a".into()),
            ok: true,
            cached: false,
            latency_ms: 50_000.0,
            cost_usd: Some(1.0),
            prompt_tokens: Some(100),
            completion_tokens: Some(100),
        });
        for model in ["m/a", "m/old"] {
            d.atts.push(Att {
                ts: old - i,
                model: model.into(),
                ok: true,
                cached: false,
                latency_ms: Some(50_000.0),
                cost_usd: Some(1.0),
            });
        }
    }
    d
}

/// Creates the store the way llmroute does, then inserts `d` directly.
pub fn store_with(env: &Env, d: &Rows) {
    drop(llmroute::store::Store::open(&env.db()).expect("the store opens"));
    let mut conn = rusqlite::Connection::open(env.db()).unwrap();
    let tx = conn.transaction().unwrap();
    for (i, r) in d.reqs.iter().enumerate() {
        tx.execute(
            "INSERT INTO requests (ts, run_id, line, model, ok, cached, latency_ms, cost_usd,
             prompt_tokens, completion_tokens, attempts)
             VALUES (?1, 'test', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 1)",
            rusqlite::params![
                r.ts,
                i as i64 + 1,
                r.model,
                r.ok,
                r.cached,
                r.latency_ms,
                r.cost_usd,
                r.prompt_tokens,
                r.completion_tokens
            ],
        )
        .unwrap();
    }
    for a in &d.atts {
        tx.execute(
            "INSERT INTO attempts (ts, run_id, line, model, ok, cached, latency_ms, cost_usd)
             VALUES (?1, 'test', 1, ?2, ?3, ?4, ?5, ?6)",
            rusqlite::params![a.ts, a.model, a.ok, a.cached, a.latency_ms, a.cost_usd],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

/// The smallest value with at least `p`% of the values at or below it.
pub fn nearest_rank(values: &[f64], p: f64) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = sorted.len() as f64;
    sorted
        .iter()
        .enumerate()
        .find(|(i, _)| (*i as f64 + 1.0) * 100.0 >= p * n)
        .map(|(_, v)| *v)
}

/// Milliseconds as the report gives them: at most 3 decimals.
fn ms3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn latency(values: &[f64], with_max: bool) -> Value {
    let mut v = json!({
        "avg": (!values.is_empty()).then(|| ms3(values.iter().sum::<f64>() / values.len() as f64)),
        "p50": nearest_rank(values, 50.0),
        "p95": nearest_rank(values, 95.0),
        "p99": nearest_rank(values, 99.0),
    });
    if with_max {
        v["max"] = json!(values.iter().copied().reduce(f64::max));
    }
    v
}

/// The JSON report of `d` for rows with `ts >= from` and, when `models` is
/// not empty, a model among `models`.
fn expected(d: &Rows, from: Option<i64>, models: &[&str]) -> Value {
    let in_window = |ts: i64| from.is_none_or(|f| ts >= f);
    let chosen = |m: Option<&str>| models.is_empty() || m.is_some_and(|m| models.contains(&m));
    let reqs: Vec<&Req> = d
        .reqs
        .iter()
        .filter(|r| in_window(r.ts) && chosen(r.model.as_deref()))
        .collect();
    let answered: Vec<&&Req> = reqs.iter().filter(|r| r.ok && !r.cached).collect();
    let cache_hits = reqs.iter().filter(|r| r.cached).count();
    let lat: Vec<f64> = answered.iter().map(|r| r.latency_ms).collect();

    let atts: Vec<&Att> = d
        .atts
        .iter()
        .filter(|a| in_window(a.ts) && chosen(Some(&a.model)) && !a.cached)
        .collect();
    let mut by_model: BTreeMap<&str, Vec<&Att>> = BTreeMap::new();
    for a in &atts {
        by_model.entry(&a.model).or_default().push(a);
    }
    let mut per_model: Vec<(&str, Vec<&Att>)> = by_model.into_iter().collect();
    per_model.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(b.0)));
    let model_rows: Vec<Value> = per_model
        .iter()
        .map(|(model, rows)| {
            let errors = rows.iter().filter(|a| !a.ok).count();
            let ok_lat: Vec<f64> = rows
                .iter()
                .filter(|a| a.ok)
                .filter_map(|a| a.latency_ms)
                .collect();
            json!({
                "model": model,
                "requests": rows.len(),
                "share": rows.len() as f64 / atts.len() as f64,
                "errors": errors,
                "error_rate": errors as f64 / rows.len() as f64,
                "latency_ms": latency(&ok_lat, false),
                "cost_usd": rows.iter().filter_map(|a| a.cost_usd).sum::<f64>(),
                "cost_unknown_attempts": rows.iter().filter(|a| a.ok && a.cost_usd.is_none()).count(),
            })
        })
        .collect();

    json!({
        "requests": reqs.len(),
        "answered": answered.len(),
        "errors": reqs.iter().filter(|r| !r.ok).count(),
        "cache_hits": cache_hits,
        "cache_hit_rate": if reqs.is_empty() { 0.0 } else { cache_hits as f64 / reqs.len() as f64 },
        "latency_ms": latency(&lat, true),
        "cost_usd": reqs.iter().filter_map(|r| r.cost_usd).sum::<f64>(),
        "cost_unknown_lines": reqs.iter().filter(|r| r.ok && r.cost_usd.is_none()).count(),
        "tokens": {
            "prompt": answered.iter().filter_map(|r| r.prompt_tokens).sum::<i64>(),
            "completion": answered.iter().filter_map(|r| r.completion_tokens).sum::<i64>(),
        },
        "models": model_rows,
    })
}

/// Checks that `actual` has every field of `expected` with the same value
/// (numbers to 1e-9 relative); arrays must have the same length.
fn assert_matches(actual: &Value, expected: &Value, path: &str) {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => {
            for (k, ev) in e {
                let av = a
                    .get(k)
                    .unwrap_or_else(|| panic!("{path}.{k} is missing from {actual}"));
                assert_matches(av, ev, &format!("{path}.{k}"));
            }
        }
        (Value::Array(a), Value::Array(e)) => {
            assert_eq!(a.len(), e.len(), "{path}: {actual} vs {expected}");
            for (i, (av, ev)) in a.iter().zip(e).enumerate() {
                assert_matches(av, ev, &format!("{path}[{i}]"));
            }
        }
        (Value::Number(a), Value::Number(e)) => {
            if let (Some(a), Some(e)) = (a.as_i64(), e.as_i64()) {
                assert_eq!(a, e, "{path}");
            } else {
                let (a, e) = (a.as_f64().unwrap(), e.as_f64().unwrap());
                assert!(
                    (a - e).abs() <= 1e-9 * e.abs().max(1.0),
                    "{path}: {a} != {e}"
                );
            }
        }
        _ => assert_eq!(actual, expected, "{path}"),
    }
}

fn report(env: &Env, args: &[&str]) -> Output {
    env.cmd().arg("report").args(args).run()
}

fn report_json(env: &Env, args: &[&str]) -> Value {
    let out = report(env, &[&["--json"], args].concat());
    out.assert_code(0);
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("the report is not JSON ({e}): {}", out.stdout))
}

#[test]
fn json_fields_match_the_rows_in_the_window() {
    let env = Env::new(vec![]);
    let now = now_ms();
    let d = rows(now);
    store_with(&env, &d);

    let r = report_json(&env, &[]);
    assert_eq!(r["since"], "24h");
    assert_matches(&r, &expected(&d, Some(now - 24 * HOUR), &[]), "");
    // The skewed latencies, spelt out: 3 slow lines in 100.
    assert_eq!(r["answered"], 100);
    assert_eq!(
        (r["requests"].clone(), r["errors"].clone()),
        (json!(126), json!(6))
    );
    assert_eq!(r["cache_hits"], 20);
    assert_eq!(r["latency_ms"]["p99"], 15_000.0);
    assert_eq!(r["latency_ms"]["max"], 40_000.0);
    assert!(r["latency_ms"]["p95"].as_f64().unwrap() < 400.0, "{r}");
    assert!(r["latency_ms"]["avg"].as_f64().unwrap() > 700.0, "{r}");
    let names: Vec<&str> = r["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["model"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["m/b", "m/a", "m/c", "m/d", ODD],
        "most attempts first"
    );
    let from = r["from_ms"].as_i64().unwrap();
    let to = r["to_ms"].as_i64().unwrap();
    assert_eq!(to - from, 24 * HOUR);
    assert!(to >= now && to - now < 60_000);

    let all = report_json(&env, &["--since", "all"]);
    assert_eq!(all["since"], "all");
    assert_eq!(all["from_ms"], Value::Null);
    assert_matches(&all, &expected(&d, None, &[]), "");
    assert_eq!(all["requests"], 136, "the old lines count");
    assert_eq!(all["latency_ms"]["max"], 50_000.0);
    assert!(all["models"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["model"] == "m/old"));

    let hour = report_json(&env, &["--since", "1h"]);
    assert_eq!(hour["since"], "1h");
    assert_matches(&hour, &expected(&d, Some(now - HOUR), &[]), "");
    assert!(hour["answered"].as_i64().unwrap() < 100);

    // A window holding few of the rows (read through the ts indexes).
    let minute = report_json(&env, &["--since", "1m"]);
    assert_eq!(minute["since"], "1m");
    assert_matches(&minute, &expected(&d, Some(now - MINUTE), &[]), "");
    assert_eq!(minute["requests"], 3);

    let week = report_json(&env, &["--since", "7d"]);
    assert_eq!(week["since"], "7d");
    assert_matches(&week, &expected(&d, Some(now - 7 * 24 * HOUR), &[]), "");

    // --json is --format json.
    let out = report(&env, &["--format", "json", "--since", "all"]);
    out.assert_code(0);
    let formatted: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_matches(&formatted, &expected(&d, None, &[]), "");
}

#[test]
fn model_filters_apply_to_lines_and_attempts() {
    let env = Env::new(vec![]);
    let now = now_ms();
    let d = rows(now);
    store_with(&env, &d);

    let r = report_json(&env, &["--model", "m/a", "--model", "m/d"]);
    assert_matches(
        &r,
        &expected(&d, Some(now - 24 * HOUR), &["m/a", "m/d"]),
        "",
    );
    let names: Vec<&str> = r["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["model"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["m/a", "m/d"]);
    assert_eq!(r["errors"], 0, "failed lines name no model, or m/b");
    let shares: f64 = r["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["share"].as_f64().unwrap())
        .sum();
    assert!((shares - 1.0).abs() < 1e-9);

    let b = report_json(&env, &["--model", "m/b", "--since", "all"]);
    assert_matches(&b, &expected(&d, None, &["m/b"]), "");
    assert_eq!(b["errors"], 2);

    let old = report_json(&env, &["--model", "m/old"]);
    assert_matches(&old, &expected(&d, Some(now - 24 * HOUR), &["m/old"]), "");
    assert_eq!(old["models"], json!([]));
    let old_all = report_json(&env, &["--model", "m/old", "--since", "all"]);
    assert_eq!(old_all["models"][0]["requests"], 10);
    assert_eq!(old_all["models"][0]["latency_ms"]["p50"], 50_000.0);
}

#[test]
fn a_real_batch_and_its_rerun() {
    let env = Env::three();
    // t/a ranks first (cheaper, better); its first call fails over to t/b.
    env.server.script("t/a", [Behavior::status(500)]);
    let first = env
        .cmd()
        .args(["--models", "t/a,t/b"])
        .stdin(prompts(5))
        .run();
    first.assert_code(0);
    let again = env
        .cmd()
        .args(["--models", "t/a,t/b"])
        .stdin(prompts(5))
        .run();
    again.assert_code(0);
    assert!(again.lines().iter().all(|l| l["cached"] == true));

    let r = report_json(&env, &[]);
    assert_eq!(r["requests"], 10);
    assert_eq!(r["answered"], 5);
    assert_eq!(r["errors"], 0);
    assert_eq!(r["cache_hits"], 5);
    assert_eq!(r["cache_hit_rate"], 0.5);

    // Attempts as the output lines and the server saw them.
    let mut seen: HashMap<String, (i64, i64)> = HashMap::new();
    for line in first.lines() {
        for a in line["attempts"].as_array().unwrap() {
            let e = seen
                .entry(a["model"].as_str().unwrap().to_string())
                .or_default();
            e.0 += 1;
            e.1 += i64::from(a["error"] != Value::Null);
        }
    }
    let models = r["models"].as_array().unwrap();
    assert_eq!(models.len(), seen.len(), "{r}");
    let total: i64 = seen.values().map(|v| v.0).sum();
    assert_eq!(r["attempts"], total);
    for m in models {
        let name = m["model"].as_str().unwrap();
        assert_eq!(
            m["requests"].as_u64().unwrap() as usize,
            env.server.count_for(name),
            "{name}"
        );
        assert_eq!(m["requests"], seen[name].0, "{name}");
        assert_eq!(m["errors"], seen[name].1, "{name}");
        assert!((m["share"].as_f64().unwrap() - seen[name].0 as f64 / total as f64).abs() < 1e-9);
    }
    assert!(
        seen.values().any(|v| v.1 == 1),
        "a scripted failure was seen"
    );

    // End-to-end latencies and cost, against the output lines (which round
    // latencies to the microsecond).
    let lat: Vec<f64> = first
        .lines()
        .iter()
        .map(|l| l["latency_ms"].as_f64().unwrap())
        .collect();
    for (k, p) in [("p50", 50.0), ("p95", 95.0), ("p99", 99.0)] {
        let want = nearest_rank(&lat, p).unwrap();
        let got = r["latency_ms"][k].as_f64().unwrap();
        assert!((got - want).abs() <= 0.001, "{k}: {got} vs {want}");
    }
    let cost: f64 = first
        .lines()
        .iter()
        .chain(again.lines().iter())
        .filter_map(|l| l["cost_usd"].as_f64())
        .sum();
    assert!((r["cost_usd"].as_f64().unwrap() - cost).abs() < 1e-12);

    let table = report(&env, &[]);
    table.assert_code(0);
    for name in seen.keys() {
        assert!(table.stdout.contains(name.as_str()), "{}", table.stdout);
    }
    // Short model names still leave the header's columns apart.
    let header = table
        .stdout
        .lines()
        .find(|l| l.starts_with("model"))
        .unwrap();
    let columns: Vec<&str> = header.split_whitespace().collect();
    assert_eq!(&columns[..3], ["model", "attempts", "share"], "{header}");
}

/// A sample's metric name and its labels, sorted.
type SampleKey = (String, Vec<(String, String)>);
type Samples = HashMap<SampleKey, f64>;

/// The samples of an exposition, by metric name and labels (values unescaped).
fn scrape(text: &str) -> Samples {
    use prom_text_format_parser::{Scrape, Type, ValueType};
    let parsed = Scrape::parse(text).unwrap_or_else(|e| panic!("{e:?} in\n{text}"));
    let mut out = HashMap::new();
    for metric in &parsed.metrics {
        assert!(metric.name.starts_with("llmroute_"), "{}", metric.name);
        assert!(metric.help_desc.is_some(), "{} has # HELP", metric.name);
        // Totals over a window go down when old rows are pruned or leave
        // the window: gauges, never counters (which Prometheus would read
        // as resets), and never named as counters are.
        assert!(!metric.name.ends_with("_total"), "{}", metric.name);
        match metric.kind {
            Type::Summary | Type::Gauge => {}
            other => panic!("{} is a {other}", metric.name),
        }
        for s in &metric.samples {
            let suffix = match s.value.value_type {
                ValueType::Sample => "",
                ValueType::Sum => "_sum",
                ValueType::Count => "_count",
            };
            let mut labels: Vec<(String, String)> = s
                .labels
                .iter()
                .map(|l| (l.key.clone(), unescape(&l.value)))
                .collect();
            labels.sort();
            let key = (format!("{}{suffix}", metric.name), labels);
            let value = s.value.value.as_f64();
            assert!(out.insert(key.clone(), value).is_none(), "{key:?} twice");
        }
    }
    out
}

/// A label value as written in the exposition format, unescaped.
fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (c, c == '\\') {
            (_, true) => match chars.next() {
                Some('n') => out.push('\n'),
                Some(other) => out.push(other),
                None => panic!("dangling backslash in {s}"),
            },
            (c, false) => out.push(c),
        }
    }
    out
}

fn key(name: &str, labels: &[(&str, &str)]) -> SampleKey {
    let mut l: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    l.sort();
    (name.to_string(), l)
}

/// A JSON latency in milliseconds as seconds (`null` stays `null`).
fn seconds(ms: &Value) -> Value {
    ms.as_f64().map_or(Value::Null, |v| json!(v / 1000.0))
}

/// Compares a sample to a JSON number, or a NaN quantile to `null`.
fn assert_sample(samples: &Samples, k: SampleKey, want: &Value) {
    let got = *samples.get(&k).unwrap_or_else(|| panic!("no sample {k:?}"));
    match want.as_f64() {
        Some(w) => assert!(
            (got - w).abs() <= 1e-9 * w.abs().max(1.0),
            "{k:?}: {got} vs {w}"
        ),
        None => assert!(got.is_nan() && want.is_null(), "{k:?}: {got} vs {want}"),
    }
}

#[test]
fn prometheus_exposition_parses_and_agrees_with_the_json() {
    let env = Env::new(vec![]);
    let now = now_ms();
    let mut d = rows(now);
    // A model that was only ever tried and failed: its quantiles are NaN.
    d.atts.push(Att {
        ts: now - MINUTE,
        model: "line\nbreak".into(),
        ok: false,
        cached: false,
        latency_ms: Some(5.0),
        cost_usd: None,
    });
    store_with(&env, &d);

    for since in ["24h", "all"] {
        let out = report(&env, &["--format", "prometheus", "--since", since]);
        out.assert_code(0);
        assert!(
            out.stdout.contains(r#"model="odd/\"quoted\"\\model""#),
            "{}",
            out.stdout
        );
        assert!(
            out.stdout.contains(r#"model="line\nbreak""#),
            "{}",
            out.stdout
        );
        let s = scrape(&out.stdout);
        let j = report_json(&env, &["--since", since]);

        for (name, field) in [
            ("llmroute_requests", "requests"),
            ("llmroute_answered", "answered"),
            ("llmroute_errors", "errors"),
            ("llmroute_cache_hits", "cache_hits"),
            ("llmroute_cost_usd", "cost_usd"),
        ] {
            assert_sample(&s, key(name, &[]), &j[field]);
        }
        for kind in ["prompt", "completion"] {
            assert_sample(
                &s,
                key("llmroute_tokens", &[("kind", kind)]),
                &j["tokens"][kind],
            );
        }
        // Prometheus has seconds where the JSON has milliseconds.
        for (q, field) in [("0.5", "p50"), ("0.95", "p95"), ("0.99", "p99")] {
            assert_sample(
                &s,
                key("llmroute_latency_seconds", &[("quantile", q)]),
                &seconds(&j["latency_ms"][field]),
            );
        }
        let answered = j["answered"].as_f64().unwrap();
        assert_sample(
            &s,
            key("llmroute_latency_seconds_count", &[]),
            &j["answered"],
        );
        // The JSON's average is rounded to 0.001 ms; the sum is exact.
        let sum = s[&key("llmroute_latency_seconds_sum", &[])];
        let from_avg = j["latency_ms"]["avg"].as_f64().unwrap() * answered / 1000.0;
        assert!(
            (sum - from_avg).abs() <= answered * 0.0005 / 1000.0 + 1e-12,
            "{sum} vs {from_avg}"
        );

        let models = j["models"].as_array().unwrap();
        assert!(models.len() >= 6);
        for m in models {
            let name = m["model"].as_str().unwrap();
            let l = [("model", name)];
            assert_sample(&s, key("llmroute_model_attempts", &l), &m["requests"]);
            assert_sample(&s, key("llmroute_model_errors", &l), &m["errors"]);
            assert_sample(&s, key("llmroute_model_cost_usd", &l), &m["cost_usd"]);
            for (q, field) in [("0.5", "p50"), ("0.95", "p95"), ("0.99", "p99")] {
                assert_sample(
                    &s,
                    key(
                        "llmroute_model_latency_seconds",
                        &[("model", name), ("quantile", q)],
                    ),
                    &seconds(&m["latency_ms"][field]),
                );
            }
            let count = s[&key("llmroute_model_latency_seconds_count", &l)];
            let sum = s[&key("llmroute_model_latency_seconds_sum", &l)];
            match m["latency_ms"]["avg"].as_f64() {
                Some(avg) => assert!(
                    (sum - avg * count / 1000.0).abs() < 1e-6 * sum.max(1.0),
                    "{name}"
                ),
                None => assert_eq!((sum, count), (0.0, 0.0), "{name}"),
            }
        }
        let per_model = s
            .keys()
            .filter(|k| k.0 == "llmroute_model_attempts")
            .count();
        assert_eq!(per_model, models.len());
    }
}

#[test]
fn the_table_is_plain_text_in_80_columns() {
    let env = Env::new(vec![]);
    let now = now_ms();
    let mut d = rows(now);
    let long = "some-provider/an-extraordinarily-long-model-name-that-cannot-fit";
    d.atts.push(Att {
        ts: now - MINUTE,
        model: long.into(),
        ok: true,
        cached: false,
        latency_ms: Some(1_234.0),
        cost_usd: Some(0.5),
    });
    store_with(&env, &d);
    let cases: [&[&str]; 3] = [
        &[],
        &["--since", "all"],
        &["--model", "m/a", "--model", "m/c"],
    ];
    for args in cases {
        let out = report(&env, args);
        out.assert_code(0);
        let t = &out.stdout;
        assert!(
            !t.contains('\x1b'),
            "no colour when stdout is not a terminal:\n{t}"
        );
        for line in t.lines() {
            assert!(
                line.chars().count() <= 80,
                "{} columns: {line}",
                line.chars().count()
            );
        }
        assert!(t.contains("m/a") && t.contains("m/c"), "{t}");
        assert!(t.contains("p99"), "{t}");
        assert!(
            t.chars().any(|c| ('▁'..='█').contains(&c)),
            "a histogram:\n{t}"
        );
    }
    let out = report(&env, &[]);
    for name in ["m/a", "m/b", "m/c", "m/d", ODD] {
        assert!(out.stdout.contains(name), "{name} in\n{}", out.stdout);
    }
    assert!(out.stdout.contains("some-provider"), "{}", out.stdout);
    assert!(
        out.stdout.contains('…'),
        "the long name is cut:\n{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("15.0s"),
        "the p99 of the lines:\n{}",
        out.stdout
    );
    // Colour stays off with NO_COLOR too.
    let out = env.cmd().args(["report"]).env("NO_COLOR", "1").run();
    assert!(!out.stdout.contains('\x1b'));
}

#[test]
fn an_empty_store_reports_no_requests() {
    let env = Env::new(vec![]);
    env.cmd().args(["--dry-run", "-q"]).run().assert_code(0);
    let out = report(&env, &[]);
    out.assert_code(0);
    assert!(out.stdout.contains("no requests"), "{}", out.stdout);

    let j = report_json(&env, &[]);
    let nulls = json!({"avg": null, "p50": null, "p95": null, "p99": null, "max": null});
    assert_eq!(j["latency_ms"], nulls);
    for field in ["requests", "answered", "errors", "cache_hits", "attempts"] {
        assert_eq!(j[field], 0, "{field}");
    }
    for field in ["cache_hit_rate", "cost_usd"] {
        assert_eq!(j[field], 0.0, "{field}");
    }
    assert_eq!(j["tokens"], json!({"prompt": 0, "completion": 0}));
    assert_eq!(j["models"], json!([]));
    assert_matches(&j, &expected(&Rows::default(), Some(0), &[]), "");

    let out = report(&env, &["--format", "prometheus"]);
    out.assert_code(0);
    let s = scrape(&out.stdout);
    for name in [
        "llmroute_requests",
        "llmroute_answered",
        "llmroute_errors",
        "llmroute_cache_hits",
        "llmroute_cost_usd",
        "llmroute_latency_seconds_count",
        "llmroute_latency_seconds_sum",
    ] {
        assert_eq!(s[&key(name, &[])], 0.0, "{name}");
    }
    assert!(s[&key("llmroute_latency_seconds", &[("quantile", "0.99")])].is_nan());

    // Old rows only: the default window is empty.
    let env = Env::new(vec![]);
    let mut d = rows(now_ms());
    let old = now_ms() - 30 * HOUR;
    d.reqs.retain(|r| r.ts < old);
    d.atts.retain(|a| a.ts < old);
    store_with(&env, &d);
    let out = report(&env, &[]);
    out.assert_code(0);
    assert!(
        out.stdout.contains("no requests in the last 24h"),
        "{}",
        out.stdout
    );
    let out = report(&env, &["--since", "all"]);
    assert!(!out.stdout.contains("no requests"), "{}", out.stdout);
}

#[test]
fn bad_stores_and_flags_are_fatal() {
    let env = Env::new(vec![]);
    env.write("store.db", &"x".repeat(8192));
    let out = report(&env, &["--json"]);
    out.assert_code(2);
    assert!(
        out.stderr.contains("not an SQLite database"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty());

    let env = Env::new(vec![]);
    report(&env, &["--json", "--format", "prometheus"]).assert_code(2);
    report(&env, &["--since", "soon"]).assert_code(2);
    report(&env, &["--format", "xml"]).assert_code(2);
}

/// Every line's end is recorded: lines that are not requests, that no
/// candidate can take, and that the budget refuses count in `report` (and
/// so in Prometheus and the HTML report), as they do in the run's summary.
#[test]
fn report_counts_every_error_the_run_summary_counts() {
    let env = Env::new(vec![ModelSpec::new("t/p")
        .prices("0", "0.00001")
        .context(1000)]);
    let long = "word ".repeat(2000);
    let input = [
        r#"{"id":1,"prompt":"fine","max_tokens":10}"#.to_string(),
        "not json".to_string(),
        r#"{"id":3,"prompt":"x","llmroute":{"priority":"no-such"}}"#.to_string(),
        format!(r#"{{"id":4,"prompt":"{long}"}}"#),
        r#"{"id":5,"prompt":"dear","max_tokens":900}"#.to_string(),
    ]
    .join("\n");
    let out = env
        .cmd()
        .args(["--models", "t/p", "-j", "1", "--max-cost", "0.005"])
        .stdin(input + "\n")
        .run();
    let lines = out.lines();
    let kinds: Vec<&str> = lines
        .iter()
        .map(|l| l["error"]["type"].as_str().unwrap_or("ok"))
        .collect();
    assert_eq!(
        kinds,
        [
            "ok",
            "invalid_input",
            "invalid_input",
            "no_eligible_model",
            "budget_exceeded"
        ],
        "{}",
        out.stdout
    );
    assert!(out.stderr.contains("4 errors"), "{}", out.stderr);
    let report = env.cmd().args(["report", "--json"]).run();
    report.assert_code(0);
    let r: serde_json::Value = serde_json::from_str(&report.stdout).unwrap();
    assert_eq!(
        (r["requests"].as_i64(), r["errors"].as_i64()),
        (Some(5), Some(4)),
        "{r}"
    );
}
