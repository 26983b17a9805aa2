//! End-to-end tests of the fake server through a minimal std-only HTTP client.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use fake_openrouter::{Behavior, CatalogueBehavior, Config, Dialect, FakeServer, ModelSpec};
use serde_json::{json, Value};

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn content_length(&self) -> Option<usize> {
        self.header("content-length").map(|v| v.parse().unwrap())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

fn connect(server: &FakeServer) -> TcpStream {
    let stream = TcpStream::connect(server.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    stream
}

fn send(stream: &mut TcpStream, method: &str, path: &str, headers: &[(&str, &str)], body: &str) {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(req.as_bytes()).unwrap();
}

/// Reads the response head; returns status, headers and any body bytes already read.
fn read_head(stream: &mut TcpStream) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        let n = stream.read(&mut chunk).unwrap();
        assert!(n > 0, "connection closed before the response head");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
    let status = status_line[9..12].parse().unwrap();
    let headers = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    (status, headers, buf[end + 4..].to_vec())
}

fn read_response(stream: &mut TcpStream) -> Response {
    let (status, headers, mut body) = read_head(stream);
    let mut response = Response {
        status,
        headers,
        body: Vec::new(),
    };
    let len = response
        .content_length()
        .expect("response has a content-length");
    let mut chunk = [0u8; 4096];
    while body.len() < len {
        let n = stream.read(&mut chunk).unwrap();
        assert!(n > 0, "connection closed before the body ended");
        body.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(body.len(), len, "more bytes than content-length");
    response.body = body;
    response
}

fn request(
    server: &FakeServer,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Response {
    let mut stream = connect(server);
    send(&mut stream, method, path, headers, body);
    read_response(&mut stream)
}

fn chat_body(model: &str, text: &str) -> String {
    json!({"model": model, "messages": [{"role": "user", "content": text}]}).to_string()
}

fn chat(server: &FakeServer, model: &str, text: &str) -> Response {
    request(
        server,
        "POST",
        "/api/v1/chat/completions",
        &[("Content-Type", "application/json")],
        &chat_body(model, text),
    )
}

/// Reads until EOF or error; returns the bytes read and whether EOF was clean.
fn read_to_end_lossy(stream: &mut TcpStream) -> (Vec<u8>, bool) {
    let mut all = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return (all, true),
            Ok(n) => all.extend_from_slice(&chunk[..n]),
            Err(_) => return (all, false),
        }
    }
}

#[test]
fn models_catalogue_shape() {
    let server = FakeServer::start(vec![
        ModelSpec::new("fast/a")
            .prices("0.0000015", "0.000003")
            .context(32_000)
            .params(&["max_tokens"])
            .intelligence(61.5),
        ModelSpec::new("slow/b").no_context(),
    ]);
    let r = request(&server, "GET", "/api/v1/models", &[], "");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    let a = &data[0];
    assert_eq!(a["id"], "fast/a");
    assert_eq!(a["name"], "fast/a");
    assert_eq!(a["created"], 0);
    assert_eq!(a["context_length"], 32_000);
    assert_eq!(a["pricing"]["prompt"], "0.0000015");
    assert_eq!(a["pricing"]["completion"], "0.000003");
    assert_eq!(a["top_provider"]["context_length"], 32_000);
    assert_eq!(a["top_provider"]["max_completion_tokens"], Value::Null);
    assert_eq!(a["top_provider"]["is_moderated"], false);
    assert_eq!(a["supported_parameters"], json!(["max_tokens"]));
    assert_eq!(
        a["benchmarks"]["artificial_analysis"]["intelligence_index"],
        61.5
    );
    let b = &data[1];
    assert_eq!(b["id"], "slow/b");
    assert_eq!(b["context_length"], Value::Null);
    assert_eq!(b["pricing"]["prompt"], "0.000001");
    assert_eq!(b["pricing"]["completion"], "0.000002");
    assert_eq!(
        b["supported_parameters"],
        json!(["max_tokens", "temperature", "tools", "response_format"])
    );
    assert!(b.get("benchmarks").is_none());

    // Also served without the /api/v1 prefix.
    assert_eq!(request(&server, "GET", "/models", &[], "").json(), v);
}

#[test]
fn catalogue_behaviors() {
    let server = FakeServer::start(vec![ModelSpec::new("m")]);
    server.set_catalogue_behavior(CatalogueBehavior::Raw("{\"data\":[]}".into()));
    let r = request(&server, "GET", "/api/v1/models", &[], "");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"{\"data\":[]}"[..]));
    server.set_catalogue_behavior(CatalogueBehavior::Status(503));
    let r = request(&server, "GET", "/api/v1/models", &[], "");
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["error"]["code"], 503);
}

