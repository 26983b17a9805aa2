//! The server shared by a team or open beside a browser: a web page cannot
//! make it spend the key, and one client cannot hurt the others.

use serde_json::Value;

use crate::serve::rt;
use crate::util::*;

const BODY: &str = r#"{"messages":[{"role":"user","content":"spend it"}]}"#;

/// The ways a web page elsewhere can send a POST without a preflight, and
/// one with a foreign Origin: none reaches the upstream.
#[test]
fn cross_site_requests_never_reach_the_upstream() {
    let env = Env::three();
    let s = env.serve(&["--models", "t/a"]);
    rt().block_on(async {
        let c = reqwest::Client::new();
        let chat = s.url("/v1/chat/completions");
        let attempts = [
            // fetch(..., {mode: "no-cors", body: "..."}) from another site
            c.post(&chat)
                .header("content-type", "text/plain;charset=UTF-8")
                .header("origin", "https://evil.example")
                .header("sec-fetch-site", "cross-site")
                .body(BODY),
            // a form posted from another site
            c.post(&chat)
                .header("content-type", "application/x-www-form-urlencoded")
                .header("origin", "https://evil.example")
                .body(BODY),
            // a JSON body with a foreign Origin
            c.post(&chat)
                .header("content-type", "application/json")
                .header("origin", "https://evil.example")
                .body(BODY),
            // text/plain without an Origin (an older browser)
            c.post(&chat)
                .header("content-type", "text/plain")
                .body(BODY),
            // the cache cleared from another site
            c.delete(s.url("/cache"))
                .header("origin", "https://evil.example")
                .header("sec-fetch-site", "cross-site"),
        ];
        for (i, req) in attempts.into_iter().enumerate() {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            assert!(status == 403 || status == 415, "attempt {i}: {status}");
            let v: Value = r.json().await.unwrap();
            assert!(v["error"]["message"].is_string(), "attempt {i}: {v}");
        }
        // A plain client still gets its answer.
        let r = c
            .post(&chat)
            .header("content-type", "application/json")
            .body(BODY)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    });
    s.stop();
    assert_eq!(env.server.completions().len(), 1, "only the plain client's");
}

/// `--cors-origin` lets one web app in: its preflight is answered, its
/// requests are served and may read the answer; other origins are not.
#[test]
fn an_allowed_origin_gets_its_preflight_and_its_answer() {
    let env = Env::three();
    let s = env.serve(&[
        "--models",
        "t/a",
        "--cors-origin",
        "https://app.example.com",
    ]);
    rt().block_on(async {
        let c = reqwest::Client::new();
        let chat = s.url("/v1/chat/completions");
        let pre = c
            .request(reqwest::Method::OPTIONS, &chat)
            .header("origin", "https://app.example.com")
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type,authorization,x-stainless-os,x-llmroute-cache-sampled",
            )
            .send()
            .await
            .unwrap();
        assert!(pre.status().is_success(), "{}", pre.status());
        assert_eq!(
            pre.headers()["access-control-allow-origin"],
            "https://app.example.com"
        );
        // The headers an SDK sends of its own (the openai JS client's
        // x-stainless-*) are allowed, or the browser sends nothing.
        let allowed = pre.headers()["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .to_ascii_lowercase();
        assert!(
            allowed.contains("x-stainless-os") && allowed.contains("x-llmroute-cache-sampled"),
            "{allowed}"
        );
        let r = c
            .post(&chat)
            .header("content-type", "application/json")
            .header("origin", "https://app.example.com")
            .header("sec-fetch-site", "cross-site")
            .body(BODY)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(
            r.headers()["access-control-allow-origin"],
            "https://app.example.com"
        );
        // What the SDKs read before they retry is readable too.
        let exposed = r.headers()["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .to_ascii_lowercase();
        assert!(
            exposed.contains("retry-after") && exposed.contains("x-should-retry"),
            "{exposed}"
        );
        let other = c
            .post(&chat)
            .header("content-type", "application/json")
            .header("origin", "https://other.example.com")
            .body(BODY)
            .send()
            .await
            .unwrap();
        assert_eq!(other.status().as_u16(), 403);
        assert!(other.headers().get("access-control-allow-origin").is_none());
    });
    s.stop();
}

#[test]
fn a_bad_cors_origin_is_a_clear_error() {
    let env = Env::three();
    let out = env
        .cmd()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--cors-origin",
            "app.example.com",
        ])
        .run();
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("--cors-origin app.example.com"),
        "{}",
        out.stderr
    );
}

