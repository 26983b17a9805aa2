//! What is known of a model's health, as plain data and pure rules: its
//! latency and error averages (one formula, used live and by the store),
//! how long a rate limit or a run of failures pauses it, and the state it
//! is in. No clock but the instants given.

use std::time::{Duration, Instant};

/// Weight of the newest sample in a model's latency average.
pub const EWMA_ALPHA: f64 = 0.3;

/// Longest pause a rate limit causes (and the longest Retry-After honoured).
pub const MAX_COOLDOWN: Duration = Duration::from_secs(300);
/// Pause after a 429 or 503 that names no Retry-After; see [`backoff`].
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(1);

/// A recency-weighted average and how many samples it holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Avg {
    pub value: f64,
    pub n: i64,
}

impl Avg {
    /// The average after its first sample.
    pub fn first(x: f64) -> Avg {
        Avg { value: x, n: 1 }
    }

    /// Folds one more sample in.
    pub fn update(self, x: f64) -> Avg {
        Avg {
            value: self.value * (1.0 - EWMA_ALPHA) + x * EWMA_ALPHA,
            n: self.n.saturating_add(1),
        }
    }

    /// `avg` updated with `x`, or the first sample.
    pub fn record(avg: Option<Avg>, x: f64) -> Avg {
        avg.map_or(Avg::first(x), |a| a.update(x))
    }
}

/// What is measured of a model: its latency (answers, and attempts that
/// ran into the time limit) and its failures among the attempts that say
/// something about it.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ModelStat {
    /// Recency-weighted latency, ms.
    pub ewma_ms: f64,
    /// Latency samples in it.
    pub samples: i64,
    /// Recency-weighted share of attempts that failed for the model's own
    /// sake (not a rate limit, not a bad request), in [0, 1].
    pub error_rate: f64,
    /// Attempts in it.
    pub tries: i64,
    /// Unix ms of the last of those attempts.
    pub last_at: i64,
    /// Latency against completion length, over its answers.
    pub fit: Fit,
}

/// Recency-weighted means, over a model's answers, of their completion
/// tokens `x`, of `x²`, of `x·ms` and of their latency `ms`: a line fitted
/// online to latency by completion length (a fixed part plus a part per
/// token), so that a long answer is expected to take longer than a short
/// one on the same model.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Fit {
    pub x: f64,
    pub xx: f64,
    pub xy: f64,
    pub y: f64,
    /// Answers in it.
    pub n: i64,
}

/// Answers a fit needs before its slope is used.
pub const FIT_MIN_ANSWERS: i64 = 5;
/// The spread of completion lengths (standard deviation, tokens) a fit
/// needs before its slope is used.
pub const FIT_MIN_SPREAD: f64 = 10.0;

impl Fit {
    /// Folds one more answer in: `tokens` long, `ms` to come.
    pub fn add(self, tokens: f64, ms: f64) -> Fit {
        let avg =
            |value: f64, x: f64| Avg::record((self.n > 0).then_some(Avg { value, n: self.n }), x);
        Fit {
            x: avg(self.x, tokens).value,
            xx: avg(self.xx, tokens * tokens).value,
            xy: avg(self.xy, tokens * ms).value,
            y: avg(self.y, ms).value,
            n: self.n.saturating_add(1),
        }
    }

    /// Milliseconds per completion token, when the answers seen tell.
    pub fn slope(&self) -> Option<f64> {
        let var = self.xx - self.x * self.x;
        if self.n < FIT_MIN_ANSWERS || var < FIT_MIN_SPREAD * FIT_MIN_SPREAD {
            return None;
        }
        Some(((self.xy - self.x * self.y) / var).max(0.0))
    }
}

impl ModelStat {
    /// The latency expected of a request with at most `completion_tokens`
    /// tokens of answer (`None`: a typical one): the average, moved along
    /// the fitted line from the typical answer's length to this one's.
    pub fn estimate_ms(&self, completion_tokens: Option<u64>) -> Option<f64> {
        let avg = self.latency()?.value;
        let (Some(c), Some(slope)) = (completion_tokens, self.fit.slope()) else {
            return Some(avg);
        };
        Some((avg + slope * (c as f64 - self.fit.x)).max(avg * 0.1))
    }

    /// Folds one more answer in: its latency and, when known, its length.
    pub fn answered(self, latency_ms: f64, tokens: Option<i64>) -> ModelStat {
        let mut s = self.with_latency(latency_ms);
        if let Some(t) = tokens.filter(|t| *t >= 0) {
            s.fit = s.fit.add(t as f64, latency_ms);
        }
        s
    }

