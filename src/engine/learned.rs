//! Quality learned from outcomes, as the router holds it: a posterior per
//! (task, model) in memory, read by every decision and brought up to date
//! by feedback (this process's, and what other processes wrote to the
//! store or Redis). See [`crate::core::learned`] for the arithmetic.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use crate::core::health::{HealthView, ModelStat, State};
use crate::core::learned::{Posterior, OTHER_TASK, TASKS_MAX};

/// The posteriors of one task, by model.
type ByModel = HashMap<Arc<str>, Posterior>;

/// The posteriors of every (task, model) outcomes spoke of.
pub struct QualityBook {
    /// By task, then by model.
    tasks: RwLock<HashMap<Arc<str>, ByModel>>,
    /// By model, its posteriors on every task summed: what is known of it
    /// elsewhere is this less the task at hand.
    overall: RwLock<ByModel>,
    pub half_life_ms: i64,
    /// Events taken here (and in `tasks`) that Redis has not had yet, by
    /// the number [`Self::hold`] gave them.
    unshared: std::sync::Mutex<Unshared>,
}

/// An event the book holds that Redis has not: task, model, score,
/// weight, unix ms.
type Held = (Arc<str>, Arc<str>, f64, f64, i64);

/// Events the book holds that Redis has not, by number.
#[derive(Default)]
struct Unshared {
    next: u64,
    events: HashMap<u64, Held>,
    /// Of those, how many each (task, model) has shared since the watcher
    /// of Redis last asked ([`QualityBook::take_replayed`]).
    replayed: HashMap<(String, String), u64>,
}

impl QualityBook {
    pub fn new(half_life_ms: i64) -> QualityBook {
        QualityBook {
            tasks: RwLock::new(HashMap::new()),
            overall: RwLock::new(HashMap::new()),
            half_life_ms,
            unshared: Default::default(),
        }
    }

    /// The task `name` is learned under: itself, or [`OTHER_TASK`] once
    /// [`TASKS_MAX`] other tasks are known.
    pub fn bucket(&self, name: &str) -> Arc<str> {
        let tasks = self.tasks.read().unwrap_or_else(|e| e.into_inner());
        if let Some((k, _)) = tasks.get_key_value(name) {
            return k.clone();
        }
        if full(&tasks) {
            return OTHER_TASK.into();
        }
        name.into()
    }

    /// What outcomes said of `model` on `task`, decayed to `now_ms`.
    pub fn get(&self, task: &str, model: &str, now_ms: i64) -> Option<Posterior> {
        let tasks = self.tasks.read().unwrap_or_else(|e| e.into_inner());
        let p = tasks.get(task).or_else(|| {
            // A task past the bound learns under `other`.
            full(&tasks).then(|| tasks.get(OTHER_TASK)).flatten()
        })?;
        p.get(model).map(|p| p.at(now_ms, self.half_life_ms))
    }

    /// Sets what is known of `model` on `task` (read from the store or
    /// Redis, or after feedback there). A task past the bound is dropped,
    /// never put in place of what `other` holds: the store and Redis
    /// already learned it under `other`.
    pub fn set(&self, task: &str, model: &str, p: Posterior) {
        let bucket = self.bucket(task);
        if &*bucket != task {
            return;
        }
        let mut tasks = self.tasks.write().unwrap_or_else(|e| e.into_inner());
        let old = tasks.entry(bucket).or_default().insert(model.into(), p);
        let mut overall = self.overall.write().unwrap_or_else(|e| e.into_inner());
        let sum = overall.entry(model.into()).or_default();
        *sum = sum.replaced(old.as_ref(), &p, self.half_life_ms);
    }

    /// [`Self::set`] with what Redis answered to an event, unless the book
    /// holds more events of `model` on `task` than that: Redis lost them
    /// (emptied, or restarted without its data), and the watcher of the
    /// posteriors it shares puts them back before it reads them.
    pub fn set_shared(&self, task: &str, model: &str, p: Posterior) {
        let more = {
            let tasks = self.tasks.read().unwrap_or_else(|e| e.into_inner());
            tasks
                .get(task)
                .and_then(|m| m.get(model))
                .is_some_and(|held| held.events > p.events)
        };
        if !more {
            self.set(task, model, p);
        }
    }

    /// What outcomes said of `model` on every task, summed and decayed to
    /// `now_ms`: what is known of it elsewhere is this less the task's own
    /// posterior ([`Self::get`]).
    pub fn overall(&self, model: &str, now_ms: i64) -> Option<Posterior> {
        let overall = self.overall.read().unwrap_or_else(|e| e.into_inner());
        overall.get(model).map(|p| p.at(now_ms, self.half_life_ms))
    }

