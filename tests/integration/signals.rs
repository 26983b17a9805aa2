//! Ctrl-C, SIGTERM and a closed output.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::util::*;

/// Runs llmroute as `llmroute ARGS FILE | head -n 1` would: reads the first
/// output line, closes the pipe, and returns that line and how it ended.
fn first_line_then_close(env: &Env, args: &[&str], file: &Path) -> (String, std::process::Output) {
    let mut child = env.spawn(args, file);
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    drop(stdout);
    (first, child.wait_with_output().unwrap())
}

/// Starts llmroute on `input`, reads `wait_for` output lines, sends `signal`,
/// and returns (exit status, every output line, stderr).
fn interrupt(
    env: &Env,
    args: &[&str],
    input: &str,
    wait_for: usize,
    signal: &str,
) -> (i32, Vec<String>, String) {
    let file = env.write("batch.jsonl", input);
    let mut child = env.spawn(args, &file);
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    for _ in 0..wait_for {
        let mut l = String::new();
        stdout.read_line(&mut l).unwrap();
        lines.push(l);
    }
    crate::util::signal(child.id(), signal);
    for l in stdout.lines() {
        lines.push(l.unwrap());
    }
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    let status = child.wait().unwrap();
    (status.code().unwrap_or(-1), lines, stderr)
}

#[test]
fn ctrl_c_finishes_in_flight_lines_exits_130_and_a_re_run_pays_only_for_the_rest() {
    let env = Env::three();
    env.server.set_default("t/a", Behavior::ok_after(200));
    let input = prompts(40);
    let (code, lines, stderr) = interrupt(&env, &["--models", "t/a", "-j", "2"], &input, 2, "INT");
    assert_eq!(code, 130, "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(
        lines.len() >= 2 && lines.len() < 40,
        "{} lines",
        lines.len()
    );
    let answered = lines
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|l| l["error"].is_null())
        .count();
    assert_summary_adds_up(&stderr, lines.len());
    assert_eq!(integrity(&env), "ok");
    let sent_first = env.server.completions().len();
    assert!(sent_first >= answered);

    env.server.clear_log();
    env.server.set_default("t/a", Behavior::ok());
    let out = env
        .cmd()
        .args(["--models", "t/a", "-j", "2"])
        .stdin(&input)
        .run();
    out.assert_code(0);
    assert_eq!(out.lines().len(), 40);
    assert_eq!(
        env.server.completions().len(),
        40 - answered,
        "only unanswered lines are sent again"
    );
    assert_eq!(
        out.lines().iter().filter(|l| l["cached"] == true).count(),
        answered
    );
}

/// Lines read but never sent, the run stopping first, are said in the
/// summary, whose counts then add up to the lines read, in any order.
#[test]
fn an_interrupted_unordered_run_s_summary_adds_up() {
    let env = Env::three();
    env.server.set_default("t/a", Behavior::ok_after(50));
    let input = prompts(2000);
    let args = ["--models", "t/a", "-j", "16", "--unordered"];
    let (code, lines, stderr) = interrupt(&env, &args, &input, 20, "TERM");
    assert_eq!(code, 143, "{stderr}");
    assert_summary_adds_up(&stderr, lines.len());
}

/// The summary's counts add up to the lines read, and the lines written
/// to those less the ones never sent (said, not counted as written):
/// "N lines: A answered, C cached, E errors[, U not sent]; ...".
fn assert_summary_adds_up(stderr: &str, written: usize) {
    let summary = stderr
        .lines()
        .find(|l| l.contains(" answered, "))
        .unwrap_or_else(|| panic!("{stderr}"));
    let counts = summary.split(';').next().unwrap();
    let n: Vec<u64> = counts
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    let unsent = n.get(4).copied().unwrap_or(0);
    assert_eq!(n[0], n[1] + n[2] + n[3] + unsent, "{summary}");
    assert_eq!(n[0] - unsent, written as u64, "{summary}");
}

fn integrity(env: &Env) -> String {
    env.value("PRAGMA integrity_check")
}

