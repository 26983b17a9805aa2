//! `POST /v1/chat/completions`: an OpenAI chat request, routed by the
//! engine, answered with the upstream's completion (or its stream) and
//! `x-llmroute-*` headers.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use futures_util::{FutureExt, Stream, StreamExt};
use serde_json::Value;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tower_http::request_id::RequestId;

use super::call::{asks_for_cached_samples, cache_control, parse_call, task_of};
use super::errors::ApiError;
use super::gate::Refused;
use super::keys::Caller;
use super::layers::id_text;
use super::log::Access;
use super::state::{App, Logged};
use crate::core::request::Request;
use crate::core::sse;
use crate::engine::{Outcome, RouteOptions, Routed, StreamEnd, Streaming};

/// The longest a request waits for a paused model (a rate limit, an open
/// circuit) before it is answered 429 or 502 with the pause left as its
/// `Retry-After`: a longer wait is its client's to choose.
const PATIENCE: std::num::NonZeroU16 = std::num::NonZeroU16::new(5).unwrap();

/// The headers an answer carries: names made once, not parsed each time.
const X_LLMROUTE_MODEL: HeaderName = HeaderName::from_static("x-llmroute-model");
const X_LLMROUTE_UPSTREAM: HeaderName = HeaderName::from_static("x-llmroute-upstream");
const X_LLMROUTE_SCORE: HeaderName = HeaderName::from_static("x-llmroute-score");
const X_LLMROUTE_LATENCY_MS: HeaderName = HeaderName::from_static("x-llmroute-latency-ms");
const X_LLMROUTE_CACHED: HeaderName = HeaderName::from_static("x-llmroute-cached");
const X_LLMROUTE_ATTEMPTS: HeaderName = HeaderName::from_static("x-llmroute-attempts");

pub async fn completions(
    State(app): State<Arc<App>>,
    Extension(id): Extension<RequestId>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut resp = complete(app, id, caller, headers, body).await;
    resp.extensions_mut().insert(Logged);
    resp
}

async fn complete(
    app: Arc<App>,
    id: RequestId,
    Caller(client): Caller,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let mut pending = Pending {
        app: app.clone(),
        access: Access::new(id_text(&id), "POST", "/v1/chat/completions"),
        started,
        task: None,
        answered: false,
    };
    pending.access.client = client.clone();
    // Refused at once, unread, and logged and counted as a chat request.
    if super::state::declared_too_large(&headers, app.max_body) {
        return app.refuse_early(ApiError::too_large(app.max_body), pending.take(), started);
    }
    if let Some(c) = &client {
        if let Err(e) = app.take_rate(c).await {
            return app.refuse_early(e, pending.take(), started);
        }
    }
    // The slot first, then the body: a request waiting its turn holds a
    // connection, not its body, so the queue's memory stays small however
    // long it is.
    let slot = match slot_by_deadline(&app, started).await {
        Ok(s) => s,
        Err(e) => return app.refuse_early(e, pending.take(), started),
    };
    let bytes = match app.read_body(body, app.max_body).await {
        Ok(b) => b,
        Err(e) => return app.refuse_early(e, pending.take(), started),
    };
    if app.log_bodies {
        let body = String::from_utf8_lossy(&bytes).into_owned();
        pending.access.request_body = Some(app.router.scrubbed_body(body));
    }
    let key = client.as_deref().map(|c| (&*c.name, &c.policy));
    let mut call = match parse_call(&bytes, app.use_cache, key) {
        Ok(c) => c,
        Err(e) => return app.refuse_early(e, pending.take(), started),
    };
    if let Err(e) = task_of(&headers).map(|t| t.map(|t| call.req.default_task(t))) {
        return app.refuse_early(e, pending.take(), started);
    }
    if let Err(e) = app.hold_to_policy(&mut call.req, key) {
        return app.refuse_early(e, pending.take(), started);
    }
    if let Some(c) = &client {
        match app.hold_tokens(c, &call.req) {
            Ok(held) => pending.access.held = held,
            Err(e) => return app.refuse_early(e, pending.take(), started),
        }
    }
    drop(bytes);
    call.req.id = Value::String(id_text(&id).to_string());
    if let Some(e) = app.router.stopped() {
        let e = ApiError::from_ending(&e, app.retry_refused);
        return app.refuse_early(e, pending.take(), started);
    }
    let (no_cache, no_store) = cache_control(&headers);
    // A sample is answered anew unless the server or the request says a
    // cached one will do.
    let fresh = call.sampled && !app.cache_sampled && !asks_for_cached_samples(&headers);
    let token = CancellationToken::new();
    let opts = RouteOptions {
        tag: app.next_tag(),
        skip_cache_read: no_cache || fresh,
        skip_cache_write: no_store || fresh,
        cache_scope: app.cache_scope(client.as_deref()),
        stream: call.stream,
        cancel: Some(token.clone()),
        client: client.as_ref().map(|c| c.name.clone()),
        rid: Some(id_text(&id).into()),
        allowance: client
            .as_ref()
            .and_then(|c| c.allowance(crate::engine::now_ms(), &app.keys.make_budget)),
        // The answer goes out at once; what reads records back syncs first.
        record_lazily: true,
        patience: Some(PATIENCE),
    };
    let (routed, access) = match pending.route(call.req, opts, token).await {
        Ok(r) => r,
        Err(refused) => return refused,
    };
    app.answer(
        routed,
        call.stream,
        call.include_usage,
        slot,
        access,
        started,
    )
}

