//! `POST /v1/feedback`: feedback on answers this server gave, by request
//! id (`x-request-id`), one object or an array of them. A key judges its
//! own requests only: another key's request is as unknown as one that
//! never was.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Value};

use super::errors::ApiError;
use super::keys::Caller;
use super::state::App;
use crate::core::learned::{only_fields, score_of, weight_of, FEEDBACK_FIELDS};
use crate::shared::requests::UNREACHED;
use crate::store::learned::{Applied, Feedback, Judge, UNKNOWN};

/// Most feedback objects in one body.
pub const MOST: usize = 1000;

/// One feedback object, as this machine's store took it.
enum Outcome {
    /// Taught: what to answer, and the event, to share through Redis.
    Taken(Value, Feedback, Applied, i64),
    /// No request with its id here (or not the key's): with Redis, it
    /// may be another machine's answer.
    Unknown(Feedback, String),
    /// Refused: its request id (if any) and why.
    Refused(Option<Value>, String),
}

type Answered = Result<Value, (Option<Value>, String)>;

impl Outcome {
    /// Its answer, as this machine's store alone gives it.
    fn unshared(self) -> Answered {
        match self {
            Outcome::Taken(v, ..) => Ok(v),
            Outcome::Unknown(f, e) => Err((Some(Value::String(f.rid)), e)),
            Outcome::Refused(rid, e) => Err((rid, e)),
        }
    }
}

/// Shares what feedback taught through Redis, when the server uses it,
/// and takes there feedback on the other machines' answers: what all
/// machines learned then comes back to this one's book.
async fn share(
    app: &App,
    identity: &str,
    key: Option<&str>,
    results: Vec<Outcome>,
) -> Vec<Answered> {
    let Some(link) = &app.redis else {
        return results.into_iter().map(Outcome::unshared).collect();
    };
    let book = app.router.learned();
    let own = crate::shared::keys::upstream(&link.prefix, identity);
    let hl = book.half_life_ms;
    let mut out = Vec::with_capacity(results.len());
    for r in results {
        out.push(match r {
            Outcome::Taken(mut v, f, a, now) => {
                let id = ((a.key.as_deref(), &*f.rid), &*a.upstream);
                let scored = (f.score, f.weight, a.replaced_event);
                let at = (&*a.task, &*a.model);
                let shared =
                    crate::shared::requests::teach_held(link, id, at, scored, (now, hl)).await;
                if shared.is_none() {
                    // Taken here; every machine learns it once Redis answers.
                    let held = (a.upstream == identity)
                        .then(|| book.hold(&a.task, &a.model, (f.score, f.weight), now));
                    let gone = app.unshared.keep(super::unshared::Event {
                        key: a.key.clone(),
                        rid: f.rid.to_string(),
                        upstream: a.upstream.clone(),
                        task: a.task.clone(),
                        model: a.model.clone(),
                        scored,
                        at_ms: now,
                        held,
                    });
                    // Never to be shared: the book's count of it stands.
                    if let Some(n) = gone.and_then(|g| g.held) {
                        book.release(n, false);
                    }
                }
                if let Some((p, replaced)) = shared {
                    if a.upstream == identity {
                        book.set_shared(&a.task, &a.model, p);
                    }
                    // Feedback taken on another machine was replaced too,
                    // and every machine's events count.
                    if replaced {
                        v["replaced"] = Value::Bool(true);
                    }
                    v["quality_events"] = p.events.into();
                }
                Ok(v)
            }
            Outcome::Unknown(f, e) => {
                let now = crate::engine::now_ms();
                let bucket = |t: &str| book.bucket(t).to_string();
                let scored = (f.score, f.weight);
                let id = (key, &*f.rid);
                match crate::shared::requests::teach_elsewhere(link, id, scored, (now, hl), bucket)
                    .await
                {
                    Ok(Some(t)) => {
                        if t.scope == own {
                            book.set_shared(&t.task, &t.model, t.posterior);
                        }
                        Ok(json!({
                            "request_id": f.rid, "task": t.task, "model": t.model,
                            "replaced": t.replaced, "quality_events": t.posterior.events,
                        }))
                    }
                    Ok(None) => Err((Some(Value::String(f.rid)), e)),
                    Err(_) => Err((Some(Value::String(f.rid)), format!("{e}; {UNREACHED}"))),
                }
            }
            refused => refused.unshared(),
        });
    }
    out
}

