//! Budgets that hold whatever the requests: a model no price is known for,
//! a burst after a few short answers, and a budget shared through Redis
//! while requests are in flight.

use std::time::Duration;

use fake_openrouter::Behavior;
use serde_json::{json, Value};

use crate::client_keys::{get, make_key, post};
use crate::serve::rt;
use crate::util::*;

#[test]
fn a_model_with_no_known_price_is_held_to_a_key_s_budget() {
    let env = Env::three();
    let token = make_key(
        &env,
        "poor",
        &["--budget", "0.002", "--per", "day", "--models", "x/*"],
    );
    let s = env.serve(&["--models", "t/a", "--no-cache"]);
    let spent = rt().block_on(async {
        let mut refused = None;
        for i in 0..100 {
            let mut body = chat(Some("x/unpriced"), &format!("prompt number {i}"));
            body["max_tokens"] = json!(10);
            let (status, _, v) = post(&s, Some(&token), &body).await;
            if status != 200 {
                refused = Some((status, v));
                break;
            }
        }
        // Counted at the dearest known price (t/c's), the budget runs out.
        let (status, v) = refused.expect("the budget runs out");
        assert_eq!(status, 429, "{v}");
        assert_eq!(v["error"]["code"], "key_budget_exceeded", "{v}");
        let (_, me) = get(&s, Some(&token), "/v1/key").await;
        let me: Value = serde_json::from_str(&me).unwrap();
        let spent = me["spent_usd"].as_f64().unwrap();
        assert!(spent > 0.001 && spent <= 0.002 + 1e-12, "{me}");
        spent
    });
    s.stop();
    // The store keeps what the budget was charged: a restart starts there.
    let s = env.serve(&["--models", "t/a", "--no-cache"]);
    rt().block_on(async {
        let (_, me) = get(&s, Some(&token), "/v1/key").await;
        let me: Value = serde_json::from_str(&me).unwrap();
        let after = me["spent_usd"].as_f64().unwrap();
        assert!(
            (after - spent).abs() < 1e-6,
            "{after} after, {spent} before"
        );
    });
    s.stop();
}

#[test]
fn a_batch_budget_holds_a_model_with_no_known_price() {
    let env = Env::three();
    let input = env.write("in.jsonl", &prompts_with_max_tokens(50, 10));
    let out = env
        .cmd()
        .args([
            "--models",
            "x/unpriced",
            "--no-cache",
            "--max-cost",
            "0.001",
        ])
        .arg(&input)
        .run();
    let lines = out.lines();
    assert_eq!(lines.len(), 50, "{}", out.stderr);
    let refused = lines
        .iter()
        .filter(|l| l["error"]["type"] == "budget_exceeded")
        .count();
    assert!(refused > 30, "{refused} of 50 refused: {}", out.stderr);
    assert!(out.stderr.contains("cost unknown"), "{}", out.stderr);
}

#[test]
fn a_few_short_answers_do_not_let_a_burst_spend_past_a_key_s_budget() {
    let env = Env::three();
    let token = make_key(&env, "burst", &["--budget", "0.004", "--per", "day"]);
    let s = env.serve(&["--models", "t/a", "--no-cache"]);
    rt().block_on(async {
        // One short answer: a few tokens, with no spread.
        assert_eq!(post(&s, Some(&token), &chat(None, "hi")).await.0, 200);
        // Then answers of 200 words, slow enough to be in flight together.
        env.server.set_default(
            "t/a",
            Behavior::Stream {
                first: Duration::from_millis(300),
                interval: Duration::ZERO,
                pieces: 200,
                cut_after: None,
                cost: None,
            },
        );
        let burst = (0..20).map(|i| {
            let s = &s;
            let token = &token;
            async move {
                let body = chat(None, &format!("a long answer, please: {i}"));
                post(s, Some(token), &body).await.0
            }
        });
        let statuses = futures_util::future::join_all(burst).await;
        assert!(statuses.contains(&200), "{statuses:?}");
        let (_, me) = get(&s, Some(&token), "/v1/key").await;
        let me: Value = serde_json::from_str(&me).unwrap();
        let spent = me["spent_usd"].as_f64().unwrap();
        assert!(spent <= 0.004 + 1e-9, "spent past the budget: {me}");
    });
    s.stop();
}

