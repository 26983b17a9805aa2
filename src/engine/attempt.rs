//! One attempt on its way: admitted (the budget's reservation, the rate
//! limits, the mark of a probe or of a half-open circuit's one request),
//! sent, and settled.

use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use super::open::{stream_body, Live};
use super::ports::{Admission, Allowance, Health, Reservation, Upstream};
use super::{ms_since, now_ms, RouteOptions, Router};
use crate::core::attempts::Planned;
use crate::core::failure::{health_signal, Failure, FailureKind, Success};
use crate::core::request::{upstream_body, Request};

/// One attempt that came back (or was cancelled).
pub(super) struct Sent {
    /// Its index in the plan.
    pub index: usize,
    pub planned: Planned,
    pub result: Result<Success, Failure>,
    /// When it was sent.
    pub sent: Instant,
    pub ms: f64,
    /// When it came back, unix ms.
    pub ts: i64,
    /// Until when the model's circuit is open, when this attempt opened it.
    pub opened: Option<Instant>,
    /// What it cost: known, `None` for the estimate (may have been billed).
    pub cost: Option<f64>,
    /// A stream whose first chunk has come, and what its attempt holds.
    pub live: Option<(Live, Held)>,
}

/// What an admitted attempt holds until it is settled. Dropped unsettled
/// (cancelled: a hedge lost, the run ended), it keeps its estimate spent,
/// for it may have been billed, and ends its mark.
/// It owns what it needs, so that a streamed answer can carry it to its end.
pub(super) struct Held {
    admission: Arc<dyn Admission>,
    health: Arc<dyn Health>,
    model: String,
    marked: bool,
    reservation: Option<Reservation>,
    /// The client's own budget and what it holds of it.
    own: Option<(Allowance, Reservation)>,
}

impl Held {
    /// What it holds of a budget, if any: the client's own, else the run's.
    pub(super) fn estimate(&self) -> Option<f64> {
        let own = self.own.as_ref().map(|(_, r)| r.0);
        own.or(self.reservation.as_ref().map(|r| r.0))
    }

    pub(super) fn settle(mut self, cost: Option<f64>) {
        if let Some(r) = self.reservation.take() {
            self.admission.settle(r, cost);
        }
        if let Some((a, r)) = self.own.take() {
            a.0.settle(r, cost);
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(r) = self.reservation.take() {
            self.admission.settle(r, None);
        }
        if let Some((a, r)) = self.own.take() {
            a.0.settle(r, None);
        }
        self.health.end(&self.model, self.marked);
    }
}

/// Whether an attempt may go.
pub(super) enum Admit {
    Go(Held),
    /// The one attempt a half-open circuit lets through is under way.
    Busy,
    /// The budget refuses it.
    OverBudget(crate::engine::ports::OverBudget),
    /// The client's own budget refuses it.
    OverOwnBudget(crate::engine::ports::OverBudget),
    /// The run stopped while it waited for the rate limits.
    Stopped,
}

impl Router {
    /// Admits an attempt on `planned` (estimated at `estimate` USD and
    /// `tokens` tokens): reserves the budget, marks a probe (`probe`) or a
    /// half-open circuit's one request, and waits for the rate limits; with
    /// `wait` false, only takes them if they are free now.
    pub(super) async fn admit(
        &self,
        planned: &Planned,
        estimate: f64,
        probe: bool,
        tokens: u64,
        wait: bool,
        (cancel, allowance): (Option<&CancellationToken>, Option<&Allowance>),
    ) -> Admit {
        let reservation = match self.parts.admission.reserve(estimate, wait).get().await {
            Ok(r) => r,
            Err(o) => return Admit::OverBudget(o),
        };
        let own = match allowance {
            None => None,
            Some(a) => match a.0.reserve(estimate, wait).get().await {
                Ok(r) => r.map(|r| (a.clone(), r)),
                Err(o) => {
                    if let Some(r) = reservation {
                        self.parts.admission.settle(r, Some(0.0));
                    }
                    return Admit::OverOwnBudget(o);
                }
            },
        };
        let marked = match self.parts.health.begin(&planned.model, probe) {
            Some(m) => m,
            None => {
                if let Some(r) = reservation {
                    self.parts.admission.settle(r, Some(0.0));
                }
                if let Some((a, r)) = own {
                    a.0.settle(r, Some(0.0));
                }
                return Admit::Busy;
            }
        };
        let held = Held {
            admission: self.parts.admission.clone(),
            health: self.parts.health.clone(),
            model: planned.model.clone(),
            marked,
            reservation,
            own,
        };
        if self.parts.admission.unlimited() {
            return Admit::Go(held);
        }
        let stopped = if wait {
            let refused = self.refusal.token();
            tokio::select! {
                _ = self.parts.admission.acquire(tokens) => self.stopping(),
                _ = self.cancel.cancelled() => true,
                _ = refused.cancelled() => true,
                _ = when_cancelled(cancel) => true,
            }
        } else {
            tokio::select! {
                biased;
                _ = self.parts.admission.acquire(tokens) => self.stopping(),
                _ = std::future::ready(()) => true,
            }
        };
        if stopped {
            // Not sent: nothing to pay.
            held.settle(Some(0.0));
            return Admit::Stopped;
        }
        Admit::Go(held)
    }

