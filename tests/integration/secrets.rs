//! A client that hands llmroute an upstream's key where a name goes (as a
//! model, a task, a request id) gets a clear refusal that does not repeat
//! it, and the key is kept nowhere: not in the answer, the log, the output
//! or the store. A prompt may hold it (it is the user's to send); a log of
//! bodies shows it blanked out.

use serde_json::{json, Value};

use crate::crashes::{contains, store_bytes};
use crate::util::*;

fn chat() -> Value {
    json!({"messages": [{"role": "user", "content": "hello"}]})
}

/// Posts `body` with `headers`: the status, and the whole answer (its
/// headers and body) as text.
fn post(s: &Served, body: &Value, headers: &[(&str, &str)]) -> (u16, String) {
    crate::serve::rt().block_on(async {
        let mut r = reqwest::Client::new()
            .post(s.url("/v1/chat/completions"))
            .json(body);
        for (n, v) in headers {
            r = r.header(*n, *v);
        }
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        let heads = format!("{:?}", r.headers());
        (status, heads + &r.text().await.unwrap())
    })
}

fn assert_no_key_kept(env: &Env) {
    for (name, bytes) in store_bytes(&env.db()) {
        assert!(!contains(&bytes, KEY), "{name} holds the key");
    }
}

#[test]
fn a_server_refuses_the_key_where_a_name_goes_and_repeats_it_nowhere() {
    let env = Env::three();
    let s = env.serve(&["--log-bodies"]);
    let with = |f: &dyn Fn(&mut Value)| {
        let mut b = chat();
        f(&mut b);
        b
    };
    let refused = [
        ("model", with(&|b| b["model"] = KEY.into()), vec![]),
        (
            "llmroute.task",
            with(&|b| b["llmroute"] = json!({"task": KEY})),
            vec![],
        ),
        (
            "llmroute.models",
            with(&|b| b["llmroute"] = json!({"models": ["t/a", KEY]})),
            vec![],
        ),
        ("llmroute.task", chat(), vec![("x-llmroute-task", KEY)]),
    ];
    for (field, body, headers) in &refused {
        let (status, answer) = post(&s, body, headers);
        assert_eq!(status, 400, "{field}: {answer}");
        assert!(!answer.contains(KEY), "{field}: {answer}");
        assert!(answer.contains(&format!("\\\"{field}\\\"")), "{answer}");
        assert!(answer.contains("an upstream's API key"), "{answer}");
    }
    assert!(
        env.server.completions().is_empty(),
        "nothing refused is sent"
    );
    // An id the client gives is its own, unless it is the key.
    let (status, answer) = post(&s, &chat(), &[("x-request-id", KEY)]);
    assert_eq!(status, 200, "{answer}");
    assert!(!answer.contains(KEY), "{answer}");
    // A prompt is the user's to send; a log of bodies blanks it out.
    let prompt = json!({"messages": [{"role": "user", "content": format!("my key is {KEY}")}]});
    let (status, answer) = post(&s, &prompt, &[]);
    assert_eq!(status, 200, "{answer}");
    assert!(!answer.contains(KEY), "{answer}");
    assert_eq!(env.server.completions().len(), 2);
    let (code, log) = s.stop();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("my key is [redacted]"), "{log}");
    assert!(!log.contains(KEY), "{log}");
    assert_no_key_kept(&env);
}

#[test]
fn a_batch_line_that_gives_the_key_for_a_name_is_refused_without_it() {
    let env = Env::three();
    let lines = [
        json!({"prompt": "a", "model": KEY}),
        json!({"prompt": "b", "llmroute": {"task": KEY}}),
        json!({"prompt": "c", "llmroute": {"models": ["t/a", KEY]}}),
        json!({"prompt": "d", "id": KEY}),
        json!({"prompt": "e", "id": "fine"}),
    ]
    .map(|l| l.to_string() + "\n")
    .concat();
    let out = env.cmd().args(["--models", "t/a"]).stdin(lines).run();
    out.assert_code(1);
    let got = out.lines();
    assert_eq!(got.len(), 5, "{}", out.stdout);
    for (l, field) in got
        .iter()
        .zip(["model", "llmroute.task", "llmroute.models", "id"])
    {
        assert_eq!(l["error"]["type"], "invalid_input", "{l}");
        let message = l["error"]["message"].as_str().unwrap();
        assert!(message.contains(&format!("\"{field}\"")), "{l}");
        assert!(message.contains("an upstream's API key"), "{l}");
    }
    assert_eq!(got[3]["id"], "[redacted]");
    assert_eq!(got[4]["error"], Value::Null, "{}", got[4]);
    assert_eq!(got[4]["id"], "fine");
    assert_eq!(env.server.completions().len(), 1, "only the last is sent");
    assert!(!out.stdout.contains(KEY), "{}", out.stdout);
    assert!(!out.stderr.contains(KEY), "{}", out.stderr);
    assert_no_key_kept(&env);
}