#[test]
fn sigterm_finishes_in_flight_lines_and_exits_143() {
    let env = Env::three();
    env.server.set_default("t/a", Behavior::ok_after(200));
    let (code, lines, stderr) = interrupt(
        &env,
        &["--models", "t/a", "-j", "1"],
        &prompts(20),
        1,
        "TERM",
    );
    assert_eq!(code, 143, "{stderr}");
    // A second SIGTERM is not a second Ctrl-C: no hint of one.
    assert!(
        stderr.contains("interrupted") && !stderr.contains("Ctrl-C"),
        "{stderr}"
    );
    assert!(lines.len() < 20, "{} lines", lines.len());
    // The 20 lines were read at once: those that waited for a slot are
    // counted as not sent.
    assert!(stderr.contains("llmroute: 20 lines: "), "{stderr}");
    assert_summary_adds_up(&stderr, lines.len());
    // Every line written is whole and answered: the one in flight when the
    // signal came was let finish, not cut off.
    for l in &lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert!(v["error"].is_null(), "{v}");
    }
    assert_eq!(
        lines.len(),
        env.server.completions().len(),
        "each request sent got its line"
    );
    assert_eq!(integrity(&env), "ok");
}

#[test]
fn a_second_ctrl_c_exits_at_once() {
    let env = Env::three();
    // Far longer than the grace period the first Ctrl-C gives in-flight lines.
    env.server.set_default("t/a", Behavior::ok_after(60_000));
    let file = env.write("batch.jsonl", &prompts(10));
    let mut child = env.spawn(&["--models", "t/a", "-j", "2"], &file);
    // Wait (by count, not by time) until both requests are in flight.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while env.server.completions().len() < 2 {
        assert!(std::time::Instant::now() < deadline, "no request was sent");
        std::thread::sleep(Duration::from_millis(10));
    }
    signal(child.id(), "INT");
    // The second Ctrl-C goes once llmroute has said it took the first.
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut said = String::new();
    while !said.contains("interrupted") {
        let mut line = String::new();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "{said}");
        said.push_str(&line);
    }
    assert!(said.contains("Ctrl-C again to quit now"), "{said}");
    // A person's second press, not the same signal delivered twice.
    std::thread::sleep(Duration::from_millis(300));
    signal(child.id(), "INT");
    let out = wait_at_most(child, Duration::from_secs(60));
    std::io::Read::read_to_string(&mut stderr, &mut said).unwrap();
    // At once, not after the 10 s of grace: those would end the two lines
    // in flight as interrupted, on stdout. Quitting at once writes none.
    assert!(said.contains("quitting at once"), "{said}");
    assert_eq!(out.status.code(), Some(130));
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(integrity(&env), "ok");
}

/// `timeout -s INT` signals llmroute and then its process group: the one
/// SIGINT comes twice at once. That is one Ctrl-C: the lines in flight
/// finish within the grace period, and the run ends as interrupted.
#[test]
fn a_sigint_delivered_twice_at_once_is_one_ctrl_c() {
    let env = Env::three();
    env.server.set_default("t/a", Behavior::ok_after(1_500));
    let file = env.write("batch.jsonl", &prompts(10));
    let child = env.spawn(&["--models", "t/a", "-j", "2"], &file);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while env.server.completions().len() < 2 {
        assert!(std::time::Instant::now() < deadline, "no request was sent");
        std::thread::sleep(Duration::from_millis(10));
    }
    signal(child.id(), "INT");
    signal(child.id(), "INT");
    let out = wait_at_most(child, Duration::from_secs(60));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!said.contains("quitting at once"), "{said}");
    assert_eq!(out.status.code(), Some(130), "{said}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let answered = stdout
        .lines()
        .filter(|l| l.contains("\"error\":null"))
        .count();
    assert_eq!(answered, 2, "the two in flight finish: {stdout}");
    assert_eq!(integrity(&env), "ok");
}

#[test]
fn a_live_run_piped_into_head_ends_quietly_and_keeps_the_store() {
    let env = Env::three();
    // 1,000 lines of 50 ms at -j 4 take over 12 s: the closed pipe is seen
    // long before, however loaded the machine.
    env.server.set_default("t/a", Behavior::ok_after(50));
    let file = env.write("batch.jsonl", &prompts(1000));
    let (first, out) = first_line_then_close(&env, &["--models", "t/a", "-j", "4"], &file);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    assert!(first.contains("\"line\":1"), "{first}");
    assert_eq!(integrity(&env), "ok");
    let sent = env.server.completions().len();
    assert!(sent < 1000, "the run stopped early ({sent} requests)");
    let cached = env.count("SELECT count(*) FROM cache") as usize;
    assert!(
        cached >= 1 && cached <= sent,
        "{cached} cached, {sent} sent"
    );
}

