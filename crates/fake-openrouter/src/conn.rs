//! Connections: accepting them, reading requests, dispatching and answering.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Notify;

use crate::body::write_error_body;
use crate::http::{
    bearer_matches, find, header_lines, parse_head, route, trim, write_head, Head, Route, MAX_HEAD,
};
use crate::state::Shared;
use crate::{Behavior, CatalogueBehavior, LoggedRequest};

/// Largest accepted request body.
const MAX_BODY: usize = 64 * 1024 * 1024;
/// Listen backlog, large enough for benchmarks opening many connections at once.
const BACKLOG: u32 = 1024;

/// A listener on 127.0.0.1:`port`.
pub(crate) fn bind(port: u16) -> io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)))?;
    socket.listen(BACKLOG)
}

/// Serves every connection on its own task until `shutdown`.
pub(crate) async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, shutdown: Arc<Notify>) {
    loop {
        tokio::select! {
            _ = shutdown.notified() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(Conn::new(stream, Arc::clone(&shared)).run());
                }
                // Typically out of file descriptors: back off briefly.
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            },
        }
    }
}

enum ReadError {
    /// The peer closed the connection or an I/O error occurred.
    Closed,
    Bad(&'static str),
    TooLarge,
}

impl From<io::Error> for ReadError {
    fn from(_: io::Error) -> Self {
        ReadError::Closed
    }
}

/// Where the body of the current request lives.
enum BodyAt {
    Buf(Range<usize>),
    Decoded,
}

/// What to do once a request has been read.
enum Action {
    Catalogue(CatalogueBehavior),
    Completion {
        behavior: Behavior,
        n: u64,
        request: Value,
    },
    Error {
        code: u16,
        message: &'static str,
    },
}

pub(crate) struct Conn {
    pub(crate) stream: TcpStream,
    pub(crate) shared: Arc<Shared>,
    /// Bytes read from the socket and not yet consumed.
    pub(crate) buf: Vec<u8>,
    /// Scratch space: decoded chunked bodies, then response bodies.
    pub(crate) body: Vec<u8>,
    /// The response as written to the socket.
    pub(crate) out: Vec<u8>,
}

impl Conn {
    fn new(stream: TcpStream, shared: Arc<Shared>) -> Conn {
        let _ = stream.set_nodelay(true);
        Conn {
            stream,
            shared,
            buf: Vec::with_capacity(8192),
            body: Vec::new(),
            out: Vec::with_capacity(1024),
        }
    }

    async fn run(mut self) {
        while let Ok(true) = self.serve_one().await {}
    }

    /// Reads more bytes into `buf`; returns 0 at end of stream.
    pub(crate) async fn fill(&mut self) -> io::Result<usize> {
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(8192);
        }
        self.stream.read_buf(&mut self.buf).await
    }

    /// Serves one request; `Ok(true)` when the connection should stay open.
    async fn serve_one(&mut self) -> io::Result<bool> {
        let head = loop {
            match parse_head(&self.buf) {
                Ok(Some(head)) => break head,
                Ok(None) if self.buf.len() > MAX_HEAD => {
                    self.respond_error(431, "request header fields too large", false)
                        .await?;
                    return Ok(false);
                }
                Ok(None) => {
                    if self.fill().await? == 0 {
                        return Ok(false);
                    }
                }
                Err(message) => {
                    self.respond_error(400, message, false).await?;
                    return Ok(false);
                }
            }
        };
        let (body_at, consumed) = match self.read_body(&head).await {
            Ok(v) => v,
            Err(ReadError::Closed) => return Ok(false),
            Err(ReadError::Bad(message)) => {
                self.respond_error(400, message, false).await?;
                return Ok(false);
            }
            Err(ReadError::TooLarge) => {
                self.respond_error(413, "request body too large", false)
                    .await?;
                return Ok(false);
            }
        };
        let action = self.dispatch(&head, &body_at);
        self.buf.drain(..consumed);
        self.execute(action, head.keep_alive).await
    }

