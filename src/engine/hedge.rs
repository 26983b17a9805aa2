//! Hedging: when the first attempt of a request has not answered in time,
//! the same request goes to the next-best candidate as well, and the first
//! answer wins; the other attempt is cancelled. When to hedge and how many
//! requests may be is the core's ([`crate::core::hedge`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};

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
    /// After a delay learned from the latencies of the model's latest
    /// answers ([`hedge::auto_delay_ms`]).
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
    /// candidate too, and so on while each latest attempt is slow too, as
    /// far as the share, the plan and `--max-attempts` allow. After a
    /// failure, no more hedges: what failed is the attempt policy's to
    /// weigh. Returns what came back, the answer (if any) last; the
    /// attempts that lost to an answer are cancelled, and returned as such.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn hedged<'a>(
        &'a self,
        req: &'a Request,
        opts: &'a RouteOptions,
        policy: &Attempts,
        index: usize,
        first: impl Future<Output = Sent> + Send + 'a,
        delay: Duration,
        estimate: impl Fn(&Planned) -> f64,
        upstream: &'a dyn Upstream,
    ) -> Vec<Sent> {
        let mut flying: FuturesUnordered<Flying<'a>> = FuturesUnordered::new();
        flying.push(Box::pin(first));
        // The attempts in flight: their index in the plan, and when each was sent.
        let mut sent = vec![(index, Instant::now())];
        let mut next = Some(Instant::now() + delay);
        let mut came_back = Vec::new();
        loop {
            let due = async {
                match next {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                // An answer that is in when the delay has passed too (the
                // process was starved of CPU) wins: a hedge then is waste.
                biased;
                Some(s) = flying.next() => {
                    sent.retain(|(i, _)| *i != s.index);
                    if s.result.is_ok() {
                        let plan = policy.plan();
                        let lost = sent.iter().map(|(i, at)| cancelled(*i, plan[*i].clone(), *at));
                        came_back.extend(lost);
                        came_back.push(s);
                        return came_back;
                    }
                    came_back.push(s);
                    if flying.is_empty() {
                        return came_back;
                    }
                    next = None;
                }
                _ = due => {
                    next = None;
                    let besides: Vec<usize> = sent.iter().map(|(i, _)| *i).collect();
                    let hedge = self.hedge_once(req, opts, policy, &besides, &estimate, upstream);
                    let Some((j, attempt)) = hedge.await else {
                        continue;
                    };
                    flying.push(attempt);
                    let at = Instant::now();
                    sent.push((j, at));
                    next = self.hedge_delay(&policy.plan()[j].model).map(|d| at + d);
                }
            }
        }
    }

    /// Sends the request to the best candidate not `besides` (the attempts
    /// in flight), when the share allows one more hedge and the budget and
    /// the rate limits admit it at once: its index in the plan, and the
    /// attempt.
    async fn hedge_once<'a>(
        &'a self,
        req: &'a Request,
        opts: &'a RouteOptions,
        policy: &Attempts,
        besides: &[usize],
        estimate: impl Fn(&Planned) -> f64,
        upstream: &'a dyn Upstream,
    ) -> Option<(usize, Flying<'a>)> {
        let j = policy.hedge(Instant::now(), &*self.parts.health, besides)?;
        let plan = policy.plan()[j].clone();
        if upstream.held_back(&plan.model).is_some() || !self.take_hedge() {
            return None;
        }
        let tokens = req.prompt_tokens.saturating_add(req.completion_tokens());
        let with = (opts.cancel.as_ref(), opts.allowance.as_ref());
        let held = match self
            .admit(&plan, estimate(&plan), false, tokens, false, with)
            .await
        {
            Admit::Go(h) => h,
            _ => return None,
        };
        Some((
            j,
            Box::pin(self.send_one(req, opts, j, plan, held, upstream)),
        ))
    }
}

/// An attempt in flight among others.
type Flying<'a> = Pin<Box<dyn Future<Output = Sent> + Send + 'a>>;

/// An attempt cancelled because another one answered first.
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
