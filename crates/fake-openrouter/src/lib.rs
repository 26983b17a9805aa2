//! A scriptable, OpenRouter-compatible HTTP/1.1 server bound to `127.0.0.1`.
//!
//! The server speaks a deliberately small subset of HTTP/1.1 written directly on
//! top of tokio TCP sockets, which gives full control over the bytes on the wire
//! (truncated bodies, resets, slow drips, hangs).
//!
//! Endpoints (any prefix is accepted, `/api/v1` is the canonical one):
//!
//! * `GET …/models` answers the catalogue built from the [`ModelSpec`]s, or
//!   whatever [`CatalogueBehavior`] is configured.
//! * `POST …/chat/completions` answers according to the model's scripted
//!   [`Behavior`]s, then its default behaviour.
//! * Anything else answers 404 (405 for a known path with the wrong method).
//!
//! HTTP details:
//!
//! * Request bodies are read with `Content-Length`; `Transfer-Encoding: chunked`
//!   request bodies are decoded as well (trailers are ignored).
//!   `Expect: 100-continue` is honoured.
//! * Connections are kept alive by default for HTTP/1.1 and closed for HTTP/1.0,
//!   following the `Connection` header when present. Pipelined requests are
//!   served in order.
//! * Every response carries `Content-Type: application/json` and a
//!   `Content-Length`, except streamed answers (below) and the fault
//!   behaviours that lie about it on purpose.
//! * When [`Config::api_key`] is set, every request (any path) must carry
//!   `Authorization: Bearer <key>`, otherwise it is answered with 401. Such
//!   requests are still logged but are not counted by [`FakeServer::count_for`].
//!
//! Streaming (OpenAI server-sent events):
//!
//! * A completion request whose body has `"stream": true` and meets a
//!   successful behaviour ([`Behavior::Ok`], [`Behavior::Stream`],
//!   [`Behavior::Tail`], a [`Behavior::Flaky`] that does not fail) is answered
//!   200 with `Content-Type: text/event-stream`, `Cache-Control: no-cache` and
//!   `Transfer-Encoding: chunked`, no `Content-Length`. Each event is one HTTP
//!   chunk, written and flushed on its own, so a client sees it as it is sent.
//! * The events, all `data: <json>\n\n` with the same `id` and `created`:
//!   content chunks `{"object":"chat.completion.chunk","model":…,"choices":
//!   [{"index":0,"delta":{"role":"assistant","content":…},"finish_reason":null}]}`
//!   (only the first carries `role`), then a finish chunk with `"delta":{}` and
//!   `"finish_reason":"stop"`, then, only when the body has
//!   `"stream_options":{"include_usage":true}`, a chunk with `"choices":[]` and
//!   the `usage` the unstreamed answer would have (with `cost` when the
//!   behaviour has one), then `data: [DONE]`, then the zero-length chunk. The
//!   connection then stays open like after any answer.
//! * The pieces, joined, are exactly the content of the unstreamed answer,
//!   `[<model>] <last message content>`, cut into words: each piece is one
//!   word with the whitespace after it (`"[m] "`, `"hello "`, `"world"`).
//!   [`Behavior::Ok`], [`Behavior::Flaky`] and [`Behavior::Tail`] wait their
//!   latency before the head, then send every event at once.
//! * [`Behavior::Stream`] paces them: its content is `pieces` words, the first
//!   `[<model>]`, the k-th `w<k>` (`"[m] w2 w3"` for 3 pieces), one word (with
//!   its following space) per chunk, the first after `first`, then one every
//!   `interval`; it can also cut the connection mid-stream.
//! * Every other behaviour answers a streaming request exactly as any other
//!   (an error status with its JSON body, a fault), so a client can fall back
//!   before the first chunk.
//! * While a stream waits (its latency, between chunks), the server reads the
//!   socket: a client that closes the connection (even only its sending
//!   half) is noticed at once, and the stream stops. Counters tell what
//!   became of streams: [`FakeServer::streams_started`],
//!   [`FakeServer::streams_completed`], [`FakeServer::streams_abandoned`],
//!   [`FakeServer::streams_cut`]; [`FakeServer::in_flight`] counts a stream
//!   until just before its `[DONE]`.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::io::{self, Write as _};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Notify;

mod stream;

/// Largest accepted request head (request line plus headers).
const MAX_HEAD: usize = 64 * 1024;
/// Largest accepted request body.
const MAX_BODY: usize = 64 * 1024 * 1024;
/// Listen backlog, large enough for benchmarks opening many connections at once.
const BACKLOG: u32 = 1024;

// ---------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------

/// Server configuration for [`FakeServer::start_with`].
#[derive(Clone, Debug)]
pub struct Config {
    /// Models listed by `GET /models`.
    pub models: Vec<ModelSpec>,
    /// Whether requests are recorded for [`FakeServer::requests`].
    pub log_requests: bool,
    /// When `Some`, a request whose `Authorization` is not `Bearer <key>` gets 401.
    pub api_key: Option<String>,
    /// Port to bind on 127.0.0.1; 0 picks an ephemeral port.
    pub port: u16,
    /// Worker threads of the server's tokio runtime (at least 1 is used).
    pub workers: usize,
}

impl Default for Config {
    /// No models, logging on, no API key, ephemeral port, one worker thread.
    fn default() -> Self {
        Config {
            models: Vec::new(),
            log_requests: true,
            api_key: None,
            port: 0,
            workers: 1,
        }
    }
}

