//! The routing engine: [`Router::route`] takes one request to an answer or
//! an error — its settings, the cache, single flight, the plan, admission,
//! the attempts and their policy ([`crate::core::attempts`]), health, and
//! the record of it all — and reaches the world only through the traits of
//! [`ports`]. Front ends (the batch filter, a server) share one `Router` by
//! reference and build their own output from [`Routed`].

pub mod admission;
mod attempt;
mod decide;
pub mod flight;
pub mod health;
mod hedge;
pub mod learned;
mod open;
pub mod ports;
mod record;
mod refusals;
mod route;
mod stream;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::core::attempts::{Ending, Planned};
use crate::core::cachekey::Seal;
use crate::core::catalogue::Catalogue;
use crate::core::ranking::{Presets, Ranked, Settings};
pub use decide::Decision;
use flight::Flights;
pub use hedge::Hedge;
use ports::{Admission, Answer, Cache, Commit, Health, Observer, Recorder, Upstream};
pub use stream::{StreamEnd, Streaming};

/// The current time in unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis().min(i64::MAX as u128) as i64)
}

/// Milliseconds since `t`.
pub(crate) fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// What the engine is set to do, the same for every request.
#[derive(Debug, Clone)]
pub struct Config {
    /// The settings a request without its own routing gets.
    pub settings: Settings,
    /// Named weights a request's `priority` may name.
    pub presets: Presets,
    /// Choose but call nothing.
    pub dry_run: bool,
    /// Keep the ranking in [`Routed::candidates`].
    pub explain: bool,
    /// Time limit of one attempt.
    pub timeout: Duration,
    /// How long a cached answer is reused.
    pub cache_ttl: Duration,
    /// Whether answers are looked up in and written to the cache (and
    /// identical requests in flight share one call).
    pub use_cache: bool,
    /// Attempts per request, across models.
    pub max_attempts: u32,
    /// The share of requests that re-measure a candidate (`--explore`); 0
    /// turns exploration off. See [`crate::core::explore`].
    pub explore: f64,
    /// When to hedge a request (`--hedge`).
    pub hedge: Hedge,
    /// The upstream's identity (its normalised base URL): part of every
    /// cache key, so that one API's answers never come back from another's.
    pub upstream: String,
    /// After the API refuses the key or the account, let a request try
    /// again once this has passed (a server); `None` stops for good (a batch).
    pub retry_refused: Option<Duration>,
    /// Record when a cached answer is used, for a cache that drops the
    /// least recently used (`--cache-max-size`). It costs a write a hit.
    pub track_cache_use: bool,
}

/// The API's refusal of the key or the account.
#[derive(Default)]
struct Refusal {
    /// Whether `state` holds one: read on every attempt without a lock.
    set: AtomicBool,
    state: Mutex<Option<(Ending, Instant)>>,
    /// Cancelled when a refusal comes, so that requests waiting stop; a
    /// new one replaces it when the refusal is lifted.
    token: Mutex<CancellationToken>,
}

impl Refusal {
    /// The refusal in force, if any; one older than `retry` is lifted.
    fn get(&self, retry: Option<Duration>) -> Option<Ending> {
        if !self.set.load(Ordering::Acquire) {
            return None;
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (ending, at) = state.as_ref()?;
        if retry.is_some_and(|d| at.elapsed() >= d) {
            *state = None;
            self.set.store(false, Ordering::Release);
            *self.token.lock().unwrap_or_else(|e| e.into_inner()) = CancellationToken::new();
            return None;
        }
        Some(ending.clone())
    }

    fn is_set(&self) -> bool {
        self.set.load(Ordering::Acquire)
    }

    /// Sets a refusal; whether none was in force.
    fn set(&self, ending: Ending) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.is_some() {
            return false;
        }
        *state = Some((ending, Instant::now()));
        self.set.store(true, Ordering::Release);
        self.token
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .cancel();
        true
    }

    /// What is cancelled when a refusal comes.
    fn token(&self) -> CancellationToken {
        self.token.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The world as the engine sees it.
pub struct Parts {
    /// `None` for dry runs, which never call upstream.
    pub upstream: Option<Arc<dyn Upstream>>,
    pub cache: Arc<dyn Cache>,
    pub recorder: Arc<dyn Recorder>,
    pub health: Arc<dyn Health>,
    pub admission: Arc<dyn Admission>,
    pub observer: Arc<dyn Observer>,
}

/// One upstream attempt, as a request's outcome shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attempt {
    pub model: String,
    /// HTTP status, `null` when none was received.
    pub status: Option<u16>,
    /// `null` on success, else a short description.
    pub error: Option<String>,
    pub latency_ms: f64,
}

/// How a request ended.
#[derive(Debug)]
pub enum Outcome {
    /// A model answered it now.
    Answered(Answer),
    /// The cache, or an identical request in flight, answered it.
    Cached(Answer),
    /// A dry run: the model that would be called first.
    Planned(Planned),
    /// No answer, and why.
    Failed(Ending),
    /// A model is streaming the answer: its first chunk has come, the rest
    /// is read as the front end reads [`Streaming`], and recorded at its end.
    Streaming(Box<Streaming>),
    /// The front end cancelled before anything was sent: there is no
    /// outcome, and a later run will route it.
    Unsent,
}

/// What routing one request gave.
#[derive(Debug)]
pub struct Routed {
    pub outcome: Outcome,
    /// Upstream attempts, in order (none for a cached answer).
    pub attempts: Vec<Attempt>,
    /// The ranking, when asked for (`explain`); empty for a pinned request.
    pub candidates: Option<Vec<Ranked>>,
    /// From the start of routing to its end.
    pub latency_ms: f64,
    /// For an answer: when its record (and so the cached answer) is durable.
    /// Show the answer only then, and a re-run never pays for it again.
    pub commit: Option<Commit>,
}

impl Routed {
    fn new(outcome: Outcome, latency_ms: f64) -> Routed {
        Routed {
            outcome,
            attempts: Vec::new(),
            candidates: None,
            latency_ms,
            commit: None,
        }
    }

