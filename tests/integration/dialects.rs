//! Other OpenAI-compatible servers' "no such model" answers: LiteLLM's
//! proxy, vLLM, Ollama and OpenAI each say it in their own way (a 400 or a
//! 404, their own words). Whichever says it, the model is unknown for that
//! request: the line moves on to the next candidate and the fallback, as
//! for OpenRouter's own `is not a valid model ID`.

use fake_openrouter::Dialect;

use crate::util::*;

const GHOST: &str = "acme/ghost";
const GOOD: &str = "good/model";

/// A server that serves `good/model` and answers `acme/ghost` as `dialect`'s
/// server answers a model it does not serve.
fn server_of(dialect: Dialect) -> Env {
    let env = Env::new(vec![ModelSpec::new(GOOD)]);
    env.server
        .set_default(GHOST, Behavior::unknown_model(dialect));
    env
}

/// What `dialect`'s server says of the unknown model: its status, and the
/// message of its error body.
fn said(dialect: Dialect) -> (u16, String) {
    let (status, body) = dialect.unknown_model(GHOST);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let message = v["error"]["message"].as_str().or(v["message"].as_str());
    (status, message.unwrap().to_string())
}

/// A line pinned to the unknown model, and one routed to it as the only
/// candidate, both with `--fallback good/model`: both answered by the
/// fallback after one attempt each on the unknown model, which failed as
/// `not_found` with the server's own words, exit 0.
fn unknown_model_falls_back(dialect: Dialect) {
    let env = server_of(dialect);
    let pinned = format!("{{\"id\":\"pinned\",\"model\":\"{GHOST}\",\"prompt\":\"p1\"}}\n");
    let out = env.cmd().args(["--fallback", GOOD]).stdin(pinned).run();
    out.assert_code(0);
    let routed = env
        .cmd()
        .args(["--models", GHOST, "--fallback", GOOD, "--no-cache"])
        .stdin("{\"id\":\"routed\",\"prompt\":\"p2\"}\n")
        .run();
    routed.assert_code(0);
    let (status, message) = said(dialect);
    for line in out.lines().iter().chain(&routed.lines()) {
        assert_eq!(line["model"], GOOD, "{dialect:?}: {line}");
        assert_eq!(answered_by(line), GOOD, "{dialect:?}: {line}");
        assert!(line["error"].is_null(), "{dialect:?}: {line}");
        let ghost = &line["attempts"][0];
        assert_eq!(ghost["model"], GHOST, "{dialect:?}: {line}");
        assert_eq!(ghost["status"], status, "{dialect:?}: {line}");
        assert_eq!(
            ghost["error"],
            format!("HTTP {status}: {message}"),
            "{dialect:?}: {line}"
        );
    }
    assert_eq!(env.server.count_for(GHOST), 2, "{dialect:?}");
    let kinds: Vec<String> = env
        .sql()
        .prepare("SELECT error_type FROM attempts WHERE model = 'acme/ghost'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(kinds, ["not_found", "not_found"], "{dialect:?}");
}

#[test]
fn litellm_s_invalid_model_name_falls_back() {
    unknown_model_falls_back(Dialect::LiteLlm);
}

#[test]
fn vllm_s_model_that_does_not_exist_falls_back() {
    unknown_model_falls_back(Dialect::Vllm);
}

#[test]
fn ollama_s_model_not_found_falls_back() {
    unknown_model_falls_back(Dialect::Ollama);
}

#[test]
fn openai_s_model_not_found_falls_back() {
    unknown_model_falls_back(Dialect::OpenAi);
}
