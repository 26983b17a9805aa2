//! Exploration: which candidate, if any, a request is sent to first instead
//! of the best one, so that the router keeps learning.
//!
//! - **Warm-up.** A candidate tried fewer than [`WARMUP_TRIES`] times (and
//!   not already the best) is probed: the next request that can take it
//!   goes to it first. At most one
//!   probe of a model is under way at a time, so a new model costs a few
//!   requests, early, and then competes on what was measured.
//! - **Recovery.** A model whose last answer came back well under its
//!   average (it may have recovered) is probed again on the next request,
//!   until its average has caught up; not before the best candidate has
//!   had its own warm-up tries, and only if it could win were it as fast
//!   as can be (its score plus the latency weight passes the best's).
//! - **Ageing.** One request in every `1 / share` probes the candidate that
//!   was tried longest ago, so that a model that slowed down or failed, and
//!   so lost its traffic, is measured again and can win it back.
//! - **Quality.** On a task that has had feedback, every other of those
//!   requests goes instead to a candidate with fewer than
//!   [`QUALITY_WARMUP`] feedback events on the task (fewest first), else
//!   where the uncertainty of quality could change the winner: to the
//!   candidate whose score, were its quality two standard deviations
//!   better than its posterior mean, would pass the best by the most. So a cheaper model the router knows little about on
//!   a task gets the feedback that may show it is as good; one known to
//!   be worse does not.
//!
//! `share` 0 turns all three off: every request goes to the best candidate.
//! The first answer to a probe ends the request like any other; a probe
//! that fails falls back to the best candidate.

use std::time::Instant;

use crate::core::attempts::Planned;
use crate::core::health::{HealthView, WARMUP_TRIES};

/// The default share of requests that re-measure the stalest candidate.
pub const DEFAULT_SHARE: f64 = 0.05;

/// Why a candidate is probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    WarmUp,
    Recovery,
    Ageing,
    Quality,
}

/// Feedback events on a task each candidate gets before its quality
/// there is left to the uncertainty rule.
pub const QUALITY_WARMUP: u64 = 3;

/// What exploration needs to know of a request: its task, and the
/// weights of quality and latency in its score.
#[derive(Debug, Clone, Copy)]
pub struct Terms<'a> {
    pub task: &'a str,
    pub quality: f64,
    pub latency: f64,
}