#[test]
fn a_shared_budget_waits_for_requests_in_flight_instead_of_refusing() {
    let env = Env::new(vec![ModelSpec::new("t/a").prices("0", "0.00002")]);
    env.server.set_default("t/a", Behavior::ok_after(300));
    let redis = RedisServer::start();
    // Each line holds $0.002 (100 tokens) and costs far less: two fit at
    // once, and every one fits once those before it settle.
    let input = env.write("in.jsonl", &prompts_with_max_tokens(5, 100));
    let out = env
        .cmd()
        .env("LLMROUTE_REDIS_URL", redis.url())
        .args(["--models", "t/a", "--no-cache", "-j", "8"])
        .args(["--max-cost", "0.005", "--shared-limits", "--budget-id", "w"])
        .arg(&input)
        .run();
    out.assert_code(0);
    let lines = out.lines();
    assert_eq!(lines.len(), 5);
    for l in &lines {
        assert!(l["error"].is_null(), "{l}");
    }
}

/// One model, t/a, whose every answer costs $0.01.
fn a_cent_a_request() -> Env {
    let env = Env::new(vec![ModelSpec::new("t/a").prices("0", "0.00002")]);
    env.server.set_default("t/a", Behavior::ok_with_cost(0.01));
    env
}

/// A short request, the `i`-th.
fn ask(i: usize) -> Value {
    let mut body = chat(None, &format!("prompt {i}"));
    body["max_tokens"] = json!(10);
    body
}

/// A server on t/a sharing state through the Redis at `url`, on the store
/// `db` of its own if given.
fn serve_on(env: &Env, url: &str, db: Option<&str>) -> Served {
    let mut args = vec!["--models", "t/a", "--no-cache", "--redis", url];
    let path = db.map(|d| env.path(d));
    if let Some(p) = &path {
        args.extend(["--db", p.to_str().unwrap()]);
    }
    env.serve(&args)
}

#[test]
fn a_redis_that_restarts_empty_does_not_give_a_key_its_budget_back() {
    let env = a_cent_a_request();
    let redis = RedisServer::start();
    let url = redis.url();
    let flags = ["--budget", "0.05", "--per", "day", "--redis", &url];
    let token = make_key(&env, "shared", &flags);
    // Two servers with stores of their own, sharing the key's budget.
    let serve = |db: &str| serve_on(&env, &url, Some(db));
    let (a, b) = (serve("a.db"), serve("b.db"));
    rt().block_on(async {
        for i in 0..3 {
            assert_eq!(post(&a, Some(&token), &ask(i)).await.0, 200);
        }
        // The second server sees what the first spent.
        assert_eq!(post(&b, Some(&token), &ask(3)).await.0, 200);
    });
    // Redis comes back empty: what was spent ($0.04) is not forgotten.
    let redis = redis.restart();
    std::thread::sleep(Duration::from_secs(1));
    rt().block_on(async {
        let mut answered = 0;
        for i in 4..10 {
            if post(&b, Some(&token), &ask(i)).await.0 == 200 {
                answered += 1;
            }
        }
        assert!(
            answered <= 1,
            "{answered} more answered: $0.04 was spent of $0.05"
        );
    });
    a.stop();
    b.stop();
    drop(redis);
}

/// When Redis comes back empty, what each server spent before counts,
/// also what one spent that the other never heard of: each server keeps
/// its own part of the budget there, and the spend is their sum.
#[test]
fn a_redis_that_restarts_empty_gets_every_server_s_spend_back() {
    let env = a_cent_a_request();
    let redis = RedisServer::start();
    let url = redis.url();
    let flags = ["--budget", "1", "--per", "day", "--redis", &url];
    let token = make_key(&env, "pair", &flags);
    let serve = |db: &str| serve_on(&env, &url, Some(db));
    let (a, b) = (serve("a.db"), serve("b.db"));
    // b spends first, so it never hears of what a spends after it.
    rt().block_on(async {
        assert_eq!(post(&b, Some(&token), &ask(0)).await.0, 200);
        for i in 1..3 {
            assert_eq!(post(&a, Some(&token), &ask(i)).await.0, 200);
        }
    });
    let redis = redis.restart();
    std::thread::sleep(Duration::from_secs(1));
    rt().block_on(async {
        assert_eq!(post(&b, Some(&token), &ask(3)).await.0, 200);
        assert_eq!(post(&a, Some(&token), &ask(4)).await.0, 200);
        assert_eq!(post(&b, Some(&token), &ask(5)).await.0, 200);
    });
    // Settlements kept while a server's link rests reach Redis once it
    // tries again.
    eventually(|| budget_spent(&redis, "pair").is_some_and(|s| (s - 0.06).abs() < 1e-6));
    a.stop();
    b.stop();
    let out = env
        .cmd()
        .args(["keys", "show", "pair", "--json", "--redis", &redis.url()])
        .run();
    out.assert_code(0);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    let spent = v["spent_usd"].as_f64().unwrap();
    assert!((spent - 0.06).abs() < 1e-6, "six requests at $0.01: {v}");
}

