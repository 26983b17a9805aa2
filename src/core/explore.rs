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
//!   until its average has caught up.
//! - **Ageing.** One request in every `1 / share` probes the candidate that
//!   was tried longest ago, so that a model that slowed down or failed, and
//!   so lost its traffic, is measured again and can win it back.
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
}

/// The candidate of `order` (ranked best first) that this request should
/// probe, if any. `tick` numbers the requests; `share` is `--explore`.
pub fn choose(
    order: &[Planned],
    health: &(impl HealthView + ?Sized),
    now: Instant,
    tick: u64,
    share: f64,
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
    if let Some(i) = order
        .iter()
        .skip(1)
        .position(|p| open(p) && health.improving(&p.model))
    {
        return Some((i + 1, Probe::Recovery));
    }
    let every = (1.0 / share.min(1.0)).round().max(1.0) as u64;
    if !tick.is_multiple_of(every) {
        return None;
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
        assert_eq!(choose(&order, &v, now, 1, 0.05), Some((1, Probe::WarmUp)));
        v.probing.insert("b".into());
        assert_eq!(choose(&order, &v, now, 1, 0.05), Some((2, Probe::WarmUp)));
        v.probing.insert("c".into());
        assert_eq!(choose(&order, &v, now, 1, 0.05), None, "one probe a model");
        v.probing.clear();
        measured(&mut v, "b", WARMUP_TRIES, 2);
        measured(&mut v, "c", WARMUP_TRIES, 3);
        assert_eq!(choose(&order, &v, now, 1, 0.05), None, "all warm");
    }

    #[test]
    fn every_twentieth_request_re_measures_the_stalest_candidate() {
        let order = ranked(&["a", "b", "c"]);
        let mut v = View::default();
        let now = Instant::now();
        for (m, at) in [("a", 30), ("b", 20), ("c", 10)] {
            measured(&mut v, m, 10, at);
        }
        let probed: Vec<u64> = (1..=60)
            .filter(|t| choose(&order, &v, now, *t, 0.05).is_some())
            .collect();
        assert_eq!(probed, [20, 40, 60]);
        assert_eq!(choose(&order, &v, now, 20, 0.05), Some((2, Probe::Ageing)));
        assert_eq!(choose(&order, &v, now, 20, 0.5), Some((2, Probe::Ageing)));
        assert_eq!(choose(&order, &v, now, 21, 0.5), None);
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
        assert_eq!(choose(&order, &v, now, 1, 0.05), Some((2, Probe::Recovery)));
        v.cooling
            .insert("c".into(), now + std::time::Duration::from_secs(1));
        assert_eq!(choose(&order, &v, now, 1, 0.05), None);
        assert_eq!(choose(&order, &v, now, 20, 0.05), Some((1, Probe::Ageing)));
    }

    #[test]
    fn share_zero_turns_exploration_off_and_fallbacks_are_never_probed() {
        let mut order = ranked(&["a", "b"]);
        let v = View::default();
        assert_eq!(choose(&order, &v, Instant::now(), 20, 0.0), None);
        for p in &mut order {
            p.score = None;
        }
        assert_eq!(choose(&order, &v, Instant::now(), 20, 0.05), None);
    }
}
