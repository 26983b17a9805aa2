//! Streamed answers (`"stream": true`), read through a minimal std-only
//! HTTP client that decodes the chunked body one chunk at a time.
//!
//! Timing is never asserted: only orders and counts, and where the server
//! must be observed mid-stream, an interval far longer than the test.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use fake_openrouter::{Behavior, FakeServer, StreamUsage};
use serde_json::{json, Value};

const PATH: &str = "/api/v1/chat/completions";

struct Client {
    stream: TcpStream,
    /// Bytes read and not yet consumed.
    buf: Vec<u8>,
}

struct Head {
    status: u16,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One piece of a chunked body.
#[derive(Debug, PartialEq)]
enum Chunk {
    Data(Vec<u8>),
    /// The terminating zero-length chunk.
    End,
    /// The connection closed before a whole chunk arrived.
    Closed,
}

/// One server-sent event.
#[derive(Debug)]
enum Event {
    Json(Value),
    Done,
}

impl Client {
    fn connect(server: &FakeServer) -> Client {
        let stream = TcpStream::connect(server.addr()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    fn post(&mut self, body: &Value, headers: &[(&str, &str)]) {
        let body = body.to_string();
        let mut req = format!("POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
        for (n, v) in headers {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        self.stream.write_all(req.as_bytes()).unwrap();
    }

    /// Reads more bytes; 0 when the connection is closed (or reset).
    fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 4096];
        match self.stream.read(&mut chunk) {
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                n
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => 0,
            Err(e) => panic!("read failed: {e}"),
        }
    }

    fn head(&mut self) -> Head {
        let end = loop {
            if let Some(p) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p;
            }
            assert!(self.fill() > 0, "connection closed before the head");
        };
        let text = String::from_utf8(self.buf[..end].to_vec()).unwrap();
        self.buf.drain(..end + 4);
        let mut lines = text.split("\r\n");
        let status = lines.next().unwrap()[9..12].parse().unwrap();
        let headers = lines
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap();
                (n.trim().to_ascii_lowercase(), v.trim().to_owned())
            })
            .collect();
        Head { status, headers }
    }

    /// A body of `Content-Length` bytes.
    fn body(&mut self, head: &Head) -> Vec<u8> {
        let len: usize = head.header("content-length").unwrap().parse().unwrap();
        while self.buf.len() < len {
            assert!(self.fill() > 0, "connection closed before the body ended");
        }
        self.buf.drain(..len).collect()
    }

    fn chunk(&mut self) -> Chunk {
        let line = loop {
            if let Some(p) = self.buf.windows(2).position(|w| w == b"\r\n") {
                break p;
            }
            if self.fill() == 0 {
                return Chunk::Closed;
            }
        };
        let size_text = std::str::from_utf8(&self.buf[..line]).unwrap();
        let size = usize::from_str_radix(size_text, 16).unwrap();
        let total = line + 2 + size + 2;
        while self.buf.len() < total {
            if self.fill() == 0 {
                return Chunk::Closed;
            }
        }
        assert_eq!(
            &self.buf[total - 2..total],
            b"\r\n",
            "chunk not ended by CRLF"
        );
        let data = self.buf[line + 2..line + 2 + size].to_vec();
        self.buf.drain(..total);
        if size == 0 {
            Chunk::End
        } else {
            Chunk::Data(data)
        }
    }

    /// The next event, or how the body ended.
    fn event(&mut self) -> Result<Event, Chunk> {
        match self.chunk() {
            Chunk::Data(data) => Ok(parse_event(&data)),
            other => Err(other),
        }
    }

    /// Every remaining event, and how the body ended.
    fn events(&mut self) -> (Vec<Event>, Chunk) {
        let mut events = Vec::new();
        loop {
            match self.event() {
                Ok(event) => events.push(event),
                Err(end) => return (events, end),
            }
        }
    }

