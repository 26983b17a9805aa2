//! Health is kept per upstream and model: what a dead API taught the router
//! does not hold back the same model names on another API; a run that waits
//! for a paused model says so; `models --reset` forgets what was learned.

use serde_json::Value;

use crate::util::*;

/// A base URL where nothing listens.
fn dead_url() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("http://127.0.0.1:{port}/api/v1")
}

/// `models --json` for t/a and t/b, by model id.
fn models(env: &Env, base_url: &str) -> Vec<Value> {
    let out = env
        .cmd()
        .args(["models", "--json", "-m", "t/a,t/b", "--base-url", base_url])
        .run();
    out.assert_code(0);
    serde_json::from_str::<Vec<Value>>(&out.stdout).unwrap()
}

/// Fails every line of `input` against a dead URL, opening both circuits.
fn fail_on_dead_url(env: &Env, dead: &str) {
    let input = env.write("dead.jsonl", &prompts(3));
    let out = env
        .cmd()
        .args(["--no-cache", "-m", "t/a,t/b", "--base-url", dead])
        .arg(&input)
        .run();
    assert_ne!(out.code, 0, "{}", out.stderr);
    // What the dead URL taught: both models paused.
    let paused = models(env, dead);
    assert!(
        paused.iter().all(|m| m["cooldown_until"].is_i64()),
        "{paused:?}"
    );
}

#[test]
fn what_a_dead_upstream_taught_does_not_hold_back_another() {
    let env = Env::three();
    let dead = dead_url();
    fail_on_dead_url(&env, &dead);

    let good = env.server.base_url();
    for m in models(&env, &good) {
        assert!(m["cooldown_until"].is_null(), "{m}");
        assert_eq!(m["state"], "prior", "{m}");
        assert_eq!(m["attempts"], 0, "{m}");
    }
    let input = env.write("good.jsonl", &prompts(4));
    let out = env
        .cmd()
        .args([
            "--no-cache",
            "-v",
            "-j",
            "1",
            "-m",
            "t/a,t/b",
            "-p",
            "quality",
        ])
        .arg(&input)
        .run();
    out.assert_code(0);
    assert!(!out.stderr.contains("waiting"), "{}", out.stderr);
    // Every line went to the best model first: nothing held it back.
    assert_eq!(env.server.count_for("t/a"), 4, "{}", out.stderr);
    // The dead URL's health is still its own.
    assert!(models(&env, &dead)
        .iter()
        .all(|m| m["cooldown_until"].is_i64()));
}

/// Both models rate-limited: the line waits for the first to come back,
/// and says so on stderr once (each wait with `-v`).
#[test]
fn a_wait_for_a_paused_model_is_said_once() {
    let env = Env::three();
    for m in ["t/a", "t/b"] {
        env.server
            .script(m, [Behavior::rate_limited(Some(1)), Behavior::ok()]);
    }
    let input = env.write("in.jsonl", &prompts(2));
    let out = env
        .cmd()
        .args(["--no-cache", "-j", "1", "-m", "t/a,t/b", "-p", "quality"])
        .arg(&input)
        .run();
    out.assert_code(0);
    let waits: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("waiting"))
        .collect();
    assert_eq!(waits.len(), 1, "{}", out.stderr);
    assert!(
        waits[0].starts_with("llmroute: waiting ")
            && waits[0].ends_with("for t/a: rate-limited by the API"),
        "{}",
        out.stderr
    );
}

/// `models --reset MODEL` forgets one model's health on that upstream;
/// `models --reset` forgets every model's.
#[test]
fn models_reset_forgets_what_was_learned() {
    let env = Env::three();
    let dead = dead_url();
    fail_on_dead_url(&env, &dead);

    let out = env
        .cmd()
        .args(["models", "--base-url", &dead, "--reset", "t/a"])
        .run();
    out.assert_code(0);
    assert!(
        out.stdout.contains("forgot the health of t/a"),
        "{}",
        out.stdout
    );
    let after = models(&env, &dead);
    let state = |m: &str| {
        after
            .iter()
            .find(|r| r["model"] == m)
            .map(|r| r["state"].clone())
            .unwrap()
    };
    assert_eq!(state("t/a"), "prior", "{after:?}");
    assert_eq!(state("t/b"), "open", "{after:?}");

    env.cmd()
        .args(["models", "--base-url", &dead, "--reset"])
        .run()
        .assert_code(0);
    assert!(models(&env, &dead)
        .iter()
        .all(|m| m["state"] == "prior" && m["cooldown_until"].is_null()));
}

