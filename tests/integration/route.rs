//! The core contract: input forms, routing, fallback, cooldowns, the cache,
//! ordering, exit codes.

use std::time::Duration;

use serde_json::{json, Value};

use crate::util::*;

#[test]
fn each_input_form_is_sent_upstream_as_a_chat_request() {
    let env = Env::three();
    let input = concat!(
        r#"{"id":"chat","messages":[{"role":"user","content":"m1"}],"temperature":0.3,"max_tokens":20}"#,
        "\n",
        r#"{"custom_id":"batch","method":"POST","url":"/v1/chat/completions","body":{"messages":[{"role":"user","content":"m2"}],"seed":7}}"#,
        "\n",
        r#"{"id":"short","prompt":"m3","system":"sys","llmroute":{"priority":"cost"}}"#,
        "\n"
    );
    let out = env
        .cmd()
        .args(["--models", "t/a,t/b,t/c", "-j", "1"])
        .stdin(input)
        .run();
    out.assert_code(0);
    let lines = out.lines();
    assert_eq!(lines.len(), 3);
    assert_eq!(
        lines.iter().map(|l| l["id"].clone()).collect::<Vec<_>>(),
        vec![json!("chat"), json!("batch"), json!("short")]
    );
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["line"], json!(i + 1));
        assert_eq!(l["cached"], json!(false));
        assert_eq!(l["error"], Value::Null);
        assert!(l["score"].as_f64().unwrap() > 0.0);
        assert_eq!(answered_by(l), l["model"].as_str().unwrap());
        assert_eq!(
            l["response"]["choices"][0]["message"]["content"],
            l["content"]
        );
        assert_eq!(l["attempts"].as_array().unwrap().len(), 1);
        assert!(l["latency_ms"].as_f64().unwrap() >= 0.0);
    }
    let sent: Vec<Value> = env.server.completions().iter().map(|r| r.json()).collect();
    assert_eq!(sent.len(), 3);
    let by_content = |c: &str| {
        sent.iter()
            .find(|b| b["messages"].as_array().unwrap().last().unwrap()["content"] == c)
            .cloned()
            .unwrap()
    };
    let chat = by_content("m1");
    assert_eq!(chat["temperature"], json!(0.3));
    assert_eq!(chat["max_tokens"], json!(20));
    assert!(chat.get("id").is_none());
    let batch = by_content("m2");
    assert_eq!(batch["seed"], json!(7));
    assert!(batch.get("custom_id").is_none() && batch.get("url").is_none());
    let short = by_content("m3");
    assert_eq!(
        short["messages"],
        json!([{"role":"system","content":"sys"},{"role":"user","content":"m3"}])
    );
    assert!(short.get("llmroute").is_none());
    for b in &sent {
        assert!(["t/a", "t/b", "t/c"].contains(&b["model"].as_str().unwrap()));
    }
}

#[test]
fn requests_carry_the_key_and_name_the_tool() {
    let env = Env::three();
    env.cmd()
        .args(["--models", "t/a"])
        .stdin(prompts(1))
        .run()
        .assert_code(0);
    let r = &env.server.completions()[0];
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(r.header("x-title"), Some("llmroute"));
    assert!(r
        .header("http-referer")
        .is_some_and(|v| v.starts_with("https://")));
}

/// Three models built so that each priority has its own winner once
/// latencies are measured: fast (quick, mid price, low quality), cheap (slow,
/// almost free, mid quality), smart (slow, dear, top quality).
fn priority_scenario() -> Env {
    let env = Env::new(vec![
        ModelSpec::new("t/fast")
            .prices("0.000005", "0.00001")
            .intelligence(20.0),
        ModelSpec::new("t/cheap")
            .prices("0.00000001", "0.00000002")
            .intelligence(30.0),
        ModelSpec::new("t/smart")
            .prices("0.00001", "0.00003")
            .intelligence(58.0),
    ]);
    env.server.set_default("t/fast", Behavior::ok_after(5));
    env.server.set_default("t/cheap", Behavior::ok_after(150));
    env.server.set_default("t/smart", Behavior::ok_after(150));
    // Measure every model: pinned lines.
    let warm: String = ["t/fast", "t/cheap", "t/smart"]
        .iter()
        .flat_map(|m| {
            (0..2).map(move |i| format!("{{\"model\":\"{m}\",\"prompt\":\"warm {i}\"}}\n"))
        })
        .collect();
    let out = env
        .cmd()
        .args(["--models", "t/fast,t/cheap,t/smart"])
        .stdin(warm)
        .run();
    out.assert_code(0);
    assert!(
        out.lines().iter().all(|l| l["score"].is_null()),
        "pinned lines have no score"
    );
    env
}

#[test]
fn priorities_pick_different_models_from_measured_latency_price_and_quality() {
    let env = priority_scenario();
    let mut picks = Vec::new();
    for p in ["speed", "cost", "quality"] {
        env.server.clear_log();
        let out = env
            .cmd()
            .args(["--models", "t/fast,t/cheap,t/smart", "-p", p])
            .stdin(prompts(1))
            .run();
        out.assert_code(0);
        let line = &out.lines()[0];
        let sent: Vec<String> = env
            .server
            .completions()
            .iter()
            .filter_map(|r| r.model.clone())
            .collect();
        assert_eq!(sent, vec![line["model"].as_str().unwrap().to_string()]);
        picks.push(line["model"].as_str().unwrap().to_string());
    }
    assert_eq!(picks, vec!["t/fast", "t/cheap", "t/smart"]);
}