    /// The cost of this request in USD, where known (0 for a cached answer).
    pub fn cost_usd(&self) -> Option<f64> {
        match &self.outcome {
            Outcome::Answered(a) => a.cost_usd,
            Outcome::Cached(_) => Some(0.0),
            _ => None,
        }
    }
}

/// Per-request options of a front end.
#[derive(Debug, Clone, Default)]
pub struct RouteOptions {
    /// The front end's number for the request (the input line of a batch),
    /// for logs and records.
    pub tag: u64,
    /// Do not look the answer up in the cache (a client's `no-cache`).
    pub skip_cache_read: bool,
    /// Do not keep the answer in the cache (a client's `no-store`).
    pub skip_cache_write: bool,
    /// The client's own part of the cache: its answers (and identical
    /// requests in flight) are shared only within it. `None`: the one
    /// cache every request shares.
    pub cache_scope: Option<[u8; 32]>,
    /// Stream the answer: the outcome is [`Outcome::Streaming`], unless the
    /// cache answers or the request fails before its first chunk.
    pub stream: bool,
    /// Cancelled when the request's own client has gone or its deadline has
    /// passed: the attempt in flight ends as interrupted, and is recorded.
    pub cancel: Option<CancellationToken>,
    /// The name of the client key the request came with, for its record.
    pub client: Option<Arc<str>>,
    /// The request's id, unique across runs and machines, by which
    /// feedback names it.
    pub rid: Option<Arc<str>>,
    /// The client's own budget, held to as well as the run's.
    pub allowance: Option<ports::Allowance>,
    /// The longest the request waits for a paused model (a rate limit, an
    /// open circuit), in seconds: past it, it ends with the pause left as
    /// its `retry_after`. `None`: it waits as long as the pause lasts.
    /// Small, as the request's future carries it.
    pub patience: Option<std::num::NonZeroU16>,
    /// Nothing waits for the request's record to be durable (a server
    /// answers at once, and syncs the store before it reads records back):
    /// it goes to the recorder as a record nobody waits for, and the
    /// outcome carries no [`Commit`].
    pub record_lazily: bool,
}

impl RouteOptions {
    /// Options with only a tag.
    pub fn tagged(tag: u64) -> RouteOptions {
        RouteOptions {
            tag,
            ..RouteOptions::default()
        }
    }
}

/// The engine. `Send + Sync`: one per process, shared by reference by every
/// request in flight.
pub struct Router {
    config: Config,
    catalogue: Catalogue,
    parts: Parts,
    flights: Flights,
    /// Cancelled by the front end: send nothing more (Ctrl-C, a closed output).
    cancel: CancellationToken,
    /// Cancelled by the front end once requests in flight may no longer
    /// finish: they end at once as interrupted.
    abort: CancellationToken,
    /// Set when the API refused the key or the account: every request
    /// after it gets this, until [`Config::retry_refused`] passes.
    refusal: Refusal,
    /// Whether the observer has been told the budget is spent.
    budget_warned: AtomicBool,
    /// Requests planned so far.
    ticks: AtomicU64,
    /// Requests hedged so far.
    hedges: AtomicU64,
    /// The routing side of the cache key of a request without settings of
    /// its own, worked out once; and its hash part way, for one that pins
    /// a model.
    seal: Seal,
    seal_base: crate::core::cachekey::SealBase,
    /// Quality learned from outcomes, per task and model.
    learned: Arc<learned::QualityBook>,
}

impl Router {
    pub fn new(config: Config, catalogue: Catalogue, parts: Parts) -> Router {
        let seal_base = crate::core::cachekey::SealBase::new(
            &config.upstream,
            &config.settings.fingerprint(None),
        );
        let seal = seal_base.seal();
        Router {
            config,
            catalogue,
            parts,
            flights: Flights::default(),
            cancel: CancellationToken::new(),
            abort: CancellationToken::new(),
            refusal: Refusal::default(),
            budget_warned: AtomicBool::new(false),
            ticks: AtomicU64::new(0),
            hedges: AtomicU64::new(0),
            seal,
            seal_base,
            learned: Arc::new(learned::QualityBook::new(
                crate::core::learned::HALF_LIFE_MS,
            )),
        }
    }

