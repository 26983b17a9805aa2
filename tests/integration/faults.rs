//! Upstream faults: refused connections, resets, hangs, slow drips, bodies
//! that are truncated, not JSON, errors in disguise or far too large, 429
//! storms and random 5xx. Whatever the fault, every input line gets exactly
//! one output line, in order, the process neither panics nor hangs, and the
//! store records every attempt.
//!
//! The watchdog runner defined here ([`run_guarded`]) and the shared checks
//! are also used by `hostile.rs` and `crashes.rs`.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::util::*;

/// A finished run under the watchdog.
pub struct Run {
    pub out: Output,
    /// Peak resident set size (`VmHWM`) seen while the process ran, in KiB.
    pub peak_rss_kib: Option<u64>,
    pub elapsed: Duration,
}

pub fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Runs `cmd` with `stdin` as its input. Kills it and fails the test when it
/// has not exited within `deadline`.
pub fn run_guarded(cmd: Cmd, stdin: impl Into<Vec<u8>>, deadline: Duration) -> Run {
    run_command(cmd.cmd, stdin.into(), deadline)
}

pub fn run_command(mut cmd: Command, stdin: Vec<u8>, deadline: Duration) -> Run {
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("llmroute starts");
    let pid = child.id();
    let mut input = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = so.read_to_end(&mut b);
        b
    });
    let err_reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = se.read_to_end(&mut b);
        b
    });
    let mut peak = None;
    let status = loop {
        if let Some(kib) = vm_hwm_kib(pid) {
            peak = peak.max(Some(kib));
        }
        if let Some(status) = child.try_wait().expect("waiting for llmroute") {
            break status;
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let _ = feeder.join();
            let stdout = out_reader.join().unwrap();
            let stderr = err_reader.join().unwrap();
            panic!(
                "llmroute still running after {deadline:?}: killed\nstdout ({} bytes, {} lines)\nstderr:\n{}",
                stdout.len(),
                stdout.iter().filter(|b| **b == b'\n').count(),
                String::from_utf8_lossy(&stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = feeder.join();
    let stdout = out_reader.join().unwrap();
    let stderr = err_reader.join().unwrap();
    Run {
        out: Output {
            code: status.code().unwrap_or(-1),
            stdout: String::from_utf8(stdout).expect("stdout is UTF-8"),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        },
        peak_rss_kib: peak,
        elapsed: started.elapsed(),
    }
}

/// No panic, and the key shows nowhere in what the process printed.
pub fn assert_sane(out: &Output) {
    assert!(
        !out.stderr.contains("panicked") && !out.stderr.contains("RUST_BACKTRACE"),
        "llmroute panicked:\n{}",
        out.stderr
    );
    assert!(!out.stdout.contains(KEY), "the key is in stdout");
    assert!(!out.stderr.contains(KEY), "the key is in stderr");
}

/// One output line per input line, ids and line numbers in input order.
pub fn assert_lines(out: &Output, ids: &[Value]) -> Vec<Value> {
    let lines = out.lines();
    assert_eq!(
        lines.len(),
        ids.len(),
        "one output line per input line\nstdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
    let got: Vec<Value> = lines.iter().map(|l| l["id"].clone()).collect();
    assert_eq!(got, ids, "ids in input order");
    let nums: Vec<u64> = lines.iter().map(|l| l["line"].as_u64().unwrap()).collect();
    assert!(
        nums.windows(2).all(|w| w[0] < w[1]),
        "line numbers ascend: {nums:?}"
    );
    lines
}

/// The ids `r1..rn` of [`prompts`].
pub fn ids(n: usize) -> Vec<Value> {
    (1..=n).map(|i| json!(format!("r{i}"))).collect()
}

/// Every upstream request the fake server saw has its `attempts` row.
pub fn assert_attempts_recorded(env: &Env) {
    assert_eq!(
        env.count("SELECT count(*) FROM attempts WHERE cached = 0") as usize,
        env.server.completions().len(),
        "one attempts row per upstream request"
    );
}

fn attempt_errors(line: &Value) -> Vec<String> {
    line["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["error"].as_str().unwrap_or("").to_string())
        .collect()
}

const MODELS: [&str; 4] = ["--models", "t/a,t/b,t/c", "-p", "quality"];

/// Every model fails with `behavior`: each line ends in `all_models_failed`
/// after exactly `--max-attempts` attempts, with `cause` in the message.
fn every_model_fails(behavior: Behavior, cause: &str, timeout: &str) -> Run {
    let env = Env::three();
    for m in ["t/a", "t/b", "t/c"] {
        env.server.set_default(m, behavior.clone());
    }
    let run = run_guarded(
        env.cmd()
            .args(MODELS)
            .args(["--timeout", timeout, "--max-attempts", "2", "-j", "4"]),
        prompts(4),
        Duration::from_secs(30),
    );
    let out = &run.out;
    assert_sane(out);
    out.assert_code(1);
    for l in assert_lines(out, &ids(4)) {
        assert_eq!(l["error"]["type"], "all_models_failed", "{l}");
        let msg = l["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains(cause),
            "message names the cause {cause:?}: {msg}"
        );
        assert_eq!(l["model"], Value::Null);
        assert_eq!(l["response"], Value::Null);
        let errs = attempt_errors(&l);
        assert_eq!(errs.len(), 2, "{l}");
        assert!(errs.iter().all(|e| e.contains(cause)), "{errs:?}");
    }
    assert_eq!(env.server.completions().len(), 8);
    assert_attempts_recorded(&env);
    assert_eq!(
        env.count("SELECT count(*) FROM requests WHERE error_type = 'all_models_failed'"),
        4
    );
    assert_eq!(
        env.count("SELECT count(*) FROM cache"),
        0,
        "failures are not cached"
    );
    run
}

/// The best model fails with `behavior`: the line that tries it moves on to
/// the next one, and the failure lowers its standing, so later lines may go
/// to the next one first. Every line is answered.
fn best_model_fails(behavior: Behavior, cause: &str, timeout: &str) {
    let env = Env::three();
    env.server.set_default("t/a", behavior);
    let run = run_guarded(
        env.cmd()
            .args(MODELS)
            .args(["--timeout", timeout, "-j", "4"]),
        prompts(4),
        Duration::from_secs(30),
    );
    let out = &run.out;
    assert_sane(out);
    out.assert_code(0);
    let mut tried_a = 0;
    for (i, l) in assert_lines(out, &ids(4)).iter().enumerate() {
        assert_eq!(l["error"], Value::Null, "{l}");
        assert_eq!(l["model"], "t/b");
        assert_eq!(l["content"], format!("[t/b] p{}", i + 1));
        let attempts = l["attempts"].as_array().unwrap();
        assert!((1..=2).contains(&attempts.len()), "{l}");
        if attempts.len() == 2 {
            tried_a += 1;
            assert_eq!(attempts[0]["model"], "t/a");
            let e = attempts[0]["error"].as_str().unwrap();
            assert!(e.contains(cause), "attempt error names {cause:?}: {e}");
        }
        assert_eq!(attempts.last().unwrap()["status"], 200);
    }
    let first = &out.lines()[0];
    assert_eq!(
        first["attempts"][0]["model"], "t/a",
        "the best is tried first"
    );
    assert!(tried_a >= 1);
    assert_eq!(env.server.count_for("t/a"), tried_a);
    assert_eq!(env.server.count_for("t/b"), 4);
    assert_attempts_recorded(&env);
    assert_eq!(
        env.count("SELECT count(*) FROM attempts WHERE ok = 0 AND model = 't/a'"),
        tried_a as i64
    );
}

#[test]
fn connection_refused_fails_each_line_clearly_and_uses_the_builtin_catalogue() {
    let env = Env::three();
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}/api/v1");
    let run = run_guarded(
        env.cmd().env("LLMROUTE_BASE_URL", &base).args([
            "--models",
            "openai/gpt-5.4-mini,google/gemini-3.5-flash",
            "--timeout",
            "1s",
        ]),
        prompts(3),
        Duration::from_secs(30),
    );
    let out = &run.out;
    assert_sane(out);
    out.assert_code(1);
    assert!(
        out.stderr.contains("built-in catalogue"),
        "the catalogue fetch fails over to the snapshot: {}",
        out.stderr
    );
    let mut attempts = 0;
    for l in assert_lines(out, &ids(3)) {
        assert_eq!(l["error"]["type"], "all_models_failed", "{l}");
        let msg = l["error"]["message"].as_str().unwrap().to_lowercase();
        assert!(msg.contains("connect"), "names the cause: {msg}");
        assert!(msg.contains("refused"), "names the cause: {msg}");
        let errs = attempt_errors(&l);
        assert_eq!(errs.len(), 2, "both candidates are tried: {l}");
        attempts += errs.len();
    }
    assert_eq!(
        env.count("SELECT count(*) FROM attempts WHERE cached = 0 AND ok = 0") as usize,
        attempts
    );
    assert_eq!(
        env.count("SELECT count(*) FROM attempts WHERE error_type = 'connect'") as usize,
        attempts
    );
}

#[test]
fn a_connection_reset_mid_body_fails_the_attempt() {
    every_model_fails(Behavior::ResetMidBody, "body", "1s");
    best_model_fails(Behavior::ResetMidBody, "body", "1s");
}

#[test]
fn a_connection_closed_without_a_response_fails_the_attempt() {
    every_model_fails(Behavior::CloseWithoutResponse, "connection closed", "1s");
    best_model_fails(Behavior::CloseWithoutResponse, "connection closed", "1s");
}

#[test]
fn a_server_that_never_answers_times_out() {
    let run = every_model_fails(Behavior::Hang, "within 1s", "1s");
    // 2 attempts of 1 s each, the 4 lines in parallel.
    assert!(run.elapsed < Duration::from_secs(10), "{:?}", run.elapsed);
    best_model_fails(Behavior::Hang, "within 1s", "1s");
}

#[test]
fn a_slow_drip_past_the_timeout_times_out() {
    // About 250 bytes at one every 50 ms would take 12 s.
    let drip = Behavior::Drip {
        interval: Duration::from_millis(50),
    };
    let run = every_model_fails(drip.clone(), "within 1s", "1s");
    assert!(run.elapsed < Duration::from_secs(10), "{:?}", run.elapsed);
    best_model_fails(drip, "within 1s", "1s");
}

#[test]
fn a_truncated_200_body_fails_the_attempt() {
    every_model_fails(Behavior::Truncated, "body", "1s");
    best_model_fails(Behavior::Truncated, "body", "1s");
}

#[test]
fn a_200_body_that_is_not_json_fails_the_attempt() {
    every_model_fails(Behavior::NonJson, "not a JSON completion", "1s");
    best_model_fails(Behavior::NonJson, "not a JSON completion", "1s");
}

#[test]
fn a_200_carrying_an_error_object_fails_the_attempt() {
    every_model_fails(Behavior::ErrorInBody, "Provider returned error", "1s");
    best_model_fails(Behavior::ErrorInBody, "Provider returned error", "1s");
}

#[test]
fn a_50_mb_body_is_refused_without_buffering_it() {
    let big = Behavior::BigBody { bytes: 50_000_000 };
    let run = every_model_fails(big.clone(), "larger than 16 MiB", "30s");
    if let Some(kib) = run.peak_rss_kib {
        assert!(
            kib < 64 * 1024,
            "peak RSS {kib} KiB while refusing 50 MB bodies"
        );
    }
    best_model_fails(big, "larger than 16 MiB", "30s");
}

#[test]
fn a_50_mb_body_without_content_length_is_cut_off_while_reading() {
    let big = Behavior::BigBodyUnsized { bytes: 50_000_000 };
    let run = every_model_fails(big.clone(), "larger than 16 MiB", "30s");
    // Each of the 4 requests in flight holds at most the 16 MiB cap before it
    // is cut off, plus what the allocator and the HTTP client's read buffers
    // keep on the way (at most as much again; about 104 MiB in all is seen).
    // Uncapped, each would hold 50 MB and more.
    if let Some(kib) = run.peak_rss_kib {
        assert!(
            kib < (4 * 2 * 16 + 48) * 1024,
            "peak RSS {kib} KiB while reading 50 MB bodies"
        );
    }
    best_model_fails(big, "larger than 16 MiB", "30s");
}

/// No request reached `model` between `from` and `to` after one of its
/// first `storm` requests, which were answered 429.
fn assert_no_request_during_cooldown(
    env: &Env,
    model: &str,
    storm: usize,
    from: Duration,
    to: Duration,
) {
    let at: Vec<Instant> = env
        .server
        .completions()
        .into_iter()
        .filter(|r| r.model.as_deref() == Some(model))
        .map(|r| r.at)
        .collect();
    for (i, t) in at.iter().enumerate().take(storm) {
        for later in &at[i + 1..] {
            if let Some(gap) = later.checked_duration_since(*t) {
                assert!(
                    gap <= from || gap >= to,
                    "{model} was called {gap:?} after a 429"
                );
            }
        }
    }
}

#[test]
fn a_408_moves_on_to_the_next_model() {
    best_model_fails(Behavior::status(408), "408", "60s");
}

#[test]
fn a_503_with_retry_after_pauses_that_model_for_later_lines() {
    let env = Env::three();
    env.server.script(
        "t/a",
        [Behavior::Status {
            code: 503,
            retry_after: Some("600".into()),
            body: None,
            latency: Duration::ZERO,
        }],
    );
    let run = run_guarded(
        env.cmd().args(MODELS).args(["-j", "1"]),
        prompts(3),
        Duration::from_secs(30),
    );
    assert_sane(&run.out);
    run.out.assert_code(0);
    let lines = assert_lines(&run.out, &ids(3));
    assert_eq!(lines[0]["attempts"][0]["status"], 503);
    assert!(
        lines.iter().all(|l| l["model"] == "t/b"),
        "{}",
        run.out.stdout
    );
    assert_eq!(env.server.count_for("t/a"), 1, "t/a rests after its 503");
    // 600 s asked, 5 minutes kept, in the store for other processes too.
    let until: i64 = env.value("SELECT until_ms FROM cooldowns WHERE model = 't/a'");
    let left = until - llmroute::store::now_ms();
    assert!(left > 250_000 && left <= 300_000, "{left} ms");
}

/// Lines waiting for one rate limit's pause do not all send when it ends:
/// they wake spread out, so that the first one's renewed pause is seen by
/// the rest, and each pause draws one 429, not one a line. Eight lines and
/// five 429s of a second each: sent at once at each pause's end, all five
/// are drawn within two pauses; one a pause, they take five.
#[test]
fn lines_waiting_for_one_pause_do_not_all_send_at_its_end() {
    let env = Env::three();
    env.server
        .script("t/a", (0..13).map(|_| Behavior::rate_limited(Some(1))));
    let run = run_guarded(
        env.cmd()
            .args(["--models", "t/a", "--max-attempts", "20", "-j", "8"]),
        prompts(8),
        Duration::from_secs(60),
    );
    let out = &run.out;
    out.assert_code(0);
    assert_eq!(env.server.completions().len(), 13 + 8);
    // The first round's eight 429s, then five pauses of a second, one
    // 429 each: the slowest machine takes longer, none shorter.
    assert!(
        run.elapsed >= Duration::from_secs(5),
        "the 429s after the first round came a pause each ({:?})",
        run.elapsed
    );
}

#[test]
fn a_429_storm_with_retry_after_is_waited_out() {
    let env = Env::three();
    for m in ["t/a", "t/b"] {
        env.server
            .script(m, (0..5).map(|_| Behavior::rate_limited(Some(1))));
    }
    let run = run_guarded(
        env.cmd().args([
            "--models",
            "t/a,t/b",
            "-p",
            "quality",
            "--max-attempts",
            "12",
            "-j",
            "3",
        ]),
        prompts(6),
        Duration::from_secs(30),
    );
    let out = &run.out;
    assert_sane(out);
    out.assert_code(0);
    for (i, l) in assert_lines(out, &ids(6)).iter().enumerate() {
        assert_eq!(l["error"], Value::Null, "{l}");
        assert_eq!(
            l["content"],
            format!("[{}] p{}", l["model"].as_str().unwrap(), i + 1)
        );
        let attempts = l["attempts"].as_array().unwrap();
        for a in &attempts[..attempts.len() - 1] {
            assert_eq!(a["status"], 429, "{l}");
        }
    }
    assert!(
        run.elapsed >= Duration::from_millis(900),
        "Retry-After: 1 was honoured ({:?})",
        run.elapsed
    );
    // Every request is a scripted 429 or one of the six answers. A line
    // that wakes when a pause ends looks again before sending: when another
    // line's 429 has just renewed the pause, it does not send into it, so
    // not every scripted 429 need be drawn.
    let limited = env.count("SELECT count(*) FROM attempts WHERE status = 429") as usize;
    assert_eq!(env.server.completions().len(), limited + 6);
    assert!((6..=10).contains(&limited), "{limited} rate limits");
    // Only requests already under way when the 429 came may arrive during the pause.
    for m in ["t/a", "t/b"] {
        assert_no_request_during_cooldown(
            &env,
            m,
            5,
            Duration::from_millis(400),
            Duration::from_millis(900),
        );
    }
    assert_attempts_recorded(&env);
}

#[test]
fn an_endless_429_storm_without_retry_after_ends_in_clear_errors() {
    let env = Env::three();
    for m in ["t/a", "t/b"] {
        env.server.set_default(m, Behavior::rate_limited(None));
    }
    let run = run_guarded(
        env.cmd().args([
            "--models",
            "t/a,t/b",
            "-p",
            "quality",
            "--max-attempts",
            "3",
            "-j",
            "3",
        ]),
        prompts(3),
        Duration::from_secs(30),
    );
    let out = &run.out;
    assert_sane(out);
    out.assert_code(1);
    for l in assert_lines(out, &ids(3)) {
        // Rate limits alone: the line says so, not only "failed".
        assert_eq!(l["error"]["type"], "rate_limited", "{l}");
        let msg = l["error"]["message"].as_str().unwrap();
        assert!(msg.contains("HTTP 429"), "{msg}");
        let statuses: Vec<Value> = l["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["status"].clone())
            .collect();
        assert_eq!(statuses, vec![json!(429); 3]);
    }
    // Without Retry-After a model pauses for 1 s: the third attempts wait for it.
    assert!(
        run.elapsed >= Duration::from_millis(900),
        "{:?}",
        run.elapsed
    );
    assert_eq!(env.server.completions().len(), 9);
    for m in ["t/a", "t/b"] {
        assert_no_request_during_cooldown(
            &env,
            m,
            usize::MAX,
            Duration::from_millis(400),
            Duration::from_millis(900),
        );
    }
    assert_attempts_recorded(&env);
}

#[test]
fn rate_limits_without_retry_after_back_off_longer_each_time() {
    let env = Env::three();
    env.server.set_default("t/a", Behavior::rate_limited(None));
    let run = run_guarded(
        env.cmd()
            .args(["--models", "t/a", "--max-attempts", "3", "-j", "1"]),
        prompts(1),
        Duration::from_secs(30),
    );
    assert_sane(&run.out);
    run.out.assert_code(1);
    let at: Vec<Instant> = env.server.completions().iter().map(|r| r.at).collect();
    assert_eq!(at.len(), 3, "three attempts on the one candidate");
    let gaps: Vec<Duration> = at.windows(2).map(|w| w[1] - w[0]).collect();
    // The first pause is 1 s, the second 2 s. Only lower bounds are checked:
    // a loaded machine makes gaps longer, never shorter.
    assert!(gaps[0] >= Duration::from_millis(900), "{gaps:?}");
    assert!(
        gaps[1] >= Duration::from_millis(1800),
        "the second pause should double: {gaps:?}"
    );
    assert_attempts_recorded(&env);
}

#[test]
fn random_5xx_across_models_with_fallback_keeps_every_line_and_answer_in_place() {
    let env = Env::three();
    let flaky = |seed| Behavior::Flaky {
        fail_rate: 0.3,
        seed,
        latency: Duration::from_millis(1),
    };
    env.server.set_default("t/a", flaky(11));
    env.server.set_default("t/b", flaky(22));
    env.server.set_default("t/c", flaky(33));
    let n = 150;
    let args = [
        "--models",
        "t/a,t/b",
        "--fallback",
        "t/c",
        "-p",
        "quality",
        "-j",
        "8",
    ];
    // With every model failing 3 times in 10, circuits open (3 failures in
    // a row) and may reopen when their probe fails (10 s, then 20 s, 40 s):
    // a run may wait on them, as it should. The deadline catches a hang.
    let deadline = Duration::from_secs(150);
    let run = run_guarded(env.cmd().args(args), prompts(n), deadline);
    let out = &run.out;
    assert_sane(out);
    let lines = assert_lines(out, &ids(n));
    let mut failed = 0;
    for (i, l) in lines.iter().enumerate() {
        let attempts = l["attempts"].as_array().unwrap();
        assert!(!attempts.is_empty() && attempts.len() <= 3, "{l}");
        if l["error"].is_null() {
            let model = l["model"].as_str().unwrap();
            assert_eq!(l["content"], format!("[{model}] p{}", i + 1), "{l}");
            assert_eq!(attempts.last().unwrap()["model"], model);
            for a in &attempts[..attempts.len() - 1] {
                assert_eq!(a["status"], 500, "{l}");
            }
        } else {
            failed += 1;
            assert_eq!(l["error"]["type"], "all_models_failed", "{l}");
            assert!(l["error"]["message"].as_str().unwrap().contains("HTTP 500"));
            assert_eq!(attempts.len(), 3, "a, b, then the fallback c: {l}");
        }
    }
    // 0.3³ of the lines fail on all three models: about 4 of 150.
    assert!(failed < 20, "{failed} lines failed");
    out.assert_code(if failed > 0 { 1 } else { 0 });
    assert!(env.server.count_for("t/c") > 0, "the fallback was used");
    assert_attempts_recorded(&env);
    assert_eq!(env.count("SELECT count(*) FROM requests"), n as i64);
    assert_eq!(env.count("SELECT count(*) FROM cache") as usize, n - failed);

    // A re-run sends only the lines that failed.
    env.server.clear_log();
    for m in ["t/a", "t/b", "t/c"] {
        env.server.set_default(m, Behavior::ok());
    }
    let run = run_guarded(env.cmd().args(args), prompts(n), deadline);
    run.out.assert_code(0);
    let lines = assert_lines(&run.out, &ids(n));
    assert_eq!(
        lines.iter().filter(|l| l["cached"] == false).count(),
        failed
    );
    assert_eq!(env.server.completions().len(), failed);
}
