//! The HTTP client for an OpenRouter-compatible API: `POST /chat/completions`
//! and `GET /models`.
//!
//! Every failure is classified ([`FailureKind`]) so the pipeline can decide
//! whether another model may succeed. Messages never contain the API key:
//! it lives only in a header value marked sensitive.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use serde::Deserialize;
use serde_json::Value;

/// OpenRouter's API.
pub const DEFAULT_BASE_URL: &str = "https://openrouter.ai/api/v1";
/// Largest response body accepted; a larger one fails the attempt.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Longest Retry-After honoured.
pub const MAX_COOLDOWN: Duration = Duration::from_secs(300);
/// Cooldown after a 429 or 503 that names no Retry-After; see [`backoff`].
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(1);

/// Cooldown after the `streak`-th rate limit in a row without Retry-After:
/// [`DEFAULT_COOLDOWN`] doubled for each earlier one, capped at
/// [`MAX_COOLDOWN`]. A storm of 429s on every candidate thus slows the run's
/// own pace (1 s, 2 s, 4 s, ...) instead of hammering the API.
pub fn backoff(streak: u32) -> Duration {
    let doublings = streak.saturating_sub(1).min(16);
    (DEFAULT_COOLDOWN * (1u32 << doublings)).min(MAX_COOLDOWN)
}
/// Sent as `HTTP-Referer`, which OpenRouter uses to attribute traffic to an app.
pub const REFERER: &str = "https://github.com/llmroute/llmroute";
/// Sent as `X-Title`.
pub const TITLE: &str = "llmroute";

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
    /// HTTP 401 or 403 from a bad key.
    Auth,
    /// HTTP 402: out of credits.
    Payment,
    /// HTTP 404: the model is unknown or no provider serves this request.
    NotFound,
    /// Any other 4xx.
    Client,
    /// A 2xx whose body is not a chat completion.
    InvalidResponse,
    /// A 2xx carrying an `error` object (a provider failed mid-generation).
    UpstreamError,
    /// The body was larger than [`MAX_BODY_BYTES`].
    TooLarge,
}

