//! The scorer: a pure function over plain data.
//!
//! ```text
//! score = (w_latency * (1 - behind_latency / 2) + w_cost * (1 - behind_cost / 2)
//!          + w_quality * (1 - behind_quality / 2)) * (1 - error_rate)²
//! ```
//!
//! `behind_x` puts the three terms on one scale: how far a candidate is
//! behind the best candidate of the request on that term, in steps. A step
//! is twice the best latency or price (ratios: twice as slow is as far
//! behind at 100 ms as at 10 s) and 0.1 of quality; within 5% of the best
//! latency or price, or 0.01 of its quality, is no difference, so
//! measurement noise does not swing a term's weight. Up to one step,
//! `behind_x` grows in proportion; past it, by at most one more, in
//! proportion to how far the candidate is towards 32 times the best
//! latency or price, or the whole quality scale, so that among candidates
//! all a step or more behind the nearer still ranks higher. A score is thus in [0, 1]. So a preset that puts 0.7 of the
//! weight on one term picks the candidate best on it whenever every other
//! is a whole step behind on it (it scores at least 0.7; the others at
//! most 0.7 / 2 + 0.3); and
//! a candidate that another beats or ties on every term never wins (a
//! tie-break a millionth of a step in size, over the min-max normalised
//! values, settles what the steps call equal).
//!
//! The sum is multiplied by `(1 - error_rate)²`, where
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
        // Brought to the largest first: the sum of weights near f64's
        // largest would overflow, and every share would be 0.
        let largest = latency.max(cost).max(quality);
        if largest <= 0.0 {
            return Err(WeightsError::AllZero);
        }
        let [latency, cost, quality] = [latency, cost, quality].map(|w| w / largest);
        let sum = latency + cost + quality;
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

/// How far `x` is along a step from `from` (nothing yet) to `to` (all of
/// it), in [0, 1].
#[inline]
fn step(x: f64, from: f64, to: f64) -> f64 {
    ((x - from) / (to - from)).clamp(0.0, 1.0)
}

/// Latencies within 5% of the best are the same (measurement noise);
/// twice the best, or more, is a whole step behind.
pub const LATENCY_SAME: f64 = 1.05;
pub const LATENCY_STEP: f64 = 2.0;
/// Prices within 5% of the cheapest are the same; twice it is a whole step.
pub const COST_SAME: f64 = 1.05;
pub const COST_STEP: f64 = 2.0;
/// Quality within 0.01 of the best is the same; 0.1 below it is a whole step.
pub const QUALITY_SAME: f64 = 0.01;
pub const QUALITY_STEP: f64 = 0.1;
/// The weight of the tie-break, far below any step: among candidates the
/// steps score alike, one that is better on a term and no worse on any
/// other wins.
const TIE_BREAK: f64 = 1e-6;

/// How far behind the best candidate one is on a term, `x` (0 for the
/// best) on a scale whose noise ends at `same` and whose step is `step`:
/// up to one step, in proportion; past a step, one more at most, in
/// proportion to how far it is towards `far` (32 times the best latency
/// or price, or the whole quality scale). So among candidates all a step
/// or more behind, the nearer still ranks higher, whatever the others
/// are, and no term weighs more than twice its weight.
#[inline]
fn behind(x: f64, same: f64, step_at: f64, far: f64) -> f64 {
    step(x, same, step_at) + step(x, step_at, far)
}

/// Where a second step behind ends: 32 times the best latency or price,
/// and the whole quality scale.
pub const LATENCY_FAR: f64 = 32.0;
pub const COST_FAR: f64 = 32.0;
pub const QUALITY_FAR: f64 = 1.0;

/// The log ratio of a latency to the best one. A millisecond keeps a zero
/// latency from dividing by zero.
#[inline]
fn latency_x(v: f64, best: f64) -> f64 {
    ((v + 1.0) / (best + 1.0)).ln()
}

