//! Admission: requests and tokens per minute, and a spending cap, as
//! [`Limits`], the engine's [`Admission`].
//!
//! The rate limiters are GCRA (the `governor` crate): requests are spaced
//! evenly instead of sent in bursts followed by stalls. The budget reserves
//! each request's estimated cost before it is sent and settles it with the
//! real cost after, so the spend plus what is in flight never passes the cap.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::engine::ports::{Admission, BoxFuture, BudgetView, OverBudget, Reservation, Reserve};

/// The rate limits and the budget of a process.
pub struct Limits {
    pub rates: RateLimits,
    pub budget: Option<Budget>,
}

impl Admission for Limits {
    fn reserve(&self, estimate: f64, wait: bool) -> Reserve<'_> {
        match &self.budget {
            None => Reserve::Now(Ok(None)),
            Some(b) => match b.try_reserve(estimate) {
                TryReserve::Reserved(r) => Reserve::Now(Ok(Some(r))),
                TryReserve::Over(o) => Reserve::Now(Err(o)),
                TryReserve::Wait => Reserve::Later(Box::pin(async move {
                    b.reserve(estimate, wait).await.map(Some)
                })),
            },
        }
    }

    fn settle(&self, r: Reservation, actual: Option<f64>) {
        if let Some(b) = &self.budget {
            b.settle(r, actual);
        }
    }

    fn budget_left(&self) -> Option<f64> {
        self.budget.as_ref().map(Budget::left)
    }

    fn budget(&self) -> Option<BudgetView> {
        self.budget.as_ref().map(|b| BudgetView {
            spent: b.spent(),
            reserved: b.reserved(),
            max: b.max(),
        })
    }

    fn unlimited(&self) -> bool {
        self.rates.is_unlimited()
    }

    fn acquire(&self, tokens: u64) -> BoxFuture<'_, ()> {
        Box::pin(self.rates.acquire(tokens))
    }

    fn owe(&self, tokens: u64) {
        self.rates.owe(tokens);
    }

    fn give_back(&self, tokens: u64) {
        self.rates.give_back(tokens);
    }
}

/// Tokens a request planned for but its answer's usage shows it did not
/// use: 0 when the usage does not say both how many prompt and how many
/// completion tokens were used.
pub fn unused(planned: u64, usage: &crate::core::failure::Usage) -> u64 {
    match (usage.prompt_tokens, usage.completion_tokens) {
        (Some(p), Some(c)) => planned.saturating_sub(p.max(0).saturating_add(c.max(0)) as u64),
        _ => 0,
    }
}

/// Requests-per-minute and tokens-per-minute limiters shared by all lines.
pub struct RateLimits {
    requests: Option<DefaultDirectRateLimiter>,
    tokens: Option<TokenBucket>,
    /// Requests take their slot in turn (the lock is fair), in the order
    /// they asked: the limiter alone wakes every waiter at once and lets
    /// the quickest win, so lines would leave in no order.
    turn: tokio::sync::Mutex<()>,
}

struct TokenBucket {
    limiter: DefaultDirectRateLimiter,
    burst: NonZeroU32,
    /// The quota: what one request, or all that is owed, may count for at
    /// most, so that a huge `max_tokens` or a wild usage report slows the
    /// run for a minute instead of stalling it.
    per_minute: u64,
    /// Tokens answers used beyond their estimates, not yet taken from the
    /// bucket: the next request takes them with its own.
    owed: AtomicU64,
    /// Tokens taken for requests whose answers did not use them (a line
    /// without `max_tokens` plans for 512), not yet given back: the next
    /// requests take that many fewer, so `--tpm` paces by real use. At
    /// most a bucket's worth, so that a quiet spell does not save up a
    /// burst.
    credit: AtomicU64,
    /// Requests take tokens in turn (the lock is fair): a large one waiting
    /// for the bucket to fill is not overtaken for ever by small ones.
    turn: tokio::sync::Mutex<()>,
}

impl RateLimits {
    pub fn new(rpm: Option<u32>, tpm: Option<u32>) -> RateLimits {
        let requests = rpm.and_then(NonZeroU32::new).map(|n| {
            // A burst of one: requests leave one every 60/n seconds.
            RateLimiter::direct(Quota::per_minute(n).allow_burst(NonZeroU32::MIN))
        });
        let tokens = tpm.and_then(NonZeroU32::new).map(|n| {
            // Tokens come in lumps (a whole request at a time), so the
            // bucket holds a second's worth, or at least one large request.
            let burst = NonZeroU32::new((n.get() / 60).max(4096).min(n.get())).unwrap_or(n);
            TokenBucket {
                limiter: RateLimiter::direct(Quota::per_minute(n).allow_burst(burst)),
                burst,
                per_minute: u64::from(n.get()),
                owed: AtomicU64::new(0),
                credit: AtomicU64::new(0),
                turn: tokio::sync::Mutex::new(()),
            }
        });
        RateLimits {
            requests,
            tokens,
            turn: tokio::sync::Mutex::new(()),
        }
    }

