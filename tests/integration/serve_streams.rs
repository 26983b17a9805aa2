//! `llmroute serve`'s streams, and clients that leave before their answer.

use std::time::Duration;

use serde_json::{json, Value};

use crate::serve::{client, content, events, header, joined, post, rt};
use crate::util::*;

#[test]
fn streams_pass_through_and_fall_back_before_their_first_chunk() {
    let env = Env::three();
    env.server.set_default("t/a", Behavior::status(503));
    env.server.set_default("t/b", Behavior::stream(0, 20, 5));
    let s = env.serve(&["-p", "cost", "--models", "t/a,t/b,t/c"]);
    rt().block_on(async {
        let c = client();
        let mut body = chat(None, "s");
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
        let r = c
            .post(s.url("/v1/chat/completions"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(header(r.headers(), "content-type"), "text/event-stream");
        assert_eq!(header(r.headers(), "x-llmroute-model"), "t/b");
        assert_eq!(header(r.headers(), "x-llmroute-attempts"), "2");
        // Routed, it has its score, as a whole answer does.
        let score = header(r.headers(), "x-llmroute-score").parse::<f64>();
        assert!(score.is_ok(), "{:?}", r.headers());
        let text = r.text().await.unwrap();
        let ev = events(&text);
        assert_eq!(ev.last().map(String::as_str), Some("[DONE]"), "{text}");
        assert_eq!(joined(&ev), "[t/b] w2 w3 w4 w5");
        let usage: Vec<Value> = ev
            .iter()
            .filter_map(|e| serde_json::from_str::<Value>(e).ok())
            .filter(|c| c["usage"].is_object())
            .collect();
        assert_eq!(usage.len(), 1, "the usage chunk, as asked: {text}");
        // Not streamed, the same request is the cached whole of the stream.
        let (_, h, v) = post(&c, &s, &chat(None, "s")).await;
        assert_eq!(header(&h, "x-llmroute-cached"), "true");
        assert_eq!(content(&v), "[t/b] w2 w3 w4 w5");
        // And streamed again, the cache replays it, without usage unasked.
        body["stream_options"] = json!(null);
        let r = c
            .post(s.url("/v1/chat/completions"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(header(r.headers(), "x-llmroute-cached"), "true");
        let ev = events(&r.text().await.unwrap());
        assert_eq!(joined(&ev), "[t/b] w2 w3 w4 w5");
        assert!(!ev.iter().any(|e| e.contains("\"usage\"")));
    });
    s.stop();
    assert_eq!(env.server.streams_completed(), 1);
    let ttft: Option<f64> =
        env.value("SELECT ttft_ms FROM attempts WHERE model = 't/b' AND ok = 1");
    assert!(ttft.is_some(), "time to first token recorded");
}

#[test]
fn a_stream_cut_midway_ends_with_an_error_and_is_not_cached() {
    let env = Env::three();
    env.server
        .set_default("t/a", Behavior::stream_cut(0, 10, 5, 2));
    let s = env.serve(&["--models", "t/a"]);
    rt().block_on(async {
        let mut body = chat(None, "cut");
        body["stream"] = json!(true);
        let r = client()
            .post(s.url("/v1/chat/completions"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let ev = events(&r.text().await.unwrap());
        assert!(!ev.iter().any(|e| e == "[DONE]"), "{ev:?}");
        let last: Value = serde_json::from_str(ev.last().unwrap()).unwrap();
        let message = last["error"]["message"].as_str().unwrap();
        assert!(message.contains("cut off after "), "{last}");
        // One of a thing is singular.
        let n: u64 = message["the stream was cut off after ".len()..]
            .split(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{message}"));
        let unit = if n == 1 { " chunk" } else { " chunks" };
        assert!(message.contains(&format!("after {n}{unit}")), "{message}");
        assert!(!message.contains("(s)"), "{message}");
        // In the shape of every other error: a string code, and a param.
        assert_eq!(last["error"]["code"], "upstream_error", "{last}");
        assert!(last["error"].get("param").is_some(), "{last}");
    });
    s.stop();
    assert_eq!(env.count("SELECT count(*) FROM cache"), 0);
    assert_eq!(
        env.count("SELECT count(*) FROM attempts WHERE ok = 0 AND model = 't/a'"),
        1
    );
}

#[test]
fn a_client_that_leaves_mid_stream_stops_the_upstream_call() {
    let env = Env::three();
    env.server.set_default("t/a", Behavior::stream(0, 200, 50));
    let s = env.serve(&["--models", "t/a"]);
    rt().block_on(async {
        let mut body = chat(None, "leave");
        body["stream"] = json!(true);
        let mut r = client()
            .post(s.url("/v1/chat/completions"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let first = r.chunk().await.unwrap().expect("a first chunk");
        assert!(String::from_utf8_lossy(&first).contains("[t/a]"));
        drop(r);
    });
    let mut waited = 0;
    while env.server.streams_abandoned() == 0 && waited < 200 {
        std::thread::sleep(Duration::from_millis(50));
        waited += 1;
    }
    assert_eq!(
        env.server.streams_abandoned(),
        1,
        "the upstream call was cut"
    );
    assert_eq!(env.server.streams_completed(), 0);
    // The dashboard counts it as the report does: not answered.
    let totals = rt().block_on(async {
        let r = client().get(s.url("/dashboard/data")).send().await.unwrap();
        r.json::<Value>().await.unwrap()["totals"].clone()
    });
    assert_eq!(
        (&totals["answered"], &totals["errors"]),
        (&json!(0), &json!(1)),
        "{totals}"
    );
    s.stop();
    let report = env.cmd().args(["report", "--since", "all", "--json"]).run();
    let report: Value = serde_json::from_str(&report.stdout).unwrap();
    assert_eq!(
        (&report["answered"], &report["errors"]),
        (&json!(0), &json!(1))
    );
    assert_eq!(
        env.count("SELECT count(*) FROM attempts WHERE error_type = 'interrupted'"),
        1,
        "the attempt is recorded"
    );
    assert_eq!(env.count("SELECT count(*) FROM cache"), 0);
    // What it streamed may be billed: the store counts what the budget
    // does, so that a restart does not give it back.
    assert_eq!(
        env.count(
            "SELECT count(*) FROM requests WHERE error_type = 'interrupted' AND cost_usd > 0"
        ),
        1,
        "the cost of what was streamed is recorded"
    );
}

#[test]
fn a_client_that_leaves_before_the_answer_cancels_the_attempt_and_it_is_recorded() {
    let env = Env::three();
    env.server.set_default("t/a", Behavior::Hang);
    let s = env.serve(&["--models", "t/a,t/b"]);
    rt().block_on(async {
        let impatient = reqwest::Client::builder()
            .timeout(Duration::from_millis(300))
            .build()
            .unwrap();
        let r = impatient
            .post(s.url("/v1/chat/completions"))
            .json(&chat(None, "gone"))
            .send()
            .await;
        assert!(r.is_err(), "the client gave up");
    });
    // Recorded while the server runs on, not only when it stops.
    let recorded = || {
        env.db().exists()
            && env.count("SELECT count(*) FROM attempts WHERE error_type = 'interrupted'") == 1
    };
    let mut waited = 0;
    while !recorded() && waited < 200 {
        std::thread::sleep(Duration::from_millis(50));
        waited += 1;
    }
    assert!(recorded(), "{}", s.log());
    assert_eq!(
        env.server.count_for("t/b"),
        0,
        "no fallback for a client that left"
    );
}

/// A stream's chunks, checked to end with `[DONE]`.
fn chunks_of(text: &str) -> Vec<Value> {
    let ev = events(text);
    assert_eq!(ev.last().map(String::as_str), Some("[DONE]"), "{text}");
    ev.iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .collect()
}

#[test]
fn the_usage_chunk_comes_only_when_asked_for_live_or_replayed() {
    let env = Env::three();
    let s = env.serve(&["--models", "t/a"]);
    rt().block_on(async {
        let c = client();
        for shape in [
            StreamUsage::Chunk,
            StreamUsage::NullInEveryChunk,
            StreamUsage::InFinishChunk,
        ] {
            env.server.set_stream_usage(shape);
            let prompt = format!("{shape:?}");
            // Live (the cache not read) and replayed from the cache.
            for (asked, live) in [(false, true), (true, true), (false, false), (true, false)] {
                let mut body = chat(None, &prompt);
                body["stream"] = json!(true);
                if asked {
                    body["stream_options"] = json!({"include_usage": true});
                }
                let mut r = c.post(s.url("/v1/chat/completions")).json(&body);
                if live {
                    r = r.header("cache-control", "no-cache");
                }
                let r = r.send().await.unwrap();
                assert_eq!(
                    header(r.headers(), "x-llmroute-cached"),
                    (!live).to_string()
                );
                let text = r.text().await.unwrap();
                let what = format!("{shape:?}, asked {asked}, live {live}: {text}");
                let chunks = chunks_of(&text);
                assert_eq!(joined(&events(&text)), format!("[t/a] {prompt}"), "{what}");
                if !asked {
                    assert!(!text.contains("\"usage\""), "no usage at all: {what}");
                    continue;
                }
                // One usage, in a chunk of its own, the last.
                let with_usage: Vec<&Value> =
                    chunks.iter().filter(|c| !c["usage"].is_null()).collect();
                assert_eq!(with_usage.len(), 1, "{what}");
                let last = chunks.last().unwrap();
                assert_eq!(last["choices"], json!([]), "{what}");
                assert!(last["usage"]["completion_tokens"].is_number(), "{what}");
            }
        }
    });
    s.stop();
}

#[test]
fn a_tool_call_streamed_from_a_whole_answer_has_content_null() {
    let env = Env::three();
    let calls = json!([{"id": "call_1", "type": "function",
        "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]);
    // OpenAI's message of a tool call has `"content": null`; some upstreams
    // leave it out.
    for (model, message) in [
        (
            "t/a",
            json!({"role": "assistant", "content": null, "tool_calls": calls}),
        ),
        ("t/b", json!({"role": "assistant", "tool_calls": calls})),
    ] {
        let body = json!({"id": "gen-1", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 7}});
        env.server
            .set_default(model, Behavior::status_with_body(200, body.to_string()));
    }
    let s = env.serve(&["--models", "t/a,t/b"]);
    rt().block_on(async {
        let c = client();
        for model in ["t/a", "t/b"] {
            let mut body = chat(Some(model), "weather");
            body["stream"] = json!(true);
            // An upstream that answered whole, then the cache.
            for cached in [false, true] {
                let r = c
                    .post(s.url("/v1/chat/completions"))
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(header(r.headers(), "x-llmroute-cached"), cached.to_string());
                let text = r.text().await.unwrap();
                let chunks = chunks_of(&text);
                let delta = &chunks[0]["choices"][0]["delta"];
                assert_eq!(delta.get("content"), Some(&Value::Null), "{model}: {text}");
                assert_eq!(delta["role"], "assistant", "{text}");
                let call = &delta["tool_calls"][0];
                assert_eq!(call["index"], 0, "{text}");
                assert_eq!(call["function"]["arguments"], "{\"city\":\"Paris\"}");
                assert!(
                    chunks
                        .iter()
                        .any(|c| c["choices"][0]["finish_reason"] == "tool_calls"),
                    "{text}"
                );
            }
            // Not streamed, the cached answer has the same message.
            let (_, h, v) = post(&c, &s, &chat(Some(model), "weather")).await;
            assert_eq!(header(&h, "x-llmroute-cached"), "true");
            let message = &v["choices"][0]["message"];
            assert_eq!(message.get("content"), Some(&Value::Null), "{v}");
            assert_eq!(message["tool_calls"], calls);
        }
    });
    s.stop();
    assert_eq!(env.server.count_for("t/a") + env.server.count_for("t/b"), 2);
}

#[test]
fn a_client_that_leaves_before_the_answer_is_logged_and_counted_as_499() {
    let env = Env::three();
    env.server.set_default("t/a", Behavior::Hang);
    let s = env.serve(&["--models", "t/a", "--log-format", "json"]);
    let metrics = rt().block_on(async {
        let impatient = reqwest::Client::builder()
            .timeout(Duration::from_millis(300))
            .build()
            .unwrap();
        let r = impatient
            .post(s.url("/v1/chat/completions"))
            .json(&chat(None, "gone"))
            .send()
            .await;
        assert!(r.is_err(), "the client gave up");
        let c = client();
        let mut text = String::new();
        for _ in 0..200 {
            text = c
                .get(s.url("/metrics"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            if text.contains(r#"status="499""#) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        text
    });
    let counted = metrics
        .lines()
        .find(|l| l.starts_with("llmroute_requests_total{") && l.contains(r#"status="499""#));
    assert!(
        counted.is_some_and(|l| l.ends_with(" 1") && l.contains(r#"model="t/a""#)),
        "{metrics}\n{}",
        s.log()
    );
    let (_, log) = s.stop();
    let lines: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["path"] == "/v1/chat/completions")
        .collect();
    assert_eq!(lines.len(), 1, "one access line: {log}");
    assert_eq!(lines[0]["status"], 499, "{log}");
    assert!(lines[0]["request_id"].is_string(), "{log}");
    assert_eq!(lines[0]["attempts"], 1, "the attempt it cancelled: {log}");
    assert_eq!(lines[0]["model"], "t/a", "the model it was sent to: {log}");
    assert!(
        lines[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("client")),
        "{log}"
    );
}

#[test]
fn a_stream_still_open_when_the_grace_period_ends_gets_an_error_event() {
    let env = Env::three();
    // 60 chunks, one every 200 ms: far longer than the grace period.
    env.server.set_default("t/a", Behavior::stream(0, 200, 60));
    let s = env.serve(&["--models", "t/a", "--grace", "1s"]);
    let pid = s.child.id();
    let text = rt().block_on(async {
        let mut body = chat(None, "long");
        body["stream"] = json!(true);
        let mut r = client()
            .post(s.url("/v1/chat/completions"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let mut text = Vec::new();
        text.extend_from_slice(&r.chunk().await.unwrap().expect("a first chunk"));
        signal(pid, "TERM");
        while let Ok(Some(b)) = r.chunk().await {
            text.extend_from_slice(&b);
        }
        String::from_utf8(text).unwrap()
    });
    let (code, log) = s.stop();
    assert_eq!(code, 0, "{log}");
    let ev = events(&text);
    assert!(
        joined(&ev).starts_with("[t/a]"),
        "chunks came first: {text}"
    );
    assert!(!ev.iter().any(|e| e == "[DONE]"), "{text}");
    let last: Value = serde_json::from_str(ev.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "shutting_down", "{text}");
    assert!(last["error"]["message"].is_string(), "{last}");
    assert_eq!(
        env.count("SELECT count(*) FROM attempts WHERE error_type = 'interrupted'"),
        1,
        "the stream is recorded, as interrupted: {log}"
    );
}

/// A request still waiting for its answer when the grace period ends gets
/// 503 `shutting_down`, which a client may retry elsewhere, not a 502 that
/// says not to retry.
#[test]
fn a_request_cut_off_by_the_grace_period_may_be_retried() {
    let env = Env::three();
    env.server.set_default("t/a", Behavior::ok_after(6000));
    let s = env.serve(&["--models", "t/a", "--grace", "1s"]);
    let pid = s.child.id();
    let (status, headers, v) = rt().block_on(async {
        let call = client()
            .post(s.url("/v1/chat/completions"))
            .json(&chat(None, "slow"))
            .send();
        let stop = async {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            signal(pid, "TERM");
        };
        let (r, ()) = tokio::join!(call, stop);
        let r = r.unwrap();
        let (status, headers) = (r.status().as_u16(), r.headers().clone());
        (status, headers, r.json::<Value>().await.unwrap())
    });
    let (code, log) = s.stop();
    assert_eq!(code, 0, "{log}");
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["error"]["code"], "shutting_down", "{v}");
    assert!(headers.get("x-should-retry").is_none(), "{headers:?}");
    assert!(headers.get("retry-after").is_some(), "{headers:?}");
    // Answered as the grace period ends, not when the last streams have
    // had their time to close: its access line comes before the warning
    // the end of the grace period leaves once the connections are done.
    let answered = log.find("status=503").expect("an access line for the 503");
    let cut = log.find("are cut off").expect("the grace period's warning");
    assert!(answered < cut, "{log}");
}

/// A server with one slot (-j 1), `--timeout 2s`, and the body of a
/// stream of some megabytes from t/a.
fn one_slot_and_a_long_stream() -> (Env, Served, Value) {
    let env = Env::three();
    env.server
        .set_default("t/a", Behavior::stream(0, 0, 400_000));
    env.server.set_default("t/b", Behavior::ok());
    let s = env.serve(&[
        "--models",
        "t/a,t/b",
        "-j",
        "1",
        "--timeout",
        "2s",
        "--deadline",
        "30s",
    ]);
    let mut body = chat(Some("t/a"), "a long stream");
    body["stream"] = json!(true);
    (env, s, body)
}

/// A request of another client gets the slot and is answered.
async fn another_client_is_served(s: &Served) {
    let r = client()
        .post(s.url("/v1/chat/completions"))
        .json(&chat(Some("t/b"), "may I?"))
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
}

#[test]
fn a_client_that_never_reads_its_stream_is_cut_off_and_frees_its_slot() {
    // One slot (-j 1): a stream of some megabytes whose client reads none
    // of it holds that slot only until the server's writes have waited on
    // it for --timeout; then another client is served.
    use std::io::Write as _;
    let (_env, s, body) = one_slot_and_a_long_stream();
    let body = body.to_string();
    let mut stalled = std::net::TcpStream::connect(s.addr).unwrap();
    write!(
        stalled,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    rt().block_on(async {
        another_client_is_served(&s).await;
    });
    drop(stalled);
}

#[test]
fn an_http2_client_that_keeps_its_stream_s_window_shut_frees_its_slot() {
    // Over HTTP/2 a client can leave one stream's flow-control window shut
    // while its connection goes on: no write of the connection waits, yet
    // that stream's answer cannot be sent. Its slot (-j 1) is held only
    // until the stream has waited on its client for --timeout.
    let (_env, s, body) = one_slot_and_a_long_stream();
    rt().block_on(async {
        let shut = reqwest::Client::builder()
            .http2_prior_knowledge()
            .http2_initial_stream_window_size(1024)
            .build()
            .unwrap();
        let held = shut
            .post(s.url("/v1/chat/completions"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(held.status().as_u16(), 200);
        assert_eq!(held.version(), reqwest::Version::HTTP_2);
        // The connection stays open and its stream unread.
        another_client_is_served(&s).await;
        drop(held);
    });
}