    /// Reads the body of the request whose head is in `buf`; returns where the
    /// body is and how many bytes of `buf` the whole request occupies.
    async fn read_body(&mut self, head: &Head) -> Result<(BodyAt, usize), ReadError> {
        if head.chunked {
            if head.expect_continue && self.buf.len() == head.len {
                self.stream
                    .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                    .await?;
            }
            self.body.clear();
            let consumed = self.read_chunked(head.len).await?;
            return Ok((BodyAt::Decoded, consumed));
        }
        let len = head.content_length.unwrap_or(0);
        if len > MAX_BODY {
            return Err(ReadError::TooLarge);
        }
        let end = head.len + len;
        if self.buf.len() < end {
            if head.expect_continue {
                self.stream
                    .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                    .await?;
            }
            self.buf.reserve(end - self.buf.len());
            while self.buf.len() < end {
                if self.fill().await? == 0 {
                    return Err(ReadError::Closed);
                }
            }
        }
        Ok((BodyAt::Buf(head.len..end), end))
    }

    /// Decodes a chunked body starting at `pos` into `self.body`; returns the
    /// offset just past the body (including trailers).
    async fn read_chunked(&mut self, mut pos: usize) -> Result<usize, ReadError> {
        loop {
            let Some(line_len) = find(&self.buf[pos..], b"\r\n") else {
                if self.buf.len() - pos > 1024 {
                    return Err(ReadError::Bad("malformed chunk size"));
                }
                if self.fill().await? == 0 {
                    return Err(ReadError::Closed);
                }
                continue;
            };
            let line = &self.buf[pos..pos + line_len];
            let size = line.split(|&b| b == b';').next().map(trim).unwrap_or(b"");
            let size = std::str::from_utf8(size)
                .ok()
                .and_then(|s| usize::from_str_radix(s, 16).ok())
                .ok_or(ReadError::Bad("malformed chunk size"))?;
            let data = pos + line_len + 2;
            if size == 0 {
                // Trailer section: lines until an empty one.
                pos = data;
                loop {
                    match find(&self.buf[pos..], b"\r\n") {
                        Some(0) => return Ok(pos + 2),
                        Some(n) => pos += n + 2,
                        None => {
                            if self.buf.len() - pos > MAX_HEAD {
                                return Err(ReadError::Bad("trailers too large"));
                            }
                            if self.fill().await? == 0 {
                                return Err(ReadError::Closed);
                            }
                        }
                    }
                }
            }
            if self.body.len() + size > MAX_BODY {
                return Err(ReadError::TooLarge);
            }
            let end = data + size + 2;
            if self.buf.len() < end {
                self.buf.reserve(end - self.buf.len());
                while self.buf.len() < end {
                    if self.fill().await? == 0 {
                        return Err(ReadError::Closed);
                    }
                }
            }
            if &self.buf[end - 2..end] != b"\r\n" {
                return Err(ReadError::Bad("malformed chunk"));
            }
            self.body.extend_from_slice(&self.buf[data..data + size]);
            pos = end;
        }
    }

