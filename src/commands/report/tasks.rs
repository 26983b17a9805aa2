//! The report per task (`report --by task`): each task's requests by the
//! model that answered, with the feedback they got and what the router
//! learned of that model on that task.

use rusqlite::Connection;
use serde::Serialize;

use super::Window;
use crate::core::numbers;

/// One (task, model) in the window.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TaskReport {
    pub task: String,
    pub model: String,
    /// Requests of the task this model answered (cache hits included).
    pub answered: i64,
    #[serde(serialize_with = "numbers::serialize_usd")]
    pub cost_usd: f64,
    /// Answers of the model (not the cache's) whose cost is unknown, left
    /// out of `cost_usd`.
    pub cost_unknown_lines: i64,
    /// Feedback given in the window on those answers, and its mean score.
    pub feedback: i64,
    pub mean_score: Option<f64>,
    /// What the router has learned of the model on the task, from all
    /// feedback (decayed): the share of good outcomes, and the events.
    pub learned_good_share: Option<f64>,
    pub learned_events: i64,
}

/// Every (task, model) with answers or feedback in the window, or
/// anything learned (outcomes of an evaluation teach without answers);
/// only `models`' when some are asked for (`report --model`).
pub fn load(
    conn: &Connection,
    window: &Window,
    models: &[String],
) -> rusqlite::Result<Vec<TaskReport>> {
    let from = window.from_ms.unwrap_or(i64::MIN);
    // A task past the bound of tasks learned is learned under `other`,
    // where its feedback goes: its answers are counted there too.
    let mut stmt = conn.prepare(
        "WITH known AS (SELECT DISTINCT task FROM quality WHERE task <> ?3),
         named AS (
             SELECT coalesce(task, 'default') AS task, model, cost_usd, cached
             FROM requests WHERE ok AND model IS NOT NULL AND ts >= ?1),
         answered AS (
             SELECT CASE WHEN (SELECT count(*) FROM known) >= ?2 AND task <> ?3
                              AND task NOT IN (SELECT task FROM known) THEN ?3 ELSE task END AS task,
                    model, count(*) AS n, total(cost_usd) AS cost,
                    total(cost_usd IS NULL AND NOT cached) AS unknown
             FROM named GROUP BY 1, 2),
         judged AS (
             SELECT task, model, count(*) AS n, avg(score) AS mean
             FROM feedback WHERE at >= ?1 GROUP BY 1, 2),
         learned AS (
             SELECT task, model, total(good) AS good, total(bad) AS bad, total(events) AS events
             FROM quality GROUP BY 1, 2),
         pairs AS (SELECT task, model FROM answered UNION SELECT task, model FROM judged
                   UNION SELECT task, model FROM learned WHERE events > 0)
         SELECT p.task, p.model, coalesce(a.n, 0), coalesce(a.cost, 0), coalesce(j.n, 0), j.mean,
                CASE WHEN l.good + l.bad > 0 THEN l.good / (l.good + l.bad) END, coalesce(l.events, 0),
                coalesce(a.unknown, 0)
         FROM pairs p
         LEFT JOIN answered a ON a.task = p.task AND a.model = p.model
         LEFT JOIN judged j ON j.task = p.task AND j.model = p.model
         LEFT JOIN learned l ON l.task = p.task AND l.model = p.model
         ORDER BY p.task, coalesce(a.n, 0) DESC, p.model",
    )?;
    let bound = crate::core::learned::TASKS_MAX as i64;
    let other = crate::core::learned::OTHER_TASK;
    let rows = stmt.query_map(rusqlite::params![from, bound, other], |r| {
        Ok(TaskReport {
            task: r.get(0)?,
            model: r.get(1)?,
            answered: r.get(2)?,
            cost_usd: r.get(3)?,
            feedback: r.get(4)?,
            mean_score: r.get(5)?,
            learned_good_share: r.get(6)?,
            learned_events: r.get::<_, f64>(7)? as i64,
            cost_unknown_lines: r.get::<_, f64>(8)? as i64,
        })
    })?;
    let mut rows = rows.collect::<rusqlite::Result<Vec<_>>>()?;
    if !models.is_empty() {
        rows.retain(|r| models.contains(&r.model));
    }
    Ok(rows)
}

