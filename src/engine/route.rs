//! [`Router::route`]: one request, from its settings to its record.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::attempt::{when_cancelled, Admit, Held, Sent};
use super::flight::{Join, Leader};
use super::ports::{Claimed, Pause, Upstream};
use super::record::{unix_ms, Job, Tried};
use super::refusals::{interrupted_after, over_own_budget};
use super::{ms_since, now_ms, Outcome, RouteOptions, Routed, Router};
use crate::core::attempts::{Attempts, Effect, Ending, Next, Planned};
use crate::core::cachekey::{Key, Seal};
use crate::core::catalogue::Catalogue;
use crate::core::explore;
use crate::core::failure::{error_type, Failure, FailureKind};
use crate::core::numbers::counted;
use crate::core::ranking;
use crate::core::ranking::{pinned_part, task_part, Settings};
use crate::core::request::Request;

/// How long a request leaves a model alone when another request holds the
/// one attempt it lets through (a probe, or a half-open circuit's).
const BUSY_WAIT: Duration = Duration::from_millis(50);

/// Why the attempt loop stopped before sending.
enum Halt {
    /// Nothing was sent: the request gets no outcome.
    Unsent,
    Ending(Ending),
}

impl Router {
    /// The request's cache key, when the run uses the cache: its body's
    /// digest sealed with the upstream and the routing settings (the run's
    /// own seal, or that seal's hash carried on with a pinned model), then
    /// scoped to the client's own cache.
    fn cache_key(
        &self,
        req: &Request,
        settings: &Settings,
        scope: Option<&[u8; 32]>,
    ) -> Option<Key> {
        let digest = req.digest.as_ref().filter(|_| self.config.use_cache)?;
        let own = std::ptr::eq(settings, &self.config.settings);
        // A pinned model answers alike whatever the task; a routed
        // request's task picks its model.
        let task = Some(req.task())
            .filter(|t| req.pinned.is_none() && *t != crate::core::learned::DEFAULT_TASK)
            .map(task_part);
        let seal = match (req.pinned.as_deref(), task) {
            (None, None) if own => self.seal,
            (None, Some(t)) if own => self.seal_base.seal_with(&t),
            (Some(m), _) if own => self.seal_base.seal_with(&pinned_part(m)),
            (pinned, task) => {
                let mut fingerprint = settings.fingerprint(pinned).into_owned();
                task.iter().flatten().for_each(|p| fingerprint.push_str(p));
                Seal::new(&self.config.upstream, &fingerprint)
            }
        };
        let key = digest.sealed_key(&seal);
        Some(scope.map_or(key, |s| key.scoped(s)))
    }

