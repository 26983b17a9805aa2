//! `llmroute serve` under load and at its limits: many connections, the
//! bounded queue, the deadline, a refused key, slow headers, SIGTERM.

use std::io::{Read, Write};
use std::time::Duration;

use crate::serve::{client, header, post, rt};
use crate::util::*;

#[test]
fn six_hundred_requests_from_thirty_connections_are_all_answered() {
    let env = Env::three();
    let s = env.serve(&["--models", "t/a,t/b", "--no-cache", "-j", "8"]);
    let answered = rt().block_on(async {
        let mut tasks = Vec::new();
        for conn in 0..30 {
            let url = s.url("/v1/chat/completions");
            tasks.push(tokio::spawn(async move {
                // One connection each.
                let c = reqwest::Client::builder()
                    .pool_max_idle_per_host(1)
                    .build()
                    .unwrap();
                let mut ok = 0;
                for i in 0..20 {
                    let r = c
                        .post(&url)
                        .json(&chat(None, &format!("c{conn}-{i}")))
                        .send()
                        .await;
                    if r.is_ok_and(|r| r.status().is_success()) {
                        ok += 1;
                    }
                }
                ok
            }));
        }
        let mut n = 0;
        for t in tasks {
            n += t.await.unwrap();
        }
        n
    });
    assert_eq!(answered, 600);
    assert_eq!(env.server.completions().len(), 600);
}

#[test]
fn sigterm_lets_requests_in_flight_finish_and_exits_zero() {
    let env = Env::three();
    env.server.set_default("t/a", Behavior::ok_after(1500));
    let s = env.serve(&["--models", "t/a", "--no-cache"]);
    let runtime = rt();
    let url = s.url("/v1/chat/completions");
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let url = url.clone();
            runtime.spawn(async move {
                let r = client()
                    .post(&url)
                    .json(&chat(None, &format!("slow{i}")))
                    .send()
                    .await?;
                Ok::<_, reqwest::Error>((r.status().as_u16(), r.text().await?))
            })
        })
        .collect();
    let mut waited = 0;
    while env.server.in_flight() < 16 && waited < 400 {
        std::thread::sleep(Duration::from_millis(25));
        waited += 1;
    }
    assert_eq!(env.server.in_flight(), 16, "all 16 in flight");
    let (code, log) = s.stop();
    for t in tasks {
        let (status, body) = runtime.block_on(t).unwrap().expect("an answer");
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(code, 0, "{log}");
    assert_eq!(
        env.count("SELECT count(*) FROM requests WHERE ok = 1"),
        16,
        "flushed"
    );
}