#[test]
fn completion_shape_and_content() {
    let server = FakeServer::start(vec![]);
    let body = json!({
        "model": "some/model",
        "messages": [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": "hello world"},
        ],
    });
    let r = request(
        &server,
        "POST",
        "/api/v1/chat/completions",
        &[],
        &body.to_string(),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    assert!(v["id"].as_str().unwrap().starts_with("gen-"), "{v}");
    assert_eq!(v["object"], "chat.completion");
    assert!(v["created"].as_u64().unwrap() > 1_600_000_000);
    assert_eq!(v["model"], "some/model");
    assert_eq!(v["provider"], "fake");
    let choice = &v["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["finish_reason"], "stop");
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["content"], "[some/model] hello world");
    // 14 prompt chars -> 14/4+1; 24 content chars -> 24/4+1.
    assert_eq!(v["usage"]["prompt_tokens"], 4);
    assert_eq!(v["usage"]["completion_tokens"], 7);
    assert_eq!(v["usage"]["total_tokens"], 11);
    assert!(v["usage"].get("cost").is_none());

    server.script("some/model", [Behavior::ok_with_cost(0.0125)]);
    let v = chat(&server, "some/model", "x").json();
    assert_eq!(v["usage"]["cost"], 0.0125);
    assert_ne!(v["id"], chat(&server, "some/model", "x").json()["id"]);
}

#[test]
fn scripted_sequence_then_default() {
    let server = FakeServer::start(vec![ModelSpec::new("m/a")]);
    server.script(
        "m/a",
        [
            Behavior::status(503),
            Behavior::status_with_body(400, "{\"error\":{\"code\":400,\"message\":\"too long\"}}"),
        ],
    );
    let r = chat(&server, "m/a", "one");
    assert_eq!(r.status, 503);
    assert_eq!(
        r.json(),
        json!({"error": {"code": 503, "message": "fake error 503"}})
    );
    let r = chat(&server, "m/a", "two");
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["message"], "too long");
    let r = chat(&server, "m/a", "three");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["choices"][0]["message"]["content"], "[m/a] three");

    server.set_default("m/a", Behavior::status(502));
    assert_eq!(chat(&server, "m/a", "four").status, 502);
    assert_eq!(chat(&server, "m/a", "five").status, 502);
    // Other models, even unknown to the catalogue, are unaffected.
    assert_eq!(chat(&server, "other/x", "six").status, 200);

    server.set_fallback(Behavior::status(500));
    assert_eq!(chat(&server, "other/x", "seven").status, 500);
    assert_eq!(chat(&server, "m/a", "eight").status, 502);

    assert_eq!(server.count_for("m/a"), 6);
    assert_eq!(server.count_for("other/x"), 2);
    assert_eq!(server.count_for("nobody"), 0);
}

#[test]
fn rate_limited_has_retry_after() {
    let server = FakeServer::start(vec![]);
    server.script(
        "m",
        [
            Behavior::rate_limited(Some(7)),
            Behavior::rate_limited(None),
        ],
    );
    let r = chat(&server, "m", "x");
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("7"));
    assert_eq!(r.json()["error"]["code"], 429);
    let r = chat(&server, "m", "x");
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), None);
}

