//! What is known of a model's health, as plain data and pure rules: its
//! latency average (one formula, used live and by the store), and how long a
//! rate limit pauses it. No clock but the instants given.

use std::time::{Duration, Instant};

/// Weight of the newest sample in a model's latency average.
pub const EWMA_ALPHA: f64 = 0.3;

/// Longest pause a rate limit causes (and the longest Retry-After honoured).
pub const MAX_COOLDOWN: Duration = Duration::from_secs(300);
/// Pause after a 429 or 503 that names no Retry-After; see [`backoff`].
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(1);

/// A model's measured latency: a recency-weighted average of its successful
/// attempts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelStat {
    pub ewma_ms: f64,
    pub samples: i64,
}

impl ModelStat {
    /// The average after its first sample.
    pub fn first(latency_ms: f64) -> ModelStat {
        ModelStat {
            ewma_ms: latency_ms,
            samples: 1,
        }
    }

    /// Folds one more successful attempt's latency into the average.
    pub fn update(self, latency_ms: f64) -> ModelStat {
        ModelStat {
            ewma_ms: self.ewma_ms * (1.0 - EWMA_ALPHA) + latency_ms * EWMA_ALPHA,
            samples: self.samples.saturating_add(1),
        }
    }

    /// `stat` updated with `latency_ms`, or the first sample.
    pub fn record(stat: Option<ModelStat>, latency_ms: f64) -> ModelStat {
        stat.map_or(ModelStat::first(latency_ms), |s| s.update(latency_ms))
    }
}

/// Several samples of one model, folded so that they can be applied to an
/// average in one step (the store applies a transaction's samples at once):
/// `fold.apply(s)` equals updating `s` with each sample in turn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fold {
    samples: i64,
    /// (1−α)ᵏ: what is left of the old average.
    decay: f64,
    /// Σ α·xᵢ·(1−α)ᵏ⁻ⁱ: what the new samples add to it.
    added: f64,
    /// The average of a model with none before: the samples alone.
    fresh: ModelStat,
}

impl Fold {
    pub fn new(latency_ms: f64) -> Fold {
        Fold {
            samples: 1,
            decay: 1.0 - EWMA_ALPHA,
            added: EWMA_ALPHA * latency_ms,
            fresh: ModelStat::first(latency_ms),
        }
    }

    pub fn add(&mut self, latency_ms: f64) {
        let keep = 1.0 - EWMA_ALPHA;
        self.samples += 1;
        self.decay *= keep;
        self.added = self.added * keep + EWMA_ALPHA * latency_ms;
        self.fresh = self.fresh.update(latency_ms);
    }

    /// Adds the samples of `later`, as if they came after these.
    pub fn merge(&mut self, later: &Fold) {
        self.fresh = later.apply(Some(self.fresh));
        self.samples += later.samples;
        self.decay *= later.decay;
        self.added = self.added * later.decay + later.added;
    }

    /// The average `old` becomes with these samples.
    pub fn apply(&self, old: Option<ModelStat>) -> ModelStat {
        match old {
            None => self.fresh,
            Some(s) => ModelStat {
                ewma_ms: s.ewma_ms * self.decay + self.added,
                samples: s.samples.saturating_add(self.samples),
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

/// What the attempt policy and the ranking read of every model's health.
pub trait HealthView {
    /// The model's latency average, when it has been measured.
    fn stat(&self, model: &str) -> Option<ModelStat>;
    /// Until when the model is paused, when it is.
    fn cooling_until(&self, model: &str) -> Option<Instant>;
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
        let old = ModelStat {
            ewma_ms: 250.0,
            samples: 7,
        };
        let by_one = samples.iter().fold(old, |s, x| s.update(*x));
        let folded = fold.apply(Some(old));
        assert!((folded.ewma_ms - by_one.ewma_ms).abs() < 1e-9);
        assert_eq!(folded.samples, 11);
        let fresh = samples[1..]
            .iter()
            .fold(ModelStat::first(samples[0]), |s, x| s.update(*x));
        assert_eq!(fold.apply(None), fresh);
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
