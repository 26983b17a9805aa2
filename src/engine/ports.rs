//! The engine's seams: every way [`super::Router`] reaches the world is one
//! of these traits, and the records it hands over are plain data. The SQLite
//! store implements the cache, the recorder and (with [`super::health`])
//! live health; the HTTP client implements the upstream; the batch front
//! end implements the observer. Tests implement them in memory.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::core::cachekey::Key;
use crate::core::failure::{Failure, HealthSignal, Success};
use crate::core::health::HealthView;

/// A boxed future, for traits used as objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The bytes of a streamed answer as they arrive.
pub type Chunks = Pin<Box<dyn futures_util::Stream<Item = Result<Bytes, Failure>> + Send>>;

/// A streamed answer whose head has come: server-sent events to read.
pub struct Opened {
    pub status: u16,
    /// The events, as the upstream sends them.
    pub events: Chunks,
}

impl Opened {
    /// A whole answer, as the events that replay it.
    pub fn whole(s: &Success) -> Opened {
        let completion: serde_json::Value =
            serde_json::from_str(&s.body).unwrap_or(serde_json::Value::Null);
        let bytes = Bytes::from(crate::core::sse::replay(&completion, true));
        Opened {
            status: s.status,
            events: Box::pin(futures_util::stream::once(async move { Ok(bytes) })),
        }
    }
}

/// The API that answers chat completions.
pub trait Upstream: Send + Sync {
    /// Posts one chat completion request (`body` is the JSON to send).
    fn complete(&self, body: Vec<u8>, timeout: Duration)
        -> BoxFuture<'_, Result<Success, Failure>>;

    /// Posts one request that asks for a stream (`body` has `stream: true`);
    /// returns once the answer's head has come within `timeout`, with its
    /// events to read. A failed status is a [`Failure`], as for
    /// [`Upstream::complete`]. By default, the whole answer replayed.
    fn open(&self, body: Vec<u8>, timeout: Duration) -> BoxFuture<'_, Result<Opened, Failure>> {
        Box::pin(async move {
            self.complete(body, timeout)
                .await
                .map(|s| Opened::whole(&s))
        })
    }

    /// Where a request for `candidate` goes when not here: another
    /// upstream, and the model id it knows it by (`NAME:model` on a named
    /// upstream). None: here, as `candidate`.
    fn route_to<'a>(&'a self, candidate: &'a str) -> Option<(&'a dyn Upstream, &'a str)> {
        let _ = candidate;
        None
    }

    /// How long a request for `candidate` would be held back, were it sent
    /// now, by a limit llmroute keeps for its upstream (as far as can be
    /// told without taking a slot). None: it would not be.
    fn held_back(&self, candidate: &str) -> Option<Duration> {
        let _ = candidate;
        None
    }

    /// Resolves once a slot of `candidate`'s upstream is kept for the
    /// request that waits on it, in turn with the others waiting (the next
    /// attempt on it takes that slot); pending while the upstream is held
    /// by another limit, or keeps no slots.
    fn turn(&self, candidate: &str) -> BoxFuture<'_, ()> {
        let _ = candidate;
        Box::pin(std::future::pending())
    }

    /// `text` (an answer, as it is to be kept) without what must never be
    /// kept or shown: an API key the answer repeats. None: it holds none.
    fn scrub(&self, text: &str) -> Option<String> {
        let _ = text;
        None
    }

    /// [`Upstream::scrub`] of what is shown back to a client or logged: a
    /// key in another case, or percent-encoded, counts too.
    fn scrub_shown(&self, text: &str) -> Option<String> {
        self.scrub(text)
    }

    /// [`Upstream::scrub`] of a JSON body: its strings as JSON holds
    /// them (escapes decoded).
    fn scrub_json(&self, body: &str) -> Option<String> {
        self.scrub(body)
    }

    /// Whether `text` holds a key long enough to be a real one (not a
    /// short one a local server takes for form's sake, which model names
    /// may hold): a client that gives it as a name has mistaken it.
    fn holds_secret(&self, text: &str) -> bool {
        self.scrub(text).is_some()
    }
}

