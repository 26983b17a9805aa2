//! Streamed answers. An attempt at a stream succeeds when its first chunk
//! has come: until then a failure falls back to the next model, as any
//! attempt does; after it, the answer is that model's. [`Streaming`] then
//! hands the chunks on as they come, and at its end (complete, cut off,
//! or dropped by a client that went away) records the attempt, tells
//! health, settles the budget and, for a complete stream, caches the whole
//! completion it folded.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{FutureExt, Stream};
use serde_json::Value;

use super::attempt::Held;
use super::open::{sse_snippet, Live};
use super::ports::{Answer, AttemptRow, CacheEntry, Health, Record, Recorder, RequestRow};
use super::record::{request_row, Job, Tried};
use super::{ms_since, now_ms, Attempt, Outcome, Routed, Router};
use crate::core::attempts::Planned;
use crate::core::cachekey::Key;
use crate::core::failure::{error_type, health_signal, FailureKind};
use crate::core::numbers::counted;
use crate::core::sse::{self, Event, Fold, UsageFilter};

impl Router {
    /// The outcome of a request whose stream has begun on `planned`.
    pub(super) fn streaming(
        &self,
        job: &Job<'_>,
        planned: Planned,
        live: Live,
        held: Held,
        ms: f64,
        mut tried: Tried,
    ) -> Routed {
        tried.attempts.push(Attempt {
            model: planned.model.clone(),
            status: Some(200),
            error: None,
            latency_ms: ms,
        });
        let prices = self
            .catalogue
            .get(&planned.model)
            .map_or((None, None), |i| (i.prompt_price, i.completion_price));
        let attempts = tried.attempts.clone();
        let finish = Finish {
            recorder: self.parts.recorder.clone(),
            upstream: self.parts.upstream.clone(),
            health: self.parts.health.clone(),
            held: Some(held),
            planned,
            prices,
            prompt_estimate: job.req.prompt_tokens,
            sent: Instant::now() - Duration::from_secs_f64(ms / 1000.0),
            started: job.started,
            request: RequestRow {
                charged_usd: tried.charged,
                ..request_row(job, None, None, 0.0, tried.attempts.len(), None)
            },
            rows: tried.rows,
            cooldowns: tried.cooldowns,
            priority: job.priority.clone(),
            key: job.write_key(),
        };
        let stream = Box::new(Streaming {
            out: VecDeque::new(),
            live: Some(live),
            idle: self.config.timeout,
            sleep: Box::pin(tokio::time::sleep(self.config.timeout)),
            finish: Some(finish),
            on_end: None,
            usage: UsageFilter::new(false),
        });
        Routed {
            outcome: Outcome::Streaming(stream),
            attempts,
            candidates: None,
            latency_ms: ms_since(job.started),
            commit: None,
        }
    }
}

/// How a stream ended, as its front end hears of it.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamEnd {
    pub model: String,
    /// Complete (`[DONE]` came).
    pub ok: bool,
    /// Why it is not, and the kind of failure (`interrupted` for a client
    /// that went away).
    pub error: Option<String>,
    pub error_kind: Option<&'static str>,
    /// From the attempt's start to its first chunk, and to its end.
    pub ttft_ms: f64,
    pub total_ms: f64,
    pub cost_usd: Option<f64>,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
}

/// What a stream records at its end.
struct Finish {
    recorder: Arc<dyn Recorder>,
    /// Scrubs the answer before it is kept ([`super::ports::Upstream::scrub`]).
    upstream: Option<Arc<dyn super::ports::Upstream>>,
    health: Arc<dyn Health>,
    held: Option<Held>,
    planned: Planned,
    prices: (Option<f64>, Option<f64>),
    /// The prompt's tokens, as estimated before it was sent.
    prompt_estimate: u64,
    /// When the attempt, and the request, began.
    sent: Instant,
    started: Instant,
    request: RequestRow,
    rows: Vec<AttemptRow>,
    cooldowns: Vec<(String, i64, super::ports::Pause)>,
    priority: Option<String>,
    key: Option<Key>,
}

/// Why a stream ended.
enum End {
    Complete,
    /// Cut off or broken, with what a client is told.
    Broken(FailureKind, String),
    /// The client went away.
    Dropped,
    /// The server stopped it, saying why.
    Stopped(String),
}