/// Offers the events kept for Redis ([`super::unshared`]) to it, in order,
/// every second, until the task is dropped; an event Redis does not take
/// waits for the next turn.
pub async fn share_kept(app: Arc<App>) {
    let Some(link) = app.redis.clone() else {
        return;
    };
    let identity = app.router.config().upstream.clone();
    let mut tick = tokio::time::interval(super::unshared::EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let mut shared = 0u64;
        while let Some(e) = app.unshared.first() {
            let book = app.router.learned();
            let id = ((e.key.as_deref(), e.rid.as_str()), e.upstream.as_str());
            let at = (e.task.as_str(), e.model.as_str());
            let hl = (e.at_ms, book.half_life_ms);
            match crate::shared::requests::teach_held(&link, id, at, e.scored, hl).await {
                Some((p, _)) => {
                    if let Some(n) = e.held {
                        book.release(n, true);
                    }
                    if e.upstream == identity {
                        book.set_shared(&e.task, &e.model, p);
                    }
                    app.unshared.done();
                    shared += 1;
                }
                None => break,
            }
        }
        if shared > 0 {
            tracing::info!(
                "shared through Redis {} taken while it did not answer",
                crate::core::numbers::counted(shared, "feedback event")
            );
        }
    }
}

/// Reads one feedback object.
fn item(v: &Value) -> Result<Feedback, String> {
    let Value::Object(o) = v else {
        return Err("feedback must be an object {\"request_id\", \"score\"}".into());
    };
    only_fields(o, FEEDBACK_FIELDS)?;
    let rid = match o.get("request_id") {
        Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= 256 => s.trim().to_string(),
        _ => return Err("\"request_id\" must be a request's id (its x-request-id)".into()),
    };
    Ok(Feedback {
        rid,
        score: score_of(o.get("score").unwrap_or(&Value::Null))?,
        weight: weight_of(o.get("weight"))?,
    })
}

pub async fn feedback(
    State(app): State<Arc<App>>,
    Extension(Caller(client)): Extension<Caller>,
    body: Body,
) -> Response {
    use crate::core::keys::FeedbackUse;
    if let Some(c) = client
        .as_ref()
        .filter(|c| c.policy.feedback == FeedbackUse::Off)
    {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            "feedback_not_allowed",
            format!(
                "key {} gives no feedback: it was made with --feedback off",
                c.name
            ),
        )
        .into_response();
    }
    let bytes = match app.read_body(body, app.max_body).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let value: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => {
            return ApiError::bad_request(format!("the body is not JSON: {e}")).into_response()
        }
    };
    let (one, items) = match value {
        Value::Array(a) if a.len() > MOST => {
            return ApiError::bad_request(format!("at most {MOST} feedback objects a request"))
                .into_response()
        }
        Value::Array(a) => (false, a),
        other => (true, vec![other]),
    };
    // The answers are recorded as they are given: what the writer holds
    // is written first, so feedback right after an answer finds it.
    app.writer.sync().await;
    let path = app.store_path.clone();
    let upstream = app.router.config().upstream.clone();
    let key = client.as_ref().map(|c| c.name.to_string());
    let judge_key = key.clone();
    let book = app.router.learned().clone();
    let identity = upstream.clone();
    let taken = tokio::task::spawn_blocking(move || {
        let mut store = crate::store::Store::open(&path)?;
        store.set_upstream(&upstream);
        take_in(&store, &items, key.as_deref(), &book)
    })
    .await;
    let results = match taken {
        Ok(Ok(r)) => share(&app, &identity, judge_key.as_deref(), r).await,
        Ok(Err(e)) => {
            tracing::error!("cannot take feedback in: {e}");
            return ApiError::internal().into_response();
        }
        Err(_) => return ApiError::internal().into_response(),
    };
    match one {
        true => answer_one(results.into_iter().next()),
        false => answer_many(results),
    }
}