/// An answer, from a model or from the cache.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub model: String,
    /// The upstream's body: compact JSON on one line.
    pub response: String,
    pub content: Option<String>,
    pub cost_usd: Option<f64>,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    /// The model's score when it was chosen (none for a pinned or fallback model).
    pub score: Option<f64>,
    /// Unix ms.
    pub created_at: i64,
}

/// Answers kept for identical requests.
pub trait Cache: Send + Sync {
    /// An answer for `key` created at or after `min_created_at` (unix ms).
    fn get(&self, key: Key, min_created_at: i64) -> BoxFuture<'_, Option<Answer>>;

    /// For a cache shared by several processes: claims the answering of
    /// `key`, so that identical requests in flight in several processes (on
    /// one store, or on several machines) make one upstream call. `None`
    /// (the default): nothing to claim, answer it.
    fn claim(&self, _key: Key, _min_created_at: i64) -> Option<BoxFuture<'_, Claimed>> {
        None
    }

    /// For a cache whose lookups take the lease on answering a key they
    /// miss (for the claim that follows, in the same round trip): lets go
    /// of a lease taken so for `key` that no claim will take, because the
    /// request that looked it up waits for an identical one instead.
    fn let_go(&self, _key: Key) {}

    /// Removes every answer, wherever this cache keeps them (the store,
    /// and Redis too when it is shared). The number removed.
    fn clear(&self) -> BoxFuture<'_, Result<u64, String>>;

    /// Removes the answers this cache keeps made before `ms` (unix ms):
    /// another machine cleared the cache they share then. The number
    /// removed.
    fn clear_before(&self, _ms: i64) -> BoxFuture<'_, Result<u64, String>> {
        Box::pin(async { Ok(0) })
    }
}

/// What a claim on answering a request gives.
pub enum Claimed {
    /// Answer it, holding the lease (if any) until the answer is recorded.
    Go(Option<Box<dyn Send + Sync>>),
    /// Another process answered it meanwhile.
    Answered(Answer),
}

/// One upstream attempt, or one cache hit, as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRow {
    pub ts: i64,
    pub model: String,
    pub status: Option<u16>,
    pub ok: bool,
    pub cached: bool,
    pub latency_ms: Option<f64>,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    pub cost_usd: Option<f64>,
    pub score: Option<f64>,
    pub error_type: Option<&'static str>,
    /// For a streamed answer: when its first chunk came, in ms after it was sent.
    pub ttft_ms: Option<f64>,
}

/// One routed request, as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestRow {
    pub ts: i64,
    /// The front end's number for it (the input line of a batch).
    pub line: u64,
    pub request_id: Option<String>,
    pub model: Option<String>,
    pub ok: bool,
    pub cached: bool,
    pub latency_ms: f64,
    pub cost_usd: Option<f64>,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    pub score: Option<f64>,
    pub attempts: u32,
    pub error_type: Option<&'static str>,
    /// The name of the client key it came with.
    pub key: Option<std::sync::Arc<str>>,
    /// Its id, unique across runs and machines, for feedback.
    pub rid: Option<std::sync::Arc<str>>,
    /// Its task (the default task when it names none).
    pub task: Option<std::sync::Arc<str>>,
    /// What budgets were charged for it: the known costs of its attempts,
    /// and the estimate of each that was sent and may have been billed at
    /// a cost not known (a client that left, an unpriced model). A key's
    /// spend is kept by it, so that a restart charges what the budget did.
    pub charged_usd: Option<f64>,
}

/// An answer to keep in the cache.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheEntry {
    pub key: Key,
    pub answer: Answer,
}

/// Why a model is paused for a while.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pause {
    /// The API said to wait (429, `Retry-After`).
    RateLimit,
    /// It failed too often in a row: its circuit is open.
    Circuit,
}

impl Pause {
    /// As the store keeps it.
    pub fn name(self) -> &'static str {
        match self {
            Pause::RateLimit => "retry-after",
            Pause::Circuit => "circuit",
        }
    }
}