/// The status of a request whose client closed the connection before its
/// answer (nginx's "client closed request").
const CLIENT_CLOSED: u16 = 499;

/// A request on its way to its answer. Dropped before it (the client
/// closed the connection, and the server dropped its handler), it logs
/// and counts the request as [`CLIENT_CLOSED`], once the routed task, if
/// there is one, has ended: its attempts count.
/// A request being routed; `Err` when routing panicked.
type Routing = Pin<Box<dyn Future<Output = std::thread::Result<Routed>> + Send>>;

struct Pending {
    app: Arc<App>,
    access: Access,
    started: Instant,
    task: Option<Routing>,
    /// An answer logs and counts the request instead.
    answered: bool,
}

/// When a request that came at `started` is past the deadline: it runs
/// from the request's arrival, so its wait for a slot counts.
fn due(app: &App, started: Instant) -> tokio::time::Instant {
    tokio::time::Instant::from_std(started + app.deadline)
}

/// A slot for a request that came at `started`, or why it gets none: the
/// queue is full, the server is closing, or its deadline passed while it
/// waited.
async fn slot_by_deadline(app: &App, started: Instant) -> Result<super::gate::Slot, ApiError> {
    match tokio::time::timeout_at(due(app, started), app.gate.enter()).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(Refused::Full)) => Err(ApiError::saturated()),
        Ok(Err(Refused::Closed)) => Err(ApiError::shutting_down()),
        Err(_) => Err(ApiError::deadline(app.deadline)),
    }
}

impl Pending {
    /// Routes `req` within the server's deadline, and takes the access line
    /// for the answer; Err: the refusal to send instead. Routed here, in a
    /// future `Pending` holds: a client that leaves drops the handler,
    /// whose guard cancels the request, and `Pending` then runs the rest of
    /// it on a task of its own, where it ends, is recorded and logged. A
    /// panic in it is answered as an error.
    async fn route(
        &mut self,
        req: Request,
        opts: RouteOptions,
        token: CancellationToken,
    ) -> Result<(Routed, Access), Response> {
        let (app, started) = (self.app.clone(), self.started);
        let router = app.router.clone();
        let task = self.task.insert(Box::pin(
            std::panic::AssertUnwindSafe(async move { router.route(&req, opts).await })
                .catch_unwind(),
        ));
        let guard = token.clone().drop_guard();
        let routed = tokio::select! {
            r = task.as_mut() => r,
            _ = tokio::time::sleep_until(due(&app, started)) => {
                token.cancel();
                // The attempts made before the deadline count, as the store
                // records them.
                if let Ok(r) = task.as_mut().await {
                    self.access.attempts = r.attempts.len();
                    self.access.model = r.attempts.last().map(|t| t.model.clone());
                    self.access.tried = r.attempts;
                }
                drop(guard);
                let tried = (self.access.model.clone(), self.access.attempts);
                let mut resp = app.refuse(ApiError::deadline(app.deadline), self.take(), started);
                say_tried(&mut resp, tried);
                return Err(resp);
            }
        };
        guard.disarm();
        self.task = None;
        let access = self.take();
        match routed {
            Ok(r) => Ok((r, access)),
            Err(_) => Err(app.refuse(ApiError::internal(), access, started)),
        }
    }

