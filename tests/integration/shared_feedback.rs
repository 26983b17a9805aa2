//! Feedback on an answer taken by any machine on the same Redis, not only
//! the one that gave it: behind a load balancer, a client's feedback lands
//! where it lands.

use serde_json::{json, Value};

use crate::feedback::{post, two};
use crate::util::*;

/// The posterior Redis shares for `model` on `task`: (events, good, bad).
fn shared_posterior(redis: &RedisServer, task: &str, model: &str) -> Option<(u64, f64, f64)> {
    let mut c = redis.client().get_connection().unwrap();
    let hashes: Vec<String> = redis::cmd("KEYS").arg("*:quality").query(&mut c).unwrap();
    hashes.iter().find_map(|h| {
        let v: Option<String> = redis::cmd("HGET")
            .arg(h)
            .arg(format!("{task}\t{model}"))
            .query(&mut c)
            .unwrap();
        let p: Value = serde_json::from_str(&v?).ok()?;
        Some((
            p["events"].as_u64()?,
            p["good"].as_f64()?,
            p["bad"].as_f64()?,
        ))
    })
}

/// A client key made in the store and in Redis: its token.
fn shared_key(env: &Env, redis: &RedisServer, name: &str) -> String {
    let out = env
        .cmd()
        .args(["keys", "create", name, "--redis", &redis.url()])
        .run();
    out.assert_code(0);
    out.stdout.lines().next().unwrap().trim().to_string()
}

