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
    /// Feedback given in the window on those answers, and its mean score.
    pub feedback: i64,
    pub mean_score: Option<f64>,
    /// What the router has learned of the model on the task, from all
    /// feedback (decayed): the share of good outcomes, and the events.
    pub learned_good_share: Option<f64>,
    pub learned_events: i64,
}

/// Every (task, model) with answers or feedback in the window.
pub fn load(conn: &Connection, window: &Window) -> rusqlite::Result<Vec<TaskReport>> {
    let from = window.from_ms.unwrap_or(i64::MIN);
    let mut stmt = conn.prepare(
        "WITH answered AS (
             SELECT coalesce(task, 'default') AS task, model, count(*) AS n, total(cost_usd) AS cost
             FROM requests WHERE ok AND model IS NOT NULL AND ts >= ?1 GROUP BY 1, 2),
         judged AS (
             SELECT task, model, count(*) AS n, avg(score) AS mean
             FROM feedback WHERE at >= ?1 GROUP BY 1, 2),
         learned AS (
             SELECT task, model, total(good) AS good, total(bad) AS bad, total(events) AS events
             FROM quality GROUP BY 1, 2),
         pairs AS (SELECT task, model FROM answered UNION SELECT task, model FROM judged)
         SELECT p.task, p.model, coalesce(a.n, 0), coalesce(a.cost, 0), coalesce(j.n, 0), j.mean,
                CASE WHEN l.good + l.bad > 0 THEN l.good / (l.good + l.bad) END, coalesce(l.events, 0)
         FROM pairs p
         LEFT JOIN answered a ON a.task = p.task AND a.model = p.model
         LEFT JOIN judged j ON j.task = p.task AND j.model = p.model
         LEFT JOIN learned l ON l.task = p.task AND l.model = p.model
         ORDER BY p.task, coalesce(a.n, 0) DESC, p.model",
    )?;
    let rows = stmt.query_map([from], |r| {
        Ok(TaskReport {
            task: r.get(0)?,
            model: r.get(1)?,
            answered: r.get(2)?,
            cost_usd: r.get(3)?,
            feedback: r.get(4)?,
            mean_score: r.get(5)?,
            learned_good_share: r.get(6)?,
            learned_events: r.get::<_, f64>(7)? as i64,
        })
    })?;
    rows.collect()
}

/// The rows as a table for people.
pub fn render(rows: &[TaskReport], window: &str) -> String {
    if rows.is_empty() {
        return format!("no answers with a task in the {window}\n");
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
                format!("{:.0}% good of {} events", g * 100.0, r.learned_events)
            }
            _ => "prior".to_string(),
        };
        [
            r.task.clone(),
            r.model.clone(),
            r.answered.to_string(),
            numbers::usd(r.cost_usd),
            r.feedback.to_string(),
            r.mean_score.map_or("–".to_string(), |m| format!("{m:.2}")),
            learned,
        ]
    });
    super::by_table("task", window, header, rows)
}
