//! Each task's requests, counted: exploration takes its turns by them
//! ([`crate::core::explore::choose`]). Counted over all requests, the
//! exploring turns of a pipeline whose steps repeat in a fixed order (tasks
//! a, b, c, d, a, ...) would fall on one of its tasks only, and the others
//! would never be explored.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::core::learned::{OTHER_TASK, TASKS_MAX};

/// Requests counted per task; past [`TASKS_MAX`] tasks, new ones count
/// together, as their quality is learned together.
#[derive(Default)]
pub struct Turns {
    counts: Mutex<HashMap<String, u64>>,
}

impl Turns {
    /// The number of this request among its task's, from 1.
    pub fn next(&self, task: &str) -> u64 {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = counts.get_mut(task) {
            *n += 1;
            return *n;
        }
        let task = match counts.len() > TASKS_MAX {
            true => OTHER_TASK,
            false => task,
        };
        let n = counts.entry(task.to_string()).or_insert(0);
        *n += 1;
        *n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_task_counts_its_own_requests() {
        let turns = Turns::default();
        let seen: Vec<u64> = ["a", "b", "a", "c", "a", "b"]
            .iter()
            .map(|t| turns.next(t))
            .collect();
        assert_eq!(seen, [1, 1, 2, 1, 3, 2]);
    }

    #[test]
    fn tasks_past_the_bound_count_together() {
        let turns = Turns::default();
        for i in 0..=TASKS_MAX {
            turns.next(&format!("t{i}"));
        }
        assert_eq!(turns.next("new-1"), 1);
        assert_eq!(turns.next("new-2"), 2, "counted as {OTHER_TASK}");
        assert_eq!(turns.next("t3"), 2, "a known task keeps its count");
        assert!(turns.counts.lock().unwrap().len() <= TASKS_MAX + 2);
    }
}