/// The log ratio of a price to the best one. A tenth of a microdollar
/// keeps a free model from dividing by zero.
#[inline]
fn cost_x(v: f64, best: f64) -> f64 {
    ((v + 1e-7) / (best + 1e-7)).ln()
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
    let qual = min_max(candidates.iter().map(|c| c.quality.clamp(0.0, 1.0)));
    out.extend(candidates.iter().enumerate().map(|(index, c)| {
        let latency_ms = c.latency_ms.or(prior);
        let cost_usd = c.cost_usd;
        let quality = c.quality.clamp(0.0, 1.0);
        // Steps behind the best: what the score weighs.
        let (sl, nl) = match (latency_ms, lat) {
            (Some(v), Some((lo, hi))) => (
                behind(
                    latency_x(v, lo),
                    LATENCY_SAME.ln(),
                    LATENCY_STEP.ln(),
                    LATENCY_FAR.ln(),
                ),
                norm(v, lo, hi),
            ),
            _ => (0.0, 0.0),
        };
        let (sc, nc) = match (cost_usd, cost) {
            (Some(v), Some((lo, hi))) => (
                behind(cost_x(v, lo), COST_SAME.ln(), COST_STEP.ln(), COST_FAR.ln()),
                norm(v, lo, hi),
            ),
            // An unknown price is taken as the dearest known one.
            (None, Some((lo, hi))) => (
                behind(
                    cost_x(hi, lo),
                    COST_SAME.ln(),
                    COST_STEP.ln(),
                    COST_FAR.ln(),
                ),
                1.0,
            ),
            _ => (0.0, 0.0),
        };
        let (sq, nq) = match qual {
            Some((lo, hi)) => (
                behind(hi - quality, QUALITY_SAME, QUALITY_STEP, QUALITY_FAR),
                norm(hi - quality + lo, lo, hi),
            ),
            None => (0.0, 0.0),
        };
        let success = 1.0 - c.error_rate.clamp(0.0, 1.0);
        let standing = success * success;
        // Each term in [0, 1]: 1 for the best, 0 for two steps behind.
        let terms =
            w.latency * (1.0 - sl / 2.0) + w.cost * (1.0 - sc / 2.0) + w.quality * (1.0 - sq / 2.0);
        let fine = w.latency * (1.0 - nl) + w.cost * (1.0 - nc) + w.quality * (1.0 - nq);
        let score = (terms + TIE_BREAK * fine) * standing;
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
        // Weights whose sum overflows keep their shares.
        let w = Weights::new(1e308, 1e308, 0.0).unwrap();
        assert!(close(w.latency, 0.5) && close(w.cost, 0.5) && w.quality == 0.0);
        let w = Weights::new(0.0, 5e-324, 0.0).unwrap();
        assert!(close(w.cost, 1.0), "{w:?}");
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
        // A: fast and dear; B: three times as slow, half the price, 0.05
        // better.
        let cands = [
            c(Some(100.0), Some(0.02), 0.4),
            c(Some(300.0), Some(0.01), 0.45),
        ];
        let w = Weights::new(0.5, 0.3, 0.2).unwrap();
        let r = rank(&cands, &w);
        let a = r.iter().find(|s| s.index == 0).unwrap();
        let b = r.iter().find(|s| s.index == 1).unwrap();
        // A: best latency; a whole step dearer (and the dearest); 0.05 of
        // quality behind is (0.05 - 0.01) / (0.1 - 0.01) of a step.
        let behind_q = (0.05 - 0.01) / 0.09;
        assert!((a.score - (0.5 + 0.3 * 0.5 + 0.2 * (1.0 - behind_q / 2.0))).abs() < 1e-5);
        // B: three times as slow: a step, and part of a second, in
        // proportion to how far 3x is from 2x towards 32x; cheapest; best
        // quality.
        let second = ((301.0f64 / 101.0).ln() - 2f64.ln()) / (32f64.ln() - 2f64.ln());
        let behind_l = 1.0 + second;
        assert!((b.score - (0.5 * (1.0 - behind_l / 2.0) + 0.3 + 0.2)).abs() < 1e-5);
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
    fn equal_values_tie_and_ties_keep_order() {
        let cands = [c(Some(10.0), Some(0.5), 0.5), c(Some(10.0), Some(0.5), 0.5)];
        let r = rank(&cands, &Priority::Balanced.weights());
        assert!((r[0].score - 1.0).abs() < 1e-5);
        assert_eq!(r[0].score, r[1].score);
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
        assert!((f.score - 1.0 * 0.3 * 0.3).abs() < 1e-5);
    }

    #[test]
    fn nothing_measured_means_latency_does_not_decide() {
        let cands = [c(None, Some(0.02), 0.5), c(None, Some(0.01), 0.5)];
        let r = rank(&cands, &Priority::Speed.weights());
        assert_eq!(r[0].index, 1);
        assert!((r[0].score - 1.0).abs() < 1e-5);
        assert!((r[1].score - 0.9).abs() < 1e-5);
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
    fn noise_does_not_swing_a_term() {
        // 4% apart is noise: the cheaper one wins under balanced weights,
        // though latency weighs more.
        let cands = [
            c(Some(100.0), Some(0.02), 0.5),
            c(Some(104.0), Some(0.01), 0.5),
        ];
        let r = rank(&cands, &Priority::Balanced.weights());
        assert_eq!(r[0].index, 1);
        // Within noise on every term, the tie-break still prefers what is
        // better on one and no worse on any.
        let cands = [
            c(Some(103.0), Some(0.0100), 0.500),
            c(Some(100.0), Some(0.0100), 0.505),
        ];
        for p in Priority::ALL {
            assert_eq!(rank(&cands, &p.weights())[0].index, 1, "{p:?}");
        }
    }

    /// A small deterministic generator for the properties below.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> f64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
        fn candidates(&mut self, n: usize) -> Vec<Candidate> {
            (0..n)
                .map(|_| {
                    c(
                        Some(10.0 + self.next() * 5000.0),
                        Some(self.next() * 0.05),
                        self.next(),
                    )
                })
                .collect()
        }
    }

    #[test]
    fn each_preset_picks_the_best_on_its_term_when_the_others_are_a_step_behind() {
        let mut g = Lcg(7);
        let mut checked = [0; 3];
        for _ in 0..20_000 {
            let n = 2 + (g.next() * 7.0) as usize;
            let cands = g.candidates(n);
            let best_by = |key: &dyn Fn(&Candidate) -> f64| {
                (0..n)
                    .min_by(|a, b| key(&cands[*a]).total_cmp(&key(&cands[*b])))
                    .unwrap()
            };
            let fastest = best_by(&|c| c.latency_ms.unwrap());
            let cheapest = best_by(&|c| c.cost_usd.unwrap());
            let smartest = best_by(&|c| -c.quality);
            let apart =
                |i: usize, f: &dyn Fn(&Candidate) -> bool| (0..n).all(|j| j == i || f(&cands[j]));
            let (fl, cc, sq) = (
                cands[fastest].latency_ms.unwrap(),
                cands[cheapest].cost_usd.unwrap(),
                cands[smartest].quality,
            );
            if apart(fastest, &|c| c.latency_ms.unwrap() >= 2.0 * fl) {
                assert_eq!(rank(&cands, &Priority::Speed.weights())[0].index, fastest);
                checked[0] += 1;
            }
            if apart(cheapest, &|c| c.cost_usd.unwrap() >= 2.0 * cc) {
                assert_eq!(rank(&cands, &Priority::Cost.weights())[0].index, cheapest);
                checked[1] += 1;
            }
            if apart(smartest, &|c| c.quality <= sq - 0.1) {
                assert_eq!(
                    rank(&cands, &Priority::Quality.weights())[0].index,
                    smartest
                );
                checked[2] += 1;
            }
        }
        assert!(checked.iter().all(|n| *n > 100), "{checked:?}");
    }

    #[test]
    fn no_preset_picks_a_candidate_another_beats_or_ties_on_every_term() {
        let mut g = Lcg(11);
        for _ in 0..20_000 {
            let n = 2 + (g.next() * 7.0) as usize;
            let mut cands = g.candidates(n);
            // Often a near copy of another, a little worse on one term.
            if g.next() < 0.5 {
                let mut copy = cands[0];
                match (g.next() * 3.0) as u32 {
                    0 => copy.latency_ms = copy.latency_ms.map(|l| l * 1.02),
                    1 => copy.cost_usd = copy.cost_usd.map(|c| c * 1.02),
                    _ => copy.quality -= 0.005,
                }
                cands.insert((g.next() * n as f64) as usize, copy);
            }
            for p in Priority::ALL {
                let won = cands[rank(&cands, &p.weights())[0].index];
                let dominated = cands.iter().any(|o| {
                    let (ol, wl) = (o.latency_ms.unwrap(), won.latency_ms.unwrap());
                    let (oc, wc) = (o.cost_usd.unwrap(), won.cost_usd.unwrap());
                    let no_worse = ol <= wl && oc <= wc && o.quality >= won.quality;
                    no_worse && (ol < wl || oc < wc || o.quality > won.quality)
                });
                assert!(
                    !dominated,
                    "{p:?} picked a dominated candidate of {cands:?}"
                );
            }
        }
    }

    #[test]
    fn past_a_step_a_bigger_gap_still_counts() {
        // Two candidates 0.2 and 0.5 of quality apart are not alike: with
        // the cost weight close, the bigger gap wins where the smaller
        // does not.
        let pair = |gap: f64| {
            [
                c(Some(100.0), Some(0.001), 0.9 - gap),
                c(Some(100.0), Some(0.004), 0.9),
            ]
        };
        let w = Weights::new(0.0, 0.5, 0.5).unwrap();
        assert_eq!(rank(&pair(0.15), &w)[0].index, 0);
        assert_eq!(rank(&pair(0.5), &w)[0].index, 1);
    }

    #[test]
    fn the_quality_preset_picks_the_better_model_whatever_the_price_gap() {
        // gpt-5.4 (0.828) against gpt-5.4-nano (0.564), about 20 times
        // dearer, at the same measured latency.
        let cands = [
            c(Some(900.0), Some(0.0001), 0.564),
            c(Some(900.0), Some(0.002), 0.828),
        ];
        assert_eq!(rank(&cands, &Priority::Quality.weights())[0].index, 1);
        assert_eq!(rank(&cands, &Priority::Cost.weights())[0].index, 0);
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