    /// A model measured once, at `latency_ms`, with no failure.
    pub fn first(latency_ms: f64) -> ModelStat {
        ModelStat::default().with_latency(latency_ms)
    }

    /// Folds one more answer's latency in (not a try: see [`ModelStat::tried`]).
    pub fn update(self, latency_ms: f64) -> ModelStat {
        self.with_latency(latency_ms)
    }

    fn with_latency(mut self, latency_ms: f64) -> ModelStat {
        let a = Avg::record(self.latency(), latency_ms);
        (self.ewma_ms, self.samples) = (a.value, a.n);
        self
    }

    /// Folds one more attempt in: whether it failed, and when. The error
    /// average starts from 0, as if the model had answered before: one
    /// failure of a new model lowers its standing, it does not sink it.
    pub fn tried(mut self, failed: bool, at: i64) -> ModelStat {
        let e = self.errors().update(if failed { 1.0 } else { 0.0 });
        (self.error_rate, self.tries) = (e.value, e.n);
        self.last_at = self.last_at.max(at);
        self
    }

    /// `stat` updated with `latency_ms`, or the first sample.
    pub fn record(stat: Option<ModelStat>, latency_ms: f64) -> ModelStat {
        stat.unwrap_or_default().with_latency(latency_ms)
    }

    pub fn latency(&self) -> Option<Avg> {
        (self.samples > 0).then_some(Avg {
            value: self.ewma_ms,
            n: self.samples,
        })
    }

    /// The error average (0 over no tries).
    pub fn errors(&self) -> Avg {
        Avg {
            value: self.error_rate,
            n: self.tries,
        }
    }
}

/// Several samples of one average, folded so that they can be applied in
/// one step (the store applies a transaction's samples at once):
/// `fold.apply(a)` equals updating `a` with each sample in turn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fold {
    samples: i64,
    /// (1−α)ᵏ: what is left of the old average.
    decay: f64,
    /// Σ α·xᵢ·(1−α)ᵏ⁻ⁱ: what the new samples add to it.
    added: f64,
    /// The average of one with none before: the samples alone.
    fresh: Avg,
}

impl Fold {
    pub fn new(x: f64) -> Fold {
        Fold {
            samples: 1,
            decay: 1.0 - EWMA_ALPHA,
            added: EWMA_ALPHA * x,
            fresh: Avg::first(x),
        }
    }

    pub fn add(&mut self, x: f64) {
        let keep = 1.0 - EWMA_ALPHA;
        self.samples += 1;
        self.decay *= keep;
        self.added = self.added * keep + EWMA_ALPHA * x;
        self.fresh = self.fresh.update(x);
    }

    /// Adds the samples of `later`, as if they came after these.
    pub fn merge(&mut self, later: &Fold) {
        self.fresh = later.apply(Some(self.fresh));
        self.samples += later.samples;
        self.decay *= later.decay;
        self.added = self.added * later.decay + later.added;
    }

    /// The average `old` becomes with these samples.
    pub fn apply(&self, old: Option<Avg>) -> Avg {
        match old {
            None => self.fresh,
            Some(a) => Avg {
                value: a.value * self.decay + self.added,
                n: a.n.saturating_add(self.samples),
            },
        }
    }
}

/// Pause after the `streak`-th rate limit in a row without Retry-After:
/// [`DEFAULT_COOLDOWN`] doubled for each earlier one, capped at
/// [`MAX_COOLDOWN`]. A storm of 429s on every candidate thus slows the run's
/// own pace (1 s, 2 s, 4 s, ...) instead of hammering the API.
pub fn backoff(streak: u32) -> Duration {
    let doublings = streak.saturating_sub(1).min(16);
    (DEFAULT_COOLDOWN * (1u32 << doublings)).min(MAX_COOLDOWN)
}

/// A model's rate-limit state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pause {
    /// Not tried again before this.
    pub until: Instant,
    /// Rate limits in a row since its last success.
    pub streak: u32,
    /// When the last of them came back.
    pub last_limited: Instant,
}

impl Pause {
    /// A pause learned from elsewhere (the store, another process).
    pub fn until(until: Instant) -> Pause {
        Pause {
            until,
            streak: 0,
            last_limited: until,
        }
    }

    /// The pause after a 429/503 that came back at `now` for a request sent
    /// at `sent`: for Retry-After when given, else for a backoff that doubles
    /// with each rate limit in a row. Requests sent before the previous rate
    /// limit came back belong to the same burst and do not lengthen it again.
    /// A pause already longer is kept.
    pub fn limited(
        pause: Option<Pause>,
        now: Instant,
        sent: Instant,
        retry_after: Option<Duration>,
    ) -> Pause {
        let mut p = pause.unwrap_or(Pause::until(now));
        if p.streak == 0 || sent >= p.last_limited {
            p.streak = p.streak.saturating_add(1);
            p.last_limited = now;
        }
        let wait = retry_after
            .unwrap_or_else(|| backoff(p.streak))
            .min(MAX_COOLDOWN);
        p.until = p.until.max(now + wait);
        p
    }