/// A key as long as OpenAI's project keys, longer than a task's name.
fn long_key() -> String {
    let tail: String = (0..120)
        .map(|i| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[(i * 7 + 3) % 36]))
        .collect();
    format!("sk-proj-{tail}")
}

/// Whether `text` holds any 12 characters of `key` past its first 8.
fn holds_part(text: &str, key: &str) -> bool {
    (8..key.len() - 12).any(|i| text.contains(&key[i..i + 12]))
}

#[test]
fn no_part_of_a_long_key_is_echoed_by_a_server() {
    let env = Env::three();
    let long = long_key();
    let s = env.serve_with(&["--log-bodies"], &[("OPENROUTER_API_KEY", &long)]);
    let mut answers = Vec::new();
    // Refused as no task's name, it is not quoted even in part.
    let (status, answer) = post(&s, &chat(), &[("x-llmroute-task", &long)]);
    assert_eq!(status, 400, "{answer}");
    answers.push(answer);
    let body = json!({"messages": [{"role": "user", "content": "hi"}], "llmroute": {"task": long}});
    let (status, answer) = post(&s, &body, &[]);
    assert_eq!(status, 400, "{answer}");
    answers.push(answer);
    // Feedback on an id that is the key: its error does not repeat it.
    let (feedback, model) = crate::serve::rt().block_on(async {
        let c = reqwest::Client::new();
        let fb = c
            .post(s.url("/v1/feedback"))
            .json(&json!([{"request_id": long, "score": 1}]))
            .send()
            .await
            .unwrap();
        let fb = format!("{} {}", fb.status(), fb.text().await.unwrap());
        let m = c
            .get(s.url(&format!("/v1/models/{long}")))
            .send()
            .await
            .unwrap();
        let m = format!("{} {}", m.status(), m.text().await.unwrap());
        (fb, m)
    });
    answers.push(feedback);
    answers.push(model);
    // A prompt that spells the key with JSON escapes is logged without it.
    let escaped = format!(
        "{{\"messages\":[{{\"role\":\"user\",\"content\":\"key \\u0073{}\"}}]}}",
        &long[1..]
    );
    let (status, answer) = crate::serve::rt().block_on(async {
        let r = reqwest::Client::new()
            .post(s.url("/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(escaped)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    });
    assert_eq!(status, 200, "{answer}");
    answers.push(answer);
    for a in &answers {
        assert!(!holds_part(a, &long), "{a}");
    }
    let (code, log) = s.stop();
    assert_eq!(code, 0, "{log}");
    assert!(!holds_part(&log, &long), "{log}");
    for (name, bytes) in store_bytes(&env.db()) {
        let text = String::from_utf8_lossy(&bytes);
        assert!(!holds_part(&text, &long), "{name} holds part of the key");
    }
}

#[test]
fn a_batch_line_that_does_not_parse_echoes_no_key_as_its_id() {
    let env = Env::three();
    let long = long_key();
    let lines = [
        json!({"id": KEY, "messages": "not a list"}),
        json!({"id": "b", "prompt": "x", "llmroute": {"task": long}}),
    ]
    .map(|l| l.to_string() + "\n")
    .concat();
    let out = env.cmd().args(["--models", "t/a"]).stdin(lines).run();
    out.assert_code(1);
    let got = out.lines();
    assert_eq!(got[0]["id"], "[redacted]", "{}", out.stdout);
    assert_eq!(got[0]["error"]["type"], "invalid_input");
    assert!(!out.stdout.contains(KEY), "{}", out.stdout);
    assert_no_key_kept(&env);
    // A key longer than a task's name is not quoted, even in part.
    let out = env
        .cmd()
        .env("OPENROUTER_API_KEY", &long)
        .args(["--models", "t/a"])
        .stdin(format!(
            "{}\n",
            json!({"prompt": "x", "llmroute": {"task": long}})
        ))
        .run();
    out.assert_code(1);
    assert!(!holds_part(&out.stdout, &long), "{}", out.stdout);
    assert!(!holds_part(&out.stderr, &long), "{}", out.stderr);
    assert!(env.server.completions().is_empty());
}

/// Local servers take short keys for form's sake, and model names hold
/// them: `anthropic` as a key does not refuse `anthropic/claude-x`.
#[test]
fn a_short_key_that_a_model_name_holds_refuses_nothing() {
    let env = Env::new(vec![ModelSpec::new("anthropic/claude-x")]);
    let line =
        json!({"prompt": "x", "model": "anthropic/claude-x", "llmroute": {"task": "anthropic"}});
    let out = env
        .cmd()
        .env("OPENROUTER_API_KEY", "anthropic")
        .stdin(line.to_string() + "\n")
        .run();
    out.assert_code(0);
    let line = &out.lines()[0];
    assert_eq!(line["error"], Value::Null, "{}", out.stdout);
    // Nor is it blanked out of the answer: it is a word, not a secret.
    assert_eq!(line["model"], "anthropic/claude-x");
    assert_eq!(line["content"], "[anthropic/claude-x] x", "{line}");
}

/// Whatever a client sends back to itself through a message that quotes
/// it (a bad field's value, an unknown field, a path) has the key blanked
/// out; a key in capitals is a key.
#[test]
fn messages_that_quote_what_a_client_sent_quote_no_key() {
    let env = Env::three();
    let upper = KEY.to_ascii_uppercase();
    let s = env.serve(&[]);
    let mut answers = Vec::new();
    for llmroute in [
        json!({"task": format!(" {KEY} ")}),
        json!({"weights": KEY}),
        json!({"weights": {KEY: 1}}),
        json!({KEY: 1}),
        json!({"task": upper}),
    ] {
        let body = json!({"messages": [{"role": "user", "content": "hi"}], "llmroute": llmroute});
        let (status, answer) = post(&s, &body, &[]);
        assert_eq!(status, 400, "{llmroute}: {answer}");
        answers.push(answer);
    }
    let (status, answer) = post(&s, &chat(), &[("x-request-id", &upper)]);
    assert_eq!(status, 200, "{answer}");
    answers.push(answer);
    crate::serve::rt().block_on(async {
        let c = reqwest::Client::new();
        for (method, path, body) in [
            (
                "POST",
                "/v1/feedback",
                json!({"request_id": KEY, "score": 1}),
            ),
            ("POST", "/v1/feedback", json!({"request_id": "x", KEY: 1})),
            ("GET", &*format!("/{KEY}"), Value::Null),
            ("GET", &*format!("/v1/models/{KEY}"), Value::Null),
        ] {
            let r = match method {
                "GET" => c.get(s.url(path)),
                _ => c.post(s.url(path)).json(&body),
            };
            let r = r.send().await.unwrap();
            let status = r.status().as_u16();
            assert!(status >= 400, "{path}: {status}");
            answers.push(format!("{status} {}", r.text().await.unwrap()));
        }
    });
    for a in &answers {
        assert!(!a.contains(KEY), "{a}");
        assert!(!a.contains(&upper), "{a}");
    }
    assert!(env.server.completions().len() == 1);
    let (code, log) = s.stop();
    assert_eq!(code, 0, "{log}");
    assert!(!log.contains(KEY), "{log}");
    assert!(!log.contains(&upper), "{log}");
    for (name, bytes) in store_bytes(&env.db()) {
        assert!(!contains(&bytes, KEY), "{name}");
        assert!(!contains(&bytes, &upper), "{name}");
    }
}

#[test]
fn a_batch_line_s_messages_and_ids_quote_no_key() {
    let env = Env::three();
    let lines = [
        json!({"prompt": "a", "llmroute": {"task": format!(" {KEY} ")}}),
        json!({"prompt": "b", "llmroute": {"weights": KEY}}),
        json!({"prompt": "c", "id": {"n": KEY}}),
        json!({"prompt": "d", "llmroute": {"task": KEY.to_ascii_uppercase()}}),
    ]
    .map(|l| l.to_string() + "\n")
    .concat();
    let out = env.cmd().args(["--models", "t/a"]).stdin(lines).run();
    out.assert_code(1);
    let got = out.lines();
    assert_eq!(got.len(), 4, "{}", out.stdout);
    for l in &got {
        assert_eq!(l["error"]["type"], "invalid_input", "{l}");
    }
    assert_eq!(got[2]["id"], "[redacted]");
    let upper = KEY.to_ascii_uppercase();
    for text in [&out.stdout, &out.stderr] {
        assert!(!text.contains(KEY) && !text.contains(&upper), "{text}");
    }
    assert!(env.server.completions().is_empty());
    assert_no_key_kept(&env);
}

/// What calls no upstream keeps keys out too: feedback and outcomes that
/// give one are refused without it, and a client key is not named with it.
#[test]
fn commands_that_call_no_upstream_keep_and_show_no_key() {
    let env = Env::three();
    env.cmd()
        .arg("--dry-run")
        .stdin(prompts(1))
        .run()
        .assert_code(0);
    let outcomes = [
        json!({"task": KEY, "model": "t/a", "score": 1}),
        json!({"task": "t", "model": format!("x/{KEY}"), "score": 1}),
    ]
    .map(|l| l.to_string() + "\n")
    .concat();
    let feedback = [
        json!({"request_id": KEY, "score": 1}),
        json!({"request_id": "x", "score": 1, "weight": KEY}),
    ]
    .map(|l| l.to_string() + "\n")
    .concat();
    let runs = [
        env.cmd()
            .args(["feedback", "--outcomes", "-"])
            .stdin(outcomes)
            .run(),
        env.cmd().args(["feedback", "-"]).stdin(feedback).run(),
    ];
    for out in &runs {
        out.assert_code(1);
        assert_eq!(out.lines().len(), 2, "{}", out.stdout);
        for text in [&out.stdout, &out.stderr] {
            assert!(!text.contains(KEY), "{text}");
        }
    }
    for args in [
        vec!["keys", "create", KEY],
        vec!["keys", "create", "fine", "--models", KEY],
    ] {
        let out = env.cmd().args(&args).run();
        out.assert_code(2);
        assert!(
            out.stderr.contains("an upstream's API key"),
            "{}",
            out.stderr
        );
        assert!(!out.stderr.contains(KEY) && !out.stdout.contains(KEY));
    }
    // A candidate given on the command line is a mistake too.
    let out = env
        .cmd()
        .args(["--models", &format!("t/a,{KEY}")])
        .stdin(prompts(1))
        .run();
    out.assert_code(2);
    assert!(!out.stderr.contains(KEY), "{}", out.stderr);
    assert!(env.server.completions().is_empty());
    assert_no_key_kept(&env);
}

/// A key in capitals in a logged body, one percent-encoded in a path, and
/// one past what an unknown field's name shows, are blanked out too.
#[test]
fn a_key_spelt_otherwise_is_blanked_out_of_what_a_server_shows() {
    let env = Env::three();
    let s = env.serve(&["--log-bodies"]);
    let upper = KEY.to_ascii_uppercase();
    let body = json!({"model": upper, "messages": [{"role": "user", "content": "hi"}]});
    let (status, answer) = post(&s, &body, &[]);
    assert_eq!(status, 400, "{answer}");
    let encoded = KEY.replace('0', "%30").replace('a', "%61");
    let padded = format!("{}{KEY}", "x".repeat(30));
    let answers = crate::serve::rt().block_on(async {
        let c = reqwest::Client::new();
        let mut out = vec![answer];
        for r in [
            c.post(s.url(&format!("/v1/{encoded}"))),
            c.get(s.url(&format!("/v1/models/{encoded}"))),
            c.post(s.url("/v1/feedback"))
                .json(&json!({"request_id": "x", "score": 1, padded.as_str(): 1})),
        ] {
            let r = r.send().await.unwrap();
            out.push(format!("{} {}", r.status(), r.text().await.unwrap()));
        }
        out
    });
    let (code, log) = s.stop();
    assert_eq!(code, 0, "{log}");
    let tail = &KEY[9..];
    for text in answers.iter().chain([&log]) {
        assert!(!text.to_ascii_lowercase().contains(tail), "{text}");
        assert!(!text.contains(&encoded), "{text}");
        assert!(!text.contains(&KEY[9..30]), "{text}");
    }
}

/// `config show` shows no key: not one given where a setting goes, nor a
/// header that authenticates to an upstream.
#[test]
fn config_show_shows_no_key_and_no_credential_header() {
    let env = Env::three();
    let cfg = env.write(
        "config.toml",
        &format!(
            "[upstreams.local]\nbase_url = \"http://127.0.0.1:9/v1\"\n\
             headers = {{ \"X-Api-Key\" = \"provider-secret-7d1e9a\", \"X-Team\" = \"{KEY}\", \
             \"X-Title\" = \"search\" }}\n"
        ),
    );
    let out = env
        .cmd()
        .env("LLMROUTE_CONFIG", &cfg)
        .args(["config", "show"])
        .run();
    out.assert_code(0);
    assert!(!out.stdout.contains(KEY), "{}", out.stdout);
    assert!(!out.stdout.contains("provider-secret"), "{}", out.stdout);
    assert!(out.stdout.contains("search"), "{}", out.stdout);
}

/// A key typed where a flag's value goes is not quoted back.
#[test]
fn a_flag_given_the_key_does_not_quote_it() {
    let env = Env::three();
    for args in [
        vec!["--dry-run", "-p", KEY],
        vec!["--timeout", KEY],
        vec!["keys", "create", "k", "--budget", KEY],
    ] {
        let out = env.cmd().args(&args).stdin(prompts(1)).run();
        out.assert_code(2);
        assert!(
            out.stderr.contains("[redacted]"),
            "{args:?}: {}",
            out.stderr
        );
        assert!(!out.stderr.contains(KEY), "{args:?}: {}", out.stderr);
    }
}
