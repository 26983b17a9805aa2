//! The router learns: it explores models it has not measured, demotes
//! failing ones, follows a model that slows down and back, shares what it
//! learns with other processes on the store, and chooses within the budget
//! and each line's limits. Exploration is on (`--explore`) in these tests.

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};

use crate::util::*;

/// t/a or t/b under -p speed, one line at a time, without the cache.
const A_OR_B: [&str; 7] = [
    "--models",
    "t/a,t/b",
    "-p",
    "speed",
    "-j",
    "1",
    "--no-cache",
];

/// Exploration at its default share.
const EXPLORE: [&str; 2] = ["--explore", "0.05"];

/// Models with the same price and quality, answering after `ms`.
pub fn equal(models: &[(&str, u64)]) -> Env {
    let env = Env::new(
        models
            .iter()
            .map(|(m, _)| {
                ModelSpec::new(m)
                    .prices("0.000001", "0.000002")
                    .intelligence(40.0)
            })
            .collect(),
    );
    for (m, ms) in models {
        env.server.set_default(m, Behavior::ok_after(*ms));
    }
    env
}

/// The model of each line's first attempt (or of its cached answer).
fn first_choices(out: &Output) -> Vec<String> {
    out.lines()
        .iter()
        .map(|l| match l["attempts"].as_array().and_then(|a| a.first()) {
            Some(a) => a["model"].as_str().unwrap().to_string(),
            None => l["model"].as_str().unwrap_or("").to_string(),
        })
        .collect()
}

fn count(list: &[String], model: &str) -> usize {
    list.iter().filter(|m| *m == model).count()
}

#[test]
fn a_cold_start_tries_every_candidate_and_settles_on_the_fastest() {
    // Listed slowest first: list order used to decide every tie.
    let env = equal(&[("t/slow", 300), ("t/mid", 120), ("t/fast", 15)]);
    let out = env
        .cmd()
        .args(["--models", "t/slow,t/mid,t/fast", "-p", "speed"])
        .args(EXPLORE)
        .stdin(prompts(60))
        .run();
    out.assert_code(0);
    let by: Vec<String> = out.lines().iter().map(answered_by).collect();
    for m in ["t/slow", "t/mid", "t/fast"] {
        assert!(count(&by, m) >= 1, "{m} was never tried: {by:?}");
    }
    assert!(
        count(&by, "t/fast") >= 40,
        "the bulk goes to the fastest: {by:?}"
    );
    // Warm-up is bounded: the slow model gets the lines of the first moment
    // (nothing is measured yet) and its probes, not the bulk.
    assert!(count(&by, "t/slow") <= 12, "{by:?}");
}

#[test]
fn candidates_with_equal_priors_are_each_tried() {
    let env = equal(&[("t/one", 20), ("t/two", 20), ("t/three", 20)]);
    let out = env
        .cmd()
        .args(["--models", "t/one,t/two,t/three", "-j", "1"])
        .args(EXPLORE)
        .stdin(prompts(12))
        .run();
    out.assert_code(0);
    let firsts = first_choices(&out);
    for m in ["t/one", "t/two", "t/three"] {
        assert!(count(&firsts, m) >= 3, "{m} was not measured: {firsts:?}");
    }
}

#[test]
fn a_model_that_always_fails_gets_few_first_attempts_across_runs() {
    let env = equal(&[("t/bad", 5), ("t/good", 40)]);
    env.server.set_default("t/bad", Behavior::status(500));
    let mut first_on_bad = 0;
    for _ in 0..2 {
        let out = env
            .cmd()
            .args(["--models", "t/bad,t/good", "-p", "speed", "-j", "1"])
            .args(EXPLORE)
            .stdin(prompts(30))
            .run();
        out.assert_code(0);
        assert!(out.lines().iter().all(|l| l["model"] == "t/good"));
        first_on_bad += count(&first_choices(&out), "t/bad");
    }
    // Three failures in a row open its circuit, in the store for the next run.
    assert!(
        first_on_bad <= 4,
        "{first_on_bad} of 60 lines tried the failing model first"
    );
    assert!(env.server.count_for("t/bad") <= 4);
    // `models` says what state each is in, and why.
    let models = env
        .cmd()
        .args(["models", "--models", "t/bad,t/good", "--json"])
        .run();
    models.assert_code(0);
    let rows: Value = serde_json::from_str(&models.stdout).unwrap();
    let row = |m: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["model"] == m)
            .unwrap()
            .clone()
    };
    // Its circuit is open: failures opened it, not a rate limit.
    assert_eq!(row("t/bad")["state"], "open", "{rows}");
    assert!(row("t/bad")["why"]
        .as_str()
        .unwrap()
        .contains("circuit open"));
    assert_eq!(row("t/good")["state"], "measured");
    assert!(row("t/good")["why"].as_str().unwrap().contains("answers"));
}

