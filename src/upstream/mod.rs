//! The HTTP client for an OpenRouter-compatible API: `POST /chat/completions`
//! and `GET /models`.
//!
//! Every failure is classified ([`FailureKind`]) so the attempt policy can
//! decide whether another model may succeed. Messages never contain the API key:
//! it lives only in a header value marked sensitive.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};

use crate::core::failure::{Failure, FailureKind, Success};
use crate::engine::ports::Opened;

mod answer;
mod plain;
mod secrets;

pub use secrets::Secrets;

/// Largest response body accepted; a larger one fails the attempt.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Sent as `HTTP-Referer`, which OpenRouter uses to attribute traffic to an app.
pub const REFERER: &str = "https://github.com/llmroute/llmroute";
/// Sent as `X-Title`.
pub const TITLE: &str = "llmroute";
/// How long a connection to the API may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an idle connection to the API is kept.
const POOL_IDLE: Duration = Duration::from_secs(90);
/// Sent as `User-Agent`.
const USER_AGENT: &str = concat!("llmroute/", env!("CARGO_PKG_VERSION"));

/// Whether the client needs the trusted root certificates, whose loading
/// is most of its set-up: an `https` API does; a plain-`http` one (a local
/// gateway) does not, unless a proxy is configured (it may speak TLS).
fn needs_tls_roots(scheme: &str, env: impl Fn(&str) -> Option<std::ffi::OsString>) -> bool {
    const PROXIES: [&str; 6] = [
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
    ];
    scheme != "http"
        || PROXIES
            .iter()
            .any(|p| env(p).is_some_and(|v| !v.is_empty()))
}

/// The identity of the API at `base_url`, as cache keys hold it: the URL
/// parsed (scheme and host in lower case, a default port dropped) without
/// trailing slashes, so `https://OpenRouter.ai:443/api/v1/` and
/// `https://openrouter.ai/api/v1` are one upstream. A URL that does not
/// parse is kept as written, less its trailing slashes. A user and
/// password in the URL are left out: the identity is kept in the store,
/// Redis and reports, where no credential may go.
pub fn identity(base_url: &str) -> String {
    let base = base_url.trim();
    match reqwest::Url::parse(base) {
        Ok(mut url) => {
            // Nor its query, which may hold a credential.
            let _ = url.set_password(None);
            let _ = url.set_username("");
            url.set_query(None);
            url.set_fragment(None);
            url.as_str().trim_end_matches('/').to_string()
        }
        Err(_) => base.trim_end_matches('/').to_string(),
    }
}

