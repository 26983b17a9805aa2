//! Hedging (`--hedge`): which slow attempts are sent to another model too,
//! counted from the output lines' attempts and the fake server's log, never
//! from how long anything took.

use std::time::Duration;

use serde_json::Value;

use crate::learning::equal;
use crate::util::*;

/// `n` lines pinned to `model`, their prompts tagged `tag`.
fn pinned(model: &str, tag: &str, n: usize) -> String {
    (0..n)
        .map(|i| format!("{{\"model\":\"{model}\",\"prompt\":\"{tag} {i}\"}}\n"))
        .collect()
}

/// Two models, t/a (10 ms) and t/b (30 ms), both measured by a run before.
fn measured_before() -> Env {
    let env = equal(&[("t/a", 10), ("t/b", 30)]);
    let before = pinned("t/a", "a", 30) + &pinned("t/b", "b", 5);
    env.cmd()
        .args(["--no-cache", "-j", "1"])
        .stdin(before)
        .run()
        .assert_code(0);
    env
}

/// The models of a line's attempts, and whether each was cancelled.
fn attempts(line: &Value) -> Vec<(String, bool)> {
    line["attempts"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|a| {
            let cancelled = a["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("cancelled"));
            (a["model"].as_str().unwrap_or("").to_string(), cancelled)
        })
        .collect()
}

#[test]
fn the_first_slow_answer_of_a_run_is_hedged_on_what_the_store_measured() {
    let env = measured_before();
    // This run's first answer from t/a is in its tail.
    env.server.script(
        "t/a",
        [Behavior::Ok {
            latency: Duration::from_secs(3),
            cost: None,
        }],
    );
    env.server.clear_log();
    let out = env
        .cmd()
        .args(["--models", "t/a,t/b", "-p", "speed", "-j", "1"])
        .args(["--no-cache", "--explore", "0", "--hedge", "auto"])
        .stdin(prompts(1))
        .run();
    out.assert_code(0);
    let lines = out.lines();
    assert_eq!(
        attempts(&lines[0]),
        [("t/a".to_string(), true), ("t/b".to_string(), false)],
        "{}",
        lines[0]
    );
    assert_eq!(lines[0]["model"], "t/b");
}

#[test]
fn a_line_s_attempts_are_listed_in_the_order_they_were_sent() {
    let env = measured_before();
    // t/a, slow this time, is hedged on t/b, which fails at once; t/a's
    // answer comes after it.
    env.server.script(
        "t/a",
        [Behavior::Ok {
            latency: Duration::from_millis(1_500),
            cost: None,
        }],
    );
    env.server.script("t/b", [Behavior::status(500)]);
    env.server.clear_log();
    let out = env
        .cmd()
        .args(["--models", "t/a,t/b", "-p", "speed", "-j", "1"])
        .args(["--no-cache", "--explore", "0", "--hedge", "auto"])
        .stdin(prompts(1))
        .run();
    out.assert_code(0);
    let lines = out.lines();
    let models: Vec<String> = attempts(&lines[0]).into_iter().map(|(m, _)| m).collect();
    assert_eq!(models, ["t/a", "t/b"], "{}", lines[0]);
    assert_eq!(lines[0]["model"], "t/a");
}