    /// Routes `req` to an answer or an error, and records it.
    pub async fn route(&self, req: &Request, opts: RouteOptions) -> Routed {
        let started = Instant::now();
        let settings = match self.settings_for(req) {
            Ok(s) => s,
            Err(e) => {
                if !self.config.dry_run {
                    self.record_refused(opts.tag, &req.id, error_type::INVALID_INPUT);
                }
                let ending = Ending::new(error_type::INVALID_INPUT, e);
                return Routed::new(Outcome::Failed(ending), ms_since(started));
            }
        };
        let settings = &*settings;
        let key = self.cache_key(req, settings, opts.cache_scope.as_ref());
        let job = Job {
            req,
            opts,
            settings,
            priority: req
                .overrides
                .as_ref()
                .filter(|o| !o.only_task())
                .map(|_| settings.priority.clone()),
            key,
            started,
        };
        let mut leader = None;
        if let Some(key) = key.filter(|_| !job.opts.skip_cache_read) {
            if let Some(hit) = self.parts.cache.get(key, self.min_created_at()).await {
                self.parts.observer.cache_hit(job.opts.tag, &hit.model);
                return self.cached(&job, hit, false);
            }
        }
        // A stream is its own: an identical request waits for no stream
        // (its answer comes whole only at the end). A request that must not
        // be answered from the cache (a client's no-cache, a sample) shares
        // no answer in flight either.
        let shares = !job.opts.skip_cache_read;
        if let Some(key) = key.filter(|_| !job.opts.stream && shares) {
            match self.flights.join(key) {
                Join::Lead(l) => leader = Some(l),
                Join::Follow(f) => {
                    // The leader claims for both: a lease this request's
                    // lookup took would only hold everyone else up.
                    self.parts.cache.let_go(key);
                    // A follower whose own client left (or whose deadline
                    // passed) stops waiting for the leader's answer.
                    let answer = tokio::select! {
                        a = f.answer() => a,
                        _ = when_cancelled(job.opts.cancel.as_ref()) => {
                            let ending = Ending::new(
                                error_type::INTERRUPTED,
                                "not sent: the request was cancelled while an identical one was answered",
                            );
                            return self.failed(&job, ending, Tried::default());
                        }
                    };
                    if let Some(answer) = answer {
                        self.parts.observer.cache_hit(job.opts.tag, &answer.model);
                        return self.cached(&job, (*answer).clone(), true);
                    }
                    // The identical request got no answer: try on our own.
                }
            }
        }
        let mut lease = None;
        // A stream claims too (a shared cache may have taken the lease for
        // it while looking up), but holds nobody up: it lets go at once.
        if let Some(key) = key.filter(|_| shares && (leader.is_some() || job.opts.stream)) {
            if let Some(claim) = self.parts.cache.claim(key, self.min_created_at()) {
                match claim.await {
                    Claimed::Go(l) => lease = l.filter(|_| !job.opts.stream),
                    Claimed::Answered(answer) => {
                        self.parts.observer.cache_hit(job.opts.tag, &answer.model);
                        if let Some(l) = leader {
                            l.publish(answer.clone());
                        }
                        return self.cached(&job, answer, true);
                    }
                }
            }
        }
        // Boxed: the future of a request that goes upstream is large, and a
        // cache hit should not carry (and copy) it.
        let routed = Box::pin(self.plan_and_send(&job, leader)).await;
        // After the answer's record is queued: other processes waiting on
        // the lease find the answer in the cache.
        drop(lease);
        routed
    }

    /// The oldest a cached answer may be, in unix ms.
    fn min_created_at(&self) -> i64 {
        let ttl = i64::try_from(self.config.cache_ttl.as_millis()).unwrap_or(i64::MAX);
        now_ms().saturating_sub(ttl)
    }