#[test]
fn explain_shows_the_ranking_with_its_inputs() {
    let env = priority_scenario();
    let out = env
        .cmd()
        .args([
            "--models",
            "t/fast,t/cheap,t/smart",
            "-p",
            "speed",
            "--explain",
        ])
        .stdin(prompts(1))
        .run();
    let line = &out.lines()[0];
    let cands = line["candidates"].as_array().unwrap();
    assert_eq!(cands.len(), 3);
    assert_eq!(cands[0]["model"], "t/fast");
    assert_eq!(cands[0]["score"], line["score"]);
    assert!(cands
        .windows(2)
        .all(|w| w[0]["score"].as_f64() >= w[1]["score"].as_f64()));
    let fast_ms = cands[0]["latency_ms"].as_f64().unwrap();
    let slow_ms = cands.iter().find(|c| c["model"] == "t/smart").unwrap()["latency_ms"]
        .as_f64()
        .unwrap();
    assert!(slow_ms > fast_ms * 2.0, "measured {fast_ms} vs {slow_ms}");
    for c in cands {
        assert!(c["cost_usd"].as_f64().unwrap() > 0.0 && c["quality"].as_f64().is_some());
    }
    // Without --explain there is no ranking.
    let plain = env
        .cmd()
        .args(["--models", "t/fast,t/cheap,t/smart", "-p", "speed"])
        .stdin(prompts(1))
        .run();
    assert!(plain.lines()[0].get("candidates").is_none());
}

