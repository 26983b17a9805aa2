//! The endpoints beside chat completions: the model list, a decision
//! without a call (`/route`), liveness and readiness, the cache, metrics.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Map, Value};

use super::call::parse_call;
use super::errors::ApiError;
use super::keys::Caller;
use super::policy::priority_names;
use super::state::App;
use crate::core::catalogue::Origin;
use crate::core::numbers::{round_ms, round_score};
use crate::core::request::Request;
use crate::core::request::ROUTE_PREFIX;
use crate::engine::Decision;
use crate::store::Store;

/// `GET /v1/models`: the candidates and fallback models in OpenAI's list
/// shape, with each one's score for a short request, latency estimate,
/// state and prices; then `llmroute/auto` and the priorities a client
/// can name as its model.
pub async fn models(
    State(app): State<Arc<App>>,
    Extension(Caller(client)): Extension<Caller>,
) -> Response {
    let policy = client.as_deref().map(|c| &c.policy);
    Json(json!({"object": "list", "data": listing(&app, policy)})).into_response()
}

/// `GET /v1/models/{id}` (the OpenAI clients' `models.retrieve`): one model
/// of the list, or of the catalogue; 404 in OpenAI's shape otherwise.
pub async fn model(
    State(app): State<Arc<App>>,
    Extension(Caller(client)): Extension<Caller>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    let policy = client.as_deref().map(|c| &c.policy);
    // `auto`, which a chat request may name, is listed as `llmroute/auto`.
    let listed = match crate::core::request::model_choice(Some(&id)) {
        crate::core::request::ModelChoice::Auto => "llmroute/auto".to_string(),
        _ => id.clone(),
    };
    if let Some(m) = listing(&app, policy)
        .into_iter()
        .find(|m| m["id"] == listed.as_str())
    {
        return Json(m).into_response();
    }
    // A key sees only what it may name.
    let allowed = policy.is_none_or(|p| p.allows_model(&id)) && !id.starts_with(ROUTE_PREFIX);
    match app.router.catalogue().get(&id).filter(|_| allowed) {
        Some(info) => Json(json!({
            "id": id,
            "object": "model",
            "created": 0,
            "owned_by": id.split('/').next().unwrap_or("unknown"),
            "pricing": {"prompt": info.prompt_price, "completion": info.completion_price},
            "context_length": info.context_length,
        }))
        .into_response(),
        None => ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "model_not_found",
            format!(
                "the model {} does not exist here",
                crate::core::failure::snippet(id.as_bytes())
            ),
        )
        .into_response(),
    }
}

/// What `/v1/models` lists: the candidates and fallback models, then the
/// `llmroute/...` names that choose a priority; for a key, only those it
/// may name.
fn listing(app: &App, policy: Option<&crate::core::keys::Policy>) -> Vec<Value> {
    let may_use = |m: &str| policy.is_none_or(|p| p.allows_model(m));
    let may_ask = |priority: &str| {
        policy.is_none_or(|p| {
            p.priorities.is_empty()
                || p.priorities
                    .iter()
                    .any(|a| a.eq_ignore_ascii_case(priority))
        })
    };
    let router = &app.router;
    let settings = &router.config().settings;
    let probe = probe(None);
    let decision = probe.as_ref().and_then(|r| router.decide(r).ok());
    // A candidate the budget leaves out keeps its figures, and says why.
    let figures = match decision.as_ref().is_some_and(|d| !d.excluded.is_empty()) {
        true => probe
            .as_ref()
            .and_then(|r| router.decide_unbudgeted(r).ok()),
        false => None,
    };
    let mut data = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (m, fallback) in settings
        .models
        .iter()
        .map(|m| (m, false))
        .chain(settings.fallback.iter().map(|m| (m, true)))
    {
        if !may_use(m) || !seen.insert(m.clone()) {
            continue;
        }
        data.push(model_entry(
            app,
            (m, fallback),
            decision.as_ref(),
            figures.as_ref(),
        ));
    }
    // `auto` is the server's priority, or the key's first when the key may
    // not ask for the server's.
    let auto = match policy.and_then(|p| p.priorities.first()) {
        Some(first) if !may_ask(&settings.priority) => first.clone(),
        _ => settings.priority.clone(),
    };
    // Routes go over the candidates: none is open to a key none of them is.
    if data.is_empty() {
        return data;
    }
    let mut routes = vec![("auto".to_string(), auto)];
    routes.extend(
        priority_names(router)
            .into_iter()
            .filter(|p| may_ask(p))
            .map(|p| (p.clone(), p)),
    );
    for (name, priority) in routes {
        data.push(json!({
            "id": format!("{ROUTE_PREFIX}{name}"),
            "object": "model",
            "created": 0,
            "owned_by": "llmroute",
            "priority": priority,
        }));
    }
    data
}

