//! OpenAI Batch files: every line's `body.model` pins a model, so
//! `--route-all` (or a line's `llmroute.route`) routes them instead, and
//! `--output-format openai-batch` writes OpenAI's batch output shape.

use serde_json::Value;

use crate::util::*;

/// `n` OpenAI Batch lines whose body names `model`.
fn batch_file(n: usize, model: &str) -> String {
    (1..=n)
        .map(|i| {
            format!(
                r#"{{"custom_id":"req-{i}","method":"POST","url":"/v1/chat/completions","body":{{"model":"{model}","messages":[{{"role":"user","content":"q{i}"}}]}}}}"#
            ) + "\n"
        })
        .collect()
}

#[test]
fn a_pinned_model_the_catalogue_does_not_list_draws_one_warning_naming_route_all() {
    let env = Env::three();
    let input = env.write("in.jsonl", &batch_file(3, "gpt-4o-mini"));
    let out = env.cmd().args(["-m", "t/a,t/b"]).arg(&input).run();
    let warnings: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("--route-all"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", out.stderr);
    assert!(warnings[0].contains("gpt-4o-mini"), "{}", out.stderr);
}

#[test]
fn route_all_routes_batch_lines_over_the_candidates() {
    let env = Env::three();
    let input = env.write("in.jsonl", &batch_file(3, "gpt-4o-mini"));
    let out = env
        .cmd()
        .args(["--route-all", "-m", "t/a,t/b", "-p", "cost"])
        .arg(&input)
        .run();
    out.assert_code(0);
    assert!(!out.stderr.contains("warning"), "{}", out.stderr);
    for line in out.lines() {
        assert_eq!(line["model"], "t/a", "{line}");
        assert_eq!(answered_by(&line), "t/a");
    }
    assert_eq!(env.server.count_for("gpt-4o-mini"), 0);
}

/// A hint the catalogue lists joins the candidates and competes: here it
/// is the dearest, so the cost priority overrides it; the quality one,
/// given a better prior for it, takes it.
#[test]
fn a_known_hint_competes_with_the_candidates() {
    let env = Env::three();
    let input = env.write("in.jsonl", &batch_file(1, "t/c"));
    let cost = env
        .cmd()
        .args(["--route-all", "--no-cache", "-m", "t/a,t/b", "-p", "cost"])
        .arg(&input)
        .run();
    cost.assert_code(0);
    assert_eq!(cost.lines()[0]["model"], "t/a");
    let quality = env
        .cmd()
        .args([
            "--route-all",
            "--no-cache",
            "-m",
            "t/a,t/b",
            "-p",
            "quality",
        ])
        .args(["--quality", "t/c=1.0,t/a=0.1,t/b=0.1"])
        .arg(&input)
        .run();
    quality.assert_code(0);
    assert_eq!(quality.lines()[0]["model"], "t/c");
}

#[test]
fn a_line_asks_to_be_routed_or_to_keep_its_pin() {
    let env = Env::three();
    let input = env.write(
        "in.jsonl",
        concat!(
            r#"{"id":1,"prompt":"x","model":"t/c","llmroute":{"route":true}}"#,
            "\n",
            r#"{"id":2,"prompt":"y","model":"t/c"}"#,
            "\n",
        ),
    );
    let out = env
        .cmd()
        .args(["-m", "t/a,t/b", "-p", "cost"])
        .arg(&input)
        .run();
    out.assert_code(0);
    let lines = out.lines();
    assert_eq!(lines[0]["model"], "t/a");
    assert_eq!(lines[1]["model"], "t/c", "without route, model pins");
    let routed = env.write(
        "kept.jsonl",
        concat!(
            r#"{"id":3,"prompt":"z","model":"t/c","llmroute":{"route":false}}"#,
            "\n"
        ),
    );
    let out = env
        .cmd()
        .args(["--route-all", "-m", "t/a,t/b", "-p", "cost"])
        .arg(&routed)
        .run();
    assert_eq!(out.lines()[0]["model"], "t/c", "the line keeps its pin");
}

#[test]
fn openai_batch_output_is_read_as_openai_writes_it() {
    let env = Env::three();
    env.server.script("t/b", [Behavior::status(400)]);
    let mut input = batch_file(2, "t/a");
    input.push_str(r#"{"custom_id":"req-3","method":"POST","url":"/v1/chat/completions","body":{"model":"t/b","messages":[{"role":"user","content":"q3"}]}}"#);
    input.push_str("\nnot json\n");
    let input = env.write("in.jsonl", &input);
    let out = env
        .cmd()
        .args(["--output-format", "openai-batch"])
        .arg(&input)
        .run();
    let lines: Vec<Value> = out.lines();
    assert_eq!(lines.len(), 4, "{}", out.stdout);
    let mut ids = std::collections::HashSet::new();
    for (i, l) in lines.iter().enumerate() {
        let keys: Vec<&str> = l.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 4, "{l}");
        for k in ["id", "custom_id", "response", "error"] {
            assert!(l.get(k).is_some(), "{k} in {l}");
        }
        assert!(l["id"].as_str().unwrap().starts_with("batch_req_"), "{l}");
        assert!(ids.insert(l["id"].as_str().unwrap().to_string()));
        if i < 2 {
            assert_eq!(l["custom_id"], format!("req-{}", i + 1));
            assert_eq!(l["response"]["status_code"], 200);
            assert!(l["response"]["request_id"].is_string());
            assert!(l["response"]["body"]["choices"][0]["message"]["content"].is_string());
            assert_eq!(l["error"], Value::Null);
        }
    }
    assert_eq!(lines[2]["response"]["status_code"], 400, "{}", lines[2]);
    assert!(lines[2]["response"]["body"]["error"]["message"].is_string());
    assert_eq!(lines[3]["response"], Value::Null);
    assert_eq!(lines[3]["error"]["code"], "invalid_input");
}

#[test]
fn openai_batch_output_and_a_dry_run_do_not_mix() {
    let env = Env::three();
    let out = env
        .cmd()
        .args(["--output-format", "openai-batch", "--dry-run"])
        .stdin("{\"prompt\":\"x\"}\n")
        .run();
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("no answers to write"), "{}", out.stderr);
    // The default format, named, is no conflict.
    let out = env
        .cmd()
        .args(["--output-format", "llmroute", "--dry-run"])
        .stdin("{\"prompt\":\"x\"}\n")
        .run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    // Nor is a prompt's text shown as a batch line.
    let out = env
        .cmd()
        .args(["--output-format", "openai-batch", "-P", "hi"])
        .run();
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("--prompt"), "{}", out.stderr);
}
