//! Client keys for a shared server: made with `llmroute keys`, kept only
//! as hashes, picked up by a running server, each held to its own budget,
//! rates, models, priorities, `max_tokens` and cache.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::serve::rt;
use crate::util::*;

/// Makes key `name` with `flags`; returns its token.
pub(crate) fn make_key(env: &Env, name: &str, flags: &[&str]) -> String {
    let out = env.cmd().args(["keys", "create", name]).args(flags).run();
    out.assert_code(0);
    let token = out.stdout.lines().next().unwrap_or("").trim().to_string();
    assert!(token.starts_with("llmr-"), "{}", out.stdout);
    token
}

/// Posts a chat body with `token`; returns the status, headers and body.
pub(crate) async fn post(
    s: &Served,
    token: Option<&str>,
    body: &Value,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = reqwest::Client::new()
        .post(s.url("/v1/chat/completions"))
        .json(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let v = r.json().await.unwrap_or(Value::Null);
    (status, headers, v)
}

pub(crate) async fn get(s: &Served, token: Option<&str>, path: &str) -> (u16, String) {
    let mut req = reqwest::Client::new().get(s.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Waits up to 10 s for `check` to hold.
pub(crate) async fn eventually(mut check: impl AsyncFnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

#[test]
fn a_token_is_shown_once_and_only_its_hash_is_kept() {
    let env = Env::three();
    let token = make_key(
        &env,
        "team-a",
        &["--budget", "5", "--per", "month", "--rpm", "60"],
    );
    // `TOKEN=$(llmroute keys create NAME)` gets the token and nothing else.
    let out = env.cmd().args(["keys", "create", "team-b"]).run();
    out.assert_code(0);
    assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);
    assert!(out.stdout.starts_with("llmr-"), "{}", out.stdout);
    assert!(out.stderr.contains("key team-b made"), "{}", out.stderr);
    let store = std::fs::read(env.db()).unwrap();
    let wal = std::fs::read(env.path("store.db-wal")).unwrap_or_default();
    for bytes in [&store, &wal] {
        assert!(
            !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
            "the token is in the store"
        );
    }
    let list = env.cmd().args(["keys", "list"]).run();
    list.assert_code(0);
    assert!(
        list.stdout.contains("team-a") && list.stdout.contains("live"),
        "{}",
        list.stdout
    );
    assert!(
        list.stdout.contains("$5") && list.stdout.contains("a month"),
        "{}",
        list.stdout
    );
    assert!(!list.stdout.contains(&token));
    let show = env.cmd().args(["keys", "show", "team-a", "--json"]).run();
    show.assert_code(0);
    let v: Value = serde_json::from_str(&show.stdout).unwrap();
    assert_eq!(v["policy"]["rpm"], 60);
    assert_eq!(v["spent_usd"], 0.0);
    // A live name is not made twice; a bad name or value is refused.
    let again = env.cmd().args(["keys", "create", "team-a"]).run();
    assert_ne!(again.code, 0, "{}", again.stderr);
    assert!(again.stderr.contains("exists"), "{}", again.stderr);
    for bad in [
        vec!["keys", "create", "a b"],
        vec!["keys", "create", "x", "--budget", "-1"],
        vec!["keys", "create", "x", "--rpm", "0"],
        vec!["keys", "create", "x", "--priorities", "fastest"],
        vec!["keys", "create", "x", "--expires", "yesterday"],
        vec!["keys", "create", "x", "--expires", "0s"],
        vec!["keys", "create", "x", "--expires", "2020-01-01"],
    ] {
        let out = env.cmd().args(&bad).run();
        assert_ne!(out.code, 0, "{bad:?}: {}", out.stdout);
        assert!(out.stderr.contains("llmroute"), "{bad:?}: {}", out.stderr);
    }
    let revoked = env.cmd().args(["keys", "revoke", "team-a"]).run();
    revoked.assert_code(0);
    let list = env.cmd().args(["keys", "list", "--json"]).run();
    let v: Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(v[0]["state"], "revoked");
    // Revoked again (a script run twice), it stays revoked, and says so;
    // a name no key ever had is an error.
    let again = env.cmd().args(["keys", "revoke", "team-a"]).run();
    again.assert_code(0);
    assert!(
        again.stdout.contains("key team-a was already revoked"),
        "{}",
        again.stdout
    );
    let none = env.cmd().args(["keys", "revoke", "team-z"]).run();
    none.assert_code(2);
    assert!(
        none.stderr.contains("no key named team-z"),
        "{}",
        none.stderr
    );
}

/// The access line of a request refused for a revoked key names the key,
/// so that its use can be audited; an unknown token's names none.
#[test]
fn a_revoked_key_s_refusals_are_logged_with_its_name() {
    let env = Env::three();
    let a = make_key(&env, "gone", &[]);
    let s = env.serve(&["--models", "t/a", "--log-format", "json"]);
    env.cmd()
        .args(["keys", "revoke", "gone"])
        .run()
        .assert_code(0);
    rt().block_on(async {
        let body = chat(None, "hello");
        assert!(
            eventually(async || post(&s, Some(&a), &body).await.0 == 401).await,
            "a revoked key is refused within seconds"
        );
        assert_eq!(post(&s, Some("llmr-nope"), &body).await.0, 401);
    });
    let (_, log) = s.stop();
    let refused: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["status"] == 401)
        .collect();
    let unnamed = refused
        .iter()
        .filter(|v| v.get("key").is_none_or(Value::is_null))
        .count();
    assert_eq!(unnamed, 1, "the unknown token's line alone: {log}");
    assert!(
        refused
            .iter()
            .all(|v| v.get("key").is_none_or(|k| k.is_null() || k == "gone")),
        "{log}"
    );
    assert!(refused.iter().any(|v| v["key"] == "gone"), "{log}");
}

#[test]
fn a_running_server_takes_new_keys_and_refuses_revoked_ones() {
    let env = Env::three();
    let a = make_key(&env, "a", &[]);
    let s = env.serve(&["--models", "t/a"]);
    rt().block_on(async {
        let body = chat(None, "hello");
        assert_eq!(post(&s, None, &body).await.0, 401);
        assert_eq!(post(&s, Some("llmr-nope"), &body).await.0, 401);
        assert_eq!(post(&s, Some(&a), &body).await.0, 200);
        let b = make_key(&env, "b", &[]);
        assert!(
            eventually(async || post(&s, Some(&b), &body).await.0 == 200).await,
            "a key made while the server runs is taken within seconds"
        );
        env.cmd().args(["keys", "revoke", "a"]).run().assert_code(0);
        assert!(
            eventually(async || post(&s, Some(&a), &body).await.0 == 401).await,
            "a revoked key is refused within seconds"
        );
        let (_, _, v) = post(&s, Some(&a), &body).await;
        assert!(
            v["error"]["message"].as_str().unwrap().contains("revoked"),
            "{v}"
        );
        // A key sees its own use, not the server's metrics.
        let (status, text) = get(&s, Some(&b), "/v1/key").await;
        assert_eq!(status, 200);
        let me: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(me["name"], "b");
        assert_eq!(get(&s, Some(&b), "/metrics").await.0, 403);
        // Nor the dashboard, which is about every key: a 403 that says so,
        // not the 401 of a missing token.
        assert_eq!(get(&s, Some(&b), "/dashboard").await.0, 403);
        let (status, text) = get(&s, Some(&b), "/dashboard/data").await;
        assert_eq!(status, 403, "{text}");
        assert_eq!(get(&s, Some("llmr-nobody"), "/dashboard/data").await.0, 401);
        // The sign-in form says the same of a key's token, not that the
        // server does not know it.
        let r = reqwest::Client::new()
            .post(s.url("/dashboard/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("sec-fetch-site", "same-origin")
            .body(format!("token={b}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        let page = r.text().await.unwrap();
        assert!(
            page.contains("A client key may not see the dashboard"),
            "{page}"
        );
    });
    // Each request is recorded with its key's name.
    drop(s);
    assert!(env.count("SELECT count(*) FROM requests WHERE key_name = 'a'") >= 1);
    assert!(env.count("SELECT count(*) FROM requests WHERE key_name = 'b'") >= 1);
}

#[test]
fn an_expired_key_is_refused() {
    let env = Env::three();
    let t = make_key(&env, "brief", &["--expires", "2s"]);
    let s = env.serve(&["--models", "t/a"]);
    rt().block_on(async {
        let body = chat(None, "hi");
        std::thread::sleep(Duration::from_millis(2100));
        let (status, _, v) = post(&s, Some(&t), &body).await;
        assert_eq!(status, 401, "{v}");
        assert!(v["error"]["message"].as_str().unwrap().contains("expired"));
    });
}

#[test]
fn a_key_over_its_budget_gets_429_while_others_are_served() {
    let env = Env::three();
    let poor = make_key(&env, "poor", &["--budget", "0.0001", "--per", "day"]);
    let rich = make_key(&env, "rich", &[]);
    let s = env.serve(&["--models", "t/a", "--no-cache"]);
    rt().block_on(async {
        let mut answered = 0;
        let mut refused = None;
        for i in 0..60 {
            let mut body = chat(None, &format!("prompt number {i}"));
            body["max_tokens"] = json!(10);
            let (status, headers, v) = post(&s, Some(&poor), &body).await;
            match status {
                200 => answered += 1,
                _ => {
                    refused = Some((status, headers, v));
                    break;
                }
            }
        }
        let (status, headers, v) = refused.expect("the budget ran out");
        assert!(answered > 0, "some requests fit first");
        assert_eq!(status, 429, "{v}");
        assert_eq!(v["error"]["code"], "key_budget_exceeded", "{v}");
        assert_eq!(headers["x-should-retry"], "false");
        let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=86_400).contains(&retry), "until the day ends: {retry}");
        // A request larger than the whole budget: no wait makes it fit.
        let mut huge = chat(None, "a long one");
        huge["max_tokens"] = json!(100_000);
        let (status, headers, v) = post(&s, Some(&poor), &huge).await;
        assert_eq!(status, 429, "{v}");
        assert!(headers.get("retry-after").is_none(), "{headers:?}");
        // Within its budget, and the others are served.
        let (_, me) = get(&s, Some(&poor), "/v1/key").await;
        let me: Value = serde_json::from_str(&me).unwrap();
        assert!(me["spent_usd"].as_f64().unwrap() <= 0.0001 + 1e-12, "{me}");
        assert_eq!(post(&s, Some(&rich), &chat(None, "x")).await.0, 200);
    });
    // The budget survives a restart: the store says what was spent. (A
    // stop, not a kill: a killed server may lose the rows its writer had
    // not committed yet, and the count below is of every refusal.)
    let _ = s.stop();
    let s = env.serve(&["--models", "t/a", "--no-cache"]);
    rt().block_on(async {
        let mut body = chat(None, "after the restart");
        body["max_tokens"] = json!(10);
        let (status, _, v) = post(&s, Some(&poor), &body).await;
        assert_eq!(status, 429, "{v}");
    });
    s.stop();
    // Each refusal recorded once.
    assert_eq!(
        env.count("SELECT count(*) FROM requests WHERE key_name = 'poor' AND error_type = 'key_budget_exceeded'"),
        3
    );
}

#[test]
fn a_key_over_its_rate_gets_429_with_retry_after() {
    let env = Env::three();
    let slow = make_key(&env, "slow", &["--rpm", "2"]);
    let other = make_key(&env, "another", &[]);
    // One of a thing is singular.
    make_key(&env, "single", &["--rpm", "1", "--tpm", "1"]);
    let listed = env.cmd().args(["keys", "list"]).run();
    assert!(
        listed.stdout.contains("1 request/min, 1 token/min"),
        "{}",
        listed.stdout
    );
    let s = env.serve(&["--models", "t/a"]);
    rt().block_on(async {
        let body = chat(None, "hi");
        away_from_a_minute_s_end();
        let mut statuses = Vec::new();
        let mut last = None;
        for _ in 0..3 {
            let (status, headers, v) = post(&s, Some(&slow), &body).await;
            statuses.push(status);
            last = Some((headers, v));
        }
        assert_eq!(statuses, [200, 200, 429], "two a minute");
        let (headers, v) = last.unwrap();
        assert_eq!(v["error"]["code"], "rate_limit_exceeded", "{v}");
        let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry), "{retry}");
        assert_eq!(post(&s, Some(&other), &body).await.0, 200);
        // A request its policy refuses.
        let bad = json!({"model": "t/a", "max_tokens": "many", "messages": [{"role": "user", "content": "x"}]});
        assert_eq!(post(&s, Some(&other), &bad).await.0, 400);
    });
    s.stop();
    // Every request of a key is recorded with its name, refused ones too.
    assert_eq!(
        env.count("SELECT count(*) FROM requests WHERE key_name = 'slow' AND error_type = 'rate_limit_exceeded'"),
        1
    );
    assert_eq!(
        env.count("SELECT count(*) FROM requests WHERE key_name = 'another' AND NOT ok"),
        1
    );
}

#[test]
fn a_key_s_tokens_a_minute_hold_for_requests_sent_at_once() {
    let env = Env::three();
    let token = make_key(&env, "burst", &["--tpm", "50"]);
    // The fake answers slowly, so that all ten are in flight together,
    // however busy the machine.
    env.server.set_default("t/a", Behavior::ok_after(2_000));
    let s = env.serve(&["--models", "t/a"]);
    away_from_a_minute_s_end();
    let body =
        json!({"model": "t/a", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]});
    let statuses = rt().block_on(async {
        let sent = (0..10).map(|_| post(&s, Some(&token), &body));
        futures_util::future::join_all(sent).await
    });
    let served = statuses.iter().filter(|r| r.0 == 200).count();
    assert!(
        (1..=2).contains(&served),
        "{:?}",
        statuses.iter().map(|r| r.0).collect::<Vec<_>>()
    );
    assert!(statuses.iter().all(|r| r.0 == 200 || r.0 == 429));
}

#[test]
fn requests_a_key_leaves_still_count_against_its_tokens_a_minute() {
    // Sent upstream, then left by its client: billed all the same.
    let env = Env::three();
    let token = make_key(&env, "leaver", &["--tpm", "200"]);
    env.server.set_default("t/a", Behavior::ok_after(1_500));
    let s = env.serve(&["--models", "t/a"]);
    away_from_a_minute_s_end();
    let body = |n: u32| {
        // About 200 prompt tokens and 20 of answer: one is let in while the
        // minute is under its 200, and uses it up.
        let text = format!("{n} {}", "word ".repeat(160));
        json!({"model": "t/a", "max_tokens": 20, "messages": [{"role": "user", "content": text}]})
    };
    rt().block_on(async {
        let first = body(1);
        let left = tokio::time::timeout(Duration::from_millis(400), post(&s, Some(&token), &first));
        assert!(
            left.await.is_err(),
            "the first request is left before its answer"
        );
        // Its end is recorded once the server sees the client gone.
        tokio::time::sleep(Duration::from_millis(600)).await;
        let (status, _, v) = post(&s, Some(&token), &body(2)).await;
        assert_eq!(status, 429, "{v}");
        assert_eq!(v["error"]["code"], "rate_limit_exceeded", "{v}");
    });
    assert_eq!(env.server.completions().len(), 1);
}

#[test]
fn answers_from_the_cache_use_none_of_a_key_s_tokens_a_minute() {
    let env = Env::three();
    let token = make_key(&env, "repeats", &["--tpm", "40"]);
    let s = env.serve(&["--models", "t/a"]);
    away_from_a_minute_s_end();
    let body = json!({"model": "t/a", "messages": [{"role": "user", "content": "same again"}]});
    rt().block_on(async {
        for i in 0..10 {
            let (status, headers, v) = post(&s, Some(&token), &body).await;
            assert_eq!(status, 200, "request {i}: {v}");
            assert_eq!(
                headers["x-llmroute-cached"],
                if i == 0 { "false" } else { "true" }
            );
        }
    });
    assert_eq!(env.server.completions().len(), 1);
}

#[test]
fn a_key_is_held_to_its_models_priorities_and_max_tokens() {
    let env = Env::three();
    let t = make_key(
        &env,
        "narrow",
        &[
            "--models",
            "t/b,t/c",
            "--priorities",
            "cost",
            "--max-tokens",
            "16",
        ],
    );
    let none = make_key(&env, "elsewhere", &["--models", "zz/*"]);
    let s = env.serve(&["--models", "t/a,t/b,t/c"]);
    rt().block_on(async {
        let (status, _, v) = post(&s, Some(&t), &chat(Some("t/a"), "hi")).await;
        assert_eq!(status, 403, "{v}");
        assert_eq!(v["error"]["code"], "model_not_allowed");
        let (status, headers, v) = post(&s, Some(&t), &chat(None, "routed")).await;
        assert_eq!(status, 200, "{v}");
        let model = headers["x-llmroute-model"].to_str().unwrap();
        assert!(model == "t/b" || model == "t/c", "{model}");
        let (status, _, v) = post(&s, Some(&t), &chat(Some("llmroute/speed"), "hi")).await;
        assert_eq!(status, 403, "{v}");
        assert_eq!(v["error"]["code"], "priority_not_allowed");
        // A priority that does not exist is a bad request, as for any key.
        let (status, _, v) = post(&s, Some(&t), &chat(Some("llmroute/nosuch"), "hi")).await;
        assert_eq!(status, 400, "{v}");
        assert_eq!(v["error"]["code"], "invalid_input");
        // The list of models is the key's: what it may name, and no other.
        let (status, list) = get(&s, Some(&t), "/v1/models").await;
        assert_eq!(status, 200, "{list}");
        let list: Value = serde_json::from_str(&list).unwrap();
        let ids: Vec<&str> = list["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["id"].as_str())
            .collect();
        for id in ["t/b", "t/c", "llmroute/auto", "llmroute/cost"] {
            assert!(ids.contains(&id), "{id} in {ids:?}");
        }
        for id in ["t/a", "llmroute/speed", "llmroute/quality"] {
            assert!(!ids.contains(&id), "{id} in {ids:?}");
        }
        for path in ["/v1/models/t/a", "/v1/models/llmroute/speed"] {
            let (status, body) = get(&s, Some(&t), path).await;
            assert_eq!(status, 404, "{path}: {body}");
        }
        let (status, body) = get(&s, Some(&t), "/v1/models/t/b").await;
        assert_eq!(status, 200, "{body}");
        // A key no candidate is open to may name no route either.
        let (status, list) = get(&s, Some(&none), "/v1/models").await;
        assert_eq!(status, 200, "{list}");
        let list: Value = serde_json::from_str(&list).unwrap();
        assert_eq!(list["data"], json!([]), "{list}");
        let (status, _, v) = post(&s, Some(&none), &chat(Some("llmroute/auto"), "hi")).await;
        assert_eq!(status, 403, "{v}");
        let mut big = chat(None, "hi");
        big["max_tokens"] = json!(1000);
        let (status, _, v) = post(&s, Some(&t), &big).await;
        assert_eq!(status, 400, "{v}");
        assert_eq!(v["error"]["code"], "max_tokens_too_large");
    });
    let sent: Vec<Value> = env.server.completions().iter().map(|r| r.json()).collect();
    assert!(!sent.is_empty());
    for body in &sent {
        assert_eq!(body["max_tokens"], 16, "{body}");
        assert_ne!(body["model"], "t/a");
    }
}

/// OpenRouter's own `models` list lets the API answer with another model
/// than the one sent: past the key's models, its budget's estimate and
/// what llmroute records.
#[test]
fn a_key_cannot_hand_the_choice_of_model_to_the_upstream() {
    let env = Env::three();
    let t = make_key(&env, "narrow", &["--models", "t/b"]);
    let s = env.serve(&["--models", "t/a,t/b,t/c"]);
    rt().block_on(async {
        let mut body = chat(Some("t/b"), "hi");
        body["models"] = json!(["t/b", "t/a"]);
        body["route"] = json!("fallback");
        let (status, _, v) = post(&s, Some(&t), &body).await;
        assert_eq!(status, 400, "{v}");
        assert_eq!(v["error"]["code"], "parameter_not_allowed", "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("llmroute.fallback"),
            "{v}"
        );
        // An empty list hands nothing over.
        body["models"] = json!([]);
        let (status, _, v) = post(&s, Some(&t), &body).await;
        assert_eq!(status, 200, "{v}");
        // Nor may it name one of OpenRouter's presets, which may set the
        // model.
        let mut preset = chat(Some("t/b"), "hi");
        preset["preset"] = json!("email-copywriter");
        let (status, _, v) = post(&s, Some(&t), &preset).await;
        assert_eq!(status, 400, "{v}");
        assert_eq!(v["error"]["code"], "parameter_not_allowed", "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains("`preset`"),
            "{v}"
        );
    });
    let sent: Vec<Value> = env.server.completions().iter().map(|r| r.json()).collect();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["models"], json!([]));
}

/// A chat body in the shape of an OpenAI Batch API line (`custom_id`,
/// `method`, `url`, `body`), the batch filter's second input form, is not
/// a chat body: refused, so that nothing inside it passes the key's
/// checks unseen.
#[test]
fn a_batch_line_is_not_taken_as_a_chat_body() {
    let env = Env::three();
    let t = make_key(&env, "capped", &["--models", "t/b", "--max-tokens", "16"]);
    let s = env.serve(&["--models", "t/a,t/b,t/c"]);
    rt().block_on(async {
        let inner = [
            json!({"models": ["t/c"]}),
            json!({"preset": "dear"}),
            json!({"max_tokens": 100000}),
            json!({}),
        ];
        for extra in inner {
            let mut body = chat(Some("t/b"), "hi");
            body.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            let line = json!({
                "custom_id": "r-1",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": body,
            });
            for token in [Some(t.as_str()), None] {
                let (status, _, v) = post(&s, token, &line).await;
                let want = if token.is_some() { 400 } else { 401 };
                assert_eq!(status, want, "{v}");
                if token.is_some() {
                    assert_eq!(v["error"]["code"], "invalid_input", "{v}");
                    let m = v["error"]["message"].as_str().unwrap();
                    assert!(m.contains("Batch API line"), "{v}");
                }
            }
        }
    });
    assert_eq!(env.server.completions().len(), 0);
}

#[test]
fn a_key_s_pinned_model_failing_falls_back_only_to_models_it_may_use() {
    let env = Env::three();
    env.server.set_default("t/c", Behavior::status(500));
    let t = make_key(&env, "only-c", &["--models", "t/c"]);
    let s = env.serve(&["--models", "t/a,t/c", "--fallback", "t/b"]);
    rt().block_on(async {
        let (status, headers, v) = post(&s, Some(&t), &chat(Some("t/c"), "pinned")).await;
        assert_eq!(status, 502, "{v} {headers:?}");
    });
    let called: Vec<Value> = env.server.completions().iter().map(|r| r.json()).collect();
    assert!(!called.is_empty());
    for body in &called {
        assert_eq!(body["model"], "t/c", "{body}");
    }
}

#[test]
fn keys_never_see_each_other_s_cached_answers() {
    let env = Env::three();
    let a = make_key(&env, "a", &[]);
    let b = make_key(&env, "b", &[]);
    let c = make_key(&env, "c", &["--cache", "shared"]);
    let d = make_key(&env, "d", &["--cache", "shared"]);
    let s = env.serve(&["--models", "t/a"]);
    rt().block_on(async {
        let body = chat(None, "the same prompt");
        let cached =
            |h: &reqwest::header::HeaderMap| h["x-llmroute-cached"].to_str().unwrap().to_string();
        let (_, h, _) = post(&s, Some(&a), &body).await;
        assert_eq!(cached(&h), "false");
        let (_, h, _) = post(&s, Some(&a), &body).await;
        assert_eq!(cached(&h), "true", "a key's own cache");
        let (_, h, _) = post(&s, Some(&b), &body).await;
        assert_eq!(cached(&h), "false", "not another key's");
        let (_, h, _) = post(&s, Some(&c), &body).await;
        assert_eq!(cached(&h), "false");
        let (_, h, _) = post(&s, Some(&d), &body).await;
        assert_eq!(cached(&h), "true", "keys that share, share");
        // A name is the client: made again with a new token, it keeps its
        // own cache, and another name still does not see it.
        env.cmd().args(["keys", "revoke", "a"]).run().assert_code(0);
        let a2 = make_key(&env, "a", &[]);
        assert!(
            eventually(async || post(&s, Some(&a2), &chat(None, "hi")).await.0 == 200).await,
            "the new token is taken within seconds"
        );
        let (_, h, _) = post(&s, Some(&a2), &body).await;
        assert_eq!(cached(&h), "true", "the name's own cache");
    });
}

#[test]
fn use_is_reported_and_measured_per_key() {
    let env = Env::three();
    let a = make_key(&env, "alpha", &[]);
    let b = make_key(&env, "beta", &["--rpm", "1"]);
    let s = env.serve_with(
        &["--models", "t/a", "--no-cache"],
        &[("LLMROUTE_ADMIN_TOKENS", "admin-1")],
    );
    rt().block_on(async {
        away_from_a_minute_s_end();
        for i in 0..3 {
            assert_eq!(
                post(&s, Some(&a), &chat(None, &format!("a{i}"))).await.0,
                200
            );
        }
        post(&s, Some(&b), &chat(None, "b0")).await;
        post(&s, Some(&b), &chat(None, "b1")).await;
        let (status, metrics) = get(&s, Some("admin-1"), "/metrics").await;
        assert_eq!(status, 200);
        assert!(
            metrics.contains(r#"llmroute_key_requests_total{key="alpha",status="200"} 3"#),
            "{metrics}"
        );
        assert!(
            metrics.contains(r#"llmroute_key_refused_total{key="beta",reason="rate"} 1"#),
            "{metrics}"
        );
        assert!(
            metrics.contains(r#"llmroute_key_spend_usd_total{key="alpha"}"#),
            "{metrics}"
        );
    });
    let (_, log) = s.stop();
    assert!(
        log.contains("alpha"),
        "the access log names the key:\n{log}"
    );
    let out = env
        .cmd()
        .args(["report", "--by", "key", "--since", "all"])
        .run();
    out.assert_code(0);
    assert!(
        out.stdout.contains("alpha") && out.stdout.contains("beta"),
        "{}",
        out.stdout
    );
    let out = env.cmd().args(["report", "--json", "--since", "all"]).run();
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    let alpha = v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["key"] == "alpha")
        .unwrap();
    assert_eq!(alpha["requests"], 3);
    assert!(alpha["cost_usd"].as_f64().unwrap() > 0.0);
    // The HTML report has the table by key too.
    let out = env
        .cmd()
        .args(["report", "--format", "html", "--since", "all"])
        .run();
    out.assert_code(0);
    assert!(
        out.stdout.contains("<table id=\"by-key\">"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("<td class=\"name\">alpha</td><td>3</td>"),
        "{}",
        out.stdout
    );
}

#[test]
fn keys_are_shared_through_redis_and_survive_a_restart() {
    let redis = RedisServer::start();
    let one = Env::three();
    let two = Env::three();
    let token = make_key_on(&one, "shared-key", &redis.url());
    // Another machine: its own store, the same Redis.
    let s = two.serve(&["--models", "t/a", "--redis", &redis.url()]);
    rt().block_on(async {
        assert_eq!(post(&s, Some(&token), &chat(None, "hi")).await.0, 200);
        assert_eq!(post(&s, Some("llmr-other"), &chat(None, "hi")).await.0, 401);
    });
    drop(s);
    let s = one.serve(&["--models", "t/a"]);
    rt().block_on(async {
        assert_eq!(
            post(&s, Some(&token), &chat(None, "hi")).await.0,
            200,
            "after a restart"
        );
    });
    // A revocation reaches every machine on the Redis.
    let out = one
        .cmd()
        .args(["keys", "revoke", "shared-key", "--redis", &redis.url()])
        .run();
    out.assert_code(0);
    let s = two.serve(&["--models", "t/a", "--redis", &redis.url()]);
    rt().block_on(async {
        assert_eq!(post(&s, Some(&token), &chat(None, "hi")).await.0, 401);
    });
    // Revoked again from a store that never held it: it is, through Redis.
    let three = Env::three();
    three
        .cmd()
        .arg("--dry-run")
        .stdin(prompts(1))
        .run()
        .assert_code(0);
    let again = three
        .cmd()
        .args(["keys", "revoke", "shared-key", "--redis", &redis.url()])
        .run();
    again.assert_code(0);
    assert!(again.stdout.contains("already revoked"), "{}", again.stdout);
    // Redis keeps the token's hash only.
    let dump = std::process::Command::new("redis-cli")
        .args([
            "-p",
            &redis.port.to_string(),
            "HGETALL",
            "llmroute:v1:clients",
        ])
        .output()
        .unwrap();
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(
        dump.contains("shared-key") && !dump.contains(&token),
        "{dump}"
    );
}

#[test]
fn what_a_server_learned_of_keys_through_redis_outlives_redis() {
    let redis = RedisServer::start();
    let one = Env::three();
    let two = Env::three();
    let gone = make_key_on(&one, "gone", &redis.url());
    let kept = make_key_on(&one, "kept", &redis.url());
    // A server on the other machine knows both keys through Redis only.
    let s = two.serve(&["--models", "t/a", "--redis", &redis.url()]);
    rt().block_on(async {
        assert_eq!(post(&s, Some(&gone), &chat(None, "hi")).await.0, 200);
    });
    // Revoked on the first machine, through Redis.
    one.cmd()
        .args(["keys", "revoke", "gone", "--redis", &redis.url()])
        .run()
        .assert_code(0);
    let until_refused = |token: &str| {
        rt().block_on(async {
            for _ in 0..60 {
                if post(&s, Some(token), &chat(None, "hi")).await.0 == 401 {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            false
        })
    };
    assert!(until_refused(&gone), "the revocation reached the server");
    // Redis comes back empty (no persistence): the revocation still holds,
    // the key it knew through Redis still works, and Redis is given back
    // what it lost.
    let redis = redis.restart();
    std::thread::sleep(Duration::from_secs(4));
    rt().block_on(async {
        assert_eq!(post(&s, Some(&gone), &chat(None, "hi")).await.0, 401);
        assert_eq!(post(&s, Some(&kept), &chat(None, "hi")).await.0, 200);
    });
    let clients = clients_in(&redis);
    assert!(
        clients.contains("kept") && clients.contains("gone"),
        "{clients}"
    );
    // A key made on this store without --redis stays this store's.
    two.cmd()
        .args(["keys", "create", "mine"])
        .run()
        .assert_code(0);
    std::thread::sleep(Duration::from_secs(3));
    let clients = clients_in(&redis);
    assert!(!clients.contains("mine"), "{clients}");
    drop(s);
    // The other machine's store keeps them too.
    let out = two.cmd().args(["keys", "list", "--json"]).run();
    out.assert_code(0);
    assert!(out.stdout.contains("kept"), "{}", out.stdout);
}

/// Keys' rates count calendar minutes: a test of them starts at least
/// ten seconds before the minute ends.
fn away_from_a_minute_s_end() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let into = now.as_secs() % 60;
    if into >= 50 {
        std::thread::sleep(Duration::from_secs(61 - into));
    }
}

/// The key records Redis holds, as text.
fn clients_in(redis: &RedisServer) -> String {
    redis
        .dump()
        .into_iter()
        .find(|(k, _)| k == "llmroute:v1:clients")
        .map(|(_, v)| v)
        .unwrap_or_default()
}

fn make_key_on(env: &Env, name: &str, redis: &str) -> String {
    let out = env
        .cmd()
        .args(["keys", "create", name, "--redis", redis])
        .run();
    out.assert_code(0);
    out.stdout.lines().next().unwrap().trim().to_string()
}