/// One candidate of `/v1/models`: its figures in `decision`'s ranking, or,
/// left out by the budget, in `figures` (the ranking without it), with why.
fn model_entry(
    app: &App,
    (m, fallback): (&str, bool),
    decision: Option<&crate::engine::Decision>,
    figures: Option<&crate::engine::Decision>,
) -> Value {
    fn in_ranking<'d>(
        d: Option<&'d crate::engine::Decision>,
        m: &str,
    ) -> Option<&'d crate::core::ranking::Ranked> {
        d.and_then(|d| d.ranking.iter().find(|r| r.model == m))
    }
    let ranked = in_ranking(decision, m);
    let left_out = match ranked {
        Some(_) => None,
        None => decision.and_then(|d| d.why_left_out(m)).map(str::to_string),
    };
    let shown = ranked.or(left_out.as_ref().and_then(|_| in_ranking(figures, m)));
    let state = match &left_out {
        Some(_) => Some("excluded"),
        None => ranked.and_then(|r| r.state.as_ref()).map(|s| s.0.name()),
    };
    let info = app.router.catalogue().get(m);
    let mut entry = json!({
        "id": m,
        "object": "model",
        "created": 0,
        "owned_by": m.split('/').next().unwrap_or("unknown"),
        "fallback": fallback,
        "score": ranked.map(|r| round_score(r.score)),
        "latency_ms": shown.and_then(|r| r.latency_ms).map(round_ms),
        "latency_measured": shown.map(|r| r.latency_measured),
        "state": state,
        "quality": shown.map(|r| round_score(r.quality)),
        "quality_source": shown.map(|r| r.quality_source.name()),
        "quality_events": shown.map(|r| r.quality_events),
        "pricing": {
            "prompt": info.and_then(|i| i.prompt_price),
            "completion": info.and_then(|i| i.completion_price),
        },
        "context_length": info.and_then(|i| i.context_length),
    });
    if let Some(why) = left_out {
        entry["why"] = Value::String(why);
    }
    entry
}

/// A short request, as `/v1/models` and the dashboard rank the candidates
/// for; routed with `priority` when one is given.
pub fn probe(priority: Option<&str>) -> Option<Request> {
    let mut body = json!({"messages": [{"role": "user", "content": "hello"}]});
    if let Some(p) = priority {
        body["llmroute"] = json!({ "priority": p });
    }
    parse_call(body.to_string().as_bytes(), false, None)
        .map(|c| c.req)
        .ok()
}

/// The fields of `/route`'s body that are routing settings.
const ROUTING_FIELDS: [&str; 6] = [
    "priority",
    "weights",
    "models",
    "fallback",
    "max_latency_ms",
    "max_cost_usd",
];

/// `POST /route`: what a request would be routed to, and why, without a call.
pub async fn route(
    State(app): State<Arc<App>>,
    Extension(Caller(client)): Extension<Caller>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let bytes = match app.read_body(body, app.max_body).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let value = match crate::core::surrogates::from_slice::<Value>(&bytes) {
        Ok(v) => v,
        Err(e) => {
            return ApiError::bad_request(format!("the body is not valid JSON: {e}"))
                .into_response()
        }
    };
    let Value::Object(mut obj) = value else {
        return ApiError::bad_request("the body must be a JSON object with \"messages\"")
            .into_response();
    };
    let mut routing = match obj.remove("llmroute") {
        Some(Value::Object(o)) => o,
        _ => Map::new(),
    };
    for f in ROUTING_FIELDS {
        if let Some(v) = obj.remove(f) {
            routing.insert(f.into(), v);
        }
    }
    if !routing.is_empty() {
        obj.insert("llmroute".into(), Value::Object(routing));
    }
    let key = client.as_deref().map(|c| (&*c.name, &c.policy));
    let mut call = match parse_call(Value::Object(obj).to_string().as_bytes(), false, key) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    // The task as a chat request takes it: the body's, else the header's.
    if let Err(e) = super::call::task_of(&headers).map(|t| t.map(|t| call.req.default_task(t))) {
        return e.into_response();
    }
    if let Err(e) = app.hold_to_policy(&mut call.req, key) {
        return e.into_response();
    }
    match app.router.decide(&call.req) {
        Ok(d) => Json(decision_json(&d)).into_response(),
        Err(e) => ApiError::from_ending(&e, app.retry_refused).into_response(),
    }
}

fn decision_json(d: &Decision) -> Value {
    let ranking: Vec<Value> = d
        .ranking
        .iter()
        .map(|r| {
            json!({
                "model": r.model,
                "score": round_score(r.score),
                "latency_ms": r.latency_ms.map(round_ms),
                "latency_measured": r.latency_measured,
                "cost_usd": r.cost_usd.map(crate::core::numbers::round_usd),
                "quality": round_score(r.quality),
                "quality_source": r.quality_source.name(),
                "quality_events": r.quality_events,
                "state": r.state.as_ref().map(|s| s.0.name()),
                "why": r.state.as_ref().map(|s| s.1.clone()),
            })
        })
        .collect();
    json!({
        "model": d.order.first().map(|p| &p.model),
        "priority": d.priority,
        "weights": {"latency": d.weights.latency, "cost": d.weights.cost, "quality": d.weights.quality},
        "reason": d.reason,
        "ranking": ranking,
        "order": d.order.iter().map(|p| &p.model).collect::<Vec<_>>(),
        "excluded": d.excluded.iter().map(|(m, why)| json!({"model": m, "reason": why})).collect::<Vec<_>>(),
    })
}

