//! Batch operations: rate limits, budget, progress, summary, configuration.

use std::time::Duration;

use serde_json::Value;

use crate::util::*;

#[test]
fn rpm_spaces_requests_evenly() {
    let env = Env::three();
    // 60 a minute: one a second, and -j 4 would send all four at once.
    let out = env
        .cmd()
        .args(["--models", "t/a", "-j", "4", "--rpm", "60"])
        .stdin(prompts(4))
        .run();
    out.assert_code(0);
    let reqs = env.server.completions();
    assert_eq!(reqs.len(), 4);
    // The limiter lets request k go k seconds after the first. A loaded
    // machine may delay any one request, but the first by less than the
    // second of slack here: the four span at least two seconds, where a
    // burst spans a few milliseconds. Only a wide span is asserted, never
    // a narrow one.
    let span = reqs[3].at.duration_since(reqs[0].at);
    assert!(
        span >= Duration::from_secs(2),
        "four requests within {span:?} under --rpm 60"
    );
    // No two in the same instant: each came after the one before.
    for w in reqs.windows(2) {
        assert!(w[1].at > w[0].at);
    }
}

#[test]
fn tokens_used_beyond_the_estimate_slow_the_requests_after_them() {
    let env = Env::three();
    // Each answer is padded to about 20 kB, and its usage reports about 5,000
    // completion tokens; each line plans for a few prompt tokens and one.
    env.server
        .set_default("t/a", Behavior::BigBody { bytes: 20_000 });
    let input: String = (1..=5)
        .map(|i| format!("{{\"id\":\"u{i}\",\"prompt\":\"p{i}\",\"max_tokens\":1}}\n"))
        .collect();
    // 600,000 a minute: 10,000 tokens a second, and a bucket of 10,000.
    let out = env
        .cmd()
        .args(["--models", "t/a", "-j", "1", "--tpm", "600000"])
        .stdin(input)
        .run();
    out.assert_code(0);
    let reqs = env.server.completions();
    assert_eq!(reqs.len(), 5);
    let usage: i64 = out
        .lines()
        .iter()
        .map(|l| l["response"]["usage"]["total_tokens"].as_i64().unwrap())
        .take(4)
        .sum();
    assert!(usage > 19_000, "the fake reports large usage: {usage}");
    // The first four lines used about 20,000 tokens against an estimate of
    // a few dozen: past the bucket, the last request must wait about a
    // second for them. Planned tokens alone would let all five go at once.
    let spread = reqs[4].at.duration_since(reqs[0].at);
    assert!(
        spread >= Duration::from_millis(600),
        "five requests within {spread:?} though the first four used {usage} tokens under --tpm 600000"
    );
}

#[test]
fn a_line_waiting_for_tokens_is_not_sent_after_the_key_is_refused() {
    let env = Env::three();
    env.server.set_default("t/a", Behavior::status(401));
    // 60,000 a minute: 1,000 tokens a second, a bucket of 4,096. Each line
    // plans for about 2,500, so the second waits about a second for its
    // tokens, long after the first has come back 401.
    let input: String = (1..=2)
        .map(|i| format!("{{\"id\":\"k{i}\",\"prompt\":\"p{i}\",\"max_tokens\":2500}}\n"))
        .collect();
    let out = env
        .cmd()
        .args(["--models", "t/a", "-j", "2", "--tpm", "60000"])
        .stdin(input)
        .run();
    out.assert_code(2);
    let lines = out.lines();
    assert_eq!(lines.len(), 2);
    assert!(
        lines.iter().all(|l| l["error"]["type"] == "auth"),
        "{}",
        out.stdout
    );
    assert_eq!(
        env.server.completions().len(),
        1,
        "the waiting line went out after the refusal"
    );
}

/// Ten lines against a model whose every answer costs $0.01 (usage.cost),
/// with an estimate of about $0.005 a request from its price.
fn priced() -> Env {
    let env = Env::new(vec![ModelSpec::new("t/p").prices("0.00000001", "0.00001")]);
    env.server.set_default("t/p", Behavior::ok_with_cost(0.01));
    env
}

