//! A plain-`http` API reached with no proxy (a local vLLM, Ollama or
//! gateway; a test's fake): chat requests go through hyper-util's client
//! straight. reqwest, which an `https` API or a proxy needs, puts a
//! redirect layer (two URL parses), a retry layer and a header merge in
//! the way of every request; a gateway in front of such an API pays that on
//! each request it forwards.

use std::time::Duration;

use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::Response;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};

use super::{redirected, retry_after, too_large, MAX_BODY_BYTES};
use crate::core::failure::{Failure, FailureKind};
use crate::engine::ports::Opened;

/// TCP keep-alive probes: after this long idle, and this often.
const KEEPALIVE: Duration = Duration::from_secs(15);
/// Unanswered probes before the connection is dropped.
const KEEPALIVE_RETRIES: u32 = 3;
/// How long data sent may go unacknowledged before the connection is dropped.
#[cfg(any(target_os = "android", target_os = "fuchsia", target_os = "linux"))]
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);

/// The client of one plain-`http` API, and what every chat request sends.
pub(super) struct Plain {
    client: hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>,
    chat_uri: hyper::Uri,
    /// The API key (marked sensitive), the attribution headers, the user
    /// agent and the body's type, as reqwest would send them.
    headers: HeaderMap,
}

/// What a whole answer is read into: its status, how long it asks to wait,
/// and its body.
pub(super) type Read = (u16, Option<Duration>, Vec<u8>);

impl Plain {
    pub(super) fn new(chat_url: &str, headers: HeaderMap, pool: usize) -> Result<Plain, String> {
        let chat_uri = chat_url
            .parse::<hyper::Uri>()
            .map_err(|e| format!("invalid base URL '{chat_url}': {e}"))?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(super::CONNECT_TIMEOUT));
        // As reqwest sets them: a pooled connection whose peer has gone
        // without a word (a paused container, an expired NAT entry) is
        // found out in the background, not by the next request's timeout.
        connector.set_keepalive(Some(KEEPALIVE));
        connector.set_keepalive_interval(Some(KEEPALIVE));
        connector.set_keepalive_retries(Some(KEEPALIVE_RETRIES));
        #[cfg(any(target_os = "android", target_os = "fuchsia", target_os = "linux"))]
        connector.set_tcp_user_timeout(Some(TCP_USER_TIMEOUT));
        let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(pool.max(1))
            .pool_idle_timeout(super::POOL_IDLE)
            .pool_timer(TokioTimer::new())
            .build(connector);
        let mut headers = headers;
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Ok(Plain {
            client,
            chat_uri,
            headers,
        })
    }

    /// Posts `body` and returns the answer's head. A stream asks for
    /// `text/event-stream` whatever the upstream's headers say; a whole
    /// answer sends their `Accept`, else `*/*` (as reqwest does).
    async fn post(&self, body: Vec<u8>, stream: bool) -> Result<Response<Incoming>, Failure> {
        let mut req = hyper::Request::new(Full::new(Bytes::from(body)));
        *req.method_mut() = hyper::Method::POST;
        *req.uri_mut() = self.chat_uri.clone();
        *req.headers_mut() = self.headers.clone();
        if stream {
            req.headers_mut()
                .insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
        } else {
            req.headers_mut()
                .entry(ACCEPT)
                .or_insert(HeaderValue::from_static("*/*"));
        }
        self.client.request(req).await.map_err(|e| {
            let timed_out = causes(&e).any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
            });
            let kind = if timed_out {
                FailureKind::Timeout
            } else {
                FailureKind::Connect
            };
            failure(kind, "error sending request", &e, None)
        })
    }

    /// A whole answer: its head, then its body up to [`MAX_BODY_BYTES`].
    pub(super) async fn complete(&self, body: Vec<u8>) -> Result<Read, Failure> {
        let resp = self.post(body, false).await?;
        let status = resp.status().as_u16();
        let retry_after = retry_after(resp.headers());
        if (300..400).contains(&status) {
            return Err(redirected(status, resp.headers().get(LOCATION)));
        }
        let bytes = read_capped(resp).await?;
        Ok((status, retry_after, bytes))
    }

    /// A streamed answer, as [`super::Client::open`] takes it: the events
    /// of a stream, or the whole body of anything else.
    pub(super) async fn open(
        &self,
        body: Vec<u8>,
        redact: Option<String>,
    ) -> Result<Result<Opened, Read>, Failure> {
        let resp = self.post(body, true).await?;
        let status = resp.status().as_u16();
        if (300..400).contains(&status) {
            return Err(redirected(status, resp.headers().get(LOCATION)));
        }
        let is_stream = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !(200..300).contains(&status) || !is_stream {
            let retry_after = retry_after(resp.headers());
            let bytes = read_capped(resp).await?;
            return Ok(Err((status, retry_after, bytes)));
        }
        let events = resp.into_body().into_data_stream().map(move |r| {
            r.map_err(|e| {
                let mut f = failure(FailureKind::Connect, "error reading the answer", &e, None);
                if let Some(k) = &redact {
                    f.message = f.message.replace(k.as_str(), "[redacted]");
                }
                f
            })
        });
        Ok(Ok(Opened {
            status,
            events: Box::pin(events),
        }))
    }
}

