//! The attempt policy of one request: which model to send it to next, when
//! to wait for a cooling model, and when to give up. A small state machine
//! with no I/O and no clock but the instants it is given:
//!
//! ```text
//! loop {
//!     match attempts.next(now, &health) {
//!         Next::Send(i)    => { let r = send(plan[i]); let e = attempts.observe(i, r); ... }
//!         Next::Wait(t)    => sleep until t,
//!         Next::GiveUp(e)  => the request ends with e,
//!     }
//! }
//! ```
//!
//! The order is the plan's: the ranked candidates (or the pinned model), then
//! the fallback models. A model is tried once, except one that was rate
//! limited, which may be tried again once its pause is over. After a
//! context-length error only models with a larger known window are tried.
//! A failure no other model can help with (a bad request) ends the request;
//! one that makes the whole run pointless (a refused key or account) ends it
//! and tells the engine to stop the run.

use std::time::{Duration, Instant};

use crate::core::failure::{error_type, Failure, FailureKind};
use crate::core::health::HealthView;

/// The longest any request waits for a model whose circuit is open (one
/// that kept failing, not one rate limited): a pause past it means its
/// upstream has been failing a while, and the request ends as failed, for
/// its client or a re-run to try again, rather than wait minutes.
pub const OPEN_PATIENCE: Duration = Duration::from_secs(60);

/// How long after a pause ends request number `tag`, waiting `wait` for
/// it, wakes: up to a quarter of the wait, at most a second, spread over
/// the requests by multiples of the golden ratio. So requests waiting for
/// one pause do not all send at its end: the first one's answer (a pause
/// renewed) is seen by the rest before they send.
pub fn wake_spread(wait: Duration, tag: u64) -> Duration {
    const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;
    let share = (tag.wrapping_mul(GOLDEN) >> 11) as f64 / (1u64 << 53) as f64;
    (wait / 4).min(Duration::from_secs(1)).mul_f64(share)
}

/// A model in the order of models to try for one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub model: String,
    /// Its score, for a ranked candidate (not for a pinned or fallback model).
    pub score: Option<f64>,
    pub context_length: Option<u64>,
    /// Estimated cost of this request on this model, when its price is known.
    pub est_cost: Option<f64>,
}

/// How a request ends without an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ending {
    /// One of [`error_type`].
    pub kind: &'static str,
    pub message: String,
    /// Waiting would not help: a budget refused a request larger than the
    /// whole budget, which no new period makes fit.
    pub for_good: bool,
    /// How long until a retry may get further: the pause left of the model
    /// that would be tried next, for a request ended by rate limits.
    pub retry_after: Option<Duration>,
}

impl Ending {
    pub fn new(kind: &'static str, message: impl Into<String>) -> Ending {
        Ending {
            kind,
            message: message.into(),
            for_good: false,
            retry_after: None,
        }
    }
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Send the request to the plan's model at this index.
    Send(usize),
    /// Every model left is cooling: wait until then (when the plan's model
    /// at the index may be tried again), and ask again.
    Wait(Instant, usize),
    /// No model is left to try.
    GiveUp(Ending),
}

/// What a failed attempt asks of the engine beyond this request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    None,
    /// Pause the model: rate limited or unavailable, for Retry-After when
    /// given, else for a backoff.
    CoolDown {
        retry_after: Option<Duration>,
    },
    /// The API refused the key or the account: send nothing more, anywhere.
    /// The ending carries the error type and the API's message.
    StopRun(Ending),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Untried,
    /// Rate limited: may be tried again once its pause is over.
    Cooling,
    Done,
}