    /// The access line, for the answer to write.
    fn take(&mut self) -> Access {
        self.answered = true;
        std::mem::take(&mut self.access)
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        let mut access = std::mem::take(&mut self.access);
        access.error = Some("the client closed the request before its answer".into());
        let (app, started) = (self.app.clone(), self.started);
        let task = self.task.take();
        let handle = tokio::runtime::Handle::try_current();
        match (task, handle) {
            (Some(task), Ok(handle)) => {
                handle.spawn(async move {
                    if let Ok(r) = task.await {
                        access.attempts = r.attempts.len();
                        // Named by the model that answered, or else the
                        // one it was last sent to, as an error after
                        // attempts is.
                        let answered = match &r.outcome {
                            Outcome::Answered(a) | Outcome::Cached(a) => Some(a.model.clone()),
                            _ => None,
                        };
                        access.model = answered
                            .or_else(|| r.attempts.last().map(|t| t.model.clone()))
                            .or(access.model.take());
                        access.tried = r.attempts;
                    }
                    app.done(&mut access, CLIENT_CLOSED, started);
                });
            }
            _ => app.done(&mut access, CLIENT_CLOSED, started),
        }
    }
}

impl App {
    /// The response to a routed request.
    fn answer(
        self: &Arc<App>,
        mut routed: Routed,
        stream: bool,
        include_usage: bool,
        slot: super::gate::Slot,
        mut access: Access,
        started: Instant,
    ) -> Response {
        let attempts = routed.attempts.len();
        let latency_ms = routed.latency_ms;
        access.attempts = attempts;
        access.tried = std::mem::take(&mut routed.attempts);
        let headers = |model: &str, score: Option<f64>, cached: bool| {
            let mut h = HeaderMap::with_capacity(8);
            let mut put = |k: &HeaderName, v: HeaderValue| {
                h.insert(k.clone(), v);
            };
            if let Ok(v) = HeaderValue::from_str(model) {
                put(&X_LLMROUTE_MODEL, v);
            }
            if !self.upstreams.is_empty() {
                let label = crate::upstreams::label(model, &self.upstreams);
                if let Ok(v) = HeaderValue::from_str(&label) {
                    put(&X_LLMROUTE_UPSTREAM, v);
                }
            }
            // The formatted text becomes the value as it is, uncopied.
            let text = |v: String| HeaderValue::try_from(v).expect("a number is a header value");
            if let Some(s) = score {
                put(&X_LLMROUTE_SCORE, text(format!("{s:.4}")));
            }
            put(&X_LLMROUTE_LATENCY_MS, text(format!("{latency_ms:.1}")));
            put(
                &X_LLMROUTE_CACHED,
                HeaderValue::from_static(if cached { "true" } else { "false" }),
            );
            put(&X_LLMROUTE_ATTEMPTS, HeaderValue::from(attempts));
            h
        };
        let cost = routed.cost_usd();
        let cached = matches!(routed.outcome, Outcome::Cached(_));
        match routed.outcome {
            Outcome::Answered(a) | Outcome::Cached(a) => {
                let whole = Whole {
                    stream,
                    include_usage,
                };
                self.whole(a, cached, cost, whole, headers, slot, access, started)
            }
            Outcome::Streaming(mut s) => {
                let h = headers(s.model(), s.score(), false);
                access.model = Some(s.model().to_string());
                s.include_usage(include_usage);
                let app = self.clone();
                s.on_end(Box::new(move |end: &StreamEnd| {
                    app.stream_ended(end, access, started);
                }));
                self.metrics
                    .duration
                    .get_or_create(&super::metrics::CachedLabels { cached: false })
                    .observe(started.elapsed().as_secs_f64());
                let body = StreamBody {
                    stream: s,
                    cut: Some(Box::pin(self.cut.clone().cancelled_owned())),
                    _slot: slot,
                };
                let body = super::unread::Unread::new(body, self.send_timeout);
                (h, sse_response(Body::from_stream(body))).into_response()
            }
            Outcome::Failed(e) => {
                drop(slot);
                self.failed(&e, access, started)
            }
            Outcome::Planned(_) | Outcome::Unsent => {
                drop(slot);
                self.refuse(ApiError::shutting_down(), access, started)
            }
        }
    }