#[test]
fn a_model_that_hangs_costs_a_bounded_number_of_timeouts() {
    let env = equal(&[("t/hang", 5), ("t/ok", 30)]);
    env.server.set_default("t/hang", Behavior::Hang);
    let out = env
        .cmd()
        .args(["--models", "t/hang,t/ok", "-p", "quality", "-j", "1"])
        .args(["--timeout", "1s"])
        .args(EXPLORE)
        .stdin(prompts(20))
        .run();
    out.assert_code(0);
    let timeouts: usize = out
        .lines()
        .iter()
        .flat_map(|l| l["attempts"].as_array().cloned().unwrap_or_default())
        .filter(|a| {
            a["error"]
                .as_str()
                .is_some_and(|e| e.contains("no complete answer"))
        })
        .count();
    assert!(
        (1..=3).contains(&timeouts),
        "{timeouts} time-outs paid over 20 lines"
    );
    // Its latency estimate rose to at least the time limit.
    let ewma: f64 = env.value("SELECT ewma_ms FROM model_stats WHERE model = 't/hang'");
    assert!(ewma >= 1000.0, "{ewma}");
}

#[test]
fn a_model_that_slows_down_loses_its_traffic_and_wins_it_back_after_it_recovers() {
    let env = equal(&[("t/a", 10), ("t/b", 60)]);
    let args = A_OR_B;
    // Warm: both measured, t/a the faster.
    env.cmd()
        .args(args)
        .args(EXPLORE)
        .stdin(prompts(10))
        .run()
        .assert_code(0);
    // t/a slows down tenfold.
    env.server.set_default("t/a", Behavior::ok_after(100));
    let out = env.cmd().args(args).args(EXPLORE).stdin(prompts(40)).run();
    out.assert_code(0);
    let by: Vec<String> = out.lines().iter().map(answered_by).collect();
    let last_a = by.iter().rposition(|m| m == "t/a").unwrap_or(0);
    let a_after_ten = count(&by[10..], "t/a");
    assert!(
        a_after_ten <= 2,
        "t/a kept {a_after_ten} lines after the 10th: {by:?} (last at {last_a})"
    );
    // It recovers: within about 50 lines it has its traffic back.
    env.server.set_default("t/a", Behavior::ok_after(10));
    let out = env.cmd().args(args).args(EXPLORE).stdin(prompts(60)).run();
    out.assert_code(0);
    let by: Vec<String> = out.lines().iter().map(answered_by).collect();
    assert!(
        count(&by[50..], "t/a") >= 9,
        "t/a did not win its traffic back: {by:?}"
    );
}

#[test]
fn a_cooldown_one_process_learns_reaches_another_during_its_run() {
    let env = equal(&[("t/a", 5), ("t/b", 40)]);
    let args = A_OR_B;
    // Both measured first.
    env.cmd()
        .args(args)
        .args(EXPLORE)
        .stdin(prompts(8))
        .run()
        .assert_code(0);
    // B runs on, reading lines as they come.
    let mut b = env
        .cmd()
        .args(args)
        .cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut b_in = b.stdin.take().unwrap();
    let mut b_out = BufReader::new(b.stdout.take().unwrap());
    let mut ask_b = |n: usize| -> Vec<String> {
        (0..n)
            .map(|i| {
                writeln!(b_in, "{{\"prompt\":\"b{i}-{}\"}}", rand_suffix()).unwrap();
                b_in.flush().unwrap();
                let mut line = String::new();
                b_out.read_line(&mut line).unwrap();
                let v: Value = serde_json::from_str(&line).unwrap();
                answered_by(&v)
            })
            .collect()
    };
    assert_eq!(ask_b(2), ["t/a", "t/a"]);
    // Process A meets a 429 with a minute's Retry-After on t/a.
    env.server.script("t/a", [Behavior::rate_limited(Some(60))]);
    let a = env.cmd().args(args).stdin("{\"prompt\":\"a\"}\n").run();
    a.assert_code(0);
    assert_eq!(a.lines()[0]["attempts"][0]["status"], 429);
    let before = env.server.count_for("t/a");
    std::thread::sleep(Duration::from_millis(1500));
    // B has learned it from the store: t/a rests.
    assert_eq!(ask_b(4), ["t/b", "t/b", "t/b", "t/b"]);
    assert_eq!(env.server.count_for("t/a"), before);
    drop(b_in);
    b.wait().unwrap();
}