    /// Sends an admitted attempt and settles it; or, for the first chunk
    /// of a stream, hands what it holds on to the stream.
    pub(super) async fn send_one(
        &self,
        req: &Request,
        opts: &RouteOptions,
        index: usize,
        planned: Planned,
        held: Held,
        upstream: &dyn Upstream,
    ) -> Sent {
        let sent = Instant::now();
        let (result, live) = match self.call(req, opts, &planned.model, upstream).await {
            Ok((s, live)) => (Ok(s), live),
            Err(f) => (Err(f), None),
        };
        let ms = ms_since(sent);
        let ts = now_ms();
        let held_back = result
            .as_ref()
            .is_err_and(|f| f.kind == FailureKind::AtLimit);
        let (opened, cost, live) = match live {
            // The rest of the answer is to come: its health, cost and
            // record wait for its end.
            Some(live) => {
                self.parts
                    .observer
                    .attempt(opts.tag, &planned.model, Ok(200), ms);
                (None, None, Some((live, held)))
            }
            // Never sent: nothing to observe, record or pay.
            None if held_back => {
                held.settle(Some(0.0));
                (None, Some(0.0), None)
            }
            None => {
                let opened = self.observe_attempt(opts.tag, &planned.model, &result, (ms, ts));
                let cost = self.settled_cost(req, &planned.model, &result);
                held.settle(cost);
                (opened, cost, None)
            }
        };
        Sent {
            index,
            planned,
            result,
            sent,
            ms,
            ts,
            opened,
            cost,
            live,
        }
    }

    /// Tells the observer and health how an attempt on `model` went, `ms`
    /// long and ended at `ts`; until when it opened the model's circuit,
    /// if it did.
    fn observe_attempt(
        &self,
        tag: u64,
        model: &str,
        result: &Result<Success, Failure>,
        (ms, ts): (f64, i64),
    ) -> Option<Instant> {
        let outcome = match result {
            Ok(s) => Ok(s.status),
            Err(f) => Err(f.message.as_str()),
        };
        self.parts.observer.attempt(tag, model, outcome, ms);
        if let Err(f) = result {
            self.parts.observer.upstream_error(model, f.kind.name());
        }
        let signal = match result {
            Ok(_) => health_signal(true, None),
            Err(f) => health_signal(false, Some(f.kind.name())),
        };
        let tokens = result.as_ref().ok().and_then(|s| s.usage.completion_tokens);
        let opened = self.parts.health.observe(model, signal, ms, tokens, ts);
        if let (Some(until), Err(f)) = (opened, result) {
            let pause = until.saturating_duration_since(Instant::now());
            self.parts.observer.circuit_opened(model, pause, &f.message);
        }
        opened
    }

    /// Sends the request to `model`, whole or as a stream (up to its first
    /// chunk), unless the run or the request is cancelled first.
    async fn call(
        &self,
        req: &Request,
        opts: &RouteOptions,
        model: &str,
        upstream: &dyn Upstream,
    ) -> Result<(Success, Option<Live>), Failure> {
        // The candidate's own upstream, and the id it knows the model by.
        let (upstream, wire) = upstream.route_to(model).unwrap_or((upstream, model));
        let call = async {
            if opts.stream {
                let body = stream_body(wire, &req.wire);
                self.open_stream(upstream, body)
                    .await
                    .map(|(s, l)| (s, Some(l)))
            } else {
                let body = upstream_body(wire, b"", &req.wire);
                upstream
                    .complete(body, self.config.timeout)
                    .await
                    .map(|s| (s, None))
            }
        };
        tokio::select! {
            r = call => r,
            _ = self.abort.cancelled() => Err(interrupted("interrupted: no answer before the run ended")),
            _ = when_cancelled(opts.cancel.as_ref()) => Err(interrupted(CLIENT_GONE)),
        }
    }

    /// What a whole attempt cost: known, or `None` for its estimate (sent,
    /// and perhaps billed). An answer's tokens beyond its plan are owed to
    /// the rate limits, and those under it given back.
    fn settled_cost(
        &self,
        req: &Request,
        model: &str,
        result: &Result<Success, Failure>,
    ) -> Option<f64> {
        match result {
            Ok(s) => {
                let used = s
                    .usage
                    .prompt_tokens
                    .unwrap_or(0)
                    .saturating_add(s.usage.completion_tokens.unwrap_or(0));
                let planned_tokens = req.prompt_tokens.saturating_add(req.completion_tokens());
                let extra = (used.max(0) as u64).saturating_sub(planned_tokens);
                if extra > 0 {
                    // More tokens than planned: the debt slows later requests, not this one.
                    self.parts.admission.owe(extra);
                }
                self.parts
                    .admission
                    .give_back(super::admission::unused(planned_tokens, &s.usage));
                self.actual_cost(model, &s.usage)
            }
            // Sent and perhaps billed: the estimate stays spent.
            Err(f) if f.kind.may_be_billed() => None,
            Err(_) => Some(0.0),
        }
    }
}

/// What a request's cancellation says: its client has gone, or its deadline passed.
pub(super) const CLIENT_GONE: &str = "cancelled: the client went away or its deadline passed";

/// Waits until `token` is cancelled; forever without one.
pub(super) async fn when_cancelled(token: Option<&CancellationToken>) {
    match token {
        Some(t) => t.cancelled().await,
        None => std::future::pending().await,
    }
}

fn interrupted(message: &str) -> Failure {
    Failure {
        kind: FailureKind::Interrupted,
        status: None,
        message: message.into(),
        retry_after: None,
    }
}