#[test]
fn budget_stops_new_requests_and_the_rest_get_budget_exceeded() {
    let env = priced();
    let out = env
        .cmd()
        .args(["--models", "t/p", "-j", "1", "--max-cost", "0.035"])
        .stdin(prompts_with_max_tokens(10, 512))
        .run();
    out.assert_code(1);
    let lines = out.lines();
    assert_eq!(lines.len(), 10);
    // After 3 answers ($0.03 spent), the 4th would bring spend plus its estimate past $0.035.
    let answered = lines.iter().filter(|l| l["error"].is_null()).count();
    assert_eq!(answered, 3);
    assert!(
        lines[3..]
            .iter()
            .all(|l| l["error"]["type"] == "budget_exceeded"),
        "{}",
        out.stdout
    );
    assert_eq!(env.server.completions().len(), 3);
    assert!(
        out.stderr
            .contains("budget reached: $0.03 spent and $0 reserved"),
        "{}",
        out.stderr
    );
    assert!(
        lines[3]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("($0.03 spent, $0 reserved by requests in flight)"),
        "{}",
        lines[3]
    );

    // Cached answers cost nothing and are still served under a spent budget.
    env.server.clear_log();
    let out = env
        .cmd()
        .args(["--models", "t/p", "-j", "1", "--max-cost", "0"])
        .stdin(prompts_with_max_tokens(10, 512))
        .run();
    out.assert_code(1);
    let lines = out.lines();
    assert_eq!(lines.iter().filter(|l| l["cached"] == true).count(), 3);
    assert_eq!(
        lines
            .iter()
            .filter(|l| l["error"]["type"] == "budget_exceeded")
            .count(),
        7
    );
    assert_eq!(env.server.completions().len(), 0);
}

#[test]
fn budget_counts_requests_in_flight() {
    let env = priced();
    env.server.set_default(
        "t/p",
        Behavior::Ok {
            latency: Duration::from_millis(300),
            cost: Some(0.01),
        },
    );
    // Eight at once, each held at its ~$0.005 estimate: only four fit in $0.022.
    let out = env
        .cmd()
        .args(["--models", "t/p", "-j", "8", "--max-cost", "0.022"])
        .stdin(prompts(8))
        .run();
    out.assert_code(1);
    assert_eq!(env.server.completions().len(), 4);
    assert_eq!(
        out.lines()
            .iter()
            .filter(|l| l["error"]["type"] == "budget_exceeded")
            .count(),
        4
    );
}

#[test]
fn messages_never_share_a_line_with_the_progress_bar() {
    let env = Env::three();
    // Slow answers, so that the bar is drawn before the first message.
    env.server.set_default("t/a", Behavior::ok_after(400));
    let file = env.write("in.jsonl", &prompts(2));
    let out = env
        .cmd()
        .args(["--models", "t/a", "-j", "1", "-v", "--progress", "always"])
        .arg(&file)
        .run();
    out.assert_code(0);
    assert!(
        out.stderr.contains("lines ·"),
        "a bar was drawn: {:?}",
        out.stderr
    );
    let starts: Vec<usize> = out
        .stderr
        .match_indices("llmroute: line")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(starts.len(), 2, "{:?}", out.stderr);
    for i in starts {
        // On a line of its own: after a newline, or after the bar has
        // erased its line (with spaces, as stderr takes no escapes here);
        // never right after the bar's text.
        let before = &out.stderr[..i];
        let erased = format!("\r{}\r", " ".repeat(80));
        assert!(
            before.is_empty() || before.ends_with('\n') || before.ends_with(&erased),
            "a message shares a line with the bar: {:?}",
            &out.stderr[i.saturating_sub(60)..i + 20]
        );
    }
}

