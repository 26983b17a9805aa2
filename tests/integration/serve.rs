//! `llmroute serve` over raw HTTP: the endpoints, errors in OpenAI's shape,
//! streams, tokens, limits, the stop, and secrets.

use std::time::Duration;

use serde_json::{json, Value};

use crate::util::*;

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// POSTs `body` to `/v1/chat/completions`; the status, headers and JSON body.
/// GETs `path`, whose answer is JSON.
pub async fn get_json(c: &reqwest::Client, s: &Served, path: &str) -> Value {
    c.get(s.url(path))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

pub async fn post(
    c: &reqwest::Client,
    s: &Served,
    body: &Value,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let r = c
        .post(s.url("/v1/chat/completions"))
        .json(body)
        .send()
        .await
        .expect("an answer");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, headers, v)
}

pub fn header<'a>(h: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    h.get(name)
        .unwrap_or_else(|| panic!("no {name} in {h:?}"))
        .to_str()
        .unwrap()
}

pub fn content(v: &Value) -> &str {
    v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_else(|| panic!("no content in {v}"))
}

/// The `data:` payloads of a server-sent events body.
pub fn events(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .map(str::to_string)
        .collect()
}

/// The content of a stream's chunks, joined.
pub fn joined(events: &[String]) -> String {
    events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(String::from)
        })
        .collect()
}

#[test]
fn a_routed_completion_comes_with_its_headers_and_is_recorded() {
    let env = Env::three();
    let s = env.serve(&["-p", "cost", "--models", "t/a,t/b,t/c"]);
    rt().block_on(async {
        let c = client();
        let (status, h, v) = post(&c, &s, &chat(Some("auto"), "hi")).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(content(&v), "[t/a] hi", "the cheapest");
        assert_eq!(header(&h, "x-llmroute-model"), "t/a");
        assert_eq!(header(&h, "x-llmroute-cached"), "false");
        assert_eq!(header(&h, "x-llmroute-attempts"), "1");
        assert!(header(&h, "x-llmroute-score").parse::<f64>().is_ok());
        assert!(header(&h, "x-llmroute-latency-ms").parse::<f64>().is_ok());
        let id = header(&h, "x-request-id").to_string();
        // Pinned, and chosen by priority through the model name.
        let (_, h, v) = post(&c, &s, &chat(Some("t/c"), "pin")).await;
        assert_eq!(
            (content(&v), header(&h, "x-llmroute-model")),
            ("[t/c] pin", "t/c")
        );
        let (_, _, v) = post(&c, &s, &chat(Some("llmroute/quality"), "q")).await;
        assert_eq!(content(&v), "[t/a] q", "the best quality");
        // The same request again: the cache.
        let (_, h, v) = post(&c, &s, &chat(Some("auto"), "hi")).await;
        assert_eq!(content(&v), "[t/a] hi");
        assert_eq!(header(&h, "x-llmroute-cached"), "true");
        assert_eq!(header(&h, "x-llmroute-attempts"), "0");
        let (code, log) = s.stop();
        assert_eq!(code, 0, "{log}");
        assert!(log.contains(&id), "the access log names the request: {log}");
        assert_eq!(env.count("SELECT count(*) FROM requests"), 4);
        assert_eq!(
            env.count(&format!(
                "SELECT count(*) FROM requests WHERE request_id = '{id}'"
            )),
            1
        );
    });
    assert_eq!(env.server.count_for("t/a"), 2);
}

