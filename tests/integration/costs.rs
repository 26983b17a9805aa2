//! What llmroute says of money when it does not know a price.

use serde_json::Value;

use crate::util::*;

/// A catalogue of ids only, as LiteLLM's proxy lists its models.
const IDS_ONLY: &str = r#"{"data":[{"id":"t/a","object":"model"},{"id":"t/b","object":"model"}]}"#;

fn report(env: &Env, format: &str) -> String {
    let out = env
        .cmd()
        .args(["report", "--since", "all", "--format", format])
        .run();
    out.assert_code(0);
    out.stdout
}

#[test]
fn an_unknown_cost_is_never_shown_as_zero() {
    let env = Env::three();
    env.server
        .set_catalogue_behavior(CatalogueBehavior::Raw(IDS_ONLY.into()));
    let out = env.cmd().args(["--models", "t/a"]).stdin(prompts(3)).run();
    out.assert_code(0);
    assert!(out.lines().iter().all(|l| l["cost_usd"].is_null()));
    assert!(
        out.stderr.contains("(cost unknown for 3 lines)"),
        "{}",
        out.stderr
    );

    let json: Value = serde_json::from_str(&report(&env, "json")).unwrap();
    assert_eq!(json["cost_unknown_lines"], 3, "{json}");
    assert_eq!(json["models"][0]["cost_unknown_attempts"], 3, "{json}");
    let table = report(&env, "table");
    assert!(!table.contains("$0"), "{table}");
    assert!(table.contains("unknown for 3 lines"), "{table}");
    let prom = report(&env, "prometheus");
    assert!(
        !prom.lines().any(|l| l.starts_with("llmroute_cost_usd")
            || l.starts_with("llmroute_model_cost_usd")
            || l.starts_with("llmroute_upstream_cost_usd")),
        "{prom}"
    );
    assert!(prom.contains("\nllmroute_cost_unknown_lines 3\n"), "{prom}");

    // One more line, whose answer says what it cost.
    env.server.set_default("t/a", Behavior::ok_with_cost(0.5));
    let out = env
        .cmd()
        .args(["--models", "t/a"])
        .stdin("{\"prompt\":\"known\"}\n")
        .run();
    out.assert_code(0);
    assert!(out.stderr.contains("$0.50 spent"), "{}", out.stderr);
    let json: Value = serde_json::from_str(&report(&env, "json")).unwrap();
    assert_eq!(
        (
            json["cost_usd"].as_f64(),
            json["cost_unknown_lines"].as_i64()
        ),
        (Some(0.5), Some(3)),
        "{json}"
    );
    let table = report(&env, "table");
    assert!(table.contains("$0.50 + unknown for 3 lines"), "{table}");
}

#[test]
fn a_catalogue_without_prices_says_once_that_cost_cannot_act() {
    let env = Env::three();
    env.server
        .set_catalogue_behavior(CatalogueBehavior::Raw(IDS_ONLY.into()));
    const WARNING: &str = "no price for any candidate";
    let out = env
        .cmd()
        .args(["--models", "t/a,t/b"])
        .stdin(prompts(3))
        .run();
    out.assert_code(0);
    assert_eq!(out.stderr.matches(WARNING).count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("cost weight"), "{}", out.stderr);

    // Weights without cost: nothing to say.
    let out = env
        .cmd()
        .args(["--models", "t/a,t/b", "-w", "latency=1", "--no-cache"])
        .stdin(prompts(1))
        .run();
    out.assert_code(0);
    assert!(!out.stderr.contains(WARNING), "{}", out.stderr);

    let out = env.cmd().args(["models", "--models", "t/a,t/b"]).run();
    out.assert_code(0);
    assert_eq!(out.stderr.matches(WARNING).count(), 1, "{}", out.stderr);
    for row in out.stdout.lines().filter(|l| l.starts_with("t/")) {
        assert_eq!(row.matches("unknown").count(), 2, "{row}");
    }
}