/// The API client. Cheap to share behind an `Arc`; keeps connections alive.
pub struct Client {
    http: reqwest::Client,
    /// For a plain-`http` API with no proxy: chat requests go this way.
    plain: Option<plain::Plain>,
    /// Parsed once: a request then costs a clone, not a parse of the URL.
    chat_url: reqwest::Url,
    models_url: reqwest::Url,
    /// The key and the base URL's credentials, kept only to blank them out
    /// of what a server sends back (an API may echo them in an error body).
    secrets: Secrets,
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
        Client::with_headers(base_url, api_key, pool, &std::collections::BTreeMap::new())
    }

    /// [`Client::new`], with `extra` headers sent with every request.
    pub fn with_headers(
        base_url: &str,
        api_key: Option<&str>,
        pool: usize,
        extra: &std::collections::BTreeMap<String, String>,
    ) -> Result<Client, String> {
        let base = base_url.trim_end_matches('/');
        let url = crate::core::urls::check_base(base)?;
        let mut headers = HeaderMap::new();
        if let Some(key) = api_key {
            let mut v = HeaderValue::from_str(&format!("Bearer {}", key.trim())).map_err(|_| {
                "the API key contains characters not allowed in an HTTP header".to_string()
            })?;
            v.set_sensitive(true);
            headers.insert(AUTHORIZATION, v);
        }
        headers.insert("HTTP-Referer", HeaderValue::from_static(REFERER));
        headers.insert("X-Title", HeaderValue::from_static(TITLE));
        for (k, v) in extra {
            let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| format!("{k:?} is not a header name"))?;
            let value = HeaderValue::from_str(v.trim())
                .map_err(|_| format!("the header {k} has a value not allowed in HTTP"))?;
            headers.insert(name, value);
        }
        let roots = needs_tls_roots(url.scheme(), |name| std::env::var_os(name));
        // What a chat request sends when it goes through hyper-util's client.
        let http_headers = headers.clone();
        let http = reqwest::Client::builder()
            .tls_built_in_root_certs(roots)
            .default_headers(headers)
            .user_agent(USER_AGENT)
            .pool_max_idle_per_host(pool.max(1))
            .pool_idle_timeout(POOL_IDLE)
            .tcp_nodelay(true)
            .connect_timeout(CONNECT_TIMEOUT)
            // llmroute makes its own retries and fallbacks, and the API does not
            // redirect: without these layers a request costs less to send.
            .retry(reqwest::retry::never())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        // The path goes after the base's, before its query (Azure's
        // `api-version`, say).
        let endpoint = |path: &str| -> Result<reqwest::Url, String> {
            let mut endpoint = url.clone();
            let joined = format!("{}/{path}", url.path().trim_end_matches('/'));
            endpoint.set_path(&joined);
            Ok(endpoint)
        };
        let chat_url = endpoint("chat/completions")?;
        // The URL as parsed (a host in ASCII, as written or punycode). A
        // user and password in it become reqwest's Basic authorisation.
        let credentials = !url.username().is_empty() || url.password().is_some();
        let plain = match roots || credentials {
            true => None,
            false => {
                let mut sent = http_headers;
                sent.insert(
                    reqwest::header::USER_AGENT,
                    HeaderValue::from_static(USER_AGENT),
                );
                Some(plain::Plain::new(chat_url.as_str(), sent, pool)?)
            }
        };
        Ok(Client {
            http,
            plain,
            chat_url,
            models_url: endpoint("models")?,
            secrets: Secrets::new(api_key, &url),
        })
    }

    /// What it blanks out of what comes back.
    pub fn secrets(&self) -> &Secrets {
        &self.secrets
    }

    /// Blanks out `others` too: another upstream's key, which a prompt
    /// sent to this one may hold and its answer echo.
    pub fn hide_too(&mut self, others: &Secrets) {
        self.secrets = self.secrets.with(others);
    }

    /// Replaces the key and the base URL's credentials, wherever they
    /// appear in `text`, with `[redacted]`.
    pub fn redact(&self, text: String) -> String {
        self.secrets.scrubbed(text)
    }

    /// A POST of `body` to the chat completions endpoint.
    fn chat(&self, body: Vec<u8>) -> reqwest::RequestBuilder {
        self.http
            .post(self.chat_url.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(body)
    }

    /// Sends one chat completion request (`body` is the JSON to post).
    pub async fn complete(&self, body: Vec<u8>, timeout: Duration) -> Result<Success, Failure> {
        match self.complete_raw(body, timeout).await {
            Ok(mut s) => {
                // An answer that echoes the key back is cached, written
                // out and served: without it, written plainly or escaped.
                let in_content = s
                    .content
                    .as_deref()
                    .is_some_and(|c| self.secrets.in_text(c));
                if in_content || self.secrets.in_text(&s.body) {
                    s.body = self.secrets.scrub_json(&s.body);
                    s.content = s.content.map(|c| self.redact(c));
                }
                Ok(s)
            }
            Err(mut f) => {
                f.message = self.redact(f.message);
                Err(f)
            }
        }
    }

    async fn complete_raw(&self, body: Vec<u8>, timeout: Duration) -> Result<Success, Failure> {
        let fut = async {
            match &self.plain {
                Some(p) => answer::whole(p.post(body, false).await?, plain::body_failure).await,
                None => {
                    let resp = self.chat(body).send().await.map_err(transport_failure)?;
                    answer::whole(resp.into(), transport_failure).await
                }
            }
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(whole) => whole?.completion(),
            Err(_) => Err(Failure {
                kind: FailureKind::Timeout,
                status: None,
                message: format!(
                    "no complete answer within {}",
                    crate::core::duration::format(timeout)
                ),
                retry_after: None,
            }),
        }
    }

    /// Posts a request that asks for a stream, and returns once the answer's
    /// head has come. A 2xx that is not a stream (an API that ignored
    /// `stream`) is read whole and replayed as one.
    pub async fn open(&self, body: Vec<u8>, timeout: Duration) -> Result<Opened, Failure> {
        let redact = self.secrets.clone();
        let head = async {
            match &self.plain {
                Some(p) => {
                    answer::opened(p.post(body, true).await?, plain::body_failure, redact).await
                }
                None => {
                    let resp = self
                        .chat(body)
                        .header(ACCEPT, "text/event-stream")
                        .send()
                        .await
                        .map_err(transport_failure)?;
                    answer::opened(resp.into(), transport_failure, redact).await
                }
            }
        };
        let opened = match tokio::time::timeout(timeout, head).await {
            Ok(r) => r,
            Err(_) => Err(Failure {
                kind: FailureKind::Timeout,
                status: None,
                message: format!(
                    "no answer within {}",
                    crate::core::duration::format(timeout)
                ),
                retry_after: None,
            }),
        };
        let mut opened = opened.map_err(|mut f| {
            f.message = self.redact(f.message);
            f
        })?;
        if !self.secrets.is_empty() {
            // A secret in an event (an upstream echoing it back), as far
            // as one event holds it whole.
            use futures_util::StreamExt;
            let secrets = self.secrets.clone();
            opened.events = Box::pin(opened.events.map(move |r| {
                r.map(|b| {
                    let clean = std::str::from_utf8(&b).ok().and_then(|t| secrets.scrub(t));
                    clean.map_or(b, bytes::Bytes::from)
                })
            }));
        }
        Ok(opened)
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
            let bytes = answer::read_capped(resp.into(), transport_failure)
                .await
                .map_err(|f| f.message)?;
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
                    crate::core::duration::format(timeout)
                ))
            })
    }
}