    pub fn is_unlimited(&self) -> bool {
        self.requests.is_none() && self.tokens.is_none()
    }

    /// Waits until one more request of about `tokens` tokens may be sent;
    /// tokens owed by earlier answers are taken first.
    pub async fn acquire(&self, tokens: u64) {
        let Some(t) = &self.tokens else {
            if let Some(r) = &self.requests {
                let _turn = self.turn.lock().await;
                r.until_ready().await;
            }
            return;
        };
        let _turn = t.turn.lock().await;
        let mut left = t.take_credit(t.due(tokens, t.owed.swap(0, Ordering::Relaxed)));
        while left > 0 {
            let n = left.min(t.burst.get() as u64) as u32;
            let n = NonZeroU32::new(n).expect("n > 0");
            // n never exceeds the burst, so this cannot fail.
            let _ = t.limiter.until_n_ready(n).await;
            left -= n.get() as u64;
        }
        // The request slot is taken last, still in turn: requests that
        // waited for tokens together still leave spaced out.
        if let Some(r) = &self.requests {
            r.until_ready().await;
        }
    }

    /// Gives back tokens an answer did not use (from its usage): the
    /// requests after it take that many fewer from the bucket.
    pub fn give_back(&self, tokens: u64) {
        if let Some(t) = &self.tokens {
            t.add_credit(tokens);
        }
    }

    /// Records tokens an answer used beyond its estimate (from its usage):
    /// they slow the requests after it, not the line that used them.
    pub fn owe(&self, tokens: u64) {
        if let Some(t) = &self.tokens {
            let _ = t
                .owed
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |owed| {
                    Some(owed.saturating_add(tokens).min(t.per_minute))
                });
        }
    }
}

impl TokenBucket {
    /// `due` less the credit given back, which pays for as much of it as
    /// it can; the rest of the credit stays.
    fn take_credit(&self, due: u64) -> u64 {
        let credit = self.credit.swap(0, Ordering::Relaxed);
        let left = credit.saturating_sub(due);
        if left > 0 {
            self.add_credit(left);
        }
        due.saturating_sub(credit)
    }

    fn add_credit(&self, tokens: u64) {
        let cap = u64::from(self.burst.get());
        let _ = self
            .credit
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                Some(c.saturating_add(tokens).min(cap))
            });
    }

    /// Tokens a request takes: its own and what is owed, each at most a
    /// minute's worth.
    fn due(&self, tokens: u64, owed: u64) -> u64 {
        tokens.min(self.per_minute) + owed.min(self.per_minute)
    }
}

/// A spending cap for one run (or one server's life).
pub struct Budget {
    max_usd: f64,
    state: Mutex<BudgetState>,
    /// Woken when a reservation is settled: a request whose estimate fits
    /// once what is in flight settles waits for it.
    settled: tokio::sync::Notify,
}

#[derive(Default)]
struct BudgetState {
    spent: f64,
    reserved: f64,
}

/// What a reservation can get now.
#[derive(Debug)]
pub enum TryReserve {
    Reserved(Reservation),
    /// It fits the cap once requests in flight settle (they may cost less
    /// than they reserved): try again after a settlement.
    Wait,
    /// It does not fit even if nothing in flight costs anything.
    Over(OverBudget),
}

/// A nano-dollar of slack absorbs floating-point sums like 0.1 + 0.2.
pub const SLACK: f64 = 1e-9;

/// Less than this many USD reserved is none: the rounding that sums of
/// estimates taken and given back leave.
const RESIDUE_USD: f64 = 1e-11;

impl Budget {
    pub fn new(max_usd: f64) -> Budget {
        Budget::with_spent(max_usd, 0.0)
    }