/// Takes `items` in, in one transaction, as `key` may judge them, into
/// the store and, for this server's upstream, the book.
fn take_in(
    store: &crate::store::Store,
    items: &[Value],
    key: Option<&str>,
    book: &crate::engine::learned::QualityBook,
) -> Result<Vec<Outcome>, crate::store::StoreError> {
    let tx = store.write_transaction()?;
    let now = crate::engine::now_ms();
    let mut out = Vec::with_capacity(items.len());
    let mut taught = crate::store::learned::Taught::default();
    for v in items {
        let f = match item(v) {
            Ok(f) => f,
            Err(e) => {
                out.push(Outcome::Refused(v.get("request_id").cloned(), e));
                continue;
            }
        };
        match store.apply_feedback_in(&f, Judge::Key(key), (now, book.half_life_ms), &mut taught)? {
            Ok(a) => {
                // The book holds this server's upstream only. With Redis,
                // this store's posterior holds this server's feedback alone,
                // fewer events than the book has from every machine: it
                // stands only where the book knows less (Redis lost it).
                if a.upstream == store.upstream() {
                    book.set_shared(&a.task, &a.model, a.posterior);
                }
                let v = json!({
                    "request_id": f.rid, "task": a.task, "model": a.model,
                    "replaced": a.replaced, "quality_events": a.posterior.events,
                });
                out.push(Outcome::Taken(v, f, a, now));
            }
            Err(e) if e.starts_with(UNKNOWN) => out.push(Outcome::Unknown(f, e)),
            Err(e) => out.push(Outcome::Refused(Some(Value::String(f.rid)), e)),
        }
    }
    store.keep_taught(taught)?;
    tx.commit()?;
    Ok(out)
}

/// The answer to one feedback object: what it taught, or its error.
fn answer_one(result: Option<Answered>) -> Response {
    match result {
        Some(Ok(v)) => Json(v).into_response(),
        Some(Err((_, e))) if e.ends_with(UNREACHED) => ApiError {
            retry_after: Some(1),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                "redis_unavailable",
                e,
            )
        }
        .into_response(),
        Some(Err((_, e))) => {
            let status = match e.starts_with(UNKNOWN) {
                true => StatusCode::NOT_FOUND,
                false => StatusCode::BAD_REQUEST,
            };
            let mut err = ApiError::bad_request(e);
            err.status = status;
            err.code = "invalid_feedback";
            err.into_response()
        }
        None => ApiError::internal().into_response(),
    }
}

/// The answer to an array: how many were taken, and each one's result.
fn answer_many(results: Vec<Answered>) -> Response {
    let taken = results.iter().filter(|r| r.is_ok()).count();
    let shown: Vec<Value> = results
        .into_iter()
        .map(|r| match r {
            Ok(v) => v,
            // As one object's would be: to try again, or not.
            Err((rid, e)) if e.ends_with(UNREACHED) => json!({
                "request_id": rid,
                "error": {"message": e, "type": "service_unavailable", "param": null, "code": "redis_unavailable"},
            }),
            Err((rid, e)) => json!({
                "request_id": rid,
                "error": {"message": e, "type": "invalid_request_error", "param": null, "code": "invalid_feedback"},
            }),
        })
        .collect();
    // Each result echoes what its object gave as its request id.
    let body = json!({"taken": taken, "results": shown}).to_string();
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        super::redact::clean(&body).into_owned(),
    )
        .into_response()
}