impl Finish {
    /// What the stream cost: the usage's cost, else price × usage; a
    /// stream that did not complete may still have been billed.
    fn cost(&self, ok: bool, usage: &crate::core::failure::Usage, fold: &Fold) -> Option<f64> {
        if ok {
            usage.cost.or_else(|| {
                Some(
                    self.prices.0? * usage.prompt_tokens? as f64
                        + self.prices.1? * usage.completion_tokens? as f64,
                )
            })
        } else {
            // It may have been billed: what it streamed, by the usage the
            // API sent, else its prompt and its text so far (a token per 4
            // bytes), so that the budget and the store count it alike.
            usage.cost.or_else(|| {
                let prompt = usage
                    .prompt_tokens
                    .map_or(self.prompt_estimate, |t| t.max(0) as u64);
                let completion = usage.completion_tokens.map_or_else(
                    || fold.content().map_or(0, |c| c.len().div_ceil(4) as u64),
                    |t| t.max(0) as u64,
                );
                Some(self.prices.0? * prompt as f64 + self.prices.1? * completion as f64)
            })
        }
    }

    fn end(mut self, fold: &Fold, ttft_ms: f64, end: End) -> StreamEnd {
        let total_ms = ms_since(self.sent);
        let ts = now_ms();
        let usage = fold.usage();
        let model = self.planned.model.clone();
        let (ok, kind) = match &end {
            End::Complete => (true, None),
            End::Broken(k, _) => (false, Some(*k)),
            End::Dropped | End::Stopped(_) => (false, Some(FailureKind::Interrupted)),
        };
        let cost = self.cost(ok, &usage, fold);
        let signal = health_signal(ok, kind.map(FailureKind::name));
        let tokens = usage.completion_tokens.filter(|_| ok);
        self.health.observe(&model, signal, total_ms, tokens, ts);
        let mut charged = cost;
        if let Some(h) = self.held.take() {
            // With no price to go by, a broken stream's estimate stays spent.
            charged = charged.or(h.estimate());
            h.settle(cost);
        }
        let error = match &end {
            End::Complete => None,
            End::Broken(_, m) | End::Stopped(m) => Some(m.clone()),
            End::Dropped => Some(super::attempt::CLIENT_GONE.to_string()),
        };
        self.rows.push(AttemptRow {
            ts,
            model: model.clone(),
            status: Some(200),
            ok,
            cached: false,
            latency_ms: Some(total_ms),
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            cost_usd: cost,
            score: self.planned.score,
            error_type: kind.map(FailureKind::name),
            ttft_ms: Some(ttft_ms),
        });
        // Kept without a key the answer repeats, however its events cut it.
        let scrub = |t: String| match self.upstream.as_ref().and_then(|u| u.scrub(&t)) {
            Some(clean) => clean,
            None => t,
        };
        let answer = ok.then(|| Answer {
            model: model.clone(),
            response: scrub(fold.completion().to_string()),
            content: fold.content().map(|c| scrub(c.to_string())),
            cost_usd: cost,
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            score: self.planned.score,
            created_at: ts,
        });
        let request = RequestRow {
            ts,
            model: Some(model.clone()).filter(|_| ok),
            ok,
            latency_ms: ms_since(self.started),
            cost_usd: cost,
            charged_usd: super::record::plus(self.request.charged_usd, charged),
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            score: self.planned.score.filter(|_| ok),
            error_type: kind.map(|k| match k {
                FailureKind::Interrupted => error_type::INTERRUPTED,
                _ => error_type::ALL_MODELS_FAILED,
            }),
            ..self.request.clone()
        };
        // An answer whose stream stopped without a finish reason (even with
        // `[DONE]`) was cut short: it is answered, not kept for others.
        let finished = fold.finished();
        self.recorder.record(Record {
            cache: answer
                .clone()
                .zip(self.key)
                .filter(|_| finished)
                .map(|(answer, key)| CacheEntry { key, answer }),
            request: Some(request),
            attempts: std::mem::take(&mut self.rows),
            cooldowns: std::mem::take(&mut self.cooldowns),
            priority: self.priority.take(),
            hit: None,
        });
        StreamEnd {
            model,
            ok,
            error,
            error_kind: kind.map(FailureKind::name),
            ttft_ms,
            total_ms,
            cost_usd: cost,
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
        }
    }
}

/// A streamed answer on its way: server-sent events, each as it comes,
/// and `data: [DONE]` last when it completes. A stream cut off ends with an
/// `error` event instead. Set [`Streaming::include_usage`] to pass on the
/// usage, in a chunk of its own before `[DONE]`; no chunk carries it
/// otherwise (see [`UsageFilter`]).
pub struct Streaming {
    out: VecDeque<Bytes>,
    live: Option<Live>,
    /// How long the stream may go quiet.
    idle: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
    finish: Option<Finish>,
    on_end: Option<OnEnd>,
    usage: UsageFilter,
}

/// What runs when a stream ends.
pub type OnEnd = Box<dyn FnOnce(&StreamEnd) + Send>;