impl FailureKind {
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
        }
    }

    /// Whether the request may succeed on another model.
    pub fn try_elsewhere(self) -> bool {
        !matches!(
            self,
            FailureKind::BadRequest
                | FailureKind::Client
                | FailureKind::Auth
                | FailureKind::Payment
        )
    }

    /// Whether this failure stops the whole run (the key or the account is unusable).
    pub fn fatal(self) -> bool {
        matches!(self, FailureKind::Auth | FailureKind::Payment)
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

/// Token use as the server reported it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: Option<i64>,
    #[serde(default)]
    pub completion_tokens: Option<i64>,
    #[serde(default)]
    pub cost: Option<f64>,
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

/// The API client. Cheap to share behind an `Arc`; keeps connections alive.
pub struct Client {
    http: reqwest::Client,
    /// Parsed once: a request then costs a clone, not a parse of the URL.
    chat_url: reqwest::Url,
    models_url: reqwest::Url,
    /// The key, kept only to blank it out of messages built from what a
    /// server sent back (an API may echo it in an error body).
    redact: Option<String>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Deliberately leaves out the headers, which hold the key.
        f.debug_struct("Client")
            .field("chat_url", &self.chat_url.as_str())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// `api_key` is `None` only for runs that never call `/chat/completions`.
    pub fn new(base_url: &str, api_key: Option<&str>, pool: usize) -> Result<Client, String> {
        let base = base_url.trim_end_matches('/');
        let url =
            reqwest::Url::parse(base).map_err(|e| format!("invalid base URL '{base}': {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "invalid base URL '{base}': the scheme must be http or https"
            ));
        }
        let mut headers = HeaderMap::new();
        if let Some(key) = api_key {
            let mut v = HeaderValue::from_str(&format!("Bearer {}", key.trim())).map_err(|_| {
                "OPENROUTER_API_KEY contains characters not allowed in an HTTP header".to_string()
            })?;
            v.set_sensitive(true);
            headers.insert(AUTHORIZATION, v);
        }
        headers.insert("HTTP-Referer", HeaderValue::from_static(REFERER));
        headers.insert("X-Title", HeaderValue::from_static(TITLE));
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(concat!("llmroute/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(pool.max(1))
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(10))
            // llmroute makes its own retries and fallbacks, and the API does not
            // redirect: without these layers a request costs less to send.
            .retry(reqwest::retry::never())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let endpoint = |path: &str| {
            reqwest::Url::parse(&format!("{base}/{path}"))
                .map_err(|e| format!("invalid base URL '{base}': {e}"))
        };
        Ok(Client {
            http,
            chat_url: endpoint("chat/completions")?,
            models_url: endpoint("models")?,
            redact: api_key
                .map(|k| k.trim().to_string())
                .filter(|k| !k.is_empty()),
        })
    }

    /// Replaces the key, wherever it appears in `text`, with `[redacted]`.
    pub fn redact(&self, text: String) -> String {
        match &self.redact {
            Some(k) if text.contains(k.as_str()) => text.replace(k.as_str(), "[redacted]"),
            _ => text,
        }
    }

    /// Sends one chat completion request (`body` is the JSON to post).
    pub async fn complete(&self, body: Vec<u8>, timeout: Duration) -> Result<Success, Failure> {
        self.complete_raw(body, timeout).await.map_err(|mut f| {
            f.message = self.redact(f.message);
            f
        })
    }

    async fn complete_raw(&self, body: Vec<u8>, timeout: Duration) -> Result<Success, Failure> {
        let fut = async {
            let resp = self
                .http
                .post(self.chat_url.clone())
                .header(CONTENT_TYPE, "application/json")
                .body(body)
                .send()
                .await
                .map_err(transport_failure)?;
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            if (300..400).contains(&status) {
                return Err(redirected(status, resp.headers().get(LOCATION)));
            }
            let bytes = read_capped(resp).await?;
            Ok::<_, Failure>((status, retry_after, bytes))
        };
        let (status, retry_after, bytes) = match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(Failure {
                    kind: FailureKind::Timeout,
                    status: None,
                    message: format!(
                        "no complete answer within {}",
                        crate::duration::format(timeout)
                    ),
                    retry_after: None,
                })
            }
        };
        if (200..300).contains(&status) {
            parse_completion(status, &bytes)
        } else {
            Err(classify_status(status, retry_after, &bytes))
        }
    }

    /// Fetches the raw `/models` response.
    pub async fn fetch_models(&self, timeout: Duration) -> Result<Vec<u8>, String> {
        let fut = async {
            let resp = self
                .http
                .get(self.models_url.clone())
                .send()
                .await
                .map_err(|e| transport_failure(e).message)?;
            let status = resp.status();
            let bytes = read_capped(resp).await.map_err(|f| f.message)?;
            if !status.is_success() {
                return Err(format!("HTTP {}", status.as_u16()));
            }
            Ok(bytes)
        };
        tokio::time::timeout(timeout, fut)
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "no answer within {}",
                    crate::duration::format(timeout)
                ))
            })
    }
}

async fn read_capped(mut resp: reqwest::Response) -> Result<Vec<u8>, Failure> {
    let status = Some(resp.status().as_u16());
    let too_large = || Failure {
        kind: FailureKind::TooLarge,
        status,
        message: format!(
            "response body larger than {} MiB",
            MAX_BODY_BYTES / (1024 * 1024)
        ),
        retry_after: None,
    };
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_BODY_BYTES as u64)
    {
        return Err(too_large());
    }
    // The chunks are kept as they come and joined once at the end, into one
    // buffer of the final size: a growing buffer doubles its allocation on
    // the way. Four 50 MB bodies without Content-Length, cut off at the cap,
    // peaked at 150 MB that way and at 104 MB this way.
    let mut chunks = Vec::new();
    let mut total = 0usize;
    while let Some(chunk) = resp.chunk().await.map_err(|e| {
        let mut f = transport_failure(e);
        f.status = status;
        f
    })? {
        total += chunk.len();
        if total > MAX_BODY_BYTES {
            return Err(too_large());
        }
        chunks.push(chunk);
    }
    Ok(chunks.concat())
}