#[test]
fn progress_is_hidden_unless_asked_for_and_a_summary_ends_the_run() {
    let env = Env::three();
    let file = env.write("in.jsonl", &prompts(3));
    let out = env.cmd().args(["--models", "t/a"]).arg(&file).run();
    out.assert_code(0);
    assert!(
        !out.stderr.contains("lines ·"),
        "no bar when stderr is not a terminal: {}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("llmroute: 3 lines: 3 answered, 0 cached, 0 errors"),
        "{}",
        out.stderr
    );
    let out = env
        .cmd()
        .args(["--models", "t/a", "--progress", "always"])
        .arg(&file)
        .run();
    out.assert_code(0);
    assert!(out.stderr.contains("3/3 lines"), "{}", out.stderr);
    // Its last frame agrees with the summary (these lines were cached by
    // the run before).
    assert!(
        out.stderr.contains("0 answered, 3 cached"),
        "{}",
        out.stderr
    );
    let last = out.stderr.rsplit("3/3 lines").next().unwrap_or_default();
    let last = last.split(['\r', '\n']).next().unwrap_or_default();
    assert!(last.contains(" 3 cached · "), "{}", out.stderr);
    // On standard input the total is unknown: a count, no "of".
    let out = env
        .cmd()
        .args(["--models", "t/a", "--progress", "always"])
        .stdin(prompts(3))
        .run();
    out.assert_code(0);
    assert!(out.stderr.contains("3 lines ·"), "{}", out.stderr);
    assert!(!out.stderr.contains("/3 lines"), "{}", out.stderr);
    let out = env
        .cmd()
        .args(["--models", "t/a", "--progress", "never"])
        .arg(&file)
        .run();
    assert!(!out.stderr.contains("lines ·"), "{}", out.stderr);
    let out = env.cmd().args(["--models", "t/a", "-q"]).arg(&file).run();
    assert_eq!(out.stderr, "");
}

/// `-q` leaves stderr to what stops a run: no warning, note or summary.
#[test]
fn quiet_says_no_warning() {
    let env = Env::three();
    let line = "{\"prompt\":\"q\",\"model\":\"zzz/unknown\"}\n";
    let loud = env.cmd().args(["--models", "t/a"]).stdin(line).run();
    assert!(loud.stderr.contains("pins zzz/unknown"), "{}", loud.stderr);
    let quiet = env.cmd().args(["--models", "t/a", "-q"]).stdin(line).run();
    assert_eq!(quiet.code, loud.code);
    assert_eq!(quiet.stderr, "");
    assert_eq!(quiet.lines().len(), 1);
}

fn show(cmd: Cmd) -> Value {
    let out = cmd.args(["config", "show"]).run();
    out.assert_code(0);
    let body: String = out
        .stdout
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let table: toml::Table =
        toml::from_str(&body).unwrap_or_else(|e| panic!("{e}: {}", out.stdout));
    serde_json::to_value(table).unwrap()
}

#[test]
fn flag_beats_environment_beats_config_file_beats_default() {
    // Unmeasured, so cost and quality decide: cost and balanced pick
    // t/cheap, quality picks t/smart.
    let env = Env::new(vec![
        ModelSpec::new("t/cheap")
            .prices("0.00000001", "0.00000001")
            .intelligence(15.0),
        ModelSpec::new("t/smart")
            .prices("0.00001", "0.00003")
            .intelligence(58.0),
    ]);
    let dir = env.path("config/llmroute");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("config.toml"),
        "priority = \"quality\"\nmodels = [\"t/cheap\", \"t/smart\"]\nconcurrency = 3\ntimeout = \"7s\"\n",
    )
    .unwrap();
    // Each pick on a store of its own, so that no latency has been measured.
    let picks = std::cell::Cell::new(0);
    let pick = |cmd: Cmd| {
        picks.set(picks.get() + 1);
        let db = env.path(&format!("pick{}.db", picks.get()));
        let out = cmd
            .arg("--db")
            .arg(db)
            .arg("--no-cache")
            .stdin(prompts(1))
            .run();
        out.assert_code(0);
        out.lines()[0]["model"].as_str().unwrap().to_string()
    };
    assert_eq!(pick(env.cmd()), "t/smart", "the file's priority");
    assert_eq!(
        pick(env.cmd().env("LLMROUTE_PRIORITY", "cost")),
        "t/cheap",
        "environment over file"
    );
    assert_eq!(
        pick(
            env.cmd()
                .env("LLMROUTE_PRIORITY", "cost")
                .args(["-p", "quality"])
        ),
        "t/smart",
        "flag over environment"
    );

    let file = show(env.cmd());
    assert_eq!(
        (
            file["priority"].clone(),
            file["concurrency"].clone(),
            file["timeout"].clone()
        ),
        ("quality".into(), 3.into(), "7s".into())
    );
    let with_env = show(
        env.cmd()
            .env("LLMROUTE_PRIORITY", "cost")
            .env("LLMROUTE_CONCURRENCY", "5")
            .env("LLMROUTE_LISTEN", "127.0.0.1:18123"),
    );
    assert_eq!(
        (
            with_env["priority"].clone(),
            with_env["concurrency"].clone(),
            with_env["serve"]["listen"].clone(),
        ),
        ("cost".into(), 5.into(), "127.0.0.1:18123".into())
    );

    std::fs::remove_file(dir.join("config.toml")).unwrap();
    assert_eq!(
        pick(env.cmd().args(["--models", "t/cheap,t/smart"])),
        "t/cheap",
        "built-in balanced"
    );
    let none = show(env.cmd());
    assert_eq!(
        (none["priority"].clone(), none["concurrency"].clone()),
        ("balanced".into(), 8.into())
    );
    assert!(!serde_json::to_string(&none).unwrap().contains(KEY));
}