/// A line or body that lists tens of thousands of models is refused before
/// any ranking, on both paths that rank (`/v1/chat/completions`, `/route`).
#[test]
fn forty_thousand_model_names_are_refused() {
    let env = Env::three();
    let s = env.serve(&["--models", "t/a"]);
    let names: Vec<String> = (0..40_000).map(|i| format!("x/m{i}")).collect();
    let body = serde_json::json!({
        "messages": [{"role": "user", "content": "hi"}],
        "llmroute": {"models": names},
    });
    rt().block_on(async {
        let c = reqwest::Client::new();
        for path in ["/v1/chat/completions", "/route"] {
            let r = c.post(s.url(path)).json(&body).send().await.unwrap();
            assert_eq!(r.status().as_u16(), 400, "{path}");
            let v: Value = r.json().await.unwrap();
            let m = v["error"]["message"].as_str().unwrap();
            assert!(m.contains("at most 256"), "{path}: {m}");
        }
    });
    s.stop();
    assert_eq!(env.server.completions().len(), 0);
}

/// The sign-in form reads a few KiB, not --max-body, and a body that does
/// not come is cut off after --header-timeout.
#[test]
fn sign_in_reads_little_and_a_slow_body_is_cut() {
    use std::io::{Read, Write};
    let env = Env::three();
    let s = env.serve_with(
        &["--models", "t/a", "--header-timeout", "1s"],
        &[("LLMROUTE_AUTH_TOKENS", "tok-1")],
    );
    rt().block_on(async {
        let c = reqwest::Client::new();
        let r = c
            .post(s.url("/dashboard/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(vec![b'a'; 1 << 20])
            .send()
            .await;
        // 413 at once, from the declared length: the server may close the
        // connection before the client has written the whole body, which
        // the client then sees as a broken pipe instead of the answer.
        match r {
            Ok(r) => assert_eq!(r.status().as_u16(), 413),
            Err(e) => assert!(e.is_request() && !e.is_timeout(), "{e:?}"),
        }
    });
    // Headers that promise a body, then nothing.
    let addr = s
        .url("/")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let mut conn = std::net::TcpStream::connect(&addr).unwrap();
    conn.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    write!(
        conn,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer tok-1\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
    )
    .unwrap();
    let mut answer = Vec::new();
    let _ = conn.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    s.stop();
}

/// Requests waiting for an upstream slot have not had their bodies read:
/// forty 2 MiB bodies queued behind one slow request leave the server's
/// memory where it was.
#[test]
fn queued_bodies_stay_out_of_memory() {
    let env = Env::three();
    env.server.set_default("t/a", Behavior::ok_after(3_000));
    let s = env.serve(&["--models", "t/a", "-j", "1", "--no-cache"]);
    let pid = s.child.id();
    rt().block_on(async {
        let c = reqwest::Client::new();
        let slow = tokio::spawn(
            c.post(s.url("/v1/chat/completions"))
                .header("content-type", "application/json")
                .body(BODY)
                .send(),
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let before = crate::faults::vm_hwm_kib(pid).unwrap();
        let big = format!(
            r#"{{"messages":[{{"role":"user","content":"{}"}}]}}"#,
            "x".repeat(2 << 20)
        );
        let queued: Vec<_> = (0..40)
            .map(|_| {
                tokio::spawn(
                    c.post(s.url("/v1/chat/completions"))
                        .header("content-type", "application/json")
                        .body(big.clone())
                        .timeout(std::time::Duration::from_millis(1500))
                        .send(),
                )
            })
            .collect();
        tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
        let after = crate::faults::vm_hwm_kib(pid).unwrap();
        assert!(
            after < before + 30 * 1024,
            "the peak grew from {before} KiB to {after} KiB: queued bodies were read"
        );
        for q in queued {
            let _ = q.await;
        }
        let _ = slow.await;
    });
    drop(s);
}

/// Past --max-connections, a new connection waits unserved until one
/// closes: idle connections cannot grow without bound.
#[test]
fn connections_are_capped() {
    let env = Env::three();
    let s = env.serve(&["--models", "t/a", "--max-connections", "2"]);
    let addr = s.addr;
    let idle: Vec<_> = (0..2)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(200));
    rt().block_on(async {
        let c = reqwest::Client::new();
        let waited = c
            .get(s.url("/health"))
            .timeout(std::time::Duration::from_millis(800))
            .send()
            .await;
        assert!(waited.is_err(), "a third connection was served: {waited:?}");
    });
    drop(idle);
    rt().block_on(async {
        let r = reqwest::Client::new()
            .get(s.url("/health"))
            .timeout(std::time::Duration::from_secs(20))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    });
    s.stop();
}

/// `DELETE /cache` clears the answers Redis shares too: a cleared answer is
/// not served back from Redis for the rest of its TTL.
#[test]
fn clearing_the_cache_clears_what_redis_shares() {
    let env = Env::three();
    let redis = RedisServer::start();
    let s = env.serve_with(
        &["--models", "t/a", "--redis", &redis.url()],
        &[("LLMROUTE_ADMIN_TOKENS", "admin-1")],
    );
    let chat = s.url("/v1/chat/completions");
    let ask = |c: &reqwest::Client| {
        c.post(&chat)
            .header("content-type", "application/json")
            .body(BODY)
            .send()
    };
    rt().block_on(async {
        let c = reqwest::Client::new();
        let first = ask(&c).await.unwrap();
        assert_eq!(first.headers()["x-llmroute-cached"], "false");
        // The answer reaches Redis.
        for _ in 0..100 {
            if redis.dump().iter().any(|(k, _)| k.contains(":cache:")) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(redis.dump().iter().any(|(k, _)| k.contains(":cache:")));
        let cleared = c
            .delete(s.url("/cache"))
            .bearer_auth("admin-1")
            .send()
            .await
            .unwrap();
        assert_eq!(cleared.status().as_u16(), 200);
        assert!(!redis.dump().iter().any(|(k, _)| k.contains(":cache:")));
        let again = ask(&c).await.unwrap();
        assert_eq!(
            again.headers()["x-llmroute-cached"],
            "false",
            "served after the clear"
        );
    });
    s.stop();
    assert_eq!(env.server.completions().len(), 2);
}

/// Another machine's `DELETE /cache` ends this one's local copies too: a
/// cleared answer is not served from a second server's own store.
#[test]
fn clearing_the_cache_on_one_server_clears_it_on_the_others() {
    let env = Env::three();
    let redis = RedisServer::start();
    let other_db = env.path("other.db");
    let other_db = other_db.to_str().unwrap();
    let admin = [("LLMROUTE_ADMIN_TOKENS", "admin-1")];
    let a = env.serve_with(&["--models", "t/a", "--redis", &redis.url()], &admin);
    let b = env.serve_with(
        &["--models", "t/a", "--redis", &redis.url(), "--db", other_db],
        &admin,
    );
    let cached = |s: &Served| {
        let chat = s.url("/v1/chat/completions");
        rt().block_on(async {
            let r = reqwest::Client::new()
                .post(&chat)
                .header("content-type", "application/json")
                .body(BODY)
                .send()
                .await
                .unwrap();
            r.headers()["x-llmroute-cached"]
                .to_str()
                .unwrap()
                .to_string()
        })
    };
    assert_eq!(cached(&a), "false");
    // b gets it from Redis and keeps it in its own store.
    let mut hit = false;
    for _ in 0..100 {
        if cached(&b) == "true" {
            hit = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(hit, "b had the answer");
    rt().block_on(async {
        let r = reqwest::Client::new()
            .delete(a.url("/cache"))
            .bearer_auth("admin-1")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    });
    std::thread::sleep(std::time::Duration::from_millis(2500));
    // Gone from b's store too: were Redis to forget the clear, b would not
    // serve it again.
    let conn = rusqlite::Connection::open(other_db).unwrap();
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM cache", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 0, "b's store keeps no cleared answer");
    assert_eq!(cached(&b), "false", "b's copy is cleared too");
    a.stop();
    b.stop();
}

/// Each client token has its own cache: a client is never answered from
/// another's, nor learns that another sent the same prompt; one token's
/// repeat is still a hit. `--shared-cache` shares it again.
#[test]
fn answers_do_not_cross_clients() {
    let env = Env::three();
    let tokens = [("LLMROUTE_AUTH_TOKENS", "alice-1,bob-2")];
    let s = env.serve_with(&["--models", "t/a"], &tokens);
    let chat = s.url("/v1/chat/completions");
    let ask = |c: &reqwest::Client, token: &str| {
        c.post(&chat)
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(r#"{"messages":[{"role":"user","content":"same prompt"}],"temperature":0}"#)
            .send()
    };
    let cached = |r: &reqwest::Response| {
        r.headers()["x-llmroute-cached"]
            .to_str()
            .unwrap()
            .to_string()
    };
    rt().block_on(async {
        let c = reqwest::Client::new();
        assert_eq!(cached(&ask(&c, "alice-1").await.unwrap()), "false");
        assert_eq!(
            cached(&ask(&c, "bob-2").await.unwrap()),
            "false",
            "bob saw alice's"
        );
        assert_eq!(cached(&ask(&c, "alice-1").await.unwrap()), "true");
    });
    s.stop();
    assert_eq!(env.server.completions().len(), 2);

    let s = env.serve_with(&["--models", "t/a", "--shared-cache"], &tokens);
    let chat = s.url("/v1/chat/completions");
    rt().block_on(async {
        let c = reqwest::Client::new();
        let ask = |token: &str| {
            c.post(&chat)
                .bearer_auth(token)
                .header("content-type", "application/json")
                .body(r#"{"messages":[{"role":"user","content":"shared prompt"}],"temperature":0}"#)
                .send()
        };
        assert_eq!(cached(&ask("alice-1").await.unwrap()), "false");
        assert_eq!(cached(&ask("bob-2").await.unwrap()), "true");
    });
    s.stop();
}

/// A sampled request (temperature above 0 without a seed, or n above 1) is
/// answered anew each time, unless the request or the server asks for a
/// cached sample; a seeded one is cached.
#[test]
fn sampled_requests_are_not_answered_from_the_cache() {
    let env = Env::three();
    let s = env.serve(&["--models", "t/a"]);
    let chat = s.url("/v1/chat/completions");
    rt().block_on(async {
        let c = reqwest::Client::new();
        let ask = |body: &'static str, sampled_ok: bool| {
            let mut r = c
                .post(&chat)
                .header("content-type", "application/json")
                .body(body);
            if sampled_ok {
                r = r.header("x-llmroute-cache-sampled", "true");
            }
            r.send()
        };
        let hot = r#"{"messages":[{"role":"user","content":"a poem"}],"temperature":1.2}"#;
        let many = r#"{"messages":[{"role":"user","content":"names"}],"n":3,"temperature":0}"#;
        let seeded =
            r#"{"messages":[{"role":"user","content":"a poem"}],"temperature":1.2,"seed":7}"#;
        for body in [hot, many] {
            for _ in 0..2 {
                let r = ask(body, false).await.unwrap();
                assert_eq!(r.headers()["x-llmroute-cached"], "false", "{body}");
            }
        }
        ask(seeded, false).await.unwrap();
        let r = ask(seeded, false).await.unwrap();
        assert_eq!(r.headers()["x-llmroute-cached"], "true");
        // Asked for: the sample is kept, then served.
        ask(hot, true).await.unwrap();
        let r = ask(hot, true).await.unwrap();
        assert_eq!(r.headers()["x-llmroute-cached"], "true");
    });
    s.stop();
}

/// A request may pin or list only models the catalogue lists or the server
/// was configured with, so that no client grows the server's health maps
/// and metrics with names of its own; `--allow-any-model` lifts it.
#[test]
fn requests_name_only_known_models_unless_any_is_allowed() {
    let env = Env::three();
    let s = env.serve(&["--models", "t/a"]);
    rt().block_on(async {
        let c = reqwest::Client::new();
        for (path, body) in [
            ("/v1/chat/completions", chat(Some("x/made-up-1"), "hi")),
            (
                "/v1/chat/completions",
                serde_json::json!({"messages": [{"role": "user", "content": "hi"}],
                                   "llmroute": {"models": ["t/a", "x/made-up-2"]}}),
            ),
            ("/route", chat(Some("x/made-up-3"), "hi")),
        ] {
            let r = c.post(s.url(path)).json(&body).send().await.unwrap();
            assert_eq!(r.status().as_u16(), 400, "{path} {body}");
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["error"]["code"], "model_not_allowed", "{v}");
        }
        let metrics = c
            .get(s.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(!metrics.contains("made-up"), "{metrics}");
    });
    s.stop();
    assert_eq!(env.server.completions().len(), 0);

    let s = env.serve(&["--models", "t/a", "--allow-any-model"]);
    rt().block_on(async {
        let r = reqwest::Client::new()
            .post(s.url("/v1/chat/completions"))
            .json(&chat(Some("t/not-listed"), "hi"))
            .send()
            .await
            .unwrap();
        assert_ne!(r.status().as_u16(), 400);
    });
    s.stop();
    assert_eq!(env.server.count_for("t/not-listed"), 1);
}

/// Guessing tokens through the dashboard's sign-in form is slow: past 30
/// sign-ins a minute, the form answers 429 without looking at the token.
#[test]
fn sign_ins_are_rate_limited() {
    let env = Env::three();
    let s = env.serve_with(&["--models", "t/a"], &[("LLMROUTE_AUTH_TOKENS", "right-1")]);
    rt().block_on(async {
        let c = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let mut statuses = Vec::new();
        for i in 0..40 {
            let r = c
                .post(s.url("/dashboard/login"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("token=guess-{i}"))
                .send()
                .await
                .unwrap();
            statuses.push(r.status().as_u16());
        }
        assert!(statuses[..30].iter().all(|s| *s == 401), "{statuses:?}");
        // One sign-in comes back every 2 s: a slow run may see one or two.
        let limited = statuses[30..].iter().filter(|s| **s == 429).count();
        assert!(limited >= 5, "{statuses:?}");
    });
    s.stop();
}

/// An answer after which a client's retry would only repeat what llmroute
/// did (every model failed; the budget refused) says so with
/// `x-should-retry: false`, which the OpenAI SDKs obey; a queue that is
/// full does not.
#[test]
fn final_errors_tell_clients_not_to_retry() {
    let env = Env::three();
    for m in ["t/a", "t/b"] {
        env.server.set_default(m, Behavior::status(500));
    }
    let ask = |args: &[&str], body: Value| {
        let s = env.serve(args);
        let r = rt().block_on(async {
            let r = reqwest::Client::new()
                .post(s.url("/v1/chat/completions"))
                .json(&body)
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.headers().get("x-should-retry").cloned(),
            )
        });
        s.stop();
        r
    };
    let failed = ask(&["--models", "t/a,t/b"], chat(None, "x"));
    assert_eq!(failed.0, 502);
    assert_eq!(failed.1.unwrap(), "false");
    let attempts = env.server.completions().len();
    assert_eq!(attempts, 2, "each model once");
    let budget = ask(
        &["--models", "t/a,t/b", "--max-cost", "0.0000001"],
        chat(None, "y"),
    );
    assert_eq!(budget.0, 429);
    assert_eq!(budget.1.unwrap(), "false");
}

/// A request whose every model its upstream rate limited is a rate limit
/// to the client too: 429 with the upstream's `Retry-After`, which a
/// client's retry after the wait may get past, not a 502 that tells it
/// not to retry.
#[test]
fn an_upstream_rate_limit_reaches_the_client_as_one() {
    let env = Env::three();
    env.server
        .set_default("t/c", Behavior::rate_limited(Some(40)));
    let s = env.serve(&["--models", "t/a,t/b"]);
    rt().block_on(async {
        let c = reqwest::Client::new();
        let (status, h, v) = crate::serve::post(&c, &s, &chat(Some("t/c"), "busy")).await;
        assert_eq!(status, 429);
        assert_eq!(h["retry-after"], "40", "{h:?}");
        assert!(h.get("x-should-retry").is_none(), "{h:?}");
        assert_eq!(h["x-llmroute-model"], "t/c", "{h:?}");
        assert_eq!(v["error"]["code"], "rate_limited", "{v}");
        assert_eq!(v["error"]["type"], "rate_limit_error", "{v}");
    });
    s.stop();
}

/// `GET /v1/models/{id}`, as the OpenAI clients' `models.retrieve` asks it,
/// ids with slashes included.
#[test]
fn one_model_can_be_retrieved() {
    let env = Env::three();
    let s = env.serve(&["--models", "t/a,t/b"]);
    rt().block_on(async {
        let c = reqwest::Client::new();
        for id in ["t/a", "llmroute/speed", "t/c"] {
            let r = c
                .get(s.url(&format!("/v1/models/{id}")))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 200, "{id}");
            let v: Value = r.json().await.unwrap();
            assert_eq!(
                (v["id"].as_str(), v["object"].as_str()),
                (Some(id), Some("model"))
            );
        }
        let r = c.get(s.url("/v1/models/x/nope")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 404);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "model_not_found");
        // `auto`, which a chat request may name, and the path without /v1
        // that /models has too.
        for path in ["/v1/models/auto", "/models/t/a"] {
            let r = c.get(s.url(path)).send().await.unwrap();
            assert_eq!(r.status().as_u16(), 200, "{path}");
        }
    });
    s.stop();
}