    /// The error of a request routed to no answer, with what was tried in
    /// its headers as an answer has them.
    fn failed(
        &self,
        e: &crate::core::attempts::Ending,
        mut access: Access,
        started: Instant,
    ) -> Response {
        // Its access line names the model it last tried.
        access.model = access.tried.last().map(|t| t.model.clone());
        // Cut off by the server's stop (or its client leaving): a
        // retry, elsewhere or once it is back, may well be answered.
        let mut err = match e.kind {
            crate::core::failure::error_type::INTERRUPTED => ApiError::shutting_down(),
            _ => ApiError::from_ending(e, self.retry_refused),
        };
        if let Some(c) = access.client.as_ref() {
            if e.kind == crate::core::failure::error_type::KEY_BUDGET_EXCEEDED {
                self.metrics.key_refused(&c.name, "budget");
            }
            err.retry_after = err.retry_after.or(super::quota::key_budget_retry(e, c));
        }
        let tried = (access.model.clone(), access.attempts);
        let mut resp = self.refuse(err, access, started);
        say_tried(&mut resp, tried);
        resp
    }

    /// A whole answer: as JSON, or replayed as a stream to a client that
    /// asked for one.
    #[allow(clippy::too_many_arguments)]
    fn whole(
        &self,
        a: crate::engine::ports::Answer,
        cached: bool,
        cost: Option<f64>,
        Whole {
            stream,
            include_usage,
        }: Whole,
        headers: impl Fn(&str, Option<f64>, bool) -> HeaderMap,
        slot: super::gate::Slot,
        mut access: Access,
        started: Instant,
    ) -> Response {
        let h = headers(&a.model, a.score, cached);
        self.metrics.spent(cost.filter(|_| !cached));
        access.model = Some(a.model.clone());
        access.cached = cached;
        access.cost_usd = cost;
        access.prompt_tokens = a.prompt_tokens;
        access.completion_tokens = a.completion_tokens;
        let body = if stream {
            let completion: Value = serde_json::from_str(&a.response).unwrap_or(Value::Null);
            let events = sse::replay(&completion, include_usage);
            (h, sse_response(Body::from(events)))
        } else {
            if self.log_bodies {
                access.response_body = Some(a.response.clone());
            }
            (
                h,
                (
                    [(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    )],
                    a.response,
                )
                    .into_response(),
            )
        };
        self.done(&mut access, 200, started);
        drop(slot);
        body.into_response()
    }

    fn stream_ended(&self, end: &StreamEnd, mut access: Access, started: Instant) {
        self.metrics
            .ttft
            .get_or_create(&super::metrics::ModelLabels {
                model: self.metrics.model_label(&end.model),
            })
            .observe(end.ttft_ms / 1000.0);
        self.metrics.spent(end.cost_usd);
        if let Some(kind) = end.error_kind.filter(|k| *k != "interrupted") {
            self.metrics
                .upstream_errors
                .get_or_create(&super::metrics::ErrorLabels {
                    model: self.metrics.model_label(&end.model),
                    kind: kind.to_string(),
                })
                .inc();
        }
        access.cost_usd = end.cost_usd;
        access.ttft_ms = Some(end.ttft_ms);
        access.error = end.error.clone();
        access.prompt_tokens = end.prompt_tokens;
        access.completion_tokens = end.completion_tokens;
        let status = 200;
        self.metrics
            .requests
            .get_or_create(&super::metrics::RequestLabels {
                status,
                model: self.metrics.model_label(&end.model),
                cached: false,
            })
            .inc();
        if let Some(c) = access.client.clone() {
            self.key_used(&c, status, &access);
        }
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        // A stream cut short is an error, though its status was 200, as
        // the store records it: one its client left shows as 499.
        let shown = match (end.ok, end.error_kind) {
            (true, _) => status,
            // Cut by the server's stop, not by its client.
            (false, Some("interrupted")) if self.cut.is_cancelled() => 503,
            (false, Some("interrupted")) => CLIENT_CLOSED,
            (false, _) => 502,
        };
        self.live.ended(ended(&mut access, shown, ms));
        access.log(status, ms);
    }