    async fn plan_and_send(&self, job: &Job<'_>, leader: Option<Leader<'_>>) -> Routed {
        let seen = super::learned::Seen {
            health: &*self.parts.health,
            book: &self.learned,
            now_ms: now_ms(),
        };
        let health = &seen;
        // The client's own budget narrows the plan when it is the tighter.
        let own = job.opts.allowance.as_ref();
        let own_left = own.and_then(|a| a.0.budget_left());
        let global_left = self.parts.admission.budget_left();
        let own_tighter = match (global_left, own_left) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(g), Some(o)) => o < g,
        };
        let budget_left = if own_tighter { own_left } else { global_left };
        let explain = self.config.explain || self.config.dry_run;
        let mut plan = ranking::plan(
            job.req,
            job.settings,
            &self.catalogue,
            health,
            budget_left,
            explain,
        );
        let now = Instant::now();
        let mut candidates = plan.ranking.take();
        if let Some(c) = &mut candidates {
            ranking::with_states(c, health, now);
        }
        let tick = self.ticks.fetch_add(1, Ordering::Relaxed) + 1;
        // A dry run sends nothing, so it measures nothing: it shows the choice.
        let share = if self.config.dry_run {
            0.0
        } else {
            self.config.explore
        };
        let terms = explore::Terms {
            task: job.req.task(),
            quality: job.settings.weights.quality,
            latency: job.settings.weights.latency,
        };
        let probe = match explore::choose(&plan.order, health, now, (tick, share), Some(terms)) {
            Some((i, _)) => {
                plan.order[..=i].rotate_right(1);
                Some(plan.order[0].model.clone())
            }
            None => None,
        };
        let mut routed = if plan.order.is_empty() {
            let ending = self.empty_plan(job, &plan, own.filter(|_| own_tighter));
            match self.config.dry_run {
                // A dry run records nothing.
                true => Routed::new(Outcome::Failed(ending), ms_since(job.started)),
                // Every line's end is recorded, so that report agrees with
                // the run's summary.
                false => self.failed(job, ending, Tried::default()),
            }
        } else if self.config.dry_run {
            let first = plan.order.into_iter().next().expect("a plan with a model");
            Routed::new(Outcome::Planned(first), ms_since(job.started))
        } else {
            match &self.parts.upstream {
                None => {
                    let ending = Ending::new(error_type::ALL_MODELS_FAILED, "no upstream client");
                    Routed::new(Outcome::Failed(ending), ms_since(job.started))
                }
                Some(_) if self.cancel.is_cancelled() => Routed::new(Outcome::Unsent, 0.0),
                Some(upstream) => {
                    // A 402 speaks for its own upstream's account only.
                    let mut attempts = Attempts::new(plan.order, self.config.max_attempts)
                        .on_accounts(|c| account_of(&**upstream, c));
                    if let Some(p) = job.opts.patience {
                        let secs = std::time::Duration::from_secs(p.get().into());
                        attempts = attempts.waiting_at_most(secs);
                    }
                    self.send(job, attempts, probe, &**upstream, leader).await
                }
            }
        };
        routed.candidates = candidates;
        routed
    }

    /// The attempt loop: sends until an answer, or until the policy, the
    /// budget or the front end ends it.
    async fn send(
        &self,
        job: &Job<'_>,
        mut policy: Attempts,
        mut probe: Option<String>,
        upstream: &dyn Upstream,
        leader: Option<Leader<'_>>,
    ) -> Routed {
        let req = job.req;
        let tokens = req.prompt_tokens.saturating_add(req.completion_tokens());
        let worst = unknown_price_estimate(policy.plan(), &self.catalogue, req);
        let mut tried = Tried::default();
        let mut interrupted = false;
        let ending = loop {
            match self.halted(&tried, job.opts.cancel.as_ref()) {
                Some(Halt::Unsent) => return Routed::new(Outcome::Unsent, 0.0),
                Some(Halt::Ending(e)) => break e,
                None => {}
            }
            let i = match policy.next(Instant::now(), &*self.parts.health) {
                Next::Send(i) => i,
                Next::Wait(until, i) => {
                    if let Some(j) = self.wait_for(job, &policy, (until, i), upstream).await {
                        // Its turn came on `j`: a slot is kept for it.
                        policy.hold_off(j, Instant::now(), AT_ITS_LIMIT);
                    }
                    continue;
                }
                Next::GiveUp(e) => break e,
            };
            let planned = policy.plan()[i].clone();
            // The budget holds this attempt's estimate (an unknown price
            // counts as the dearest known one) until its cost is known.
            let estimate = |p: &Planned| p.est_cost.unwrap_or(worst);
            // Its upstream's own limit would hold it back: none of the
            // budget or the rates is taken for it meanwhile.
            if let Some(wait) = upstream.held_back(&planned.model) {
                policy.hold_off(i, Instant::now() + wait, AT_ITS_LIMIT);
                continue;
            }
            let probing = tried.attempts.is_empty() && probe.as_deref() == Some(&planned.model);
            let admitted = self
                .admit(
                    &planned,
                    estimate(&planned),
                    probing,
                    tokens,
                    true,
                    (job.opts.cancel.as_ref(), job.opts.allowance.as_ref()),
                )
                .await;
            let held = match admitted {
                Admit::Go(h) => h,
                Admit::OverBudget(o) => break self.over_budget(&o, tried.attempts.len()),
                Admit::OverOwnBudget(o) => {
                    let client = job.opts.client.as_deref();
                    break over_own_budget(&o, client, tried.attempts.len());
                }
                // Another request holds the model's one attempt: this one
                // does not probe it, and leaves it alone a while (other
                // models first, or a wait), rather than ask again at once.
                Admit::Busy => {
                    probe = probe.filter(|_| !probing);
                    let why = "another request holds its one attempt";
                    policy.hold_off(i, Instant::now() + BUSY_WAIT, why);
                    continue;
                }
                // Not sent; the loop's top says why, or tries again.
                Admit::Stopped => continue,
            };
            let came_back = self
                .send_or_hedge(job, &policy, (i, planned), held, estimate, upstream)
                .await;
            for s in came_back {
                if s.live.is_none() {
                    // Known, else its estimate stays spent (see `Held`).
                    tried.charge(s.cost.unwrap_or_else(|| estimate(&s.planned)));
                }
                if let Some(until) = s.opened {
                    // Other processes skip it too, through the store.
                    let model = s.planned.model.clone();
                    tried
                        .cooldowns
                        .push((model, unix_ms(until), Pause::Circuit));
                }
                match s.result {
                    Ok(_) => return self.came_back(job, s, &mut policy, tried, leader),
                    Err(f) => {
                        let at = (s.index, &s.planned, (s.ms, s.ts, s.sent));
                        interrupted |= self.took_failure(at, &f, &mut policy, &mut tried);
                    }
                }
            }
            if interrupted {
                break interrupted_after(tried.attempts.len());
            }
        };
        self.failed(job, ending, tried)
    }

    /// An answer that came back: a stream goes on to its client, a whole
    /// answer is recorded.
    fn came_back(
        &self,
        job: &Job<'_>,
        s: Sent,
        policy: &mut Attempts,
        tried: Tried,
        leader: Option<Leader<'_>>,
    ) -> Routed {
        let answer = s.result.expect("an answer");
        match s.live {
            Some((live, held)) => self.streaming(job, s.planned, live, held, s.ms, tried),
            None => {
                policy.observe(s.index, Ok(()));
                let done = (s.ms, s.ts, s.cost, s.sent);
                self.answered(job, &s.planned, answer, done, tried, leader)
            }
        }
    }

    /// Waits for the plan's `i`, paused or held off until `until`, and
    /// says why. Meanwhile it waits its turn for a slot of every candidate
    /// held off because its upstream had none free: the plan's index of
    /// the one whose slot came first, kept for it.
    async fn wait_for(
        &self,
        job: &Job<'_>,
        policy: &Attempts,
        (until, i): (Instant, usize),
        upstream: &dyn Upstream,
    ) -> Option<usize> {
        let model = &policy.plan()[i].model;
        let why = self
            .parts
            .health
            .pause_reason(model)
            .or_else(|| policy.held_off_for(i).map(str::to_string))
            .unwrap_or_else(|| "paused".to_string());
        let wait = until.saturating_duration_since(Instant::now());
        self.parts.observer.waiting(job.opts.tag, model, wait, &why);
        // Not all at the pause's end: see `wake_spread`.
        let until = until + crate::core::attempts::wake_spread(wait, job.opts.tag);
        let turns: Vec<_> = policy
            .plan()
            .iter()
            .enumerate()
            .filter(|(j, p)| {
                policy.held_off_for(*j) == Some(AT_ITS_LIMIT)
                    && self.parts.health.pause_reason(&p.model).is_none()
            })
            .map(|(j, p)| {
                Box::pin(async move {
                    upstream.turn(&p.model).await;
                    j
                })
            })
            .collect();
        let turn = async {
            match turns.is_empty() {
                true => std::future::pending().await,
                false => futures_util::future::select_all(turns).await.0,
            }
        };
        tokio::select! {
            j = turn => Some(j),
            () = self.wait_until(until, job.opts.cancel.as_ref()) => None,
        }
    }

    /// Takes in an attempt on the plan's `i` that failed, and what it asks
    /// beyond its request; whether it was interrupted. One held back by
    /// its upstream's own limit was not sent: no attempt, and the model is
    /// left alone a while (other candidates meanwhile, or a wait).
    fn took_failure(
        &self,
        (i, planned, (ms, ts, sent)): (usize, &Planned, (f64, i64, Instant)),
        f: &Failure,
        policy: &mut Attempts,
        tried: &mut Tried,
    ) -> bool {
        if f.kind == FailureKind::AtLimit {
            let until = Instant::now() + f.retry_after.unwrap_or(BUSY_WAIT);
            policy.hold_off(i, until, AT_ITS_LIMIT);
            return false;
        }
        tried.failed(planned, f, (ms, ts, sent));
        let effect = policy.observe(i, Err(f));
        self.take_effect(&planned.model, sent, effect, tried);
        f.kind == FailureKind::Interrupted
    }

    /// Sends the attempt on the plan's `i`; hedges it when it is slow to
    /// answer. What came back, the answer (if any) last.
    async fn send_or_hedge(
        &self,
        job: &Job<'_>,
        policy: &Attempts,
        (i, planned): (usize, Planned),
        held: Held,
        estimate: impl Fn(&Planned) -> f64,
        upstream: &dyn Upstream,
    ) -> Vec<Sent> {
        let (req, opts) = (job.req, &job.opts);
        // A stream is never hedged: its first chunk is the answer.
        let delay = (!opts.stream)
            .then(|| self.hedge_delay(&planned.model))
            .flatten();
        let first = self.send_one(req, opts, i, planned, held, upstream);
        match delay {
            None => vec![first.await],
            Some(delay) => {
                // Boxed: two attempts in flight make a large future,
                // and most requests are never hedged.
                Box::pin(self.hedged(req, opts, policy, i, first, delay, estimate, upstream)).await
            }
        }
    }

    /// Waits until `until`, or until the run or the request stops.
    async fn wait_until(&self, until: Instant, own: Option<&CancellationToken>) {
        let refused = self.refusal.token();
        tokio::select! {
            _ = tokio::time::sleep_until(until.into()) => {}
            _ = self.cancel.cancelled() => {}
            _ = refused.cancelled() => {}
            _ = when_cancelled(own) => {}
        }
    }

    /// Whether the request must stop before its next attempt, and how.
    fn halted(&self, tried: &Tried, own: Option<&CancellationToken>) -> Option<Halt> {
        if let Some(stop) = self.stopped() {
            let attempts = counted(tried.attempts.len() as u64, "attempt");
            let message = match (tried.attempts.is_empty(), self.config.retry_refused) {
                (true, None) => "not sent: the run was stopped".to_string(),
                (false, None) => format!("the run was stopped after {attempts}"),
                // A server has no run: it refuses requests for a while.
                (true, Some(_)) => "not sent".to_string(),
                (false, Some(_)) => format!("stopped after {attempts}"),
            };
            return Some(Halt::Ending(Ending::new(
                stop.kind,
                format!("{message} ({})", stop.message),
            )));
        }
        if !self.cancel.is_cancelled() && !own.is_some_and(CancellationToken::is_cancelled) {
            return None;
        }
        if tried.attempts.is_empty() {
            return Some(Halt::Unsent);
        }
        let last = tried.attempts.last().and_then(|a| a.error.as_deref());
        Some(Halt::Ending(Ending::new(
            error_type::INTERRUPTED,
            format!(
                "interrupted after {}; last: {}",
                counted(tried.attempts.len() as u64, "attempt"),
                last.unwrap_or("none")
            ),
        )))
    }

    /// Whether the run is stopping (cancelled, or refused by the API).
    pub(super) fn stopping(&self) -> bool {
        self.cancel.is_cancelled() || self.refusal.is_set()
    }

    /// What a failed attempt, sent at `sent`, asks beyond its request: a
    /// pause, or a stop.
    fn take_effect(&self, model: &str, sent: Instant, effect: Effect, tried: &mut Tried) {
        match effect {
            Effect::None => {}
            Effect::CoolDown { retry_after } => {
                let until = self.parts.health.rate_limited(model, sent, retry_after);
                let pause = (model.to_string(), unix_ms(until), Pause::RateLimit);
                tried.cooldowns.push(pause);
            }
            Effect::StopRun(ending) => {
                if self.refusal.set(ending.clone()) {
                    self.parts.observer.stopping(&ending.message);
                }
            }
        }
    }
}

/// Why a request waits for a candidate its upstream's own limit holds
/// back.
const AT_ITS_LIMIT: &str = "its upstream is at its limit";

/// What a budget holds for a candidate whose price is unknown: what the
/// dearest model the catalogue prices would charge for the request, else
/// the dearest candidate's estimate. Never 0 while any price is known: a
/// model no price is known for must not pass a budget for free.
fn unknown_price_estimate(plan: &[Planned], catalogue: &Catalogue, req: &Request) -> f64 {
    let candidates = plan.iter().filter_map(|p| p.est_cost).fold(0.0, f64::max);
    if plan.iter().all(|p| p.est_cost.is_some()) {
        return candidates;
    }
    let completion = req.completion_tokens().saturating_mul(req.choices.max(1));
    catalogue
        .dearest_estimate(req.prompt_tokens, completion)
        .map_or(candidates, |d| d.max(candidates))
}

/// The length of `candidate`'s account, the prefix that names its upstream
/// (`NAME:`); 0 for the default upstream.
fn account_of(upstream: &dyn Upstream, candidate: &str) -> usize {
    upstream
        .route_to(candidate)
        .map_or(0, |(_, model)| candidate.len().saturating_sub(model.len()))
}