#[test]
fn errors_have_openais_shape_and_fitting_statuses() {
    let env = Env::three();
    let s = env.serve(&["--max-body", "2KiB", "--models", "t/a,t/b,t/c"]);
    rt().block_on(async {
        let c = client();
        let send = |body: Vec<u8>| {
            c.post(s.url("/v1/chat/completions"))
                .header("content-type", "application/json")
                .body(body)
                .send()
        };
        for (body, status, code) in [
            (b"{not json".to_vec(), 400, "invalid_input"),
            (b"[1]".to_vec(), 400, "invalid_input"),
            (br#"{"messages":[]}"#.to_vec(), 400, "invalid_input"),
            (
                br#"{"messages":[{"role":"user","content":"x"}],"model":"llmroute/nope"}"#.to_vec(),
                400,
                "invalid_input",
            ),
            (vec![b' '; 4096], 413, "body_too_large"),
        ] {
            let r = send(body).await.unwrap();
            assert_eq!(r.status().as_u16(), status);
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["error"]["code"], code, "{v}");
            assert!(v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()));
            assert!(v["error"]["type"].is_string());
        }
        let r = c.get(s.url("/v2/nothing")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 404);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["type"], "not_found_error");
        let r = c.get(s.url("/v1/chat/completions")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 405);
    });
    // Every model failing is a bad gateway.
    for m in ["t/a", "t/b", "t/c"] {
        env.server.set_default(m, Behavior::status(500));
    }
    rt().block_on(async {
        let (status, _, v) = post(&client(), &s, &chat(None, "x")).await;
        assert_eq!(status, 502, "{v}");
        assert_eq!(v["error"]["code"], "all_models_failed");
        // Its access line names the model it last tried, as its headers do.
        let (status, h, _) = post(&client(), &s, &chat(Some("t/b"), "pinned")).await;
        assert_eq!(status, 502);
        assert_eq!(header(&h, "x-llmroute-model"), "t/b");
        assert!(header(&h, "x-llmroute-attempts").parse::<u32>().unwrap() >= 1);
    });
    // The access line is written as the answer goes: it may come after it.
    let pinned = || {
        s.log()
            .lines()
            .any(|l| l.contains("status=502") && l.contains("model=\"t/b\""))
    };
    assert!(eventually(pinned), "{}", s.log());
    assert_eq!(
        env.server.completions().len(),
        4,
        "nothing sent for bad requests"
    );
}

#[test]
fn a_body_that_starts_with_a_byte_order_mark_is_read_as_json() {
    // JSON parsers may skip a BOM (RFC 8259), as the batch filter and
    // `llmroute feedback` do: a body saved by an editor that writes one.
    let env = Env::three();
    let s = env.serve(&["--models", "t/a"]);
    rt().block_on(async {
        let c = client();
        for path in ["/v1/chat/completions", "/route"] {
            let mut body = b"\xEF\xBB\xBF".to_vec();
            body.extend_from_slice(chat(None, "bom").to_string().as_bytes());
            let r = c
                .post(s.url(path))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let text = r.text().await.unwrap();
            assert_eq!(status, 200, "{path}: {text}");
        }
    });
    assert_eq!(env.server.completions().len(), 1);
}

#[test]
fn route_says_when_its_body_is_not_json() {
    let env = Env::three();
    let s = env.serve(&["--models", "t/a"]);
    let deep = format!("{}{}", "[".repeat(1000), "]".repeat(1000));
    rt().block_on(async {
        let c = client();
        for (body, says) in [
            (deep.as_str(), "not valid JSON"),
            ("{\"messages\":", "not valid JSON"),
            ("[1]", "must be a JSON object"),
        ] {
            let r = c
                .post(s.url("/route"))
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 400);
            let v: Value = r.json().await.unwrap();
            let message = v["error"]["message"].as_str().unwrap();
            assert!(message.contains(says), "{message}");
        }
    });
}

#[test]
fn refused_requests_are_recorded_without_keys_too() {
    // The report counts what the dashboard and /metrics count, whether or
    // not the server has keys.
    let env = Env::three();
    let s = env.serve(&["--models", "t/a"]);
    rt().block_on(async {
        let c = client();
        let (status, _, _) = post(&c, &s, &chat(None, "good")).await;
        assert_eq!(status, 200);
        let mut bad_limit = chat(None, "x");
        bad_limit["max_tokens"] = json!("9");
        for body in [
            "bad".to_string(),
            chat(Some("zz/zz"), "x").to_string(),
            bad_limit.to_string(),
        ] {
            let r = c
                .post(s.url("/v1/chat/completions"))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 400);
        }
    });
    let (code, _) = s.stop();
    assert_eq!(code, 0);
    let report = env.cmd().args(["report", "--json"]).run();
    report.assert_code(0);
    let v: Value = serde_json::from_str(&report.stdout).unwrap();
    assert_eq!(
        (&v["requests"], &v["errors"]),
        (&json!(4), &json!(3)),
        "{v}"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM requests WHERE error_type IN ('invalid_input', 'model_not_allowed')"),
        3
    );
}