    /// Whether the server closed the connection (nothing more to read).
    fn closed(&mut self) -> bool {
        self.buf.is_empty() && self.fill() == 0
    }
}

/// Parses one HTTP chunk, which must hold exactly one event.
fn parse_event(data: &[u8]) -> Event {
    let text = std::str::from_utf8(data).unwrap();
    let payload = text
        .strip_prefix("data: ")
        .and_then(|t| t.strip_suffix("\n\n"))
        .unwrap_or_else(|| panic!("not one SSE event: {text:?}"));
    assert!(
        !payload.contains('\n'),
        "several events in a chunk: {text:?}"
    );
    if payload == "[DONE]" {
        Event::Done
    } else {
        Event::Json(serde_json::from_str(payload).unwrap())
    }
}

fn chat(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

fn streaming(model: &str, text: &str) -> Value {
    let mut body = chat(model, text);
    body["stream"] = json!(true);
    body
}

fn with_usage(mut body: Value, include: bool) -> Value {
    body["stream_options"] = json!({ "include_usage": include });
    body
}

/// The unstreamed answer to `body`, on a connection of its own.
fn unstreamed(server: &FakeServer, body: &Value) -> Value {
    let mut client = Client::connect(server);
    client.post(body, &[]);
    let head = client.head();
    assert_eq!(head.status, 200);
    serde_json::from_slice(&client.body(&head)).unwrap()
}

/// The JSON events of a whole stream: content chunks, finish chunk, usage
/// chunk when asked for, checked to end with `[DONE]` and the terminating chunk.
fn whole_stream(client: &mut Client) -> Vec<Value> {
    let head = client.head();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    assert_eq!(head.header("cache-control"), Some("no-cache"));
    assert_eq!(head.header("transfer-encoding"), Some("chunked"));
    assert_eq!(head.header("content-length"), None);
    let (mut events, end) = client.events();
    assert_eq!(end, Chunk::End);
    assert!(matches!(events.pop(), Some(Event::Done)), "{events:?}");
    events
        .into_iter()
        .map(|e| match e {
            Event::Json(v) => v,
            Event::Done => panic!("[DONE] before the end"),
        })
        .collect()
}

/// The content pieces of the leading content chunks, checking their shape;
/// returns them and the remaining events.
fn split_content(events: &[Value]) -> (Vec<String>, &[Value]) {
    let mut pieces = Vec::new();
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["object"], "chat.completion.chunk");
        assert_eq!(e["id"], events[0]["id"]);
        assert_eq!(e["created"], events[0]["created"]);
        let choice = &e["choices"][0];
        let Some(piece) = choice["delta"]["content"].as_str() else {
            return (pieces, &events[i..]);
        };
        assert_eq!(choice["index"], 0);
        assert_eq!(choice["finish_reason"], Value::Null);
        if i == 0 {
            assert_eq!(choice["delta"]["role"], "assistant");
        } else {
            assert!(choice["delta"].get("role").is_none(), "{e}");
        }
        pieces.push(piece.to_owned());
    }
    (pieces, &[])
}

fn assert_finish(event: &Value) {
    assert_eq!(
        event["choices"],
        json!([{"index": 0, "delta": {}, "finish_reason": "stop"}])
    );
    assert!(event.get("usage").is_none());
}

