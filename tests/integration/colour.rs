//! `--color auto|always|never` beside `NO_COLOR`: every coloured output
//! (the report's table, the progress bar) follows it.

use crate::util::*;

const ESC: char = '\x1b';

/// A store with a few answered lines in it.
fn env_with_traffic() -> Env {
    let env = Env::three();
    env.cmd()
        .args(["--models", "t/a,t/b", "-q"])
        .stdin(prompts(3))
        .run()
        .assert_code(0);
    env
}

#[test]
fn report_colour_follows_the_color_flag_over_no_color() {
    let env = env_with_traffic();
    let report = |args: &[&str], env_vars: &[(&str, &str)]| {
        let mut cmd = env.cmd().arg("report").args(args);
        for (k, v) in env_vars {
            cmd = cmd.env(k, v);
        }
        let out = cmd.run();
        out.assert_code(0);
        out.stdout
    };
    // Not a terminal: no colour unless asked for, and then even with NO_COLOR.
    assert!(!report(&[], &[]).contains(ESC));
    assert!(report(&["--color", "always"], &[]).contains(ESC));
    assert!(report(&["--color", "always"], &[("NO_COLOR", "1")]).contains(ESC));
    assert!(!report(&["--color", "never"], &[]).contains(ESC));
    assert!(!report(&["--color", "auto"], &[]).contains(ESC));

    // A terminal: colour unless NO_COLOR or --color never.
    let tty = |args: &[&str], env_vars: &[(&str, &str)]| {
        let mut all = vec!["report"];
        all.extend_from_slice(args);
        let out = env.on_terminal(&all, env_vars);
        out.assert_code(0);
        assert!(out.stdout.contains("llmroute report"), "{}", out.stdout);
        out.stdout
    };
    assert!(tty(&[], &[]).contains(ESC));
    assert!(!tty(&[], &[("NO_COLOR", "1")]).contains(ESC));
    assert!(!tty(&["--color", "never"], &[]).contains(ESC));
    assert!(tty(&["--color", "always"], &[("NO_COLOR", "1")]).contains(ESC));
}

#[test]
fn a_report_written_to_a_file_is_plain_even_from_a_terminal() {
    let env = env_with_traffic();
    let file = env.path("report.txt");
    env.on_terminal(&["report", "-o", file.to_str().unwrap()], &[])
        .assert_code(0);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("llmroute report"), "{text}");
    assert!(!text.contains(ESC), "{text:?}");
}

#[test]
fn the_progress_bar_draws_without_escapes_unless_colour_is_on() {
    let env = Env::three();
    env.server.set_default("t/a", Behavior::ok_after(300));
    let file = env.write("in.jsonl", &prompts(2));
    let run = |colour: &str| {
        let out = env
            .cmd()
            .args(["--models", "t/a", "-j", "1", "--progress", "always"])
            .args(["--color", colour])
            .arg(&file)
            .run();
        out.assert_code(0);
        assert!(out.stderr.contains("lines ·"), "a bar: {:?}", out.stderr);
        out.stderr
    };
    let plain = run("never");
    assert!(!plain.contains(ESC), "{plain:?}");
    assert!(run("always").contains(ESC));
    // A terminal with --color never: the bar is drawn, with no escape.
    let out = env.on_terminal(
        &[
            "--models",
            "t/a",
            "-j",
            "1",
            "--color",
            "never",
            file.to_str().unwrap(),
        ],
        &[],
    );
    out.assert_code(0);
    assert!(out.stdout.contains("lines ·"), "a bar: {:?}", out.stdout);
    assert!(!out.stdout.contains(ESC), "{:?}", out.stdout);
}

#[test]
fn usage_errors_and_help_follow_the_color_flag_too() {
    let env = Env::three();
    // clap colours a terminal only when TERM names one.
    let tty = |args: &[&str]| {
        let out = env.on_terminal(args, &[("TERM", "xterm")]);
        assert!(out.stdout.contains("llmroute"), "{}", out.stdout);
        out.stdout
    };
    assert!(tty(&["--bogus"]).contains(ESC));
    assert!(!tty(&["--bogus", "--color", "never"]).contains(ESC));
    assert!(!tty(&["--color=never", "report", "--bogus"]).contains(ESC));
    assert!(!tty(&["--help", "--color", "never"]).contains(ESC));
    let out = env.cmd().args(["--bogus", "--color", "always"]).run();
    out.assert_code(2);
    assert!(out.stderr.contains(ESC), "{:?}", out.stderr);
}
