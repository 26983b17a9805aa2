//! Hostile and malformed input through the binary: invalid UTF-8, NUL bytes,
//! CRLF, no final newline, a 10 MB line, nesting deep enough to overflow a
//! naive parser's stack, duplicate ids, numbers beyond f64 and u64, random
//! bytes. Whatever the line, llmroute writes exactly one output line for it
//! (blank lines excepted) and never crashes.

use std::time::Duration;

use serde_json::{json, Value};

use crate::faults::{assert_attempts_recorded, assert_lines, assert_sane, run_guarded};
use crate::util::*;

const DEADLINE: Duration = Duration::from_secs(30);

/// (line number, id, error type) of every output line.
fn summary(lines: &[Value]) -> Vec<(Value, Value, Value)> {
    lines
        .iter()
        .map(|l| {
            (
                l["line"].clone(),
                l["id"].clone(),
                l["error"]["type"].clone(),
            )
        })
        .collect()
}

#[test]
fn invalid_utf8_nul_bytes_crlf_and_a_missing_final_newline_get_one_line_each() {
    let env = Env::three();
    let mut input: Vec<u8> = Vec::new();
    input.extend_from_slice(b"{\"id\":\"crlf\",\"prompt\":\"a\"}\r\n");
    input.extend_from_slice(b"{\"id\":\"utf8\",\"prompt\":\"\xff\xfe\xc3\x28\"}\r\n");
    input.extend_from_slice(b"{\"id\":\"nul-outside\",\x00\"prompt\":\"x\"}\n");
    input.extend_from_slice(b"{\"id\":\"nul-inside\",\"prompt\":\"a\x00b\"}\n");
    input.extend_from_slice(b"{\"id\":\"nul-escaped\",\"prompt\":\"a\\u0000b\"}\n");
    input.extend_from_slice(b"\x00\x00\x00\n");
    input.extend_from_slice(b"\r\n \t \r\n");
    input.extend_from_slice(b"\xEF\xBB\xBF{\"id\":\"bom\",\"prompt\":\"c\"}\r\n");
    input.extend_from_slice(b"{\"id\":\"two-cr\",\"prompt\":\"d\"}\r\r\n");
    input.extend_from_slice(b"\xc0\x80\n");
    input.extend_from_slice(b"{\"id\":\"last\",\"prompt\":\"no newline\"}");
    let run = run_guarded(
        env.cmd().args(["--models", "t/a", "-j", "4"]),
        input,
        DEADLINE,
    );
    let out = &run.out;
    assert_sane(out);
    out.assert_code(1);
    let lines = out.lines();
    let n = Value::Null;
    let bad = json!("invalid_input");
    assert_eq!(
        summary(&lines),
        vec![
            (json!(1), json!("crlf"), n.clone()),
            (json!(2), n.clone(), bad.clone()),
            (json!(3), n.clone(), bad.clone()),
            (json!(4), n.clone(), bad.clone()),
            (json!(5), json!("nul-escaped"), n.clone()),
            (json!(6), n.clone(), bad.clone()),
            (json!(9), json!("bom"), n.clone()),
            (json!(10), json!("two-cr"), n.clone()),
            (json!(11), n.clone(), bad.clone()),
            (json!(12), json!("last"), n.clone()),
        ]
    );
    let msg = |i: usize| lines[i]["error"]["message"].as_str().unwrap().to_string();
    assert!(msg(1).contains("UTF-8"), "{}", msg(1));
    assert!(msg(2).starts_with("invalid JSON"), "{}", msg(2));
    assert!(msg(3).starts_with("invalid JSON"), "{}", msg(3));
    assert!(msg(8).contains("UTF-8"), "{}", msg(8));
    // An escaped NUL is text like any other: sent and answered.
    assert_eq!(lines[4]["content"], "[t/a] a\u{0}b");
    assert_eq!(lines[9]["content"], "[t/a] no newline");
    assert_eq!(env.server.completions().len(), 5);
    assert!(env
        .server
        .completions()
        .iter()
        .any(|r| r.json()["messages"][0]["content"] == "a\u{0}b"));
    assert_attempts_recorded(&env);
}