/// The attempts of one request.
#[derive(Debug, Clone)]
pub struct Attempts {
    plan: Vec<Planned>,
    state: Vec<State>,
    /// Until when this request leaves a model alone, and why: another
    /// request holds its one attempt (a probe, or a half-open circuit's),
    /// or its upstream is at its limit.
    held_off: Vec<Option<(Instant, &'static str)>>,
    /// After a context-length error: the largest window known too small.
    min_context: Option<u64>,
    /// The account of each of the plan's models: the upstream it is on
    /// (its index among the plan's upstreams, in order met). All 0 until
    /// [`Attempts::on_accounts`] says otherwise.
    accounts: Vec<u16>,
    /// After a 402 (an account's credit does not cover this request on a
    /// model): the account, and the estimate its models must be under to
    /// be tried. Models on other accounts are not held to it.
    max_cost: Vec<(u16, f64)>,
    /// The last failure was a 402: giving up then says so.
    payment: bool,
    /// Every failure so far was a rate limit (429): giving up then says so.
    rate_limited: bool,
    /// The longest this request waits for a paused model, in ms: past it,
    /// it ends (`None`: as long as the pause lasts). Small, as the
    /// request's future carries it.
    patience_ms: Option<std::num::NonZeroU32>,
    sent: u32,
    max: u32,
    /// `model: message` of the last failure.
    last: Option<String>,
    ended: Option<Ending>,
}

impl Attempts {
    /// The policy for `plan`, sending at most `max_attempts` times.
    pub fn new(plan: Vec<Planned>, max_attempts: u32) -> Attempts {
        let state = vec![State::Untried; plan.len()];
        let held_off = vec![None; plan.len()];
        let accounts = vec![0; plan.len()];
        Attempts {
            plan,
            state,
            held_off,
            min_context: None,
            accounts,
            max_cost: Vec::new(),
            payment: false,
            rate_limited: true,
            patience_ms: None,
            sent: 0,
            max: max_attempts,
            last: None,
            ended: None,
        }
    }

    /// Says which account (upstream) each of the plan's models is on: the
    /// first `account_len` bytes of its id (`NAME:`, or none for the
    /// default upstream). A 402 then holds back only the dearer models of
    /// the account that answered it, since another's credit is its own.
    pub fn on_accounts(mut self, account_len: impl Fn(&str) -> usize) -> Attempts {
        let mut seen: Vec<&str> = Vec::new();
        for (p, account) in self.plan.iter().zip(self.accounts.iter_mut()) {
            let a = p.model.get(..account_len(&p.model)).unwrap_or("");
            let k = seen.iter().position(|s| *s == a).unwrap_or_else(|| {
                seen.push(a);
                seen.len() - 1
            });
            *account = u16::try_from(k).unwrap_or(u16::MAX);
        }
        self
    }

    /// Waits for a paused model at most `patience`: a request whose every
    /// model left is paused for longer ends, as `rate_limited` when its
    /// failures were all rate limits, with the pause left as its
    /// `retry_after`.
    pub fn waiting_at_most(mut self, patience: Duration) -> Attempts {
        let ms = u32::try_from(patience.as_millis()).unwrap_or(u32::MAX);
        self.patience_ms = std::num::NonZeroU32::new(ms.max(1));
        self
    }

    pub fn plan(&self) -> &[Planned] {
        &self.plan
    }

    /// Attempts observed so far.
    pub fn sent(&self) -> u32 {
        self.sent
    }

    /// The best model not tried and not cooling; else one whose pause is
    /// over; else a wait for the first pause to end; else the end.
    pub fn next(&self, now: Instant, health: &(impl HealthView + ?Sized)) -> Next {
        if let Some(e) = &self.ended {
            return Next::GiveUp(e.clone());
        }
        if self.sent >= self.max {
            return Next::GiveUp(self.all_failed(now, health));
        }
        let mut again = None;
        let mut earliest: Option<(Instant, usize)> = None;
        for (i, p) in self.plan.iter().enumerate() {
            if self.state[i] == State::Done || self.too_small(i, p) {
                continue;
            }
            match self.cooling_until(i, now, health) {
                None if self.state[i] == State::Untried => return Next::Send(i),
                None => {
                    again.get_or_insert(i);
                }
                Some(t) => {
                    if earliest.is_none_or(|(e, _)| t < e) {
                        earliest = Some((t, i));
                    }
                }
            }
        }
        match (again, earliest) {
            (Some(i), _) => Next::Send(i),
            (None, Some((t, i))) if self.past_patience(t - now, i, health) => {
                Next::GiveUp(self.out_of_patience((t, i), now, health))
            }
            (None, Some((t, i))) => Next::Wait(t, i),
            (None, None) => Next::GiveUp(self.all_failed(now, health)),
        }
    }