#[test]
fn failures_fall_back_to_the_next_best_then_the_fallback_list() {
    let env = Env::three();
    // Quality priority ranks a > b > c (index 50, 40, 30).
    env.server.set_default("t/a", Behavior::status(500));
    env.server.set_default("t/b", Behavior::Truncated);
    env.server.set_default("t/c", Behavior::status(502));
    env.server.set_default("t/d", Behavior::ok());
    let out = env
        .cmd()
        .args([
            "--models",
            "t/a,t/b,t/c",
            "-p",
            "quality",
            "--fallback",
            "t/d",
            "--timeout",
            "5s",
        ])
        .stdin(prompts(1))
        .run();
    out.assert_code(0);
    let line = &out.lines()[0];
    assert_eq!(line["model"], "t/d");
    assert_eq!(
        line["score"],
        Value::Null,
        "a fallback model was not scored"
    );
    let attempts: Vec<(&str, Value)> = line["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["model"].as_str().unwrap(), a["status"].clone()))
        .collect();
    assert_eq!(
        attempts,
        vec![
            ("t/a", json!(500)),
            ("t/b", json!(200)),
            ("t/c", json!(502)),
            ("t/d", json!(200))
        ]
    );
    assert!(
        line["attempts"][1]["error"]
            .as_str()
            .unwrap()
            .contains("body"),
        "{}",
        line["attempts"][1]
    );
    let order: Vec<String> = env
        .server
        .completions()
        .iter()
        .filter_map(|r| r.model.clone())
        .collect();
    assert_eq!(order, vec!["t/a", "t/b", "t/c", "t/d"]);
    assert_eq!(env.count("SELECT count(*) FROM attempts"), 4);
    assert_eq!(env.count("SELECT count(*) FROM attempts WHERE ok = 0"), 3);
}

#[test]
fn max_attempts_bounds_the_tries_and_the_line_reports_all_failed() {
    let env = Env::three();
    for m in ["t/a", "t/b", "t/c"] {
        env.server.set_default(m, Behavior::status(500));
    }
    let out = env
        .cmd()
        .args(["--models", "t/a,t/b,t/c", "--max-attempts", "2"])
        .stdin(prompts(2))
        .run();
    out.assert_code(1);
    for line in out.lines() {
        assert_eq!(line["error"]["type"], "all_models_failed");
        assert!(line["error"]["message"]
            .as_str()
            .unwrap()
            .contains("HTTP 500"));
        assert_eq!(line["attempts"].as_array().unwrap().len(), 2);
        assert_eq!(line["model"], Value::Null);
        assert_eq!(line["response"], Value::Null);
    }
    assert_eq!(env.server.completions().len(), 4);
    assert_eq!(
        env.count(
            "SELECT count(*) FROM requests WHERE ok = 0 AND error_type = 'all_models_failed'"
        ),
        2
    );
}

#[test]
fn a_redirect_is_an_error_and_is_not_followed() {
    let env = Env::three();
    // A redirect back to the same endpoint: a client that followed it would
    // post the request (and the key) again, and again.
    let location = format!("{}/chat/completions", env.server.base_url());
    env.server.set_default(
        "t/a",
        Behavior::Redirect {
            code: 307,
            location,
        },
    );
    let out = env.cmd().args(["--models", "t/a"]).stdin(prompts(1)).run();
    out.assert_code(1);
    let line = &out.lines()[0];
    assert_eq!(line["error"]["type"], "bad_request", "{line}");
    assert_eq!(line["attempts"][0]["status"], 307, "{line}");
    let message = line["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("redirected to http://127.0.0.1") && message.contains("not followed"),
        "{message}"
    );
    assert_eq!(
        env.server.completions().len(),
        1,
        "the redirect was followed"
    );
}

#[test]
fn bad_request_is_not_retried_but_context_length_moves_to_a_larger_window() {
    let env = Env::new(vec![
        ModelSpec::new("t/small").context(1000).intelligence(50.0),
        ModelSpec::new("t/same").context(1000).intelligence(45.0),
        ModelSpec::new("t/unknown").no_context().intelligence(30.0),
        ModelSpec::new("t/large")
            .context(200_000)
            .intelligence(20.0),
    ]);
    let models = [
        "--models",
        "t/small,t/same,t/unknown,t/large",
        "-p",
        "quality",
    ];
    env.server.script(
        "t/small",
        [Behavior::status_with_body(
            400,
            r#"{"error":{"code":400,"message":"temperature is out of range"}}"#,
        )],
    );
    let out = env.cmd().args(models).stdin(prompts(1)).run();
    out.assert_code(1);
    assert_eq!(out.lines()[0]["error"]["type"], "bad_request");
    assert_eq!(env.server.completions().len(), 1);

    env.server.clear_log();
    env.server.script(
        "t/small",
        [Behavior::status_with_body(400, r#"{"error":{"code":400,"message":"This endpoint's maximum context length is 1000 tokens"}}"#)],
    );
    let out = env
        .cmd()
        .args(models)
        .args(["--no-cache"])
        .stdin(r#"{"prompt":"q2"}"#)
        .run();
    out.assert_code(0);
    let order: Vec<String> = env
        .server
        .completions()
        .iter()
        .filter_map(|r| r.model.clone())
        .collect();
    assert_eq!(
        order,
        vec!["t/small", "t/large"],
        "t/same has no larger window, and t/unknown's is not known to be larger"
    );
}

#[test]
fn candidates_that_cannot_take_the_request_are_left_out() {
    let env = Env::new(vec![
        ModelSpec::new("t/tiny").context(100).intelligence(59.0),
        ModelSpec::new("t/notools")
            .params(&["max_tokens"])
            .intelligence(55.0),
        ModelSpec::new("t/ok").intelligence(20.0),
    ]);
    let line = r#"{"prompt":"use a tool","max_tokens":500,"tools":[{"type":"function","function":{"name":"f"}}]}"#;
    let out = env
        .cmd()
        .args([
            "--models",
            "t/tiny,t/notools,t/ok",
            "-p",
            "quality",
            "--explain",
        ])
        .stdin(line)
        .run();
    out.assert_code(0);
    let l = &out.lines()[0];
    assert_eq!(l["model"], "t/ok");
    assert_eq!(l["candidates"].as_array().unwrap().len(), 1);

    let out = env
        .cmd()
        .args(["--models", "t/tiny,t/notools"])
        .stdin(line)
        .run();
    out.assert_code(1);
    let l = &out.lines()[0];
    assert_eq!(l["error"]["type"], "no_eligible_model");
    let msg = l["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("t/tiny") && msg.contains("context window") && msg.contains("tools"),
        "{msg}"
    );
    assert_eq!(env.server.completions().len(), 1);

    // response_format, likewise: t/notools lists only max_tokens.
    let line = r#"{"prompt":"json please","response_format":{"type":"json_object"}}"#;
    let out = env
        .cmd()
        .args(["--models", "t/notools,t/ok", "-p", "quality", "--explain"])
        .stdin(line)
        .run();
    out.assert_code(0);
    let l = &out.lines()[0];
    assert_eq!(l["model"], "t/ok", "{l}");
    let ranked: Vec<&Value> = l["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["model"])
        .collect();
    assert_eq!(ranked, [&Value::from("t/ok")]);
}

#[test]
fn a_pinned_model_is_called_without_scoring_and_falls_back() {
    let env = Env::three();
    env.server.set_default("t/c", Behavior::status(503));
    let out = env
        .cmd()
        .args(["--models", "t/a,t/b", "--fallback", "t/b"])
        .stdin(r#"{"id":1,"model":"t/c","prompt":"x"}"#)
        .run();
    out.assert_code(0);
    let l = &out.lines()[0];
    assert_eq!(l["model"], "t/b");
    let order: Vec<String> = env
        .server
        .completions()
        .iter()
        .filter_map(|r| r.model.clone())
        .collect();
    assert_eq!(order, vec!["t/c", "t/b"]);
    assert_eq!(l["score"], Value::Null);
}

/// With --explain every line has a ranking to iterate over (`jq
/// '.candidates[]'`): a pinned line's is empty, as with --dry-run, whether
/// its answer comes from upstream or from the cache.
#[test]
fn explain_gives_a_pinned_line_an_empty_ranking() {
    let env = Env::three();
    let input = "{\"id\":1,\"model\":\"t/c\",\"prompt\":\"x\"}\n{\"id\":2,\"prompt\":\"y\"}\n";
    for (flag, cached) in [
        ("--explain", false),
        ("--explain", true),
        ("--dry-run", false),
    ] {
        let out = env
            .cmd()
            .args(["--models", "t/a,t/b", flag])
            .stdin(input)
            .run();
        out.assert_code(0);
        let lines = out.lines();
        assert_eq!(lines[0]["model"], "t/c", "{}", out.stdout);
        assert_eq!(lines[0]["cached"], cached, "{}", out.stdout);
        assert_eq!(lines[0]["candidates"], json!([]), "{flag}: {}", out.stdout);
        let ranked = lines[1]["candidates"].as_array();
        assert_eq!(ranked.map(Vec::len), Some(2), "{flag}: {}", out.stdout);
    }
}

#[test]
fn retry_after_cools_a_model_down_and_its_lines_go_elsewhere() {
    let env = Env::three();
    env.server.script("t/a", [Behavior::rate_limited(Some(30))]);
    let out = env
        .cmd()
        .args(["--models", "t/a,t/b", "-p", "quality", "-j", "1"])
        .stdin(prompts(3))
        .run();
    out.assert_code(0);
    let lines = out.lines();
    assert!(lines.iter().all(|l| l["model"] == "t/b"), "{}", out.stdout);
    assert_eq!(lines[0]["attempts"][0]["status"], 429);
    assert_eq!(
        lines[1]["attempts"].as_array().unwrap().len(),
        1,
        "the cooling model is skipped"
    );
    assert_eq!(env.server.count_for("t/a"), 1);
    assert_eq!(env.server.count_for("t/b"), 3);
    // Other processes see the cooldown too.
    assert_eq!(
        env.count("SELECT count(*) FROM cooldowns WHERE model = 't/a'"),
        1
    );
    env.server.clear_log();
    env.cmd()
        .args(["--models", "t/a,t/b", "-p", "quality", "--no-cache"])
        .stdin(prompts(1))
        .run()
        .assert_code(0);
    assert_eq!(
        env.server.count_for("t/a"),
        0,
        "still cooling down in a new run"
    );
}

#[test]
fn when_every_candidate_cools_down_the_line_waits_instead_of_failing() {
    let env = Env::three();
    env.server.script("t/a", [Behavior::rate_limited(Some(1))]);
    let out = env.cmd().args(["--models", "t/a"]).stdin(prompts(1)).run();
    out.assert_code(0);
    let l = &out.lines()[0];
    assert_eq!(l["model"], "t/a");
    let statuses: Vec<Value> = l["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status"].clone())
        .collect();
    assert_eq!(statuses, vec![json!(429), json!(200)]);
    let reqs = env.server.completions();
    let gap = reqs[1].at.duration_since(reqs[0].at);
    assert!(
        gap >= Duration::from_millis(900),
        "waited {gap:?} for a Retry-After of 1s"
    );
}

/// A 402 says the credit left does not cover this request on that model:
/// a cheaper model takes it, and nothing else stops.
#[test]
fn a_402_falls_back_to_a_cheaper_model_and_stops_nothing() {
    let env = Env::three();
    env.server.set_default("t/c", Behavior::status(402));
    let out = env
        .cmd()
        .args(["--models", "t/a,t/b,t/c", "-p", "quality", "-j", "1"])
        .args(["--quality", "t/c=1,t/b=0.5,t/a=0.1"])
        .stdin(prompts(3))
        .run();
    out.assert_code(0);
    for l in out.lines() {
        assert_eq!(l["attempts"][0]["model"], "t/c", "{l}");
        assert_eq!(l["attempts"][0]["status"], 402, "{l}");
        assert_eq!(l["model"], "t/b", "the next best, cheaper: {l}");
    }
    assert!(!out.stderr.contains("stopping"), "{}", out.stderr);

    // Where no cheaper model is left, the line says payment_required; the
    // lines after it are still sent.
    env.server.set_default("t/a", Behavior::status(402));
    let out = env
        .cmd()
        .args(["--models", "t/a", "-j", "1", "--no-cache"])
        .stdin(prompts(3))
        .run();
    assert!(
        out.lines()
            .iter()
            .all(|l| l["error"]["type"] == "payment_required"),
        "{}",
        out.stdout
    );
    assert_eq!(env.server.count_for("t/a"), 3, "every line was tried");
    // A line error, not a fatal one: exit 1, as the man page says.
    out.assert_code(1);
    let page = llmroute_docs::man_page();
    let two = &page[page.find(".TP\n\\fB2\\fR\n").unwrap()..];
    let two = &two[..1 + two[1..].find("\n.").unwrap()];
    assert!(two.contains("401") && !two.contains("402"), "{two}");
}

#[test]
fn a_refused_key_stops_the_run() {
    let (status, kind) = (401, "auth");
    let env = Env::three();
    env.server.set_default("t/a", Behavior::status(status));
    let out = env
        .cmd()
        .args(["--models", "t/a,t/b", "-j", "1"])
        .stdin(prompts(5))
        .run();
    out.assert_code(2);
    let lines = out.lines();
    assert_eq!(lines.len(), 5);
    assert!(
        lines.iter().all(|l| l["error"]["type"] == kind),
        "{}",
        out.stdout
    );
    assert_eq!(
        env.server.completions().len(),
        1,
        "nothing is sent after a {status}"
    );
    assert!(out.stderr.contains(&status.to_string()), "{}", out.stderr);
    assert!(!out.stderr.contains(KEY) && !out.stdout.contains(KEY));
}

#[test]
fn a_key_the_api_refuses_at_its_catalogue_sends_no_line() {
    // An API whose model list takes the key (OpenAI's, a vLLM with
    // --api-key) says it refuses the key before any line is sent.
    let env = Env {
        dir: tempfile::tempdir().unwrap(),
        server: FakeServer::start_with(fake_openrouter::Config {
            models: vec![ModelSpec::new("t/a")],
            api_key: Some("another-key".into()),
            ..fake_openrouter::Config::default()
        }),
    };
    let out = env
        .cmd()
        .args(["--models", "t/a", "-j", "8"])
        .stdin(prompts(5))
        .run();
    out.assert_code(2);
    let lines = out.lines();
    assert_eq!(lines.len(), 5);
    assert!(
        lines.iter().all(|l| l["error"]["type"] == "auth"),
        "{}",
        out.stdout
    );
    assert_eq!(env.server.completions().len(), 0);
    assert!(out.stderr.contains("refused the key"), "{}", out.stderr);
    // Not a catalogue problem: nothing is routed on one meanwhile.
    assert!(!out.stderr.contains("built-in catalogue"), "{}", out.stderr);
    // A refusal is the key's, not the API's, and is not remembered as a
    // failed fetch is: the same key again learns it before any line...
    let out = env.cmd().args(["--models", "t/a"]).stdin(prompts(1)).run();
    out.assert_code(2);
    assert_eq!(env.server.completions().len(), 0);
    assert!(out.stderr.contains("refused the key"), "{}", out.stderr);
    // ...and the right key, at once, gets the catalogue and its prices.
    let out = env
        .cmd()
        .env("OPENROUTER_API_KEY", "another-key")
        .args(["--models", "t/a"])
        .stdin(prompts(1))
        .run();
    out.assert_code(0);
    assert!(!out.stderr.contains("not fetched"), "{}", out.stderr);
    assert!(
        out.lines()[0]["cost_usd"].as_f64().is_some_and(|c| c > 0.0),
        "{}",
        out.stdout
    );
}

#[test]
fn a_re_run_is_answered_from_the_cache_and_a_new_priority_misses_it() {
    let env = Env::three();
    let input = prompts(4);
    let first = env.cmd().args(["--models", "t/a,t/b"]).stdin(&input).run();
    first.assert_code(0);
    assert_eq!(env.server.completions().len(), 4);
    env.server.clear_log();

    let second = env.cmd().args(["--models", "t/b,t/a"]).stdin(&input).run();
    second.assert_code(0);
    assert_eq!(
        env.server.completions().len(),
        0,
        "no upstream request on a re-run"
    );
    for (a, b) in first.lines().iter().zip(second.lines()) {
        assert_eq!(b["cached"], true);
        assert_eq!(b["cost_usd"], json!(0.0));
        assert_eq!(b["attempts"], json!([]));
        assert_eq!(
            (&a["id"], &a["model"], &a["content"], &a["response"]),
            (&b["id"], &b["model"], &b["content"], &b["response"])
        );
    }
    assert_eq!(
        env.count("SELECT count(*) FROM requests WHERE cached = 1"),
        4
    );
    assert_eq!(
        env.count("SELECT count(*) FROM attempts WHERE cached = 1"),
        4
    );

    // Key order, whitespace and ids do not matter; the priority does.
    let reordered = "{ \"prompt\" : \"p1\", \"id\" : \"other\" }\n";
    let out = env
        .cmd()
        .args(["--models", "t/a,t/b"])
        .stdin(reordered)
        .run();
    assert_eq!(out.lines()[0]["cached"], true);
    assert_eq!(out.lines()[0]["id"], "other");
    let out = env
        .cmd()
        .args(["--models", "t/a,t/b", "-p", "cost"])
        .stdin(reordered)
        .run();
    assert_eq!(out.lines()[0]["cached"], false);
    assert_eq!(env.server.completions().len(), 1);
    // --no-cache neither reads nor writes it.
    env.server.clear_log();
    let out = env
        .cmd()
        .args(["--models", "t/a,t/b", "--no-cache"])
        .stdin(&input)
        .run();
    assert!(out.lines().iter().all(|l| l["cached"] == false));
    assert_eq!(env.server.completions().len(), 4);
}

#[test]
fn cache_ttl_expires_answers() {
    let env = Env::three();
    env.cmd()
        .args(["--models", "t/a"])
        .stdin(prompts(1))
        .run()
        .assert_code(0);
    std::thread::sleep(Duration::from_millis(50));
    let out = env
        .cmd()
        .args(["--models", "t/a", "--cache-ttl", "10ms"])
        .stdin(prompts(1))
        .run();
    assert_eq!(out.lines()[0]["cached"], false);
    assert_eq!(env.server.completions().len(), 2);
}

#[test]
fn malformed_lines_get_error_lines_and_the_batch_goes_on() {
    let env = Env::three();
    let mut input = Vec::new();
    input.extend_from_slice(b"{\"id\":\"ok1\",\"prompt\":\"a\"}\n");
    input.extend_from_slice(b"not json\n");
    input.extend_from_slice(b"\n   \n");
    input.extend_from_slice(b"[1,2,3]\n");
    input.extend_from_slice(b"{\"id\":\"nomsg\",\"temperature\":1}\n");
    input.extend_from_slice(b"{\"prompt\":\"\xff\xfe\"}\n");
    input.extend_from_slice(b"{\"id\":\"ok2\",\"prompt\":\"b\"}\r\n");
    input.extend_from_slice(b"{\"id\":\"last\",\"prompt\":\"no newline\"}");
    let out = env
        .cmd()
        .args(["--models", "t/a", "-j", "4"])
        .stdin(&input)
        .run();
    out.assert_code(1);
    let lines = out.lines();
    let summary: Vec<(Value, Value, Value)> = lines
        .iter()
        .map(|l| {
            (
                l["line"].clone(),
                l["id"].clone(),
                l["error"]["type"].clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (json!(1), json!("ok1"), Value::Null),
            (json!(2), Value::Null, json!("invalid_input")),
            (json!(5), Value::Null, json!("invalid_input")),
            (json!(6), json!("nomsg"), json!("invalid_input")),
            (json!(7), Value::Null, json!("invalid_input")),
            (json!(8), json!("ok2"), Value::Null),
            (json!(9), json!("last"), Value::Null),
        ]
    );
    assert!(lines[1]["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("invalid JSON"));
    assert!(lines[4]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("UTF-8"));
    assert_eq!(env.server.completions().len(), 3);
}

#[test]
fn output_keeps_input_order_under_concurrency_unless_unordered() {
    let env = Env::three();
    // Line 1 goes to a slow model, so it finishes last.
    env.server.set_default("t/slow", Behavior::ok_after(400));
    env.server.set_default("t/a", Behavior::ok_after(10));
    let input: String = (1..=8)
        .map(|i| {
            format!(
                "{{\"id\":\"r{i}\",\"model\":\"{}\",\"prompt\":\"p{i}\"}}\n",
                if i == 1 { "t/slow" } else { "t/a" }
            )
        })
        .collect();
    let out = env
        .cmd()
        .args(["--models", "t/a", "-j", "8", "--no-cache"])
        .stdin(&input)
        .run();
    out.assert_code(0);
    let ids: Vec<String> = out
        .lines()
        .iter()
        .map(|l| l["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, (1..=8).map(|i| format!("r{i}")).collect::<Vec<_>>());
    // All eight were in flight at once: the last request arrived before the first was answered.
    let reqs = env.server.completions();
    assert_eq!(reqs.len(), 8);
    assert!(reqs[7].at.duration_since(reqs[0].at) < Duration::from_millis(350));

    let out = env
        .cmd()
        .args(["--models", "t/a", "-j", "8", "--no-cache", "--unordered"])
        .stdin(&input)
        .run();
    out.assert_code(0);
    let lines = out.lines();
    assert_eq!(lines.len(), 8);
    assert_eq!(
        lines.last().unwrap()["id"],
        "r1",
        "the slow line comes last when unordered"
    );
    let mut nums: Vec<u64> = lines.iter().map(|l| l["line"].as_u64().unwrap()).collect();
    nums.sort();
    assert_eq!(nums, (1..=8).collect::<Vec<_>>());
}

#[test]
fn files_are_read_in_order_as_one_stream() {
    let env = Env::three();
    let a = env.write(
        "a.jsonl",
        "{\"id\":\"a1\",\"prompt\":\"x\"}\n{\"id\":\"a2\",\"prompt\":\"y\"}\n",
    );
    let b = env.write("b.jsonl", "{\"id\":\"b1\",\"prompt\":\"z\"}\n");
    let out = env
        .cmd()
        .args(["--models", "t/a"])
        .arg(&a)
        .arg("-")
        .arg(&b)
        .stdin("{\"id\":\"s1\",\"prompt\":\"w\"}\n")
        .run();
    out.assert_code(0);
    let got: Vec<(Value, Value)> = out
        .lines()
        .iter()
        .map(|l| (l["id"].clone(), l["line"].clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (json!("a1"), json!(1)),
            (json!("a2"), json!(2)),
            (json!("s1"), json!(3)),
            (json!("b1"), json!(4))
        ]
    );
}

#[test]
fn exit_statuses() {
    let env = Env::three();
    // Usage errors.
    let out = env.cmd().arg("--no-such-flag").run();
    out.assert_code(2);
    let out = env.cmd().args(["--weights", "latency=-1"]).run();
    out.assert_code(2);
    assert!(out.stderr.contains("negative"), "{}", out.stderr);
    let out = env
        .cmd()
        .args(["--weights", "latency=0,cost=0,quality=0"])
        .run();
    out.assert_code(2);
    assert!(out.stderr.contains("zero"), "{}", out.stderr);
    let out = env.cmd().args(["-p", "fastest"]).stdin(prompts(1)).run();
    out.assert_code(2);
    assert!(out.stderr.contains("unknown priority"), "{}", out.stderr);
    // Missing key for a live run, but not for a dry run.
    let out = env
        .cmd()
        .env_remove("OPENROUTER_API_KEY")
        .stdin(prompts(1))
        .run();
    out.assert_code(2);
    assert!(out.stderr.contains("OPENROUTER_API_KEY"), "{}", out.stderr);
    assert!(out.stdout.is_empty());
    env.cmd()
        .env_remove("OPENROUTER_API_KEY")
        .args(["--dry-run", "--models", "t/a"])
        .stdin(prompts(1))
        .run()
        .assert_code(0);
    // Unreadable input file.
    let out = env.cmd().arg(env.path("missing.jsonl")).run();
    out.assert_code(2);
    assert!(out.stderr.contains("missing.jsonl"), "{}", out.stderr);
    let out = env.cmd().arg(env.dir.path()).run();
    out.assert_code(2);
    // An unusable store.
    let junk = env.write("junk.db", &"x".repeat(10_000));
    let out = env
        .cmd()
        .env("LLMROUTE_DB", &junk)
        .args(["--models", "t/a"])
        .stdin(prompts(1))
        .run();
    out.assert_code(2);
    assert!(out.stderr.contains("junk.db"), "{}", out.stderr);
    // All answered; some failed.
    env.cmd()
        .args(["--models", "t/a"])
        .stdin(prompts(2))
        .run()
        .assert_code(0);
    env.cmd()
        .args(["--models", "t/a"])
        .stdin("nope\n")
        .run()
        .assert_code(1);
    // No input at all is not an error.
    let out = env.cmd().args(["--models", "t/a"]).run();
    out.assert_code(0);
    assert!(out.stdout.is_empty());
}

#[test]
fn the_store_lives_in_xdg_data_home_by_default_and_is_private() {
    let env = Env::three();
    env.cmd()
        .env_remove("LLMROUTE_DB")
        .args(["--models", "t/a"])
        .stdin(prompts(1))
        .run()
        .assert_code(0);
    let path = env.path("data/llmroute/llmroute.db");
    assert!(path.exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    // The subcommands find the same store there, and --db points them
    // elsewhere.
    let requests = |args: &[&str]| -> Value {
        let out = env.cmd().env_remove("LLMROUTE_DB").args(args).run();
        out.assert_code(0);
        let v: Value = serde_json::from_str(&out.stdout).unwrap();
        v["requests"].clone()
    };
    assert_eq!(requests(&["report", "--json", "--since", "all"]), 1);
    let elsewhere = env.path("elsewhere.db");
    let elsewhere = elsewhere.to_str().unwrap();
    // Commands never create a store: an empty run makes this one.
    env.cmd()
        .args(["--dry-run", "-q", "--db", elsewhere])
        .run()
        .assert_code(0);
    assert_eq!(
        requests(&["report", "--json", "--since", "all", "--db", elsewhere]),
        0
    );
    let stats = env
        .cmd()
        .env_remove("LLMROUTE_DB")
        .args(["cache", "stats", "--json"])
        .run();
    stats.assert_code(0);
    let v: Value = serde_json::from_str(&stats.stdout).unwrap();
    assert_eq!(v["entries"], 1, "{v}");
}

#[test]
fn costs_come_from_usage_or_from_prices() {
    let env = Env::three();
    env.server.script("t/a", [Behavior::ok_with_cost(0.0123)]);
    let out = env
        .cmd()
        .args(["--models", "t/a", "-j", "1"])
        .stdin(prompts(2))
        .run();
    let lines = out.lines();
    assert_eq!(lines[0]["cost_usd"], json!(0.0123));
    // Computed: prompt and completion tokens times t/a's prices.
    let usage = &lines[1]["response"]["usage"];
    let expect = usage["prompt_tokens"].as_f64().unwrap() * 0.000001
        + usage["completion_tokens"].as_f64().unwrap() * 0.000002;
    assert!((lines[1]["cost_usd"].as_f64().unwrap() - expect).abs() < 1e-12);
    let stored: f64 = env.value("SELECT sum(cost_usd) FROM requests");
    assert!((stored - 0.0123 - expect).abs() < 1e-9);
}

#[test]
fn the_key_is_never_written_anywhere() {
    let env = Env::three();
    env.server.set_default("t/a", Behavior::status(500));
    let out = env
        .cmd()
        .args([
            "--models",
            "t/a,t/b",
            "-p",
            "cost",
            "--explain",
            "--verbose",
        ])
        .stdin(prompts(3))
        .run();
    // Verbose logging shows every attempt, the failed ones too, but not the key.
    assert!(
        out.stderr.contains("t/a: failed") && out.stderr.contains("HTTP 500"),
        "{}",
        out.stderr
    );
    assert!(!out.stdout.contains(KEY) && !out.stderr.contains(KEY));
    for f in ["store.db", "store.db-wal"] {
        let bytes = read(&env.path(f));
        assert!(
            !bytes.windows(KEY.len()).any(|w| w == KEY.as_bytes()),
            "{f} holds the key"
        );
    }
}

#[test]
fn several_processes_share_one_store() {
    let env = Env::three();
    env.server.set_default("t/a", Behavior::ok_after(2));
    let children: Vec<_> = (0..3)
        .map(|p| {
            let input: String = (0..60)
                .map(|i| format!("{{\"prompt\":\"proc {p} line {i}\"}}\n"))
                .collect();
            let file = env.write(&format!("in{p}.jsonl"), &input);
            env.cmd()
                .args(["--models", "t/a", "-j", "4"])
                .arg(file)
                .cmd
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 60);
    }
    assert_eq!(env.count("SELECT count(*) FROM requests WHERE ok = 1"), 180);
    assert_eq!(
        env.count("SELECT count(*) FROM attempts") as usize,
        env.server.completions().len()
    );
    assert_eq!(env.count("SELECT count(*) FROM cache"), 180);
}

#[test]
fn a_slow_stream_is_answered_line_by_line_while_stdin_stays_open() {
    use std::io::{BufRead, BufReader, Write};
    use std::sync::mpsc;
    use std::time::Duration;

    let env = Env::three();
    let mut cmd = env.cmd().args(["--models", "t/a"]).cmd;
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("llmroute starts");
    let mut stdin = child.stdin.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    // Each answer must come while stdin is still open: nothing may wait for
    // more input (a fuller batch, a fuller buffer) before routing a line.
    // The second line comes with a blank line after it in the same write.
    for i in 1..=3 {
        let blank = if i == 2 { "  \n" } else { "" };
        write!(
            stdin,
            "{{\"id\":\"s{i}\",\"prompt\":\"slow {i}\"}}\n{blank}"
        )
        .unwrap();
        stdin.flush().unwrap();
        let got = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("no answer to line {i} while stdin is open"));
        let v: Value = serde_json::from_str(&got).unwrap();
        assert_eq!(v["id"], json!(format!("s{i}")));
        assert_eq!(v["content"], json!(format!("[t/a] slow {i}")));
    }
    drop(stdin);
    assert!(child.wait().unwrap().success());
    assert_eq!(env.server.completions().len(), 3);
}

/// A cheap, weak model, a dear, strong one and a third for fallbacks;
/// unmeasured, so cost and quality decide.
fn cheap_and_smart() -> Env {
    Env::new(vec![
        ModelSpec::new("t/cheap")
            .prices("0.00000001", "0.00000001")
            .intelligence(15.0),
        ModelSpec::new("t/smart")
            .prices("0.00001", "0.00003")
            .intelligence(58.0),
        ModelSpec::new("t/spare")
            .prices("0.00001", "0.00003")
            .intelligence(30.0),
    ])
}

#[test]
fn a_lines_llmroute_object_overrides_the_flags_for_that_line_only() {
    let env = cheap_and_smart();
    env.server.set_default("t/smart", Behavior::status(500));
    let input = concat!(
        r#"{"id":"flag","prompt":"a"}"#,
        "\n",
        r#"{"id":"prio","prompt":"b","llmroute":{"priority":"quality"}}"#,
        "\n",
        r#"{"id":"weights","prompt":"c","llmroute":{"weights":{"quality":1}}}"#,
        "\n",
        r#"{"id":"models","prompt":"d","llmroute":{"models":["t/spare"]}}"#,
        "\n",
        r#"{"id":"fallback","prompt":"e","llmroute":{"models":["t/smart"],"fallback":["t/spare"]}}"#,
        "\n",
    );
    let out = env
        .cmd()
        .args(["--models", "t/cheap,t/smart", "-p", "cost", "-j", "1"])
        .stdin(input)
        .run();
    out.assert_code(0);
    let lines = out.lines();
    let by_id = |id: &str| lines.iter().find(|l| l["id"] == id).unwrap().clone();
    assert_eq!(by_id("flag")["model"], "t/cheap", "-p cost");
    // t/smart is chosen first (it fails), then t/cheap answers.
    let tried = |id: &str| -> Vec<String> {
        by_id(id)["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["model"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(tried("prio"), ["t/smart", "t/cheap"], "the line's priority");
    assert_eq!(
        tried("weights"),
        ["t/smart", "t/cheap"],
        "the line's weights"
    );
    assert_eq!(tried("models"), ["t/spare"], "the line's candidates");
    assert_eq!(
        tried("fallback"),
        ["t/smart", "t/spare"],
        "the line's fallback"
    );
    // Nothing of the llmroute object goes upstream.
    assert!(env
        .server
        .completions()
        .iter()
        .all(|r| r.json().get("llmroute").is_none()));
    // The metrics rows carry each line's own priority.
    let priorities: Vec<(String, String)> = env
        .sql()
        .prepare("SELECT request_id, priority FROM requests ORDER BY line")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(priorities[0], ("flag".to_string(), "cost".to_string()));
    assert_eq!(priorities[1], ("prio".to_string(), "quality".to_string()));
    let attempt_priorities: Vec<String> = env
        .sql()
        .prepare("SELECT priority FROM attempts WHERE line = 2 ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(attempt_priorities, ["quality", "quality"]);
}

#[test]
fn quality_overrides_change_the_choice() {
    let env = cheap_and_smart();
    let pick = |extra: &[&str]| {
        let out = env
            .cmd()
            .args(["--models", "t/cheap,t/smart", "-p", "quality", "--no-cache"])
            .args(extra)
            .stdin(prompts(1))
            .run();
        out.assert_code(0);
        out.lines()[0]["model"].as_str().unwrap().to_string()
    };
    assert_eq!(pick(&[]), "t/smart", "by the catalogue's index");
    assert_eq!(pick(&["--quality", "t/cheap=1,t/smart=0.1"]), "t/cheap");
}

#[test]
fn explain_ranks_cache_hits_too() {
    let env = cheap_and_smart();
    let run = || {
        let out = env
            .cmd()
            .args(["--models", "t/cheap,t/smart", "--explain"])
            .stdin(prompts(1))
            .run();
        out.assert_code(0);
        out.lines()[0].clone()
    };
    let first = run();
    let again = run();
    assert_eq!(again["cached"], true);
    let models = |l: &Value| -> Vec<Value> {
        l["candidates"]
            .as_array()
            .unwrap_or_else(|| panic!("no candidates: {l}"))
            .iter()
            .map(|c| c["model"].clone())
            .collect()
    };
    assert_eq!(models(&again), models(&first));
    assert_eq!(models(&again).len(), 2);
}

#[test]
fn a_model_that_slows_down_loses_traffic_within_a_few_requests() {
    let env = Env::three();
    // t/a is the cheapest and smartest; it answers at once four times (once
    // to a pinned line that measures it), then takes 2 s a request. t/b,
    // measured by a pinned line too, always takes 200 ms: slower than t/a at
    // first, far faster once t/a slows down (one 2 s answer lifts t/a's
    // average past 600 ms). The margins are hundreds of milliseconds, which
    // a loaded machine does not close: only the order of the two averages
    // decides.
    env.server.script(
        "t/a",
        [
            Behavior::ok(),
            Behavior::ok(),
            Behavior::ok(),
            Behavior::ok(),
        ],
    );
    env.server.set_default("t/a", Behavior::ok_after(2_000));
    env.server.set_default("t/b", Behavior::ok_after(200));
    // Both measured first, by pinned lines.
    let mut input = String::from("{\"model\":\"t/a\",\"prompt\":\"warm up a\"}\n");
    input.push_str("{\"model\":\"t/b\",\"prompt\":\"warm up\"}\n");
    input.push_str(&prompts(12));
    let out = env
        .cmd()
        .args([
            "--models",
            "t/a,t/b",
            "-p",
            "speed",
            "-j",
            "1",
            "--no-cache",
        ])
        .stdin(input)
        .run();
    out.assert_code(0);
    let by: Vec<String> = out.lines()[2..]
        .iter()
        .map(|l| l["model"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(&by[..3], ["t/a", "t/a", "t/a"], "fast and cheap: {by:?}");
    let slow_answers = by[3..].iter().filter(|m| *m == "t/a").count();
    assert!(
        slow_answers <= 2,
        "t/a kept {slow_answers} lines after slowing down: {by:?}"
    );
    assert!(by[6..].iter().all(|m| m == "t/b"), "{by:?}");
}

#[test]
fn no_more_than_j_requests_are_in_flight() {
    let env = Env::three();
    env.server.set_default("t/a", Behavior::ok_after(500));
    let out = env
        .cmd()
        .args(["--models", "t/a", "-j", "3", "--no-cache"])
        .stdin(prompts(12))
        .run();
    out.assert_code(0);
    assert_eq!(env.server.completions().len(), 12);
    // Counted by the server, not timed: at most -j requests were ever in
    // flight at once, and -j was used (twelve answers of 500 ms each, three
    // at a time, overlap however loaded the machine).
    assert_eq!(env.server.most_in_flight(), 3);
}

#[test]
fn identical_lines_in_flight_share_one_paid_call_unless_the_cache_is_off() {
    let env = Env::three();
    env.server.set_default("t/a", Behavior::ok_after(300));
    let same = "{\"prompt\":\"same\"}\n".repeat(4);
    let out = env
        .cmd()
        .args(["--models", "t/a", "-j", "8"])
        .stdin(&same)
        .run();
    out.assert_code(0);
    let lines = out.lines();
    assert_eq!(lines.len(), 4);
    assert_eq!(
        env.server.completions().len(),
        1,
        "one paid call for four lines"
    );
    let fresh = lines.iter().filter(|l| l["cached"] == false).count();
    assert_eq!(fresh, 1, "{}", out.stdout);
    for l in &lines {
        assert_eq!(l["content"], lines[0]["content"]);
    }
    assert_eq!(env.count("SELECT count(*) FROM requests"), 4);

    env.server.clear_log();
    let out = env
        .cmd()
        .args(["--models", "t/a", "-j", "8", "--no-cache"])
        .stdin(&same)
        .run();
    out.assert_code(0);
    assert_eq!(
        env.server.completions().len(),
        4,
        "--no-cache: each line is sent"
    );
}