#[test]
fn a_file_without_a_final_newline_is_not_glued_to_the_next_file() {
    let env = Env::three();
    let a = env.write(
        "a.jsonl",
        "{\"id\":\"a1\",\"prompt\":\"x\"}\r\n{\"id\":\"a2\",\"prompt\":\"y\"}",
    );
    let b = env.write("b.jsonl", "{\"id\":\"b1\",\"prompt\":\"z\"}");
    let mut cmd = env.cmd().args(["--models", "t/a"]);
    cmd = cmd.arg(&a).arg(&b);
    let run = run_guarded(cmd, Vec::new(), DEADLINE);
    assert_sane(&run.out);
    run.out.assert_code(0);
    let lines = assert_lines(&run.out, &[json!("a1"), json!("a2"), json!("b1")]);
    let contents: Vec<&str> = lines
        .iter()
        .map(|l| l["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, vec!["[t/a] x", "[t/a] y", "[t/a] z"]);
}

#[test]
fn a_10_mb_line_gets_one_line_refusing_it_for_every_context_window() {
    let env = Env::three();
    let prompt = "word ".repeat(2_000_000);
    let mut input = format!("{{\"id\":\"huge\",\"prompt\":\"{prompt}\"}}\n");
    input.push_str("{\"id\":\"after\",\"prompt\":\"small\"}\n");
    assert!(input.len() > 10_000_000);
    let run = run_guarded(env.cmd().args(["--models", "t/a,t/b,t/c"]), input, DEADLINE);
    let out = &run.out;
    assert_sane(out);
    out.assert_code(1);
    let lines = assert_lines(out, &[json!("huge"), json!("after")]);
    assert_eq!(lines[0]["error"]["type"], "no_eligible_model");
    let msg = lines[0]["error"]["message"].as_str().unwrap();
    assert!(msg.contains("context window"), "{msg}");
    assert!(
        out.stdout.len() < 10_000,
        "the prompt is not echoed back ({} bytes of output)",
        out.stdout.len()
    );
    assert_eq!(lines[1]["error"], Value::Null);
    assert_eq!(
        env.server.completions().len(),
        1,
        "only the small line is sent"
    );
}

#[test]
fn deeply_nested_json_is_invalid_input_not_a_stack_overflow() {
    let env = Env::three();
    let depth = 100_000;
    let mut input = String::new();
    input.push_str(&"[".repeat(depth));
    input.push('\n');
    input.push_str(&format!("{}{}\n", "[".repeat(depth), "]".repeat(depth)));
    input.push_str(&format!(
        "{}1{}\n",
        "{\"a\":".repeat(depth),
        "}".repeat(depth)
    ));
    input.push_str(&format!(
        "{{\"id\":\"deep-field\",\"prompt\":\"x\",\"extra\":{}{}}}\n",
        "[".repeat(depth),
        "]".repeat(depth)
    ));
    // Shallow enough for any parser: passed upstream untouched.
    input.push_str(&format!(
        "{{\"id\":\"nested-ok\",\"prompt\":\"y\",\"extra\":{}0{}}}\n",
        "[".repeat(100),
        "]".repeat(100)
    ));
    let run = run_guarded(env.cmd().args(["--models", "t/a"]), input, DEADLINE);
    let out = &run.out;
    assert_sane(out);
    out.assert_code(1);
    let lines = out.lines();
    let n = Value::Null;
    let bad = json!("invalid_input");
    assert_eq!(
        summary(&lines),
        vec![
            (json!(1), n.clone(), bad.clone()),
            (json!(2), n.clone(), bad.clone()),
            (json!(3), n.clone(), bad.clone()),
            (json!(4), n.clone(), bad.clone()),
            (json!(5), json!("nested-ok"), n.clone()),
        ]
    );
    for l in &lines[..4] {
        assert!(l["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid JSON"));
    }
    let sent = env.server.completions();
    assert_eq!(sent.len(), 1);
    let mut extra = &sent[0].json()["extra"];
    for _ in 0..100 {
        extra = &extra[0];
    }
    assert_eq!(extra, &json!(0));
}

#[test]
fn duplicate_ids_are_all_answered_and_echoed() {
    let env = Env::three();
    let input = concat!(
        "{\"id\":\"dup\",\"prompt\":\"one\"}\n",
        "{\"id\":\"dup\",\"prompt\":\"two\"}\n",
        "{\"id\":\"dup\",\"prompt\":\"one\"}\n",
        "{\"id\":7,\"prompt\":\"three\"}\n",
        "{\"custom_id\":7,\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{\"messages\":[{\"role\":\"user\",\"content\":\"four\"}]}}\n",
        "{\"id\":{\"k\":[1,2]},\"prompt\":\"five\"}\n",
        "{\"id\":{\"k\":[1,2]},\"prompt\":\"five\"}\n",
    );
    let run = run_guarded(
        env.cmd().args(["--models", "t/a", "-j", "1"]),
        input,
        DEADLINE,
    );
    let out = &run.out;
    assert_sane(out);
    out.assert_code(0);
    let obj = json!({"k": [1, 2]});
    let lines = assert_lines(
        out,
        &[
            json!("dup"),
            json!("dup"),
            json!("dup"),
            json!(7),
            json!(7),
            obj.clone(),
            obj,
        ],
    );
    let contents: Vec<&str> = lines
        .iter()
        .map(|l| l["content"].as_str().unwrap())
        .collect();
    assert_eq!(
        contents,
        vec![
            "[t/a] one",
            "[t/a] two",
            "[t/a] one",
            "[t/a] three",
            "[t/a] four",
            "[t/a] five",
            "[t/a] five"
        ]
    );
    // Repeated requests are answered from the cache whatever their id.
    let cached: Vec<bool> = lines.iter().map(|l| l["cached"] == true).collect();
    assert_eq!(cached, vec![false, false, true, false, false, false, true]);
    assert_eq!(env.server.completions().len(), 5);
    assert_eq!(env.count("SELECT count(*) FROM requests"), 7);
}

#[test]
fn numbers_beyond_f64_are_refused_and_big_ones_are_passed_on() {
    let env = Env::three();
    let input = concat!(
        "{\"id\":\"mt-inf\",\"prompt\":\"a\",\"max_tokens\":1e400}\n",
        "{\"id\":\"t-inf\",\"prompt\":\"b\",\"temperature\":-1e400}\n",
        "{\"id\":\"t-big\",\"prompt\":\"c\",\"temperature\":123456789012345678901234567890}\n",
        "{\"id\":\"mt-neg\",\"prompt\":\"d\",\"max_tokens\":-1e300}\n",
        "{\"id\":\"mt-frac\",\"prompt\":\"e\",\"max_tokens\":1.5}\n",
        "{\"id\":\"mt-2p53\",\"prompt\":\"f\",\"max_tokens\":9007199254740993}\n",
        "{\"id\":\"seed-big\",\"prompt\":\"g\",\"seed\":-123456789012345678901234567890}\n",
        "{\"id\":\"tiny\",\"prompt\":\"h\",\"temperature\":1e-400}\n",
    );
    let run = run_guarded(env.cmd().args(["--models", "t/a"]), input, DEADLINE);
    let out = &run.out;
    assert_sane(out);
    out.assert_code(1);
    let lines = out.lines();
    let n = Value::Null;
    assert_eq!(
        summary(&lines),
        vec![
            (json!(1), n.clone(), json!("invalid_input")),
            (json!(2), n.clone(), json!("invalid_input")),
            (json!(3), json!("t-big"), n.clone()),
            (json!(4), json!("mt-neg"), json!("invalid_input")),
            (json!(5), json!("mt-frac"), json!("invalid_input")),
            (json!(6), json!("mt-2p53"), json!("no_eligible_model")),
            (json!(7), json!("seed-big"), n.clone()),
            (json!(8), json!("tiny"), n.clone()),
        ]
    );
    assert!(lines[0]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("out of range"));
    // A negative or fractional max_tokens is the line's error, not sent.
    let sent = env.server.completions();
    assert_eq!(sent.len(), 3);
    let body = |c: &str| {
        sent.iter()
            .map(|r| r.json())
            .find(|b| b["messages"][0]["content"] == c)
            .unwrap()
    };
    assert_eq!(
        body("c")["temperature"].as_f64(),
        Some(1.2345678901234568e29)
    );
    assert!(lines[3]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("whole number"));
    assert_eq!(body("g")["seed"].as_f64(), Some(-1.2345678901234568e29));
    assert_attempts_recorded(&env);
}

#[test]

fn max_tokens_beyond_u64_is_refused_not_a_crash() {
    let env = Env::three();
    let input = concat!(
        "{\"id\":\"mt-u64\",\"prompt\":\"a\",\"max_tokens\":18446744073709551615}\n",
        "{\"id\":\"mt-1e30\",\"prompt\":\"b\",\"max_tokens\":123456789012345678901234567890}\n",
        "{\"id\":\"mct-1e300\",\"prompt\":\"c\",\"max_completion_tokens\":1e300}\n",
        "{\"id\":\"pinned\",\"model\":\"t/b\",\"prompt\":\"d\",\"max_tokens\":1e300}\n",
        "{\"id\":\"ok\",\"prompt\":\"e\"}\n",
    );
    let run = run_guarded(
        env.cmd().args(["--models", "t/a", "--fallback", "t/c"]),
        input,
        DEADLINE,
    );
    let out = &run.out;
    assert_sane(out);
    let lines = assert_lines(
        out,
        &[
            json!("mt-u64"),
            json!("mt-1e30"),
            json!("mct-1e300"),
            json!("pinned"),
            json!("ok"),
        ],
    );
    for l in &lines[..3] {
        assert_eq!(l["error"]["type"], "no_eligible_model", "{l}");
    }
    assert_eq!(
        lines[3]["model"], "t/b",
        "a pinned model is called as asked"
    );
    assert_eq!(lines[4]["error"], Value::Null);
    for r in env.server.completions() {
        let b = r.json();
        let max = b["max_tokens"]
            .as_f64()
            .or(b["max_completion_tokens"].as_f64());
        assert!(
            r.model.as_deref() == Some("t/b") || max.is_none_or(|m| m < 1e6),
            "a model with a known window is not sent an impossible request: {b}"
        );
    }

    // One such line before a long batch neither loses a line nor stalls it.
    let mut input = "{\"id\":\"first\",\"prompt\":\"x\",\"max_tokens\":1e300}\n".to_string();
    input.push_str(&prompts(300));
    let run = run_guarded(
        env.cmd().args(["--models", "t/a", "-j", "8"]),
        input,
        DEADLINE,
    );
    assert_sane(&run.out);
    let mut expected = vec![json!("first")];
    expected.extend(crate::faults::ids(300));
    let lines = assert_lines(&run.out, &expected);
    assert_eq!(lines[0]["error"]["type"], "no_eligible_model");
    run.out.assert_code(1);
}

#[test]
fn random_bytes_get_one_invalid_input_line_per_line() {
    let env = Env::three();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut input = Vec::with_capacity(64 * 1024);
    for _ in 0..64 * 1024 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Newlines are made common so there are many lines.
        let b = (x >> 32) as u8;
        input.push(if b < 12 { b'\n' } else { b });
    }
    let expected = input
        .split(|b| *b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .count();
    assert!(expected > 1000, "{expected} lines");
    let run = run_guarded(env.cmd().args(["--models", "t/a"]), input, DEADLINE);
    let out = &run.out;
    assert_sane(out);
    out.assert_code(1);
    let lines = out.lines();
    assert_eq!(lines.len(), expected);
    for l in &lines {
        assert_eq!(l["error"]["type"], "invalid_input", "{l}");
        assert!(l.to_string().len() < 1000, "short error lines: {l}");
    }
    assert_eq!(env.server.completions().len(), 0);
}