/// Everything a finished request leaves behind, kept together: the answer
/// to cache, the request and its attempts, and the pauses learned. A
/// recorder that is also the cache keeps the answer in the same
/// transaction as the rest, so an answer shown is never lost from it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record {
    pub cache: Option<CacheEntry>,
    pub request: Option<RequestRow>,
    pub attempts: Vec<AttemptRow>,
    /// (model, until unix ms, why) pauses learned from rate limits and
    /// circuits opened.
    pub cooldowns: Vec<(String, i64, Pause)>,
    /// The request's own priority, when it changed the routing; else the
    /// rows get the run's.
    pub priority: Option<String>,
    /// The key of the cached answer this request reused: it was used now.
    pub hit: Option<Key>,
}

/// Where records go.
pub trait Recorder: Send + Sync {
    /// Queues a record, and returns when it has been queued.
    fn record(&self, record: Record);
    /// Queues a record, with a ticket that says when it is durable.
    fn record_durable(&self, record: Record) -> Commit;
    /// The first error the recorder met, after which it goes on without
    /// recording (and answers are not cached).
    fn failure(&self) -> Option<String> {
        None
    }
    /// Runs `hook` after the tickets of each group of records made durable
    /// together have been settled: a front end hands on there, at once,
    /// what their tickets gathered. A recorder that settles every ticket
    /// before [`Recorder::record_durable`] returns never calls it.
    fn after_each_commit(&self, hook: Box<dyn Fn() + Send + Sync>);
}

/// What waits for a record to be durable.
pub type AfterCommit = Box<dyn FnOnce() + Send>;

/// A ticket for a record on its way to durable storage. [`Commit::on_commit`]
/// runs its closure once the record is durable (or has failed to be: a
/// store that fails goes on without recording, and says so).
pub struct Commit(Arc<Mutex<Ticket>>);

impl std::fmt::Debug for Commit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Commit")
    }
}

/// The recorder's half of a [`Commit`].
pub struct Committer(Arc<Mutex<Ticket>>);

enum Ticket {
    Pending(Option<AfterCommit>),
    Done,
}

impl Commit {
    /// A ticket and the half that settles it.
    pub fn pair() -> (Commit, Committer) {
        let t = Arc::new(Mutex::new(Ticket::Pending(None)));
        (Commit(t.clone()), Committer(t))
    }

    /// A ticket already settled.
    pub fn done() -> Commit {
        Commit(Arc::new(Mutex::new(Ticket::Done)))
    }

    /// Runs `then` once the record is durable: later, on the recorder's
    /// side, or now, here, when it already is. Returns whether it ran now.
    pub fn on_commit(self, then: AfterCommit) -> bool {
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match &mut *t {
            Ticket::Pending(slot) => {
                *slot = Some(then);
                false
            }
            Ticket::Done => {
                drop(t);
                then();
                true
            }
        }
    }

    /// Waits until the record is durable.
    pub async fn wait(self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.on_commit(Box::new(move || {
            let _ = tx.send(());
        }));
        let _ = rx.await;
    }
}

impl Committer {
    /// The record is durable (or has failed): runs what waits for it.
    pub fn done(self) {
        drop(self);
    }
}

/// A committer dropped unsettled (its record lost on the way) settles
/// anyway: what waits for a record is never lost with it.
impl Drop for Committer {
    fn drop(&mut self) {
        let waiting = {
            let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
            match std::mem::replace(&mut *t, Ticket::Done) {
                Ticket::Pending(f) => f,
                Ticket::Done => None,
            }
        };
        if let Some(f) = waiting {
            f();
        }
    }
}

/// Model health, read live and updated as attempts come back.
pub trait Health: HealthView + Send + Sync {
    /// An attempt came back at `at` (unix ms) after `latency_ms`, with an
    /// answer `tokens` long when it answered; `signal` says what that tells
    /// of the model. Returns until when the model's circuit is open, when
    /// this failure opened it.
    fn observe(
        &self,
        model: &str,
        signal: HealthSignal,
        latency_ms: f64,
        tokens: Option<i64>,
        at: i64,
    ) -> Option<Instant>;
    /// A request sent at `sent` was rate limited; returns until when the
    /// model now pauses.
    fn rate_limited(&self, model: &str, sent: Instant, retry_after: Option<Duration>) -> Instant;
    /// Whether an attempt on the model may go now, and marks it under way
    /// when it is a probe (`probe`) or the one attempt a half-open circuit
    /// lets through: `None` when such an attempt already is; else whether
    /// this one was marked (give that to [`Health::end`]).
    fn begin(&self, model: &str, probe: bool) -> Option<bool>;
    /// An attempt begun with `marked` is over.
    fn end(&self, model: &str, marked: bool);
}

