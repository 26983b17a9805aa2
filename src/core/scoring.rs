//! The scorer: a pure function over plain data.
//!
//! ```text
//! score = w_latency * (1 - norm_latency) + w_cost * (1 - norm_cost) + w_quality * quality
//! ```
//!
//! `norm_x` is min-max normalisation over the candidates of one request (0 when
//! all are equal), and the sum is multiplied by `(1 - error_rate)²`, where
//! `error_rate` is the recency-weighted share of the model's attempts that
//! failed for its own sake: failures lower a model's standing, and a model
//! failing most of the time falls below any that answers. A candidate whose latency was never measured is
//! ranked as if twice as slow as the slowest measured one (a pessimistic
//! prior: the bulk of the traffic goes to what is known to be good, while
//! exploration, in [`crate::core::explore`], measures the unknown with a
//! bounded number of probes); a candidate with unknown price is given the
//! highest known cost (a pessimistic prior, so unknown prices are not
//! mistaken for free ones).

use std::fmt;

/// The three weights, normalised to sum to 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Weights {
    pub latency: f64,
    pub cost: f64,
    pub quality: f64,
}

/// Why a set of weights was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WeightsError {
    Negative,
    AllZero,
    NotFinite,
    Syntax(String),
}

impl fmt::Display for WeightsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WeightsError::Negative => f.write_str("weights must not be negative"),
            WeightsError::AllZero => f.write_str("at least one weight must be above zero"),
            WeightsError::NotFinite => f.write_str("weights must be finite numbers"),
            WeightsError::Syntax(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for WeightsError {}

impl Weights {
    /// Builds weights from raw values, normalising them to sum to 1.
    pub fn new(latency: f64, cost: f64, quality: f64) -> Result<Self, WeightsError> {
        if ![latency, cost, quality].iter().all(|w| w.is_finite()) {
            return Err(WeightsError::NotFinite);
        }
        if latency < 0.0 || cost < 0.0 || quality < 0.0 {
            return Err(WeightsError::Negative);
        }
        let sum = latency + cost + quality;
        if sum <= 0.0 {
            return Err(WeightsError::AllZero);
        }
        Ok(Weights {
            latency: latency / sum,
            cost: cost / sum,
            quality: quality / sum,
        })
    }

    /// Parses `latency=0.5,cost=0.2,quality=0.3`. Keys may be given in any
    /// order; a key left out weighs 0.
    pub fn parse(s: &str) -> Result<Self, WeightsError> {
        let (mut l, mut c, mut q) = (None, None, None);
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').ok_or_else(|| {
                WeightsError::Syntax(format!(
                    "'{part}' is not KEY=VALUE (keys: latency, cost, quality)"
                ))
            })?;
            let v: f64 = v.trim().parse().map_err(|_| {
                WeightsError::Syntax(format!("'{}' is not a number in '{part}'", v.trim()))
            })?;
            let slot = match k.trim() {
                "latency" => &mut l,
                "cost" => &mut c,
                "quality" => &mut q,
                other => {
                    return Err(WeightsError::Syntax(format!(
                        "unknown weight '{other}' (keys: latency, cost, quality)"
                    )))
                }
            };
            if slot.replace(v).is_some() {
                return Err(WeightsError::Syntax(format!(
                    "weight '{}' given twice",
                    k.trim()
                )));
            }
        }
        if l.is_none() && c.is_none() && q.is_none() {
            return Err(WeightsError::Syntax(
                "no weights given (e.g. latency=0.5,cost=0.2,quality=0.3)".into(),
            ));
        }
        Weights::new(l.unwrap_or(0.0), c.unwrap_or(0.0), q.unwrap_or(0.0))
    }
}

impl fmt::Display for Weights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "latency={:.4},cost={:.4},quality={:.4}",
            self.latency, self.cost, self.quality
        )
    }
}

/// A built-in priority and its weights (latency/cost/quality).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    Speed,
    Cost,
    Quality,
    Balanced,
}

