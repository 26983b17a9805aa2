//! The HTTP API: its routes, the state they share, request ids, tokens,
//! the body cap and the access log of the management endpoints.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use super::auth::{bearer, Tokens};
use super::errors::ApiError;
use super::gate::Gate;
use super::metrics::Metrics;
use super::{chat, dashboard, manage};
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
            tags: AtomicU64::new(0),
            ids: AtomicU64::new(0),
            id_prefix: format!("{:x}", crate::engine::now_ms() & 0xff_ffff_ffff),
        }
    }

    /// The next request's number, for the store's `line` column.
    pub fn next_tag(&self) -> u64 {
        self.tags.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn new_id(&self, given: Option<&HeaderValue>) -> RequestId {
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
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.max_body) {
            return Err(ApiError::too_large(self.max_body));
        }
        let limit = usize::try_from(self.max_body).unwrap_or(usize::MAX);
        match Limited::new(body, limit).collect().await {
            Ok(b) => Ok(b.to_bytes()),
            Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
                Err(ApiError::too_large(self.max_body))
            }
            Err(e) => Err(ApiError::bad_request(format!("cannot read the body: {e}"))),
        }
    }

    /// Whether the request carries a client token (or an admin one).
    pub fn client_allowed(&self, headers: &HeaderMap) -> bool {
        match token(headers) {
            Some(t) => self.clients.holds(t) || self.admins.holds(t),
            None => false,
        }
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

/// The API's routes.
pub fn routes(app: Arc<App>) -> axum::Router {
    let mut guarded = axum::Router::new()
        .route("/v1/chat/completions", post(chat::completions))
        .route("/chat/completions", post(chat::completions))
        .route("/v1/models", get(manage::models))
        .route("/models", get(manage::models))
        .route("/route", post(manage::route))
        .route("/cache/stats", get(manage::cache_stats))
        .route("/cache", delete(manage::clear_cache))
        .route("/metrics", get(manage::metrics));
    if !app.clients.is_empty() {
        guarded = guarded.route_layer(middleware::from_fn_with_state(app.clone(), authorise));
    }
    let mut all = axum::Router::new()
        .route("/health", get(manage::health))
        .route("/ready", get(manage::ready));
    if app.dashboard {
        all = all
            .route("/", get(dashboard::root))
            .route("/dashboard", get(dashboard::page))
            .route("/dashboard/", get(dashboard::root))
            .route("/dashboard/data", get(dashboard::data))
            .route("/dashboard/app.js", get(dashboard::script))
            .route("/dashboard/login", post(dashboard::login))
            .route("/dashboard/logout", post(dashboard::logout));
    }
    all = all
        .merge(guarded)
        .fallback(not_found)
        .method_not_allowed_fallback(not_allowed);
    all.layer(middleware::from_fn_with_state(app.clone(), identify))
        .with_state(app)
}

/// Without client tokens the server is for this machine alone (it listens
/// on loopback): a request must also name a loopback host, so that a web
/// page elsewhere cannot reach it through a name of its own that resolves
/// to 127.0.0.1 (DNS rebinding). A request without a host is let through.
fn foreign_host(req: &Request) -> Option<ApiError> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))?;
    (!loopback_host(host)).then(|| {
        ApiError::forbidden(format!(
            "this server has no client tokens, so it answers requests for localhost only, not for {}",
            crate::core::failure::snippet(host.as_bytes())
        ))
    })
}

/// Whether a `Host` value names this machine: `localhost` (or a name
/// under it) or a loopback address, with or without a port.
pub fn loopback_host(host: &str) -> bool {
    let host = host.trim();
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        },
    };
    // Compared without case and without a copy: this runs for every request.
    let name = name.trim_end_matches('.');
    let under = name.len() > ".localhost".len()
        && name.as_bytes()[name.len() - ".localhost".len()..].eq_ignore_ascii_case(b".localhost");
    name.eq_ignore_ascii_case("localhost")
        || under
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Gives every request its id, sends it back, and logs the requests that
/// do not log themselves (all but chat completions).
async fn identify(State(app): State<Arc<App>>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = app.new_id(req.headers().get("x-request-id"));
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    req.extensions_mut().insert(id.clone());
    // Checked here, not in a layer of its own: every request passes here.
    let refused = app.clients.is_empty().then(|| foreign_host(&req)).flatten();
    let mut resp = match refused {
        Some(e) => e.into_response(),
        None => next.run(req).await,
    };
    if let Ok(v) = HeaderValue::from_str(&id.0) {
        resp.headers_mut().insert("x-request-id", v);
    }
    let logged = resp.extensions().get::<Logged>().is_some();
    if !logged && path != "/health" && path != "/metrics" && path != "/dashboard/data" {
        tracing::info!(
            target: "access",
            request_id = %id.0,
            method = %method,
            path = %crate::core::failure::snippet(path.as_bytes()),
            status = resp.status().as_u16(),
            latency_ms = (started.elapsed().as_secs_f64() * 10_000.0).round() / 10.0,
            "request"
        );
    }
    resp
}

/// Refuses a request without a valid client token (when tokens are set).
async fn authorise(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    if !app.client_allowed(req.headers()) {
        return ApiError::unauthorized().into_response();
    }
    next.run(req).await
}

async fn not_found(req: Request) -> Response {
    ApiError::not_found(format!(
        "no such endpoint: {} {}",
        req.method(),
        crate::core::failure::snippet(req.uri().path().as_bytes())
    ))
    .into_response()
}

async fn not_allowed(req: Request) -> Response {
    let mut e = ApiError::not_found(format!(
        "{} is not allowed on {}",
        req.method(),
        crate::core::failure::snippet(req.uri().path().as_bytes())
    ));
    e.status = axum::http::StatusCode::METHOD_NOT_ALLOWED;
    e.kind = "invalid_request_error";
    e.code = "method_not_allowed";
    e.into_response()
}

#[cfg(test)]
mod tests {
    use super::loopback_host;

    #[test]
    fn loopback_hosts_are_this_machine_s_names() {
        for h in [
            "localhost",
            "localhost:8080",
            "LOCALHOST.",
            "app.localhost:3000",
            "127.0.0.1",
            "127.0.0.1:8080",
            "127.9.9.9:1",
            "[::1]:8080",
            "[::1]",
        ] {
            assert!(loopback_host(h), "{h}");
        }
        for h in [
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
            "10.0.0.1:8080",
            "[2001:db8::1]:80",
            "",
            "127.0.0.1.nip.io",
        ] {
            assert!(!loopback_host(h), "{h}");
        }
    }
}
