//! Where a model's quality on a task starts before the task's own
//! feedback speaks: pooled from what is known elsewhere. Plain arithmetic,
//! no I/O.
//!
//! A task's posterior ([`crate::core::learned`]) starts from a prior worth
//! [`PSEUDO`](crate::core::learned::PSEUDO) observations. That prior is not the model's static quality
//! alone, but:
//!
//! 1. **The model's other tasks.** The static prior worth [`POOL_PSEUDO`]
//!    observations, plus the model's feedback on every other task: a model
//!    that proved good across tasks starts a new task as good.
//! 2. **The other candidates on this task.** Moved by [`KINSHIP`] times how
//!    far the other candidates' learned quality on this task is from their
//!    own pooled quality (their mean, among those with feedback on it): a
//!    task the other models find hard is likely hard for this one too.
//!    Across MMLU's 57 subjects, two models' accuracies correlate at 0.87,
//!    while the gap between them varies far less than either.
//!
//! So one wrong answer on a new task moves a model from where the rest of
//! the evidence puts it, not from 0.5; and its own feedback on the task,
//! once there is a fair amount of it, decides.

use crate::core::learned::Posterior;

/// How many observations the static prior is worth against a model's
/// feedback on its other tasks.
pub const POOL_PSEUDO: f64 = 20.0;

/// How much of the other candidates' lead or lag on a task, against
/// their pooled quality, is taken to hold for a model on it too.
pub const KINSHIP: f64 = 0.75;

/// How far the other candidates' lead on a task may carry a start, down
/// and up.
pub const SHIFT_FLOOR: f64 = 0.05;
pub const SHIFT_CEILING: f64 = 0.95;

/// What is known of one candidate.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Evidence {
    /// Its static prior (override, catalogue index, built-in, or 0.5).
    pub prior: f64,
    /// Its feedback on this task, decayed to now.
    pub here: Option<Posterior>,
    /// Its feedback on every other task, decayed to now.
    pub elsewhere: Option<Posterior>,
}

/// Where the quality a candidate was scored with comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Source {
    /// Its static prior alone: nothing was learned that bears on it.
    #[default]
    Prior,
    /// No feedback on it for this task, but on its other tasks or on the
    /// other candidates for this one.
    Pooled,
    /// Its own feedback on this task.
    Learned,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::Prior => "prior",
            Source::Pooled => "pooled",
            Source::Learned => "learned",
        }
    }
}

/// The mean of `p`'s posterior from `prior` worth `pseudo` observations.
fn mean(p: Option<&Posterior>, prior: f64, pseudo: f64) -> f64 {
    let prior = prior.clamp(0.0, 1.0);
    match p {
        Some(p) => (prior * pseudo + p.good) / (pseudo + p.good + p.bad),
        None => prior,
    }
}

/// The mean of `p`'s posterior on the task from `start`, worth [`PSEUDO`](crate::core::learned::PSEUDO)
/// observations unless `p` conflicts with it: see
/// [`Posterior::prior_weight`].
fn here_mean(p: Option<&Posterior>, start: f64) -> f64 {
    match p {
        Some(p) => p.mean(start),
        None => start.clamp(0.0, 1.0),
    }
}

fn has_events(p: Option<&Posterior>) -> bool {
    p.is_some_and(|p| p.events > 0)
}

/// A candidate's pooled quality, and how far its feedback on this task
/// puts it from there (0 without any).
fn pooled_and_lead(e: &Evidence) -> (f64, f64) {
    let pooled = mean(e.elsewhere.as_ref(), e.prior, POOL_PSEUDO);
    (pooled, here_mean(e.here.as_ref(), pooled) - pooled)
}