/// An estimated cost held against the budget while a request is in flight.
#[derive(Debug)]
#[must_use = "settle the reservation with the real cost"]
pub struct Reservation(pub f64);

/// Why the budget refused a request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OverBudget {
    /// Spent when it was refused.
    pub spent: f64,
    /// Held by requests in flight then.
    pub reserved: f64,
    /// The refused request's estimate.
    pub estimate: f64,
    pub max: f64,
}

/// What a budget holds now.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BudgetView {
    pub spent: f64,
    /// Held by requests in flight.
    pub reserved: f64,
    pub max: f64,
}

/// What a reservation of the budget gives: at once (a budget in memory),
/// or after a round trip (a budget shared with other machines).
pub enum Reserve<'a> {
    Now(Result<Option<Reservation>, OverBudget>),
    Later(BoxFuture<'a, Result<Option<Reservation>, OverBudget>>),
}

impl Reserve<'_> {
    pub async fn get(self) -> Result<Option<Reservation>, OverBudget> {
        match self {
            Reserve::Now(r) => r,
            Reserve::Later(f) => f.await,
        }
    }
}

/// A client's own budget, held to besides the run's: a request is sent
/// only when both have room for its estimate, and settles with both.
#[derive(Clone)]
pub struct Allowance(pub Arc<dyn Admission>);

impl std::fmt::Debug for Allowance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Allowance({:?})", self.0.budget())
    }
}

/// What decides whether, and when, a request may be sent: requests and
/// tokens per minute, and the spending cap.
pub trait Admission: Send + Sync {
    /// Holds `estimate` USD against the budget; `Ok(None)` without one.
    /// When it would fit once requests in flight settle, it waits for them
    /// (`wait`), or is refused.
    fn reserve(&self, estimate: f64, wait: bool) -> Reserve<'_>;
    /// Replaces a reservation with what the request really cost (the
    /// estimate when unknown).
    fn settle(&self, r: Reservation, actual: Option<f64>);
    /// What is left of the budget in USD (after what is spent and what is
    /// in flight), when there is one.
    fn budget_left(&self) -> Option<f64>;
    /// What the budget holds, when there is one.
    fn budget(&self) -> Option<BudgetView>;
    /// Whether requests are sent as they come (no rate limits).
    fn unlimited(&self) -> bool;
    /// Waits until one more request of about `tokens` tokens may be sent.
    fn acquire(&self, tokens: u64) -> BoxFuture<'_, ()>;
    /// Tokens an answer used beyond its estimate.
    fn owe(&self, tokens: u64);
    /// Tokens an answer's usage shows it did not use, of those planned.
    fn give_back(&self, _tokens: u64) {}
}

/// What the engine tells whoever watches (logs, progress). Every method
/// has a default that ignores it.
pub trait Observer: Send + Sync {
    /// A request (`tag` is the front end's number for it) was answered from the cache.
    fn cache_hit(&self, _tag: u64, _model: &str) {}
    /// An attempt came back: its status, or why it failed.
    fn attempt(&self, _tag: u64, _model: &str, _result: Result<u16, &str>, _latency_ms: f64) {}
    /// An attempt failed; `kind` is its [`crate::core::failure::FailureKind`]'s name.
    fn upstream_error(&self, _model: &str, _kind: &'static str) {}
    /// The API refused the key or the account; nothing more is sent.
    fn stopping(&self, _message: &str) {}
    /// The budget refused a request for the first time.
    fn budget_reached(&self, _over: &OverBudget) {}
    /// Request `tag` waits `wait` for `model`, every model left being
    /// paused; `why` says why that one is.
    fn waiting(&self, _tag: u64, _model: &str, _wait: std::time::Duration, _why: &str) {}
    /// `model` failed often enough in a row that it is left alone for
    /// `pause` (its circuit opened; a probe then tries it); `last` is its
    /// last failure.
    fn circuit_opened(&self, _model: &str, _pause: std::time::Duration, _last: &str) {}
}