/// One entry of the model catalogue served by `GET /models`.
#[derive(Clone, Debug)]
pub struct ModelSpec {
    pub id: String,
    /// USD per prompt token, as a string like OpenRouter's (`"0.0000015"`).
    pub prompt_price: String,
    /// USD per completion token, as a string.
    pub completion_price: String,
    pub context_length: Option<u64>,
    pub supported_parameters: Vec<String>,
    /// Served as `benchmarks.artificial_analysis.intelligence_index` when `Some`.
    pub intelligence_index: Option<f64>,
}

impl ModelSpec {
    /// Prices `"0.000001"` / `"0.000002"`, context 128000, parameters
    /// `max_tokens`, `temperature`, `tools`, `response_format`, no intelligence index.
    pub fn new(id: &str) -> Self {
        ModelSpec {
            id: id.to_owned(),
            prompt_price: "0.000001".to_owned(),
            completion_price: "0.000002".to_owned(),
            context_length: Some(128_000),
            supported_parameters: ["max_tokens", "temperature", "tools", "response_format"]
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            intelligence_index: None,
        }
    }

    /// Sets the prompt and completion prices (USD per token, as strings).
    pub fn prices(mut self, prompt: impl Into<String>, completion: impl Into<String>) -> Self {
        self.prompt_price = prompt.into();
        self.completion_price = completion.into();
        self
    }

    /// Sets the context length.
    pub fn context(mut self, n: u64) -> Self {
        self.context_length = Some(n);
        self
    }

    /// Removes the context length (served as `null`).
    pub fn no_context(mut self) -> Self {
        self.context_length = None;
        self
    }

    /// Replaces the supported parameters.
    pub fn params(mut self, params: &[&str]) -> Self {
        self.supported_parameters = params.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    /// Sets the intelligence index.
    pub fn intelligence(mut self, x: f64) -> Self {
        self.intelligence_index = Some(x);
        self
    }
}

/// A request as received by the server.
#[derive(Clone, Debug)]
pub struct LoggedRequest {
    pub method: String,
    /// The request target as sent, including any query string.
    pub path: String,
    /// Header names are lowercased; values are trimmed.
    pub headers: Vec<(String, String)>,
    /// The body (decoded when it was sent chunked).
    pub body: Vec<u8>,
    /// The body's `"model"` when the body is a JSON object with a string `model`.
    pub model: Option<String>,
    /// When the full request had been read.
    pub at: Instant,
}

impl LoggedRequest {
    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON, or `Value::Null` when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// Whether the body asked for a streamed answer (`"stream": true`).
    pub fn stream(&self) -> bool {
        stream::wants_stream(&self.json())
    }
}

/// How the server answers one chat completion request.
#[derive(Clone, Debug)]
pub enum Behavior {
    /// 200 with a valid chat completion after `latency`.
    Ok {
        latency: Duration,
        /// Sent as `usage.cost` when `Some`.
        cost: Option<f64>,
    },
    /// Any status, optional `Retry-After` value (sent verbatim), optional body
    /// (default: `{"error":{"code":N,"message":"fake error N"}}`), after `latency`.
    Status {
        code: u16,
        retry_after: Option<String>,
        body: Option<String>,
        latency: Duration,
    },
    /// A redirect: `code` (e.g. 307) with `Location: location` and an empty JSON body.
    Redirect { code: u16, location: String },
    /// Reads the request and never answers; the connection stays open until the
    /// client closes it or the server is dropped.
    Hang,
    /// 200 whose `Content-Length` is larger than the bytes sent (half of a valid
    /// completion body), then the connection is closed.
    Truncated,
    /// Sends the status line, headers and half of the body, then resets the
    /// connection (`SO_LINGER` 0).
    ResetMidBody,
    /// Closes the connection right after reading the request, sending nothing.
    CloseWithoutResponse,
    /// 200 headers, then a valid completion body one byte every `interval`.
    Drip { interval: Duration },
    /// 200 with a body that is not JSON.
    NonJson,
    /// 200 with `{"error":{"code":502,"message":"Provider returned error"}}` and no choices.
    ErrorInBody,
    /// 200 with a valid completion whose content is padded so the body is about `bytes` long.
    BigBody { bytes: usize },
    /// Like [`Behavior::BigBody`], but without `Content-Length`: the body runs
    /// until the server closes the connection, so a client can only stop it
    /// by counting what it reads.
    BigBodyUnsized { bytes: usize },
    /// After `latency`, 500 with probability `fail_rate`, otherwise a valid
    /// completion. The draw is a xorshift PRNG seeded by `seed` plus the number of
    /// earlier completion requests naming the same model, so a run is reproducible.
    Flaky {
        fail_rate: f64,
        seed: u64,
        latency: Duration,
    },
    /// A heavy tail: 200 after `latency`, except a share `slow_rate` of
    /// answers, which take `slow`. Drawn like [`Behavior::Flaky`], so a run
    /// is reproducible.
    Tail {
        latency: Duration,
        slow: Duration,
        slow_rate: f64,
        seed: u64,
    },
    /// A paced stream. Asked to stream, waits `first`, sends the head and the
    /// first content chunk, then one content chunk every `interval`,
    /// `pieces` in all (at least 1), then the finish chunk, the usage chunk
    /// when asked for, and `data: [DONE]`. The content has `pieces` words
    /// (see the module documentation), one per chunk.
    ///
    /// With `cut_after: Some(k)`, the connection is closed instead of sending
    /// the (k+1)-th content chunk (or the finish chunk when `k >= pieces`),
    /// that is `first + interval * min(k, pieces)` after the request, without
    /// a finish chunk, `[DONE]` or the terminating zero-length HTTP chunk.
    ///
    /// Not asked to stream, answers like [`Behavior::Ok`] with the same
    /// content after `first + interval * (pieces - 1)`; `cut_after` is ignored.
    Stream {
        first: Duration,
        interval: Duration,
        pieces: usize,
        cut_after: Option<usize>,
        /// Sent as `usage.cost` when `Some`.
        cost: Option<f64>,
    },
}

impl Behavior {
    /// 200 immediately, no cost.
    pub fn ok() -> Self {
        Behavior::Ok {
            latency: Duration::ZERO,
            cost: None,
        }
    }

