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