#[test]
fn a_closed_output_ends_quietly_with_status_0() {
    let env = Env::three();
    let input = prompts(20_000);
    let file = env.write("big.jsonl", &input);
    let (first, out) = first_line_then_close(&env, &["--dry-run"], &file);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    assert!(first.contains("\"line\":1"));
}

#[test]
fn a_run_with_its_output_closed_sends_nothing() {
    // `llmroute batch.jsonl >&-`: no answer could be written, so none is
    // paid for.
    use std::os::unix::process::CommandExt;
    let env = Env::three();
    env.server.set_default("t/a", Behavior::ok_after(0));
    let file = env.write("batch.jsonl", &prompts(20));
    let mut cmd = env.cmd().args(["--models", "t/a"]).arg(&file).cmd;
    // SAFETY: close(2) is async-signal-safe, as pre_exec asks.
    unsafe {
        cmd.pre_exec(|| {
            libc::close(1);
            Ok(())
        });
    }
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("llmroute runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("standard output is closed"), "{stderr}");
    assert_eq!(env.server.completions().len(), 0);
}

#[test]
fn a_run_whose_output_goes_to_dev_null_opened_read_write_is_answered() {
    // Python's `subprocess.DEVNULL` and systemd's `StandardOutput=null`
    // open /dev/null read-write: output thrown away on purpose, the cache
    // filled, not an output closed.
    let env = Env::three();
    env.server.set_default("t/a", Behavior::ok_after(0));
    let file = env.write("batch.jsonl", &prompts(3));
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .unwrap();
    let out = env
        .cmd()
        .args(["--models", "t/a"])
        .arg(&file)
        .cmd
        .stdin(Stdio::null())
        .stdout(Stdio::from(null))
        .stderr(Stdio::piped())
        .output()
        .expect("llmroute runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(env.server.completions().len(), 3);
}

#[test]
fn sigterm_ends_a_run_whose_output_nobody_reads() {
    // A reader downstream that stalls: the output blocks for good, and a
    // supervisor's SIGTERM must still end the run, its store consistent.
    let env = Env::three();
    env.server.set_default("t/a", Behavior::ok_after(0));
    let lines: String = (0..300)
        .map(|i| format!("{{\"prompt\":\"{i} {}\"}}\n", "x".repeat(2000)))
        .collect();
    let file = env.write("big.jsonl", &lines);
    let mut child = env.spawn(&["--models", "t/a", "-j", "8"], &file);
    // Held, never read: the pipe fills.
    let _stalled = child.stdout.take();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while env.server.completions().len() < 100 {
        assert!(std::time::Instant::now() < deadline, "no request was sent");
        std::thread::sleep(Duration::from_millis(10));
    }
    signal(child.id(), "TERM");
    let limit = std::time::Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > limit {
            child.kill().unwrap();
            panic!("still running 90 s after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(143));
    assert_eq!(integrity(&env), "ok");
}

/// Starts llmroute on `input` (read to its end at once), waits until `sent`
/// requests reached the server, and sends SIGINT.
fn interrupt_once_sent(env: &Env, args: &[&str], input: &str, sent: usize) -> std::process::Child {
    let file = env.write("batch.jsonl", input);
    let child = env.spawn(args, &file);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while env.server.completions().len() < sent {
        assert!(std::time::Instant::now() < deadline, "no request was sent");
        std::thread::sleep(Duration::from_millis(10));
    }
    signal(child.id(), "INT");
    child
}

/// Waits for `child` at most `limit`; kills it and fails past that.
fn wait_at_most(mut child: std::process::Child, limit: Duration) -> std::process::Output {
    let deadline = std::time::Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "still running after {limit:?}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn after_the_grace_period_lines_in_flight_are_interrupted_in_order_and_counted() {
    let env = Env::three();
    // Never answers, and the attempt's own time limit is far away: only the
    // grace period (10 s) can end these lines.
    env.server.set_default("t/a", Behavior::Hang);
    let child = interrupt_once_sent(
        &env,
        &["--models", "t/a", "-j", "2", "--timeout", "10m"],
        &prompts(2),
        2,
    );
    // All input was handed out before Ctrl-C; the grace period still holds.
    let out = wait_at_most(child, Duration::from_secs(45));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let order: Vec<u64> = lines.iter().map(|l| l["line"].as_u64().unwrap()).collect();
    assert_eq!(order, [1, 2], "in input order");
    for l in &lines {
        assert_eq!(l["error"]["type"], "interrupted", "{l}");
        assert_eq!(l["attempts"].as_array().map(Vec::len), Some(1), "{l}");
    }
    assert!(
        stderr.contains("2 lines: 0 answered, 0 cached, 2 errors"),
        "{stderr}"
    );
    assert_eq!(integrity(&env), "ok");
}

#[test]
fn a_line_sent_before_ctrl_c_that_then_fails_is_not_called_unsent() {
    let env = Env::three();
    env.server.set_default("t/a", Behavior::Hang);
    // The attempt times out within the grace period, after Ctrl-C.
    let child = interrupt_once_sent(
        &env,
        &["--models", "t/a,t/b", "-j", "1", "--timeout", "2s"],
        &prompts(1),
        1,
    );
    let out = wait_at_most(child, Duration::from_secs(30));
    let line: serde_json::Value =
        serde_json::from_str(String::from_utf8(out.stdout).unwrap().trim()).unwrap();
    assert_eq!(line["error"]["type"], "interrupted", "{line}");
    let message = line["error"]["message"].as_str().unwrap();
    assert!(!message.contains("not sent"), "{message}");
    assert!(message.contains("after 1 attempt"), "{message}");
    assert_eq!(
        env.server.completions().len(),
        1,
        "t/b is not tried after Ctrl-C"
    );
}

#[test]
#[cfg_attr(
    not(debug_assertions),
    ignore = "needs a debug build: release builds have no commit delay hook"
)]
fn ctrl_c_while_the_store_is_flushed_quits() {
    let env = Env::three();
    // Lines that fail are written at once; their records then wait for the
    // store, held back 60 s a transaction by a debug-only hook.
    env.server.set_default("t/a", Behavior::status(400));
    let file = env.write("batch.jsonl", &prompts(3));
    let mut child = env
        .cmd()
        .args(["--models", "t/a"])
        .arg(&file)
        .env("LLMROUTE_COMMIT_DELAY_MS", "60000")
        .cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    for _ in 0..3 {
        let mut l = String::new();
        stdout.read_line(&mut l).unwrap();
        assert!(l.contains("bad_request"), "{l}");
    }
    // Every line is out: the run is ending, and the store being flushed.
    // Ctrl-C is sent until it is heard (the first may land between the run
    // and the flush).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "Ctrl-C was not heard during the flush"
        );
        signal(child.id(), "INT");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(child.wait().unwrap().code(), Some(130));
    assert_eq!(integrity(&env), "ok");
}

/// Runs `cmd` with its stderr a pipe whose reader has already gone, as
/// under `2> >(exec true)` or `2>&1 >file | head -n 1`.
fn with_stderr_gone(mut cmd: std::process::Command) -> std::process::Output {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(writer)
        .output()
        .expect("llmroute runs")
}

#[test]
fn a_command_whose_stderr_reader_has_gone_exits_with_its_own_status() {
    // A fatal error it cannot show: the status still says what happened,
    // and the process is not aborted by the message it could not write.
    let env = Env::three();
    let missing = env.dir.path().join("nope.db");
    let mut cmd = std::process::Command::new(bin());
    cmd.args(["report", "--db"]).arg(&missing);
    let out = with_stderr_gone(cmd);
    assert_eq!(out.status.code(), Some(2), "{:?}", out.status);
}

#[test]
fn a_run_whose_stderr_reader_has_gone_answers_every_line() {
    // Warnings (here: candidates the catalogue lacks) go nowhere; the run
    // still answers each line and ends as it would have.
    let env = Env::three();
    env.server.set_default("t/a", Behavior::ok_after(0));
    let file = env.write("batch.jsonl", &prompts(3));
    let cmd = env
        .cmd()
        .args(["--models", "t/a,no/such-model"])
        .arg(&file)
        .cmd;
    let out = with_stderr_gone(cmd);
    assert_eq!(out.status.code(), Some(0), "{:?}", out.status);
    let lines = String::from_utf8_lossy(&out.stdout).lines().count();
    assert_eq!(lines, 3);
}