#[test]
fn cache_control_skips_the_read_or_the_write() {
    let env = Env::three();
    let s = env.serve(&["--models", "t/a"]);
    rt().block_on(async {
        let c = client();
        let send = |cc: &'static str| {
            c.post(s.url("/v1/chat/completions"))
                .header("cache-control", cc)
                .json(&chat(None, "cc"))
                .send()
        };
        let r = send("no-store").await.unwrap();
        assert_eq!(header(r.headers(), "x-llmroute-cached"), "false");
        let r = send("max-age=0").await.unwrap();
        assert_eq!(
            header(r.headers(), "x-llmroute-cached"),
            "false",
            "not stored"
        );
        let r = send("no-cache").await.unwrap();
        assert_eq!(
            header(r.headers(), "x-llmroute-cached"),
            "false",
            "not read"
        );
    });
    assert_eq!(env.server.count_for("t/a"), 3);
}

#[test]
fn tokens_guard_the_api_and_admin_tokens_the_cache() {
    let env = Env::three();
    let s = env.serve_with(
        &["--models", "t/a"],
        &[
            ("LLMROUTE_AUTH_TOKENS", "tok-1,tok-2"),
            ("LLMROUTE_ADMIN_TOKENS", "adm-1"),
        ],
    );
    rt().block_on(async {
        let c = client();
        // A request with a token, or none: its status and JSON body.
        let call = |method: reqwest::Method, path: &str, token: Option<&str>| {
            let mut r = c.request(method.clone(), s.url(path));
            if method == reqwest::Method::POST {
                r = r.json(&chat(None, "t"));
            }
            if let Some(t) = token {
                r = r.bearer_auth(t);
            }
            async move {
                let r = r.send().await.unwrap();
                let status = r.status().as_u16();
                (status, r.json::<Value>().await.unwrap_or(Value::Null))
            }
        };
        use reqwest::Method;
        let chat_path = "/v1/chat/completions";
        let (status, v) = call(Method::POST, chat_path, None).await;
        assert_eq!(status, 401);
        assert_eq!(v["error"]["type"], "authentication_error");
        assert_eq!(call(Method::POST, chat_path, Some("tok-3")).await.0, 401);
        assert_eq!(call(Method::POST, chat_path, Some("tok-2")).await.0, 200);
        assert_eq!(call(Method::GET, "/health", None).await.0, 200);
        assert_eq!(call(Method::GET, "/metrics", None).await.0, 401);
        let (status, _) = call(Method::DELETE, "/cache", Some("tok-1")).await;
        assert_eq!(status, 403, "a client token is not an admin token");
        let (_, stats) = call(Method::GET, "/cache/stats", Some("tok-1")).await;
        assert_eq!(stats["entries"], 1, "{stats}");
        // The names of `llmroute cache stats --json`.
        assert!(stats["oldest_ms"].as_i64().unwrap() <= stats["newest_ms"].as_i64().unwrap());
        assert_eq!(stats["since"], "24h", "{stats}");
        assert!(stats["hit_rate"].is_f64(), "{stats}");
        let (status, v) = call(Method::DELETE, "/cache", Some("adm-1")).await;
        assert_eq!(status, 200);
        assert_eq!(v["deleted"], 1);
    });
    let (_, log) = s.stop();
    // Tokens this short are easy to guess: said once, not what they are.
    assert_eq!(log.matches("3 of the tokens given").count(), 1, "{log}");
    assert!(!log.contains("tok-1") && !log.contains("adm-1"), "{log}");
    assert_eq!(env.count("SELECT count(*) FROM cache"), 0);
    // No client's token goes upstream.
    for r in env.server.completions() {
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {KEY}").as_str())
        );
    }
}

#[test]
fn without_tokens_only_loopback_is_served() {
    let env = Env::three();
    let out = env.cmd().args(["serve", "--listen", "0.0.0.0:0"]).run();
    out.assert_code(2);
    assert!(
        out.stderr.contains("LLMROUTE_AUTH_TOKENS"),
        "{}",
        out.stderr
    );
    // Refused before it reaches the API: no catalogue fetch, no store.
    assert_eq!(env.server.requests().len(), 0, "{}", out.stderr);
    assert!(!out.stderr.contains("catalogue"), "{}", out.stderr);
    let tokens = env.write("tokens", "# clients\nsecret-a\n\n");
    let s = env.serve(&[
        "--listen",
        "0.0.0.0:0",
        "--auth-token-file",
        tokens.to_str().unwrap(),
    ]);
    assert!(s.log().contains("client tokens required"), "{}", s.log());
}