/// A readable description of a transport error, without the URL.
fn transport_failure(e: reqwest::Error) -> Failure {
    let kind = if e.is_timeout() {
        FailureKind::Timeout
    } else {
        FailureKind::Connect
    };
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        causes.push(s.to_string());
        source = s.source();
        if causes.len() > 4 {
            break;
        }
    }
    let mut message = e.without_url().to_string();
    for c in causes {
        if !message.contains(&c) {
            message.push_str(": ");
            message.push_str(&c);
        }
    }
    Failure {
        kind,
        status: None,
        message,
        retry_after: None,
    }
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

/// The `error.message` of an OpenRouter/OpenAI error body, if there is one.
fn error_message(bytes: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(bytes).ok()?;
    Some(error_object_message(v.get("error")?))
}

fn snippet(bytes: &[u8]) -> String {
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

/// Classifies a non-2xx answer.
pub fn classify_status(status: u16, retry_after: Option<Duration>, bytes: &[u8]) -> Failure {
    let detail = error_message(bytes).unwrap_or_else(|| snippet(bytes));
    let kind = match status {
        400 if is_context_length_error(&detail) => FailureKind::ContextLength,
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

/// A redirect, which llmroute does not follow: the API does not redirect,
/// so one means a wrong base URL, and following it could send the key on.
fn redirected(status: u16, location: Option<&HeaderValue>) -> Failure {
    // As sent, but on one line and short, like any text from the server.
    let to = location
        .map(|v| snippet(v.as_bytes()))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "nowhere given".into());
    Failure {
        kind: FailureKind::Client,
        status: Some(status),
        message: format!(
            "HTTP {status}: redirected to {to}; redirects are not followed (check the base URL)"
        ),
        retry_after: None,
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
    let wire: WireCompletion = match serde_json::from_slice(bytes) {
        Ok(w) => w,
        Err(e) => {
            return invalid(
                FailureKind::InvalidResponse,
                format!("response is not a JSON completion: {e}"),
            )
        }
    };
    if let Some(err) = &wire.error {
        let msg = error_object_message(err);
        return invalid(
            FailureKind::UpstreamError,
            format!("the provider returned an error: {msg}"),
        );
    }
    let Some(choice) = wire.choices.as_ref().and_then(|c| c.first()) else {
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
    let Some(message) = &choice.message else {
        return invalid(
            FailureKind::InvalidResponse,
            "response's first choice has no message".into(),
        );
    };
    let content = match &message.content {
        Some(Value::String(s)) => Some(s.clone()),
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
        let waits: Vec<u64> = (1..=4).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, vec![1, 2, 4, 8]);
        assert_eq!(backoff(0), DEFAULT_COOLDOWN);
        assert_eq!(backoff(9), Duration::from_secs(256));
        assert_eq!(backoff(10), MAX_COOLDOWN);
        assert_eq!(backoff(u32::MAX), MAX_COOLDOWN);
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
        let bad = br#"{"error":{"code":400,"message":"temperature must be <= 2"}}"#;
        let f = classify_status(400, None, bad);
        assert_eq!(f.kind, FailureKind::BadRequest);
        assert_eq!(f.message, "HTTP 400: temperature must be <= 2");
        assert!(!f.kind.try_elsewhere());
        assert_eq!(classify_status(401, None, b"").kind, FailureKind::Auth);
        assert!(classify_status(402, None, b"").kind.fatal());
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

    #[test]
    fn base_url_is_checked_and_key_is_hidden() {
        assert!(Client::new("ftp://x", None, 1).is_err());
        assert!(Client::new("not a url", None, 1).is_err());
        assert!(Client::new("http://127.0.0.1:1/api/v1/", Some("sk-secret"), 1).is_ok());
        assert!(Client::new("http://127.0.0.1:1", Some("bad\nkey"), 1)
            .unwrap_err()
            .contains("OPENROUTER_API_KEY"));
    }
}
