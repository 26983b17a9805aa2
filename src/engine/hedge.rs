//! Hedging: when the first attempt of a request has not answered in time,
//! the same request goes to the next-best candidate as well, and the first
//! answer wins; the other attempt is cancelled. When to hedge and how many
//! requests may be is the core's ([`crate::core::hedge`]).

use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::attempt::{Admit, Sent};
use super::ports::Upstream;
use super::{ms_since, now_ms, RouteOptions, Router};
use crate::core::attempts::{Attempts, Planned};
use crate::core::failure::{Failure, FailureKind};
use crate::core::hedge;
use crate::core::request::Request;

/// When to hedge a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Hedge {
    #[default]
    Off,
    /// After the first model's measured 95th percentile latency.
    Auto,
    /// After this long.
    After(Duration),
}

impl Router {
    /// How long to wait for the first attempt on `model` before hedging.
    pub(super) fn hedge_delay(&self, model: &str) -> Option<Duration> {
        match self.config.hedge {
            Hedge::Off => None,
            Hedge::After(d) => Some(d),
            Hedge::Auto => self
                .parts
                .health
                .hedge_delay_ms(model)
                .map(|ms| Duration::from_secs_f64(ms.max(1.0) / 1000.0)),
        }
    }

    /// Takes one of the hedges the share allows, if one is left.
    fn take_hedge(&self) -> bool {
        let requests = self.ticks.load(Ordering::Relaxed);
        self.hedges
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |h| {
                hedge::may_hedge(h, requests).then_some(h + 1)
            })
            .is_ok()
    }

    /// Waits for `first` (the attempt on the plan's `index`); when it has
    /// not answered after `delay`, sends the request to the next-best
    /// candidate too. Returns what came back, the answer (if any) last; an
    /// attempt that lost to the other's answer is cancelled, and returned as
    /// such.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn hedged(
        &self,
        req: &Request,
        opts: &RouteOptions,
        policy: &Attempts,
        index: usize,
        first: impl Future<Output = Sent>,
        delay: Duration,
        estimate: impl Fn(&Planned) -> f64,
        upstream: &dyn Upstream,
    ) -> Vec<Sent> {
        let first_sent = Instant::now();
        tokio::pin!(first);
        tokio::select! {
            s = &mut first => return vec![s],
            _ = tokio::time::sleep(delay) => {}
        }
        let Some(j) = policy.hedge(Instant::now(), &*self.parts.health, index) else {
            return vec![first.await];
        };
        let second_plan = policy.plan()[j].clone();
        if !self.take_hedge() {
            return vec![first.await];
        }
        let tokens = req.prompt_tokens.saturating_add(req.completion_tokens());
        let est = estimate(&second_plan);
        let held = match self
            .admit(
                &second_plan,
                est,
                false,
                tokens,
                false,
                opts.cancel.as_ref(),
            )
            .await
        {
            Admit::Go(h) => h,
            _ => return vec![first.await],
        };
        let second_sent = Instant::now();
        let second = self.send_one(req, opts, j, second_plan.clone(), held, upstream);
        tokio::pin!(second);
        tokio::select! {
            a = &mut first => match a.result.is_ok() {
                true => vec![cancelled(j, second_plan, second_sent), a],
                false => vec![a, second.await],
            },
            b = &mut second => match b.result.is_ok() {
                true => vec![cancelled(index, policy.plan()[index].clone(), first_sent), b],
                false => vec![b, first.await],
            },
        }
    }
}

/// An attempt cancelled because the other one answered first.
fn cancelled(index: usize, planned: Planned, sent: Instant) -> Sent {
    Sent {
        index,
        planned,
        result: Err(Failure {
            kind: FailureKind::Cancelled,
            status: None,
            message: "cancelled: another attempt answered first".into(),
            retry_after: None,
        }),
        sent,
        ms: ms_since(sent),
        ts: now_ms(),
        opened: None,
        cost: None,
        live: None,
    }
}
