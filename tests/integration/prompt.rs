//! One prompt on the command line: `llmroute --prompt "..."` routes it as a
//! batch of one line and prints the answer's text.

use crate::util::*;

#[test]
fn a_prompt_argument_prints_only_the_answer() {
    let env = Env::three();
    let out = env
        .cmd()
        .args(["--models", "t/a", "--prompt", "What is 2+2?"])
        .run();
    out.assert_code(0);
    assert_eq!(out.stdout, "[t/a] What is 2+2?\n");
    assert!(
        !out.stderr.contains("lines:"),
        "no batch summary: {}",
        out.stderr
    );
    assert_eq!(env.server.count_for("t/a"), 1);

    // The short flag, and the routing flags apply.
    let out = env
        .cmd()
        .args(["-P", "hi", "--models", "t/b,t/c", "-p", "cost"])
        .run();
    out.assert_code(0);
    assert_eq!(out.stdout, "[t/b] hi\n");
}

#[test]
fn a_prompt_with_json_prints_the_output_line() {
    let env = Env::three();
    let out = env
        .cmd()
        .args(["--models", "t/a", "--json", "-P", "hello"])
        .run();
    out.assert_code(0);
    let lines = out.lines();
    assert_eq!(lines.len(), 1, "{}", out.stdout);
    assert_eq!(lines[0]["line"], 1);
    assert_eq!(lines[0]["model"], "t/a");
    assert_eq!(lines[0]["content"], "[t/a] hello");
    assert!(lines[0]["error"].is_null());
}

#[test]
fn a_prompt_that_fails_says_why_on_stderr() {
    let env = Env::three();
    env.server.set_default("t/a", Behavior::status(500));
    let out = env
        .cmd()
        .args(["--models", "t/a", "--max-attempts", "1", "-P", "hello"])
        .run();
    assert_ne!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout, "");
    assert!(
        out.stderr.starts_with("llmroute: error: "),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("500"), "{}", out.stderr);
    assert!(!out.stderr.contains(KEY));
}

/// `-P "$PROMPT"` with the variable unset would otherwise pay for a
/// question nobody asked.
#[test]
fn an_empty_prompt_is_a_usage_error_and_sends_nothing() {
    let env = Env::three();
    for empty in ["", "  \n"] {
        let out = env.cmd().args(["--models", "t/a", "-P", empty]).run();
        out.assert_code(2);
        assert!(out.stderr.contains("--prompt"), "{}", out.stderr);
        assert!(out.stderr.contains("empty"), "{}", out.stderr);
    }
    assert!(env.server.completions().is_empty());
}

#[test]
fn a_prompt_and_files_together_are_a_usage_error() {
    let env = Env::three();
    let file = env.write("in.jsonl", &prompts(1));
    let out = env.cmd().arg("-P").arg("hi").arg(&file).run();
    out.assert_code(2);
    assert!(out.stderr.contains("--prompt"), "{}", out.stderr);
    assert_eq!(env.server.completions().len(), 0);
    // --json prints a prompt's line; a batch's lines are JSON already.
    let out = env.cmd().arg("--json").arg(&file).run();
    out.assert_code(2);
    assert!(out.stderr.contains("--prompt"), "{}", out.stderr);
}

const HINT: &str = "llmroute: reading requests from standard input (Ctrl-D to end)";

#[test]
fn a_terminal_on_standard_input_is_told_how_to_end_it() {
    let env = Env::three();
    let out = env.on_terminal(&["--dry-run"], &[]);
    out.assert_code(0);
    assert!(out.stdout.contains(HINT), "{:?}", out.stdout);
    assert!(
        out.stdout.contains("0 lines"),
        "the run ended: {:?}",
        out.stdout
    );
    // Not with -q, a file, or a prompt; nor when standard input is a pipe.
    let file = env.write("in.jsonl", &prompts(1));
    for args in [
        &["--dry-run", "-q"][..],
        &["--dry-run", file.to_str().unwrap()],
        &["--dry-run", "-P", "hi"],
    ] {
        let out = env.on_terminal(args, &[]);
        out.assert_code(0);
        assert!(!out.stdout.contains(HINT), "{args:?}: {:?}", out.stdout);
    }
    let out = env.cmd().arg("--dry-run").stdin(prompts(1)).run();
    out.assert_code(0);
    assert!(!out.stderr.contains(HINT), "{}", out.stderr);
}