/// With `--redis` (or `LLMROUTE_REDIS_URL`), the reset reaches the health that Redis shares too, and
/// only that of its own upstream.
#[test]
fn models_reset_reaches_redis() {
    let env = Env::three();
    let redis = RedisServer::start();
    let dead = dead_url();
    let input = env.write("dead.jsonl", &prompts(3));
    let out = env
        .cmd()
        .args(["--no-cache", "-m", "t/a,t/b", "--base-url", &dead])
        .args(["--redis", &redis.url()])
        .arg(&input)
        .run();
    assert_ne!(out.code, 0);
    let health_keys = |r: &RedisServer| {
        r.dump()
            .into_iter()
            .filter(|(k, _)| k.contains(":health:") || k.contains(":pause:"))
            .count()
    };
    assert!(health_keys(&redis) >= 2, "{:?}", redis.dump());
    // Another upstream's reset leaves them.
    env.cmd()
        .args(["models", "--reset", "--redis", &redis.url()])
        .run()
        .assert_code(0);
    assert!(health_keys(&redis) >= 2, "{:?}", redis.dump());
    let out = env
        .cmd()
        .args(["models", "--reset", "--base-url", &dead])
        .env("LLMROUTE_REDIS_URL", redis.url())
        .run();
    out.assert_code(0);
    assert_eq!(health_keys(&redis), 0, "{}: {:?}", out.stdout, redis.dump());
}

/// A server says when a model starts failing enough to be left alone:
/// an upstream that went down is seen in its log, not only in its 502s.
#[test]
fn a_server_logs_a_model_it_leaves_alone() {
    let env = Env::three();
    env.server
        .set_default("t/a", fake_openrouter::Behavior::status(500));
    let s = env.serve(&["--models", "t/a", "--fallback", "t/b"]);
    crate::serve::rt().block_on(async {
        let c = reqwest::Client::new();
        for i in 0..6 {
            let (status, _, v) =
                crate::serve::post(&c, &s, &chat(None, &format!("line {i}"))).await;
            assert_eq!(status, 200, "{v}");
        }
    });
    let (_, log) = s.stop();
    let said: Vec<&str> = log.lines().filter(|l| l.contains("t/a fails")).collect();
    assert_eq!(said.len(), 1, "{log}");
    assert!(
        said[0].contains("WARN") && said[0].contains("HTTP 500"),
        "{}",
        said[0]
    );
}

/// Leaves the circuits of t/a and t/b open in the store for `ahead_ms`,
/// as a run that found them failing would.
fn open_earlier_circuits(env: &Env, ahead_ms: i64) {
    env.cmd()
        .args(["--models", "t/a"])
        .stdin(prompts(1))
        .run()
        .assert_code(0);
    // The store names the upstream by its base URL.
    let upstream = env.server.base_url().trim_end_matches('/').to_string();
    let later = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        + ahead_ms;
    let db = rusqlite::Connection::open(env.db()).unwrap();
    for m in ["t/a", "t/b"] {
        db.execute(
            "INSERT OR REPLACE INTO cooldowns (upstream, model, until_ms, reason)
                 VALUES (?1, ?2, ?3, 'circuit')",
            rusqlite::params![upstream, m, later],
        )
        .unwrap();
    }
}

/// A re-run right after its upstream came back is not turned away by the
/// circuits the failed run left: it trusts them as long as a first pause
/// of its own, then tries the models itself, and answers.
#[test]
fn a_re_run_tries_the_models_an_earlier_run_left_failing() {
    let env = Env::three();
    open_earlier_circuits(&env, 300_000);
    let run = crate::faults::run_guarded(
        env.cmd()
            .args(["--models", "t/a,t/b", "--no-cache", "-j", "2"]),
        prompts(4),
        std::time::Duration::from_secs(40),
    );
    let out = &run.out;
    out.assert_code(0);
    assert_eq!(out.lines().len(), 4);
    for l in out.lines() {
        assert_eq!(l["error"], Value::Null, "{l}");
    }
    // After the first pause of its own, not at once.
    assert!(
        run.elapsed >= std::time::Duration::from_secs(9),
        "{:?}",
        run.elapsed
    );
}
