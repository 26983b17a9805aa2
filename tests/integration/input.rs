//! Where input comes from: pipes, FIFOs and process substitution are read
//! once, whatever the progress bar wants to know.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::util::*;

/// Waits for `child`, killing it if it has not ended after a minute (a
/// hang, which fails the test instead of blocking the suite).
fn wait_or_kill(mut child: std::process::Child) -> Output {
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("waiting works").is_none() {
        if Instant::now() > deadline {
            child.kill().expect("SIGKILL");
            let out = child.wait_with_output().unwrap();
            panic!(
                "llmroute hung; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("llmroute ends");
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Makes a named FIFO and has a thread write `text` into it once.
fn fifo_with(path: &Path, text: String) -> std::thread::JoinHandle<()> {
    let made = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo runs");
    assert!(made.success());
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        // Blocks until llmroute opens the FIFO for reading.
        std::fs::write(&path, text).expect("writing the FIFO");
    })
}

#[test]
fn a_named_fifo_is_read_once_with_or_without_progress() {
    for progress in ["never", "always"] {
        let env = Env::three();
        let fifo = env.path("in.fifo");
        let writer = fifo_with(&fifo, prompts(3));
        let child = env
            .cmd()
            .args(["--models", "t/a", "--progress", progress])
            .arg(&fifo)
            .cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("llmroute starts");
        let out = wait_or_kill(child);
        writer.join().unwrap();
        out.assert_code(0);
        let ids: Vec<String> = out.lines().iter().map(|l| l["id"].to_string()).collect();
        assert_eq!(ids, ["\"r1\"", "\"r2\"", "\"r3\""], "--progress {progress}");
    }
}

#[test]
fn process_substitution_is_read_once_with_a_progress_bar() {
    let env = Env::three();
    let file = env.write("in.jsonl", &prompts(3));
    for progress in ["always", "never"] {
        env.server.clear_log();
        let script = format!(
            "exec \"$0\" --models t/a --progress {progress} <(cat \"$1\") \"$1\" <(cat \"$1\")"
        );
        let child = std::process::Command::new("bash")
            .env_clear()
            .arg("-c")
            .arg(script)
            .arg(bin())
            .arg(&file)
            .envs(env.cmd().cmd.get_envs().filter_map(|(k, v)| Some((k, v?))))
            .current_dir(env.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("bash starts");
        let out = wait_or_kill(child);
        out.assert_code(0);
        let lines = out.lines();
        assert_eq!(lines.len(), 9, "--progress {progress}: {}", out.stderr);
        let numbers: Vec<u64> = lines.iter().map(|l| l["line"].as_u64().unwrap()).collect();
        assert_eq!(numbers, (1..=9).collect::<Vec<_>>());
        // The progress bar's total counts only the regular file.
        if progress == "always" {
            assert!(!out.stderr.contains("/9 lines"), "{}", out.stderr);
        }
    }
}

#[test]
fn a_line_asking_for_a_stream_is_answered_whole_in_one_call() {
    let env = Env::three();
    let input = concat!(
        r#"{"id":"s","prompt":"p1","stream":true,"stream_options":{"include_usage":true}}"#,
        "\n",
        r#"{"id":"b","custom_id":"b","method":"POST","url":"/v1/chat/completions","body":{"messages":[{"role":"user","content":"p2"}],"stream":true}}"#,
        "\n"
    );
    let out = env.cmd().args(["--models", "t/a,t/b"]).stdin(input).run();
    out.assert_code(0);
    let lines = out.lines();
    assert_eq!(lines.len(), 2);
    assert!(lines.iter().all(|l| l["error"].is_null()), "{}", out.stdout);
    let sent = env.server.completions();
    assert_eq!(sent.len(), 2, "one call a line");
    for r in sent {
        let body = r.json();
        assert!(body.get("stream").is_none(), "{body}");
        assert!(body.get("stream_options").is_none(), "{body}");
    }
}

#[test]
fn an_empty_model_list_in_a_line_is_invalid_input() {
    let env = Env::three();
    let input = concat!(
        r#"{"id":1,"prompt":"p","llmroute":{"models":[]}}"#,
        "\n",
        r#"{"id":2,"prompt":"p","llmroute":{"models":" , "}}"#,
        "\n",
        r#"{"id":3,"prompt":"p","llmroute":{"models":["t/b"]}}"#,
        "\n"
    );
    let out = env.cmd().args(["--models", "t/a"]).stdin(input).run();
    out.assert_code(1);
    let lines = out.lines();
    for l in &lines[..2] {
        assert_eq!(l["error"]["type"], "invalid_input", "{l}");
        let message = l["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("llmroute.models lists no model"),
            "{message}"
        );
    }
    assert_eq!(answered_by(&lines[2]), "t/b");
    assert_eq!(env.server.completions().len(), 1);
}

#[test]
fn half_an_emoji_costs_no_line_and_no_second_call() {
    // A lone UTF-16 surrogate escape, as a tool that cuts strings by
    // UTF-16 units writes it: in a line, and in an upstream's answer.
    let env = Env::three();
    let answer = r#"{"id":"c1","object":"chat.completion","model":"t/a","choices":[{"index":0,"message":{"role":"assistant","content":"ok \ud83d"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}"#;
    env.server
        .set_default("t/a", Behavior::status_with_body(200, answer));
    let line = r#"{"id":"cut","prompt":"half an emoji \ud83d here"}"#;
    let out = env
        .cmd()
        .args(["--models", "t/a,t/b"])
        .stdin(format!("{line}\n"))
        .run();
    out.assert_code(0);
    let lines = out.lines();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["id"], "cut", "{}", out.stdout);
    assert_eq!(lines[0]["model"], "t/a", "{}", out.stdout);
    assert_eq!(lines[0]["content"], "ok \u{fffd}", "{}", out.stdout);
    assert_eq!(env.server.completions().len(), 1);
    let sent: serde_json::Value =
        serde_json::from_slice(&env.server.completions()[0].body).unwrap();
    assert_eq!(
        sent["messages"][0]["content"],
        "half an emoji \u{fffd} here"
    );
}