impl Priority {
    pub const ALL: [Priority; 4] = [
        Priority::Speed,
        Priority::Cost,
        Priority::Quality,
        Priority::Balanced,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Priority::Speed => "speed",
            Priority::Cost => "cost",
            Priority::Quality => "quality",
            Priority::Balanced => "balanced",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Priority::ALL.into_iter().find(|p| p.name() == s)
    }

    pub fn weights(self) -> Weights {
        let (l, c, q) = match self {
            Priority::Speed => (0.7, 0.2, 0.1),
            Priority::Cost => (0.2, 0.7, 0.1),
            Priority::Quality => (0.1, 0.2, 0.7),
            Priority::Balanced => (0.4, 0.3, 0.3),
        };
        Weights {
            latency: l,
            cost: c,
            quality: q,
        }
    }
}

/// What the scorer knows of one candidate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// Measured, recency-weighted latency; `None` when never measured.
    pub latency_ms: Option<f64>,
    /// Estimated cost of this request; `None` when the price is unknown.
    pub cost_usd: Option<f64>,
    /// Quality prior in [0, 1].
    pub quality: f64,
    /// Recent share of failed attempts, in [0, 1].
    pub error_rate: f64,
}

/// How much slower than the slowest measured candidate an unmeasured one
/// is taken to be.
pub const UNMEASURED_FACTOR: f64 = 2.0;

/// One candidate's score, with the values that went into it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    /// Index into the candidate slice given to [`rank`].
    pub index: usize,
    pub score: f64,
    /// The latency used (the prior, for an unmeasured candidate), if any.
    pub latency_ms: Option<f64>,
    pub cost_usd: Option<f64>,
    pub quality: f64,
}

fn min_max(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values.fold(None, |acc, v| match acc {
        None => Some((v, v)),
        Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
    })
}

#[inline]
fn norm(v: f64, lo: f64, hi: f64) -> f64 {
    if hi > lo {
        (v - lo) / (hi - lo)
    } else {
        0.0
    }
}

/// Scores every candidate and writes them to `out`, best first. Ties keep
/// the candidates' given order. `out` is cleared first; pass the same vector
/// again to avoid allocating per request.
pub fn rank_into(candidates: &[Candidate], w: &Weights, out: &mut Vec<Scored>) {
    out.clear();
    let measured = min_max(candidates.iter().filter_map(|c| c.latency_ms));
    let prior = measured.map(|(_, hi)| hi * UNMEASURED_FACTOR);
    // Unmeasured candidates widen the range to their prior.
    let lat = match candidates.iter().any(|c| c.latency_ms.is_none()) {
        true => measured.map(|(lo, _)| (lo, prior.unwrap_or(lo))),
        false => measured,
    };
    let cost = min_max(candidates.iter().filter_map(|c| c.cost_usd));
    out.extend(candidates.iter().enumerate().map(|(index, c)| {
        let latency_ms = c.latency_ms.or(prior);
        let cost_usd = c.cost_usd;
        let nl = match (latency_ms, lat) {
            (Some(v), Some((lo, hi))) => norm(v, lo, hi),
            _ => 0.0,
        };
        let nc = match (cost_usd, cost) {
            (Some(v), Some((lo, hi))) => norm(v, lo, hi),
            (None, Some(_)) => 1.0,
            _ => 0.0,
        };
        let quality = c.quality.clamp(0.0, 1.0);
        let success = 1.0 - c.error_rate.clamp(0.0, 1.0);
        let standing = success * success;
        let score = (w.latency * (1.0 - nl) + w.cost * (1.0 - nc) + w.quality * quality) * standing;
        Scored {
            index,
            score,
            latency_ms,
            cost_usd,
            quality,
        }
    }));
    // Stable sort: equal scores keep the given order.
    out.sort_by(|a, b| b.score.total_cmp(&a.score));
}