#[test]
fn past_the_slots_and_the_queue_a_request_is_refused_with_retry_after() {
    let env = Env::three();
    env.server.set_default("t/a", Behavior::ok_after(3000));
    let s = env.serve(&["--models", "t/a", "--no-cache", "-j", "1", "--queue", "1"]);
    let runtime = rt();
    let url = s.url("/v1/chat/completions");
    let held: Vec<_> = (0..2)
        .map(|i| {
            let url = url.clone();
            runtime.spawn(async move {
                client()
                    .post(&url)
                    .json(&chat(None, &format!("h{i}")))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    // Until one holds the slot and one waits for it.
    let metrics = s.url("/metrics");
    let mut waited = 0;
    loop {
        let text = runtime.block_on(async {
            client()
                .get(&metrics)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        });
        if text.contains("llmroute_requests_queued 1")
            && text.contains("llmroute_requests_in_flight 1")
        {
            break;
        }
        waited += 1;
        assert!(waited < 400, "{text}");
        std::thread::sleep(Duration::from_millis(25));
    }
    let (status, h, v) = runtime.block_on(post(&client(), &s, &chat(None, "third")));
    assert_eq!(status, 503, "{v}");
    assert_eq!(header(&h, "retry-after"), "1");
    assert_eq!(v["error"]["code"], "overloaded");
    for t in held {
        assert_eq!(
            runtime.block_on(t).unwrap().unwrap(),
            200,
            "the queued one waited its turn"
        );
    }
}

#[test]
fn a_request_past_its_deadline_gets_504_and_is_recorded() {
    let env = Env::three();
    env.server.set_default("t/a", Behavior::Hang);
    let s = env.serve(&["--models", "t/a", "--deadline", "300ms"]);
    let (status, h, v) = rt().block_on(post(&client(), &s, &chat(None, "late")));
    assert_eq!(status, 504, "{v}");
    assert_eq!(v["error"]["code"], "deadline_exceeded");
    // What was tried, as any error after routing says.
    assert_eq!(header(&h, "x-llmroute-model"), "t/a");
    assert_eq!(header(&h, "x-llmroute-attempts"), "1");
    let (_, log) = s.stop();
    assert!(
        log.lines()
            .any(|l| l.contains("status=504") && l.contains("model=\"t/a\"")),
        "{log}"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM attempts WHERE error_type = 'interrupted'"),
        1
    );
}

/// The deadline runs from the request's arrival: time waiting for a slot
/// counts.
#[test]
fn the_deadline_counts_the_time_in_the_queue() {
    let env = Env::three();
    env.server.set_default("t/a", Behavior::ok_after(700));
    let s = env.serve(&[
        "--models",
        "t/a",
        "--no-cache",
        "-j",
        "1",
        "--queue",
        "4",
        "--deadline",
        "1s",
    ]);
    let statuses = rt().block_on(async {
        let c = client();
        let body = chat(None, "first");
        let first = post(&c, &s, &body);
        let second = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            post(&c, &s, &chat(None, "second")).await
        };
        let (a, b) = tokio::join!(first, second);
        (a.0, b.0, b.2)
    });
    assert_eq!(statuses.0, 200);
    // Queued 600 ms, then 700 ms upstream: past its 1 s.
    assert_eq!(statuses.1, 504, "{}", statuses.2);
    assert_eq!(statuses.2["error"]["code"], "deadline_exceeded");
}

#[test]
fn a_refused_key_gives_503_and_the_server_stays_up() {
    let server = FakeServer::start_with(fake_openrouter::Config {
        models: vec![ModelSpec::new("t/a")],
        api_key: Some("another-key".into()),
        ..fake_openrouter::Config::default()
    });
    let env = Env {
        dir: tempfile::tempdir().unwrap(),
        server,
    };
    let s = env.serve(&["--models", "t/a"]);
    rt().block_on(async {
        let c = client();
        // The catalogue's fetch met the refusal: not ready from the start.
        let ready = c.get(s.url("/ready")).send().await.unwrap();
        assert_eq!(ready.status().as_u16(), 503);
        let ready: serde_json::Value = ready.json().await.unwrap();
        assert!(
            ready["upstream"].as_str().unwrap().starts_with("refused"),
            "{ready}"
        );
        for _ in 0..2 {
            let (status, h, v) = post(&c, &s, &chat(None, "k")).await;
            assert_eq!(status, 503, "{v}");
            assert_eq!(v["error"]["code"], "auth");
            assert!(h.get("retry-after").is_some());
        }
        let health = c.get(s.url("/health")).send().await.unwrap();
        assert_eq!(health.status().as_u16(), 200);
    });
    assert_eq!(
        env.server
            .requests()
            .iter()
            .filter(|r| r.path.ends_with("/chat/completions"))
            .count(),
        0,
        "none sent with a key the API refused"
    );
}

/// The body cap: a body declared too large is refused unread, one sent
/// without a length once it grows past the cap; both are 413 in OpenAI's
/// shape, and a chat request so refused is counted and logged as one.
#[test]
fn bodies_past_the_cap_are_413_declared_or_not() {
    let env = Env::three();
    let s = env.serve_with(
        &[
            "--models",
            "t/a",
            "--max-body",
            "1KiB",
            "--log-format",
            "json",
        ],
        &[("LLMROUTE_AUTH_TOKENS", "tok-1")],
    );
    // Sent in pieces of 512 bytes, without a Content-Length.
    let pieces = |n: usize| {
        let chunks = (0..n).map(|_| Ok::<_, std::io::Error>(vec![b' '; 512]));
        reqwest::Body::wrap_stream(futures_util::stream::iter(chunks))
    };
    let metrics = rt().block_on(async {
        // A connection whose body was left unread is closed after the
        // answer: one connection a request.
        let c = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let json = |path: &str| {
            c.post(s.url(path))
                .bearer_auth("tok-1")
                .header("content-type", "application/json")
        };
        for (path, body) in [
            ("/v1/chat/completions", pieces(4)),
            ("/v1/chat/completions", vec![b' '; 2048].into()),
            ("/route", pieces(4)),
            ("/route", vec![b' '; 2048].into()),
        ] {
            let r = json(path).body(body).send().await.unwrap();
            assert_eq!(r.status().as_u16(), 413, "{path}");
            let v: serde_json::Value = r.json().await.unwrap();
            assert_eq!(v["error"]["code"], "body_too_large", "{path}: {v}");
            assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
        }
        // The token is checked before the body's length.
        let r = c
            .post(s.url("/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(vec![b' '; 2048])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 401);
        // The sign-in form has a cap of its own, 4 KiB, whatever --max-body.
        let form = |body: reqwest::Body| {
            c.post(s.url("/dashboard/login"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
        };
        assert_eq!(form(pieces(10)).await.unwrap().status().as_u16(), 413);
        let mut token = b"token=tok-1&pad=".to_vec();
        token.resize(3000, b'x');
        let r = form(token.into()).await.unwrap();
        assert_eq!(r.status().as_u16(), 303, "signed in past --max-body");
        assert!(r.headers().contains_key("set-cookie"));
        c.get(s.url("/metrics"))
            .bearer_auth("tok-1")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    let counted = metrics
        .lines()
        .find(|l| l.starts_with("llmroute_requests_total{") && l.contains(r#"status="413""#));
    assert!(counted.is_some_and(|l| l.ends_with(" 2")), "{metrics}");
    let (_, log) = s.stop();
    let refused = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["path"] == "/v1/chat/completions" && v["status"] == 413)
        .filter(|v| v["key"].is_string() && v["model"].is_string())
        .count();
    assert_eq!(refused, 2, "chat access lines: {log}");
}

/// What the server sent on `conn` before it closed it, within 20 s.
fn closed_by_the_server(conn: &mut std::net::TcpStream) -> Vec<u8> {
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut buf = Vec::new();
    let read = conn.read_to_end(&mut buf);
    assert!(
        read.is_ok(),
        "closed by the server, not by our timeout: {read:?}"
    );
    buf
}

#[test]
fn slow_headers_are_cut_off() {
    let env = Env::three();
    let s = env.serve(&["--header-timeout", "300ms"]);
    let mut conn = std::net::TcpStream::connect(s.addr).unwrap();
    conn.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    // The server closes the connection (with or without a 408).
    let buf = closed_by_the_server(&mut conn);
    let text = String::from_utf8_lossy(&buf);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
}

/// A connection that sends nothing at all is cut off as one that sends
/// half its headers is: otherwise a few silent sockets hold every
/// `--max-connections` slot, and no one is served.
#[test]
fn a_connection_that_sends_nothing_is_cut_off() {
    let env = Env::three();
    let s = env.serve(&["--header-timeout", "300ms", "--max-connections", "4"]);
    // Nothing at all, or the start of HTTP/2's preface and then nothing.
    let silent: Vec<std::net::TcpStream> = ["", "", "P", "PRI * HTTP/2.0\r\n"]
        .iter()
        .map(|opening| {
            let mut c = std::net::TcpStream::connect(s.addr).unwrap();
            c.write_all(opening.as_bytes()).unwrap();
            c
        })
        .collect();
    for mut conn in silent {
        closed_by_the_server(&mut conn);
    }
    // Their slots are free again: a request is answered.
    let (status, _) = rt().block_on(async {
        let r = reqwest::get(s.url("/health")).await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    });
    assert_eq!(status, 200);
}
