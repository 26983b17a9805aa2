//! What every handler shares: the server's state, tokens and reading a
//! body.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap};
use http_body_util::{BodyExt, LengthLimitError};

use super::auth::{bearer, Tokens};
use super::errors::ApiError;
use super::gate::Gate;
use super::keys::{Client, Found, KeyRing};
use super::metrics::Metrics;
use crate::core::keys::CacheUse;
use crate::engine::Router;

/// What every handler shares.
pub struct App {
    pub router: Arc<Router>,
    pub gate: Gate,
    pub metrics: Arc<Metrics>,
    /// Client keys, and the trusted and admin tokens as keys without limits.
    pub keys: Arc<KeyRing>,
    /// Admin tokens; client tokens are not admin tokens.
    pub admins: Tokens,
    /// The body cap of chat completions and `/route` (`--max-body`).
    pub max_body: u64,
    /// How long a client may take to send a body (`--header-timeout`).
    pub body_timeout: Duration,
    pub deadline: Duration,
    /// How long a stream's piece may wait on its client (`--timeout`).
    pub send_timeout: Duration,
    pub log_bodies: bool,
    pub use_cache: bool,
    /// Whether the dashboard is served.
    pub dashboard: bool,
    /// Seconds until a refused key is tried again, for `Retry-After`.
    pub retry_refused: u64,
    pub store_path: PathBuf,
    /// The store's writer, to sync with before reading the cache apart.
    pub writer: crate::store::writer::WriterHandle,
    /// Redis, when state is shared through it.
    pub redis: Option<Arc<crate::shared::Link>>,
    pub started: Instant,
    /// This process's traffic, for the dashboard.
    pub live: super::live::Live,
    /// The dashboard's signed-in sessions.
    pub sessions: super::auth::Sessions,
    /// How many sign-ins the dashboard's form takes a minute.
    pub sign_ins: super::auth::SignInLimit,
    /// Origins whose web apps may call the API (`--cors-origin`).
    pub cors_origins: Vec<String>,
    /// One cache for every client token (`--shared-cache`).
    pub shared_cache: bool,
    /// Requests may name models nobody configured (`--allow-any-model`).
    pub allow_any_model: bool,
    /// Sampled requests are answered from the cache (`--cache-sampled`).
    pub cache_sampled: bool,
    /// The named upstreams' names: an answer says which one gave it.
    pub upstreams: Vec<String>,
    /// Cancelled when the grace period of a stop ends: the streams still
    /// open then end with an `error` event.
    pub cut: tokio_util::sync::CancellationToken,
    /// Feedback taken while Redis did not answer, to share once it does.
    pub unshared: super::unshared::Unshared,
    tags: AtomicU64,
}

/// Marks a response whose handler wrote its access line itself.
#[derive(Clone, Copy, Debug)]
pub struct Logged;