    /// Whether the model may not be tried at `now`.
    pub fn cooling(&self, now: Instant) -> bool {
        self.until > now
    }
}

/// The exact nearest-rank `p`th percentile (`p` in percent, at most 100) of
/// ascending `sorted`: the smallest value with at least `p`% of the values at
/// or below it, i.e. the value at index ceil(p/100 * n) - 1, clamped to 0.
pub fn percentile(sorted: &[f64], p: u32) -> Option<f64> {
    let n = sorted.len() as u64;
    if n == 0 {
        return None;
    }
    let rank = (u64::from(p.min(100)) * n).div_ceil(100);
    let index = rank.saturating_sub(1).min(n - 1);
    Some(sorted[index as usize])
}

/// Failures in a row that open a model's circuit.
pub const BREAKER_FAILURES: u32 = 3;
/// How long a circuit first stays open; each reopening doubles it, up to
/// [`MAX_COOLDOWN`].
pub const BREAKER_OPEN: Duration = Duration::from_secs(10);

/// How long a circuit stays open the `opens`-th time in a row.
pub fn breaker_pause(opens: u32) -> Duration {
    let doublings = opens.saturating_sub(1).min(16);
    (BREAKER_OPEN * (1u32 << doublings)).min(MAX_COOLDOWN)
}

/// Attempts a model needs before it counts as measured: until then it is
/// probed (see [`crate::core::explore`]).
pub const WARMUP_TRIES: i64 = 3;

/// The state a model is in, as `models` and `--explain` show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Never tried: ranked on priors.
    Prior,
    /// Tried fewer than [`WARMUP_TRIES`] times, or being re-measured.
    Probing,
    /// Measured.
    Measured,
    /// Paused by a rate limit.
    Cooling,
    /// Its circuit is open after failures in a row.
    Open,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Prior => "prior",
            State::Probing => "probing",
            State::Measured => "measured",
            State::Cooling => "cooling",
            State::Open => "open",
        }
    }
}

/// Why a model is in `state`, in a few words: what `--explain` and
/// `llmroute models` show beside it. `paused_s` is how long its pause has
/// left, for a cooling or open model.
pub fn describe(state: State, stat: Option<ModelStat>, paused_s: Option<u64>) -> String {
    let s = stat.unwrap_or_default();
    let left = paused_s.map_or(String::new(), |p| {
        format!(", {} left", super::duration::human(Duration::from_secs(p)))
    });
    match state {
        State::Prior => "never tried: ranked on priors".into(),
        State::Probing if s.tries < WARMUP_TRIES => {
            format!("tried {} of {WARMUP_TRIES} times: being measured", s.tries)
        }
        State::Probing => "answered well under its average: measured again".into(),
        State::Measured => format!(
            "{}, {:.0}% of recent attempts failing",
            super::numbers::counted(s.samples.max(0) as u64, "answer"),
            s.error_rate * 100.0
        ),
        State::Cooling => format!("paused by a rate limit or by failures{left}"),
        State::Open => format!("circuit open after failures in a row{left}"),
    }
}

/// What the attempt policy, the ranking and exploration read of every
/// model's health.
pub trait HealthView {
    /// What is measured of the model, when anything is.
    fn stat(&self, model: &str) -> Option<ModelStat>;
    /// What outcomes said of the model's quality on `task`, decayed to
    /// now, when anything was said.
    fn learned(&self, task: &str, model: &str) -> Option<crate::core::learned::Posterior> {
        let _ = (task, model);
        None
    }
    /// What outcomes said of the model on every task, summed and decayed
    /// to now, when anything was said ([`crate::core::pooled`]).
    fn learned_overall(&self, model: &str) -> Option<crate::core::learned::Posterior> {
        let _ = model;
        None
    }
    /// Until when the model may not be tried (a rate limit, an open
    /// circuit, a probe of a half-open circuit under way), when it may not.
    fn cooling_until(&self, model: &str) -> Option<Instant>;
    /// Whether the model's circuit is open (not only a rate limit).
    fn open(&self, model: &str) -> bool {
        let _ = model;
        false
    }
    /// Whether a probe of the model is under way.
    fn probing(&self, model: &str) -> bool {
        let _ = model;
        false
    }
    /// How long (ms) an attempt on the model may go unanswered before
    /// `--hedge auto` hedges it, when enough is known: see
    /// [`crate::core::hedge::auto_delay_ms`].
    fn hedge_delay_ms(&self, model: &str) -> Option<f64> {
        let _ = model;
        None
    }
    /// Whether the model's last answer came back well under its average:
    /// it may be recovering, and earns another probe.
    fn improving(&self, model: &str) -> bool {
        let _ = model;
        false
    }

