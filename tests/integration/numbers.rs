//! Numbers as people read them: no float noise, estimates said to be
//! estimates.

use serde_json::Value;

use crate::util::*;

/// Whether `v` has at most `decimals` decimals (as JSON prints it).
fn at_most(v: &Value, decimals: usize) -> bool {
    match v.as_f64() {
        None => v.is_null(),
        Some(x) => {
            let text = x.to_string();
            text.split_once('.')
                .is_none_or(|(_, frac)| frac.len() <= decimals)
        }
    }
}

fn assert_tidy(line: &Value) {
    assert!(at_most(&line["score"], 4), "score: {line}");
    assert!(at_most(&line["latency_ms"], 3), "latency: {line}");
    for a in line["attempts"].as_array().unwrap() {
        assert!(at_most(&a["latency_ms"], 3), "attempt: {a}");
    }
    for c in line["candidates"].as_array().into_iter().flatten() {
        assert!(at_most(&c["score"], 4), "candidate: {c}");
        assert!(at_most(&c["quality"], 4), "candidate: {c}");
        assert!(at_most(&c["latency_ms"], 3), "candidate: {c}");
    }
}

#[test]
fn scores_and_latencies_carry_no_float_noise_and_say_what_they_are() {
    let env = Env::new(vec![
        ModelSpec::new("t/a")
            .prices("0.0000011", "0.0000023")
            .intelligence(47.3),
        ModelSpec::new("t/b")
            .prices("0.0000017", "0.0000031")
            .intelligence(41.9),
        ModelSpec::new("t/c")
            .prices("0.0000013", "0.0000029")
            .intelligence(44.1),
    ]);
    env.server.set_default("t/a", Behavior::ok_after(7));
    // The store, and the catalogue in it (a dry run never fetches one).
    env.cmd().args(["--dry-run", "-q"]).run().assert_code(0);
    env.cmd().args(["models", "--json"]).run().assert_code(0);
    let dry = env
        .cmd()
        .args(["--models", "t/a,t/b,t/c", "--dry-run", "-p", "cost"])
        .stdin(prompts(3))
        .run();
    dry.assert_code(0);
    for line in dry.lines() {
        assert_tidy(&line);
        // A dry run's cost is the chosen candidate's estimate.
        let chosen = line["candidates"][0].clone();
        assert_eq!(chosen["model"], line["model"]);
        assert!(line["cost_usd"].as_f64().is_some(), "{line}");
        assert_eq!(line["cost_usd"], chosen["cost_usd"]);
        for c in line["candidates"].as_array().unwrap() {
            assert_eq!(c["latency_source"], "prior", "never measured: {c}");
        }
    }

    let live = env
        .cmd()
        .args(["--models", "t/a,t/b,t/c", "--explain", "-j", "1"])
        .stdin(prompts(4))
        .run();
    live.assert_code(0);
    let lines = live.lines();
    lines.iter().for_each(assert_tidy);
    let last = lines.last().unwrap();
    let measured: Vec<&Value> = last["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["latency_source"] == "measured")
        .collect();
    assert!(!measured.is_empty(), "{last}");
    assert!(measured.iter().all(|c| c["latency_ms"].as_f64().is_some()));

    let models = env
        .cmd()
        .args(["models", "--json", "--models", "t/a,t/b,t/c"])
        .run();
    models.assert_code(0);
    let rows: Value = serde_json::from_str(&models.stdout).unwrap();
    for r in rows.as_array().unwrap() {
        assert!(at_most(&r["score"], 4), "{r}");
        assert!(at_most(&r["quality"], 4), "{r}");
        assert!(at_most(&r["latency_ms"]["ewma"], 3), "{r}");
        assert!(at_most(&r["latency_ms"]["p95"], 3), "{r}");
    }
    let report = env.cmd().args(["report", "--json"]).run();
    report.assert_code(0);
    let r: Value = serde_json::from_str(&report.stdout).unwrap();
    for q in ["avg", "p50", "p95", "p99", "max"] {
        assert!(at_most(&r["latency_ms"][q], 3), "{q}: {r}");
    }
    for m in r["models"].as_array().unwrap() {
        for q in ["avg", "p50", "p95", "p99"] {
            assert!(at_most(&m["latency_ms"][q], 3), "{q}: {m}");
        }
    }
}
