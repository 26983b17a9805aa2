//! How requests and attempts fail, and what a success carries: the
//! classification of upstream answers (status, body) into [`FailureKind`]s,
//! the checks a chat completion must pass, `Retry-After`, and the stable
//! error types of a request's outcome. Pure functions over bytes.

use std::time::Duration;

use serde::Deserialize;

use crate::core::health::MAX_COOLDOWN;
use serde_json::Value;

/// Stable error types of a request's outcome (output lines, the store, the server).
pub mod error_type {
    pub const INVALID_INPUT: &str = "invalid_input";
    pub const ALL_MODELS_FAILED: &str = "all_models_failed";
    /// Every model left was rate limited by its upstream: tried until
    /// `--max-attempts`, or paused longer than the request may wait.
    pub const RATE_LIMITED: &str = "rate_limited";
    pub const NO_ELIGIBLE_MODEL: &str = "no_eligible_model";
    pub const BAD_REQUEST: &str = "bad_request";
    pub const AUTH: &str = "auth";
    pub const PAYMENT_REQUIRED: &str = "payment_required";
    pub const INTERRUPTED: &str = "interrupted";
    pub const BUDGET_EXCEEDED: &str = "budget_exceeded";
    /// A client key's own budget refused the request.
    pub const KEY_BUDGET_EXCEEDED: &str = "key_budget_exceeded";
    pub const INTERNAL: &str = "internal_error";
}

/// The message of an `internal_error`: llmroute, not the request, failed.
pub const INTERNAL_MESSAGE: &str =
    "llmroute failed on this line (an internal error; please report it)";

/// How an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// No connection, or it broke before a whole response arrived.
    Connect,
    /// `--timeout` passed, or HTTP 408.
    Timeout,
    /// HTTP 429.
    RateLimited,
    /// HTTP 503.
    Unavailable,
    /// Any other 5xx.
    Server,
    /// HTTP 400 saying the prompt does not fit the model's context window.
    ContextLength,
    /// Any other 400.
    BadRequest,
    /// HTTP 401: the API refused the key. (A 403 is the request's problem,
    /// [`FailureKind::Client`]: OpenRouter answers 403 to input its
    /// moderation flagged, which another model would refuse too.)
    Auth,
    /// HTTP 402: out of credits.
    Payment,
    /// HTTP 404, or a 400 saying the model does not exist or is not
    /// served: another model may take the request.
    NotFound,
    /// Any other 4xx.
    Client,
    /// A 2xx whose body is not a chat completion.
    InvalidResponse,
    /// A 2xx carrying an `error` object (a provider failed mid-generation).
    UpstreamError,
    /// The body was larger than the client's cap.
    TooLarge,
    /// The run ended before the answer came (after Ctrl-C and its grace period).
    Interrupted,
    /// Cancelled: a hedge of the same request answered first.
    Cancelled,
    /// Not sent: a named upstream is at a limit llmroute keeps for it (its
    /// `concurrency`, `rpm` or `tpm`). No attempt: the request tries its
    /// other candidates meanwhile, or waits.
    AtLimit,
    /// HTTP 401 from a named upstream: it refused the key it was given (or
    /// wants one): the request goes on to another candidate, and nothing
    /// else stops, as the default API's refusal stops a run. It counts
    /// against the model like a 500, so that its circuit opens.
    UpstreamAuth,
}

impl FailureKind {
    pub const ALL: [FailureKind; 18] = [
        FailureKind::Connect,
        FailureKind::Timeout,
        FailureKind::RateLimited,
        FailureKind::Unavailable,
        FailureKind::Server,
        FailureKind::ContextLength,
        FailureKind::BadRequest,
        FailureKind::Auth,
        FailureKind::Payment,
        FailureKind::NotFound,
        FailureKind::Client,
        FailureKind::InvalidResponse,
        FailureKind::UpstreamError,
        FailureKind::TooLarge,
        FailureKind::Interrupted,
        FailureKind::Cancelled,
        FailureKind::AtLimit,
        FailureKind::UpstreamAuth,
    ];

