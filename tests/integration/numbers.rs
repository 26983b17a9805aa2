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

/// The server's model list and `/route` give latencies in milliseconds
/// with 3 decimals at most, as everywhere else.
#[test]
fn the_servers_latencies_carry_no_float_noise() {
    let env = Env::three();
    env.server.set_default("t/a", Behavior::ok_after(7));
    env.server.set_default("t/b", Behavior::ok_after(3));
    // Measured latencies, and priors made from them.
    env.cmd()
        .args([
            "--models",
            "t/a,t/b",
            "-p",
            "speed",
            "--explore",
            "1",
            "-j",
            "1",
        ])
        .stdin(prompts(6))
        .run()
        .assert_code(0);
    let s = env.serve(&["--models", "t/a,t/b,t/c"]);
    let (models, route, dashboard) = crate::serve::rt().block_on(async {
        let c = crate::serve::client();
        let get = |path: &str| c.get(s.url(path)).send();
        let models: Value = get("/v1/models").await.unwrap().json().await.unwrap();
        let dashboard: Value = get("/dashboard/data").await.unwrap().json().await.unwrap();
        let body = serde_json::json!({"messages": [{"role": "user", "content": "hi"}]});
        let route = c.post(s.url("/route")).json(&body).send().await.unwrap();
        let route: Value = route.json().await.unwrap();
        (models, route, dashboard)
    });
    let rows = models["data"].as_array().unwrap();
    assert!(rows.iter().any(|m| m["latency_ms"].is_f64()), "{models}");
    for m in rows {
        assert!(at_most(&m["latency_ms"], 3), "{m}");
    }
    let ranking = route["ranking"].as_array().unwrap();
    assert!(ranking.iter().any(|r| r["latency_ms"].is_f64()), "{route}");
    for r in ranking {
        assert!(at_most(&r["latency_ms"], 3), "{r}");
    }
    let rankings = dashboard["live"]["rankings"].as_array().unwrap();
    let candidates = rankings
        .iter()
        .flat_map(|r| r["candidates"].as_array().unwrap());
    for c in candidates {
        assert!(at_most(&c["latency_ms"], 3), "{c}");
    }
    s.stop();
}

/// Significant digits of a number as written (`0.000288` has 3,
/// `3.5999999999999994e-5` has 17).
fn significant_digits(number: &str) -> usize {
    let mantissa = number
        .trim_start_matches('-')
        .split(['e', 'E'])
        .next()
        .unwrap()
        .replace('.', "");
    mantissa.trim_start_matches('0').trim_end_matches('0').len()
}

/// Every number written after `key` in `text` (`"cost_usd": 0.1`,
/// `llmroute_cost_usd 0.1`, `llmroute_model_cost_usd{...} 0.1`).
fn numbers_after(text: &str, key: &str) -> Vec<String> {
    text.match_indices(key)
        .map(|(i, _)| {
            let rest = &text[i + key.len()..];
            let rest = rest.trim_start_matches(['"', ':', ' ']);
            let rest = match rest.strip_prefix('{') {
                Some(r) => r.split_once("} ").map_or(r, |(_, v)| v),
                None => rest,
            };
            rest.chars()
                .take_while(|c| c.is_ascii_digit() || ".-+eE".contains(*c))
                .collect::<String>()
        })
        .filter(|n| !n.is_empty())
        .collect()
}

fn assert_costs_tidy(text: &str, key: &str) {
    let costs = numbers_after(text, key);
    assert!(!costs.is_empty(), "no {key} in {text}");
    for c in costs {
        assert!(significant_digits(&c) <= 6, "{key} {c} in {text}");
    }
}

/// Lines whose costs, at the fake's prices, are sums with float noise
/// (3.5999999999999994e-5 and the like).
fn noisy_questions(n: usize) -> String {
    (1..=n)
        .map(|i| format!("{{\"prompt\":\"question number {i} with some words in it\"}}\n"))
        .collect()
}