#[test]
fn a_server_says_it_fetches_the_catalogue_before_it_listens() {
    // An API that does not answer holds the start up to the fetch's
    // timeout: the log says why nothing listens yet.
    let env = Env::three();
    let s = env.serve(&[]);
    let log = s.log();
    let fetching = log.find("fetching the model catalogue from http://127.0.0.1:");
    assert!(
        fetching.is_some_and(|at| at < log.find("listening on").unwrap()),
        "{log}"
    );
}

/// A candidate the budget left cannot cover keeps its figures in
/// `/v1/models`, and says why it is left out, as `/route` does.
#[test]
fn models_over_the_budget_keep_their_figures_and_say_why() {
    let env = Env::three();
    // Less than a short request's estimate on t/b or t/c, not on t/a.
    let s = env.serve(&["--models", "t/a,t/b,t/c", "--max-cost", "0.002"]);
    rt().block_on(async {
        let c = client();
        let mut short = chat(Some("t/b"), "measure b");
        short["max_tokens"] = json!(5);
        let (status, _, v) = post(&c, &s, &short).await;
        assert_eq!(status, 200, "{v}");
        let models = get_json(&c, &s, "/v1/models").await;
        let by_id = |id: &str| {
            models["data"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["id"] == id)
                .cloned()
                .unwrap()
        };
        let a = by_id("t/a");
        assert!(a["score"].is_number(), "{a}");
        let b = by_id("t/b");
        assert_eq!(b["state"], "excluded", "{b}");
        assert!(
            b["why"].as_str().is_some_and(|w| w.contains("budget")),
            "{b}"
        );
        assert!(b["quality"].is_number(), "{b}");
        assert_eq!(b["latency_measured"], true, "it answered once: {b}");
        assert!(b["latency_ms"].is_number(), "{b}");
        assert!(b["score"].is_null(), "not ranked: {b}");
        // The dashboard's rankings show it too, after those ranked.
        let data = get_json(&c, &s, "/dashboard/data").await;
        let ranking = data["live"]["rankings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["default"] == true)
            .unwrap()["candidates"]
            .as_array()
            .unwrap()
            .clone();
        let models: Vec<&str> = ranking
            .iter()
            .map(|c| c["model"].as_str().unwrap())
            .collect();
        assert_eq!(models.len(), 3, "{ranking:?}");
        assert_eq!(models[0], "t/a", "{ranking:?}");
        let b = ranking.iter().find(|c| c["model"] == "t/b").unwrap();
        assert_eq!(b["state"], "excluded", "{b}");
        assert!(b["why"].as_str().unwrap().contains("budget"), "{b}");
        assert!(
            b["quality"].is_number() && b["latency_ms"].is_number(),
            "{b}"
        );
        assert!(b["score"].is_null(), "not ranked, as in /v1/models: {b}");
    });
}

#[test]
fn models_route_health_ready_and_metrics_answer() {
    let env = Env::three();
    let s = env.serve(&["-p", "cost", "--models", "t/a,t/b", "--fallback", "t/c"]);
    rt().block_on(async {
        let c = client();
        let models = get_json(&c, &s, "/v1/models").await;
        assert_eq!(models["object"], "list");
        let ids: Vec<&str> = models["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap())
            .collect();
        for id in [
            "t/a",
            "t/b",
            "t/c",
            "llmroute/auto",
            "llmroute/speed",
            "llmroute/cost",
        ] {
            assert!(ids.contains(&id), "{id} in {ids:?}");
        }
        let a = &models["data"][0];
        assert_eq!(a["pricing"]["prompt"], 0.000001);
        assert!(a["score"].is_number(), "{a}");
        assert_eq!(a["state"], "prior", "never measured: {a}");
        let route: Value = c
            .post(s.url("/route"))
            .json(&json!({"messages": [{"role": "user", "content": "x"}], "priority": "quality"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(route["model"], "t/a", "{route}");
        assert_eq!(route["priority"], "quality");
        assert_eq!(route["ranking"].as_array().unwrap().len(), 2);
        assert!(route["ranking"][0]["state"].is_string());
        assert!(route["reason"].as_str().unwrap().starts_with("t/a"));
        assert_eq!(env.server.completions().len(), 0, "/route calls nothing");
        let ready = c.get(s.url("/ready")).send().await.unwrap();
        assert_eq!(ready.status().as_u16(), 200);
        let ready: Value = ready.json().await.unwrap();
        assert_eq!(ready["store"], "ok");
        post(&c, &s, &chat(None, "m")).await;
        let text = c
            .get(s.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            text.trim_end().ends_with("# EOF"),
            "OpenMetrics text: {text}"
        );
        let requests: f64 = text
            .lines()
            .filter(|l| l.starts_with("llmroute_requests_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        assert_eq!(requests, 1.0, "{text}");
    });
}

#[test]
fn http2_without_tls_is_served() {
    let env = Env::three();
    let s = env.serve(&["--models", "t/a"]);
    rt().block_on(async {
        let c = reqwest::Client::builder()
            .http2_prior_knowledge()
            .build()
            .unwrap();
        let r = c
            .post(s.url("/v1/chat/completions"))
            .json(&chat(None, "h2"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.version(), reqwest::Version::HTTP_2);
        assert_eq!(r.status().as_u16(), 200);
    });
}

#[test]
fn the_api_key_appears_in_no_response_log_or_store() {
    let env = Env::three();
    env.server.set_default(
        "t/b",
        Behavior::status_with_body(400, format!("bad key {KEY}")),
    );
    let s = env.serve(&["--models", "t/a,t/b", "--log-format", "json"]);
    let mut seen = String::new();
    rt().block_on(async {
        let c = client();
        for body in [chat(None, "a"), chat(Some("t/b"), "b"), json!({"x": 1})] {
            let r = c
                .post(s.url("/v1/chat/completions"))
                .json(&body)
                .send()
                .await
                .unwrap();
            seen.push_str(&format!("{:?}", r.headers()));
            seen.push_str(&r.text().await.unwrap());
        }
        for path in ["/v1/models", "/ready", "/metrics", "/cache/stats"] {
            seen.push_str(
                &c.get(s.url(path))
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap(),
            );
        }
    });
    let (_, log) = s.stop();
    assert!(!seen.contains(KEY), "{seen}");
    assert!(!log.contains(KEY), "{log}");
    for line in log.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["level"].is_string());
    }
    assert!(
        seen.contains("[redacted]"),
        "the upstream's echo is blanked: {seen}"
    );
    let store = std::fs::read(env.db()).unwrap();
    assert!(!store.windows(KEY.len()).any(|w| w == KEY.as_bytes()));
}

#[test]
fn a_spent_budget_is_429_and_a_clients_request_id_comes_back() {
    let env = Env::new(vec![ModelSpec::new("t/a").prices("0", "0.00002")]);
    env.server.set_default("t/a", Behavior::ok_with_cost(0.01));
    let s = env.serve(&["--models", "t/a", "--no-cache", "--max-cost", "0.015"]);
    rt().block_on(async {
        let c = client();
        let send = |prompt: &'static str| {
            c.post(s.url("/v1/chat/completions"))
                .header("x-request-id", format!("mine-{prompt}"))
                // 512 tokens at t/a's price: a $0.01 estimate, however short
                // the answers are.
                .json(&{
                    let mut body = chat(None, prompt);
                    body["max_tokens"] = 512.into();
                    body
                })
                .send()
        };
        let r = send("one").await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(header(r.headers(), "x-request-id"), "mine-one");
        let r = send("two").await.unwrap();
        assert_eq!(r.status().as_u16(), 429);
        assert_eq!(header(r.headers(), "x-request-id"), "mine-two");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "budget_exceeded");
        assert_eq!(v["error"]["type"], "insufficient_quota");
    });
    s.stop();
    assert_eq!(
        env.count("SELECT count(*) FROM requests WHERE request_id = 'mine-one'"),
        1
    );
    assert_eq!(env.server.completions().len(), 1);
}

/// Every answer has an id, the client's own when it is sane: refusals
/// and unknown paths too.
#[test]
fn every_answer_carries_a_request_id() {
    let env = Env::three();
    let s = env.serve(&["--models", "t/a"]);
    let port = s.addr.port();
    rt().block_on(async {
        let c = client();
        let id_of = |r: &reqwest::Response| header(r.headers(), "x-request-id").to_string();
        let r = c.get(s.url("/v1/models")).send().await.unwrap();
        let ours = id_of(&r);
        assert!(ours.starts_with("req-"), "{ours}");
        let r = c.get(s.url("/v1/models")).send().await.unwrap();
        assert!(id_of(&r).starts_with("req-") && id_of(&r) != ours);
        let r = c
            .get(s.url("/nothing"))
            .header("x-request-id", "trace-7")
            .send()
            .await
            .unwrap();
        assert_eq!((r.status().as_u16(), id_of(&r)), (404, "trace-7".into()));
        for insane in ["two words".to_string(), "x".repeat(129)] {
            let r = c
                .get(s.url("/health"))
                .header("x-request-id", &insane)
                .send()
                .await
                .unwrap();
            assert!(id_of(&r).starts_with("req-"), "{insane}: {}", id_of(&r));
        }
        let r = c
            .get(s.url("/v1/models"))
            .header("host", format!("rebound.evil.example:{port}"))
            .header("x-request-id", "mine-403")
            .send()
            .await
            .unwrap();
        assert_eq!((r.status().as_u16(), id_of(&r)), (403, "mine-403".into()));
    });
}

/// The management endpoints' access lines: one flat line a request, with
/// its id, method, path, status and latency, refusals included, but none
/// for the endpoints polled often.
#[test]
fn management_requests_have_flat_access_lines() {
    let env = Env::three();
    let s = env.serve(&["--models", "t/a", "--log-format", "json"]);
    let port = s.addr.port();
    rt().block_on(async {
        let c = client();
        for path in [
            "/v1/models",
            "/health",
            "/metrics",
            "/dashboard/data",
            "/nothing",
        ] {
            c.get(s.url(path))
                .header("x-request-id", format!("id{path}"))
                .send()
                .await
                .unwrap();
        }
        c.get(s.url("/v1/models"))
            .header("host", format!("rebound.evil.example:{port}"))
            .header("x-request-id", "id-refused")
            .send()
            .await
            .unwrap();
    });
    let (_, log) = s.stop();
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .filter(|v: &Value| v["target"] == "access")
        .collect();
    let seen: Vec<(&str, &str, u64)> = lines
        .iter()
        .map(|v| {
            let text = |k: &str| v[k].as_str().unwrap_or_else(|| panic!("{k}: {v}"));
            (
                text("request_id"),
                text("path"),
                v["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("id/v1/models", "/v1/models", 200),
            ("id/nothing", "/nothing", 404),
            ("id-refused", "/v1/models", 403),
        ],
        "{log}"
    );
    for v in &lines {
        assert_eq!(v["method"], "GET", "{v}");
        assert!(v["latency_ms"].as_f64().is_some(), "{v}");
        assert!(v.get("span").is_none() && v.get("spans").is_none(), "{v}");
    }
}

#[test]
fn without_tokens_only_requests_naming_this_machine_are_answered() {
    let env = Env::three();
    let s = env.serve(&["--models", "t/a"]);
    let port = s.addr.port();
    rt().block_on(async {
        let c = client();
        // A page elsewhere whose own name now resolves to 127.0.0.1.
        for path in ["/v1/models", "/dashboard/data", "/v1/chat/completions"] {
            let r = c
                .get(s.url(path))
                .header("host", format!("rebound.evil.example:{port}"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 403, "{path}");
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["error"]["type"], "permission_error", "{v}");
        }
        for base in [format!("http://localhost:{port}"), s.url("")] {
            let r = c.get(format!("{base}/v1/models")).send().await.unwrap();
            assert_eq!(r.status().as_u16(), 200, "{base}");
        }
    });
    // With tokens the token decides, whatever the host.
    let s = env.serve_with(&["--models", "t/a"], &[("LLMROUTE_AUTH_TOKENS", "tok-1")]);
    rt().block_on(async {
        let r = client()
            .get(s.url("/v1/models"))
            .header("host", "llm.example.com")
            .bearer_auth("tok-1")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    });
}

/// One upstream 402 (the credit left does not cover one request's
/// `max_tokens`) fails that request alone: the next is answered, not met
/// with 503s for half a minute.
#[test]
fn one_402_leaves_other_requests_answered() {
    let env = Env::three();
    env.server.set_default("t/c", Behavior::status(402));
    let s = env.serve(&["--models", "t/a,t/b"]);
    rt().block_on(async {
        let c = client();
        let r = c
            .post(s.url("/v1/chat/completions"))
            .json(&chat(Some("t/c"), "dear"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 402);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "payment_required", "{v}");
        for prompt in ["next", "and the next"] {
            let r = c
                .post(s.url("/v1/chat/completions"))
                .json(&chat(None, prompt))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 200, "{prompt}");
        }
    });
    s.stop();
}