/// Two servers on one store share a key's budget through Redis as two on
/// stores of their own do: what each spends counts.
#[test]
fn two_servers_on_one_store_count_each_other_s_spend() {
    let env = a_cent_a_request();
    let redis = RedisServer::start();
    let url = redis.url();
    let flags = ["--budget", "1", "--per", "day", "--redis", &url];
    let token = make_key(&env, "one-store", &flags);
    let serve = || serve_on(&env, &url, None);
    let (a, b) = (serve(), serve());
    // In turn: each has spent from the store what it found there when its
    // budget was made, then only its own.
    rt().block_on(async {
        for i in 0..5 {
            let s = if i % 2 == 0 { &a } else { &b };
            assert_eq!(post(s, Some(&token), &ask(i)).await.0, 200);
        }
    });
    a.stop();
    b.stop();
    // Redis itself: `keys show` on this store would show the store's.
    let sum = budget_spent(&redis, "one-store");
    assert!(
        sum.is_some_and(|s| (s - 0.05).abs() < 1e-6),
        "five requests at $0.01: {sum:?}"
    );
}

/// What key `name`'s budget in Redis says was spent: the larger of the
/// settlements' sum and the parts'.
fn budget_spent(redis: &RedisServer, name: &str) -> Option<f64> {
    let run = budget_field(redis, name, "run");
    let sum = budget_field(redis, name, "sum");
    run.into_iter().chain(sum).reduce(f64::max)
}

/// Field `field` of key `name`'s budget in Redis.
fn budget_field(redis: &RedisServer, name: &str, field: &str) -> Option<f64> {
    let budget = redis
        .dump()
        .into_iter()
        .find(|(k, _)| k.contains(&format!("budget:key:{name}:")))
        .map(|(_, v)| v)?;
    // The hash as "field value field value ...".
    let fields: Vec<&str> = budget.split(' ').collect();
    fields
        .chunks(2)
        .find(|p| p[0] == field)
        .and_then(|p| p.get(1)?.parse::<f64>().ok())
}

/// A key made again while a server runs gets a budget of its own making,
/// whose settlements Redis takes: nothing stays held once its requests
/// are answered.
#[test]
fn a_key_made_again_settles_its_requests_in_redis() {
    let env = a_cent_a_request();
    let redis = RedisServer::start();
    let url = redis.url();
    let flags = ["--budget", "1", "--per", "total", "--redis", &url];
    let old = make_key(&env, "again", &flags);
    let s = serve_on(&env, &url, None);
    rt().block_on(async {
        for i in 0..3 {
            assert_eq!(post(&s, Some(&old), &ask(i)).await.0, 200);
        }
    });
    env.cmd()
        .args(["keys", "revoke", "again", "--redis", &url])
        .run()
        .assert_code(0);
    let new = make_key(&env, "again", &flags);
    rt().block_on(async {
        assert!(
            crate::client_keys::eventually(async || post(&s, Some(&new), &ask(10)).await.0 == 200)
                .await,
            "the key made again is taken"
        );
        for i in 11..13 {
            assert_eq!(post(&s, Some(&new), &ask(i)).await.0, 200);
        }
    });
    s.stop();
    assert_eq!(budget_field(&redis, "again", "held"), Some(0.0));
    let sum = budget_spent(&redis, "again");
    assert!(
        sum.is_some_and(|s| (s - 0.06).abs() < 1e-6),
        "six requests at $0.01: {sum:?}"
    );
}

/// `keys show` with Redis shows what every server spent of a key's budget,
/// not what this machine's store recorded.
#[test]
fn keys_show_with_redis_shows_every_server_s_spend() {
    let env = Env::three();
    let redis = RedisServer::start();
    let token = make_key(
        &env,
        "team",
        &["--budget", "5", "--per", "day", "--redis", &redis.url()],
    );
    // A server on a store of its own spends; this machine's store spends nothing.
    let other = env.path("other.db");
    let s = env.serve_with(
        &["--models", "t/a", "--no-cache", "--redis", &redis.url()],
        &[("LLMROUTE_DB", other.to_str().unwrap())],
    );
    rt().block_on(async {
        for i in 0..3 {
            let (status, _, v) = post(&s, Some(&token), &chat(None, &format!("q{i}"))).await;
            assert_eq!(status, 200, "{v}");
        }
    });
    s.stop();
    let out = env
        .cmd()
        .args(["keys", "show", "team", "--json", "--redis", &redis.url()])
        .run();
    out.assert_code(0);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(v["spent_usd"].as_f64().unwrap() > 0.0, "{v}");
    let out = env
        .cmd()
        .args(["keys", "show", "team", "--redis", &redis.url()])
        .run();
    assert!(out.stdout.contains("all servers'"), "{}", out.stdout);
}