#[test]
fn feedback_sent_to_another_machine_is_taken_and_replaces_as_on_the_first() {
    let redis = RedisServer::start();
    let env = two();
    let (alice, bob) = (
        shared_key(&env, &redis, "alice"),
        shared_key(&env, &redis, "bob"),
    );
    let args = ["--models", "t/cheap,t/strong", "--redis", &redis.url()];
    let one = env.serve(&args);
    let other_db = env.path("other.db");
    let other = env.serve_with(&args, &[("LLMROUTE_DB", other_db.to_str().unwrap())]);
    let mut body = chat(None, "help me");
    body["model"] = json!("t/cheap");
    let (status, _, id) = post(&one, &alice, "/v1/chat/completions", &body);
    assert_eq!(status, 200);
    let id = id.unwrap();
    let fb = |score: Value| json!({"request_id": id, "score": score});
    // The other machine never saw the request, and takes its feedback.
    let (status, v, _) = post(&other, &alice, "/v1/feedback", &fb(json!(0)));
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (&v["task"], &v["model"], &v["replaced"]),
        (&json!("support"), &json!("t/cheap"), &json!(false)),
        "{v}"
    );
    assert_eq!(
        shared_posterior(&redis, "support", "t/cheap"),
        Some((1, 0.0, 1.0))
    );
    // As unknown to another key there as here.
    let (status, v, _) = post(&other, &bob, "/v1/feedback", &fb(json!(1)));
    assert_eq!(status, 404, "{v}");
    let (status, v, _) = post(&one, &bob, "/v1/feedback", &fb(json!(1)));
    assert_eq!(status, 404, "{v}");
    // Feedback again, on the first machine: it replaces what the other
    // took, in what every machine learns.
    let (status, v, _) = post(&one, &alice, "/v1/feedback", &fb(json!(1)));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["replaced"], true, "the other machine's is replaced: {v}");
    assert_eq!(
        shared_posterior(&redis, "support", "t/cheap"),
        Some((1, 1.0, 0.0))
    );
    // And again on the other: replaced once more.
    let (status, v, _) = post(&other, &alice, "/v1/feedback", &fb(json!(0.5)));
    assert_eq!((status, &v["replaced"]), (200, &json!(true)), "{v}");
    assert_eq!(
        shared_posterior(&redis, "support", "t/cheap"),
        Some((1, 0.5, 0.5))
    );
    // The command, on the first machine's store, judges the request too,
    // and replaces what the other took.
    let fb_line = format!("{}\n", json!({"request_id": id, "score": 0.25}));
    let out = env
        .cmd()
        .args(["feedback", "--redis", &redis.url()])
        .stdin(fb_line)
        .run();
    out.assert_code(0);
    assert_eq!(out.lines()[0]["replaced"], true, "{}", out.stdout);
    assert_eq!(
        shared_posterior(&redis, "support", "t/cheap"),
        Some((1, 0.25, 0.75))
    );
    // A note whose feedback does not say where it was taken in (numbers
    // as strings, three of them) is read as taken in where this is.
    let mut c = redis.client().get_connection().unwrap();
    let notes: Vec<String> = redis::cmd("KEYS").arg("*:req:*").query(&mut c).unwrap();
    let note: String = redis::cmd("GET").arg(&notes[0]).query(&mut c).unwrap();
    let mut note: Value = serde_json::from_str(&note).unwrap();
    let f = note["f"].as_array().unwrap().clone();
    note["f"] = json!([f[0].to_string(), f[1].to_string(), f[2].to_string()]);
    let () = redis::cmd("SET")
        .arg(&notes[0])
        .arg(note.to_string())
        .arg("KEEPTTL")
        .query(&mut c)
        .unwrap();
    let (status, v, _) = post(&other, &alice, "/v1/feedback", &fb(json!(1)));
    assert_eq!((status, &v["replaced"]), (200, &json!(true)), "{v}");
    assert_eq!(
        shared_posterior(&redis, "support", "t/cheap"),
        Some((1, 1.0, 0.0))
    );
    // An id no machine gave is still unknown.
    let (status, v, _) = post(
        &other,
        &alice,
        "/v1/feedback",
        &json!({"request_id": "never-given", "score": 1}),
    );
    assert_eq!(status, 404, "{v}");
    // Without Redis, the other machine cannot know: try again, not 404.
    let redis = redis.down_and_back(|| {
        let (status, v, _) = post(&other, &alice, "/v1/feedback", &fb(json!(1)));
        assert_eq!(status, 503, "{v}");
        assert_eq!(v["error"]["code"], "redis_unavailable", "{v}");
        // In an array, the item says the same.
        let (status, v, _) = post(&other, &alice, "/v1/feedback", &json!([fb(json!(1))]));
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["results"][0]["error"]["code"], "redis_unavailable", "{v}");
    });
    // Redis holds no token or request id in the clear, and the note of
    // a request no prompt.
    let dump = redis.dump();
    let notes: Vec<_> = dump.iter().filter(|(k, _)| k.contains(":req:")).collect();
    assert_eq!(notes.len(), 1, "{dump:?}");
    assert!(!notes[0].1.contains("help me"), "{:?}", notes[0]);
    // It ends, feedback taken on it or not.
    let mut c = redis.client().get_connection().unwrap();
    let ttl: i64 = redis::cmd("PTTL").arg(&notes[0].0).query(&mut c).unwrap();
    assert!(ttl > 0 && ttl <= 86_400_000, "{ttl}");
    for (k, v) in &dump {
        for secret in [&alice, &bob, &id] {
            assert!(!k.contains(secret.as_str()), "{k}");
            assert!(!v.contains(secret.as_str()), "{k}: {v}");
        }
    }
}