/// A readable description of a transport error, without the URL.
fn transport_failure(e: reqwest::Error) -> Failure {
    let kind = if e.is_timeout() {
        FailureKind::Timeout
    } else {
        FailureKind::Connect
    };
    let e = e.without_url();
    let message = answer::with_causes(e.to_string(), std::error::Error::source(&e), 5);
    Failure {
        kind,
        status: None,
        message,
        retry_after: None,
    }
}

impl crate::engine::ports::Upstream for Client {
    fn scrub(&self, text: &str) -> Option<String> {
        self.secrets.scrub(text)
    }

    fn scrub_shown(&self, text: &str) -> Option<String> {
        self.secrets.scrub_shown(text)
    }

    fn scrub_json(&self, body: &str) -> Option<String> {
        self.secrets.scrub_json_changed(body)
    }

    fn holds_secret(&self, text: &str) -> bool {
        self.secrets.holds_key(text)
    }

    fn complete(
        &self,
        body: Vec<u8>,
        timeout: Duration,
    ) -> crate::engine::ports::BoxFuture<'_, Result<Success, Failure>> {
        Box::pin(Client::complete(self, body, timeout))
    }

    fn open(
        &self,
        body: Vec<u8>,
        timeout: Duration,
    ) -> crate::engine::ports::BoxFuture<'_, Result<Opened, Failure>> {
        Box::pin(Client::open(self, body, timeout))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tls_or_a_proxy_needs_the_root_certificates() {
        let none = |_: &str| None;
        assert!(needs_tls_roots("https", none));
        assert!(!needs_tls_roots("http", none));
        for var in ["HTTPS_PROXY", "http_proxy", "ALL_PROXY"] {
            let set = |name: &str| (name == var).then(|| "http://proxy:3128".into());
            assert!(needs_tls_roots("http", set), "{var}");
        }
        let empty = |_: &str| Some(std::ffi::OsString::new());
        assert!(!needs_tls_roots("http", empty));
    }

    #[test]
    fn one_upstream_has_one_identity() {
        let id = identity("https://openrouter.ai/api/v1");
        assert_eq!(id, "https://openrouter.ai/api/v1");
        for same in [
            "https://openrouter.ai/api/v1/",
            "HTTPS://OpenRouter.AI:443/api/v1",
            " https://openrouter.ai/api/v1// ",
        ] {
            assert_eq!(identity(same), id, "{same}");
        }
        assert_ne!(identity("http://127.0.0.1:4000/v1"), id);
        assert_ne!(identity("https://openrouter.ai/api/v2"), id);
        assert_eq!(
            identity("http://user:SECRET@127.0.0.1:4000/v1"),
            "http://127.0.0.1:4000/v1"
        );
    }

    #[test]
    fn a_base_url_s_query_stays_on_every_endpoint_and_out_of_its_identity() {
        // Azure's `api-version`, say: the path goes before the query.
        let c = Client::new(
            "http://127.0.0.1:8000/openai/v1/?api-version=2025-01",
            None,
            1,
        )
        .unwrap();
        assert_eq!(
            c.chat_url.as_str(),
            "http://127.0.0.1:8000/openai/v1/chat/completions?api-version=2025-01"
        );
        assert_eq!(
            c.models_url.as_str(),
            "http://127.0.0.1:8000/openai/v1/models?api-version=2025-01"
        );
        // What the store keeps and reports show names no query, which may
        // hold a credential.
        assert_eq!(
            identity("http://127.0.0.1:8000/openai/v1?key=SECRET"),
            "http://127.0.0.1:8000/openai/v1"
        );
    }

    #[test]
    fn a_plain_http_api_with_a_host_outside_ascii_is_reached_by_its_parsed_name() {
        let c = Client::new("http://bücher.example:8000/v1", None, 1).unwrap();
        assert_eq!(
            c.chat_url.as_str(),
            "http://xn--bcher-kva.example:8000/v1/chat/completions"
        );
    }

    #[test]
    fn only_a_plain_http_api_without_credentials_skips_reqwest() {
        // (Unless the environment names a proxy: then nothing skips it.)
        let proxied = needs_tls_roots("http", |n| std::env::var_os(n));
        let plain = |base: &str| Client::new(base, None, 1).unwrap().plain.is_some();
        assert_eq!(plain("http://127.0.0.1:8000/v1"), !proxied);
        assert!(!plain("https://openrouter.ai/api/v1"));
        assert!(!plain("http://user:secret@127.0.0.1:8000/v1"));
        assert!(!plain("http://user@127.0.0.1:8000/v1"));
    }

    #[test]
    fn base_url_is_checked_and_key_is_hidden() {
        assert!(Client::new("ftp://x", None, 1).is_err());
        assert!(Client::new("not a url", None, 1).is_err());
        assert!(Client::new("http://127.0.0.1:1/api/v1/", Some("sk-secret"), 1).is_ok());
        assert!(Client::new("http://127.0.0.1:1", Some("bad\nkey"), 1)
            .unwrap_err()
            .contains("the API key"));
    }
}
