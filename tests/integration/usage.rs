//! Flags and commands as a new user meets them: values at the edges, and
//! messages that say what went wrong.

use crate::util::*;

/// A duration past what unix milliseconds hold in an i64.
const HUGE: &str = "1000000000y";

fn no_bug(out: &Output) {
    assert!(
        !out.stderr.contains("internal error") && !out.stderr.contains("panicked"),
        "{}",
        out.stderr
    );
}

#[test]
fn huge_durations_never_overflow() {
    let env = Env::three();
    for (flag, value) in [
        ("--cache-ttl", HUGE),
        ("--timeout", HUGE),
        ("--retention", HUGE),
    ] {
        let out = env
            .cmd()
            .args(["--models", "t/a", flag, value])
            .stdin(prompts(2))
            .run();
        no_bug(&out);
        out.assert_code(0);
        assert_eq!(out.lines().len(), 2);
    }
    // The answers were cached by the first run and are still fresh.
    let out = env
        .cmd()
        .args(["--models", "t/a", "--cache-ttl", HUGE])
        .stdin(prompts(2))
        .run();
    assert!(
        out.lines().iter().all(|l| l["cached"] == true),
        "{}",
        out.stdout
    );
    for args in [
        &["report", "--since", HUGE][..],
        &["report", "--format", "html", "--since", HUGE],
        &["cache", "stats", "--since", HUGE],
        &["cache", "prune", "--older-than", HUGE],
    ] {
        let out = env.cmd().args(args).run();
        no_bug(&out);
        out.assert_code(0);
    }
    assert_eq!(
        env.count("SELECT count(*) FROM cache"),
        2,
        "nothing is that old"
    );
    // A number of seconds no duration holds is a usage error, not a bug.
    for args in [
        &["--timeout", "1e30"][..],
        &["cache", "prune", "--older-than", "1e30"],
    ] {
        let out = env.cmd().args(args).stdin(prompts(1)).run();
        no_bug(&out);
        out.assert_code(2);
        assert!(out.stderr.contains("too large"), "{}", out.stderr);
    }
}

#[test]
fn reading_commands_never_create_a_store() {
    let env = Env::three();
    let typo = env.path("typo.db");
    for args in [
        &["report"][..],
        &["report", "--json"],
        &["models"],
        &["models", "--refresh"],
        &["cache", "stats"],
        &["cache", "clear"],
        &["cache", "prune", "--older-than", "1d"],
    ] {
        let out = env.cmd().args(args).arg("--db").arg(&typo).run();
        out.assert_code(2);
        assert!(out.stdout.is_empty(), "{args:?}: {}", out.stdout);
        assert!(
            out.stderr
                .contains(&format!("no store at {}", typo.display())),
            "{args:?}: {}",
            out.stderr
        );
        assert!(!typo.exists(), "{args:?} created {}", typo.display());
    }
    // A run creates it; then they read it.
    env.cmd()
        .args(["--models", "t/a", "--db"])
        .arg(&typo)
        .stdin(prompts(1))
        .run()
        .assert_code(0);
    for args in [&["report"][..], &["models"], &["cache", "stats"]] {
        env.cmd()
            .args(args)
            .arg("--db")
            .arg(&typo)
            .run()
            .assert_code(0);
    }
}