/// The rows as a table for people.
pub fn render(rows: &[TaskReport], window: &str) -> String {
    if rows.is_empty() {
        return format!(
            "no answers, feedback or learned quality {}\n",
            super::within(window)
        );
    }
    let header = [
        "task",
        "model",
        "answered",
        "cost",
        "feedback",
        "mean score",
        "learned",
    ];
    let rows = rows.iter().map(|r| {
        let learned = match r.learned_good_share {
            Some(g) if r.learned_events > 0 => {
                format!(
                    "{:.0}% good of {}",
                    g * 100.0,
                    numbers::counted(r.learned_events.max(0) as u64, "event")
                )
            }
            _ => "prior".to_string(),
        };
        [
            r.task.clone(),
            r.model.clone(),
            r.answered.to_string(),
            super::table::model_cost(r.cost_usd, r.cost_unknown_lines),
            r.feedback.to_string(),
            r.mean_score.map_or("–".to_string(), |m| format!("{m:.2}")),
            learned,
        ]
    });
    super::by_table("task", window, header, rows)
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{all_time, request, store_of};
    use super::*;
    use crate::engine::ports::RequestRow;

    fn on(task: &str, model: &str) -> RequestRow {
        RequestRow {
            task: Some(task.into()),
            ..request(Some(model), None, true, 0.5)
        }
    }

    #[test]
    fn models_asked_for_keep_only_their_rows() {
        let s = store_of([on("t", "a"), on("t", "b"), on("u", "b")]);
        let rows = load(s.conn(), &all_time(), &["b".to_string()]).unwrap();
        let pairs: Vec<_> = rows
            .iter()
            .map(|r| (r.task.as_str(), r.model.as_str()))
            .collect();
        assert_eq!(pairs, [("t", "b"), ("u", "b")]);
        assert_eq!(load(s.conn(), &all_time(), &[]).unwrap().len(), 3);
    }

    #[test]
    fn a_cost_not_known_is_never_shown_as_0() {
        let unknown = RequestRow {
            cost_usd: None,
            ..on("t", "a")
        };
        let s = store_of([unknown.clone(), unknown]);
        let rows = load(s.conn(), &all_time(), &[]).unwrap();
        assert_eq!((rows[0].cost_unknown_lines, rows[0].cost_usd), (2, 0.0));
        let text = render(&rows, "all time");
        let row = text.lines().find(|l| l.contains(" a ")).unwrap();
        assert!(row.contains('?') && !row.contains("$0"), "{text}");
    }

    #[test]
    fn answers_of_a_task_past_the_bound_are_counted_where_it_is_learned() {
        let s = store_of([on("t1005", "a"), on("t3", "a")]);
        for i in 0..crate::core::learned::TASKS_MAX {
            s.conn()
                .execute(
                    "INSERT INTO quality (upstream, task, model, good, bad, events, at)
                     VALUES ('u', ?1, 'a', 1, 0, 1, 0)",
                    [format!("t{i}")],
                )
                .unwrap();
        }
        let rows = load(s.conn(), &all_time(), &[]).unwrap();
        let answered = |task: &str| {
            rows.iter()
                .find(|r| r.task == task)
                .map_or(0, |r| r.answered)
        };
        assert_eq!(answered("t1005"), 0, "past the bound");
        assert_eq!(answered("other"), 1);
        assert_eq!(answered("t3"), 1, "a task learned keeps its name");
    }

    #[test]
    fn what_was_learned_from_outcomes_alone_is_shown() {
        let s = store_of([on("t", "a")]);
        s.conn()
            .execute(
                "INSERT INTO quality (upstream, task, model, good, bad, events, at)
                 VALUES ('u', 'sql', 'b', 3, 1, 4, 0)",
                [],
            )
            .unwrap();
        let rows = load(s.conn(), &all_time(), &[]).unwrap();
        let sql = rows
            .iter()
            .find(|r| r.task == "sql")
            .expect("the learned row");
        assert_eq!((sql.answered, sql.learned_events), (0, 4));
        let text = render(&rows, "all time");
        assert!(text.contains("75% good of 4 events"), "{text}");
        let one = [TaskReport {
            learned_events: 1,
            learned_good_share: Some(1.0),
            ..sql.clone()
        }];
        let text = render(&one, "all time");
        assert!(
            text.contains("of 1 event") && !text.contains("1 events"),
            "{text}"
        );
    }
}