#[test]
fn unknown_models_are_answered_in_each_server_s_dialect() {
    let server = FakeServer::start(vec![]);
    for d in Dialect::ALL {
        server.set_default(d.name(), Behavior::unknown_model(d));
    }
    let r = chat(&server, "litellm", "x");
    assert_eq!(r.status, 400);
    let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains("Invalid model name passed in model=litellm."),
        "{message}"
    );
    assert_eq!(r.json()["error"]["code"], "400");
    let r = chat(&server, "vllm", "x");
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["object"], "error");
    assert_eq!(r.json()["message"], "The model `vllm` does not exist.");
    let r = chat(&server, "ollama", "x");
    assert_eq!(r.status, 404);
    assert_eq!(
        r.json()["error"]["message"],
        "model \"ollama\" not found, try pulling it first"
    );
    let r = chat(&server, "openai", "x");
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["code"], "model_not_found");
    let r = chat(&server, "openrouter", "x");
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["error"]["message"],
        "openrouter is not a valid model ID"
    );
    // A streaming request gets the same JSON error, not a stream.
    let mut stream = connect(&server);
    let body = json!({"model": "openai", "stream": true, "messages": []}).to_string();
    send(&mut stream, "POST", "/api/v1/chat/completions", &[], &body);
    let r = read_response(&mut stream);
    assert_eq!(
        (r.status, r.header("content-type")),
        (404, Some("application/json"))
    );
}

#[test]
fn latency_is_applied() {
    let server = FakeServer::start(vec![]);
    server.script("m", [Behavior::ok_after(150)]);
    let t = Instant::now();
    assert_eq!(chat(&server, "m", "x").status, 200);
    assert!(t.elapsed() >= Duration::from_millis(150));
    let t = Instant::now();
    assert_eq!(chat(&server, "m", "x").status, 200);
    assert!(t.elapsed() < Duration::from_millis(150));
}

#[test]
fn hang_does_not_answer() {
    let server = FakeServer::start(vec![]);
    server.script("m", [Behavior::Hang]);
    let mut stream = connect(&server);
    stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    send(
        &mut stream,
        "POST",
        "/api/v1/chat/completions",
        &[],
        &chat_body("m", "x"),
    );
    let mut buf = [0u8; 64];
    let err = stream.read(&mut buf).expect_err("no answer expected");
    assert!(
        matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{err:?}"
    );
    // The server still answers other connections meanwhile.
    assert_eq!(chat(&server, "m", "x").status, 200);

    // Dropping the server closes the hanging connection.
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    drop(server);
    let (bytes, _) = read_to_end_lossy(&mut stream);
    assert!(bytes.is_empty());
}

#[test]
fn truncated_claims_more_than_it_sends() {
    let server = FakeServer::start(vec![]);
    server.script("m", [Behavior::Truncated]);
    let mut stream = connect(&server);
    send(
        &mut stream,
        "POST",
        "/api/v1/chat/completions",
        &[],
        &chat_body("m", "x"),
    );
    let (status, headers, mut body) = read_head(&mut stream);
    assert_eq!(status, 200);
    let claimed: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .unwrap()
        .1
        .parse()
        .unwrap();
    let (rest, _) = read_to_end_lossy(&mut stream);
    body.extend_from_slice(&rest);
    assert!(!body.is_empty());
    assert!(
        claimed > body.len(),
        "claimed {claimed}, got {}",
        body.len()
    );
}

#[test]
fn reset_and_close_faults() {
    let server = FakeServer::start(vec![]);
    server.script(
        "m",
        [Behavior::ResetMidBody, Behavior::CloseWithoutResponse],
    );

    let mut stream = connect(&server);
    send(
        &mut stream,
        "POST",
        "/api/v1/chat/completions",
        &[],
        &chat_body("m", "x"),
    );
    let (all, _) = read_to_end_lossy(&mut stream);
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let head_end = text.find("\r\n\r\n").unwrap() + 4;
    let claimed: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(all.len() - head_end < claimed);

    let mut stream = connect(&server);
    send(
        &mut stream,
        "POST",
        "/api/v1/chat/completions",
        &[],
        &chat_body("m", "x"),
    );
    let (all, _) = read_to_end_lossy(&mut stream);
    assert!(all.is_empty());
    assert_eq!(server.count_for("m"), 2);
}

