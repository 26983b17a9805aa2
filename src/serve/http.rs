//! The HTTP API: its routes and their layers, the checks of every
//! request (the loopback check, the site check), and the access log of the
//! management endpoints.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};

use tower::util::{BoxCloneSyncService, MapRequestLayer};
use tower::ServiceBuilder;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::validate_request::{ValidateRequest, ValidateRequestHeaderLayer};

use super::errors::ApiError;
use super::keys::{Caller, Found};
use super::layers::{self, Ids, X_REQUEST_ID};
use super::state::{App, Logged};
use super::{chat, dashboard, feedback, manage, site};

/// The API: its routes, and the layers every request passes through.
pub type Api = BoxCloneSyncService<Request, Response, std::convert::Infallible>;

/// The API's routes.
pub fn routes(app: Arc<App>) -> Api {
    // The endpoints that work on the blocking threads, under one limit.
    let shed = layers::Shed::new(layers::BLOCKING_AT_ONCE);
    // The chat handler caps its body itself, so that a refusal is logged
    // and counted as a chat request, with no layer a request passes
    // through for that alone.
    let chat = post(chat::completions);
    let mut guarded = axum::Router::new()
        .route("/v1/chat/completions", chat.clone())
        .route("/chat/completions", chat)
        .route("/v1/models", get(manage::models))
        .route("/v1/models/{*id}", get(manage::model))
        .route("/models", get(manage::models))
        .route("/models/{*id}", get(manage::model))
        .route("/route", layers::capped(post(manage::route), app.max_body))
        .route("/cache/stats", shed.on(get(manage::cache_stats)))
        .route("/cache", delete(manage::clear_cache))
        .route("/metrics", get(manage::metrics))
        .route("/v1/key", shed.on(get(manage::key)))
        .route(
            "/v1/feedback",
            layers::capped(post(feedback::feedback), app.max_body),
        );
    // Always in place: keys may be made while the server runs.
    guarded = guarded.route_layer(middleware::from_fn_with_state(app.clone(), authorise));
    let mut all = axum::Router::new()
        .route("/health", get(manage::health))
        .route("/ready", get(manage::ready));
    if app.dashboard {
        all = all
            .route("/", get(dashboard::root))
            .route("/dashboard", shed.on(get(dashboard::page)))
            .route("/dashboard/", get(dashboard::root))
            .route("/dashboard/data", shed.on(get(dashboard::data)))
            .route("/dashboard/app.js", get(dashboard::script))
            .route(
                "/dashboard/login",
                layers::capped(post(dashboard::login), dashboard::LOGIN_BODY),
            )
            .route("/dashboard/logout", post(dashboard::logout));
    }
    all = all
        .merge(guarded)
        .fallback(not_found)
        .method_not_allowed_fallback(not_allowed);
    let router = all.with_state(app.clone());
    // Around the router, not through `Router::layer`: that wraps every
    // route in each layer, boxed, and a request clones every box on its
    // way in. Outermost first: a preflight is answered before the checks
    // of a request; a client's id is kept when sane (and no upstream's
    // key), else replaced by one of ours; the access line reads it from the answer, refusals of the
    // checks included. The log is set up before the routes: without access
    // lines (`-q`), a request does not pass through a layer that would
    // write none.
    let logged = tracing::enabled!(target: "access", tracing::Level::INFO);
    let stack = ServiceBuilder::new()
        .option_layer(cors(&app.cors_origins))
        .layer(MapRequestLayer::new({
            let router = app.router.clone();
            move |req| layers::sane_client_id(req, |id| router.holds_secret(id))
        }))
        .layer(SetRequestIdLayer::new(X_REQUEST_ID, Ids::default()))
        .option_layer(logged.then(|| middleware::from_fn(access)))
        .layer(PropagateRequestIdLayer::new(X_REQUEST_ID))
        .layer(ValidateRequestHeaderLayer::custom(Checks(app)))
        .service(router);
    BoxCloneSyncService::new(stack)
}

/// The CORS layer (tower-http) for `--cors-origin`: preflights from those
/// origins are answered, and their requests may read the answers. None
/// without origins: a browser then calls nothing from another site.
fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use axum::http::Method;
    use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return None;
    }
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    let name = |n: &'static str| header::HeaderName::from_static(n);
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::POST, Method::DELETE])
            // The headers a preflight asks for, whatever they are: an SDK
            // sends its own (the openai JS client's `x-stainless-*`), and
            // only the origins listed get this far.
            .allow_headers(AllowHeaders::mirror_request())
            .expose_headers([
                // Read by the SDKs before they retry: hidden, a browser
                // client retries what llmroute says a retry only repeats.
                header::RETRY_AFTER,
                name("x-should-retry"),
                name("x-request-id"),
                name("x-llmroute-model"),
                name("x-llmroute-upstream"),
                name("x-llmroute-score"),
                name("x-llmroute-latency-ms"),
                name("x-llmroute-cached"),
                name("x-llmroute-attempts"),
            ])
            .max_age(std::time::Duration::from_secs(600)),
    )
}