    /// Counts and logs a request answered.
    fn done(&self, access: &mut Access, status: u16, started: Instant) {
        let secs = started.elapsed().as_secs_f64();
        if let Some(c) = access.client.clone() {
            self.key_used(&c, status, access);
        }
        self.metrics
            .answered(status, access.model.as_deref(), access.cached, secs);
        self.live.ended(ended(access, status, secs * 1000.0));
        access.log(status, secs * 1000.0);
    }

    /// [`Self::refuse`] for a request refused before the engine saw it
    /// (which records every request it routes): it is recorded here, with
    /// its key's name if it has one, so that `report` counts the refusals
    /// the dashboard and `/metrics` count; an overloaded or stopping
    /// server records none.
    pub fn refuse_early(&self, e: ApiError, access: Access, started: Instant) -> Response {
        let busy = matches!(e.code, "overloaded" | "shutting_down");
        if !busy {
            let id = Value::String(access.id.clone());
            let key = access.client.as_ref().map(|c| c.name.clone());
            self.router
                .record_refused_for(self.next_tag(), &id, e.code, key);
        }
        self.refuse(e, access, started)
    }

    /// An error answer, counted and logged.
    pub fn refuse(&self, e: ApiError, mut access: Access, started: Instant) -> Response {
        access.error = Some(e.message.clone());
        self.done(&mut access, e.status.as_u16(), started);
        e.into_response()
    }
}

/// The headers of an error after routing: the model last tried, and the
/// attempts made, as an answer has them.
fn say_tried(resp: &mut Response, (model, attempts): (Option<String>, usize)) {
    let h = resp.headers_mut();
    if let Some(v) = model.and_then(|m| HeaderValue::from_str(&m).ok()) {
        h.insert(X_LLMROUTE_MODEL, v);
    }
    h.insert(X_LLMROUTE_ATTEMPTS, HeaderValue::from(attempts));
}

/// A request as the dashboard counts it.
fn ended(access: &mut Access, status: u16, latency_ms: f64) -> super::live::Ended {
    super::live::Ended {
        at_ms: crate::engine::now_ms(),
        status,
        model: access.model.clone(),
        latency_ms,
        cached: access.cached,
        attempts: access.attempts,
        tried: std::mem::take(&mut access.tried),
        cost_usd: access.cost_usd,
        prompt_tokens: access.prompt_tokens,
        completion_tokens: access.completion_tokens,
    }
}

/// How a client asked for its answer.
struct Whole {
    stream: bool,
    include_usage: bool,
}

/// A stream's body. It holds the stream's upstream slot until it ends, and
/// ends it, with an `error` event, when the grace period of a stop ends
/// ([`App::cut`]). It is let go of when its client stops taking it
/// ([`super::unread`]).
struct StreamBody {
    stream: Box<Streaming>,
    cut: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    _slot: super::gate::Slot,
}

impl Stream for StreamBody {
    type Item = Bytes;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this
            .cut
            .as_mut()
            .is_some_and(|c| c.as_mut().poll(cx).is_ready())
        {
            this.cut = None;
            let e = ApiError::shutting_down();
            let last = sse::frame(&e.body().to_string());
            this.stream.stop(&e.message, Bytes::from(last));
        }
        this.stream.poll_next_unpin(cx)
    }
}

/// A server-sent events response.
fn sse_response(body: Body) -> Response {
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}
