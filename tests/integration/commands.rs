//! `llmroute models` and `llmroute cache`.

use serde_json::Value;

use crate::util::*;

/// A dry run of no lines: the store exists, empty.
fn create_store(env: &Env) {
    env.cmd().args(["--dry-run", "-q"]).run().assert_code(0);
    assert!(env.db().exists());
}

fn json(out: &Output) -> Value {
    out.assert_code(0);
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

#[test]
fn models_lists_prices_measurements_cooldowns_and_scores() {
    let env = Env::three();
    env.server.set_default("t/a", Behavior::ok_after(30));
    env.server.script(
        "t/b",
        [Behavior::status(500), Behavior::rate_limited(Some(600))],
    );
    // Line 1: t/b fails (500) then t/a answers; line 2: t/b is rate limited, t/a answers.
    let pinned = "{\"model\":\"t/b\",\"prompt\":\"1\"}\n{\"model\":\"t/b\",\"prompt\":\"2\"}\n{\"model\":\"t/c\",\"prompt\":\"3\"}\n";
    env.cmd()
        .args(["--fallback", "t/a", "-j", "1", "--models", "t/a,t/b,t/c"])
        .stdin(pinned)
        .run()
        .assert_code(0);

    let rows = json(
        &env.cmd()
            .args(["models", "--models", "t/a,t/b,t/c", "-p", "speed", "--json"])
            .run(),
    );
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 3);
    let scores: Vec<f64> = rows.iter().map(|r| r["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    let row = |m: &str| rows.iter().find(|r| r["model"] == m).unwrap().clone();
    let a = row("t/a");
    assert_eq!(a["prompt_usd_per_mtok"], 1.0);
    assert_eq!(a["completion_usd_per_mtok"], 2.0);
    assert_eq!(a["latency_ms"]["samples"], 2);
    let ewma: f64 = env.value("SELECT ewma_ms FROM model_stats WHERE model = 't/a'");
    assert!((a["latency_ms"]["ewma"].as_f64().unwrap() - ewma).abs() < 0.001);
    assert!(a["latency_ms"]["p95"].as_f64().unwrap() >= 30.0);
    assert_eq!(a["error_rate"], 0.0);
    let b = row("t/b");
    assert_eq!(
        (
            b["attempts"].clone(),
            b["errors"].clone(),
            b["error_rate"].clone()
        ),
        (2.into(), 2.into(), 1.0.into())
    );
    // Never answered: no latency, not one of 0 ms.
    assert_eq!(b["latency_ms"]["samples"], 0, "{b}");
    assert!(b["latency_ms"]["ewma"].is_null(), "{b}");
    // Retry-After 600 s, capped at 5 minutes.
    let (until, now) = (
        b["cooldown_until"].as_i64().unwrap(),
        llmroute::store::now_ms(),
    );
    assert!(
        until > now + 250_000 && until <= now + 300_000,
        "{}",
        until - now
    );
    assert_eq!(b["latency_ms"]["samples"], 0);
    assert_eq!(row("t/c")["latency_ms"]["samples"], 1);
    assert!((row("t/a")["quality"].as_f64().unwrap() - 0.8).abs() < 1e-9);
    assert_eq!(a["context_length"], 128_000, "from the catalogue");

    // --weights re-ranks. Here t/a is the cheapest and the smartest, but the
    // slowest measured (30 ms; t/c answered at once). t/b, never measured,
    // is ranked as twice the slowest measured: all weight on latency puts it
    // last, and t/a just before it.
    let order = |weights: &str| -> Vec<String> {
        let rows = json(
            &env.cmd()
                .args([
                    "models",
                    "--models",
                    "t/a,t/b,t/c",
                    "--weights",
                    weights,
                    "--json",
                ])
                .run(),
        );
        rows.as_array()
            .unwrap()
            .iter()
            .map(|r| r["model"].as_str().unwrap().to_string())
            .collect()
    };
    // By cost alone t/a leads; t/b is half t/c's price, but its failure
    // (the 500) weighs more than that.
    assert_eq!(order("cost=1"), ["t/a", "t/c", "t/b"]);
    assert_eq!(order("latency=1"), ["t/c", "t/a", "t/b"]);

    let table = env.cmd().args(["models", "--models", "t/a,t/b,t/c"]).run();
    table.assert_code(0);
    for m in ["t/a", "t/b", "t/c", "score", "cooldown"] {
        assert!(table.stdout.contains(m), "{m} missing:\n{}", table.stdout);
    }
}

#[test]
fn models_all_lists_the_catalogue_and_refresh_refetches_it() {
    let env = Env::three();
    create_store(&env);
    let all = json(&env.cmd().args(["models", "--all", "--json"]).run());
    assert_eq!(all.as_array().unwrap().len(), 3);
    let fetches = || {
        env.server
            .requests()
            .iter()
            .filter(|r| r.path.ends_with("/models"))
            .count()
    };
    assert_eq!(fetches(), 1);
    env.cmd().args(["models", "--json"]).run().assert_code(0);
    assert_eq!(fetches(), 1, "a fresh stored catalogue is reused");
    env.cmd()
        .args(["models", "--json", "--refresh"])
        .run()
        .assert_code(0);
    assert_eq!(fetches(), 2);
    // Models outside the catalogue are listed and marked.
    let rows = json(
        &env.cmd()
            .args(["models", "--models", "t/a,x/unknown", "--json"])
            .run(),
    );
    let unknown = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["model"] == "x/unknown")
        .unwrap()
        .clone();
    assert_eq!(unknown["in_catalogue"], false);
    assert_eq!(unknown["prompt_usd_per_mtok"], Value::Null);
}

#[test]
fn cache_stats_prune_and_clear() {
    let env = Env::three();
    create_store(&env);
    let stats = |since: &str| {
        json(
            &env.cmd()
                .args(["cache", "stats", "--json", "--since", since])
                .run(),
        )
    };
    let s = stats("24h");
    assert_eq!(
        (
            s["entries"].clone(),
            s["lookups"].clone(),
            s["hit_rate"].clone()
        ),
        (0.into(), 0.into(), 0.0.into())
    );

    env.cmd()
        .args(["--models", "t/a"])
        .stdin(prompts(3))
        .run()
        .assert_code(0);
    env.cmd()
        .args(["--models", "t/a"])
        .stdin(prompts(3))
        .run()
        .assert_code(0);
    let s = stats("all");
    assert_eq!(s["entries"], 3);
    assert_eq!(
        (
            s["lookups"].clone(),
            s["hits"].clone(),
            s["hit_rate"].clone()
        ),
        (6.into(), 3.into(), 0.5.into())
    );
    let bytes: i64 = env.value("SELECT sum(length(response) + length(content)) FROM cache");
    assert_eq!(s["bytes"], bytes);
    assert!(s["file_bytes"].as_u64().unwrap() > 0);
    assert!(s["oldest_ms"].as_i64().unwrap() <= s["newest_ms"].as_i64().unwrap());

    let human = env.cmd().args(["cache", "stats"]).run();
    assert!(human.stdout.contains("entries    3"), "{}", human.stdout);

    let out = env
        .cmd()
        .args(["cache", "prune", "--older-than", "1h"])
        .run();
    out.assert_code(0);
    assert!(out.stdout.contains("removed 0"), "{}", out.stdout);
    // Age one entry, then prune it.
    let rw = rusqlite::Connection::open(env.db()).unwrap();
    rw.execute("UPDATE cache SET created_at = created_at - 7200000 WHERE key = (SELECT key FROM cache LIMIT 1)", [])
        .unwrap();
    drop(rw);
    let out = env
        .cmd()
        .args(["cache", "prune", "--older-than", "1h"])
        .run();
    assert!(out.stdout.contains("removed 1"), "{}", out.stdout);
    let out = env.cmd().args(["cache", "clear"]).run();
    assert!(out.stdout.contains("removed 2"), "{}", out.stdout);
    assert_eq!(stats("all")["entries"], 0);
    // A cleared cache means the next run pays again.
    env.server.clear_log();
    env.cmd()
        .args(["--models", "t/a"])
        .stdin(prompts(3))
        .run()
        .assert_code(0);
    assert_eq!(env.server.completions().len(), 3);
}

#[test]
fn old_metrics_are_pruned_after_a_run() {
    let env = Env::three();
    env.cmd()
        .args(["--models", "t/a"])
        .stdin(prompts(1))
        .run()
        .assert_code(0);
    let old = llmroute::store::now_ms() - 100 * 86_400_000;
    let rw = rusqlite::Connection::open(env.db()).unwrap();
    for _ in 0..5 {
        rw.execute(
            "INSERT INTO attempts (ts, run_id, line, model, ok, cached) VALUES (?1, 'old', 1, 't/a', 1, 0)",
            [old],
        )
        .unwrap();
        rw.execute(
            "INSERT INTO requests (ts, run_id, line, ok, cached, latency_ms, attempts) VALUES (?1, 'old', 1, 1, 0, 5, 1)",
            [old],
        )
        .unwrap();
    }
    drop(rw);
    env.cmd()
        .args(["--models", "t/a", "--retention", "1000d"])
        .stdin(prompts(1))
        .run()
        .assert_code(0);
    assert_eq!(
        env.count("SELECT count(*) FROM attempts WHERE run_id = 'old'"),
        5,
        "within a longer retention"
    );
    env.cmd()
        .args(["--models", "t/a"])
        .stdin(prompts(1))
        .run()
        .assert_code(0);
    assert_eq!(
        env.count("SELECT count(*) FROM attempts WHERE run_id = 'old'"),
        0
    );
    assert_eq!(
        env.count("SELECT count(*) FROM requests WHERE run_id = 'old'"),
        0
    );
    assert_eq!(
        env.count("SELECT count(*) FROM requests"),
        3,
        "recent rows stay"
    );
}

/// Help never shows the values of the variables that may hold a password.
#[test]
fn help_shows_no_password_from_the_environment() {
    let env = Env::three();
    for args in [
        &["--help"][..],
        &["models", "--help"],
        &["serve", "--help"],
        &["keys", "list", "--help"],
        &["feedback", "--help"],
    ] {
        let out = env
            .cmd()
            .env("LLMROUTE_REDIS_URL", "redis://:hunter2pw@127.0.0.1:1/0")
            .env(
                "LLMROUTE_BASE_URL",
                "http://user:s3cretpw@127.0.0.1:1/api/v1",
            )
            .args(args)
            .run();
        out.assert_code(0);
        for secret in ["hunter2pw", "s3cretpw"] {
            assert!(!out.stdout.contains(secret), "{args:?}: {}", out.stdout);
        }
    }
}

/// A base URL's password never reaches a warning: not the one about plain
/// http, nor the one about a catalogue that could not be fetched (whose
/// reason may quote the URL).
#[test]
fn warnings_about_a_base_url_show_no_password() {
    let env = Env::three();
    // Not loopback (so plain http is warned of), and refused at once.
    let base = "http://user:s3cretpw@0.0.0.0:1/api/v1";
    for (args, says) in [
        (
            &["--dry-run", "--prompt", "hi", "--base-url", base][..],
            "plain http",
        ),
        (&["models", "--base-url", base], "cannot fetch"),
        (
            &["models", "--refresh", "--base-url", base],
            "cannot refresh",
        ),
    ] {
        let out = env.cmd().args(args).run();
        assert!(out.stderr.contains(says), "{args:?}: {}", out.stderr);
        for text in [&out.stdout, &out.stderr] {
            assert!(!text.contains("s3cretpw"), "{args:?}: {text}");
        }
    }
}

#[test]
fn a_bad_value_from_an_environment_variable_names_the_variable() {
    // A cron job's LLMROUTE_EXPLORE=abc is no --explore anybody gave.
    let env = Env::three();
    let out = env
        .cmd()
        .env("LLMROUTE_EXPLORE", "abc")
        .args(["config", "show"])
        .run();
    out.assert_code(2);
    assert!(out.stderr.contains("LLMROUTE_EXPLORE"), "{}", out.stderr);
    // Given on the command line, the flag is the one to blame.
    let out = env
        .cmd()
        .env("LLMROUTE_CONCURRENCY", "4")
        .args(["-j", "0", "config", "show"])
        .run();
    out.assert_code(2);
    assert!(
        !out.stderr.contains("LLMROUTE_CONCURRENCY"),
        "{}",
        out.stderr
    );
    // Values found bad only after parsing: a priority no preset names, an
    // empty list, a URL of the wrong scheme.
    for (var, value) in [
        ("LLMROUTE_PRIORITY", "fast"),
        ("LLMROUTE_MODELS", ""),
        ("LLMROUTE_BASE_URL", "ftp://x"),
        ("LLMROUTE_REDIS_URL", "http://x"),
    ] {
        let out = env
            .cmd()
            .env(var, value)
            .args(["--models", "t/a"][..if var == "LLMROUTE_MODELS" { 0 } else { 2 }].to_vec())
            .stdin(prompts(1))
            .run();
        out.assert_code(2);
        assert!(out.stderr.contains(var), "{var}: {}", out.stderr);
    }
    // `config show` refuses what a run refuses, as a dry run does.
    for (var, value) in [
        ("LLMROUTE_BASE_URL", "ftp://x"),
        ("LLMROUTE_REDIS_URL", "http://x"),
    ] {
        let out = env.cmd().env(var, value).args(["config", "show"]).run();
        out.assert_code(2);
        assert!(out.stderr.contains(var), "{}", out.stderr);
        let out = env
            .cmd()
            .env(var, value)
            .args(["--dry-run", "-q"])
            .stdin(prompts(1))
            .run();
        out.assert_code(2);
        assert!(out.stderr.contains(var), "{}", out.stderr);
    }
    let out = env
        .cmd()
        .args(["config", "show", "--redis", "http://u:pw-hidden-9@x"])
        .run();
    out.assert_code(2);
    assert!(out.stderr.contains("not a Redis URL"), "{}", out.stderr);
    assert!(!out.stderr.contains("pw-hidden-9"), "{}", out.stderr);
    // Valkey's schemes are Redis URLs.
    for url in ["valkey://127.0.0.1:1/0", "valkeys://127.0.0.1:1/0"] {
        let out = env.cmd().args(["config", "show", "--redis", url]).run();
        out.assert_code(0);
    }
    // On the command line, the flag is to blame.
    let out = env
        .cmd()
        .env("LLMROUTE_PRIORITY", "cost")
        .args(["-p", "fast"])
        .stdin(prompts(1))
        .run();
    out.assert_code(2);
    assert!(!out.stderr.contains("LLMROUTE_PRIORITY"), "{}", out.stderr);
}