/// A suffix that makes each of B's prompts its own.
fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// A dear, smart model and a cheap one.
fn dear_and_cheap() -> Env {
    Env::new(vec![
        ModelSpec::new("t/dear")
            .prices("0.0001", "0.0002")
            .intelligence(58.0),
        ModelSpec::new("t/cheap")
            .prices("0.0000001", "0.0000002")
            .intelligence(20.0),
    ])
}

#[test]
fn a_budget_too_small_for_the_best_model_picks_a_cheaper_one() {
    let env = dear_and_cheap();
    // t/dear's estimate for a line is about $0.1; t/cheap's about $0.0001.
    let out = env
        .cmd()
        .args(["--models", "t/dear,t/cheap", "-p", "quality", "-j", "1"])
        .args(["--max-cost", "0.01"])
        .stdin(prompts(3))
        .run();
    out.assert_code(0);
    for l in out.lines() {
        assert_eq!(l["model"], "t/cheap", "{l}");
    }
    assert_eq!(env.server.count_for("t/dear"), 0);
}

#[test]
fn max_cost_zero_sends_nothing_even_to_a_free_model() {
    let env = Env::new(vec![ModelSpec::new("t/free").prices("0", "0")]);
    let out = env
        .cmd()
        .args(["--models", "t/free", "--max-cost", "0"])
        .stdin(prompts(3))
        .run();
    out.assert_code(1);
    for l in out.lines() {
        assert_eq!(l["error"]["type"], "budget_exceeded", "{l}");
    }
    assert_eq!(env.server.completions().len(), 0);
}

#[test]
fn a_lines_max_latency_leaves_out_slower_candidates_and_says_why() {
    let env = dear_and_cheap();
    env.server.set_default("t/cheap", Behavior::ok_after(200));
    env.server.set_default("t/dear", Behavior::ok_after(5));
    let measure =
        "{\"model\":\"t/cheap\",\"prompt\":\"m1\"}\n{\"model\":\"t/dear\",\"prompt\":\"m2\"}\n";
    env.cmd()
        .args(["--models", "t/dear,t/cheap"])
        .stdin(measure)
        .run()
        .assert_code(0);
    let input = concat!(
        r#"{"id":"free","prompt":"x"}"#,
        "\n",
        r#"{"id":"quick","prompt":"y","llmroute":{"max_latency_ms":100}}"#,
        "\n",
        r#"{"id":"none","prompt":"z","llmroute":{"max_latency_ms":1}}"#,
        "\n",
    );
    let out = env
        .cmd()
        .args(["--models", "t/dear,t/cheap", "-p", "cost", "-j", "1"])
        .stdin(input)
        .run();
    let lines = out.lines();
    assert_eq!(lines[0]["model"], "t/cheap", "-p cost: {}", lines[0]);
    assert_eq!(
        lines[1]["model"], "t/dear",
        "max_latency_ms 100: {}",
        lines[1]
    );
    assert_eq!(lines[2]["error"]["type"], "no_eligible_model");
    let why = lines[2]["error"]["message"].as_str().unwrap();
    assert!(
        why.contains("t/cheap") && why.contains("t/dear") && why.contains("over the limit of"),
        "{why}"
    );
    // --max-line-cost: the dear model's estimate is over it.
    let out = env
        .cmd()
        .args([
            "--models",
            "t/dear,t/cheap",
            "-p",
            "speed",
            "--max-line-cost",
            "0.001",
        ])
        .stdin(prompts(1))
        .run();
    out.assert_code(0);
    assert_eq!(out.lines()[0]["model"], "t/cheap");
}