    /// Why the model may not be tried now, in words, when it is paused:
    /// `circuit open after 3 failures`, `rate-limited by the API`, ...
    fn pause_reason(&self, model: &str) -> Option<String> {
        let _ = model;
        None
    }

    /// The model's state at `now`.
    fn state(&self, model: &str, now: Instant) -> State {
        if self.cooling_until(model).is_some_and(|t| t > now) {
            return if self.open(model) {
                State::Open
            } else {
                State::Cooling
            };
        }
        match self.stat(model) {
            None => State::Prior,
            Some(s) if s.tries == 0 && s.samples == 0 => State::Prior,
            Some(s) if s.tries < WARMUP_TRIES || self.improving(model) => State::Probing,
            Some(_) => State::Measured,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fold_equals_updates_one_by_one() {
        let samples = [120.0, 80.0, 400.0, 95.5];
        let mut fold = Fold::new(samples[0]);
        for x in &samples[1..] {
            fold.add(*x);
        }
        let old = Avg { value: 250.0, n: 7 };
        let by_one = samples.iter().fold(old, |a, x| a.update(*x));
        let folded = fold.apply(Some(old));
        assert!((folded.value - by_one.value).abs() < 1e-9);
        assert_eq!(folded.n, 11);
        let fresh = samples[1..]
            .iter()
            .fold(Avg::first(samples[0]), |a, x| a.update(*x));
        assert_eq!(fold.apply(None), fresh);
        // Two folds merged equal one over all their samples.
        let (mut a, mut b) = (Fold::new(samples[0]), Fold::new(samples[2]));
        a.add(samples[1]);
        b.add(samples[3]);
        a.merge(&b);
        let merged = a.apply(Some(old));
        assert!((merged.value - by_one.value).abs() < 1e-9);
        assert_eq!(merged.n, 11);
    }

    #[test]
    fn latency_is_expected_to_grow_with_the_answers_length() {
        // 100 ms fixed, plus 2 ms a token.
        let mut s = ModelStat::default();
        for t in [10, 400, 50, 300, 20, 200, 100] {
            s = s.answered(100.0 + 2.0 * t as f64, Some(t));
        }
        let slope = s.fit.slope().unwrap();
        assert!((slope - 2.0).abs() < 1e-6, "{slope}");
        let short = s.estimate_ms(Some(10)).unwrap();
        let long = s.estimate_ms(Some(4000)).unwrap();
        assert!(long > short + 7000.0, "{short} {long}");
        assert_eq!(s.estimate_ms(None), Some(s.ewma_ms), "a typical one");
        // Answers all of one length tell nothing of the slope.
        let mut flat = ModelStat::default();
        for _ in 0..10 {
            flat = flat.answered(50.0, Some(3));
        }
        assert_eq!(flat.fit.slope(), None);
        assert_eq!(flat.estimate_ms(Some(4000)), Some(flat.ewma_ms));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let waits: Vec<u64> = (1..=4).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, vec![1, 2, 4, 8]);
        assert_eq!(backoff(0), DEFAULT_COOLDOWN);
        assert_eq!(backoff(9), Duration::from_secs(256));
        assert_eq!(backoff(10), MAX_COOLDOWN);
        assert_eq!(backoff(u32::MAX), MAX_COOLDOWN);
    }

    #[test]
    fn a_burst_of_rate_limits_lengthens_the_pause_once() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let p = Pause::limited(None, t0 + s, t0, None);
        assert_eq!((p.streak, p.until), (1, t0 + 2 * s));
        // Sent before the first came back: the same burst.
        let p = Pause::limited(Some(p), t0 + s, t0, None);
        assert_eq!(p.streak, 1);
        // Sent after it: the next in a row, twice as long.
        let p = Pause::limited(Some(p), t0 + 3 * s, t0 + 2 * s, None);
        assert_eq!((p.streak, p.until), (2, t0 + 5 * s));
        // Retry-After wins over the backoff, and a longer pause is kept.
        let p = Pause::limited(Some(p), t0 + 3 * s, t0 + 3 * s, Some(s));
        assert_eq!(p.until, t0 + 5 * s);
        assert!(p.cooling(t0 + 4 * s) && !p.cooling(t0 + 5 * s));
    }
}
