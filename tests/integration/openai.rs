//! `llmroute serve` through the official `openai` Python package, the
//! client most applications use. `scripts/test` installs it in a virtual
//! environment (`target/test-venv`) and names its Python in
//! `LLMROUTE_TEST_PYTHON`.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::util::*;

/// The Python that has `openai`.
fn python() -> PathBuf {
    let p = match std::env::var_os("LLMROUTE_TEST_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-venv/bin/python"),
    };
    assert!(
        p.exists(),
        "{} is missing: run scripts/test, which installs the openai package",
        p.display()
    );
    p
}

#[test]
fn the_openai_client_routes_streams_lists_and_gets_typed_errors() {
    let env = Env::three();
    let s = env.serve_with(
        &["-p", "cost", "--models", "t/a,t/b,t/c"],
        &[("LLMROUTE_AUTH_TOKENS", "client-token")],
    );
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/openai_client.py");
    let out = Command::new(python())
        .arg(&script)
        .arg(s.url("/v1"))
        .arg("client-token")
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}\n{}", s.log());
    let v: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));

    assert_eq!(v["routed"]["content"], "[t/a] routed", "{v}");
    assert_eq!(v["routed"]["model"], "t/a");
    assert_eq!(v["pinned"], "[t/c] pinned");
    assert!(v["speed"].as_str().unwrap().ends_with("] speed"), "{v}");

    let st = &v["stream"];
    assert_eq!(st["joined"], st["whole"], "{st}");
    assert_eq!(st["whole"], "[t/a] stream me");
    assert!(
        st["chunks"].as_u64().unwrap() >= 3,
        "streamed in pieces: {st}"
    );
    assert!(st["usage_completion_tokens"].as_u64().is_some(), "{st}");

    let models: Vec<&str> = v["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    for id in ["t/a", "t/b", "t/c", "llmroute/auto", "llmroute/speed"] {
        assert!(models.contains(&id), "{id} in {models:?}");
    }

    let h = &v["headers"];
    assert_eq!(h["x-llmroute-model"], "t/a", "{h}");
    assert_eq!(h["x-llmroute-cached"], "false");
    assert_eq!(h["x-llmroute-attempts"], "1");
    assert!(h["x-llmroute-latency-ms"]
        .as_str()
        .unwrap()
        .parse::<f64>()
        .is_ok());
    assert!(h["x-request-id"].is_string());
    assert_eq!(v["raw_content"], "[t/a] raw");

    assert_eq!(v["errors"]["auth"]["type"], "AuthenticationError", "{v}");
    assert_eq!(v["errors"]["auth"]["status"], 401);
    assert_eq!(v["errors"]["bad"]["type"], "BadRequestError");
    assert_eq!(v["errors"]["bad"]["status"], 400);
    assert_eq!(v["errors"]["bad"]["code"], "invalid_input");
}
