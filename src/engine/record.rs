//! How a request ends, and what it leaves behind: an answer recorded with
//! its cache entry and shown once durable, a failure recorded and shown at
//! once, a cached answer, and the rows of the store for each.

use std::time::Instant;

use serde_json::Value;

use super::flight::Leader;
use super::ports::{Answer, AttemptRow, CacheEntry, Record, RequestRow};
use super::{ms_since, now_ms, Attempt, Outcome, RouteOptions, Routed, Router};
use crate::core::attempts::{Ending, Planned};
use crate::core::cachekey::Key;
use crate::core::failure::{Failure, Success, Usage};
use crate::core::ranking::{self, Settings};
use crate::core::request::Request;

/// One request on its way through the engine.
pub(super) struct Job<'a> {
    pub req: &'a Request,
    pub opts: RouteOptions,
    pub settings: &'a Settings,
    /// The request's own priority, when its routing is its own.
    pub priority: Option<String>,
    /// Its cache key, when it uses the cache.
    pub key: Option<Key>,
    pub started: Instant,
}

impl Job<'_> {
    /// The key to keep its answer under, unless the client said not to.
    pub fn write_key(&self) -> Option<Key> {
        self.key.filter(|_| !self.opts.skip_cache_write)
    }
}

/// What a request's attempts have left so far.
#[derive(Default)]
pub(super) struct Tried {
    pub attempts: Vec<Attempt>,
    pub rows: Vec<AttemptRow>,
    pub cooldowns: Vec<(String, i64, super::ports::Pause)>,
    /// What budgets were charged for the attempts so far (see
    /// [`RequestRow::charged_usd`]).
    pub charged: Option<f64>,
    /// When each of `attempts` was sent: they come back in the order they
    /// end (a hedge may fail before the attempt it hedged answers), and
    /// are listed in the order they were sent.
    pub sent: Vec<std::time::Instant>,
}

impl Router {
    /// An answer from a model: recorded (with the cache entry), then shown
    /// once durable.
    pub(super) fn answered(
        &self,
        job: &Job<'_>,
        planned: &Planned,
        s: Success,
        (ms, ts, cost_usd, sent): (f64, i64, Option<f64>, std::time::Instant),
        mut tried: Tried,
        leader: Option<Leader<'_>>,
    ) -> Routed {
        tried.sent.push(sent);
        tried.attempts.push(Attempt {
            model: planned.model.clone(),
            status: Some(s.status),
            error: None,
            latency_ms: ms,
        });
        let answer = Answer {
            model: planned.model.clone(),
            response: s.body,
            content: s.content,
            cost_usd,
            prompt_tokens: s.usage.prompt_tokens,
            completion_tokens: s.usage.completion_tokens,
            score: planned.score,
            created_at: ts,
        };
        tried.rows.push(AttemptRow {
            ts,
            model: answer.model.clone(),
            status: Some(s.status),
            ok: true,
            cached: false,
            latency_ms: Some(ms),
            prompt_tokens: answer.prompt_tokens,
            completion_tokens: answer.completion_tokens,
            cost_usd,
            score: answer.score,
            error_type: None,
            ttft_ms: None,
        });
        tried.in_sent_order();
        let latency_ms = ms_since(job.started);
        let record = Record {
            cache: job.write_key().map(|key| CacheEntry {
                key,
                answer: answer.clone(),
            }),
            request: Some(RequestRow {
                charged_usd: tried.charged.or(cost_usd),
                ..request_row(
                    job,
                    Some(&answer),
                    cost_usd,
                    latency_ms,
                    tried.attempts.len(),
                    None,
                )
            }),
            attempts: tried.rows,
            cooldowns: tried.cooldowns,
            priority: job.priority.clone(),
            hit: None,
        };
        let commit = if job.opts.record_lazily {
            self.parts.recorder.record(record);
            None
        } else {
            Some(self.parts.recorder.record_durable(record))
        };
        if let Some(l) = leader {
            // After the record is queued: the followers' records come after it.
            l.publish(answer.clone());
        }
        Routed {
            outcome: Outcome::Answered(answer),
            attempts: tried.attempts,
            candidates: None,
            latency_ms,
            commit,
        }
    }