    /// 200 after `ms` milliseconds, no cost.
    pub fn ok_after(ms: u64) -> Self {
        Behavior::Ok {
            latency: Duration::from_millis(ms),
            cost: None,
        }
    }

    /// 200 immediately with `usage.cost` set.
    pub fn ok_with_cost(cost: f64) -> Self {
        Behavior::Ok {
            latency: Duration::ZERO,
            cost: Some(cost),
        }
    }

    /// The given status immediately, with the default error body.
    pub fn status(code: u16) -> Self {
        Behavior::Status {
            code,
            retry_after: None,
            body: None,
            latency: Duration::ZERO,
        }
    }

    /// The given status immediately, with this body.
    pub fn status_with_body(code: u16, body: impl Into<String>) -> Self {
        Behavior::Status {
            code,
            retry_after: None,
            body: Some(body.into()),
            latency: Duration::ZERO,
        }
    }

    /// A stream of `pieces` content chunks, the first after `first_ms`
    /// milliseconds, then one every `interval_ms`; no cost, not cut.
    pub fn stream(first_ms: u64, interval_ms: u64, pieces: usize) -> Self {
        Behavior::Stream {
            first: Duration::from_millis(first_ms),
            interval: Duration::from_millis(interval_ms),
            pieces,
            cut_after: None,
            cost: None,
        }
    }

    /// Like [`Behavior::stream`], but the connection is closed after
    /// `cut_after` content chunks, mid-stream.
    pub fn stream_cut(first_ms: u64, interval_ms: u64, pieces: usize, cut_after: usize) -> Self {
        Behavior::Stream {
            first: Duration::from_millis(first_ms),
            interval: Duration::from_millis(interval_ms),
            pieces,
            cut_after: Some(cut_after),
            cost: None,
        }
    }

    /// 429, with `Retry-After: <secs>` when given.
    pub fn rate_limited(retry_after_secs: Option<u64>) -> Self {
        Behavior::Status {
            code: 429,
            retry_after: retry_after_secs.map(|s| s.to_string()),
            body: None,
            latency: Duration::ZERO,
        }
    }
}

/// What `GET /models` answers.
#[derive(Clone, Debug)]
pub enum CatalogueBehavior {
    /// The JSON catalogue built from the configured [`ModelSpec`]s.
    Models,
    /// This body with 200.
    Raw(String),
    /// This status with the default error body.
    Status(u16),
    /// Never answer.
    Hang,
}

// ---------------------------------------------------------------------------
// Server handle
// ---------------------------------------------------------------------------

/// A running fake server. Dropping it stops the server and closes its connections.
pub struct FakeServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Arc<Notify>,
    thread: Option<JoinHandle<()>>,
}

impl FakeServer {
    /// Starts a server with the given catalogue of models; all models answer
    /// `Behavior::Ok` with zero latency unless scripted.
    pub fn start(models: Vec<ModelSpec>) -> FakeServer {
        FakeServer::start_with(Config {
            models,
            ..Config::default()
        })
    }

    /// Starts a server with the given configuration.
    ///
    /// # Panics
    /// When the runtime cannot be built or the port cannot be bound; see
    /// [`FakeServer::try_start_with`].
    pub fn start_with(config: Config) -> FakeServer {
        match FakeServer::try_start_with(config) {
            Ok(server) => server,
            Err(e) => panic!("fake-openrouter: cannot start server: {e}"),
        }
    }

