//! The parts of the HTTP layer that tower and tower-http provide, set up
//! for llmroute: request ids, the body cap, and shedding the endpoints
//! that work on tokio's blocking threads.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::error_handling::HandleErrorLayer;
use axum::extract::Request;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::{BoxError, ServiceBuilder};
use tower_http::limit::{RequestBodyLimitLayer, ResponseBody};
use tower_http::request_id::{MakeRequestId, RequestId};

use super::errors::ApiError;

/// The header a request's id comes in and goes back in.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest client id kept.
const MAX_CLIENT_ID: usize = 128;

/// Makes llmroute's own request ids, `req-<prefix>-<n>.<tag>`, for
/// tower-http's `SetRequestIdLayer`: the prefix is this process's, `n`
/// counts its requests (in hex), and the tag is 48 bits of a keyed hash of
/// `n` (SipHash, with this process's random key), so that a client seeing
/// its own ids cannot tell another's.
#[derive(Clone)]
pub struct Ids {
    prefix: Arc<str>,
    made: Arc<AtomicU64>,
    keyed: std::collections::hash_map::RandomState,
}

impl Default for Ids {
    /// Ids with a prefix of their own, from the clock and 64 random bits:
    /// unique across runs and machines, and not to be guessed from
    /// another's.
    fn default() -> Ids {
        let mut r = [0u8; 8];
        let _ = getrandom::fill(&mut r);
        Ids {
            prefix: format!(
                "{:x}{}",
                crate::engine::now_ms() & 0xff_ffff_ffff,
                hex::encode(r)
            )
            .into(),
            made: Arc::default(),
            keyed: std::collections::hash_map::RandomState::new(),
        }
    }
}

impl MakeRequestId for Ids {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        use std::hash::BuildHasher;
        let n = self.made.fetch_add(1, Ordering::Relaxed) + 1;
        let tag = self.keyed.hash_one(n) & 0xffff_ffff_ffff;
        let id = format!("req-{}-{n:x}.{tag:012x}", self.prefix);
        HeaderValue::try_from(id).ok().map(RequestId::new)
    }
}

/// Keeps a client's `x-request-id` only when it is a sane one — visible
/// ASCII but quotes and backslashes, at most 128 bytes, spaces around it
/// trimmed, and not `secret` (an upstream's key, which an id would echo
/// and keep) — and drops it otherwise, so that tower-http's
/// `SetRequestIdLayer`, which keeps any id it finds, puts one of ours in
/// its place.
pub fn sane_client_id(mut req: Request, secret: impl Fn(&str) -> bool) -> Request {
    let Some(given) = req.headers().get(&X_REQUEST_ID) else {
        return req;
    };
    let bytes = given.as_bytes();
    let trimmed = bytes.trim_ascii();
    let sane = !trimmed.is_empty()
        && trimmed.len() <= MAX_CLIENT_ID
        && trimmed
            .iter()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'\\'))
        && std::str::from_utf8(trimmed).is_ok_and(|id| !secret(id));
    if !sane {
        req.headers_mut().remove(&X_REQUEST_ID);
    } else if trimmed.len() != bytes.len() {
        match HeaderValue::from_bytes(trimmed) {
            Ok(v) => req.headers_mut().insert(X_REQUEST_ID, v),
            Err(_) => req.headers_mut().remove(&X_REQUEST_ID),
        };
    }
    req
}

/// A request's id, as text: every id that reaches a handler is visible
/// ASCII.
pub fn id_text(id: &RequestId) -> &str {
    id.header_value().to_str().unwrap_or("-")
}

/// `route` with tower-http's body cap: a body declared larger than `cap`
/// (`Content-Length`) is refused at once, unread, and one sent without a
/// length fails as it grows past `cap` while the handler reads it
/// ([`super::state::App::read_body`]); both are 413 `body_too_large` in
/// OpenAI's shape.
pub fn capped<S>(route: MethodRouter<S>, cap: u64) -> MethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    let limit = usize::try_from(cap).unwrap_or(usize::MAX);
    route.layer(
        ServiceBuilder::new()
            .map_response(move |r| in_openai_shape(r, cap))
            .layer(RequestBodyLimitLayer::new(limit)),
    )
}

/// tower-http's own refusal (plain text) as llmroute's; other answers as
/// they are.
fn in_openai_shape(resp: Response<ResponseBody<Body>>, cap: u64) -> Response {
    let plain = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/plain"));
    if resp.status() == StatusCode::PAYLOAD_TOO_LARGE && plain {
        return ApiError::too_large(cap).into_response();
    }
    resp.map(Body::new)
}

/// How many requests of the endpoints that work on tokio's blocking
/// threads (the dashboard's drawings, `/cache/stats`, `/v1/key`) run at
/// once. Far more than people watching need; past it a flood of them is
/// refused, so that it never takes the threads the store's writer and key
/// lookups use.
pub const BLOCKING_AT_ONCE: usize = 16;

/// tower's load shedding over one concurrency limit shared by every route
/// it is put on: a request past the limit is refused at once, 503
/// `overloaded` with `Retry-After: 1`, never queued.
#[derive(Clone)]
pub struct Shed(GlobalConcurrencyLimitLayer);