/// Waits until `f` holds, for a few seconds at most.
fn eventually(f: impl Fn() -> bool) -> bool {
    for _ in 0..500 {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    f()
}

#[test]
fn streamed_pieces_join_into_the_unstreamed_content() {
    let server = FakeServer::start(vec![]);
    let text = "the quick  brown fox";
    let plain = unstreamed(&server, &chat("m/a", text));
    let content = plain["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(content, "[m/a] the quick  brown fox");

    let mut client = Client::connect(&server);
    client.post(&streaming("m/a", text), &[]);
    let events = whole_stream(&mut client);
    let (pieces, rest) = split_content(&events);
    assert_eq!(pieces, ["[m/a] ", "the ", "quick  ", "brown ", "fox"]);
    assert_eq!(pieces.concat(), content);
    assert_eq!(events[0]["model"], "m/a");
    // The finish chunk, and no usage chunk when it was not asked for.
    assert_eq!(rest.len(), 1, "{rest:?}");
    assert_finish(&rest[0]);

    assert_eq!(server.streams_started(), 1);
    assert_eq!(server.streams_completed(), 1);
    assert_eq!(server.streams_abandoned(), 0);
    assert_eq!(server.in_flight(), 0);

    // The connection stays open for the next request.
    client.post(&chat("m/a", "again"), &[]);
    let head = client.head();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("application/json"));
    let v: Value = serde_json::from_slice(&client.body(&head)).unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "[m/a] again");

    let logged = server.completions();
    assert_eq!(
        logged.iter().map(|r| r.stream()).collect::<Vec<_>>(),
        [false, true, false]
    );
    assert_eq!(logged[1].json()["stream"], true);
}

#[test]
fn include_usage_adds_a_usage_chunk_with_the_unstreamed_numbers() {
    let server = FakeServer::start(vec![]);
    server.set_default("m", Behavior::ok_with_cost(0.125));
    let plain = unstreamed(&server, &chat("m", "count these tokens please"));
    assert_eq!(plain["usage"]["cost"], 0.125);

    let mut client = Client::connect(&server);
    client.post(
        &with_usage(streaming("m", "count these tokens please"), true),
        &[],
    );
    let events = whole_stream(&mut client);
    let (pieces, rest) = split_content(&events);
    assert_eq!(pieces.concat(), plain["choices"][0]["message"]["content"]);
    assert_eq!(rest.len(), 2, "{rest:?}");
    assert_finish(&rest[0]);
    assert_eq!(rest[1]["object"], "chat.completion.chunk");
    assert_eq!(rest[1]["id"], events[0]["id"]);
    assert_eq!(rest[1]["choices"], json!([]));
    assert_eq!(rest[1]["usage"], plain["usage"]);

    // `include_usage: false` is no usage chunk.
    client.post(&with_usage(streaming("m", "x"), false), &[]);
    let events = whole_stream(&mut client);
    assert!(events.iter().all(|e| e.get("usage").is_none()));
    assert_finish(events.last().unwrap());
}

#[test]
fn usage_can_come_as_openai_or_llama_cpp_send_it() {
    let server = FakeServer::start(vec![]);
    server.set_default("m", Behavior::ok_with_cost(0.125));
    let plain = unstreamed(&server, &chat("m", "count these"));
    let mut client = Client::connect(&server);

    // OpenAI: the usage chunk, and `"usage":null` in every other chunk.
    server.set_stream_usage(StreamUsage::NullInEveryChunk);
    client.post(&with_usage(streaming("m", "count these"), true), &[]);
    let events = whole_stream(&mut client);
    let (last, rest) = events.split_last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"], plain["usage"]);
    assert!(rest
        .iter()
        .all(|e| e["usage"].is_null() && e.get("usage").is_some()));
    // Not asked, none.
    client.post(&with_usage(streaming("m", "count these"), false), &[]);
    let events = whole_stream(&mut client);
    assert!(
        events.iter().all(|e| e.get("usage").is_none()),
        "{events:?}"
    );

    // llama.cpp's server: in the finish chunk, no chunk of its own.
    server.set_stream_usage(StreamUsage::InFinishChunk);
    client.post(&with_usage(streaming("m", "count these"), true), &[]);
    let events = whole_stream(&mut client);
    let (last, rest) = events.split_last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert_eq!(last["usage"], plain["usage"]);
    assert!(rest.iter().all(|e| e.get("usage").is_none()));
}