    /// A cap of which `spent` USD is already spent.
    pub fn with_spent(max_usd: f64, spent: f64) -> Budget {
        Budget {
            max_usd,
            state: Mutex::new(BudgetState {
                spent: spent.max(0.0),
                reserved: 0.0,
            }),
            settled: tokio::sync::Notify::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, BudgetState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reserves `estimate` USD when the spend, what is in flight and the
    /// estimate stay within the cap. A refusal refuses only this request:
    /// a cheaper one may still fit, and so may this one once others settle.
    pub fn try_reserve(&self, estimate: f64) -> TryReserve {
        let mut s = self.state();
        // A cap of 0 sends nothing, not even what is priced at 0.
        if self.max_usd <= 0.0 || s.spent + estimate > self.max_usd + SLACK {
            return TryReserve::Over(OverBudget {
                spent: s.spent,
                reserved: s.reserved,
                estimate,
                max: self.max_usd,
            });
        }
        if s.spent + s.reserved + estimate > self.max_usd + SLACK {
            return TryReserve::Wait;
        }
        s.reserved += estimate;
        TryReserve::Reserved(Reservation(estimate))
    }

    /// [`Budget::try_reserve`], waiting while the estimate would fit once
    /// what is in flight settles (with `wait`; without, that is a refusal).
    pub async fn reserve(&self, estimate: f64, wait: bool) -> Result<Reservation, OverBudget> {
        loop {
            let settled = self.settled.notified();
            tokio::pin!(settled);
            settled.as_mut().enable();
            match self.try_reserve(estimate) {
                TryReserve::Reserved(r) => return Ok(r),
                TryReserve::Over(o) => return Err(o),
                TryReserve::Wait if !wait => {
                    let s = self.state();
                    return Err(OverBudget {
                        spent: s.spent,
                        reserved: s.reserved,
                        estimate,
                        max: self.max_usd,
                    });
                }
                // Settlements wake it; the timer only guards against a
                // wake-up lost to a bug.
                TryReserve::Wait => {
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), settled).await;
                }
            }
        }
    }

    /// Replaces a reservation with what the request really cost (the
    /// estimate when unknown; nothing when it failed before a response).
    pub fn settle(&self, r: Reservation, actual: Option<f64>) {
        {
            let mut s = self.state();
            s.reserved = (s.reserved - r.0).max(0.0);
            // What sums of estimates leave once all are given back is none.
            if s.reserved < RESIDUE_USD {
                s.reserved = 0.0;
            }
            s.spent += actual.unwrap_or(r.0);
        }
        self.settled.notify_waiters();
    }

    /// What could still be spent: the cap less what is spent. What is in
    /// flight is not taken off: it may cost less than it holds, and a
    /// request that needs it waits for it (see [`Budget::reserve`]).
    pub fn left(&self) -> f64 {
        (self.max_usd - self.state().spent).max(0.0)
    }

    pub fn spent(&self) -> f64 {
        self.state().spent
    }

    pub fn reserved(&self) -> f64 {
        self.state().reserved
    }