    /// Starts a server with the given configuration, reporting startup errors.
    pub fn try_start_with(config: Config) -> io::Result<FakeServer> {
        let shared = Arc::new(Shared {
            log_requests: config.log_requests,
            api_key: config.api_key.clone(),
            catalogue: catalogue_json(&config.models),
            next_gen: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            most_in_flight: AtomicU64::new(0),
            streams_started: AtomicU64::new(0),
            streams_completed: AtomicU64::new(0),
            streams_abandoned: AtomicU64::new(0),
            streams_cut: AtomicU64::new(0),
            state: Mutex::new(State {
                scripts: HashMap::new(),
                defaults: HashMap::new(),
                fallback: Behavior::ok(),
                counts: HashMap::new(),
                catalogue_behavior: CatalogueBehavior::Models,
                log: Vec::new(),
            }),
        });
        let shutdown = Arc::new(Notify::new());
        let (tx, rx) = std::sync::mpsc::channel::<io::Result<SocketAddr>>();
        let workers = config.workers.max(1);
        let port = config.port;
        let thread_shared = Arc::clone(&shared);
        let thread_shutdown = Arc::clone(&shutdown);
        let thread = std::thread::Builder::new()
            .name("fake-openrouter".to_owned())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(workers)
                    .thread_name("fake-openrouter-worker")
                    .enable_io()
                    .enable_time()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                rt.block_on(async move {
                    let listener = match bind(port).and_then(|l| l.local_addr().map(|a| (l, a))) {
                        Ok((listener, addr)) => {
                            let _ = tx.send(Ok(addr));
                            listener
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    };
                    accept_loop(listener, thread_shared, thread_shutdown).await;
                });
                // Cancels every connection task (including hanging ones) without waiting.
                rt.shutdown_background();
            })?;
        let addr = match rx.recv() {
            Ok(Ok(addr)) => addr,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(io::Error::other("server thread exited during startup"));
            }
        };
        Ok(FakeServer {
            addr,
            shared,
            shutdown,
            thread: Some(thread),
        })
    }

    /// The OpenRouter-style base URL, e.g. `http://127.0.0.1:41234/api/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/api/v1", self.addr)
    }

    /// The bound loopback address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Behaviours used for this model's next requests, in order, before falling
    /// back to its default. Appends to any behaviours still queued.
    pub fn script(&self, model: &str, behaviors: impl IntoIterator<Item = Behavior>) {
        let mut state = self.shared.lock();
        state
            .scripts
            .entry(model.to_owned())
            .or_default()
            .extend(behaviors);
    }

    /// The behaviour used for this model once its script is used up (initially
    /// the server-wide fallback, which is `Behavior::ok()` unless changed with
    /// [`FakeServer::set_fallback`]).
    pub fn set_default(&self, model: &str, behavior: Behavior) {
        self.shared
            .lock()
            .defaults
            .insert(model.to_owned(), behavior);
    }

    /// The behaviour of every model that has no script left and no default of
    /// its own (initially `Behavior::ok()`).
    pub fn set_fallback(&self, behavior: Behavior) {
        self.shared.lock().fallback = behavior;
    }

    /// What `GET /models` answers (default: [`CatalogueBehavior::Models`]).
    pub fn set_catalogue_behavior(&self, b: CatalogueBehavior) {
        self.shared.lock().catalogue_behavior = b;
    }

    /// Log of every request received (any path), in arrival order. Empty when
    /// logging is disabled.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.shared.lock().log.clone()
    }

    /// Removes and returns the logged requests.
    pub fn take_requests(&self) -> Vec<LoggedRequest> {
        std::mem::take(&mut self.shared.lock().log)
    }

    /// Only the `POST …/chat/completions` requests of the log.
    pub fn completions(&self) -> Vec<LoggedRequest> {
        self.shared
            .lock()
            .log
            .iter()
            .filter(|r| r.method == "POST" && route_path(&r.path).ends_with("/chat/completions"))
            .cloned()
            .collect()
    }

    /// How many chat completion requests named this model (counted even when
    /// logging is disabled; reset by [`FakeServer::clear_log`]).
    pub fn count_for(&self, model: &str) -> usize {
        self.shared
            .lock()
            .counts
            .get(model)
            .map_or(0, |n| *n as usize)
    }

    /// The most completion requests ever in flight at once (see
    /// [`FakeServer::in_flight`]). A count, not a time: a client that keeps
    /// to `-j` requests in flight never makes it larger than `-j`, however
    /// loaded the machine.
    pub fn most_in_flight(&self) -> u64 {
        self.shared.most_in_flight.load(Ordering::SeqCst)
    }

    /// Completion requests answered with [`Behavior::Ok`] or
    /// [`Behavior::Stream`] that are in flight now: received, and their
    /// answer not begun (it begins after the latency); a streamed answer
    /// stays in flight until just before its `data: [DONE]` is sent, or
    /// until it is cut or its client goes away. The count drops before the
    /// client can have its whole answer, so a client that frees its slot
    /// once it has the answer is never counted twice.
    pub fn in_flight(&self) -> u64 {
        self.shared.in_flight.load(Ordering::SeqCst)
    }

    /// Streamed answers begun: requests with `"stream": true` that met a
    /// successful behaviour ([`Behavior::Ok`], [`Behavior::Stream`], a
    /// [`Behavior::Flaky`] that does not fail, [`Behavior::Tail`]), counted
    /// as soon as the request is read, before the latency. Each ends as
    /// completed, abandoned or cut, unless the server is dropped first.
    pub fn streams_started(&self) -> u64 {
        self.shared.streams_started.load(Ordering::SeqCst)
    }

    /// Streams that reached `data: [DONE]` (counted just before it is sent,
    /// so a client that has read it always sees the count).
    pub fn streams_completed(&self) -> u64 {
        self.shared.streams_completed.load(Ordering::SeqCst)
    }

    /// Streams ended because the client went away: it closed the connection
    /// (noticed during the waits, before the head and between chunks) or a
    /// write failed. Proves that a client dropping its request makes the
    /// upstream call stop.
    pub fn streams_abandoned(&self) -> u64 {
        self.shared.streams_abandoned.load(Ordering::SeqCst)
    }

    /// Streams closed on purpose mid-way by [`Behavior::Stream`]'s
    /// `cut_after` (counted before the connection is closed).
    pub fn streams_cut(&self) -> u64 {
        self.shared.streams_cut.load(Ordering::SeqCst)
    }

    /// Clears the request log and the per-model counts.
    pub fn clear_log(&self) {
        let mut state = self.shared.lock();
        state.log.clear();
        state.counts.clear();
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.shutdown.notify_one();
        if let Some(thread) = self.thread.take() {
            // The accept loop exits promptly and the runtime is shut down in the
            // background, so this join does not wait for open connections.
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for FakeServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------
// Shared state
// ---------------------------------------------------------------------------

struct Shared {
    log_requests: bool,
    api_key: Option<String>,
    catalogue: Vec<u8>,
    next_gen: AtomicU64,
    /// Completions in flight (see [`FakeServer::in_flight`]), and the most
    /// there ever were at once.
    in_flight: AtomicU64,
    most_in_flight: AtomicU64,
    /// Streamed answers: begun, ended with `[DONE]`, ended because the client
    /// went away, ended by a `cut_after`.
    streams_started: AtomicU64,
    streams_completed: AtomicU64,
    streams_abandoned: AtomicU64,
    streams_cut: AtomicU64,
    state: Mutex<State>,
}

struct State {
    scripts: HashMap<String, VecDeque<Behavior>>,
    defaults: HashMap<String, Behavior>,
    fallback: Behavior,
    counts: HashMap<String, u64>,
    catalogue_behavior: CatalogueBehavior,
    log: Vec<LoggedRequest>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One completion counted in [`Shared::in_flight`] until [`InFlight::leave`]
/// or drop (a connection task cancelled, a failed write).
struct InFlight {
    shared: Arc<Shared>,
    counted: bool,
}

impl InFlight {
    fn enter(shared: &Arc<Shared>) -> InFlight {
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.most_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight {
            shared: Arc::clone(shared),
            counted: true,
        }
    }

    fn leave(&mut self) {
        if std::mem::take(&mut self.counted) {
            self.shared.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.leave();
    }
}

impl State {
    /// Counts one completion request for `model` and returns its behaviour and
    /// the number of earlier requests for that model.
    fn pick(&mut self, model: &str) -> (Behavior, u64) {
        let n = match self.counts.get_mut(model) {
            Some(c) => {
                *c += 1;
                *c - 1
            }
            None => {
                self.counts.insert(model.to_owned(), 1);
                0
            }
        };
        let behavior = self
            .scripts
            .get_mut(model)
            .and_then(VecDeque::pop_front)
            .or_else(|| self.defaults.get(model).cloned())
            .unwrap_or_else(|| self.fallback.clone());
        (behavior, n)
    }
}

fn catalogue_json(models: &[ModelSpec]) -> Vec<u8> {
    let data: Vec<Value> = models
        .iter()
        .map(|m| {
            let mut entry = json!({
                "id": m.id,
                "name": m.id,
                "created": 0,
                "context_length": m.context_length,
                "pricing": {
                    "prompt": m.prompt_price,
                    "completion": m.completion_price,
                },
                "top_provider": {
                    "context_length": m.context_length,
                    "max_completion_tokens": null,
                    "is_moderated": false,
                },
                "supported_parameters": m.supported_parameters,
            });
            if let Some(x) = m.intelligence_index {
                entry["benchmarks"] = json!({ "artificial_analysis": { "intelligence_index": x } });
            }
            entry
        })
        .collect();
    serde_json::to_vec(&json!({ "data": data })).unwrap_or_default()
}

// ---------------------------------------------------------------------------
// Accepting connections
// ---------------------------------------------------------------------------

fn bind(port: u16) -> io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)))?;
    socket.listen(BACKLOG)
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, shutdown: Arc<Notify>) {
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

// ---------------------------------------------------------------------------
// Request parsing
// ---------------------------------------------------------------------------

/// A parsed request head; ranges index the connection's read buffer.
struct Head {
    method: Range<usize>,
    target: Range<usize>,
    /// The header lines (without the request line and the final blank line).
    headers: Range<usize>,
    /// Bytes up to and including the blank line ending the head.
    len: usize,
    content_length: Option<usize>,
    chunked: bool,
    keep_alive: bool,
    expect_continue: bool,
    authorization: Option<Range<usize>>,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t' | b'\r', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t' | b'\r'] = s {
        s = rest;
    }
    s
}