    /// Takes in the result of an attempt sent to the plan's model `i`.
    pub fn observe(&mut self, i: usize, result: Result<(), &Failure>) -> Effect {
        self.sent = self.sent.saturating_add(1);
        let f = match result {
            Ok(()) => {
                self.state[i] = State::Done;
                return Effect::None;
            }
            Err(f) => f,
        };
        let model = &self.plan[i].model;
        self.last = Some(format!("{model}: {}", f.message));
        self.rate_limited &= matches!(f.kind, FailureKind::RateLimited | FailureKind::Cancelled);
        match f.kind {
            FailureKind::Cancelled => {
                // The other attempt of a hedged request answered.
                self.state[i] = State::Done;
                Effect::None
            }
            FailureKind::Interrupted => {
                self.state[i] = State::Done;
                self.ended = Some(Ending::new(
                    error_type::INTERRUPTED,
                    format!("{model}: {}", f.message),
                ));
                Effect::None
            }
            FailureKind::Auth => {
                let kind = error_type::AUTH;
                self.state[i] = State::Done;
                self.ended = Some(Ending::new(kind, format!("{model}: {}", f.message)));
                Effect::StopRun(Ending::new(kind, f.message.clone()))
            }
            FailureKind::Payment => {
                // The credit left does not cover this request on this
                // model (OpenRouter answers 402 when max_tokens' price is
                // over it): a cheaper model may still take it. It stops
                // nothing else.
                self.state[i] = State::Done;
                self.payment = true;
                if let Some(c) = self.plan[i].est_cost {
                    let account = self.accounts[i];
                    match self.max_cost.iter_mut().find(|(a, _)| *a == account) {
                        Some((_, m)) => *m = m.min(c),
                        None => self.max_cost.push((account, c)),
                    }
                }
                Effect::None
            }
            FailureKind::RateLimited | FailureKind::Unavailable => {
                self.state[i] = State::Cooling;
                Effect::CoolDown {
                    retry_after: f.retry_after,
                }
            }
            FailureKind::ContextLength => {
                // A window the catalogue does not give counts as 0: any
                // known window may be larger, an unknown one not.
                let c = self.plan[i].context_length.unwrap_or(0);
                self.min_context = Some(self.min_context.map_or(c, |m| m.max(c)));
                self.state[i] = State::Done;
                Effect::None
            }
            k if !k.try_elsewhere() => {
                self.state[i] = State::Done;
                self.ended = Some(Ending::new(
                    error_type::BAD_REQUEST,
                    format!("{model}: {}", f.message),
                ));
                Effect::None
            }
            _ => {
                self.state[i] = State::Done;
                Effect::None
            }
        }
    }

    /// The model to hedge the attempts in flight on the plan's `besides`
    /// with: the best one not tried, not ruled out and not cooling, while
    /// attempts are left for it.
    pub fn hedge(
        &self,
        now: Instant,
        health: &(impl HealthView + ?Sized),
        besides: &[usize],
    ) -> Option<usize> {
        let after = u32::try_from(besides.len() + 1).unwrap_or(u32::MAX);
        if self.ended.is_some() || self.sent.saturating_add(after) > self.max {
            return None;
        }
        self.plan.iter().enumerate().position(|(i, p)| {
            !besides.contains(&i)
                && self.state[i] == State::Untried
                && !self.too_small(i, p)
                && self.cooling_until(i, now, health).is_none()
        })
    }

    /// Leaves the plan's model `i` alone until `until`, for `why`:
    /// another request holds the one attempt it lets through (a probe, or
    /// a half-open circuit's), or its upstream is at its limit. Meanwhile
    /// other models are tried, or the request waits, as for a model that
    /// is cooling.
    pub fn hold_off(&mut self, i: usize, until: Instant, why: &'static str) {
        self.held_off[i] = Some((until, why));
    }

    /// Why the plan's model `i` was last held off, if it was.
    pub fn held_off_for(&self, i: usize) -> Option<&'static str> {
        self.held_off[i].map(|(_, why)| why)
    }

    /// Until when the plan's model `i` may not be sent to, after `now`.
    fn cooling_until(
        &self,
        i: usize,
        now: Instant,
        health: &(impl HealthView + ?Sized),
    ) -> Option<Instant> {
        [
            health.cooling_until(&self.plan[i].model),
            self.held_off[i].map(|(t, _)| t),
        ]
        .into_iter()
        .flatten()
        .filter(|t| *t > now)
        .max()
    }