impl Shed {
    pub fn new(at_once: usize) -> Shed {
        Shed(GlobalConcurrencyLimitLayer::new(at_once))
    }

    /// `route`, within the limit.
    pub fn on<S>(&self, route: MethodRouter<S>) -> MethodRouter<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        route.layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(overloaded))
                .load_shed()
                .layer(self.0.clone()),
        )
    }
}

/// The refusal of a request shed (the routes under it fail in no other way).
async fn overloaded(_: BoxError) -> Response {
    ApiError::busy().into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;
    use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};

    /// The id a handler sees and the one sent back, for a request with
    /// `given` as its `x-request-id`.
    async fn ids(given: Option<HeaderValue>) -> (String, String) {
        let service = ServiceBuilder::new()
            .map_request(|req| sane_client_id(req, |id| id == "sk-secret-key"))
            .layer(SetRequestIdLayer::new(X_REQUEST_ID, Ids::default()))
            .layer(PropagateRequestIdLayer::new(X_REQUEST_ID))
            .service_fn(|req: Request| async move {
                let seen = req.extensions().get::<RequestId>().map(id_text);
                let body = Body::from(seen.unwrap_or("none").to_string());
                Ok::<_, std::convert::Infallible>(Response::new(body))
            });
        let mut req = Request::new(Body::empty());
        if let Some(v) = given {
            req.headers_mut().insert(X_REQUEST_ID, v);
        }
        let resp = service.oneshot(req).await.unwrap();
        let sent = resp.headers()[X_REQUEST_ID].to_str().unwrap().to_string();
        let body = axum::body::to_bytes(resp.into_body(), 1024).await.unwrap();
        (String::from_utf8(body.to_vec()).unwrap(), sent)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_sane_client_id_is_kept_and_any_other_replaced() {
        let kept = |s: &'static str| Some(HeaderValue::from_static(s));
        assert_eq!(
            ids(kept("mine-1")).await,
            ("mine-1".into(), "mine-1".into())
        );
        assert_eq!(ids(kept("  mine-2 ")).await.0, "mine-2");
        let long = "a".repeat(MAX_CLIENT_ID);
        let given = Some(HeaderValue::from_str(&long).unwrap());
        assert_eq!(ids(given).await.0, long);
        for given in [
            None,
            kept(""),
            kept("two words"),
            // Quotes would let an id pass for more than one field of a
            // text log line.
            kept(r#"x"key="admin"status=200"#),
            kept(r"back\slash"),
            Some(HeaderValue::from_str(&"a".repeat(MAX_CLIENT_ID + 1)).unwrap()),
            Some(HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap()),
            // An id would echo the key, and keep it.
            kept("sk-secret-key"),
        ] {
            let (seen, sent) = ids(given.clone()).await;
            assert!(seen.starts_with("req-"), "{given:?}: {seen}");
            assert_eq!(seen, sent);
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn past_the_limit_requests_are_shed_not_queued() {
        use axum::routing::get;
        let (entered, release) = (
            Arc::new(tokio::sync::Notify::new()),
            Arc::new(tokio::sync::Semaphore::new(0)),
        );
        let (e, r) = (entered.clone(), release.clone());
        let slow = get(move || async move {
            e.notify_one();
            let _ = r.acquire().await;
            "done"
        });
        let shed = Shed::new(1);
        let app = axum::Router::new()
            .route("/slow", shed.on(slow))
            .route("/other", shed.on(get(|| async { "other" })));
        let call = |path: &str| {
            app.clone()
                .oneshot(Request::get(path).body(Body::empty()).unwrap())
        };
        let first = tokio::spawn(call("/slow"));
        entered.notified().await;
        // The limit is shared by the routes under it.
        let shed = call("/other").await.unwrap();
        assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(shed.headers()[header::RETRY_AFTER], "1");
        let body = axum::body::to_bytes(shed.into_body(), 4096).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], "overloaded");
        release.add_permits(8);
        assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::OK);
        assert_eq!(call("/other").await.unwrap().status(), StatusCode::OK);
    }

    #[test]
    fn ids_of_ours_count_up() {
        let mut ids = Ids::default();
        let req = axum::http::Request::new(());
        let a = ids.make_request_id(&req).unwrap();
        let b = ids.make_request_id(&req).unwrap();
        assert!(id_text(&a).starts_with("req-") && id_text(&a).contains("-1."));
        assert!(id_text(&b).contains("-2."));
        // The tags of one process's ids are not one from the next.
        let tag = |id: &RequestId| id_text(id).rsplit('.').next().unwrap().to_string();
        assert_ne!(tag(&a), tag(&b));
        assert_eq!(tag(&a).len(), 12);
        // Another process's (or machine's, in the same millisecond) differ,
        // and no one guesses them from one's own.
        let c = Ids::default().make_request_id(&req).unwrap();
        assert_ne!(id_text(&a), id_text(&c));
        assert!(
            id_text(&c).len() >= "req-".len() + 16 + 2,
            "{}",
            id_text(&c)
        );
    }
}