/// Each candidate's quality on the task and where it comes from, in the
/// order given, written to `out` (cleared first).
pub fn qualities(ev: &[Evidence], out: &mut Vec<(f64, Source)>) {
    out.clear();
    let (mut sum, mut count) = (0.0, 0usize);
    for e in ev.iter().filter(|e| has_events(e.here.as_ref())) {
        sum += pooled_and_lead(e).1;
        count += 1;
    }
    out.extend(ev.iter().map(|e| {
        let (pooled, lead) = pooled_and_lead(e);
        let own = has_events(e.here.as_ref());
        let others = count - usize::from(own);
        let shift = match others {
            0 => 0.0,
            n => (sum - if own { lead } else { 0.0 }) / n as f64,
        };
        // The shift never carries a start past 0.05 or 0.95: at 1, a
        // model's perfect record there would sit on it, outranking any
        // other's whatever its evidence.
        let lo = if pooled < SHIFT_FLOOR {
            pooled.max(0.0)
        } else {
            SHIFT_FLOOR
        };
        let hi = if pooled > SHIFT_CEILING {
            pooled.min(1.0)
        } else {
            SHIFT_CEILING
        };
        let start = (pooled + KINSHIP * shift).clamp(lo, hi);
        let source = match (own, others > 0 || has_events(e.elsewhere.as_ref())) {
            (true, _) => Source::Learned,
            (false, true) => Source::Pooled,
            (false, false) => Source::Prior,
        };
        (here_mean(e.here.as_ref(), start), source)
    }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::learned::PSEUDO;

    /// `good` of `n` answers good, now.
    fn seen(good: f64, n: f64) -> Option<Posterior> {
        Some(Posterior {
            good,
            bad: n - good,
            events: n as u64,
            at_ms: 0,
        })
    }

    fn run(ev: &[Evidence]) -> Vec<(f64, Source)> {
        let mut out = Vec::new();
        qualities(ev, &mut out);
        out
    }

    #[test]
    fn nothing_learned_is_the_static_prior() {
        let ev = [
            Evidence {
                prior: 0.8,
                ..Default::default()
            },
            Evidence {
                prior: 0.3,
                ..Default::default()
            },
        ];
        assert_eq!(run(&ev), vec![(0.8, Source::Prior), (0.3, Source::Prior)]);
    }

    #[test]
    fn a_model_good_on_its_other_tasks_starts_a_new_one_as_good() {
        let ev = [Evidence {
            prior: 0.5,
            here: None,
            elsewhere: seen(90.0, 100.0),
        }];
        let (q, source) = run(&ev)[0];
        // (0.5 × 20 + 90) / (20 + 100)
        assert!((q - 100.0 / 120.0).abs() < 1e-12, "{q}");
        assert_eq!(source, Source::Pooled);
        // One wrong answer on the task moves it from there, not from 0.5.
        let ev = [Evidence {
            here: seen(0.0, 1.0),
            ..ev[0]
        }];
        let (q, source) = run(&ev)[0];
        let from = 100.0 / 120.0;
        assert!((q - from * PSEUDO / (PSEUDO + 1.0)).abs() < 1e-12, "{q}");
        assert_eq!(source, Source::Learned);
    }

    #[test]
    fn a_task_the_other_models_find_hard_starts_lower() {
        // The other model, 0.8 across its other tasks, is right on a
        // quarter of this one's 40 answers.
        let other = Evidence {
            prior: 0.5,
            here: seen(10.0, 40.0),
            elsewhere: seen(95.0, 105.0),
        };
        let new = Evidence {
            prior: 0.6,
            ..Default::default()
        };
        let out = run(&[new, other]);
        let other_pooled = (0.5 * POOL_PSEUDO + 95.0) / (POOL_PSEUDO + 105.0);
        // Its quarter stands far from its 0.84: its start weighs less.
        let z = (0.25 - other_pooled).abs() / (other_pooled * (1.0 - other_pooled) / 40.0).sqrt();
        let w = PSEUDO * (crate::core::learned::CONFLICT_Z / z).powi(2);
        let other_here = (other_pooled * w + 10.0) / (w + 40.0);
        let want = 0.6 + KINSHIP * (other_here - other_pooled);
        assert!((out[0].0 - want).abs() < 1e-12, "{:?}", out[0]);
        assert!(out[0].0 < 0.3);
        assert_eq!(out[0].1, Source::Pooled);
        // The other's own quality is its own affair: no candidate besides
        // it has feedback here.
        assert!((out[1].0 - other_here).abs() < 1e-12);
    }

    #[test]
    fn a_model_s_own_feedback_on_the_task_decides_in_the_end() {
        let other = Evidence {
            prior: 0.5,
            here: seen(0.0, 50.0),
            elsewhere: None,
        };
        let own = Evidence {
            prior: 0.5,
            here: seen(190.0, 200.0),
            elsewhere: seen(0.0, 100.0),
        };
        let q = run(&[own, other])[0].0;
        assert!(q > 0.9, "{q}");
    }

    #[test]
    fn the_shift_is_the_mean_of_the_others_and_stays_in_range() {
        let low = Evidence {
            prior: 0.5,
            here: seen(0.0, 100.0),
            elsewhere: None,
        };
        let high = Evidence {
            prior: 0.5,
            here: seen(100.0, 100.0),
            elsewhere: None,
        };
        let new = Evidence {
            prior: 0.5,
            ..Default::default()
        };
        // One far below, one far above their pooled 0.5: no shift.
        let q = run(&[new, low, high])[0].0;
        assert!((q - 0.5).abs() < 1e-12, "{q}");
        // A prior moved down far stays at 0.05, not below: nor up past
        // 0.95, where the model's own perfect record could never move it.
        let at = |prior: f64, other: Evidence| {
            run(&[
                Evidence {
                    prior,
                    ..Default::default()
                },
                other,
            ])[0]
                .0
        };
        assert_eq!(at(0.3, low), SHIFT_FLOOR);
        assert_eq!(at(0.7, high), SHIFT_CEILING);
        // A start already past them by itself stays where it is.
        assert_eq!(at(0.02, low), 0.02);
        assert_eq!(at(0.97, high), 0.97);
    }
}