    /// Logs the request and decides how to answer it.
    fn dispatch(&self, head: &Head, body_at: &BodyAt) -> Action {
        let buf = &self.buf;
        let body: &[u8] = match body_at {
            BodyAt::Buf(range) => &buf[range.clone()],
            BodyAt::Decoded => &self.body,
        };
        // The request line was validated as UTF-8 by `parse_head`.
        let method = std::str::from_utf8(&buf[head.method.clone()]).unwrap_or("");
        let target = std::str::from_utf8(&buf[head.target.clone()]).unwrap_or("");
        let route = route(method, target);
        let shared = &*self.shared;

        let parsed: Option<Value> = match route {
            Route::Completions => serde_json::from_slice(body).ok(),
            _ if shared.log_requests && !body.is_empty() => serde_json::from_slice(body).ok(),
            _ => None,
        };
        let model = parsed
            .as_ref()
            .and_then(|v| v.get("model"))
            .and_then(Value::as_str);
        let authorized = match &shared.api_key {
            None => true,
            Some(key) => head
                .authorization
                .as_ref()
                .is_some_and(|r| bearer_matches(&buf[r.clone()], key)),
        };
        let entry = shared.log_requests.then(|| LoggedRequest {
            method: method.to_owned(),
            path: target.to_owned(),
            headers: header_lines(&buf[head.headers.clone()])
                .map(|(n, v)| {
                    (
                        String::from_utf8_lossy(n).to_ascii_lowercase(),
                        String::from_utf8_lossy(v).into_owned(),
                    )
                })
                .collect(),
            body: body.to_vec(),
            model: model.map(str::to_owned),
            at: Instant::now(),
        });

        let mut state = shared.lock();
        if let Some(entry) = entry {
            state.log.push(entry);
        }
        if !authorized {
            return Action::Error {
                code: 401,
                message: "No auth credentials found",
            };
        }
        match route {
            Route::Models => Action::Catalogue(state.catalogue_behavior.clone()),
            Route::Completions => match (model, &parsed) {
                (Some(model), Some(_)) => {
                    let (behavior, n) = state.pick(model);
                    drop(state);
                    Action::Completion {
                        behavior,
                        n,
                        request: parsed.unwrap_or(Value::Null),
                    }
                }
                (None, Some(_)) => Action::Error {
                    code: 400,
                    message: "request body has no string \"model\"",
                },
                _ => Action::Error {
                    code: 400,
                    message: "request body is not valid JSON",
                },
            },
            Route::WrongMethod => Action::Error {
                code: 405,
                message: "method not allowed",
            },
            Route::NotFound => Action::Error {
                code: 404,
                message: "not found",
            },
        }
    }

    async fn execute(&mut self, action: Action, keep_alive: bool) -> io::Result<bool> {
        match action {
            Action::Error { code, message } => self.respond_error(code, message, keep_alive).await,
            Action::Catalogue(CatalogueBehavior::Models) => {
                self.body.clear();
                self.body.extend_from_slice(&self.shared.catalogue);
                self.respond(200, None, keep_alive).await
            }
            Action::Catalogue(CatalogueBehavior::Raw(raw)) => {
                self.body.clear();
                self.body.extend_from_slice(raw.as_bytes());
                self.respond(200, None, keep_alive).await
            }
            Action::Catalogue(CatalogueBehavior::Status(code)) => {
                self.body.clear();
                write_error_body(&mut self.body, code, &format!("fake error {code}"));
                self.respond(code, None, keep_alive).await
            }
            Action::Catalogue(CatalogueBehavior::Hang) => self.hang().await,
            Action::Completion {
                behavior,
                n,
                request,
            } => self.complete(behavior, n, &request, keep_alive).await,
        }
    }
    /// Sends `self.body` with `code` and at most one extra header.
    pub(crate) async fn respond(
        &mut self,
        code: u16,
        header: Option<(&str, &str)>,
        keep_alive: bool,
    ) -> io::Result<bool> {
        self.out.clear();
        let bodyless = code == 204 || code == 304 || (100..200).contains(&code);
        let len = if bodyless {
            None
        } else {
            Some(self.body.len())
        };
        write_head(&mut self.out, code, len, header, !keep_alive);
        if !bodyless {
            self.out.extend_from_slice(&self.body);
        }
        self.stream.write_all(&self.out).await?;
        self.finish(keep_alive).await
    }

    async fn respond_error(
        &mut self,
        code: u16,
        message: &str,
        keep_alive: bool,
    ) -> io::Result<bool> {
        self.body.clear();
        write_error_body(&mut self.body, code, message);
        self.respond(code, None, keep_alive).await
    }

    pub(crate) async fn finish(&mut self, keep_alive: bool) -> io::Result<bool> {
        if !keep_alive {
            let _ = self.stream.shutdown().await;
        }
        Ok(keep_alive)
    }

    /// Never answers: discards whatever the client sends until it closes.
    pub(crate) async fn hang(&mut self) -> io::Result<bool> {
        loop {
            self.buf.clear();
            match self.fill().await {
                Ok(0) | Err(_) => return Ok(false),
                Ok(_) => {}
            }
        }
    }
}

/// Sleeps `d`, without yielding when it is zero.
pub(crate) async fn sleep(d: Duration) {
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
}