/// Without client tokens the server is for this machine alone (it listens
/// on loopback): a request must also name a loopback host, so that a web
/// page elsewhere cannot reach it through a name of its own that resolves
/// to 127.0.0.1 (DNS rebinding). Both the `Host` header and an
/// absolute-form target's authority must name this machine; a `Host` that
/// is not text does not. A request with neither (HTTP/1.0) is let through:
/// browsers always send a host.
fn foreign_host(req: &Request) -> Option<ApiError> {
    let header = req.headers().get(header::HOST).map(|v| v.as_bytes());
    let target = req.uri().authority().map(|a| a.as_str().as_bytes());
    let foreign = [header, target]
        .into_iter()
        .flatten()
        .find(|host| std::str::from_utf8(host).map_or(true, |host| !loopback_host(host)))?;
    Some(ApiError::forbidden(format!(
        "this server has no client tokens, so it answers requests for localhost only, not for {}",
        crate::core::failure::snippet(foreign)
    )))
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

/// The checks of every request, by tower-http's
/// `ValidateRequestHeaderLayer`: on a server without client tokens, a host
/// that is not this machine ([`foreign_host`]); then a request from another
/// site, or a body that is not JSON ([`site::refuse`]).
#[derive(Clone)]
struct Checks(Arc<App>);

impl ValidateRequest<Body> for Checks {
    type ResponseBody = Body;

    fn validate(&mut self, req: &mut Request) -> Result<(), Response> {
        let app = &self.0;
        let refused = (!app.keys.required())
            .then(|| foreign_host(req))
            .flatten()
            .or_else(|| site::refuse(req, &app.cors_origins));
        match refused {
            Some(e) => Err(e.into_response()),
            None => Ok(()),
        }
    }
}

/// Paths polled so often that their lines would drown the others.
const UNLOGGED: [&str; 3] = ["/health", "/metrics", "/dashboard/data"];

/// Writes the access line of a request that does not write its own (all
/// but chat completions, whose answers carry [`Logged`]): its id, method,
/// path, status and latency, in one event at target `access`. Nothing is
/// kept for it when the line will not be written.
///
/// Not tower-http's `TraceLayer`: it puts a request's fields on a span and
/// the answer's on an event in it, and the text and JSON logs would then
/// show them apart, unlike the chat completions' flat lines.
async fn access(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let written = tracing::enabled!(target: "access", tracing::Level::INFO)
        && !UNLOGGED.contains(&req.uri().path());
    if !written {
        return next.run(req).await;
    }
    let (method, uri) = (req.method().clone(), req.uri().clone());
    let resp = next.run(req).await;
    if resp.extensions().get::<Logged>().is_none() {
        let id = resp
            .headers()
            .get(X_REQUEST_ID)
            .and_then(|v| v.to_str().ok());
        tracing::info!(
            target: "access",
            request_id = %id.unwrap_or("-"),
            method = %method,
            path = %crate::core::failure::snippet(super::redact::clean(uri.path()).as_bytes()),
            status = resp.status().as_u16(),
            key = resp.extensions().get::<RefusedKey>().map(|k| &*k.0),
            latency_ms = (started.elapsed().as_secs_f64() * 10_000.0).round() / 10.0,
            "request"
        );
    }
    resp
}

/// The revoked or expired key a refused request came with, for its
/// access line.
#[derive(Clone)]
struct RefusedKey(Arc<str>);

/// Refuses a request without a valid token (when tokens or keys are
/// set), and hands on the key it came with.
async fn authorise(State(app): State<Arc<App>>, mut req: Request, next: Next) -> Response {
    let token = super::state::token(req.headers());
    let caller = match app.keys.find(token, crate::engine::now_ms()) {
        Found::Open => Caller(None),
        Found::Key(c) => Caller(Some(c)),
        Found::Refused(why, key) => {
            let mut e = ApiError::unauthorized();
            e.message = why;
            let mut resp = e.into_response();
            if let Some(k) = key {
                resp.extensions_mut().insert(RefusedKey(k));
            }
            return resp;
        }
    };
    req.extensions_mut().insert(caller);
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
    use super::{foreign_host, loopback_host};
    use axum::body::Body;
    use axum::http::{HeaderValue, Request};

    fn req(uri: &str, host: Option<&[u8]>) -> Request<Body> {
        let mut r = Request::builder().uri(uri).body(Body::empty()).unwrap();
        if let Some(h) = host {
            r.headers_mut()
                .insert("host", HeaderValue::from_bytes(h).unwrap());
        }
        r
    }

    #[test]
    fn a_foreign_host_is_refused_wherever_the_request_names_it() {
        assert!(foreign_host(&req("/v1/models", Some(b"127.0.0.1:8080"))).is_none());
        assert!(foreign_host(&req("/v1/models", Some(b"evil.example"))).is_some());
        // The absolute form's authority is the host the request is for.
        let absolute = "http://evil.example/v1/models";
        assert!(foreign_host(&req(absolute, Some(b"localhost"))).is_some());
        assert!(foreign_host(&req(absolute, None)).is_some());
        assert!(foreign_host(&req("http://localhost:8080/v1/models", None)).is_none());
        // A Host that is not text is not read as absent.
        assert!(foreign_host(&req("/v1/models", Some(b"\xe9vil.example"))).is_some());
        // No host at all: HTTP/1.0, not a browser.
        assert!(foreign_host(&req("/v1/models", None)).is_none());
    }

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