#[test]
fn tpm_paces_by_the_tokens_answers_used() {
    use std::io::Read;
    let env = Env::three();
    // Ten short lines without max_tokens: each plans for 512 completion
    // tokens, and each answer's usage says it used a few. At 1,000 tokens
    // a minute, paced by plans they take about five minutes; paced by use,
    // they all fit in the bucket at once.
    let file = env.write("short.jsonl", &prompts(10));
    let mut child = env.spawn(
        &["--models", "t/a", "-j", "1", "--tpm", "1000", "-q"],
        &file,
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    child.wait().unwrap();
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let sent = env.server.completions().len();
    assert_eq!(
        sent, 10,
        "{sent} of 10 requests sent within a minute under --tpm 1000"
    );
    assert_eq!(stdout.lines().count(), 10);
}

/// Once a model has answers, a line without `max_tokens` holds the budget
/// at the model's measured completion length, not at 512 tokens: a budget
/// under the 512-token estimate still answers short lines.
#[test]
fn a_measured_model_reserves_at_its_measured_length() {
    let env = Env::new(vec![ModelSpec::new("t/p").prices("0", "0.00001")]);
    // Measured first, without a budget: 20 answers, enough to go by.
    env.cmd()
        .args(["--models", "t/p", "--no-cache", "-j", "1"])
        .stdin(prompts(20))
        .run()
        .assert_code(0);
    // 512 tokens would be $0.00512, over the whole cap.
    let out = env
        .cmd()
        .args([
            "--models",
            "t/p",
            "--no-cache",
            "-j",
            "1",
            "--max-cost",
            "0.003",
        ])
        .stdin(prompts(5))
        .run();
    out.assert_code(0);
    assert!(
        out.lines().iter().all(|l| l["error"].is_null()),
        "{}",
        out.stdout
    );
}

/// A budget that refuses a request's next attempt does not say it was not
/// sent: its first attempt was, and may have been billed.
#[test]
fn a_budget_refusing_a_fallback_says_what_was_sent() {
    let env = Env::new(vec![
        ModelSpec::new("t/a").prices("0.0001", "0.0001"),
        ModelSpec::new("t/b").prices("0.001", "0.001"),
    ]);
    // Timed out: it may have been billed, so its estimate stays spent.
    env.server.set_default("t/a", Behavior::ok_after(3_000));
    let out = env
        .cmd()
        .args(["--models", "t/a", "--fallback", "t/b", "--max-cost", "0.11"])
        .args(["--timeout", "200ms"])
        .stdin("{\"prompt\":\"x\",\"max_tokens\":100}\n")
        .run();
    let line = &out.lines()[0];
    assert_eq!(line["error"]["type"], "budget_exceeded", "{}", out.stdout);
    let message = line["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("not sent again after 1 attempt: "),
        "{message}"
    );
    assert_eq!(env.server.count_for("t/a"), 1);
    assert_eq!(env.server.count_for("t/b"), 0);
}

/// A refusal refuses only its own request: one pinned dear request over the
/// budget leaves it usable for the next.
#[test]
fn a_refused_request_leaves_the_budget_usable() {
    let env = Env::new(vec![
        ModelSpec::new("t/dear").prices("0.001", "0.001"),
        ModelSpec::new("t/p").prices("0", "0.00001"),
    ]);
    let input = concat!(
        r#"{"id":"dear","prompt":"x","model":"t/dear","max_tokens":100000}"#,
        "\n",
        r#"{"id":"cheap","prompt":"y","max_tokens":10}"#,
        "\n"
    );
    let out = env
        .cmd()
        .args(["--models", "t/p", "-j", "1", "--max-cost", "0.01"])
        .stdin(input)
        .run();
    let lines = out.lines();
    assert_eq!(
        lines[0]["error"]["type"], "budget_exceeded",
        "{}",
        out.stdout
    );
    assert!(lines[1]["error"].is_null(), "{}", out.stdout);
    assert_eq!(
        env.server.count_for("t/dear"),
        0,
        "the pinned one is never sent"
    );

    // --help says so.
    let help = env.cmd().arg("--help").run().stdout;
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    let max_cost = &help[help.find("--max-cost <USD>").unwrap()..];
    let max_cost = &max_cost[..max_cost.find("[env:").unwrap()];
    assert!(
        max_cost.contains("later lines that fit are still sent"),
        "{max_cost}"
    );
}
