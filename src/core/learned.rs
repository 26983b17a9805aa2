//! Quality learned from outcomes, per task and model: plain arithmetic on
//! a posterior, no I/O.
//!
//! A model's quality for a task is a Beta posterior over "this model's
//! answer to this task is good": it starts from the model's prior `q0` as
//! [`PSEUDO`] pseudo-observations (`q0 × PSEUDO` good, `(1 − q0) × PSEUDO`
//! bad), and every feedback event adds its weight: `score × weight` to the
//! good side, `(1 − score) × weight` to the bad. What was observed decays
//! with a half-life, so a model that changes is followed: an event counts
//! half after one half-life, and the posterior drifts back to the prior
//! when nothing new is said. The mean is the quality the score uses.

/// The task of a request that names none.
pub const DEFAULT_TASK: &str = "default";
/// The task that names past [`TASKS_MAX`] share.
pub const OTHER_TASK: &str = "other";
/// Most characters in a task's name.
pub const TASK_NAME_MAX: usize = 64;
/// Most distinct tasks a store learns about; past them, [`OTHER_TASK`].
pub const TASKS_MAX: usize = 1000;
/// How many observations the prior is worth.
pub const PSEUDO: f64 = 4.0;
/// How many standard errors a task's own feedback may stand from where the
/// task started before that start counts for less: past it, the start's
/// weight shrinks with the square of how far past (an adaptive power
/// prior). A model poor on your other tasks but right on this one every
/// time is believed in tens of answers, not hundreds.
pub const CONFLICT_Z: f64 = 3.0;
/// The feedback weight under which no conflict is judged: one or two
/// answers say little.
pub const CONFLICT_MIN: f64 = 3.0;
/// How long until an observation counts half, by default.
pub const HALF_LIFE_MS: i64 = 14 * 86_400_000;

/// Checks a task's name: 1 to [`TASK_NAME_MAX`] letters, digits, `-`,
/// `_`, `.`, `/` or `:`.
pub fn check_task(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= TASK_NAME_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:".contains(&b));
    match ok {
        true => Ok(()),
        // Quoted whole or not at all: a part of what was given (a key,
        // given by mistake) could not be told apart and blanked out.
        false => {
            let chars = name.chars().count();
            let shown = match chars <= TASK_NAME_MAX {
                true => format!("{name:?} "),
                false => String::new(),
            };
            Err(format!(
                "task {shown}({}): a task's name is 1 to {TASK_NAME_MAX} ASCII letters, digits, '-', '_', '.', '/' or ':'",
                crate::core::numbers::counted(chars as u64, "character")
            ))
        }
    }
}

/// What has been observed of one model on one task: the good and bad
/// weight, as of `at_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Posterior {
    pub good: f64,
    pub bad: f64,
    /// Feedback events taken in (not decayed), for people.
    pub events: u64,
    pub at_ms: i64,
}

/// How much of what was observed at `from_ms` still counts at `to_ms`.
pub fn decay(from_ms: i64, to_ms: i64, half_life_ms: i64) -> f64 {
    if half_life_ms <= 0 || to_ms <= from_ms {
        return 1.0;
    }
    0.5f64.powf((to_ms - from_ms) as f64 / half_life_ms as f64)
}

impl Posterior {
    /// As of `now_ms`: what was observed, decayed.
    pub fn at(&self, now_ms: i64, half_life_ms: i64) -> Posterior {
        let k = decay(self.at_ms, now_ms, half_life_ms);
        Posterior {
            good: self.good * k,
            bad: self.bad * k,
            events: self.events,
            at_ms: now_ms.max(self.at_ms),
        }
    }

    /// Takes in an event of `score` in [0, 1] with `weight`, at `now_ms`.
    pub fn add(&mut self, score: f64, weight: f64, now_ms: i64, half_life_ms: i64) {
        *self = self.at(now_ms, half_life_ms);
        let (s, w) = (score.clamp(0.0, 1.0), weight.max(0.0));
        self.good += s * w;
        self.bad += (1.0 - s) * w;
        self.events += 1;
    }