    /// Takes in one feedback event; returns the posterior after it.
    pub fn add(&self, task: &str, model: &str, score: f64, weight: f64, now_ms: i64) -> Posterior {
        let task = self.bucket(task);
        let mut tasks = self.tasks.write().unwrap_or_else(|e| e.into_inner());
        let p = tasks
            .entry(task)
            .or_default()
            .entry(model.into())
            .or_default();
        p.add(score, weight, now_ms, self.half_life_ms);
        let mut overall = self.overall.write().unwrap_or_else(|e| e.into_inner());
        let sum = overall.entry(model.into()).or_default();
        sum.add(score, weight, now_ms, self.half_life_ms);
        *p
    }

    /// Notes that an event the book took in (on `task` and `model`) has
    /// not reached Redis yet, to be shared later; its number, for
    /// [`Self::release`].
    pub fn hold(&self, task: &str, model: &str, (score, weight): (f64, f64), at_ms: i64) -> u64 {
        let task = self.bucket(task);
        let mut u = self.unshared.lock().unwrap_or_else(|e| e.into_inner());
        u.next += 1;
        let n = u.next;
        u.events
            .insert(n, (task, model.into(), score, weight, at_ms));
        n
    }

    /// Event `n` of [`Self::hold`] reached Redis (`shared`), or never will.
    pub fn release(&self, n: u64, shared: bool) {
        let mut u = self.unshared.lock().unwrap_or_else(|e| e.into_inner());
        if let (Some((task, model, ..)), true) = (u.events.remove(&n), shared) {
            *u.replayed
                .entry((task.to_string(), model.to_string()))
                .or_default() += 1;
        }
    }

    /// How many held events each (task, model) has shared since the last
    /// call: a field Redis holds fewer events of than were read there
    /// before, plus these, lost some.
    pub fn take_replayed(&self) -> HashMap<(String, String), u64> {
        let mut u = self.unshared.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut u.replayed)
    }

    /// [`Self::all`] without the events Redis has not had yet: what to put
    /// back where Redis lost what it had, since those events reach it on
    /// their own (put back with the rest, they would count twice).
    pub fn all_shared(&self, now_ms: i64) -> Vec<(String, String, Posterior)> {
        let mut all = self.all();
        let u = self.unshared.lock().unwrap_or_else(|e| e.into_inner());
        for (task, model, score, weight, at) in u.events.values() {
            // `all` is sorted by task and model.
            let at_field = all
                .binary_search_by(|(t, m, _)| (t.as_str(), m.as_str()).cmp(&(&**task, &**model)));
            if let Ok(i) = at_field {
                all[i]
                    .2
                    .remove(*score, *weight, *at, now_ms, self.half_life_ms);
            }
        }
        all.retain(|(_, _, p)| p.events > 0);
        all
    }

    /// Every (task, model) and its posterior, as of when each was last
    /// brought up to date.
    pub fn all(&self) -> Vec<(String, String, Posterior)> {
        let tasks = self.tasks.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<_> = tasks
            .iter()
            .flat_map(|(t, m)| m.iter().map(|(m, p)| (t.to_string(), m.to_string(), *p)))
            .collect();
        out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        out
    }
}

/// Whether [`TASKS_MAX`] tasks besides [`OTHER_TASK`] are known.
fn full(tasks: &HashMap<Arc<str>, ByModel>) -> bool {
    tasks.len() - usize::from(tasks.contains_key(OTHER_TASK)) >= TASKS_MAX
}

/// The health a decision sees, with learned quality beside it.
pub(super) struct Seen<'a> {
    pub health: &'a (dyn HealthView + Sync),
    pub book: &'a QualityBook,
    pub now_ms: i64,
}