#[test]
fn the_feedback_command_takes_feedback_on_another_machine_s_batch() {
    let redis = RedisServer::start();
    let env = two();
    let out = env
        .cmd()
        .args(["--models", "t/cheap", "--task", "sql", "--no-cache"])
        .args(["--redis", &redis.url()])
        .stdin("{\"prompt\": \"x\"}\n")
        .run();
    out.assert_code(0);
    let rid = out.lines()[0]["request_id"].as_str().unwrap().to_string();
    let fb = env
        .cmd()
        .env("LLMROUTE_DB", env.path("other.db"))
        .args(["feedback", "--redis", &redis.url()])
        .stdin(format!(
            "{}\n{}\n",
            json!({"request_id": rid, "score": 1}),
            json!({"request_id": "never-given", "score": 1})
        ))
        .run();
    assert_eq!(fb.code, 1, "one line of two is unknown: {}", fb.stderr);
    let lines = fb.lines();
    assert_eq!(lines[0]["task"], "sql", "{}", fb.stdout);
    assert_eq!(lines[0]["model"], "t/cheap", "{}", fb.stdout);
    assert!(lines[1]["error"].is_object(), "{}", fb.stdout);
    assert_eq!(
        shared_posterior(&redis, "sql", "t/cheap"),
        Some((1, 1.0, 0.0))
    );
    // Feedback again on the machine that ran the batch replaces the one
    // the other took, and says so.
    let again = env
        .cmd()
        .args(["feedback", "--redis", &redis.url()])
        .stdin(format!("{}\n", json!({"request_id": rid, "score": 0})))
        .run();
    again.assert_code(0);
    assert_eq!(again.lines()[0]["replaced"], true, "{}", again.stdout);
    assert_eq!(
        shared_posterior(&redis, "sql", "t/cheap"),
        Some((1, 0.0, 1.0))
    );
    // Without Redis, the other store knows nothing of it.
    let alone = env
        .cmd()
        .env("LLMROUTE_DB", env.path("other.db"))
        .arg("feedback")
        .stdin(format!("{}\n", json!({"request_id": rid, "score": 1})))
        .run();
    assert_eq!(alone.code, 1, "{}", alone.stderr);
}

/// Redis emptied (flushed, or restarted without its data) loses what
/// every machine learned; the machines put it back, and the feedback that
/// comes next adds to it instead of standing alone on every machine.
#[test]
fn what_redis_lost_is_put_back_and_added_to() {
    let redis = RedisServer::start();
    let env = two();
    let alice = shared_key(&env, &redis, "alice");
    let args = ["--models", "t/cheap,t/strong", "--redis", &redis.url()];
    let one = env.serve(&args);
    let other_db = env.path("other.db");
    let _other = env.serve_with(&args, &[("LLMROUTE_DB", other_db.to_str().unwrap())]);
    let judge = |prompt: &str, score: u8| {
        let mut body = chat(None, prompt);
        body["model"] = json!("t/strong");
        let (status, _, id) = post(&one, &alice, "/v1/chat/completions", &body);
        assert_eq!(status, 200);
        let fb = json!({"request_id": id.unwrap(), "score": score});
        let (status, v, _) = post(&one, &alice, "/v1/feedback", &fb);
        assert_eq!(status, 200, "{v}");
    };
    for i in 0..12 {
        judge(&format!("question {i}"), 1);
    }
    assert_eq!(
        shared_posterior(&redis, "support", "t/strong").map(|p| p.0),
        Some(12)
    );
    let mut c = redis.client().get_connection().unwrap();
    let () = redis::cmd("FLUSHALL").query(&mut c).unwrap();
    judge("one more", 0);
    let put_back = || {
        shared_posterior(&redis, "support", "t/strong").is_some_and(|(events, good, bad)| {
            events == 13 && (good - 12.0).abs() < 0.01 && (bad - 1.0).abs() < 0.01
        })
    };
    assert!(
        eventually(put_back),
        "{:?}",
        shared_posterior(&redis, "support", "t/strong")
    );
    // The other machine's store never took these events: it learns them
    // from Redis.
    let out = env
        .cmd()
        .env("LLMROUTE_DB", &other_db)
        .args([
            "models",
            "--task",
            "support",
            "--json",
            "--redis",
            &redis.url(),
        ])
        .args(["--models", "t/cheap,t/strong"])
        .run();
    out.assert_code(0);
    let rows: Value = serde_json::from_str(&out.stdout).unwrap();
    let strong = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["model"] == "t/strong")
        .unwrap();
    assert_eq!(strong["quality_events"], 13, "{strong}");
}