#[test]
fn stream_behavior_sends_its_words_one_chunk_each() {
    let server = FakeServer::start(vec![]);
    server.set_default(
        "m/s",
        Behavior::Stream {
            first: Duration::from_millis(5),
            interval: Duration::from_millis(5),
            pieces: 4,
            cut_after: None,
            cost: Some(0.5),
        },
    );
    let plain = unstreamed(&server, &chat("m/s", "ignored"));
    assert_eq!(plain["choices"][0]["message"]["content"], "[m/s] w2 w3 w4");
    assert_eq!(plain["usage"]["cost"], 0.5);

    let mut client = Client::connect(&server);
    client.post(&with_usage(streaming("m/s", "ignored"), true), &[]);
    let events = whole_stream(&mut client);
    let (pieces, rest) = split_content(&events);
    assert_eq!(pieces, ["[m/s] ", "w2 ", "w3 ", "w4"]);
    assert_eq!(rest.len(), 2);
    assert_finish(&rest[0]);
    assert_eq!(rest[1]["usage"], plain["usage"]);
    assert_eq!(server.streams_started(), 1);
    assert_eq!(server.streams_completed(), 1);
    assert_eq!(server.most_in_flight(), 1);
    assert_eq!(server.in_flight(), 0);

    // The constructor: no cost, not cut.
    server.script("m/s", [Behavior::stream(0, 1, 3)]);
    let mut client = Client::connect(&server);
    client.post(&with_usage(streaming("m/s", "x"), true), &[]);
    let events = whole_stream(&mut client);
    let (pieces, rest) = split_content(&events);
    assert_eq!(pieces, ["[m/s] ", "w2 ", "w3"]);
    assert!(rest[1]["usage"].get("cost").is_none());
}

#[test]
fn the_first_chunk_arrives_while_the_rest_is_pending() {
    let server = FakeServer::start(vec![]);
    // An interval far longer than the test: the second chunk never comes.
    server.set_default("m", Behavior::stream(0, 600_000, 3));
    let mut client = Client::connect(&server);
    client.post(&streaming("m", "x"), &[]);
    assert_eq!(client.head().status, 200);
    let Ok(Event::Json(first)) = client.event() else {
        panic!("no first event");
    };
    assert_eq!(first["choices"][0]["delta"]["content"], "[m] ");
    assert_eq!(server.streams_started(), 1);
    assert_eq!(server.streams_completed(), 0);
    assert_eq!(server.in_flight(), 1);

    // The client goes away mid-stream: the server notices during its wait.
    drop(client);
    assert!(eventually(|| server.streams_abandoned() == 1));
    assert_eq!(server.in_flight(), 0);
    assert_eq!(server.streams_completed(), 0);
}

#[test]
fn a_client_gone_before_the_first_chunk_is_an_abandoned_stream() {
    let server = FakeServer::start(vec![]);
    server.set_default("m", Behavior::stream(600_000, 1, 3));
    let mut client = Client::connect(&server);
    client.post(&streaming("m", "x"), &[]);
    assert!(eventually(|| server.streams_started() == 1));
    assert_eq!(server.in_flight(), 1);
    drop(client);
    assert!(eventually(|| server.streams_abandoned() == 1));
    assert_eq!(server.in_flight(), 0);
    assert_eq!(server.streams_completed(), 0);
}

#[test]
fn concurrent_streams_are_counted_in_flight() {
    let server = FakeServer::start(vec![]);
    server.set_default("m", Behavior::stream(0, 600_000, 2));
    let clients: Vec<Client> = (0..3)
        .map(|_| {
            let mut client = Client::connect(&server);
            client.post(&streaming("m", "x"), &[]);
            assert_eq!(client.head().status, 200);
            assert!(matches!(client.event(), Ok(Event::Json(_))));
            client
        })
        .collect();
    assert_eq!(server.in_flight(), 3);
    assert_eq!(server.most_in_flight(), 3);
    assert_eq!(server.streams_started(), 3);
    drop(clients);
    assert!(eventually(|| server.streams_abandoned() == 3));
    assert_eq!(server.in_flight(), 0);
    assert_eq!(server.most_in_flight(), 3);
}