#[test]
fn drip_sends_slowly() {
    let server = FakeServer::start(vec![]);
    server.script(
        "m",
        [Behavior::Drip {
            interval: Duration::from_millis(100),
        }],
    );
    let mut stream = connect(&server);
    send(
        &mut stream,
        "POST",
        "/api/v1/chat/completions",
        &[],
        &chat_body("m", "x"),
    );
    let (status, headers, mut body) = read_head(&mut stream);
    assert_eq!(status, 200);
    assert!(headers.iter().any(|(n, _)| n == "content-length"));
    stream
        .set_read_timeout(Some(Duration::from_millis(250)))
        .unwrap();
    let started = Instant::now();
    let mut chunk = [0u8; 64];
    while started.elapsed() < Duration::from_millis(250) {
        match stream.read(&mut chunk) {
            Ok(n) if n > 0 => body.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
    assert!(
        (1..=4).contains(&body.len()),
        "{} bytes in 250ms",
        body.len()
    );
    assert_eq!(body[0], b'{');
}

#[test]
fn other_body_faults() {
    let server = FakeServer::start(vec![]);
    server.script(
        "m",
        [
            Behavior::NonJson,
            Behavior::ErrorInBody,
            Behavior::BigBody { bytes: 100_000 },
        ],
    );
    let r = chat(&server, "m", "x");
    assert_eq!(r.status, 200);
    assert!(serde_json::from_slice::<Value>(&r.body).is_err());

    let r = chat(&server, "m", "x");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!({"error": {"code": 502, "message": "Provider returned error"}})
    );

    let r = chat(&server, "m", "x");
    assert_eq!(r.status, 200);
    assert!(
        (99_000..=101_000).contains(&r.body.len()),
        "{}",
        r.body.len()
    );
    let content = r.json()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(content.starts_with("[m] x"));
}

#[test]
fn flaky_is_deterministic() {
    let statuses = |seed: u64, rate: f64| -> Vec<u16> {
        let server = FakeServer::start(vec![]);
        server.set_default(
            "m",
            Behavior::Flaky {
                fail_rate: rate,
                seed,
                latency: Duration::ZERO,
            },
        );
        (0..40).map(|_| chat(&server, "m", "x").status).collect()
    };
    let first = statuses(9, 0.5);
    assert_eq!(first, statuses(9, 0.5));
    assert!(first.contains(&200) && first.contains(&500), "{first:?}");
    assert_ne!(first, statuses(10, 0.5));
    assert!(statuses(9, 0.0).iter().all(|&s| s == 200));
    assert!(statuses(9, 1.0).iter().all(|&s| s == 500));
}

#[test]
fn keep_alive_serves_several_requests() {
    let server = FakeServer::start(vec![ModelSpec::new("m")]);
    let mut stream = connect(&server);
    send(
        &mut stream,
        "POST",
        "/api/v1/chat/completions",
        &[],
        &chat_body("m", "first"),
    );
    let r = read_response(&mut stream);
    assert_eq!(r.json()["choices"][0]["message"]["content"], "[m] first");
    assert_eq!(r.header("connection"), None);
    send(&mut stream, "GET", "/api/v1/models", &[], "");
    let r = read_response(&mut stream);
    assert_eq!(r.json()["data"][0]["id"], "m");
    send(
        &mut stream,
        "POST",
        "/api/v1/chat/completions",
        &[("Connection", "close")],
        &chat_body("m", "last"),
    );
    let r = read_response(&mut stream);
    assert_eq!(r.json()["choices"][0]["message"]["content"], "[m] last");
    assert_eq!(r.header("connection"), Some("close"));
    let (rest, clean) = read_to_end_lossy(&mut stream);
    assert!(rest.is_empty() && clean);
}

#[test]
fn chunked_and_expect_continue_requests() {
    let server = FakeServer::start(vec![]);
    let body = chat_body("m", "chunky");
    let (a, b) = body.split_at(10);
    let mut stream = connect(&server);
    let req = format!(
        "POST /api/v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x};ext=1\r\n{b}\r\n0\r\nX-Trailer: y\r\n\r\n",
        a.len(),
        b.len()
    );
    stream.write_all(req.as_bytes()).unwrap();
    let r = read_response(&mut stream);
    assert_eq!(r.json()["choices"][0]["message"]["content"], "[m] chunky");
    assert_eq!(server.requests()[0].body, body.as_bytes());

    let mut stream = connect(&server);
    let head = format!(
        "POST /api/v1/chat/completions HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    let (status, _, rest) = read_head(&mut stream);
    assert_eq!((status, rest.len()), (100, 0));
    stream.write_all(body.as_bytes()).unwrap();
    assert_eq!(read_response(&mut stream).status, 200);
}

#[test]
fn log_records_headers_and_bodies() {
    let server = FakeServer::start(vec![]);
    request(&server, "GET", "/api/v1/models", &[("X-Probe", "one")], "");
    let body = chat_body("m/x", "logged");
    chat(&server, "m/x", "logged");
    request(&server, "GET", "/nowhere", &[], "");

    let all = server.requests();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].method, "GET");
    assert_eq!(all[0].path, "/api/v1/models");
    assert_eq!(all[0].header("x-probe"), Some("one"));
    assert_eq!(all[0].header("X-PROBE"), Some("one"));
    assert!(all[0]
        .headers
        .iter()
        .any(|(n, v)| n == "x-probe" && v == "one"));
    assert_eq!(all[0].model, None);
    assert_eq!(all[1].body, body.as_bytes());
    assert_eq!(all[1].model.as_deref(), Some("m/x"));
    assert_eq!(all[1].json()["messages"][0]["content"], "logged");
    assert_eq!(all[1].header("content-type"), Some("application/json"));
    assert!(all[0].at <= all[1].at && all[1].at <= all[2].at);
    assert_eq!(all[2].path, "/nowhere");

    let completions = server.completions();
    assert_eq!(completions.len(), 1);
    assert_eq!(completions[0].model.as_deref(), Some("m/x"));

    server.clear_log();
    assert!(server.requests().is_empty());
    assert_eq!(server.count_for("m/x"), 0);
}