    /// Takes back an event of `score` and `weight` taken in at `then_ms`
    /// (its feedback was replaced), as much of it as still counts.
    pub fn remove(&mut self, score: f64, weight: f64, then_ms: i64, now_ms: i64, hl: i64) {
        *self = self.at(now_ms, hl);
        let k = decay(then_ms, now_ms, hl);
        let (s, w) = (score.clamp(0.0, 1.0), weight.max(0.0));
        self.good = (self.good - s * w * k).max(0.0);
        self.bad = (self.bad - (1.0 - s) * w * k).max(0.0);
        self.events = self.events.saturating_sub(1);
    }

    /// A sum of posteriors with the term `old` (if any) replaced by `new`,
    /// all brought to the latest time among them.
    pub fn replaced(&self, old: Option<&Posterior>, new: &Posterior, hl: i64) -> Posterior {
        let now = self
            .at_ms
            .max(new.at_ms)
            .max(old.map_or(i64::MIN, |o| o.at_ms));
        let mut sum = self.at(now, hl).less(old.map(|o| o.at(now, hl)).as_ref());
        let new = new.at(now, hl);
        sum.good += new.good;
        sum.bad += new.bad;
        sum.events += new.events;
        sum
    }

    /// This sum without the term `part` (as of the same time), never below
    /// nothing.
    pub fn less(&self, part: Option<&Posterior>) -> Posterior {
        let Some(part) = part else { return *self };
        Posterior {
            good: (self.good - part.good).max(0.0),
            bad: (self.bad - part.bad).max(0.0),
            events: self.events.saturating_sub(part.events),
            at_ms: self.at_ms,
        }
    }

    /// The weight observed (decayed), as of when it was last brought up to date.
    pub fn weight(&self) -> f64 {
        self.good + self.bad
    }

    /// How many observations `prior` is worth against this feedback:
    /// [`PSEUDO`], unless the feedback's share of good stands more than
    /// [`CONFLICT_Z`] standard errors from it (the error of that many
    /// answers, were the prior right, taken as at least 0.05 from 0 or 1);
    /// then `PSEUDO × (CONFLICT_Z / z)²`.
    pub fn prior_weight(&self, prior: f64) -> f64 {
        let n = self.good + self.bad;
        if n < CONFLICT_MIN {
            return PSEUDO;
        }
        let p = prior.clamp(0.0, 1.0);
        let q = p.clamp(0.05, 0.95);
        let z = (self.good / n - p).abs() / (q * (1.0 - q) / n).sqrt();
        match z > CONFLICT_Z {
            true => PSEUDO * (CONFLICT_Z / z).powi(2),
            false => PSEUDO,
        }
    }

    /// The posterior mean of quality, from `prior`: what the score uses.
    pub fn mean(&self, prior: f64) -> f64 {
        let p = prior.clamp(0.0, 1.0);
        let w = self.prior_weight(p);
        (p * w + self.good) / (w + self.good + self.bad)
    }

    /// The posterior's standard deviation, from `prior`.
    pub fn sd(&self, prior: f64) -> f64 {
        let p = prior.clamp(0.0, 1.0);
        let w = self.prior_weight(p);
        let a = p * w + self.good;
        let b = (1.0 - p) * w + self.bad;
        let n = a + b;
        (a * b / (n * n * (n + 1.0))).sqrt()
    }
}