#[test]
fn config_presets_route_and_the_store_path_comes_from_the_file() {
    let env = Env::new(vec![
        ModelSpec::new("t/cheap")
            .prices("0.00000001", "0.00000001")
            .intelligence(15.0),
        ModelSpec::new("t/smart")
            .prices("0.00001", "0.00003")
            .intelligence(58.0),
    ]);
    let db = env.path("from-config.db");
    let cfg = env.write(
        "my.toml",
        &format!("db = \"{}\"\nmodels = [\"t/cheap\", \"t/smart\"]\n[presets.thrifty]\nlatency = 0\ncost = 1\nquality = 0\n[presets.brainy]\nquality = 1\n", db.display()),
    );
    let run = |p: &str| {
        let out = env
            .cmd()
            .env_remove("LLMROUTE_DB")
            .args(["--config"])
            .arg(&cfg)
            .args(["-p", p, "--no-cache"])
            .stdin(prompts(1))
            .run();
        out.assert_code(0);
        out.lines()[0]["model"].as_str().unwrap().to_string()
    };
    assert_eq!(run("thrifty"), "t/cheap");
    assert_eq!(run("brainy"), "t/smart");
    assert!(db.exists(), "the store named in the config file is used");
    let out = env
        .cmd()
        .env_remove("LLMROUTE_DB")
        .env("LLMROUTE_CONFIG", &cfg)
        .args(["config", "path"])
        .run();
    assert!(
        out.stdout.contains("my.toml") && out.stdout.contains("from-config.db"),
        "{}",
        out.stdout
    );
}

#[test]
fn config_errors_name_the_file_line_and_key() {
    let env = Env::three();
    let cfg = env.write("bad.toml", "priority = \"speed\"\n\nconcurrancy = 4\n");
    let out = env.cmd().arg("--config").arg(&cfg).stdin(prompts(1)).run();
    out.assert_code(2);
    assert!(
        out.stderr.contains("bad.toml")
            && out.stderr.contains("line 3")
            && out.stderr.contains("concurrancy"),
        "{}",
        out.stderr
    );
    let cfg = env.write("bad2.toml", "timeout = \"whenever\"\n");
    let out = env.cmd().arg("--config").arg(&cfg).stdin(prompts(1)).run();
    out.assert_code(2);
    assert!(
        out.stderr.contains("bad2.toml")
            && out.stderr.contains("line 1")
            && out.stderr.contains("whenever"),
        "{}",
        out.stderr
    );
    let out = env
        .cmd()
        .arg("--config")
        .arg(env.path("absent.toml"))
        .stdin(prompts(1))
        .run();
    out.assert_code(2);
    assert!(out.stderr.contains("absent.toml"), "{}", out.stderr);
}