    /// The stable name used in output lines and the store.
    pub fn name(self) -> &'static str {
        match self {
            FailureKind::Connect => "connect",
            FailureKind::Timeout => "timeout",
            FailureKind::RateLimited => "rate_limited",
            FailureKind::Unavailable => "unavailable",
            FailureKind::Server => "server_error",
            FailureKind::ContextLength => "context_length",
            FailureKind::BadRequest => "bad_request",
            FailureKind::Auth => "auth",
            FailureKind::Payment => "payment_required",
            FailureKind::NotFound => "not_found",
            FailureKind::Client => "client_error",
            FailureKind::InvalidResponse => "invalid_response",
            FailureKind::UpstreamError => "upstream_error",
            FailureKind::TooLarge => "too_large",
            FailureKind::Interrupted => "interrupted",
            FailureKind::Cancelled => "cancelled",
            FailureKind::AtLimit => "at_limit",
            FailureKind::UpstreamAuth => "upstream_auth",
        }
    }

    /// Whether the request may succeed on another model (after a 402, a
    /// cheaper one).
    pub fn try_elsewhere(self) -> bool {
        !matches!(
            self,
            FailureKind::BadRequest
                | FailureKind::Client
                | FailureKind::Auth
                | FailureKind::Interrupted
        )
    }

    /// Whether this failure says the model itself is unwell (down, slow,
    /// broken, or gone), as opposed to the request, the account or a rate
    /// limit, which pause a model without counting against it.
    pub fn counts_against_model(self) -> bool {
        matches!(
            self,
            FailureKind::Connect
                | FailureKind::Timeout
                | FailureKind::Server
                | FailureKind::InvalidResponse
                | FailureKind::UpstreamError
                | FailureKind::TooLarge
                | FailureKind::NotFound
                | FailureKind::UpstreamAuth
        )
    }

    /// Whether the attempt was sent and may have been billed though it
    /// failed: the answer was cut off, or came back broken.
    pub fn may_be_billed(self) -> bool {
        matches!(
            self,
            FailureKind::Timeout
                | FailureKind::InvalidResponse
                | FailureKind::UpstreamError
                | FailureKind::TooLarge
                | FailureKind::Interrupted
                | FailureKind::Cancelled
        )
    }

    /// The kind a stable name stands for.
    pub fn from_name(name: &str) -> Option<FailureKind> {
        FailureKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Whether this failure stops the whole run: the API refused the key.
    /// (A 402 says the credit left does not cover one request on one
    /// model: it fails that attempt, not the run.)
    pub fn fatal(self) -> bool {
        matches!(self, FailureKind::Auth)
    }
}

/// What an attempt says of its model's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthSignal {
    /// Its latency is a sample of the model's: an answer, or an attempt
    /// that ran out of time (so a model that hangs looks as slow as it is).
    pub latency: Option<()>,
    /// It counts as a try of the model: `Some(true)` when it failed for the
    /// model's sake, `Some(false)` for an answer.
    pub failed: Option<bool>,
}

/// What an attempt that answered (`ok`) or failed as `error_type` (a
/// [`FailureKind::name`]) says of its model.
pub fn health_signal(ok: bool, error_type: Option<&str>) -> HealthSignal {
    if ok {
        return HealthSignal {
            latency: Some(()),
            failed: Some(false),
        };
    }
    let kind = error_type.and_then(FailureKind::from_name);
    HealthSignal {
        latency: (kind == Some(FailureKind::Timeout)).then_some(()),
        failed: kind.filter(|k| k.counts_against_model()).map(|_| true),
    }
}

/// A failed attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub kind: FailureKind,
    pub status: Option<u16>,
    pub message: String,
    /// How long the server asked us to wait (429/503 only), capped.
    pub retry_after: Option<Duration>,
}

/// Token use as the server reported it. A count or a cost below zero (or
/// a cost not finite) is none: taken as is, it would give a budget back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
pub struct Usage {
    #[serde(default, deserialize_with = "not_below_zero")]
    pub prompt_tokens: Option<i64>,
    #[serde(default, deserialize_with = "not_below_zero")]
    pub completion_tokens: Option<i64>,
    #[serde(default, deserialize_with = "a_cost")]
    pub cost: Option<f64>,
}

fn not_below_zero<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(Option::<i64>::deserialize(d)?.filter(|n| *n >= 0))
}

fn a_cost<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.filter(|c| c.is_finite() && *c >= 0.0))
}

/// A successful attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct Success {
    pub status: u16,
    /// The response body as compact JSON on one line.
    pub body: String,
    pub content: Option<String>,
    pub usage: Usage,
}

#[derive(Deserialize)]
struct WireCompletion {
    #[serde(default)]
    choices: Option<Vec<WireChoice>>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct WireChoice {
    #[serde(default)]
    message: Option<WireMessage>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct WireMessage {
    #[serde(default)]
    content: Option<Value>,
}

/// Reads `Retry-After`: delay-seconds or an HTTP date, capped at [`MAX_COOLDOWN`].
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    let d = if let Ok(secs) = v.parse::<f64>() {
        if !secs.is_finite() || secs < 0.0 {
            return None;
        }
        Duration::from_secs_f64(secs.min(MAX_COOLDOWN.as_secs_f64()))
    } else {
        let when = httpdate::parse_http_date(v).ok()?;
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO)
    };
    Some(d.min(MAX_COOLDOWN))
}

