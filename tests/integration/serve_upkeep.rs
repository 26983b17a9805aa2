//! A server that runs for months keeps its store bounded: expired answers,
//! old metrics and the least recently used answers past the cap go.

use serde_json::Value;

use crate::util::*;

/// A GET and its JSON.
fn get(url: &str) -> Value {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async { reqwest::get(url).await.unwrap().json().await.unwrap() })
}

/// A POST of a chat body; whether the cache answered.
fn post_cached(url: &str, body: &Value) -> bool {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let r = reqwest::Client::new()
            .post(url)
            .json(body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
        r.headers()["x-llmroute-cached"] == "true"
    })
}

#[test]
fn past_the_cache_cap_the_least_recently_used_answers_go() {
    let env = Env::three();
    // Each answer is about 275 bytes as counted (three make 824): room for
    // three, not four.
    let s = env.serve(&[
        "--models",
        "t/a",
        "--cache-max-size",
        "950B",
        "--upkeep-every",
        "200ms",
    ]);
    let url = s.url("/v1/chat/completions");
    for p in ["first", "second", "third"] {
        assert!(!post_cached(&url, &chat(None, p)));
    }
    // The first is used again: now the second is the least recently used.
    assert!(post_cached(&url, &chat(None, "first")));
    assert!(!post_cached(&url, &chat(None, "fourth")));
    let stats = s.url("/cache/stats");
    assert!(
        eventually(|| get(&stats)["bytes"].as_i64().unwrap() <= 950),
        "{}",
        get(&stats)
    );
    assert!(post_cached(&url, &chat(None, "first")), "kept: used last");
    assert!(post_cached(&url, &chat(None, "fourth")), "kept: newest");
    assert!(
        !post_cached(&url, &chat(None, "second")),
        "gone: least recently used"
    );
}

#[test]
fn old_metrics_and_expired_answers_are_pruned_while_serving() {
    let env = Env::three();
    env.cmd()
        .args(["--models", "t/a"])
        .stdin(prompts(3))
        .run()
        .assert_code(0);
    {
        let db = rusqlite::Connection::open(env.db()).unwrap();
        let day = 86_400_000;
        db.execute_batch(&format!(
            "UPDATE requests SET ts = ts - 3 * {day}; UPDATE attempts SET ts = ts - 3 * {day};
             UPDATE cache SET created_at = created_at - 3 * {day};"
        ))
        .unwrap();
    }
    let s = env.serve(&[
        "--models",
        "t/a",
        "--retention",
        "2d",
        "--cache-ttl",
        "2d",
        "--upkeep-every",
        "100ms",
    ]);
    assert!(eventually(|| env.count("SELECT count(*) FROM requests")
        == 0
        && env.count("SELECT count(*) FROM cache") == 0));
    assert_eq!(env.count("SELECT count(*) FROM attempts"), 0);
    drop(s);
}

#[test]
fn bodies_are_logged_only_when_asked_for() {
    let env = Env::three();
    for (args, logged) in [
        (&["--models", "t/a"][..], false),
        (&["--models", "t/a", "--log-bodies"][..], true),
    ] {
        let s = env.serve(args);
        let prompt = format!("secret prompt {logged}");
        post_cached(&s.url("/v1/chat/completions"), &chat(None, &prompt));
        let (_, log) = s.stop();
        assert_eq!(log.contains(&prompt), logged, "{log}");
    }
}