#[test]
fn a_cut_stream_closes_without_done() {
    let server = FakeServer::start(vec![]);
    server.script(
        "m",
        [
            Behavior::stream_cut(0, 1, 5, 2),
            Behavior::stream_cut(0, 1, 5, 0),
            Behavior::stream_cut(0, 1, 2, 9),
        ],
    );
    for (cut, content_chunks) in [(1, 2), (2, 0), (3, 2)] {
        let mut client = Client::connect(&server);
        client.post(&with_usage(streaming("m", "x"), true), &[]);
        let head = client.head();
        assert_eq!(head.status, 200);
        assert_eq!(head.header("content-length"), None);
        let (events, end) = client.events();
        assert_eq!(end, Chunk::Closed, "{events:?}");
        assert_eq!(events.len(), content_chunks, "{events:?}");
        for e in &events {
            let Event::Json(e) = e else {
                panic!("[DONE] in a cut stream")
            };
            assert!(e["choices"][0]["delta"]["content"].is_string(), "{e}");
        }
        assert!(client.closed());
        assert_eq!(server.streams_cut(), cut);
    }
    assert_eq!(server.streams_started(), 3);
    assert_eq!(server.streams_completed(), 0);
    assert_eq!(server.streams_abandoned(), 0);
    assert_eq!(server.in_flight(), 0);

    // Not asked to stream, a cut stream answers whole.
    server.script("m", [Behavior::stream_cut(0, 1, 3, 1)]);
    let plain = unstreamed(&server, &chat("m", "x"));
    assert_eq!(plain["choices"][0]["message"]["content"], "[m] w2 w3");
}

#[test]
fn error_behaviors_answer_a_streaming_request_with_json() {
    let server = FakeServer::start(vec![]);
    server.script(
        "m",
        [
            Behavior::rate_limited(Some(3)),
            Behavior::status(503),
            Behavior::Flaky {
                fail_rate: 1.0,
                seed: 1,
                latency: Duration::ZERO,
            },
        ],
    );
    for (code, retry_after) in [(429, Some("3")), (503, None), (500, None)] {
        let mut client = Client::connect(&server);
        client.post(&streaming("m", "x"), &[]);
        let head = client.head();
        assert_eq!(head.status, code);
        assert_eq!(head.header("content-type"), Some("application/json"));
        assert_eq!(head.header("retry-after"), retry_after);
        let body: Value = serde_json::from_slice(&client.body(&head)).unwrap();
        assert_eq!(body["error"]["code"], code);
    }
    assert_eq!(server.streams_started(), 0);
}

#[test]
fn flaky_and_tail_successes_stream_too() {
    let server = FakeServer::start(vec![]);
    server.script(
        "m",
        [
            Behavior::Flaky {
                fail_rate: 0.0,
                seed: 1,
                latency: Duration::ZERO,
            },
            Behavior::Tail {
                latency: Duration::ZERO,
                slow: Duration::from_millis(1),
                slow_rate: 0.5,
                seed: 2,
            },
        ],
    );
    for _ in 0..2 {
        let mut client = Client::connect(&server);
        client.post(&streaming("m", "one two"), &[]);
        let events = whole_stream(&mut client);
        let (pieces, _) = split_content(&events);
        assert_eq!(pieces, ["[m] ", "one ", "two"]);
    }
    assert_eq!(server.streams_completed(), 2);
}

#[test]
fn connection_close_ends_the_stream_and_the_connection() {
    let server = FakeServer::start(vec![]);
    let mut client = Client::connect(&server);
    client.post(&streaming("m", "bye"), &[("Connection", "close")]);
    let events = whole_stream(&mut client);
    assert_eq!(split_content(&events).0.concat(), "[m] bye");
    assert!(client.closed());
}