impl std::fmt::Debug for Streaming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streaming").finish_non_exhaustive()
    }
}

impl Streaming {
    /// Whether the usage is passed on.
    pub fn include_usage(&mut self, yes: bool) {
        self.usage = UsageFilter::new(yes);
    }

    /// Runs `then` once when the stream ends, however it ends.
    pub fn on_end(&mut self, then: OnEnd) {
        self.on_end = Some(then);
    }

    /// Ends the stream before its end, as the server stops: recorded as
    /// interrupted, with `message`; its client gets the chunks already
    /// read, then `last`.
    pub fn stop(&mut self, message: &str, last: Bytes) {
        if self.live.is_none() {
            return;
        }
        self.end(End::Stopped(message.to_string()));
        self.out.push_back(last);
    }

    /// The model streaming.
    pub fn model(&self) -> &str {
        self.finish.as_ref().map_or("", |f| &f.planned.model)
    }

    /// The model's score when it was chosen (none for a pinned or fallback
    /// model), as a whole answer carries it.
    pub fn score(&self) -> Option<f64> {
        self.finish.as_ref().and_then(|f| f.planned.score)
    }

    fn end(&mut self, end: End) {
        let Some(finish) = self.finish.take() else {
            return;
        };
        let live = self.live.take();
        let (fold, ttft) = match &live {
            Some(l) => (&l.fold, l.ttft_ms),
            None => return,
        };
        if let End::Broken(_, message) = &end {
            let error = serde_json::json!({"error": {
                "message": message,
                "type": "upstream_error",
                "param": null,
                "code": "upstream_error",
            }});
            self.out
                .push_back(Bytes::from(sse::frame(&error.to_string())));
        }
        let summary = finish.end(fold, ttft, end);
        if let Some(then) = self.on_end.take() {
            then(&summary);
        }
    }

    /// Hands on one event; returns how the stream ended, if it did.
    fn pass(&mut self, event: Event) -> Option<End> {
        let live = self.live.as_mut()?;
        match event {
            Event::Done => {
                live.fold.done = true;
                if let Some(usage) = self.usage.last() {
                    self.out.push_back(Bytes::from(sse::frame(&usage)));
                }
                self.out.push_back(Bytes::from_static(sse::DONE));
                Some(End::Complete)
            }
            Event::Data(d) => {
                let Ok(chunk) = serde_json::from_str::<Value>(&d) else {
                    return Some(End::Broken(
                        FailureKind::InvalidResponse,
                        format!("a chunk is not JSON: {}", sse_snippet(&d)),
                    ));
                };
                if let Some(e) = sse::error_of(&chunk) {
                    return Some(End::Broken(FailureKind::UpstreamError, e));
                }
                live.fold.add(&chunk);
                if let Some(passed) = self.usage.pass(&d, &chunk) {
                    self.out.push_back(Bytes::from(sse::frame(&passed)));
                }
                None
            }
        }
    }
}

impl Stream for Streaming {
    type Item = Bytes;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let this = self.get_mut();
        loop {
            if let Some(b) = this.out.pop_front() {
                return Poll::Ready(Some(b));
            }
            let Some(live) = this.live.as_mut() else {
                return Poll::Ready(None);
            };
            if let Some(event) = live.queued.pop_front() {
                if let Some(end) = this.pass(event) {
                    this.end(end);
                }
                continue;
            }
            match live.events.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(bytes))) => {
                    let mut events = Vec::new();
                    live.parser.push(&bytes, &mut events);
                    live.queued.extend(events);
                    let deadline = tokio::time::Instant::now() + this.idle;
                    this.sleep.as_mut().reset(deadline);
                }
                Poll::Ready(Some(Err(f))) => {
                    let message = format!(
                        "the stream was cut off after {}: {}",
                        counted(live.fold.chunks as u64, "chunk"),
                        f.message
                    );
                    this.end(End::Broken(FailureKind::Connect, message));
                }
                Poll::Ready(None) => {
                    let chunks = counted(live.fold.chunks as u64, "chunk");
                    let message = format!("the stream was cut off after {chunks}");
                    this.end(End::Broken(FailureKind::Connect, message));
                }
                Poll::Pending => {
                    if this.sleep.poll_unpin(cx).is_pending() {
                        return Poll::Pending;
                    }
                    let message = format!(
                        "the stream was quiet for {}",
                        crate::core::duration::format(this.idle)
                    );
                    this.end(End::Broken(FailureKind::Timeout, message));
                }
            }
        }
    }
}

/// A stream dropped before its end: its client went away. Dropping it
/// closes the upstream call; the attempt is recorded as interrupted.
impl Drop for Streaming {
    fn drop(&mut self) {
        self.end(End::Dropped);
    }
}