    /// The router with `book` as what it learned of quality (shared with
    /// what reads the store and Redis into it).
    pub fn sharing_learned(mut self, book: Arc<learned::QualityBook>) -> Router {
        self.learned = book;
        self
    }

    /// What outcomes taught the router of each model's quality per task.
    pub fn learned(&self) -> &Arc<learned::QualityBook> {
        &self.learned
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    /// Whether `text` holds an upstream's API key or base URL credentials
    /// (every upstream blanks out every upstream's).
    pub fn holds_secret(&self, text: &str) -> bool {
        (self.parts.upstream.as_ref()).is_some_and(|u| u.holds_secret(text))
    }

    /// A JSON body (or any text), an upstream's key or credentials
    /// blanked out wherever a string holds it, escaped or not: to be
    /// logged.
    pub fn scrubbed_body(&self, body: String) -> String {
        match self
            .parts
            .upstream
            .as_ref()
            .and_then(|u| u.scrub_json(&body))
        {
            Some(clean) => clean,
            None => body,
        }
    }

    /// `text`, shown back or logged, with an upstream's key or credentials
    /// blanked out, in any case (None: it holds none).
    pub fn scrub_shown(&self, text: &str) -> Option<String> {
        self.parts.upstream.as_ref()?.scrub_shown(text)
    }

    /// [`Router::scrub_shown`], for what outlives this router.
    pub fn scrubber(&self) -> impl Fn(&str) -> Option<String> + Send + Sync + 'static {
        let upstream = self.parts.upstream.clone();
        move |text| upstream.as_ref().and_then(|u| u.scrub_shown(text))
    }

    /// Refuses a request that gives an upstream's key where a name goes:
    /// names are echoed in errors and kept in the store, so the message
    /// names the field and not what it held.
    pub fn no_secret_in(&self, req: &crate::core::request::Request) -> Result<(), String> {
        // An id that is no string (an object, a list) is echoed all the same.
        let id = (!req.id.is_string() && !req.id.is_null()).then(|| req.id.to_string());
        let found = req
            .labels()
            .chain(id.as_deref().map(|id| ("id", id)))
            .find(|(_, text)| self.holds_secret(text));
        match found {
            None => Ok(()),
            Some((field, _)) => Err(format!(
                "\"{field}\" holds an upstream's API key; nothing of this request was sent or kept"
            )),
        }
    }

    /// The settings `req` is routed with: the run's, with the line's
    /// overrides, and with the model it names as a hint among the
    /// candidates when the catalogue lists it. An error for overrides that
    /// do not resolve (an unknown priority).
    pub fn settings_for(
        &self,
        req: &crate::core::request::Request,
    ) -> Result<std::borrow::Cow<'_, crate::core::ranking::Settings>, String> {
        use std::borrow::Cow;
        // A task alone changes no setting.
        let Some(o) = req.overrides.as_ref().filter(|o| !o.only_task()) else {
            return Ok(Cow::Borrowed(&self.config.settings));
        };
        let settings = self
            .config
            .settings
            .with_overrides(o, &self.config.presets)?;
        let hinted = o
            .hint
            .as_deref()
            .filter(|h| self.catalogue.get(h).is_some())
            .and_then(|h| settings.with_candidate(h));
        Ok(Cow::Owned(hinted.unwrap_or(settings)))
    }

    /// Removes every cached answer, through the cache port: the store's,
    /// and Redis's when answers are shared. The number removed.
    pub async fn clear_cache(&self) -> Result<u64, String> {
        self.parts.cache.clear().await
    }

    /// No more upstream requests; those in flight may finish.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Requests in flight end now, as interrupted.
    pub fn abort(&self) {
        self.cancel.cancel();
        self.abort.cancel();
    }

    /// The first error the recorder met, if any: from then on, requests
    /// are answered but not recorded or cached.
    pub fn record_failure(&self) -> Option<String> {
        self.parts.recorder.failure()
    }

    /// Runs `hook` after each group of records committed together (see
    /// [`Recorder::after_each_commit`]).
    pub fn after_each_commit(&self, hook: Box<dyn Fn() + Send + Sync>) {
        self.parts.recorder.after_each_commit(hook);
    }

    /// The API refused the key before any request was sent (as it
    /// answered the catalogue's fetch): requests are then refused as
    /// after an attempt it refused.
    pub fn refused_at_start(&self, message: &str) {
        let ending = Ending::new(crate::core::failure::error_type::AUTH, message.to_string());
        if self.refusal.set(ending) {
            self.parts.observer.stopping(message);
        }
    }

    /// Why the API stopped the run (a refused key or account), if it did:
    /// the error type, and the API's message.
    pub fn stopped(&self) -> Option<Ending> {
        self.refusal.get(self.config.retry_refused)
    }
}