/// Convenience form of [`rank_into`] that allocates its result.
pub fn rank(candidates: &[Candidate], w: &Weights) -> Vec<Scored> {
    let mut out = Vec::with_capacity(candidates.len());
    rank_into(candidates, w, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(latency: Option<f64>, cost: Option<f64>, quality: f64) -> Candidate {
        Candidate {
            latency_ms: latency,
            cost_usd: cost,
            quality,
            error_rate: 0.0,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn weights_normalise_and_reject_bad_values() {
        let w = Weights::new(2.0, 1.0, 1.0).unwrap();
        assert!(close(w.latency, 0.5) && close(w.cost, 0.25) && close(w.quality, 0.25));
        assert_eq!(Weights::new(-0.1, 1.0, 1.0), Err(WeightsError::Negative));
        assert_eq!(Weights::new(0.0, 0.0, 0.0), Err(WeightsError::AllZero));
        assert_eq!(
            Weights::new(f64::NAN, 1.0, 1.0),
            Err(WeightsError::NotFinite)
        );
    }

    #[test]
    fn weights_parse() {
        let w = Weights::parse("latency=0.5,cost=0.2,quality=0.3").unwrap();
        assert!(close(w.latency, 0.5) && close(w.cost, 0.2) && close(w.quality, 0.3));
        let w = Weights::parse("quality=1").unwrap();
        assert!(close(w.quality, 1.0) && close(w.latency, 0.0));
        assert!(matches!(
            Weights::parse("latency=x"),
            Err(WeightsError::Syntax(_))
        ));
        assert!(matches!(
            Weights::parse("speedy=1"),
            Err(WeightsError::Syntax(_))
        ));
        assert!(matches!(
            Weights::parse("latency=1,latency=2"),
            Err(WeightsError::Syntax(_))
        ));
        assert!(matches!(Weights::parse(""), Err(WeightsError::Syntax(_))));
        assert_eq!(
            Weights::parse("latency=0,cost=0"),
            Err(WeightsError::AllZero)
        );
        assert_eq!(
            Weights::parse("latency=-1,cost=2"),
            Err(WeightsError::Negative)
        );
    }

    #[test]
    fn priorities_have_the_documented_weights() {
        let s = Priority::Speed.weights();
        assert_eq!((s.latency, s.cost, s.quality), (0.7, 0.2, 0.1));
        let b = Priority::from_name("balanced").unwrap().weights();
        assert_eq!((b.latency, b.cost, b.quality), (0.4, 0.3, 0.3));
        assert_eq!(Priority::from_name("fastest"), None);
    }

    #[test]
    fn score_follows_the_formula() {
        // Two candidates: A fast and dear, B slow and cheap.
        let cands = [
            c(Some(100.0), Some(0.02), 0.4),
            c(Some(300.0), Some(0.01), 0.8),
        ];
        let w = Weights::new(0.5, 0.3, 0.2).unwrap();
        let r = rank(&cands, &w);
        let a = r.iter().find(|s| s.index == 0).unwrap();
        let b = r.iter().find(|s| s.index == 1).unwrap();
        // A: latency norm 0, cost norm 1 -> 0.5*1 + 0.3*0 + 0.2*0.4
        assert!(close(a.score, 0.5 + 0.0 + 0.08));
        // B: latency norm 1, cost norm 0 -> 0 + 0.3 + 0.2*0.8
        assert!(close(b.score, 0.3 + 0.16));
        assert_eq!(r[0].index, 0);
    }

    #[test]
    fn each_priority_picks_its_own_winner() {
        // fast: quick, mid price, low quality; cheap: slow, nearly free, mid
        // quality; smart: mid speed, dear, top quality.
        let cands = [
            c(Some(50.0), Some(0.01), 0.3),
            c(Some(900.0), Some(0.0001), 0.5),
            c(Some(400.0), Some(0.02), 0.95),
        ];
        let winner = |p: Priority| rank(&cands, &p.weights())[0].index;
        assert_eq!(winner(Priority::Speed), 0);
        assert_eq!(winner(Priority::Cost), 1);
        assert_eq!(winner(Priority::Quality), 2);
    }

    #[test]
    fn equal_values_normalise_to_zero_and_ties_keep_order() {
        let cands = [c(Some(10.0), Some(0.5), 0.5), c(Some(10.0), Some(0.5), 0.5)];
        let r = rank(&cands, &Priority::Balanced.weights());
        assert!(close(r[0].score, 0.4 + 0.3 + 0.15));
        assert_eq!((r[0].index, r[1].index), (0, 1));
    }

    #[test]
    fn unmeasured_latency_is_taken_as_twice_the_slowest_measured_one() {
        let cands = [
            c(Some(200.0), Some(0.01), 0.5),
            c(None, Some(0.01), 0.5),
            c(Some(800.0), Some(0.01), 0.5),
        ];
        let r = rank(&cands, &Priority::Speed.weights());
        let new = r.iter().find(|s| s.index == 1).unwrap();
        assert_eq!(new.latency_ms, Some(1600.0));
        // The bulk goes to what is measured; probes measure the new one.
        assert_eq!((r[0].index, r[1].index, r[2].index), (0, 2, 1));
        // With one measured, it still wins over the unknown.
        let r = rank(&cands[..2], &Priority::Speed.weights());
        assert_eq!(r[0].index, 0);
        assert!(r[0].score > r[1].score);
    }

    #[test]
    fn failures_lower_a_models_standing() {
        let mut failing = c(Some(10.0), Some(0.01), 0.9);
        failing.error_rate = 0.7;
        let cands = [failing, c(Some(30.0), Some(0.01), 0.5)];
        let r = rank(&cands, &Priority::Speed.weights());
        assert_eq!(r[0].index, 1, "{r:?}");
        let f = r.iter().find(|s| s.index == 0).unwrap();
        assert!(close(f.score, (0.7 + 0.2 + 0.1 * 0.9) * 0.3 * 0.3));
    }

    #[test]
    fn nothing_measured_means_latency_does_not_decide() {
        let cands = [c(None, Some(0.02), 0.5), c(None, Some(0.01), 0.5)];
        let r = rank(&cands, &Priority::Speed.weights());
        assert_eq!(r[0].index, 1);
        assert!(close(r[0].score, 0.7 + 0.2 + 0.05));
        assert!(close(r[1].score, 0.7 + 0.0 + 0.05));
    }

    #[test]
    fn unknown_cost_is_treated_as_the_dearest() {
        let cands = [
            c(Some(10.0), None, 0.5),
            c(Some(10.0), Some(0.01), 0.5),
            c(Some(10.0), Some(0.03), 0.5),
        ];
        let r = rank(&cands, &Priority::Cost.weights());
        let unknown = r.iter().find(|s| s.index == 0).unwrap();
        let dear = r.iter().find(|s| s.index == 2).unwrap();
        assert!(close(unknown.score, dear.score));
        assert_eq!(r[0].index, 1);
    }

    #[test]
    fn any_latency_spread_is_plain_min_max() {
        // 2 ms apart still spans the whole 0..1 range: latency's 0.4 beats
        // cost's 0.3 under balanced weights.
        let cands = [
            c(Some(10.0), Some(0.02), 0.5),
            c(Some(12.0), Some(0.01), 0.5),
        ];
        let r = rank(&cands, &Priority::Balanced.weights());
        assert_eq!(r[0].index, 0);
        let slow = r.iter().find(|s| s.index == 1).unwrap();
        assert!(close(slow.score, 0.3 + 0.15));
        let fast = r.iter().find(|s| s.index == 0).unwrap();
        assert!(close(fast.score, 0.4 + 0.15));
    }

    #[test]
    fn quality_is_clamped_and_empty_input_is_empty() {
        let r = rank(&[c(None, None, 7.0)], &Priority::Quality.weights());
        assert!(close(r[0].quality, 1.0));
        assert!(rank(&[], &Priority::Quality.weights()).is_empty());
    }

    #[test]
    fn rank_into_reuses_the_buffer() {
        let mut out = Vec::new();
        let cands = [c(Some(1.0), Some(1.0), 0.1), c(Some(2.0), Some(2.0), 0.9)];
        rank_into(&cands, &Priority::Quality.weights(), &mut out);
        let cap = out.capacity();
        rank_into(&cands[..1], &Priority::Quality.weights(), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out.capacity(), cap);
    }
}