/// `GET /health`: the process answers.
pub async fn health(State(app): State<Arc<App>>) -> Response {
    Json(json!({"status": "ok", "uptime_s": app.started.elapsed().as_secs()})).into_response()
}

/// `GET /ready`: the store is usable, and how old the catalogue is; 503
/// when the store is not, or the API refuses the key.
pub async fn ready(State(app): State<Arc<App>>) -> Response {
    let path = app.store_path.clone();
    let store = tokio::task::spawn_blocking(move || {
        Store::open_reader(&path)
            .and_then(|s| s.ping())
            .map_err(|e| e.to_string())
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    let store = match (store, app.router.record_failure()) {
        (Ok(()), None) => Ok(()),
        (Err(e), _) | (_, Some(e)) => Err(e),
    };
    let up = app.started.elapsed();
    let (origin, age) = match app.router.catalogue().origin {
        Origin::Live => ("live", Some(up)),
        Origin::Stored { age } => ("stored", Some(age + up)),
        Origin::Embedded => ("embedded", None),
    };
    let refused = app.router.stopped();
    let ready = store.is_ok() && refused.is_none();
    // Redis down is not unready: requests are answered from local state.
    let redis = app.redis.as_ref().map(|l| {
        json!({
            "url": l.shown,
            "status": match l.status() {
                crate::shared::Status::Up => "up",
                crate::shared::Status::Down => "down, answering from local state",
            },
        })
    });
    let body = json!({
        "redis": redis,
        "ready": ready,
        "store": match &store { Ok(()) => "ok".to_string(), Err(e) => e.clone() },
        "catalogue": {"origin": origin, "age_s": age.map(|a: Duration| a.as_secs())},
        "upstream": match &refused { None => "ok".to_string(), Some(e) => format!("refused: {}", e.message) },
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// What a key made by `llmroute keys` gets from an endpoint about every key.
fn operators_only() -> Response {
    ApiError::forbidden(
        "this is for admin and trusted tokens; a key sees its own use at GET /v1/key",
    )
    .into_response()
}

/// `GET /v1/key`: the calling key's policy and what it has used and has
/// left (its budget, its requests and tokens this minute).
pub async fn key(
    State(app): State<Arc<App>>,
    Extension(Caller(client)): Extension<Caller>,
) -> Response {
    let Some(c) = client else {
        return ApiError::not_found("this server takes no tokens, so a request has no key")
            .into_response();
    };
    // Its budget may be read from the store first.
    let view =
        tokio::task::spawn_blocking(move || c.view(crate::engine::now_ms(), &app.keys.make_budget))
            .await;
    match view {
        Ok(v) => Json(v).into_response(),
        Err(_) => ApiError::internal().into_response(),
    }
}

/// `GET /cache/stats`: entries, size, and the hit rate of the last 24 hours.
pub async fn cache_stats(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if !app.operator_allowed(&headers) {
        return operators_only();
    }
    // What the writer is letting gather counts too.
    app.writer.sync().await;
    let path = app.store_path.clone();
    let since = crate::engine::now_ms() - 86_400_000;
    let stats = tokio::task::spawn_blocking(move || {
        Store::open_reader(&path).and_then(|s| s.cache_stats(Some(since)))
    })
    .await;
    match stats {
        Ok(Ok(s)) => {
            // The names and meanings of `llmroute cache stats --json`.
            let rate = match s.lookups {
                0 => 0.0,
                n => s.hits as f64 / n as f64,
            };
            Json(json!({
                "entries": s.entries,
                "bytes": s.bytes,
                "oldest_ms": s.oldest,
                "newest_ms": s.newest,
                "since": "24h",
                "lookups": s.lookups,
                "hits": s.hits,
                "hit_rate": rate,
            }))
            .into_response()
        }
        _ => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            "store_unavailable",
            "cannot read the store",
        )
        .into_response(),
    }
}

/// `DELETE /cache` (admin tokens only): removes every cached answer.
pub async fn clear_cache(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if app.admins.is_empty() {
        return ApiError::forbidden(
            "no admin token is set: DELETE /cache needs LLMROUTE_ADMIN_TOKENS or --admin-token-file",
        )
        .into_response();
    }
    if !app.admin_allowed(&headers) {
        return ApiError::forbidden("DELETE /cache needs an admin token").into_response();
    }
    // Through the engine's cache port: the store (answers given before
    // the request, still gathering, go too) and Redis when it is shared.
    match app.router.clear_cache().await {
        Ok(n) => Json(json!({"deleted": n})).into_response(),
        Err(e) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            "store_unavailable",
            format!("cannot clear the cache: {e}"),
        )
        .into_response(),
    }
}

/// `GET /metrics`: Prometheus text.
pub async fn metrics(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if !app.operator_allowed(&headers) {
        return operators_only();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.encode(),
    )
        .into_response()
}