/// With Redis, what every machine learned decides: a server's own store,
/// which holds only the feedback it took, never stands in for it, even
/// for a moment after the server takes feedback.
#[test]
fn a_server_on_redis_routes_on_what_every_machine_learned() {
    let redis = RedisServer::start();
    let env = two();
    let alice = shared_key(&env, &redis, "alice");
    let args = ["--models", "t/cheap,t/strong", "--redis", &redis.url()];
    let one = env.serve(&args);
    let other_db = env.path("other.db");
    let other = env.serve_with(&args, &[("LLMROUTE_DB", other_db.to_str().unwrap())]);
    let judge = |s: &Served, prompt: &str| {
        let mut body = chat(None, prompt);
        body["model"] = json!("t/strong");
        let (status, _, id) = post(s, &alice, "/v1/chat/completions", &body);
        assert_eq!(status, 200);
        let fb = json!({"request_id": id.unwrap(), "score": 1});
        let (status, v, _) = post(s, &alice, "/v1/feedback", &fb);
        assert_eq!(status, 200, "{v}");
        v
    };
    for i in 0..6 {
        judge(&other, &format!("elsewhere {i}"));
    }
    // Its answer counts every machine's events, not its store's one.
    let v = judge(&one, "here");
    assert_eq!(v["quality_events"], 7, "{v}");
    let events = || {
        let body = json!({"messages": [{"role": "user", "content": "x"}]});
        let (status, route, _) = post(&one, &alice, "/route", &body);
        assert_eq!(status, 200, "{route}");
        let strong = route["ranking"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["model"] == "t/strong")
            .cloned()
            .unwrap();
        strong["quality_events"].as_u64().unwrap_or(0)
    };
    assert!(eventually(|| events() == 7), "{}", events());
    // Its store's count is 1: it must not show for 3 s.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while std::time::Instant::now() < until {
        assert_eq!(events(), 7);
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A machine that starts on a Redis holding fewer events than its store
/// knows (Redis lost them, and another machine's event came in since)
/// puts back what it knows.
#[test]
fn a_machine_starting_after_redis_lost_its_data_puts_back_what_it_knows() {
    let redis = RedisServer::start();
    let env = two();
    let outcome = |score: u8| {
        format!(
            "{}\n",
            json!({"task": "sql", "model": "t/strong", "score": score})
        )
    };
    let mut ten = String::new();
    for _ in 0..10 {
        ten.push_str(&outcome(1));
    }
    env.cmd()
        .args(["feedback", "--outcomes", "-", "-q", "--redis", &redis.url()])
        .stdin(ten)
        .run()
        .assert_code(0);
    let mut c = redis.client().get_connection().unwrap();
    let () = redis::cmd("FLUSHALL").query(&mut c).unwrap();
    assert_eq!(shared_posterior(&redis, "sql", "t/strong"), None);
    // A field Redis no longer has is put back. (One another machine wrote
    // again since is not: Redis cannot tell that from events of this
    // store's that never reached it, which must not replace what others
    // gave: see the test after this one.)
    let _s = env.serve(&["--models", "t/cheap,t/strong", "--redis", &redis.url()]);
    assert!(
        eventually(|| shared_posterior(&redis, "sql", "t/strong").is_some_and(|p| p.0 >= 10)),
        "{:?}",
        shared_posterior(&redis, "sql", "t/strong")
    );
}

#[test]
fn a_machine_that_learned_more_on_its_own_replaces_nothing_another_shared() {
    // Ten bad outcomes shared through Redis; another store took twelve good
    // ones without Redis. Joining, that machine must not put its own count
    // in place of what every machine learned.
    let redis = RedisServer::start();
    let env = two();
    let lines = |score: u8, n: usize| {
        format!(
            "{}\n",
            json!({"task": "sql", "model": "t/strong", "score": score})
        )
        .repeat(n)
    };
    env.cmd()
        .args(["feedback", "--outcomes", "-", "-q", "--redis", &redis.url()])
        .stdin(lines(0, 10))
        .run()
        .assert_code(0);
    let other = env.path("other.db");
    env.cmd()
        .env("LLMROUTE_DB", &other)
        .args(["feedback", "--outcomes", "-", "-q"])
        .stdin(lines(1, 12))
        .run()
        .assert_code(0);
    let _s = env.serve_with(
        &["--models", "t/cheap,t/strong", "--redis", &redis.url()],
        &[("LLMROUTE_DB", other.to_str().unwrap())],
    );
    // Its watch has read Redis (and would have put back) by now.
    std::thread::sleep(std::time::Duration::from_millis(2_500));
    let (events, good, bad) = shared_posterior(&redis, "sql", "t/strong").unwrap();
    assert!(
        events >= 10 && bad >= 9.9 && good < 0.1,
        "{events} {good} {bad}"
    );
}

/// The request ids of `n` prompts `token` sent pinned to t/cheap.
fn answered_by_cheap(s: &Served, token: &str, n: usize) -> Vec<String> {
    let mut body = chat(None, "help me");
    body["model"] = json!("t/cheap");
    (0..n)
        .map(|i| {
            body["messages"][0]["content"] = json!(format!("help me {i}"));
            let (status, _, id) = post(s, token, "/v1/chat/completions", &body);
            assert_eq!(status, 200);
            id.unwrap()
        })
        .collect()
}

#[test]
fn feedback_taken_while_redis_is_away_is_shared_when_it_is_back() {
    let redis = RedisServer::start();
    let env = two();
    let alice = shared_key(&env, &redis, "alice");
    let s = env.serve(&["--models", "t/cheap,t/strong", "--redis", &redis.url()]);
    let ids = answered_by_cheap(&s, &alice, 4);
    // Redis holds the field before it goes away.
    let (status, v, _) = post(
        &s,
        &alice,
        "/v1/feedback",
        &json!({"request_id": ids[0], "score": 1}),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        shared_posterior(&redis, "support", "t/cheap").map(|p| p.0),
        Some(1)
    );
    let redis = redis.down_and_back(|| {
        for id in &ids[1..] {
            let (status, v, _) = post(
                &s,
                &alice,
                "/v1/feedback",
                &json!({"request_id": id, "score": 0}),
            );
            assert_eq!(status, 200, "{v}");
        }
    });
    // Answered as taken: once Redis is back, every machine learns them.
    assert!(
        eventually(|| shared_posterior(&redis, "support", "t/cheap").is_some_and(|p| p.0 == 4)),
        "{:?}",
        shared_posterior(&redis, "support", "t/cheap")
    );
}

/// Feedback taken while Redis is away counts once when it is back, whether
/// Redis never had its task and model, or lost everything meanwhile: what
/// was taken is shared, not also put back with what Redis lost.
#[test]
fn feedback_taken_while_redis_is_away_counts_once() {
    for emptied in [false, true] {
        let redis = RedisServer::start();
        let env = two();
        let alice = shared_key(&env, &redis, "alice");
        let s = env.serve(&["--models", "t/cheap,t/strong", "--redis", &redis.url()]);
        let ids = answered_by_cheap(&s, &alice, 2);
        // Emptied: Redis held one event, and loses it. Not emptied: the
        // first event of the task and model comes while Redis is away.
        let before = match emptied {
            true => {
                let fb = json!({"request_id": ids[0], "score": 1});
                let (status, v, _) = post(&s, &alice, "/v1/feedback", &fb);
                assert_eq!(status, 200, "{v}");
                assert!(eventually(|| shared_posterior(
                    &redis, "support", "t/cheap"
                )
                .is_some()));
                // The watcher has read it there.
                std::thread::sleep(std::time::Duration::from_millis(1500));
                1
            }
            false => 0,
        };
        let away = || {
            let fb = json!({"request_id": ids[1], "score": 0});
            let (status, v, _) = post(&s, &alice, "/v1/feedback", &fb);
            assert_eq!(status, 200, "{v}");
        };
        let redis = match emptied {
            true => redis.down_and_back_empty(away),
            false => redis.down_and_back(away),
        };
        let want = before + 1;
        let events = || shared_posterior(&redis, "support", "t/cheap").map(|p| p.0);
        assert!(
            eventually(|| events().is_some_and(|n| n >= want)),
            "{:?}",
            events()
        );
        // Both the share of what was taken and the put-back have had time.
        std::thread::sleep(std::time::Duration::from_millis(3000));
        assert_eq!(events(), Some(want), "emptied: {emptied}");
    }
}