impl HealthView for Seen<'_> {
    fn stat(&self, model: &str) -> Option<ModelStat> {
        self.health.stat(model)
    }
    fn learned(&self, task: &str, model: &str) -> Option<Posterior> {
        self.book.get(task, model, self.now_ms)
    }
    fn learned_overall(&self, model: &str) -> Option<Posterior> {
        self.book.overall(model, self.now_ms)
    }
    fn cooling_until(&self, model: &str) -> Option<Instant> {
        self.health.cooling_until(model)
    }
    fn open(&self, model: &str) -> bool {
        self.health.open(model)
    }
    fn probing(&self, model: &str) -> bool {
        self.health.probing(model)
    }
    fn hedge_delay_ms(&self, model: &str) -> Option<f64> {
        self.health.hedge_delay_ms(model)
    }
    fn improving(&self, model: &str) -> bool {
        self.health.improving(model)
    }
    fn pause_reason(&self, model: &str) -> Option<String> {
        self.health.pause_reason(model)
    }
    fn state(&self, model: &str, now: Instant) -> State {
        self.health.state(model, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_redis_has_not_had_is_left_out_of_what_is_put_back() {
        let book = QualityBook::new(0);
        book.add("t", "m", 1.0, 1.0, 0);
        book.add("t", "m", 0.0, 2.0, 0);
        let n = book.hold("t", "m", (0.0, 2.0), 0);
        book.add("u", "m", 1.0, 1.0, 0);
        let first = book.hold("u", "m", (1.0, 1.0), 0);
        let shared = book.all_shared(0);
        // `t`: its first event only; `u`: nothing Redis should be given.
        assert_eq!(shared.len(), 1, "{shared:?}");
        let (_, _, p) = &shared[0];
        assert_eq!((p.events, p.good, p.bad), (1, 1.0, 0.0));
        book.release(n, true);
        book.release(first, false);
        assert_eq!(book.all_shared(0), book.all());
        let replayed = book.take_replayed();
        assert_eq!(replayed.get(&("t".into(), "m".into())), Some(&1));
        assert_eq!(replayed.len(), 1, "one never shared is not counted");
        assert!(book.take_replayed().is_empty());
    }

    #[test]
    fn feedback_is_kept_per_task_and_model_and_tasks_stay_bounded() {
        let book = QualityBook::new(crate::core::learned::HALF_LIFE_MS);
        book.add("sql", "a", 0.0, 1.0, 0);
        book.add("tickets", "a", 1.0, 1.0, 0);
        assert!(book.get("sql", "a", 0).unwrap().mean(0.5) < 0.5);
        assert!(book.get("tickets", "a", 0).unwrap().mean(0.5) > 0.5);
        assert!(book.get("sql", "b", 0).is_none());
        for i in 0..TASKS_MAX + 10 {
            book.add(&format!("t{i}"), "a", 1.0, 1.0, 0);
        }
        assert!(book.tasks.read().unwrap().len() <= TASKS_MAX + 1);
        assert!(book.get("t-new", "a", 0).is_some(), "learned under other");
    }

    #[test]
    fn what_is_known_elsewhere_is_every_other_task_however_it_came() {
        let hl = crate::core::learned::HALF_LIFE_MS;
        let book = QualityBook::new(hl);
        let elsewhere = |book: &QualityBook, task: &str, model: &str, now: i64| {
            let here = book.get(task, model, now);
            book.overall(model, now).map(|o| o.less(here.as_ref()))
        };
        assert!(elsewhere(&book, "sql", "a", 0).is_none());
        book.add("sql", "a", 1.0, 1.0, 0);
        book.add("tickets", "a", 0.0, 1.0, 0);
        book.add("tickets", "a", 0.0, 1.0, 0);
        book.add("tickets", "b", 1.0, 1.0, 0);
        let e = elsewhere(&book, "sql", "a", 0).unwrap();
        assert_eq!((e.good, e.bad, e.events), (0.0, 2.0, 2));
        let e = elsewhere(&book, "tickets", "a", 0).unwrap();
        assert_eq!((e.good, e.bad, e.events), (1.0, 0.0, 1));
        // Read from the store or Redis: a posterior replaces the one held,
        // and the sum follows.
        let p = Posterior {
            good: 5.0,
            bad: 0.0,
            events: 5,
            at_ms: 0,
        };
        book.set("tickets", "a", p);
        book.set("tickets", "a", p);
        let e = elsewhere(&book, "sql", "a", 0).unwrap();
        assert_eq!((e.good, e.bad, e.events), (5.0, 0.0, 5));
        // Both decay: after a half-life, half of each.
        let e = elsewhere(&book, "sql", "a", hl).unwrap();
        assert!((e.good - 2.5).abs() < 1e-9 && e.bad.abs() < 1e-9, "{e:?}");
        // A model never judged is known nowhere.
        assert!(elsewhere(&book, "sql", "c", 0).is_none());
    }

    #[test]
    fn loading_a_full_store_keeps_other_as_it_was() {
        let book = QualityBook::new(crate::core::learned::HALF_LIFE_MS);
        let p = |good: f64, bad: f64| Posterior {
            good,
            bad,
            events: 1,
            at_ms: 0,
        };
        // As a store holds them, sorted: `other` among the tasks.
        let mut rows: Vec<(String, Posterior)> = (0..TASKS_MAX)
            .map(|i| (format!("task{i:04}"), p(1.0, 1.0)))
            .collect();
        rows.push((OTHER_TASK.to_string(), p(0.0, 30.0)));
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        for (t, q) in &rows {
            book.set(t, "a", *q);
        }
        assert_eq!(book.get(OTHER_TASK, "a", 0).unwrap().bad, 30.0);
        assert_eq!(book.get("task0999", "a", 0).unwrap().bad, 1.0);
        assert_eq!(book.get("new7", "a", 0).unwrap().bad, 30.0, "under other");
        // A task past the bound, read from elsewhere, does not replace it.
        book.set("late", "a", p(5.0, 0.0));
        assert_eq!(book.get(OTHER_TASK, "a", 0).unwrap().bad, 30.0);
    }
}