    pub fn max(&self) -> f64 {
        self.max_usd
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn unused_tokens_are_given_back_up_to_a_bucket() {
        use crate::core::failure::Usage;
        let usage = |p, c| Usage {
            prompt_tokens: p,
            completion_tokens: c,
            cost: None,
        };
        assert_eq!(unused(517, &usage(Some(5), Some(3))), 509);
        assert_eq!(unused(517, &usage(Some(500), Some(300))), 0);
        assert_eq!(unused(517, &usage(None, Some(3))), 0, "usage unknown");
        let rates = RateLimits::new(None, Some(1000));
        let t = rates.tokens.as_ref().unwrap();
        rates.give_back(509);
        assert_eq!(t.take_credit(517), 8, "the credit pays for most of it");
        assert_eq!(t.take_credit(517), 517, "and is spent");
        rates.give_back(800);
        rates.give_back(800);
        assert_eq!(t.take_credit(5_000), 4_000, "at most a bucket of credit");
        rates.give_back(300);
        assert_eq!(t.take_credit(100), 0);
        assert_eq!(t.take_credit(250), 50, "what was left over stays");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn requests_leave_in_the_order_they_asked() {
        // One request every 10 ms: eight wait their turn.
        let rates = std::sync::Arc::new(RateLimits::new(Some(6000), None));
        rates.acquire(0).await;
        let order = std::sync::Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..8 {
            let (rates, order) = (rates.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                rates.acquire(0).await;
                order.lock().unwrap().push(i);
            }));
            // Each asks before the next.
            tokio::task::yield_now().await;
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), (0..8).collect::<Vec<_>>());
    }

    #[test]
    fn reservations_given_back_leave_nothing_reserved() {
        let b = Budget::new(1.0);
        let rs = [0.1, 0.2, 0.3].map(|e| reserved(b.try_reserve(e)));
        for r in rs {
            b.settle(r, Some(0.0));
        }
        assert_eq!(b.reserved(), 0.0);
    }

    fn reserved(t: TryReserve) -> Reservation {
        match t {
            TryReserve::Reserved(r) => r,
            other => panic!("not reserved: {other:?}"),
        }
    }

    #[test]
    fn budget_counts_what_is_in_flight_and_a_refusal_refuses_only_itself() {
        let b = Budget::new(1.0);
        let r1 = reserved(b.try_reserve(0.4));
        let r2 = reserved(b.try_reserve(0.4));
        assert!(
            matches!(b.try_reserve(0.4), TryReserve::Wait),
            "0.8 in flight + 0.4 > 1.0, but it may fit once they settle"
        );
        match b.try_reserve(1.5) {
            TryReserve::Over(o) => {
                assert_eq!(
                    (o.spent, o.reserved, o.estimate, o.max),
                    (0.0, 0.8, 1.5, 1.0)
                )
            }
            other => panic!("{other:?}"),
        }
        b.settle(r1, Some(0.1));
        let r3 = reserved(b.try_reserve(0.1));
        b.settle(r2, None);
        b.settle(r3, Some(0.1));
        assert!((b.spent() - 0.6).abs() < 1e-12);
        assert!((b.left() - 0.4).abs() < 1e-12);
    }

    #[test]
    fn budget_admits_up_to_the_cap() {
        let b = Budget::new(0.3);
        for _ in 0..3 {
            let r = reserved(b.try_reserve(0.1));
            b.settle(r, Some(0.1));
        }
        assert!(matches!(b.try_reserve(0.01), TryReserve::Over(_)));
        assert!((b.spent() - 0.3).abs() < 1e-9);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_reservation_that_fits_once_others_settle_waits_for_them() {
        let b = std::sync::Arc::new(Budget::new(1.0));
        let held = reserved(b.try_reserve(0.9));
        let waiter = {
            let b = b.clone();
            tokio::spawn(async move { b.reserve(0.5, true).await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        assert!(
            b.reserve(0.5, false).await.is_err(),
            "without wait, refused"
        );
        b.settle(held, Some(0.2));
        let r = waiter.await.unwrap().expect("fits once the first settled");
        assert_eq!(r.0, 0.5);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn requests_are_spaced_not_burst() {
        let limits = RateLimits::new(Some(600), None); // one per 100 ms
        let start = Instant::now();
        for _ in 0..4 {
            limits.acquire(1).await;
        }
        // The first is immediate, the next three wait 100 ms each.
        assert!(
            start.elapsed() >= Duration::from_millis(290),
            "{:?}",
            start.elapsed()
        );
        assert!(RateLimits::new(None, None).is_unlimited());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn requests_that_waited_for_tokens_still_leave_spaced_out() {
        // One request per 100 ms; 1,000 tokens a second, a bucket of 4,096.
        let limits = RateLimits::new(Some(600), Some(60_000));
        // Taken before the limiters start counting, so that the time
        // measured is never less than the time they made the requests wait.
        let start = Instant::now();
        limits.acquire(4_096).await;
        limits.owe(300); // the next request waits about 300 ms for tokens
        tokio::join!(limits.acquire(1), limits.acquire(1), limits.acquire(1));
        // The first leaves after about 300 ms of tokens, the other two 100 ms
        // apart after it: 500 ms in all, where three leaving together once
        // the tokens came would take 300. Only a lower bound is asserted,
        // which a loaded machine can only make easier to meet.
        assert!(
            start.elapsed() >= Duration::from_millis(480),
            "{:?}: the three left together",
            start.elapsed()
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn tokens_per_minute_hold_back_large_requests() {
        // 60,000 a minute is 1,000 a second; the bucket holds 4,096.
        let limits = RateLimits::new(None, Some(60_000));
        let start = Instant::now();
        // A full bucket is free: the first acquire completes on its first
        // poll, with no timer (no wall-clock bound, so no flaky failure).
        tokio::select! {
            biased;
            _ = limits.acquire(4_096) => {}
            _ = std::future::ready(()) => panic!("a full bucket made a request wait"),
        }
        limits.acquire(500).await;
        assert!(
            start.elapsed() >= Duration::from_millis(450),
            "{:?}",
            start.elapsed()
        );
        // Tokens owed by an answer are taken by the next request.
        let owing = RateLimits::new(None, Some(60_000));
        let start = Instant::now();
        owing.acquire(4_096).await;
        owing.owe(500);
        owing.acquire(1).await;
        assert!(
            start.elapsed() >= Duration::from_millis(450),
            "{:?}",
            start.elapsed()
        );
        // Neither a wild usage report nor a huge request counts for more
        // than a minute's worth, and nothing overflows.
        let t = owing.tokens.as_ref().unwrap();
        owing.owe(u64::MAX);
        owing.owe(u64::MAX);
        assert_eq!(t.owed.load(Ordering::Relaxed), 60_000);
        assert_eq!(t.due(u64::MAX, u64::MAX), 120_000);
        assert_eq!(t.due(10, 5), 15);
        // Requests larger than the bucket are taken in bucket-sized parts.
        let big = RateLimits::new(None, Some(600_000)); // 10,000/s, bucket 10,000
        let start = Instant::now();
        big.acquire(15_000).await;
        assert!(
            start.elapsed() >= Duration::from_millis(450),
            "{:?}",
            start.elapsed()
        );
    }
}
