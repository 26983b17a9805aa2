//! The API key: `LLMROUTE_API_KEY` or `OPENROUTER_API_KEY`, the first
//! winning, and whichever is used never shows.

use crate::util::*;

const OTHER_KEY: &str = "sk-llmroute-test-5d1e9b3a7c2f4e6a";

fn authorizations(env: &Env) -> Vec<String> {
    env.server
        .completions()
        .iter()
        .map(|r| r.header("authorization").unwrap_or("").to_string())
        .collect()
}

#[test]
fn llmroute_api_key_is_read_and_wins_over_openrouter_api_key() {
    let env = Env::three();
    let out = env
        .cmd()
        .env_remove("OPENROUTER_API_KEY")
        .env("LLMROUTE_API_KEY", OTHER_KEY)
        .args(["--models", "t/a"])
        .stdin(prompts(1))
        .run();
    out.assert_code(0);
    assert_eq!(authorizations(&env), [format!("Bearer {OTHER_KEY}")]);

    env.server.clear_log();
    let out = env
        .cmd()
        .env("LLMROUTE_API_KEY", OTHER_KEY)
        .args(["--models", "t/a", "--no-cache"])
        .stdin(prompts(1))
        .run();
    out.assert_code(0);
    assert_eq!(authorizations(&env), [format!("Bearer {OTHER_KEY}")]);

    let out = env
        .cmd()
        .env("LLMROUTE_API_KEY", OTHER_KEY)
        .args(["config", "show"])
        .run();
    assert!(
        out.stdout.contains("# LLMROUTE_API_KEY is set"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains(OTHER_KEY));

    let out = env
        .cmd()
        .env_remove("OPENROUTER_API_KEY")
        .stdin(prompts(1))
        .run();
    out.assert_code(2);
    assert!(
        out.stderr.contains("LLMROUTE_API_KEY") && out.stderr.contains("OPENROUTER_API_KEY"),
        "{}",
        out.stderr
    );
    let help = env.cmd().arg("--help").run();
    assert!(help.stdout.contains("LLMROUTE_API_KEY"), "{}", help.stdout);
}

#[test]
fn llmroute_api_key_never_leaks_when_an_upstream_echoes_it() {
    let env = Env::three();
    let echo = format!(r#"{{"error":{{"message":"bad key {OTHER_KEY}"}}}}"#);
    env.server
        .set_default("t/a", Behavior::status_with_body(500, echo));
    let out = env
        .cmd()
        .env("LLMROUTE_API_KEY", OTHER_KEY)
        .args(["--models", "t/a", "-v", "--max-attempts", "1"])
        .stdin(prompts(1))
        .run();
    out.assert_code(1);
    assert!(out.stdout.contains("[redacted]"), "{}", out.stdout);
    assert!(!out.stdout.contains(OTHER_KEY) && !out.stderr.contains(OTHER_KEY));
}

#[test]
fn a_base_url_s_credentials_never_leak_when_an_upstream_echoes_them() {
    // They go as Basic authorisation: an upstream that quotes its request
    // headers shows them base64-encoded, or the password itself.
    let env = Env::three();
    let basic = "YWxpY2U6cHctVE9QU0VDUkVUOQ=="; // alice:pw-TOPSECRET9
    let echo =
        format!(r#"{{"error":{{"message":"got Authorization: Basic {basic} (pw-TOPSECRET9)"}}}}"#);
    env.server
        .set_default("t/a", Behavior::status_with_body(500, echo));
    let base = env
        .server
        .base_url()
        .replace("http://", "http://alice:pw-TOPSECRET9@");
    let out = env
        .cmd()
        .env("LLMROUTE_BASE_URL", base)
        .args(["--models", "t/a", "-v", "--max-attempts", "1"])
        .stdin(prompts(1))
        .run();
    out.assert_code(1);
    assert!(out.stdout.contains("[redacted]"), "{}", out.stdout);
    for secret in [basic, "pw-TOPSECRET9"] {
        assert!(!out.stdout.contains(secret), "{}", out.stdout);
        assert!(!out.stderr.contains(secret), "{}", out.stderr);
    }
}

#[test]
#[cfg_attr(
    not(debug_assertions),
    ignore = "needs a debug build: release builds have no fail points"
)]
fn llmroute_api_key_is_kept_out_of_a_panic() {
    let env = Env::three();
    let out = env
        .cmd()
        .env("LLMROUTE_API_KEY", OTHER_KEY)
        .env("LLMROUTE_FAIL_LINE", "1")
        .args(["--models", "t/a"])
        .stdin(prompts(2))
        .run();
    out.assert_code(1);
    assert!(out.stderr.contains("[redacted]"), "{}", out.stderr);
    assert!(!out.stderr.contains(OTHER_KEY), "{}", out.stderr);
}

/// A revoke that reached the store but not a Redis that stopped answering
/// says so, rather than only that Redis could not be read.
#[test]
fn a_revoke_redis_does_not_take_says_what_was_done() {
    let env = Env::three();
    let redis = RedisServer::start();
    let out = env
        .cmd()
        .args(["keys", "create", "late", "--redis", &redis.url()])
        .run();
    out.assert_code(0);
    let pid = redis.child.id().to_string();
    let signal = |s: &str| {
        let ok = std::process::Command::new("kill")
            .args([s, &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    };
    signal("-STOP");
    // Listed from the store, said as such.
    let listed = env
        .cmd()
        .args(["keys", "list", "--redis", &redis.url()])
        .run();
    listed.assert_code(0);
    assert!(listed.stdout.contains("late"), "{}", listed.stdout);
    assert!(
        listed.stderr.contains("keys this store holds"),
        "{}",
        listed.stderr
    );
    let out = env
        .cmd()
        .args(["keys", "revoke", "late", "--redis", &redis.url()])
        .run();
    signal("-CONT");
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("key late is revoked in this store, but"),
        "{}",
        out.stderr
    );
    assert_eq!(
        env.count("SELECT count(*) FROM keys WHERE name = 'late' AND revoked_at IS NOT NULL"),
        1
    );
}

#[test]
fn keys_show_names_an_expiry_once() {
    let env = Env::three();
    env.cmd()
        .args(["keys", "create", "brief", "--expires", "30d", "--rpm", "5"])
        .run()
        .assert_code(0);
    let out = env.cmd().args(["keys", "show", "brief"]).run();
    out.assert_code(0);
    assert_eq!(out.stdout.matches("expires").count(), 1, "{}", out.stdout);
}

/// `keys`, `feedback` and `models` take the servers' Redis prefix from
/// LLMROUTE_REDIS_PREFIX or --redis-prefix, as the servers do.
#[test]
fn the_commands_beside_a_server_take_its_redis_prefix() {
    let env = Env::three();
    let redis = RedisServer::start();
    env.cmd()
        .env("LLMROUTE_REDIS_PREFIX", "team-a:")
        .args(["keys", "create", "pfx", "--redis", &redis.url()])
        .run()
        .assert_code(0);
    let keys: Vec<String> = redis.dump().into_iter().map(|(k, _)| k).collect();
    assert!(keys.iter().any(|k| k.starts_with("team-a:")), "{keys:?}");
    assert!(!keys.iter().any(|k| k.starts_with("llmroute:")), "{keys:?}");
    // Another machine's store, which knows of pfx only through Redis.
    env.cmd()
        .args(["keys", "create", "local-only", "--db"])
        .arg(env.path("elsewhere.db"))
        .run()
        .assert_code(0);
    let listed = env
        .cmd()
        .args([
            "keys",
            "list",
            "--redis-prefix",
            "team-a:",
            "--redis",
            &redis.url(),
        ])
        .arg("--db")
        .arg(env.path("elsewhere.db"))
        .run();
    listed.assert_code(0);
    assert!(listed.stdout.contains("pfx"), "{}", listed.stdout);
    for cmd in [
        &["feedback", "--redis-prefix", "team-a:"][..],
        &["models", "--redis-prefix", "team-a:"],
    ] {
        let out = env
            .cmd()
            .args(cmd)
            .args(["--redis", &redis.url()])
            .stdin("")
            .run();
        assert_ne!(out.code, 2, "{cmd:?}: {}", out.stderr);
    }
}