#[test]
fn costs_carry_no_float_noise_in_any_output() {
    let env = Env::three();
    let run = env
        .cmd()
        .args(["--models", "t/a,t/b,t/c", "-e"])
        .stdin(noisy_questions(7))
        .run();
    run.assert_code(0);
    assert_costs_tidy(&run.stdout, "\"cost_usd\"");
    // The summary gives the spend to three significant digits.
    assert!(run.stderr.contains("; $0.000238 spent;"), "{}", run.stderr);
    let dry = env
        .cmd()
        .args(["--models", "t/a,t/b,t/c", "-n"])
        .stdin(noisy_questions(2))
        .run();
    dry.assert_code(0);
    assert_costs_tidy(&dry.stdout, "\"cost_usd\"");

    // The report's table gives the total as the summary does.
    let table = env.cmd().args(["report"]).run();
    table.assert_code(0);
    assert!(table.stdout.contains("$0.000238"), "{}", table.stdout);
    let json = env.cmd().args(["report", "--json"]).run();
    json.assert_code(0);
    assert_costs_tidy(&json.stdout, "\"cost_usd\"");
    let prom = env.cmd().args(["report", "--format", "prometheus"]).run();
    prom.assert_code(0);
    assert_costs_tidy(&prom.stdout, "\nllmroute_cost_usd");
    assert_costs_tidy(&prom.stdout, "\nllmroute_model_cost_usd");
    assert_costs_tidy(&prom.stdout, "\nllmroute_upstream_cost_usd");

    let models = env
        .cmd()
        .args(["models", "--json", "--models", "t/a,t/b,t/c"])
        .run();
    models.assert_code(0);
    assert_costs_tidy(&models.stdout, "\"prompt_usd_per_mtok\"");
}

#[test]
fn one_of_a_thing_is_said_in_the_singular() {
    let env = Env::three();
    let run = env.cmd().args(["--models", "t/a"]).stdin(prompts(1)).run();
    run.assert_code(0);
    assert!(
        run.stderr
            .contains("llmroute: 1 line: 1 answered, 0 cached, 0 errors;"),
        "{}",
        run.stderr
    );
    let models = env.cmd().args(["models", "--models", "t/a"]).run();
    models.assert_code(0);
    assert!(models.stdout.starts_with("1 model, "), "{}", models.stdout);

    let stats = env.cmd().args(["cache", "stats"]).run();
    stats.assert_code(0);
    assert!(stats.stdout.contains("(0 of 1 line, "), "{}", stats.stdout);
    let cleared = env.cmd().args(["cache", "clear"]).run();
    assert_eq!(cleared.stdout, "removed 1 cached answer\n");

    let failed = {
        env.server.set_default("t/a", Behavior::status(400));
        env.cmd()
            .args(["--models", "t/a", "--no-cache"])
            .stdin(prompts(1))
            .run()
    };
    assert!(
        failed.stderr.contains("0 answered, 0 cached, 1 error;"),
        "{}",
        failed.stderr
    );
}

#[test]
fn the_progress_rate_has_at_most_one_decimal() {
    let env = Env::three();
    env.server.set_default("t/a", Behavior::ok_after(150));
    let file = env.write("in.jsonl", &prompts(3));
    let out = env
        .cmd()
        .args(["--models", "t/a", "-j", "1", "--progress", "always"])
        .arg(&file)
        .run();
    out.assert_code(0);
    let rates: Vec<&str> = out
        .stderr
        .split(" · ")
        .filter(|part| part.ends_with("/s"))
        .collect();
    assert!(!rates.is_empty(), "{:?}", out.stderr);
    for rate in rates {
        let number = rate.trim_end_matches("/s");
        assert!(
            number.split_once('.').is_none_or(|(_, d)| d.len() <= 1),
            "{rate}"
        );
    }
    // The spend keeps three significant digits, however small.
    assert!(!out.stderr.contains("$0.0000 "), "{:?}", out.stderr);
    assert!(out.stderr.contains("$0.000021 spent"), "{:?}", out.stderr);
}

#[test]
fn a_cooldown_is_shown_to_the_second() {
    let env = Env::three();
    env.server
        .set_default("t/a", Behavior::rate_limited(Some(80)));
    env.cmd()
        .args(["--models", "t/a", "--max-attempts", "1", "-q"])
        .stdin(prompts(1))
        .run();
    let models = env.cmd().args(["models", "--models", "t/a"]).run();
    models.assert_code(0);
    let row = models.stdout.lines().find(|l| l.contains("t/a")).unwrap();
    assert!(row.contains("m ") && row.contains('s'), "{row}");
    assert!(!row.contains("ms "), "milliseconds past 10 s: {row}");
}