/// The body of `resp`, refused past [`MAX_BODY_BYTES`] (at once when its
/// length says so), its pieces joined once at the end.
async fn read_capped(resp: Response<Incoming>) -> Result<Vec<u8>, Failure> {
    let status = Some(resp.status().as_u16());
    let declared = resp
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large(status));
    }
    let mut body = resp.into_body();
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| failure(FailureKind::Connect, "error reading the answer", &e, status))?;
        if let Ok(data) = frame.into_data() {
            total += data.len();
            if total > MAX_BODY_BYTES {
                return Err(too_large(status));
            }
            chunks.push(data);
        }
    }
    Ok(match chunks.len() {
        1 => chunks.pop().map(Vec::from).unwrap_or_default(),
        _ => chunks.concat(),
    })
}

/// The errors that caused `e`, `e` first.
fn causes<'e>(
    e: &'e (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'e (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(e), |e| e.source())
}

/// A transport failure: `what`, then each cause once, as reqwest words it.
fn failure(
    kind: FailureKind,
    what: &str,
    e: &(dyn std::error::Error + 'static),
    status: Option<u16>,
) -> Failure {
    let mut message = what.to_string();
    for c in causes(e).take(6) {
        let c = c.to_string();
        if !message.contains(&c) {
            message.push_str(": ");
            message.push_str(&c);
        }
    }
    Failure {
        kind,
        status,
        message,
        retry_after: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read as _, Write as _};

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// A server on 127.0.0.1 that answers one request with `head`.
    fn answering(head: &'static str) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/chat/completions", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = s.write_all(head.as_bytes());
        });
        url
    }

    /// A server on 127.0.0.1 that answers one request with `head`, and
    /// hands on the request's head as it came.
    fn recording(head: &'static str) -> (String, std::sync::mpsc::Receiver<String>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/chat/completions", listener.local_addr().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap_or(0);
            let _ = tx.send(String::from_utf8_lossy(&buf[..n]).to_lowercase());
            let _ = s.write_all(head.as_bytes());
        });
        (url, rx)
    }

    #[test]
    fn a_whole_answer_keeps_the_upstream_s_accept_and_a_stream_asks_for_events() {
        const EMPTY: &str = "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n";
        let mut own = HeaderMap::new();
        own.insert(ACCEPT, HeaderValue::from_static("application/json"));
        let (url, sent) = recording(EMPTY);
        let plain = Plain::new(&url, own.clone(), 1).unwrap();
        let _ = runtime().block_on(plain.complete(b"{}".to_vec()));
        let head = sent.recv().unwrap();
        assert!(head.contains("accept: application/json\r\n"), "{head}");
        assert!(
            head.contains("content-type: application/json\r\n"),
            "{head}"
        );

        let (url, sent) = recording(EMPTY);
        let plain = Plain::new(&url, own, 1).unwrap();
        let _ = runtime().block_on(plain.open(b"{}".to_vec(), None));
        let head = sent.recv().unwrap();
        assert!(head.contains("accept: text/event-stream\r\n"), "{head}");
        assert_eq!(head.matches("\r\naccept:").count(), 1, "{head}");

        let (url, sent) = recording(EMPTY);
        let plain = Plain::new(&url, HeaderMap::new(), 1).unwrap();
        let _ = runtime().block_on(plain.complete(b"{}".to_vec()));
        assert!(sent.recv().unwrap().contains("accept: */*\r\n"));
    }

    #[test]
    fn a_refused_connection_is_a_connect_failure_that_names_its_cause() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let plain = Plain::new(&format!("http://127.0.0.1:{port}/x"), HeaderMap::new(), 1).unwrap();
        let f = runtime()
            .block_on(plain.complete(b"{}".to_vec()))
            .unwrap_err();
        assert_eq!(f.kind, FailureKind::Connect);
        assert!(
            f.message.starts_with("error sending request: "),
            "{}",
            f.message
        );
        assert!(
            f.message.to_lowercase().contains("refused"),
            "{}",
            f.message
        );
    }

    #[test]
    fn a_body_declared_past_the_cap_is_refused_unread() {
        let url = answering("HTTP/1.1 200 OK\r\nContent-Length: 999999999999\r\n\r\n{");
        let plain = Plain::new(&url, HeaderMap::new(), 1).unwrap();
        let f = runtime()
            .block_on(plain.complete(b"{}".to_vec()))
            .unwrap_err();
        assert_eq!(f.kind, FailureKind::TooLarge);
        assert_eq!(f.status, Some(200));
    }

    #[test]
    fn a_redirect_is_not_followed() {
        let url = answering("HTTP/1.1 308 Permanent Redirect\r\nLocation: http://elsewhere.example/\r\nContent-Length: 0\r\n\r\n");
        let plain = Plain::new(&url, HeaderMap::new(), 1).unwrap();
        let f = runtime()
            .block_on(plain.complete(b"{}".to_vec()))
            .unwrap_err();
        assert_eq!(f.status, Some(308));
        assert!(f.message.contains("elsewhere.example"), "{}", f.message);
    }
}