#[test]
fn a_model_the_api_does_not_know_falls_back() {
    let env = equal(&[("t/b", 5)]);
    env.server.set_default(
        "acme/ghost",
        Behavior::status_with_body(
            400,
            r#"{"error":{"code":400,"message":"acme/ghost is not a valid model ID"}}"#,
        ),
    );
    let out = env
        .cmd()
        .args(["--models", "acme/ghost", "--fallback", "t/b"])
        .stdin(prompts(2))
        .run();
    out.assert_code(0);
    for l in out.lines() {
        assert_eq!(l["model"], "t/b", "{l}");
    }
    // The catalogue of this API does not list it: it is warned about.
    assert!(out.stderr.contains("acme/ghost"), "{}", out.stderr);
}

#[test]
fn a_slow_answer_is_hedged_on_the_next_best_model_and_the_first_answer_wins() {
    let env = equal(&[("t/a", 10), ("t/b", 20)]);
    // One answer in ten takes two seconds.
    env.server.set_default(
        "t/a",
        Behavior::Tail {
            latency: Duration::from_millis(10),
            slow: Duration::from_secs(2),
            slow_rate: 0.1,
            seed: 7,
        },
    );
    let measure = "{\"model\":\"t/a\",\"prompt\":\"m1\"}\n{\"model\":\"t/b\",\"prompt\":\"m2\"}\n";
    env.cmd()
        .args(["--models", "t/a,t/b"])
        .stdin(measure)
        .run()
        .assert_code(0);
    env.server.clear_log();
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
        .args(["--hedge", "200ms"])
        .stdin(prompts(60))
        .run();
    out.assert_code(0);
    let lines = out.lines();
    let hedged: Vec<&Value> = lines
        .iter()
        .filter(|l| l["attempts"].as_array().is_some_and(|a| a.len() == 2))
        .collect();
    assert!(!hedged.is_empty(), "no line was hedged");
    for l in &hedged {
        let a = &l["attempts"];
        assert_eq!(
            (a[0]["model"].as_str(), a[1]["model"].as_str()),
            (Some("t/a"), Some("t/b"))
        );
        assert!(
            a[0]["error"].as_str().unwrap().starts_with("cancelled"),
            "{l}"
        );
        assert_eq!(a[1]["status"], 200);
        assert_eq!(l["model"], "t/b");
    }
    // At most a tenth of the requests, plus one, are hedged.
    assert!(hedged.len() <= 7, "{} hedged", hedged.len());
    assert_eq!(env.server.completions().len(), 60 + hedged.len());
    // No line waited for a slow answer.
    for l in &lines {
        assert!(l["latency_ms"].as_f64().unwrap() < 1500.0, "{l}");
    }
    // Both attempts of a hedged line are recorded.
    let cancelled: i64 = env.count("SELECT count(*) FROM attempts WHERE error_type = 'cancelled'");
    assert_eq!(cancelled as usize, hedged.len());
}

#[test]
fn tasks_that_come_in_turn_are_each_explored() {
    // Tasks a, b, c, d in turn, one request in 20 exploring: a fixed
    // exploring place (every 20th line) would always fall on d's lines.
    let env = equal(&[("t/fast", 5), ("t/slow", 40)]);
    let tasks = ["a", "b", "c", "d"];
    let input: String = (0..400)
        .map(|i| {
            let line = json!({
                "messages": [{"role": "user", "content": format!("question {i}")}],
                "llmroute": {"task": tasks[i % 4]},
            });
            format!("{line}\n")
        })
        .collect();
    let out = env
        .cmd()
        .args(["--models", "t/fast,t/slow", "-p", "speed", "-j", "1"])
        .args(EXPLORE)
        .stdin(input)
        .run();
    out.assert_code(0);
    let firsts = first_choices(&out);
    // Past the warm-up, the slow model's lines are the exploring ones.
    let mut explored = [0usize; 4];
    for (i, m) in firsts.iter().enumerate().skip(20) {
        if m == "t/slow" {
            explored[i % 4] += 1;
        }
    }
    assert!(explored.iter().all(|n| *n >= 1), "{explored:?}");
}