/// What a key spent while Redis was away counts once in the shared budget
/// when Redis comes back empty, however its first requests and the
/// settlements kept meanwhile reach it.
#[test]
fn spend_while_redis_is_away_counts_once_when_it_comes_back_empty() {
    let env = a_cent_a_request();
    let redis = RedisServer::start();
    let url = redis.url();
    let token = make_key(
        &env,
        "team",
        &["--budget", "1", "--per", "day", "--redis", &url],
    );
    let s = serve_on(&env, &url, None);
    let send = |range: std::ops::Range<usize>| {
        rt().block_on(async {
            for i in range {
                assert_eq!(post(&s, Some(&token), &ask(i)).await.0, 200);
            }
        })
    };
    send(0..2);
    let redis = redis.down_and_back_empty(|| send(2..5));
    // Requests go on as Redis comes back.
    for round in 0..6 {
        std::thread::sleep(Duration::from_millis(300));
        send(10 + round..11 + round);
    }
    s.stop();
    let spent = || {
        let out = env
            .cmd()
            .args(["keys", "show", "team", "--json", "--redis", &redis.url()])
            .run();
        out.assert_code(0);
        let v: Value = serde_json::from_str(&out.stdout).unwrap();
        v["spent_usd"].as_f64().unwrap()
    };
    // 2 before, 3 while away, 6 after: $0.11.
    assert!((spent() - 0.11).abs() < 1e-6, "Redis holds {}", spent());
}

/// A request whose client left before any answer keeps its estimate in the
/// key's budget, as it may have been billed; `report --by key` shows that
/// charge beside the known cost, so the two agree.
#[test]
fn report_by_key_shows_what_a_request_cut_off_was_charged() {
    let env = Env::three();
    env.server.set_default("t/a", Behavior::Hang);
    let token = make_key(&env, "leaver", &["--budget", "5", "--per", "day"]);
    let s = env.serve(&["--models", "t/a", "--no-cache"]);
    let spent = rt().block_on(async {
        let impatient = reqwest::Client::builder()
            .timeout(Duration::from_millis(300))
            .build()
            .unwrap();
        let mut body = chat(None, "cut off");
        body["max_tokens"] = json!(1000);
        let r = impatient
            .post(s.url("/v1/chat/completions"))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await;
        assert!(r.is_err(), "the client gave up");
        let mut spent = 0.0;
        for _ in 0..100 {
            let (_, me) = get(&s, Some(&token), "/v1/key").await;
            let me: Value = serde_json::from_str(&me).unwrap();
            spent = me["spent_usd"].as_f64().unwrap_or(0.0);
            if spent > 0.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        spent
    });
    s.stop();
    assert!(spent > 0.0, "the estimate is charged");
    let out = env
        .cmd()
        .args(["report", "--by", "key", "--since", "all", "--json"])
        .run();
    out.assert_code(0);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    let row = &v["keys"][0];
    assert_eq!(row["key"], "leaver", "{v}");
    assert_eq!(row["cost_usd"].as_f64(), Some(0.0), "{v}");
    let charged = row["charged_usd"].as_f64().unwrap_or(0.0);
    assert!(
        (charged - spent).abs() < 1e-9,
        "{charged} against {spent}: {v}"
    );
    let table = env
        .cmd()
        .args(["report", "--by", "key", "--since", "all"])
        .run();
    assert!(
        table.stdout.contains("; budget charged $0.002"),
        "{}",
        table.stdout
    );
    let prom = env
        .cmd()
        .args(["report", "--since", "all", "--format", "prometheus"])
        .run();
    let line = prom
        .stdout
        .lines()
        .find(|l| l.starts_with(r#"llmroute_key_charged_usd{key="leaver"}"#));
    let value: Option<f64> = line.and_then(|l| l.rsplit(' ').next()?.parse().ok());
    assert!(
        value.is_some_and(|v| (v - spent).abs() < 1e-9),
        "{}",
        prom.stdout
    );
}