    /// Whether a context-length error ruled this model out.
    /// Whether `p` is ruled out by what came back: its window is not over
    /// one that was too small, or its estimate not under one the account
    /// could not pay.
    /// Whether the plan's model `i` (`p`) is ruled out: its window is
    /// known too small, or its account answered 402 for a cheaper one.
    fn too_small(&self, i: usize, p: &Planned) -> bool {
        let account = self.accounts[i];
        self.min_context
            .is_some_and(|c| p.context_length.is_none_or(|x| x <= c))
            || self
                .max_cost
                .iter()
                .any(|&(a, c)| a == account && p.est_cost.is_none_or(|x| x >= c))
    }

    /// Whether waiting `wait` for the plan's model `i` is past this
    /// request's patience, or past [`OPEN_PATIENCE`] for a model whose
    /// circuit is open.
    fn past_patience(&self, wait: Duration, i: usize, health: &(impl HealthView + ?Sized)) -> bool {
        let own = self
            .patience_ms
            .map(|p| Duration::from_millis(p.get().into()));
        let patience = match health.open(&self.plan[i].model) {
            true => Some(own.map_or(OPEN_PATIENCE, |p| p.min(OPEN_PATIENCE))),
            false => own,
        };
        patience.is_some_and(|p| wait > p)
    }

    /// The ending of a request whose every model left is paused past its
    /// patience, the first until `t` (the plan's `i`): a rate limit when
    /// its own failures were rate limits, or it had none and the model is
    /// not paused for failing.
    fn out_of_patience(
        &self,
        (t, i): (Instant, usize),
        now: Instant,
        health: &(impl HealthView + ?Sized),
    ) -> Ending {
        let model = &self.plan[i].model;
        let wait = t - now;
        let why = health
            .pause_reason(model)
            .or_else(|| self.held_off_for(i).map(str::to_string))
            .unwrap_or_else(|| "paused".to_string());
        let mut message = format!(
            "every model left is paused, the first ({model}: {why}) for another {}",
            // Whole seconds, rounded up, as its `Retry-After`.
            crate::core::duration::format(Duration::from_secs(crate::core::duration::secs_up(
                wait
            )))
        );
        if let Some(last) = &self.last {
            message = format!("{message}; last failure: {last}");
        }
        let kind = match self.rate_limited && !health.open(model) {
            true => error_type::RATE_LIMITED,
            false => error_type::ALL_MODELS_FAILED,
        };
        Ending {
            retry_after: Some(wait),
            ..Ending::new(kind, message)
        }
    }