    /// A request that ends without an answer: recorded, shown at once.
    pub(super) fn failed(&self, job: &Job<'_>, ending: Ending, mut tried: Tried) -> Routed {
        tried.in_sent_order();
        let latency_ms = ms_since(job.started);
        self.parts.recorder.record(Record {
            cache: None,
            request: Some(RequestRow {
                charged_usd: tried.charged,
                ..request_row(
                    job,
                    None,
                    None,
                    latency_ms,
                    tried.attempts.len(),
                    Some(ending.kind),
                )
            }),
            attempts: tried.rows,
            cooldowns: tried.cooldowns,
            priority: job.priority.clone(),
            hit: None,
        });
        Routed {
            outcome: Outcome::Failed(ending),
            attempts: tried.attempts,
            candidates: None,
            latency_ms,
            commit: None,
        }
    }

    /// Records a request refused before it was routed (a line that is not
    /// a request, routing settings that do not resolve): `tag` is the
    /// front end's number for it, `kind` the error type its output shows.
    pub fn record_refused(&self, tag: u64, id: &Value, kind: &'static str) {
        self.record_refused_for(tag, id, kind, None);
    }

    /// [`Self::record_refused`] for a request a client key sent, refused
    /// before routing (its policy, its rate): recorded with the key's name
    /// and the request's id, as every request of a key is.
    pub fn record_refused_for(
        &self,
        tag: u64,
        id: &Value,
        kind: &'static str,
        key: Option<std::sync::Arc<str>>,
    ) {
        let rid = match (&key, id) {
            (Some(_), Value::String(s)) => Some(s.as_str().into()),
            _ => None,
        };
        self.parts.recorder.record(Record {
            cache: None,
            request: Some(RequestRow {
                ts: now_ms(),
                line: tag,
                request_id: id_text(id),
                model: None,
                ok: false,
                cached: false,
                latency_ms: 0.0,
                cost_usd: None,
                prompt_tokens: None,
                completion_tokens: None,
                score: None,
                attempts: 0,
                error_type: Some(kind),
                key,
                rid,
                task: None,
                charged_usd: None,
            }),
            attempts: Vec::new(),
            cooldowns: Vec::new(),
            priority: None,
            hit: None,
        });
    }

    /// An answer from the cache, or from an identical request in flight
    /// (`shared`), whose record must then be durable before it is shown.
    pub(super) fn cached(&self, job: &Job<'_>, hit: Answer, shared: bool) -> Routed {
        let latency_ms = ms_since(job.started);
        let ts = now_ms();
        let record = Record {
            cache: None,
            request: Some(RequestRow {
                cached: true,
                ..request_row(job, Some(&hit), Some(0.0), latency_ms, 0, None)
            }),
            attempts: vec![AttemptRow {
                ts,
                model: hit.model.clone(),
                status: None,
                ok: true,
                cached: true,
                latency_ms: Some(latency_ms),
                prompt_tokens: hit.prompt_tokens,
                completion_tokens: hit.completion_tokens,
                cost_usd: Some(0.0),
                score: hit.score,
                error_type: None,
                ttft_ms: None,
            }],
            cooldowns: Vec::new(),
            priority: job.priority.clone(),
            hit: job.key.filter(|_| !shared && self.config.track_cache_use),
        };
        let commit = if shared {
            Some(self.parts.recorder.record_durable(record))
        } else {
            self.parts.recorder.record(record);
            None
        };
        let candidates = self.config.explain.then(|| {
            // A pinned model is not ranked.
            if job.req.pinned.is_some() {
                return Vec::new();
            }
            // Ranked as a request sent upstream is: with what was learned.
            let seen = super::learned::Seen {
                health: &*self.parts.health,
                book: &self.learned,
                now_ms: now_ms(),
            };
            let mut r = ranking::rank(job.req, job.settings, &self.catalogue, &seen, None).ranked;
            ranking::with_states(&mut r, &seen, Instant::now());
            r
        });
        Routed {
            outcome: Outcome::Cached(hit),
            attempts: Vec::new(),
            candidates,
            latency_ms,
            commit,
        }
    }

