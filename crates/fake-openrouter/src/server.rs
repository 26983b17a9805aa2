//! The server's handle: starting it, scripting it, reading what it saw.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::Notify;

use crate::catalogue::catalogue_json;
use crate::conn::{accept_loop, bind};
use crate::http::route_path;
use crate::state::{Shared, State};
use crate::{Behavior, CatalogueBehavior, Config, LoggedRequest, ModelSpec, StreamUsage};

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
                stream_usage: StreamUsage::default(),
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

    /// Where streams asked for usage put it (default:
    /// [`StreamUsage::Chunk`]).
    pub fn set_stream_usage(&self, shape: StreamUsage) {
        self.shared.lock().stream_usage = shape;
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