/// The `message` of an error object, else the whole object as JSON.
fn error_object_message(err: &Value) -> String {
    err.get("message")
        .and_then(Value::as_str)
        .map_or_else(|| err.to_string(), str::to_string)
}

/// The `error.message` of an OpenRouter/OpenAI error body, or the
/// top-level `message` of a body that is itself the error object (vLLM's
/// `{"object":"error","message":...}`), if there is one.
fn error_message(bytes: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(bytes).ok()?;
    match v.get("error") {
        Some(err) => Some(error_object_message(err)),
        None => v.get("message")?.as_str().map(str::to_string),
    }
}

/// The first 200 bytes of `bytes` on one line, for messages.
pub fn snippet(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]);
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    one_line.trim().to_string()
}

fn is_context_length_error(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    (m.contains("context")
        && (m.contains("length") || m.contains("window") || m.contains("too long")))
        || m.contains("maximum context")
        || m.contains("too many tokens")
        || m.contains("prompt is too long")
}

/// Whether a 400's message says the model does not exist or is not
/// served: another model may take the request. Besides OpenRouter's and
/// OpenAI's words, LiteLLM's proxy says `Invalid model name passed in
/// model=...` of a model it does not route.
fn is_model_not_found(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    let about_model = m.contains("model") || m.contains("endpoint");
    about_model
        && (m.contains("not a valid model")
            || m.contains("invalid model name")
            || m.contains("not found")
            || m.contains("does not exist")
            || m.contains("no such model")
            || m.contains("unknown model")
            || m.contains("not available")
            || m.contains("unavailable")
            || m.contains("no endpoints")
            || m.contains("not supported"))
}