impl App {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        router: Arc<Router>,
        gate: Gate,
        metrics: Arc<Metrics>,
        keys: Arc<KeyRing>,
        admins: Tokens,
        options: &crate::options::ServeOptions,
        retry_refused: Duration,
        store_path: PathBuf,
        writer: crate::store::writer::WriterHandle,
        redis: Option<Arc<crate::shared::Link>>,
    ) -> App {
        super::redact::set(std::sync::Arc::new(router.scrubber()));
        let s = &router.config().settings;
        let known: Vec<String> = s.models.iter().chain(s.fallback.iter()).cloned().collect();
        let send_timeout = router.config().timeout;
        App {
            router,
            gate,
            metrics,
            keys,
            admins,
            max_body: options.max_body,
            body_timeout: options.header_timeout,
            deadline: options.deadline,
            send_timeout,
            log_bodies: options.log_bodies,
            dashboard: options.dashboard,
            use_cache: !options.no_cache,
            retry_refused: retry_refused.as_secs().max(1),
            store_path,
            writer,
            redis,
            started: Instant::now(),
            live: super::live::Live::new(crate::engine::now_ms(), known),
            sessions: super::auth::Sessions::default(),
            sign_ins: super::auth::SignInLimit::default(),
            cors_origins: Vec::new(),
            shared_cache: options.shared_cache,
            allow_any_model: options.allow_any_model,
            cache_sampled: options.cache_sampled,
            upstreams: Vec::new(),
            cut: tokio_util::sync::CancellationToken::new(),
            unshared: Default::default(),
            tags: AtomicU64::new(0),
        }
    }

    /// The next request's number, for the store's `line` column.
    pub fn next_tag(&self) -> u64 {
        self.tags.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The body, within the body timeout and `cap`: a client that sends it
    /// slowly, or not at all, is cut off, and one whose body grows past
    /// `cap` is refused as it does. (A body declared larger is refused
    /// before, unread: by the route's cap, [`super::layers::capped`], or
    /// by the chat handler itself, [`declared_too_large`].) A leading
    /// byte order mark is dropped.
    pub async fn read_body(&self, body: Body, cap: u64) -> Result<Bytes, ApiError> {
        // The whole body within the time, not each of its pieces: a client
        // sending a byte now and then is cut off too.
        let capped = http_body_util::Limited::new(body, usize::try_from(cap).unwrap_or(usize::MAX));
        match tokio::time::timeout(self.body_timeout, capped.collect()).await {
            Ok(Ok(b)) => {
                // A byte order mark is skipped, as JSON parsers may (RFC
                // 8259) and the batch filter does.
                let b = b.to_bytes();
                Ok(match b.strip_prefix(b"\xEF\xBB\xBF") {
                    Some(rest) => b.slice_ref(rest),
                    None => b,
                })
            }
            Ok(Err(e)) if over_cap(&*e) => Err(ApiError::too_large(cap)),
            Ok(Err(e)) => Err(ApiError::bad_request(format!("cannot read the body: {e}"))),
            Err(_) => Err(ApiError::new(
                axum::http::StatusCode::REQUEST_TIMEOUT,
                "invalid_request_error",
                "body_timeout",
                format!(
                    "the body did not arrive within {}",
                    crate::core::duration::format(self.body_timeout)
                ),
            )),
        }
    }

    /// Whether the request may read what concerns every key (the metrics,
    /// the dashboard, the cache's size): an admin token or a trusted one
    /// (`LLMROUTE_AUTH_TOKENS`), or any request to a server without tokens.
    /// A key made by `llmroute keys` sees its own use only.
    pub fn operator_allowed(&self, headers: &HeaderMap) -> bool {
        self.trusted_token(token(headers))
    }

    /// Whether `token` is an admin or trusted token, or none is needed.
    pub fn trusted_token(&self, token: Option<&str>) -> bool {
        match self.keys.find(token, crate::engine::now_ms()) {
            Found::Open => true,
            Found::Key(c) => c.trusted,
            Found::Refused(..) => false,
        }
    }

    /// The request's own part of the cache (its key's, see
    /// [`Client::cache_scope`]), so that no key is answered from another's
    /// cache or learns that another sent the same prompt. None on a server
    /// without tokens (for one person), with `--shared-cache`, or for a key
    /// made with `--cache shared`.
    pub fn cache_scope(&self, client: Option<&Client>) -> Option<[u8; 32]> {
        let c = client?;
        if self.shared_cache || c.policy.cache == CacheUse::Shared {
            return None;
        }
        Some(c.cache_scope)
    }

    /// Whether the request carries an admin token.
    pub fn admin_allowed(&self, headers: &HeaderMap) -> bool {
        token(headers).is_some_and(|t| self.admins.holds(t))
    }
}

/// Whether a body's read failed at the body cap.
fn over_cap(e: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(e), |e| e.source()).any(|e| e.is::<LengthLimitError>())
}

/// Whether a request declares (`Content-Length`) a body larger than `cap`.
pub fn declared_too_large(headers: &HeaderMap, cap: u64) -> bool {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > cap)
}

/// The bearer token of a request.
pub fn token(headers: &HeaderMap) -> Option<&str> {
    bearer(
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
    )
}