/// A feedback score as given: a number in [0, 1], or true (1) or false (0).
pub fn score_of(v: &serde_json::Value) -> Result<f64, String> {
    match v {
        serde_json::Value::Bool(b) => Ok(if *b { 1.0 } else { 0.0 }),
        serde_json::Value::Number(n) => match n.as_f64() {
            // `+ 0.0`: a negative zero is zero.
            Some(x) if (0.0..=1.0).contains(&x) => Ok(x + 0.0),
            _ => Err(format!("score {n} is outside 0..1")),
        },
        serde_json::Value::Null => Err("no score: give a number in 0..1, true or false".into()),
        other => Err(format!(
            "score must be a number in 0..1, true or false, not {}",
            match other {
                serde_json::Value::String(_) => "a string",
                serde_json::Value::Array(_) => "an array",
                _ => "an object",
            }
        )),
    }
}

/// The fields of a feedback object.
pub const FEEDBACK_FIELDS: &[&str] = &["request_id", "score", "weight"];
/// The fields of an outcome (`llmroute feedback --outcomes`).
pub const OUTCOME_FIELDS: &[&str] = &["task", "model", "score", "weight"];

/// Checks that `o` has no field but `known`: a misspelt `weight` would
/// otherwise count as 1, and a line of llmroute's own output (whose
/// `score` is the routing score) would be taken as a judgement.
pub fn only_fields(
    o: &serde_json::Map<String, serde_json::Value>,
    known: &[&str],
) -> Result<(), String> {
    let Some(field) = o.keys().find(|k| !known.contains(&k.as_str())) else {
        return Ok(());
    };
    // Quoted whole or not at all: a part of what was given (a key, given
    // by mistake) could not be told apart and blanked out.
    let shown = match field.chars().count() <= 64 {
        true => format!(" {field:?}"),
        false => String::new(),
    };
    let list = known
        .iter()
        .map(|k| format!("\"{k}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let hint = match o.contains_key("attempts") {
        true => " (this looks like a line of llmroute's output: its score is the routing score, not a judgement)",
        false => "",
    };
    Err(format!(
        "unknown field{shown}: it may have only {list}{hint}"
    ))
}

/// A feedback weight as given: absent for 1, else a number in (0, 100].
pub fn weight_of(v: Option<&serde_json::Value>) -> Result<f64, String> {
    match v {
        None | Some(serde_json::Value::Null) => Ok(1.0),
        Some(w) => match w.as_f64() {
            Some(x) if x > 0.0 && x <= 100.0 => Ok(x),
            _ => Err(format!("weight {w} must be a number above 0, at most 100")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    #[test]
    fn the_prior_holds_until_outcomes_outweigh_it() {
        let p = Posterior::default();
        assert!((p.mean(0.8) - 0.8).abs() < 1e-12);
        let mut p = Posterior::default();
        for _ in 0..2 {
            p.add(0.0, 1.0, 0, HALF_LIFE_MS);
        }
        // Half as much failure as the prior's weight: a third of the way
        // from 0.8 to 0.
        assert!((p.mean(0.8) - 3.2 / 6.0).abs() < 1e-12);
        for _ in 0..98 {
            p.add(0.0, 1.0, 0, HALF_LIFE_MS);
        }
        assert!(p.mean(0.8) < 0.04);
        assert_eq!(p.events, 100);
        assert!(p.sd(0.8) < Posterior::default().sd(0.8));
    }

    #[test]
    fn feedback_far_from_the_start_weighs_the_start_less() {
        let perfect = |n: usize| {
            let mut p = Posterior::default();
            for _ in 0..n {
                p.add(1.0, 1.0, 0, HALF_LIFE_MS);
            }
            p
        };
        // Within 3 standard errors of the start: its whole weight.
        // 3 good of 3 from 0.6: z = 0.4 / √(0.24 / 3) = 1.41.
        assert_eq!(perfect(3).prior_weight(0.6), PSEUDO);
        assert!((perfect(3).mean(0.6) - 5.4 / 7.0).abs() < 1e-12);
        // A model its other tasks put at 0.26, right 15 times of 15 here:
        // z = 0.74 / √(0.26 × 0.74 / 15) = 6.53, so the start is worth
        // 4 × (3 / 6.53)² = 0.84 answers, and the mean 0.96 (0.80 at the
        // whole weight).
        let p = perfect(15);
        let z: f64 = 0.74 / (0.26f64 * 0.74 / 15.0).sqrt();
        let w = PSEUDO * (CONFLICT_Z / z).powi(2);
        assert!((p.prior_weight(0.26) - w).abs() < 1e-12);
        assert!((p.mean(0.26) - (0.26 * w + 15.0) / (w + 15.0)).abs() < 1e-12);
        assert!(p.mean(0.26) > 0.96, "{}", p.mean(0.26));
        // One or two answers judge no conflict, however far.
        assert_eq!(perfect(2).prior_weight(0.01), PSEUDO);
        // A start at 0 or 1 is taken as 0.05 from it for the error: one
        // wrong answer in five of a model started at 1 is no conflict.
        let mut p = perfect(4);
        p.add(0.0, 1.0, 0, HALF_LIFE_MS);
        assert_eq!(p.prior_weight(1.0), PSEUDO);
    }

    #[test]
    fn what_was_observed_decays_with_the_half_life() {
        let mut p = Posterior::default();
        for _ in 0..8 {
            p.add(1.0, 1.0, 0, DAY);
        }
        let later = p.at(DAY, DAY);
        assert!((later.good - 4.0).abs() < 1e-9, "half after a half-life");
        let much_later = p.at(30 * DAY, DAY);
        assert!(
            (much_later.mean(0.3) - 0.3).abs() < 1e-6,
            "back to the prior"
        );
        // A clock going back decays nothing.
        assert_eq!(p.at(-5, DAY).good, 8.0);
    }

    #[test]
    fn a_replaced_event_is_taken_back_as_much_as_it_still_counts() {
        let mut p = Posterior::default();
        p.add(1.0, 2.0, 0, DAY);
        p.add(0.0, 1.0, DAY, DAY);
        p.remove(1.0, 2.0, 0, DAY, DAY);
        assert!(p.good.abs() < 1e-12 && (p.bad - 1.0).abs() < 1e-12);
        assert_eq!(p.events, 1);
        p.remove(1.0, 50.0, DAY, DAY, DAY);
        assert_eq!(p.good, 0.0, "never below nothing");
    }

    #[test]
    fn scores_weights_and_tasks_are_checked() {
        use serde_json::json;
        assert_eq!(score_of(&json!(true)), Ok(1.0));
        assert_eq!(score_of(&json!(false)), Ok(0.0));
        assert_eq!(score_of(&json!(0.25)), Ok(0.25));
        for bad in [json!(1.5), json!(-0.1), json!("1"), json!(null), json!([1])] {
            assert!(score_of(&bad).is_err(), "{bad}");
        }
        assert_eq!(weight_of(None), Ok(1.0));
        assert!(weight_of(Some(&json!(0))).is_err());
        assert!(weight_of(Some(&json!(1000))).is_err());
        let fields = |v: serde_json::Value| only_fields(v.as_object().unwrap(), FEEDBACK_FIELDS);
        assert!(fields(json!({"request_id": "r", "score": 1, "weight": 2})).is_ok());
        let e = fields(json!({"request_id": "r", "score": 1, "wieght": 2})).unwrap_err();
        assert!(e.contains("\"wieght\"") && !e.contains("output"), "{e}");
        let e = fields(json!({"request_id": "r", "score": 1, "attempts": []})).unwrap_err();
        assert!(e.contains("output"), "{e}");
        assert!(check_task("mmlu/anatomy").is_ok() && check_task("sql:gen-2").is_ok());
        for bad in ["", "a b", &"x".repeat(65), "é"] {
            assert!(check_task(bad).is_err(), "{bad}");
        }
        assert!(check_task("é").unwrap_err().contains("(1 character)"));
        assert!(check_task("a b").unwrap_err().contains("(3 characters)"));
    }
}