    /// What an answer cost: the response's `usage.cost`, else price × usage.
    pub(super) fn actual_cost(&self, model: &str, usage: &Usage) -> Option<f64> {
        usage.cost.or_else(|| {
            let info = self.catalogue.get(model)?;
            Some(
                info.prompt_price? * usage.prompt_tokens? as f64
                    + info.completion_price? * usage.completion_tokens? as f64,
            )
        })
    }
}

impl Tried {
    /// Puts the attempts (and their rows) in the order they were sent.
    pub(super) fn in_sent_order(&mut self) {
        let n = self.attempts.len();
        if self.sent.len() != n || self.rows.len() != n || self.sent.is_sorted() {
            return;
        }
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&i| self.sent[i]);
        let mut attempts: Vec<Option<Attempt>> = self.attempts.drain(..).map(Some).collect();
        let mut rows: Vec<Option<AttemptRow>> = self.rows.drain(..).map(Some).collect();
        for &i in &order {
            self.attempts.extend(attempts[i].take());
            self.rows.extend(rows[i].take());
        }
        self.sent.sort();
    }

    /// Adds what an attempt was charged.
    pub(super) fn charge(&mut self, usd: f64) {
        self.charged = plus(self.charged, Some(usd));
    }

    pub(super) fn failed(
        &mut self,
        planned: &Planned,
        f: &Failure,
        (ms, ts, sent): (f64, i64, std::time::Instant),
    ) {
        self.sent.push(sent);
        self.attempts.push(Attempt {
            model: planned.model.clone(),
            status: f.status,
            error: Some(f.message.clone()),
            latency_ms: ms,
        });
        self.rows.push(AttemptRow {
            ts,
            model: planned.model.clone(),
            status: f.status,
            ok: false,
            cached: false,
            latency_ms: Some(ms),
            prompt_tokens: None,
            completion_tokens: None,
            cost_usd: None,
            score: planned.score,
            error_type: Some(f.kind.name()),
            ttft_ms: None,
        });
    }
}

pub(super) fn request_row(
    job: &Job<'_>,
    answer: Option<&Answer>,
    cost_usd: Option<f64>,
    latency_ms: f64,
    attempts: usize,
    error_type: Option<&'static str>,
) -> RequestRow {
    RequestRow {
        ts: now_ms(),
        line: job.opts.tag,
        request_id: id_text(&job.req.id),
        model: answer.map(|a| a.model.clone()),
        ok: answer.is_some(),
        cached: false,
        latency_ms,
        cost_usd,
        prompt_tokens: answer.and_then(|a| a.prompt_tokens),
        completion_tokens: answer.and_then(|a| a.completion_tokens),
        score: answer.and_then(|a| a.score),
        attempts: attempts as u32,
        error_type,
        key: job.opts.client.clone(),
        rid: job.opts.rid.clone(),
        task: Some(job.req.task().into()),
        charged_usd: cost_usd,
    }
}

/// Two charges together: nothing when neither is known.
pub(super) fn plus(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a + b),
        (a, b) => a.or(b),
    }
}

/// An instant as unix ms.
pub(super) fn unix_ms(t: Instant) -> i64 {
    let now = Instant::now();
    let ahead = t.saturating_duration_since(now).as_millis();
    now_ms().saturating_add(i64::try_from(ahead).unwrap_or(i64::MAX))
}

fn id_text(id: &Value) -> Option<String> {
    match id {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}