    /// The ending of a request with no model left to try.
    fn all_failed(&self, now: Instant, health: &(impl HealthView + ?Sized)) -> Ending {
        let message = match &self.last {
            None => "no candidate model could be tried".to_string(),
            Some(last) => format!(
                "{} failed; last: {last}",
                crate::core::numbers::counted(u64::from(self.sent), "attempt")
            ),
        };
        if self.payment {
            return Ending::new(error_type::PAYMENT_REQUIRED, message);
        }
        if !(self.rate_limited && self.last.is_some()) {
            return Ending::new(error_type::ALL_MODELS_FAILED, message);
        }
        // Rate limits alone: until the first of the models tried is free.
        let retry_after = (0..self.plan.len())
            .filter(|&i| self.state[i] == State::Cooling)
            .filter_map(|i| self.cooling_until(i, now, health))
            .min()
            .map(|t| t - now);
        Ending {
            retry_after,
            ..Ending::new(error_type::RATE_LIMITED, message)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::failure::classify_status;
    use crate::core::health::ModelStat;
    use std::collections::HashMap;

    /// A fake health view: pauses only; with `.1`, open circuits (models
    /// that kept failing), else rate limits.
    #[derive(Default)]
    struct Pauses(HashMap<String, Instant>, bool);

    impl HealthView for Pauses {
        fn stat(&self, _: &str) -> Option<ModelStat> {
            None
        }
        fn cooling_until(&self, model: &str) -> Option<Instant> {
            self.0.get(model).copied()
        }
        fn open(&self, model: &str) -> bool {
            self.1 && self.0.contains_key(model)
        }
    }

    fn planned(model: &str, context: Option<u64>) -> Planned {
        Planned {
            model: model.into(),
            score: None,
            context_length: context,
            est_cost: None,
        }
    }

    fn abc() -> Attempts {
        Attempts::new(
            vec![
                planned("a", Some(8_000)),
                planned("b", Some(4_000)),
                planned("c", Some(32_000)),
            ],
            4,
        )
    }

    fn status(code: u16, retry_after: Option<u64>, body: &str) -> Failure {
        classify_status(code, retry_after.map(Duration::from_secs), body.as_bytes())
    }

    fn failure(kind: FailureKind) -> Failure {
        Failure {
            kind,
            status: None,
            message: kind.name().into(),
            retry_after: None,
        }
    }

    /// Fails every attempt with `f` until the policy stops, and returns the
    /// models it sent to and how it ended.
    fn drive(mut a: Attempts, f: &Failure) -> (Vec<String>, Next) {
        let now = Instant::now();
        let health = Pauses::default();
        let mut sent = Vec::new();
        loop {
            match a.next(now, &health) {
                Next::Send(i) => {
                    sent.push(a.plan()[i].model.clone());
                    a.observe(i, Err(f));
                }
                other => return (sent, other),
            }
        }
    }

    fn gave_up(next: Next) -> Ending {
        match next {
            Next::GiveUp(e) => e,
            other => panic!("expected to give up, got {other:?}"),
        }
    }

    #[test]
    fn the_best_model_goes_first_and_an_answer_ends_the_request() {
        let mut a = abc();
        let now = Instant::now();
        assert_eq!(a.next(now, &Pauses::default()), Next::Send(0));
        assert_eq!(a.observe(0, Ok(())), Effect::None);
        assert_eq!(a.sent(), 1);
    }

    #[test]
    fn a_408_moves_on_to_the_next_model() {
        let (sent, end) = drive(abc(), &status(408, None, ""));
        assert_eq!(sent, ["a", "b", "c"]);
        let e = gave_up(end);
        assert_eq!(e.kind, error_type::ALL_MODELS_FAILED);
        assert!(
            e.message
                .starts_with("3 attempts failed; last: c: HTTP 408"),
            "{}",
            e.message
        );
    }

    #[test]
    fn timeouts_move_on_to_the_next_model() {
        let (sent, _) = drive(abc(), &failure(FailureKind::Timeout));
        assert_eq!(sent, ["a", "b", "c"]);
    }

    #[test]
    fn server_errors_move_on_to_the_next_model() {
        for code in [500, 502, 504] {
            let (sent, end) = drive(abc(), &status(code, None, "boom"));
            assert_eq!(sent, ["a", "b", "c"], "{code}");
            assert_eq!(gave_up(end).kind, error_type::ALL_MODELS_FAILED);
        }
    }

    #[test]
    fn bodies_that_are_not_completions_move_on_to_the_next_model() {
        for kind in [
            FailureKind::InvalidResponse,
            FailureKind::UpstreamError,
            FailureKind::TooLarge,
            FailureKind::Connect,
            FailureKind::NotFound,
        ] {
            let (sent, _) = drive(abc(), &failure(kind));
            assert_eq!(sent, ["a", "b", "c"], "{kind:?}");
        }
    }

    #[test]
    fn a_429_with_retry_after_cools_the_model_and_moves_on() {
        let mut a = abc();
        let f = status(429, Some(7), "slow down");
        let now = Instant::now();
        let mut health = Pauses::default();
        assert_eq!(a.next(now, &health), Next::Send(0));
        assert_eq!(
            a.observe(0, Err(&f)),
            Effect::CoolDown {
                retry_after: Some(Duration::from_secs(7))
            }
        );
        health.0.insert("a".into(), now + Duration::from_secs(7));
        assert_eq!(a.next(now, &health), Next::Send(1));
    }

    #[test]
    fn a_429_without_retry_after_asks_for_a_backoff() {
        let mut a = abc();
        let f = status(429, None, "");
        assert_eq!(
            a.observe(0, Err(&f)),
            Effect::CoolDown { retry_after: None }
        );
        let f = status(503, None, "");
        assert_eq!(
            a.observe(1, Err(&f)),
            Effect::CoolDown { retry_after: None }
        );
    }

    #[test]
    fn a_cooled_model_is_tried_again_once_its_pause_is_over() {
        let mut a = Attempts::new(vec![planned("a", None), planned("b", None)], 4);
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(5);
        let mut health = Pauses::default();
        a.observe(0, Err(&status(429, Some(5), "")));
        health.0.insert("a".into(), later);
        a.observe(1, Err(&status(500, None, "")));
        // b is done, a is cooling: wait for a.
        assert_eq!(a.next(t0, &health), Next::Wait(later, 0));
        assert_eq!(a.next(later, &health), Next::Send(0));
    }

    #[test]
    fn when_every_candidate_is_cooling_the_request_waits_for_the_first() {
        let a = abc();
        let t0 = Instant::now();
        let mut health = Pauses::default();
        for (m, s) in [("a", 9), ("b", 3), ("c", 6)] {
            health.0.insert(m.into(), t0 + Duration::from_secs(s));
        }
        assert_eq!(
            a.next(t0, &health),
            Next::Wait(t0 + Duration::from_secs(3), 1)
        );
        // A pause already over does not count.
        assert_eq!(a.next(t0 + Duration::from_secs(4), &health), Next::Send(1));
    }

    #[test]
    fn a_request_that_may_wait_a_while_ends_when_every_pause_is_longer() {
        let t0 = Instant::now();
        let mut health = Pauses::default();
        let mut a = Attempts::new(vec![planned("a", None), planned("b", None)], 4)
            .waiting_at_most(Duration::from_secs(5));
        a.observe(0, Err(&status(429, Some(40), "slow down")));
        health.0.insert("a".into(), t0 + Duration::from_secs(40));
        a.observe(1, Err(&status(429, Some(60), "")));
        health.0.insert("b".into(), t0 + Duration::from_secs(60));
        let e = gave_up(a.next(t0, &health));
        assert_eq!(e.kind, error_type::RATE_LIMITED);
        assert_eq!(e.retry_after, Some(Duration::from_secs(40)));
        assert!(e.message.contains("a: paused"), "{}", e.message);
        // A pause within its patience is waited for.
        let soon = t0 + Duration::from_secs(35);
        assert_eq!(
            a.next(soon, &health),
            Next::Wait(t0 + Duration::from_secs(40), 0)
        );
        // A failure other than a rate limit makes it an ordinary failure.
        let mut mixed = Attempts::new(vec![planned("a", None), planned("b", None)], 4)
            .waiting_at_most(Duration::from_secs(5));
        mixed.observe(0, Err(&status(500, None, "")));
        mixed.observe(1, Err(&status(429, Some(40), "")));
        health.0.insert("b".into(), t0 + Duration::from_secs(40));
        let e = gave_up(mixed.next(t0, &health));
        assert_eq!(e.kind, error_type::ALL_MODELS_FAILED);
        assert_eq!(e.retry_after, Some(Duration::from_secs(40)));
    }

    #[test]
    fn requests_waiting_for_one_pause_wake_spread_out() {
        let wait = Duration::from_secs(2);
        let mut at: Vec<Duration> = (1..=8).map(|tag| wake_spread(wait, tag)).collect();
        assert!(at.iter().all(|d| *d < Duration::from_millis(500)), "{at:?}");
        at.sort();
        // Apart enough for the first one's answer to come back first.
        assert!(
            at.windows(2)
                .all(|w| w[1] - w[0] > Duration::from_millis(10)),
            "{at:?}"
        );
        // At most a second, however long the wait.
        assert!(wake_spread(Duration::from_secs(300), 7) <= Duration::from_secs(1));
        assert_eq!(wake_spread(Duration::ZERO, 7), Duration::ZERO);
    }

    #[test]
    fn no_request_waits_minutes_for_models_that_keep_failing() {
        let t0 = Instant::now();
        let a = Attempts::new(vec![planned("a", None), planned("b", None)], 4);
        let open = |secs: [u64; 2]| {
            Pauses(
                HashMap::from([
                    ("a".to_string(), t0 + Duration::from_secs(secs[0])),
                    ("b".to_string(), t0 + Duration::from_secs(secs[1])),
                ]),
                true,
            )
        };
        // A minute or less is waited for, as a rate limit is...
        assert_eq!(
            a.next(t0, &open([60, 90])),
            Next::Wait(t0 + Duration::from_secs(60), 0)
        );
        // ...longer ends the request as failed, with the pause left.
        let e = gave_up(a.next(t0, &open([61, 90])));
        assert_eq!(e.kind, error_type::ALL_MODELS_FAILED);
        assert_eq!(e.retry_after, Some(Duration::from_secs(61)));
        // A rate limit's pause is waited out, however long.
        let mut limited = Pauses::default();
        limited.0.insert("a".into(), t0 + Duration::from_secs(300));
        limited.0.insert("b".into(), t0 + Duration::from_secs(300));
        assert!(matches!(a.next(t0, &limited), Next::Wait(..)));
    }

    #[test]
    fn rate_limits_until_the_last_attempt_end_as_a_rate_limit() {
        let t0 = Instant::now();
        let mut health = Pauses::default();
        let mut a = Attempts::new(vec![planned("a", None)], 2);
        a.observe(0, Err(&status(429, Some(1), "")));
        a.observe(0, Err(&status(429, Some(3), "")));
        health.0.insert("a".into(), t0 + Duration::from_secs(3));
        let e = gave_up(a.next(t0, &health));
        assert_eq!(e.kind, error_type::RATE_LIMITED);
        assert_eq!(e.retry_after, Some(Duration::from_secs(3)));
        // Without patience, a request waits as long as a pause lasts.
        let b = Attempts::new(vec![planned("a", None)], 2);
        assert!(matches!(b.next(t0, &health), Next::Wait(..)));
    }

    #[test]
    fn a_context_length_error_tries_only_larger_windows() {
        let f = status(
            400,
            None,
            r#"{"error":{"message":"maximum context length is 8192 tokens"}}"#,
        );
        let mut plan = abc().plan().to_vec();
        plan.push(planned("unknown-window", None));
        let (sent, end) = drive(Attempts::new(plan, 10), &f);
        // a (8k) failed: b (4k) and the unknown window are skipped, c (32k) tried.
        assert_eq!(sent, ["a", "c"]);
        assert_eq!(gave_up(end).kind, error_type::ALL_MODELS_FAILED);
    }

    #[test]
    fn a_400_naming_a_missing_model_moves_on_to_the_next() {
        let f = status(
            400,
            None,
            r#"{"error":{"message":"acme/ghost is not a valid model ID"}}"#,
        );
        let (sent, _) = drive(abc(), &f);
        assert_eq!(sent, ["a", "b", "c"]);
        let (sent, _) = drive(abc(), &status(404, None, ""));
        assert_eq!(sent, ["a", "b", "c"]);
    }

    #[test]
    fn any_other_400_ends_the_request_as_a_bad_request() {
        let (sent, end) = drive(abc(), &status(400, None, "temperature must be <= 2"));
        assert_eq!(sent, ["a"]);
        let e = gave_up(end);
        assert_eq!(e.kind, error_type::BAD_REQUEST);
        assert_eq!(e.message, "a: HTTP 400: temperature must be <= 2");
        // Other 4xx alike.
        let (sent, _) = drive(abc(), &status(422, None, ""));
        assert_eq!(sent, ["a"]);
    }

    #[test]
    fn a_402_moves_to_a_cheaper_model_and_stops_nothing() {
        let priced = |m: &str, c: f64| Planned {
            est_cost: Some(c),
            ..planned(m, None)
        };
        let mut a = Attempts::new(
            vec![
                priced("dear", 1.0),
                priced("dearer", 2.0),
                priced("cheap", 0.1),
            ],
            4,
        );
        let health = Pauses::default();
        let t0 = Instant::now();
        let f = status(402, None, "more credits are required");
        assert_eq!(a.observe(0, Err(&f)), Effect::None, "nothing stops");
        assert_eq!(
            a.next(t0, &health),
            Next::Send(2),
            "the dearer one is skipped"
        );
        assert_eq!(a.observe(2, Err(&f)), Effect::None);
        match a.next(t0, &health) {
            Next::GiveUp(e) => assert_eq!(e.kind, error_type::PAYMENT_REQUIRED),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_402_holds_back_only_the_dearer_models_of_its_own_account() {
        let priced = |m: &str, c: f64| Planned {
            est_cost: Some(c),
            ..planned(m, None)
        };
        let plan = vec![
            priced("local:cheap", 0.5),
            priced("local:dear", 2.0),
            priced("prov/dearer", 3.0),
        ];
        let account = |m: &str| match m.starts_with("local:") {
            true => "local:".len(),
            false => 0,
        };
        let mut a = Attempts::new(plan, 4).on_accounts(account);
        let health = Pauses::default();
        let t0 = Instant::now();
        let f = status(402, None, "more credits are required");
        assert_eq!(a.observe(0, Err(&f)), Effect::None);
        assert_eq!(
            a.next(t0, &health),
            Next::Send(2),
            "another account's model, dearer or not; not the same account's dearer one"
        );
    }

    #[test]
    fn a_401_ends_the_request_and_stops_the_run() {
        let mut a = abc();
        let f = status(401, None, "no");
        match a.observe(0, Err(&f)) {
            Effect::StopRun(e) => {
                assert_eq!(e.kind, error_type::AUTH);
                assert_eq!(e.message, "HTTP 401: no");
            }
            other => panic!("{other:?}"),
        }
        let e = gave_up(a.next(Instant::now(), &Pauses::default()));
        assert_eq!(e.kind, error_type::AUTH);
        assert_eq!(e.message, "a: HTTP 401: no");
    }

    #[test]
    fn one_failed_attempt_is_singular() {
        let (sent, end) = drive(
            Attempts::new(abc().plan().to_vec(), 1),
            &status(500, None, ""),
        );
        assert_eq!(sent, ["a"]);
        let message = gave_up(end).message;
        assert!(
            message.starts_with("1 attempt failed; last: a:"),
            "{message}"
        );
    }

    #[test]
    fn max_attempts_bounds_the_tries() {
        let mut plan = abc().plan().to_vec();
        plan.push(planned("d", None));
        let (sent, end) = drive(Attempts::new(plan, 2), &status(500, None, ""));
        assert_eq!(sent, ["a", "b"]);
        assert!(gave_up(end).message.starts_with("2 attempts failed"));
    }

    #[test]
    fn a_hedge_goes_to_the_next_best_model_while_attempts_are_left() {
        let a = abc();
        let now = Instant::now();
        let mut health = Pauses::default();
        assert_eq!(a.hedge(now, &health, &[0]), Some(1));
        // A hedge that is slow too is hedged on the next.
        assert_eq!(a.hedge(now, &health, &[0, 1]), Some(2));
        assert_eq!(a.hedge(now, &health, &[0, 1, 2]), None, "none left");
        health.0.insert("b".into(), now + Duration::from_secs(5));
        assert_eq!(a.hedge(now, &health, &[0]), Some(2), "b is cooling");
        let one = Attempts::new(abc().plan().to_vec(), 1);
        assert_eq!(
            one.hedge(now, &Pauses::default(), &[0]),
            None,
            "one attempt only"
        );
        let two = Attempts::new(abc().plan().to_vec(), 2);
        assert_eq!(two.hedge(now, &Pauses::default(), &[0]), Some(1));
        assert_eq!(
            two.hedge(now, &Pauses::default(), &[0, 1]),
            None,
            "two attempts only"
        );
        let mut cancelled = abc();
        let f = failure(FailureKind::Cancelled);
        assert_eq!(cancelled.observe(1, Err(&f)), Effect::None);
        assert_eq!(cancelled.next(now, &Pauses::default()), Next::Send(0));
    }

    #[test]
    fn a_model_held_off_is_passed_over_and_waited_for_when_it_is_the_last() {
        let mut a = abc();
        let now = Instant::now();
        let later = now + Duration::from_millis(50);
        let health = Pauses::default();
        a.hold_off(0, later, "busy");
        assert_eq!(a.next(now, &health), Next::Send(1));
        assert_eq!(a.hedge(now, &health, &[1]), Some(2));
        let f = status(500, None, "boom");
        a.observe(1, Err(&f));
        a.observe(2, Err(&f));
        assert_eq!(a.next(now, &health), Next::Wait(later, 0));
        assert_eq!(a.held_off_for(0), Some("busy"));
        assert_eq!(a.held_off_for(1), None);
        assert_eq!(
            a.next(later, &health),
            Next::Send(0),
            "tried once it is over"
        );
    }

    #[test]
    fn an_empty_plan_gives_up_at_once() {
        let e = gave_up(Attempts::new(vec![], 4).next(Instant::now(), &Pauses::default()));
        assert_eq!(
            e,
            Ending::new(
                error_type::ALL_MODELS_FAILED,
                "no candidate model could be tried"
            )
        );
    }
}