/// The candidate whose quality's uncertainty could most change the
/// winner on `q`'s task, if any could: its score, were its quality two
/// standard deviations above its mean (in the scorer's steps: 0.1 of
/// quality a step, a term at most its weight), would pass the best's.
fn quality_probe(
    order: &[Planned],
    health: &(impl HealthView + ?Sized),
    q: Terms<'_>,
    open: impl Fn(&Planned) -> bool,
) -> Option<usize> {
    let learned: Vec<_> = order
        .iter()
        .map(|p| health.learned(q.task, &p.model))
        .collect();
    // Only a task that has had feedback: without any, none would come of it.
    if learned.iter().all(|l| l.is_none_or(|p| p.events == 0)) {
        return None;
    }
    // Each candidate first gets a few outcomes on the task: one wrong
    // answer must not rule it out for good.
    let fewest = order
        .iter()
        .zip(&learned)
        .enumerate()
        .skip(1)
        .filter(|(_, (p, l))| open(p) && l.map_or(0, |l| l.events) < QUALITY_WARMUP)
        .min_by_key(|(_, (_, l))| l.map_or(0, |l| l.events));
    if let Some((i, _)) = fewest {
        return Some(i);
    }
    let best = order.first()?.score?;
    order
        .iter()
        .zip(&learned)
        .enumerate()
        .skip(1)
        .filter(|(_, (p, _))| open(p))
        .filter_map(|(i, (p, l))| {
            let sd = l.unwrap_or_default().sd(0.5);
            let gain = q.quality * (2.0 * sd / crate::core::scoring::QUALITY_STEP / 2.0).min(1.0);
            let margin = p.score? + gain - best;
            (margin > 0.0).then_some((i, margin))
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| i)
}

/// The request that explores among the `every` of block `block` (requests
/// `block * every` up to the next block's): one a block, at a place that
/// moves from block to block by the golden ratio of the block's length
/// (Weyl's sequence: the places spread evenly over the block, in short
/// runs too). Requests that come in a fixed cycle (tasks a, b, c, d in
/// turn) would otherwise put the same one at every exploring place: with
/// one request in 20 exploring, only d's.
pub fn exploring_tick(block: u64, every: u64) -> u64 {
    // The fractional part of block × (√5 − 1) / 2, in 64 bits.
    const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;
    // From block 1's step: block 0's would be its first request, and
    // requests are numbered from 1.
    let fraction = (block + 1).wrapping_mul(GOLDEN);
    let place = ((u128::from(fraction) * u128::from(every)) >> 64) as u64;
    block * every + place
}

/// The candidate of `order` (ranked best first) that this request should
/// probe, if any. `tick` numbers the requests; `share` is `--explore`.
pub fn choose(
    order: &[Planned],
    health: &(impl HealthView + ?Sized),
    now: Instant,
    (tick, share): (u64, f64),
    terms: Option<Terms<'_>>,
) -> Option<(usize, Probe)> {
    if share <= 0.0 {
        return None;
    }
    let open = |p: &Planned| {
        p.score.is_some()
            && !health.probing(&p.model)
            && health.cooling_until(&p.model).is_none_or(|t| t <= now)
    };
    let tries = |p: &Planned| health.stat(&p.model).map_or(0, |s| s.tries);
    // The best candidate gets the request anyway: only the others are probed.
    if let Some(i) = order
        .iter()
        .skip(1)
        .position(|p| open(p) && tries(p) < WARMUP_TRIES)
    {
        return Some((i + 1, Probe::WarmUp));
    }
    // A recovery probe waits for the best's warm-up: a model whose answers
    // keep getting faster (a new connection's first answers are slow) would
    // otherwise take every request from a best that was never tried.
    let best_warm = order.first().is_none_or(|b| tries(b) >= WARMUP_TRIES);
    // Nor does it go to a model that would lose were it as fast as can
    // be: its latency term gains at most its weight. Latencies within
    // noise of each other would otherwise keep sending requests to a
    // model known to be worse on what the request weighs.
    let best = order.first().and_then(|b| b.score);
    let could_win = |p: &Planned| match (terms, best, p.score) {
        (Some(t), Some(best), Some(score)) => score + t.latency > best,
        _ => true,
    };
    if let Some(i) = order
        .iter()
        .skip(1)
        .position(|p| best_warm && open(p) && health.improving(&p.model) && could_win(p))
    {
        return Some((i + 1, Probe::Recovery));
    }
    let every = (1.0 / share.min(1.0)).round().max(1.0) as u64;
    if tick != exploring_tick(tick / every, every) {
        return None;
    }
    if let Some(q) = terms.filter(|_| (tick / every) % 2 == 1) {
        if let Some(i) = quality_probe(order, health, q, open) {
            return Some((i, Probe::Quality));
        }
    }
    order
        .iter()
        .enumerate()
        .skip(1)
        .filter(|(_, p)| open(p))
        .min_by_key(|(_, p)| health.stat(&p.model).map_or(i64::MIN, |s| s.last_at))
        .map(|(i, _)| (i, Probe::Ageing))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::health::ModelStat;
    use std::collections::{HashMap, HashSet};

    #[derive(Default)]
    struct View {
        stats: HashMap<String, ModelStat>,
        probing: HashSet<String>,
        improving: HashSet<String>,
        cooling: HashMap<String, Instant>,
    }

    impl HealthView for View {
        fn stat(&self, m: &str) -> Option<ModelStat> {
            self.stats.get(m).copied()
        }
        fn cooling_until(&self, m: &str) -> Option<Instant> {
            self.cooling.get(m).copied()
        }
        fn probing(&self, m: &str) -> bool {
            self.probing.contains(m)
        }
        fn improving(&self, m: &str) -> bool {
            self.improving.contains(m)
        }
    }

    fn ranked(models: &[&str]) -> Vec<Planned> {
        models
            .iter()
            .map(|m| Planned {
                model: m.to_string(),
                score: Some(0.5),
                context_length: None,
                est_cost: None,
            })
            .collect()
    }

    fn measured(view: &mut View, model: &str, tries: i64, last_at: i64) {
        view.stats.insert(
            model.into(),
            ModelStat {
                ewma_ms: 100.0,
                samples: tries,
                error_rate: 0.0,
                tries,
                last_at,
                ..Default::default()
            },
        );
    }

    #[test]
    fn an_unmeasured_candidate_is_probed_once_at_a_time_until_warm() {
        let order = ranked(&["a", "b", "c"]);
        let mut v = View::default();
        let now = Instant::now();
        measured(&mut v, "a", 10, 1);
        assert_eq!(
            choose(&order, &v, now, (1, 0.05), None),
            Some((1, Probe::WarmUp))
        );
        v.probing.insert("b".into());
        assert_eq!(
            choose(&order, &v, now, (1, 0.05), None),
            Some((2, Probe::WarmUp))
        );
        v.probing.insert("c".into());
        assert_eq!(
            choose(&order, &v, now, (1, 0.05), None),
            None,
            "one probe a model"
        );
        v.probing.clear();
        measured(&mut v, "b", WARMUP_TRIES, 2);
        measured(&mut v, "c", WARMUP_TRIES, 3);
        assert_eq!(
            choose(&order, &v, now, (calm(), 0.05), None),
            None,
            "all warm"
        );
    }

    #[test]
    fn every_twentieth_request_re_measures_the_stalest_candidate() {
        let order = ranked(&["a", "b", "c"]);
        let mut v = View::default();
        let now = Instant::now();
        for (m, at) in [("a", 30), ("b", 20), ("c", 10)] {
            measured(&mut v, m, 10, at);
        }
        let probed: Vec<u64> = (1..60)
            .filter(|t| choose(&order, &v, now, (*t, 0.05), None).is_some())
            .collect();
        let each_block: Vec<u64> = (0..3).map(|b| exploring_tick(b, 20)).collect();
        assert_eq!(probed, each_block);
        // Requests are numbered from 1: the first block explores too.
        assert!((1..20).contains(&exploring_tick(0, 20)));
        assert_eq!(
            choose(&order, &v, now, (at(1), 0.05), None),
            Some((2, Probe::Ageing))
        );
        // One in two: one of each pair of requests.
        let t = exploring_tick(10, 2);
        assert_eq!(
            choose(&order, &v, now, (t, 0.5), None),
            Some((2, Probe::Ageing))
        );
        let other = if t == 20 { 21 } else { 20 };
        assert_eq!(choose(&order, &v, now, (other, 0.5), None), None);
    }

    /// The exploring request of block `b` at the default share.
    fn at(b: u64) -> u64 {
        exploring_tick(b, 20)
    }

    /// A request that does not explore at the default share: another of
    /// block 1.
    fn calm() -> u64 {
        match at(1) % 20 {
            19 => at(1) - 1,
            _ => at(1) + 1,
        }
    }

    #[test]
    fn tasks_that_come_in_turn_are_each_explored() {
        // Tasks a, b, c, d in turn: a fixed exploring place (every 20th
        // request) would always fall on d.
        let mut explored = [0u32; 4];
        let ticks = (0..4000u64).filter(|t| *t == exploring_tick(t / 20, 20));
        for t in ticks {
            explored[(t % 4) as usize] += 1;
        }
        assert_eq!(explored.iter().sum::<u32>(), 200, "one in 20");
        assert!(explored.iter().all(|n| *n >= 30), "{explored:?}");
    }

    #[test]
    fn a_recovering_model_is_probed_again_and_cooling_ones_never() {
        let order = ranked(&["a", "b", "c"]);
        let mut v = View::default();
        let now = Instant::now();
        for m in ["a", "b", "c"] {
            measured(&mut v, m, 10, 5);
        }
        v.improving.insert("c".into());
        assert_eq!(
            choose(&order, &v, now, (1, 0.05), None),
            Some((2, Probe::Recovery))
        );
        // Not while the best has not been tried: it would never be.
        let mut fresh = View::default();
        measured(&mut fresh, "c", 10, 5);
        fresh.improving.insert("c".into());
        assert_eq!(choose(&order[1..], &fresh, now, (calm(), 0.05), None), None);
        v.cooling
            .insert("c".into(), now + std::time::Duration::from_secs(1));
        assert_eq!(choose(&order, &v, now, (calm(), 0.05), None), None);
        assert_eq!(
            choose(&order, &v, now, (at(1), 0.05), None),
            Some((1, Probe::Ageing))
        );
    }

    #[test]
    fn a_model_that_could_not_win_however_fast_is_not_probed_for_recovery() {
        let mut order = ranked(&["a", "b"]);
        order[0].score = Some(0.9);
        order[1].score = Some(0.3);
        let mut v = View::default();
        let now = Instant::now();
        for m in ["a", "b"] {
            measured(&mut v, m, 10, 5);
        }
        v.improving.insert("b".into());
        let terms = |latency| {
            Some(Terms {
                task: "t",
                quality: 0.7,
                latency,
            })
        };
        // Latency is a tenth of the score: b would still lose at its fastest.
        assert_eq!(choose(&order, &v, now, (calm(), 0.05), terms(0.1)), None);
        assert_eq!(choose(&order, &v, now, (calm(), 0.05), terms(0.0)), None);
        // Where latency weighs enough to close the gap, it is heard again.
        assert_eq!(
            choose(&order, &v, now, (1, 0.05), terms(0.7)),
            Some((1, Probe::Recovery))
        );
    }

    #[test]
    fn share_zero_turns_exploration_off_and_fallbacks_are_never_probed() {
        let mut order = ranked(&["a", "b"]);
        let v = View::default();
        assert_eq!(choose(&order, &v, Instant::now(), (at(1), 0.0), None), None);
        for p in &mut order {
            p.score = None;
        }
        assert_eq!(
            choose(&order, &v, Instant::now(), (at(1), 0.05), None),
            None
        );
    }

    #[test]
    fn quality_probes_go_where_uncertainty_could_change_the_winner() {
        use crate::core::learned::Posterior;
        struct Learned(HashMap<String, Posterior>);
        impl HealthView for Learned {
            fn stat(&self, _: &str) -> Option<ModelStat> {
                Some(ModelStat {
                    tries: 100,
                    ..ModelStat::default()
                })
            }
            fn cooling_until(&self, _: &str) -> Option<Instant> {
                None
            }
            fn learned(&self, task: &str, m: &str) -> Option<Posterior> {
                (task == "t").then(|| self.0.get(m).copied()).flatten()
            }
        }
        let mut order = ranked(&["best", "unsure", "known-bad"]);
        order[0].score = Some(0.80);
        order[1].score = Some(0.70);
        order[2].score = Some(0.75);
        let sure = |good: f64, bad: f64| Posterior {
            good,
            bad,
            events: 50,
            at_ms: 0,
        };
        let v = Learned(HashMap::from([
            ("best".to_string(), sure(40.0, 10.0)),
            (
                "unsure".to_string(),
                Posterior {
                    good: 1.0,
                    bad: 0.0,
                    events: 1,
                    at_ms: 0,
                },
            ),
            ("known-bad".to_string(), sure(5.0, 300.0)),
        ]));
        let q = Some(Terms {
            task: "t",
            quality: 0.7,
            latency: 0.1,
        });
        let now = Instant::now();
        // Every other exploring request: the one that could win, not the
        // one known to be worse though it scores higher now.
        assert_eq!(
            choose(&order, &v, now, (at(1), 0.05), q),
            Some((1, Probe::Quality))
        );
        assert_eq!(
            choose(&order, &v, now, (at(2), 0.05), q).map(|p| p.1),
            Some(Probe::Ageing)
        );
        // A candidate with few outcomes on the task is heard first, however
        // far behind it scores.
        let mut far = order.clone();
        far[1].score = Some(0.1);
        let few = Learned(HashMap::from([
            ("best".to_string(), sure(40.0, 10.0)),
            (
                "unsure".to_string(),
                Posterior {
                    good: 0.0,
                    bad: 1.0,
                    events: 1,
                    at_ms: 0,
                },
            ),
            ("known-bad".to_string(), sure(5.0, 300.0)),
        ]));
        assert_eq!(
            choose(&far, &few, now, (at(1), 0.05), q),
            Some((1, Probe::Quality))
        );
        // A task nothing was said of explores no quality.
        let other = Some(Terms {
            task: "u",
            quality: 0.7,
            latency: 0.1,
        });
        assert_eq!(
            choose(&order, &v, now, (at(1), 0.05), other).map(|p| p.1),
            Some(Probe::Ageing)
        );
    }
}