/// Offset of `sub` (a subslice of `base`) within `base`.
fn offset_in(base: &[u8], sub: &[u8]) -> usize {
    sub.as_ptr() as usize - base.as_ptr() as usize
}

/// Iterates over `(name, value)` pairs of header lines.
fn header_lines(block: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    block.split(|&b| b == b'\n').filter_map(|line| {
        let line = trim(line);
        if line.is_empty() {
            return None;
        }
        let colon = line.iter().position(|&b| b == b':')?;
        Some((trim(&line[..colon]), trim(&line[colon + 1..])))
    })
}

/// Parses a request head. `Ok(None)` means more bytes are needed.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, &'static str> {
    // Tolerate empty lines before the request line.
    let mut start = 0;
    while buf[start..].starts_with(b"\r\n") {
        start += 2;
    }
    let Some(end) = find(&buf[start..], b"\r\n\r\n").map(|e| e + start) else {
        return Ok(None);
    };
    let head = &buf[..end];
    let line_end = find(&head[start..], b"\r\n").map_or(end, |e| e + start);
    let request_line = &head[start..line_end];
    if std::str::from_utf8(request_line).is_err() {
        return Err("malformed request line");
    }
    let mut parts = request_line.split(|&b| b == b' ').filter(|p| !p.is_empty());
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("malformed request line");
    };
    let mut keep_alive = match version {
        b"HTTP/1.1" => true,
        b"HTTP/1.0" => false,
        _ => return Err("unsupported HTTP version"),
    };
    let headers = (line_end + 2).min(end)..end;
    let mut content_length = None;
    let mut chunked = false;
    let mut expect_continue = false;
    let mut authorization = None;
    for (name, value) in header_lines(&buf[headers.clone()]) {
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
                .ok_or("invalid content-length")?;
            if content_length.is_some_and(|old| old != n) {
                return Err("conflicting content-length");
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            let last = value.rsplit(|&b| b == b',').next().map(trim).unwrap_or(b"");
            if last.eq_ignore_ascii_case(b"chunked") {
                chunked = true;
            } else if !last.eq_ignore_ascii_case(b"identity") {
                return Err("unsupported transfer-encoding");
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in value.split(|&b| b == b',').map(trim) {
                if token.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case(b"expect") {
            expect_continue = value.eq_ignore_ascii_case(b"100-continue");
        } else if name.eq_ignore_ascii_case(b"authorization") {
            let at = offset_in(buf, value);
            authorization = Some(at..at + value.len());
        }
    }
    let method_at = offset_in(buf, method);
    let target_at = offset_in(buf, target);
    Ok(Some(Head {
        method: method_at..method_at + method.len(),
        target: target_at..target_at + target.len(),
        headers,
        len: end + 4,
        content_length,
        chunked,
        keep_alive,
        expect_continue,
        authorization,
    }))
}

/// The part of a request target used for routing (no query string).
fn route_path(target: &str) -> &str {
    target.split(['?', '#']).next().unwrap_or(target)
}

enum Route {
    Models,
    Completions,
    WrongMethod,
    NotFound,
}

fn route(method: &str, target: &str) -> Route {
    let path = route_path(target);
    let path = path.strip_suffix('/').unwrap_or(path);
    if path.ends_with("/chat/completions") {
        if method == "POST" {
            Route::Completions
        } else {
            Route::WrongMethod
        }
    } else if path.ends_with("/models") {
        if method == "GET" {
            Route::Models
        } else {
            Route::WrongMethod
        }
    } else {
        Route::NotFound
    }
}

fn bearer_matches(value: &[u8], key: &str) -> bool {
    let Some(space) = value.iter().position(|&b| b == b' ') else {
        return false;
    };
    value[..space].eq_ignore_ascii_case(b"bearer") && trim(&value[space + 1..]) == key.as_bytes()
}

// ---------------------------------------------------------------------------
// Connections
// ---------------------------------------------------------------------------

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

struct Conn {
    stream: TcpStream,
    shared: Arc<Shared>,
    /// Bytes read from the socket and not yet consumed.
    buf: Vec<u8>,
    /// Scratch space: decoded chunked bodies, then response bodies.
    body: Vec<u8>,
    /// The response as written to the socket.
    out: Vec<u8>,
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
    async fn fill(&mut self) -> io::Result<usize> {
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

    async fn complete(
        &mut self,
        behavior: Behavior,
        n: u64,
        request: &Value,
        keep_alive: bool,
    ) -> io::Result<bool> {
        let model = request.get("model").and_then(Value::as_str).unwrap_or("");
        if stream::wants_stream(request) {
            if let Some(plan) = stream::Plan::new(&behavior, n, model, request) {
                return self.stream_answer(plan, model, request, keep_alive).await;
            }
        }
        match behavior {
            Behavior::Ok { latency, cost } => {
                let mut flight = InFlight::enter(&self.shared);
                sleep(latency).await;
                // Before the answer is sent: the client frees its slot only
                // once it has the answer, so it never counts twice.
                flight.leave();
                self.completion_body(model, request, cost, 0);
                self.respond(200, None, keep_alive).await
            }
            Behavior::Stream {
                first,
                interval,
                pieces,
                cut_after: _,
                cost,
            } => {
                let mut flight = InFlight::enter(&self.shared);
                sleep(stream::unstreamed_latency(first, interval, pieces)).await;
                flight.leave();
                let content = stream::stream_words(model, pieces).concat();
                self.completion_body_of(model, request, &content, cost, 0);
                self.respond(200, None, keep_alive).await
            }
            Behavior::Status {
                code,
                retry_after,
                body,
                latency,
            } => {
                sleep(latency).await;
                self.body.clear();
                match body {
                    Some(body) => self.body.extend_from_slice(body.as_bytes()),
                    None => write_error_body(&mut self.body, code, &format!("fake error {code}")),
                }
                let header = retry_after.as_deref().map(|v| ("retry-after", v));
                self.respond(code, header, keep_alive).await
            }
            Behavior::Redirect { code, location } => {
                self.body.clear();
                self.body.extend_from_slice(b"{}");
                self.respond(code, Some(("location", &location)), keep_alive)
                    .await
            }
            Behavior::Hang => self.hang().await,
            Behavior::Truncated => {
                self.completion_body(model, request, None, 0);
                let claimed = self.body.len();
                self.out.clear();
                write_head(&mut self.out, 200, Some(claimed), None, true);
                self.out.extend_from_slice(&self.body[..claimed / 2]);
                self.stream.write_all(&self.out).await?;
                let _ = self.stream.shutdown().await;
                Ok(false)
            }
            Behavior::ResetMidBody => {
                self.completion_body(model, request, None, 0);
                let len = self.body.len();
                self.out.clear();
                write_head(&mut self.out, 200, Some(len), None, !keep_alive);
                self.out.extend_from_slice(&self.body[..len / 2]);
                self.stream.write_all(&self.out).await?;
                // Give the bytes time to leave before the reset discards the send queue.
                tokio::time::sleep(Duration::from_millis(10)).await;
                #[allow(deprecated)] // A zero linger never blocks on close.
                let _ = self.stream.set_linger(Some(Duration::ZERO));
                Ok(false)
            }
            Behavior::CloseWithoutResponse => Ok(false),
            Behavior::Drip { interval } => {
                self.completion_body(model, request, None, 0);
                self.out.clear();
                write_head(&mut self.out, 200, Some(self.body.len()), None, !keep_alive);
                self.stream.write_all(&self.out).await?;
                for i in 0..self.body.len() {
                    sleep(interval).await;
                    let byte = [self.body[i]];
                    self.stream.write_all(&byte).await?;
                }
                self.finish(keep_alive).await
            }
            Behavior::NonJson => {
                self.body.clear();
                self.body.extend_from_slice(
                    b"<html><head><title>502 Bad Gateway</title></head>\
                      <body>upstream sent an invalid response</body></html>",
                );
                self.respond(200, None, keep_alive).await
            }
            Behavior::ErrorInBody => {
                self.body.clear();
                write_error_body(&mut self.body, 502, "Provider returned error");
                self.respond(200, None, keep_alive).await
            }
            Behavior::BigBody { bytes } => {
                self.big_body(model, request, bytes);
                self.respond(200, None, keep_alive).await
            }
            Behavior::BigBodyUnsized { bytes } => {
                self.big_body(model, request, bytes);
                self.out.clear();
                write_head(&mut self.out, 200, None, None, true);
                self.stream.write_all(&self.out).await?;
                // A client that has read enough hangs up: that is no error here.
                let _ = self.stream.write_all(&self.body).await;
                let _ = self.stream.shutdown().await;
                Ok(false)
            }
            Behavior::Flaky {
                fail_rate,
                seed,
                latency,
            } => {
                sleep(latency).await;
                if flaky_fails(seed, n, fail_rate) {
                    self.body.clear();
                    write_error_body(&mut self.body, 500, "fake error 500");
                    self.respond(500, None, keep_alive).await
                } else {
                    self.completion_body(model, request, None, 0);
                    self.respond(200, None, keep_alive).await
                }
            }
            Behavior::Tail {
                latency,
                slow,
                slow_rate,
                seed,
            } => {
                sleep(tail_wait(latency, slow, slow_rate, seed, n)).await;
                self.completion_body(model, request, None, 0);
                self.respond(200, None, keep_alive).await
            }
        }
    }

    /// Writes a successful completion body into `self.body`.
    fn completion_body(&mut self, model: &str, request: &Value, cost: Option<f64>, pad: usize) {
        let content = answer_content(model, request);
        self.completion_body_of(model, request, &content, cost, pad);
    }

    /// Writes a successful completion with this content into `self.body`.
    fn completion_body_of(
        &mut self,
        model: &str,
        request: &Value,
        content: &str,
        cost: Option<f64>,
        pad: usize,
    ) {
        let id = self.shared.next_gen.fetch_add(1, Ordering::Relaxed) + 1;
        self.body.clear();
        write_completion(&mut self.body, id, model, request, content, cost, pad);
    }

    /// Sends `self.body` with the given status.
    /// A completion padded to about `bytes`, in `self.body`.
    fn big_body(&mut self, model: &str, request: &Value, bytes: usize) {
        self.completion_body(model, request, None, 0);
        let pad = bytes.saturating_sub(self.body.len());
        if pad > 0 {
            self.completion_body(model, request, None, pad);
        }
    }

    /// Sends `self.body` with `code` and at most one extra header.
    async fn respond(
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

    async fn finish(&mut self, keep_alive: bool) -> io::Result<bool> {
        if !keep_alive {
            let _ = self.stream.shutdown().await;
        }
        Ok(keep_alive)
    }

    /// Never answers: discards whatever the client sends until it closes.
    async fn hang(&mut self) -> io::Result<bool> {
        loop {
            self.buf.clear();
            match self.fill().await {
                Ok(0) | Err(_) => return Ok(false),
                Ok(_) => {}
            }
        }
    }
}

async fn sleep(d: Duration) {
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
}

// ---------------------------------------------------------------------------
// Response bodies
// ---------------------------------------------------------------------------

fn reason(code: u16) -> &'static str {
    match code {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Payload Too Large",
        418 => "I'm a teapot",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        529 => "Site Overloaded",
        _ => "Status",
    }
}

fn write_head(
    out: &mut Vec<u8>,
    code: u16,
    content_length: Option<usize>,
    header: Option<(&str, &str)>,
    close: bool,
) {
    let _ = write!(
        out,
        "HTTP/1.1 {code} {}\r\ncontent-type: application/json\r\n",
        reason(code)
    );
    if let Some(len) = content_length {
        let _ = write!(out, "content-length: {len}\r\n");
    }
    if let Some((name, value)) = header {
        let _ = write!(out, "{name}: {value}\r\n");
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends `s` JSON-escaped, without quotes.
fn push_escaped(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => {
                out.extend_from_slice(&bytes[start..i]);
                let _ = write!(out, "\\u{b:04x}");
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escape);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

fn write_error_body(out: &mut Vec<u8>, code: u16, message: &str) {
    let _ = write!(out, "{{\"error\":{{\"code\":{code},\"message\":\"");
    push_escaped(out, message);
    out.extend_from_slice(b"\"}}");
}

/// The text of a message's content: the string itself, or its JSON text.
fn content_text(message: &Value) -> Cow<'_, str> {
    match message.get("content") {
        Some(Value::String(s)) => Cow::Borrowed(s),
        Some(other) => Cow::Owned(other.to_string()),
        None => Cow::Borrowed(""),
    }
}

/// The messages of a chat request (none when it has no `messages` array).
fn messages(request: &Value) -> &[Value] {
    request
        .get("messages")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// The content of a successful answer to `request` as `model`:
/// `[<model>] <last message content>`.
fn answer_content(model: &str, request: &Value) -> String {
    let last = messages(request)
        .last()
        .map_or(Cow::Borrowed(""), content_text);
    format!("[{model}] {last}")
}

/// Prompt and completion token counts: a quarter of the characters of every
/// message's content, plus one; a quarter of the answer's characters, plus one.
fn token_counts(request: &Value, content_chars: usize) -> (usize, usize) {
    let prompt_chars: usize = messages(request)
        .iter()
        .map(|m| content_text(m).chars().count())
        .sum();
    (prompt_chars / 4 + 1, content_chars / 4 + 1)
}

/// Writes `"usage":{…}` for an answer of `content_chars` characters.
fn write_usage(out: &mut Vec<u8>, request: &Value, content_chars: usize, cost: Option<f64>) {
    let (prompt_tokens, completion_tokens) = token_counts(request, content_chars);
    let _ = write!(
        out,
        "\"usage\":{{\"prompt_tokens\":{prompt_tokens},\"completion_tokens\":{completion_tokens},\"total_tokens\":{}",
        prompt_tokens + completion_tokens
    );
    if let Some(cost) = cost {
        out.extend_from_slice(b",\"cost\":");
        let _ = serde_json::to_writer(&mut *out, &cost);
    }
    out.push(b'}');
}

/// Seconds since the Unix epoch, for `created`.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Writes a chat completion answering `request` as `model` whose content is
/// `content` followed by `pad` filler characters.
fn write_completion(
    out: &mut Vec<u8>,
    id: u64,
    model: &str,
    request: &Value,
    content: &str,
    cost: Option<f64>,
    pad: usize,
) {
    let created = unix_now();
    let _ = write!(
        out,
        "{{\"id\":\"gen-{id}\",\"object\":\"chat.completion\",\"created\":{created},\"model\":\""
    );
    push_escaped(out, model);
    out.extend_from_slice(
        b"\",\"provider\":\"fake\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"",
    );
    push_escaped(out, content);
    out.resize(out.len() + pad, b'x');
    out.extend_from_slice(b"\"},\"finish_reason\":\"stop\"}],");
    write_usage(out, request, content.chars().count() + pad, cost);
    out.push(b'}');
}

/// Whether a `Flaky` behaviour fails its `n`-th request.
/// How long a [`Behavior::Tail`] answer takes: `slow` for a share
/// `slow_rate` of them, drawn as [`Behavior::Flaky`] draws.
fn tail_wait(latency: Duration, slow: Duration, slow_rate: f64, seed: u64, n: u64) -> Duration {
    if flaky_fails(seed, n, slow_rate) {
        slow
    } else {
        latency
    }
}

fn flaky_fails(seed: u64, n: u64, fail_rate: f64) -> bool {
    let mut x = seed
        .wrapping_add(n)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(0x2545_F491_4F6C_DD1D);
    if x == 0 {
        x = 0x2545_F491_4F6C_DD1D;
    }
    for _ in 0..4 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    let unit = (x >> 11) as f64 / (1u64 << 53) as f64;
    unit < fail_rate
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn completion_body_is_valid_json() {
        let request = json!({
            "model": "a/\"b\"",
            "messages": [
                {"role": "system", "content": "be\nbrief"},
                {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            ],
        });
        let mut out = Vec::new();
        let content = answer_content("a/\"b\"", &request);
        write_completion(&mut out, 7, "a/\"b\"", &request, &content, Some(0.25), 3);
        let v: Value = serde_json::from_slice(&out).expect("valid JSON");
        assert_eq!(v["id"], "gen-7");
        assert_eq!(v["model"], "a/\"b\"");
        let content = v["choices"][0]["message"]["content"].as_str().unwrap();
        assert_eq!(content, r#"[a/"b"] [{"text":"hi","type":"text"}]xxx"#);
        assert_eq!(v["usage"]["cost"], 0.25);
    }

    #[test]
    fn escaping_control_characters() {
        let mut out = Vec::new();
        push_escaped(&mut out, "a\u{1}b\"c\\d\té");
        let s = format!("\"{}\"", String::from_utf8(out).unwrap());
        let back: String = serde_json::from_str(&s).unwrap();
        assert_eq!(back, "a\u{1}b\"c\\d\té");
    }

    #[test]
    fn parse_head_reads_headers() {
        let raw = b"POST /api/v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\nConnection: close\r\nAuthorization: Bearer k\r\n\r\nrest";
        let head = parse_head(raw).unwrap().unwrap();
        assert_eq!(&raw[head.method.clone()], b"POST");
        assert_eq!(&raw[head.target.clone()], b"/api/v1/chat/completions");
        assert_eq!(head.content_length, Some(12));
        assert!(!head.keep_alive);
        assert_eq!(&raw[head.authorization.clone().unwrap()], b"Bearer k");
        assert_eq!(&raw[head.len..], b"rest");
        assert!(parse_head(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .unwrap()
            .is_none());
        assert!(parse_head(b"GET /\r\n\r\n").is_err());
    }

    #[test]
    fn flaky_rates() {
        assert!((0..100).all(|n| !flaky_fails(1, n, 0.0)));
        assert!((0..100).all(|n| flaky_fails(1, n, 1.0)));
        let fails = (0..10_000).filter(|&n| flaky_fails(42, n, 0.3)).count();
        assert!((2500..3500).contains(&fails), "{fails}");
    }
}