#[test]
fn logging_can_be_disabled() {
    let server = FakeServer::start_with(Config {
        log_requests: false,
        ..Config::default()
    });
    assert_eq!(chat(&server, "m", "x").status, 200);
    assert!(server.requests().is_empty());
    assert_eq!(server.count_for("m"), 1);
}

#[test]
fn api_key_is_enforced() {
    let server = FakeServer::start_with(Config {
        api_key: Some("sekret".into()),
        ..Config::default()
    });
    let body = chat_body("m", "x");
    let path = "/api/v1/chat/completions";
    let r = request(
        &server,
        "POST",
        path,
        &[("Authorization", "Bearer wrong")],
        &body,
    );
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["code"], 401);
    assert_eq!(request(&server, "POST", path, &[], &body).status, 401);
    assert_eq!(
        request(&server, "GET", "/api/v1/models", &[], "").status,
        401
    );
    let r = request(
        &server,
        "POST",
        path,
        &[("Authorization", "Bearer sekret")],
        &body,
    );
    assert_eq!(r.status, 200);
    assert_eq!(server.count_for("m"), 1);
    assert_eq!(server.requests().len(), 4);
}

#[test]
fn bad_requests_and_unknown_paths() {
    let server = FakeServer::start(vec![]);
    let path = "/api/v1/chat/completions";
    let r = request(&server, "POST", path, &[], "not json");
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], 400);
    let r = request(&server, "POST", path, &[], "{\"messages\":[]}");
    assert_eq!(r.status, 400);
    let r = request(&server, "POST", path, &[], "{\"model\":3}");
    assert_eq!(r.status, 400);
    let r = request(&server, "GET", "/api/v1/unknown", &[], "");
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["code"], 404);
    assert_eq!(request(&server, "GET", path, &[], "").status, 405);

    let mut stream = connect(&server);
    stream.write_all(b"garbage\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut stream).status, 400);
}

#[test]
fn dropping_the_server_stops_listening() {
    let server = FakeServer::start(vec![]);
    let addr = server.addr();
    assert!(server.base_url().starts_with("http://127.0.0.1:"));
    assert!(server.base_url().ends_with("/api/v1"));
    assert_eq!(server.base_url(), format!("http://{addr}/api/v1"));
    drop(server);
    assert!(TcpStream::connect(addr).is_err());
}