#[test]
fn config_path_shows_where_a_broken_config_is() {
    let env = Env::three();
    let cfg = env.write(
        "broken.toml",
        "db = \"/somewhere/else.db\"\nconcurrancy = 4\n",
    );
    let out = env
        .cmd()
        .env_remove("LLMROUTE_DB")
        .env("LLMROUTE_CONFIG", &cfg)
        .args(["config", "path"])
        .run();
    // Where to fix it is what one asks after a config error.
    out.assert_code(0);
    let config = out
        .stdout
        .lines()
        .find(|l| l.starts_with("config"))
        .unwrap();
    assert!(
        config.contains("broken.toml") && config.contains("error"),
        "{}",
        out.stdout
    );
    let store = out.stdout.lines().find(|l| l.starts_with("store")).unwrap();
    assert!(
        !store.contains("/somewhere/else.db") && store.contains("not read"),
        "the file's db is not read: {}",
        out.stdout
    );
    assert!(
        out.stderr.contains("broken.toml")
            && out.stderr.contains("line 2")
            && out.stderr.contains("concurrancy"),
        "{}",
        out.stderr
    );
    // Everything else still refuses it.
    let out = env
        .cmd()
        .env("LLMROUTE_CONFIG", &cfg)
        .args(["config", "show"])
        .run();
    out.assert_code(2);
}

#[test]
fn an_unknown_model_is_warned_about_once_on_stderr_only() {
    let env = Env::three();
    let out = env
        .cmd()
        .args(["--models", "t/a,x/nope", "--fallback", "x/nope,t/b"])
        .stdin(prompts(3))
        .run();
    out.assert_code(0);
    let warning = "1 candidate is not in the model catalogue (x/nope)";
    assert_eq!(
        out.stderr.matches(warning).count(),
        1,
        "once, though named twice and used for three lines: {}",
        out.stderr
    );
    assert!(out.stderr.contains("--models"), "{}", out.stderr);
    assert!(!out.stdout.contains("warning"), "{}", out.stdout);
    assert_eq!(out.lines().len(), 3);
}

/// A dry run on a new store fetches nothing: a candidate missing from the
/// built-in snapshot is said to be missing from that, with the ways to
/// fetch the API's.
#[test]
fn a_dry_run_on_a_new_store_says_its_catalogue_is_the_built_in_one() {
    let env = Env::three();
    let dry = || {
        env.cmd()
            .args(["--dry-run", "--models", "t/a,t/b"])
            .stdin(prompts(1))
            .run()
    };
    let out = dry();
    out.assert_code(0);
    assert!(
        out.stderr.contains("not in the built-in catalogue")
            && out
                .stderr
                .contains("`llmroute models --refresh` on its store"),
        "{}",
        out.stderr
    );
    // The dry run made the store: the refresh keeps the API's there.
    env.cmd().args(["models", "--refresh"]).run().assert_code(0);
    let out = dry();
    assert!(!out.stderr.contains("catalogue"), "{}", out.stderr);
    let line = &out.lines()[0];
    assert!(line["cost_usd"].is_number(), "{line}");
}

/// Against an API whose catalogue lists none of the default candidates,
/// one line says so (not one per model), and an empty input hears nothing.
#[test]
fn unknown_default_candidates_are_one_warning_and_none_for_empty_input() {
    let env = Env::three();
    let out = env.cmd().stdin(prompts(1)).run();
    let warnings: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("not in the model catalogue"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", out.stderr);
    assert!(warnings[0].contains("more"), "{}", warnings[0]);
    assert!(warnings[0].contains("--models"), "{}", warnings[0]);

    let empty = env.cmd().stdin("").run();
    empty.assert_code(0);
    assert!(!empty.stderr.contains("warning"), "{}", empty.stderr);

    // Lines that pin their model, or list their own candidates, use none
    // of the default candidates: nothing is said of them...
    let own = concat!(
        "{\"prompt\":\"a\",\"model\":\"t/a\"}\n",
        "{\"prompt\":\"b\",\"llmroute\":{\"models\":[\"t/b\"]}}\n",
    );
    let out = env.cmd().stdin(own).run();
    out.assert_code(0);
    assert!(!out.stderr.contains("warning"), "{}", out.stderr);
    // ...until a line routes over them.
    let out = env
        .cmd()
        .stdin(format!("{own}{{\"prompt\":\"c\"}}\n"))
        .run();
    assert_eq!(
        out.stderr.matches("not in the model catalogue").count(),
        1,
        "{}",
        out.stderr
    );

    // `llmroute models` says the same, and where to go.
    let models = env.cmd().arg("models").run();
    models.assert_code(0);
    assert!(
        models.stderr.contains("not in the model catalogue") && models.stderr.contains("--models"),
        "{}",
        models.stderr
    );
}