#[test]
fn a_mistyped_subcommand_is_named_before_the_missing_key() {
    let env = Env::three();
    let out = env
        .cmd()
        .env_remove("OPENROUTER_API_KEY")
        .arg("reprot")
        .run();
    out.assert_code(2);
    assert!(
        out.stderr
            .contains("no such file 'reprot'; did you mean `llmroute report`?"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("API_KEY"), "{}", out.stderr);

    let out = env
        .cmd()
        .env_remove("OPENROUTER_API_KEY")
        .args(["--db", "x.db", "report"])
        .run();
    out.assert_code(2);
    assert!(
        out.stderr.contains("no such file 'report'")
            && out.stderr.contains("`llmroute report --db x.db`"),
        "{}",
        out.stderr
    );
    assert!(!env.path("x.db").exists());
    // A command it suggests works: options the subcommand does not take
    // (`--dry-run` is a run's), or a subcommand that needs its own
    // (`cache stats`), send to its help instead.
    for (args, says) in [
        (
            &["--db", "x.db", "--dry-run", "report"][..],
            "llmroute report --help",
        ),
        (
            &["-p", "cost", "--db", "x.db", "cache"],
            "llmroute cache --help",
        ),
    ] {
        let out = env.cmd().args(args).run();
        out.assert_code(2);
        assert!(out.stderr.contains(says), "{args:?}: {}", out.stderr);
        assert!(
            !out.stderr.contains("did you mean"),
            "{args:?}: {}",
            out.stderr
        );
    }
    // A file that is there is read, whatever its name.
    env.write("report", &prompts(1));
    env.cmd()
        .args(["--models", "t/a", "report"])
        .run()
        .assert_code(0);
}

#[test]
fn a_zero_timeout_or_retention_is_refused_with_its_minimum() {
    let env = Env::three();
    let config = env.write("zero.toml", "retention = \"0s\"\n");
    for (args, minimum) in [
        (&["--timeout", "0"][..], "--timeout must be at least 100ms"),
        (&["--timeout", "10ms"], "--timeout must be at least 100ms"),
        (&["--retention", "0"], "--retention must be at least 1m"),
        (
            &["--config", config.to_str().unwrap()],
            "retention: must be at least 1m",
        ),
    ] {
        let out = env.cmd().args(args).stdin(prompts(1)).run();
        out.assert_code(2);
        assert!(out.stderr.contains(minimum), "{args:?}: {}", out.stderr);
        assert_eq!(env.server.completions().len(), 0);
    }
    let out = env
        .cmd()
        .env("LLMROUTE_TIMEOUT", "0")
        .stdin(prompts(1))
        .run();
    out.assert_code(2);
    assert!(out.stderr.contains("at least 100ms"), "{}", out.stderr);
}

#[test]
fn json_and_another_report_format_conflict() {
    let env = Env::three();
    env.cmd().args(["--dry-run", "-q"]).run().assert_code(0);
    for format in ["table", "prometheus"] {
        let out = env
            .cmd()
            .args(["report", "--json", "--format", format])
            .run();
        out.assert_code(2);
        assert!(
            out.stderr
                .contains(&format!("--json conflicts with --format {format}")),
            "{}",
            out.stderr
        );
        assert!(out.stdout.is_empty());
    }
    for args in [
        &["--json"][..],
        &["--json", "--format", "json"],
        &["--format", "table"],
    ] {
        env.cmd().arg("report").args(args).run().assert_code(0);
    }
}

#[test]
fn config_show_takes_the_flags_of_a_run() {
    let env = Env::three();
    let out = env
        .cmd()
        .args([
            "config", "show", "-p", "cost", "--models", "t/a,t/b", "-j", "3",
        ])
        .args([
            "--timeout",
            "5s",
            "--cache-ttl",
            HUGE,
            "--quality",
            "t/a=0.9",
        ])
        .run();
    out.assert_code(0);
    let shown: toml::Table = out
        .stdout
        .parse()
        .unwrap_or_else(|e| panic!("{e}: {}", out.stdout));
    assert_eq!(shown["priority"].as_str(), Some("cost"));
    assert_eq!(shown["models"].as_array().unwrap().len(), 2);
    assert_eq!(shown["concurrency"].as_integer(), Some(3));
    assert_eq!(shown["timeout"].as_str(), Some("5s"));
    assert_eq!(shown["quality"]["t/a"].as_float(), Some(0.9));
    assert!(out.stdout.contains("from flags"), "{}", out.stdout);
}

#[test]
fn a_multi_line_upstream_error_is_one_line_of_log() {
    let env = Env::three();
    env.server.set_default(
        "t/a",
        Behavior::status_with_body(
            500,
            r#"{"error":{"message":"upstream broke:\n  line two\r\nline three"}}"#,
        ),
    );
    let out = env
        .cmd()
        .args(["--models", "t/a,t/b", "-v"])
        .stdin(prompts(1))
        .run();
    out.assert_code(0);
    for line in out.stderr.lines() {
        assert!(
            line.starts_with("llmroute: "),
            "a log entry spans lines:\n{}",
            out.stderr
        );
    }
    assert!(
        out.stderr.contains("upstream broke: line two line three"),
        "{}",
        out.stderr
    );
}

#[test]
fn cache_stats_and_report_name_a_window_alike() {
    let env = Env::three();
    env.cmd().args(["--dry-run", "-q"]).run().assert_code(0);
    for (since, label) in [("24h", "last 24h"), ("1d", "last 24h"), ("7d", "last 7d")] {
        let stats = env.cmd().args(["cache", "stats", "--since", since]).run();
        stats.assert_code(0);
        assert!(stats.stdout.contains(label), "{since}: {}", stats.stdout);
        let report = env.cmd().args(["report", "--since", since]).run();
        assert!(report.stdout.contains(label), "{since}: {}", report.stdout);
    }
}

/// A server's deadline or body cap that would refuse every request is a
/// usage error, from a flag or the config file.
#[test]
fn a_server_limit_that_refuses_everything_is_refused() {
    let env = Env::three();
    for (flag, value) in [
        ("--deadline", "0s"),
        ("--max-body", "0"),
        ("--max-body", "100B"),
    ] {
        let out = env.cmd().args(["serve", flag, value]).run();
        assert_eq!(out.code, 2, "{flag} {value}: {}", out.stderr);
        assert!(out.stderr.contains("at least"), "{}", out.stderr);
    }
    for (text, line, key) in [
        (
            "[serve]\nmax_body = \"16MiB\"\ndeadline = \"0s\"\n",
            "line 3",
            "serve.deadline",
        ),
        ("[serve]\nlisten = \"nonsense\"\n", "line 2", "serve.listen"),
    ] {
        let cfg = env.write("c.toml", text);
        let out = env
            .cmd()
            .env("LLMROUTE_CONFIG", &cfg)
            .args(["config", "show"])
            .run();
        assert_eq!(out.code, 2, "{}", out.stderr);
        assert!(
            out.stderr.contains(line) && out.stderr.contains(key),
            "{}",
            out.stderr
        );
    }
}

#[test]
fn config_show_refuses_what_a_run_would() {
    let env = Env::three();
    let out = env.cmd().args(["config", "show", "-p", "nosuch"]).run();
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("unknown priority 'nosuch'"),
        "{}",
        out.stderr
    );
    env.cmd()
        .args(["config", "show", "-p", "cost"])
        .run()
        .assert_code(0);
}