/// Classifies a non-2xx answer.
pub fn classify_status(status: u16, retry_after: Option<Duration>, bytes: &[u8]) -> Failure {
    let detail = error_message(bytes).unwrap_or_else(|| snippet(bytes));
    let kind = match status {
        400 if is_context_length_error(&detail) => FailureKind::ContextLength,
        400 if is_model_not_found(&detail) => FailureKind::NotFound,
        400 => FailureKind::BadRequest,
        401 => FailureKind::Auth,
        402 => FailureKind::Payment,
        404 => FailureKind::NotFound,
        408 => FailureKind::Timeout,
        429 => FailureKind::RateLimited,
        503 => FailureKind::Unavailable,
        500..=599 => FailureKind::Server,
        _ => FailureKind::Client,
    };
    let retry_after = match kind {
        FailureKind::RateLimited | FailureKind::Unavailable => retry_after,
        _ => None,
    };
    let message = if detail.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {detail}")
    };
    Failure {
        kind,
        status: Some(status),
        message,
        retry_after,
    }
}
/// Checks a 2xx body is a chat completion and pulls out what the output needs.
pub fn parse_completion(status: u16, bytes: &[u8]) -> Result<Success, Failure> {
    let invalid = |kind, message: String| {
        Err(Failure {
            kind,
            status: Some(status),
            message,
            retry_after: None,
        })
    };
    // Half an emoji (a lone surrogate escape) in a paid answer is mended,
    // not taken for a failure that another model would be paid for.
    let (mut wire, mended): (WireCompletion, _) = match serde_json::from_slice(bytes) {
        Ok(w) => (w, None),
        Err(e) => match crate::core::surrogates::mended(bytes)
            .and_then(|m| Some((serde_json::from_slice(&m).ok()?, m)))
        {
            Some((w, m)) => (w, Some(m)),
            None => {
                return invalid(
                    FailureKind::InvalidResponse,
                    format!("response is not a JSON completion: {e}"),
                )
            }
        },
    };
    let bytes = mended.as_deref().unwrap_or(bytes);
    if let Some(err) = &wire.error {
        let msg = error_object_message(err);
        return invalid(
            FailureKind::UpstreamError,
            format!("the provider returned an error: {msg}"),
        );
    }
    let Some(choice) = wire.choices.as_mut().and_then(|c| c.first_mut()) else {
        return invalid(
            FailureKind::InvalidResponse,
            "response has no choices".into(),
        );
    };
    if let Some(err) = &choice.error {
        let msg = error_object_message(err);
        return invalid(
            FailureKind::UpstreamError,
            format!("the provider failed mid-generation: {msg}"),
        );
    }
    let Some(message) = choice.message.as_mut() else {
        return invalid(
            FailureKind::InvalidResponse,
            "response's first choice has no message".into(),
        );
    };
    let content = match message.content.take() {
        Some(Value::String(s)) => Some(s),
        _ => None,
    };
    let text = std::str::from_utf8(bytes).map_err(|_| Failure {
        kind: FailureKind::InvalidResponse,
        status: Some(status),
        message: "response is not UTF-8".into(),
        retry_after: None,
    })?;
    let text = text.trim();
    // One output line per input line: a body spread over lines is re-written compactly.
    // Byte searches (memchr): far quicker than a search for either char.
    let multiline = text.as_bytes().contains(&b'\n') || text.as_bytes().contains(&b'\r');
    let body = if multiline {
        serde_json::from_str::<Value>(text)
            .map(|v| v.to_string())
            .unwrap_or_else(|_| text.replace(['\n', '\r'], " "))
    } else {
        text.to_string()
    };
    Ok(Success {
        status,
        body,
        content,
        usage: wire.usage.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after(" 0.5 "), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("99999"), Some(MAX_COOLDOWN));
        assert_eq!(parse_retry_after("-3"), None);
        assert_eq!(parse_retry_after("soon"), None);
        let future =
            httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(30));
        let d = parse_retry_after(&future).unwrap();
        assert!(
            d > Duration::from_secs(25) && d <= Duration::from_secs(30),
            "{d:?}"
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn statuses_are_classified() {
        let ctx = br#"{"error":{"code":400,"message":"This endpoint's maximum context length is 8192 tokens"}}"#;
        assert_eq!(
            classify_status(400, None, ctx).kind,
            FailureKind::ContextLength
        );
        for ghost in [
            r#"{"error":{"code":400,"message":"acme/ghost is not a valid model ID"}}"#,
            r#"{"error":{"message":"The model `x/y` does not exist"}}"#,
            r#"{"error":{"message":"No endpoints found for acme/ghost."}}"#,
        ] {
            let f = classify_status(400, None, ghost.as_bytes());
            assert_eq!(f.kind, FailureKind::NotFound, "{ghost}");
            assert!(f.kind.try_elsewhere());
        }
        let bad = br#"{"error":{"code":400,"message":"temperature must be <= 2"}}"#;
        let f = classify_status(400, None, bad);
        assert_eq!(f.kind, FailureKind::BadRequest);
        assert_eq!(f.message, "HTTP 400: temperature must be <= 2");
        assert!(!f.kind.try_elsewhere());
        assert_eq!(classify_status(401, None, b"").kind, FailureKind::Auth);
        // Moderation: the line's fault, neither fatal nor worth another model.
        let flagged = classify_status(403, None, br#"{"error":{"message":"flagged"}}"#);
        assert_eq!(flagged.kind, FailureKind::Client);
        assert!(!flagged.kind.fatal() && !flagged.kind.try_elsewhere());
        assert!(!classify_status(402, None, b"").kind.fatal());
        let rl = classify_status(429, Some(Duration::from_secs(3)), b"slow down");
        assert_eq!(
            (rl.kind, rl.retry_after),
            (FailureKind::RateLimited, Some(Duration::from_secs(3)))
        );
        assert_eq!(
            classify_status(500, Some(Duration::from_secs(3)), b"").retry_after,
            None
        );
        assert_eq!(
            classify_status(503, None, b"").kind,
            FailureKind::Unavailable
        );
        assert_eq!(
            classify_status(502, None, b"<html>\nbad gateway</html>").message,
            "HTTP 502: <html> bad gateway</html>"
        );
        assert!(classify_status(502, None, b"").kind.try_elsewhere());
    }

    #[test]
    fn other_servers_unknown_model_answers_are_not_found() {
        // LiteLLM's proxy: a 400 whose message is its router's error as a Python dict.
        let litellm = br#"{"error":{"message":"{'error': '/chat/completions: Invalid model name passed in model=foo/bar. Call `/v1/models` to view available models for your key.'}","type":"None","param":"None","code":"400"}}"#;
        // Older LiteLLM: the bare text.
        let litellm_old = br#"{"error":{"message":"Invalid model name passed in model=foo","type":"invalid_request_error","param":"model","code":"400"}}"#;
        for body in [&litellm[..], &litellm_old[..]] {
            let f = classify_status(400, None, body);
            assert_eq!(f.kind, FailureKind::NotFound, "{}", f.message);
            assert!(f.kind.try_elsewhere());
        }
        let f = classify_status(400, None, litellm);
        assert!(
            f.message
                .starts_with("HTTP 400: {'error': '/chat/completions: Invalid model name"),
            "{}",
            f.message
        );
        // vLLM: a 404 whose error object is the body itself.
        let vllm = br#"{"object":"error","message":"The model `foo` does not exist.","type":"NotFoundError","param":null,"code":404}"#;
        let f = classify_status(404, None, vllm);
        assert_eq!(f.kind, FailureKind::NotFound);
        assert_eq!(f.message, "HTTP 404: The model `foo` does not exist.");
        // The same said with a 400 is no bad request either.
        assert_eq!(classify_status(400, None, vllm).kind, FailureKind::NotFound);
        // Ollama and OpenAI: 404s with an `error` object.
        let ollama = br#"{"error":{"message":"model \"foo\" not found, try pulling it first","type":"api_error","param":null,"code":null}}"#;
        let f = classify_status(404, None, ollama);
        assert_eq!(f.kind, FailureKind::NotFound);
        assert_eq!(
            f.message,
            "HTTP 404: model \"foo\" not found, try pulling it first"
        );
        let openai = br#"{"error":{"message":"The model `foo` does not exist or you do not have access to it.","type":"invalid_request_error","param":null,"code":"model_not_found"}}"#;
        assert_eq!(
            classify_status(404, None, openai).kind,
            FailureKind::NotFound
        );
        assert_eq!(
            classify_status(400, None, openai).kind,
            FailureKind::NotFound
        );
        // A top-level `message` that is not a string is shown as the body.
        let odd = br#"{"message":{"x":1}}"#;
        assert_eq!(
            classify_status(400, None, odd).message,
            r#"HTTP 400: {"message":{"x":1}}"#
        );
    }

    #[test]
    fn completions_are_validated() {
        let ok = br#"{"id":"g","choices":[{"message":{"role":"assistant","content":"hi"}}],"usage":{"prompt_tokens":3,"completion_tokens":1,"cost":0.0002}}"#;
        let s = parse_completion(200, ok).unwrap();
        assert_eq!(s.content.as_deref(), Some("hi"));
        assert_eq!(
            s.usage,
            Usage {
                prompt_tokens: Some(3),
                completion_tokens: Some(1),
                cost: Some(0.0002)
            }
        );
        assert_eq!(s.body.as_bytes(), &ok[..]);

        // A usage below zero is none: it cannot give a budget back.
        let negative = br#"{"choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":-100000,"completion_tokens":2,"cost":-3.0}}"#;
        assert_eq!(
            parse_completion(200, negative).unwrap().usage,
            Usage {
                prompt_tokens: None,
                completion_tokens: Some(2),
                cost: None
            }
        );

        let tool =
            br#"{"choices":[{"message":{"role":"assistant","content":null,"tool_calls":[]}}]}"#;
        assert_eq!(parse_completion(200, tool).unwrap().content, None);

        let pretty = b"\n\n{\n  \"choices\": [{\"message\": {\"content\": \"a\\nb\"}}]\n}\n";
        let s = parse_completion(200, pretty).unwrap();
        assert!(!s.body.contains('\n'));
        assert_eq!(s.content.as_deref(), Some("a\nb"));
        let carriage = b"{\r\"choices\":[{\"message\":{\"content\":\"c\"}}]}";
        let s = parse_completion(200, carriage).unwrap();
        assert_eq!(s.body, r#"{"choices":[{"message":{"content":"c"}}]}"#);

        let kind = |b: &[u8]| parse_completion(200, b).unwrap_err().kind;
        assert_eq!(kind(b"not json"), FailureKind::InvalidResponse);
        assert_eq!(kind(br#"{"choices":[]}"#), FailureKind::InvalidResponse);
        assert_eq!(
            kind(br#"{"choices":[{"index":0}]}"#),
            FailureKind::InvalidResponse
        );
        assert_eq!(
            kind(br#"{"choices":[{"message":{"content":"x"}}"#),
            FailureKind::InvalidResponse
        );
        assert_eq!(
            kind(br#"{"error":{"code":502,"message":"Provider returned error"}}"#),
            FailureKind::UpstreamError
        );
        assert_eq!(
            kind(br#"{"choices":[{"message":{"content":""},"error":{"message":"cut"},"finish_reason":"error"}]}"#),
            FailureKind::UpstreamError
        );
    }
}
