//! A plain-`http` API reached with no proxy (a local vLLM, Ollama or
//! gateway; a test's fake): chat requests go through hyper-util's client
//! straight. reqwest, which an `https` API or a proxy needs, puts a
//! redirect layer (two URL parses), a retry layer and a header merge in
//! the way of every request; a gateway in front of such an API pays that on
//! each request it forwards.

use crate::core::urls::without_password;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::Response;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, CONTENT_TYPE};

use super::answer::with_causes;
use crate::core::failure::{Failure, FailureKind};

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

impl Plain {
    pub(super) fn new(chat_url: &str, headers: HeaderMap, pool: usize) -> Result<Plain, String> {
        let chat_uri = chat_url
            .parse::<hyper::Uri>()
            .map_err(|e| format!("invalid base URL '{}': {e}", without_password(chat_url)))?;
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
    pub(super) async fn post(
        &self,
        body: Vec<u8>,
        stream: bool,
    ) -> Result<Response<Incoming>, Failure> {
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
            let timed_out =
                std::iter::successors(Some(&e as &dyn std::error::Error), |e| e.source()).any(
                    |c| {
                        c.downcast_ref::<std::io::Error>()
                            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
                    },
                );
            Failure {
                kind: if timed_out {
                    FailureKind::Timeout
                } else {
                    FailureKind::Connect
                },
                status: None,
                message: with_causes("error sending request".into(), Some(&e), CAUSES),
                retry_after: None,
            }
        })
    }
}

/// How many errors of a chain a message gives, the first one included.
const CAUSES: usize = 6;

/// A failure to read an answer's body (or a stream's next piece).
pub(super) fn body_failure(e: hyper::Error) -> Failure {
    Failure {
        kind: FailureKind::Connect,
        status: None,
        message: with_causes("error reading the answer".into(), Some(&e), CAUSES),
        retry_after: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ports::Opened;
    use crate::upstream::answer;
    use std::io::{Read as _, Write as _};

    /// A whole answer, as the client reads one.
    async fn complete(plain: &Plain) -> Result<crate::core::failure::Success, Failure> {
        let resp = plain.post(b"{}".to_vec(), false).await?;
        answer::whole(resp, body_failure).await?.completion()
    }

    /// A streamed answer, as the client opens one.
    async fn open(plain: &Plain) -> Result<Opened, Failure> {
        let resp = plain.post(b"{}".to_vec(), true).await?;
        answer::opened(resp, body_failure, crate::upstream::Secrets::default()).await
    }

    /// A server on 127.0.0.1 that answers one request with `head`.
    fn answering(head: &'static str) -> String {
        recording(head).0
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
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
        let _ = runtime().block_on(complete(&plain));
        let head = sent.recv().unwrap();
        assert!(head.contains("accept: application/json\r\n"), "{head}");
        assert!(
            head.contains("content-type: application/json\r\n"),
            "{head}"
        );

        let (url, sent) = recording(EMPTY);
        let plain = Plain::new(&url, own, 1).unwrap();
        let _ = runtime().block_on(open(&plain));
        let head = sent.recv().unwrap();
        assert!(head.contains("accept: text/event-stream\r\n"), "{head}");
        assert_eq!(head.matches("\r\naccept:").count(), 1, "{head}");

        let (url, sent) = recording(EMPTY);
        let plain = Plain::new(&url, HeaderMap::new(), 1).unwrap();
        let _ = runtime().block_on(complete(&plain));
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
        let f = runtime().block_on(complete(&plain)).unwrap_err();
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
        let f = runtime().block_on(complete(&plain)).unwrap_err();
        assert_eq!(f.kind, FailureKind::TooLarge);
        assert_eq!(f.status, Some(200));
    }

    #[test]
    fn a_redirect_is_not_followed() {
        let url = answering("HTTP/1.1 308 Permanent Redirect\r\nLocation: http://elsewhere.example/\r\nContent-Length: 0\r\n\r\n");
        let plain = Plain::new(&url, HeaderMap::new(), 1).unwrap();
        let f = runtime().block_on(complete(&plain)).unwrap_err();
        assert_eq!(f.status, Some(308));
        assert!(f.message.contains("elsewhere.example"), "{}", f.message);
    }
}
