//! What every handler shares: the server's state, request ids, tokens
//! and the body cap.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use super::auth::{bearer, Tokens};
use super::errors::ApiError;
use super::gate::Gate;
use super::metrics::Metrics;
use crate::engine::Router;

/// What every handler shares.
pub struct App {
    pub router: Arc<Router>,
    pub gate: Gate,
    pub metrics: Arc<Metrics>,
    pub clients: Tokens,
    /// Admin tokens; client tokens are not admin tokens.
    pub admins: Tokens,
    pub max_body: u64,
    /// How long a client may take to send a body (`--header-timeout`).
    pub body_timeout: Duration,
    pub deadline: Duration,
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
    /// Cancelled when the grace period of a stop ends: the streams still
    /// open then end with an `error` event.
    pub cut: tokio_util::sync::CancellationToken,
    tags: AtomicU64,
    ids: AtomicU64,
    /// This process's part of every request id.
    id_prefix: String,
}

/// Marks a response whose handler wrote its access line itself.
#[derive(Clone, Copy, Debug)]
pub struct Logged;

/// A request's id: the client's `x-request-id` when it is a sane one, else
/// one of ours. Sent back as `x-request-id`, and recorded with the request.
#[derive(Clone, Debug)]
pub struct RequestId(pub Arc<str>);

impl App {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        router: Arc<Router>,
        gate: Gate,
        metrics: Arc<Metrics>,
        clients: Tokens,
        admins: Tokens,
        options: &crate::options::ServeOptions,
        retry_refused: Duration,
        store_path: PathBuf,
        writer: crate::store::writer::WriterHandle,
        redis: Option<Arc<crate::shared::Link>>,
    ) -> App {
        let s = &router.config().settings;
        let known: Vec<String> = s.models.iter().chain(s.fallback.iter()).cloned().collect();
        App {
            router,
            gate,
            metrics,
            clients,
            admins,
            max_body: options.max_body,
            body_timeout: options.header_timeout,
            deadline: options.deadline,
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
            cut: tokio_util::sync::CancellationToken::new(),
            tags: AtomicU64::new(0),
            ids: AtomicU64::new(0),
            id_prefix: format!("{:x}", crate::engine::now_ms() & 0xff_ffff_ffff),
        }
    }

    /// The next request's number, for the store's `line` column.
    pub fn next_tag(&self) -> u64 {
        self.tags.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The request's id: the one given when it is sane, else a new one.
    pub(super) fn new_id(&self, given: Option<&HeaderValue>) -> RequestId {
        let sane = given
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty() && v.len() <= 128)
            .filter(|v| v.bytes().all(|b| b.is_ascii_graphic()));
        match sane {
            Some(v) => RequestId(v.into()),
            None => {
                let n = self.ids.fetch_add(1, Ordering::Relaxed) + 1;
                RequestId(format!("req-{}-{n:x}", self.id_prefix).into())
            }
        }
    }

    /// The body, at most `max_body` bytes.
    pub async fn read_body(&self, headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
        self.read_body_up_to(headers, body, self.max_body).await
    }

    /// Reads a body of at most `cap` bytes, within the body timeout: a
    /// client that sends its body slowly, or not at all, is cut off.
    pub async fn read_body_up_to(
        &self,
        headers: &HeaderMap,
        body: Body,
        cap: u64,
    ) -> Result<Bytes, ApiError> {
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > cap) {
            return Err(ApiError::too_large(cap));
        }
        let limit = usize::try_from(cap).unwrap_or(usize::MAX);
        let read = tokio::time::timeout(self.body_timeout, Limited::new(body, limit).collect());
        match read.await {
            Ok(Ok(b)) => Ok(b.to_bytes()),
            Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
                Err(ApiError::too_large(cap))
            }
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

    /// Whether the request carries a client token (or an admin one).
    pub fn client_allowed(&self, headers: &HeaderMap) -> bool {
        match token(headers) {
            Some(t) => self.clients.holds(t) || self.admins.holds(t),
            None => false,
        }
    }

    /// Refuses a request that pins or lists a model which is neither in
    /// the catalogue nor among the configured candidates and fallback
    /// (unless `--allow-any-model`): a client cannot send the server to
    /// models nobody chose, nor grow its health maps and metrics' labels
    /// with names of its own.
    pub fn check_models(&self, req: &crate::core::request::Request) -> Result<(), ApiError> {
        if self.allow_any_model {
            return Ok(());
        }
        let config = &self.router.config().settings;
        let known = |m: &str| {
            self.router.catalogue().get(m).is_some()
                || config
                    .models
                    .iter()
                    .chain(config.fallback.iter())
                    .any(|c| c == m)
        };
        let o = req.overrides.as_ref();
        let named = req
            .pinned
            .iter()
            .chain(o.and_then(|o| o.models.as_ref()).into_iter().flatten())
            .chain(o.and_then(|o| o.fallback.as_ref()).into_iter().flatten());
        for m in named {
            if !known(m) {
                return Err(ApiError::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "model_not_allowed",
                    format!(
                        "{} is neither in the catalogue nor among the configured candidates; \
                         the server's --allow-any-model lets a request name any model",
                        crate::core::failure::snippet(m.as_bytes())
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The request's own part of the cache: the digest of its client
    /// token, so that no client is answered from another's cache (or
    /// learns that another sent the same prompt). None without client
    /// tokens (a server for one person) or with `--shared-cache`.
    pub fn cache_scope(&self, headers: &HeaderMap) -> Option<[u8; 32]> {
        use sha2::Digest;
        if self.clients.is_empty() || self.shared_cache {
            return None;
        }
        let t = token(headers)?;
        Some(sha2::Sha256::digest(t.as_bytes()).into())
    }

    /// Whether the request carries an admin token.
    pub fn admin_allowed(&self, headers: &HeaderMap) -> bool {
        token(headers).is_some_and(|t| self.admins.holds(t))
    }
}

fn token(headers: &HeaderMap) -> Option<&str> {
    bearer(
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
    )
}
