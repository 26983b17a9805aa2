//! Feedback and learned quality in the store: each request's feedback
//! (one per request id; a new one replaces the old), and the posterior
//! per upstream, task and model it feeds. See [`crate::core::learned`].

use rusqlite::{params, OptionalExtension};

use super::{Store, StoreError};
use crate::core::learned::{Posterior, OTHER_TASK, TASKS_MAX};

/// One feedback event on a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Feedback {
    pub rid: String,
    pub score: f64,
    pub weight: f64,
}

/// How the reason feedback was not taken begins when its request is not
/// known (or not the judge's).
pub const UNKNOWN: &str = "no request with id";

/// Whose requests feedback may judge.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Judge<'a> {
    /// Any request on the store (the `feedback` command, run by its owner).
    Any,
    /// Only requests made with this key (`None`: those made without one).
    Key(Option<&'a str>),
}

/// What a batch of feedback taught so far, so that each line does not
/// read again what an earlier line of the same transaction wrote: the
/// posteriors written. Good for one transaction only (another process may write
/// between two).
///
/// A posterior is written to the store when the batch first teaches it
/// (so that the store knows its task), and once more by
/// [`Store::keep_taught`] if later lines moved it: a batch writes each
/// posterior at most twice, not once a line.
#[derive(Debug, Default)]
pub struct Taught {
    /// By upstream and task, then model, with whether it moved since it
    /// was last written; a task here is learned under its own name.
    posteriors: std::collections::HashMap<
        (String, String),
        std::collections::HashMap<String, (Posterior, bool)>,
    >,
}

/// What one feedback event did: the (task, model) it taught, and its
/// posterior after it.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// The upstream that answered the request (whose quality it taught).
    pub upstream: String,
    /// The name of the client key the request came with.
    pub key: Option<String>,
    pub task: String,
    pub model: String,
    /// It replaced earlier feedback on the same request.
    pub replaced: bool,
    /// The replaced feedback's score, weight and unix ms.
    pub replaced_event: Option<(f64, f64, i64)>,
    pub posterior: Posterior,
}

impl Store {
    /// Every posterior of this store's upstream: (task, model, posterior).
    pub fn quality(&self) -> Result<Vec<(String, String, Posterior)>, StoreError> {
        self.quality_since(i64::MIN)
    }

    /// The posteriors of this store's upstream brought up to date at or
    /// after `since_ms`.
    pub fn quality_since(
        &self,
        since_ms: i64,
    ) -> Result<Vec<(String, String, Posterior)>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT task, model, good, bad, events, at FROM quality WHERE upstream = ?1 AND at >= ?2",
        )?;
        let rows = stmt.query_map(params![&self.upstream, since_ms], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                Posterior {
                    good: r.get(2)?,
                    bad: r.get(3)?,
                    events: r.get::<_, i64>(4)?.max(0) as u64,
                    at_ms: r.get(5)?,
                },
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The posterior of (`task`, `model`) on upstream `up`, from `taught`
    /// when this batch wrote it.
    fn posterior_in(
        &self,
        (up, task, model): (&str, &str, &str),
        taught: &Taught,
    ) -> Result<Option<Posterior>, StoreError> {
        let written = taught
            .posteriors
            .get(&(up.to_string(), task.to_string()))
            .and_then(|m| m.get(model));
        match written {
            Some((p, _)) => Ok(Some(*p)),
            None => self.posterior(up, task, model),
        }
    }

    /// Keeps a posterior in `taught`, and writes it when the batch had
    /// not taught it before; [`Self::keep_taught`] writes the rest.
    fn put_posterior_in(
        &self,
        (up, task, model): (&str, &str, &str),
        p: &Posterior,
        taught: &mut Taught,
    ) -> Result<(), StoreError> {
        let models = taught
            .posteriors
            .entry((up.to_string(), task.to_string()))
            .or_default();
        match models.get_mut(model) {
            Some(kept) => *kept = (*p, true),
            None => {
                self.put_posterior(up, task, model, p)?;
                models.insert(model.to_string(), (*p, false));
            }
        }
        Ok(())
    }

    /// Writes what a batch taught that is not written yet. Call before the
    /// batch's transaction commits.
    pub fn keep_taught(&self, mut taught: Taught) -> Result<(), StoreError> {
        for ((up, task), models) in &mut taught.posteriors {
            for (model, (p, moved)) in models {
                if std::mem::take(moved) {
                    self.put_posterior(up, task, model, p)?;
                }
            }
        }
        Ok(())
    }

    /// [`Self::task_bucket`], without a query for a task this batch wrote.
    fn task_bucket_in(&self, up: &str, task: &str, taught: &Taught) -> Result<String, StoreError> {
        match taught
            .posteriors
            .contains_key(&(up.to_string(), task.to_string()))
        {
            true => Ok(task.to_string()),
            false => self.task_bucket(up, task),
        }
    }

    fn posterior(
        &self,
        up: &str,
        task: &str,
        model: &str,
    ) -> Result<Option<Posterior>, StoreError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT good, bad, events, at FROM quality WHERE upstream = ?1 AND task = ?2 AND model = ?3",
            )?
            .query_row(params![up, task, model], |r| {
                Ok(Posterior {
                    good: r.get(0)?,
                    bad: r.get(1)?,
                    events: r.get::<_, i64>(2)?.max(0) as u64,
                    at_ms: r.get(3)?,
                })
            })
            .optional()?)
    }

    fn put_posterior(
        &self,
        up: &str,
        task: &str,
        model: &str,
        p: &Posterior,
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO quality (upstream, task, model, good, bad, events, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                up,
                task,
                model,
                p.good,
                p.bad,
                i64::try_from(p.events).unwrap_or(i64::MAX),
                p.at_ms
            ])?;
        Ok(())
    }

    /// The task `task` is learned under on upstream `up`: itself, or
    /// [`OTHER_TASK`] once [`TASKS_MAX`] others are known.
    pub fn task_bucket(&self, up: &str, task: &str) -> Result<String, StoreError> {
        let known: bool = self
            .conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM quality WHERE upstream = ?1 AND task = ?2)",
            )?
            .query_row(params![up, task], |r| r.get(0))?;
        if known {
            return Ok(task.to_string());
        }
        let tasks: i64 = self
            .conn
            .prepare_cached(
                "SELECT count(DISTINCT task) FROM quality WHERE upstream = ?1 AND task != ?2",
            )?
            .query_row(params![up, OTHER_TASK], |r| r.get(0))?;
        Ok(
            match usize::try_from(tasks).unwrap_or(usize::MAX) >= TASKS_MAX {
                true => OTHER_TASK.to_string(),
                false => task.to_string(),
            },
        )
    }

    /// Takes in an outcome of `model` on `task`, not tied to a request (an
    /// evaluation the user ran); returns the posterior after it.
    pub fn add_outcome(
        &self,
        outcome: (&str, &str),
        scored: (f64, f64),
        now_ms: i64,
        half_life_ms: i64,
    ) -> Result<(String, Posterior), StoreError> {
        let mut taught = Taught::default();
        let taken = self.add_outcome_in(outcome, scored, (now_ms, half_life_ms), &mut taught)?;
        self.keep_taught(taught)?;
        Ok(taken)
    }

    /// [`Self::add_outcome`] as one of a batch, in one transaction.
    pub fn add_outcome_in(
        &self,
        (task, model): (&str, &str),
        (score, weight): (f64, f64),
        (now_ms, half_life_ms): (i64, i64),
        taught: &mut Taught,
    ) -> Result<(String, Posterior), StoreError> {
        let up = self.upstream.clone();
        let task = self.task_bucket_in(&up, task, taught)?;
        let mut p = self
            .posterior_in((&up, &task, model), taught)?
            .unwrap_or_default();
        p.add(score, weight, now_ms, half_life_ms);
        self.put_posterior_in((&up, &task, model), &p, taught)?;
        Ok((task, p))
    }

    /// Takes in feedback on one request, as `judge` may give it: the
    /// request's answer's model (a cached answer's: the model that made
    /// it) learns on the request's task. Err: why it was not taken, in
    /// words for the one who sent it. Call inside a transaction for speed.
    pub fn apply_feedback(
        &self,
        f: &Feedback,
        judge: Judge<'_>,
        now_ms: i64,
        half_life_ms: i64,
    ) -> Result<Result<Applied, String>, StoreError> {
        let mut taught = Taught::default();
        let taken = self.apply_feedback_in(f, judge, (now_ms, half_life_ms), &mut taught)?;
        self.keep_taught(taught)?;
        Ok(taken)
    }

    /// [`Self::apply_feedback`] as one of a batch, in one transaction.
    ///
    /// Feedback is kept one per key and request id. It judges the latest
    /// request with that id the judge may see; earlier feedback on the same
    /// request is replaced (taken back from its posterior), while feedback
    /// on an earlier request that had the same id stays as it was.
    pub fn apply_feedback_in(
        &self,
        f: &Feedback,
        judge: Judge<'_>,
        (now_ms, half_life_ms): (i64, i64),
        taught: &mut Taught,
    ) -> Result<Result<Applied, String>, StoreError> {
        let Some(req) = self.judged(&f.rid, judge)? else {
            return Ok(Err(format!("{UNKNOWN} {} here", shown(&f.rid))));
        };
        let Some(model) = req.model else {
            return Ok(Err(format!(
                "request {} has no answer to judge: it failed",
                shown(&f.rid)
            )));
        };
        let up = req.upstream.unwrap_or_else(|| self.upstream.clone());
        let task = req
            .task
            .unwrap_or_else(|| crate::core::learned::DEFAULT_TASK.to_string());
        let task = self.task_bucket_in(&up, &task, taught)?;
        let key_name = req.key.clone();
        let key = req.key.unwrap_or_default();
        let mut p = self
            .posterior_in((&up, &task, &model), taught)?
            .unwrap_or_default();
        let row = params![key, f.rid, req.id, up, task, model, f.score, f.weight, now_ms];
        // Most feedback is a request's first: kept at once, with nothing
        // to take back.
        let first = self
            .conn
            .prepare_cached(
                "INSERT INTO feedback
                 (key_name, rid, request, upstream, task, model, score, weight, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (key_name, rid) DO NOTHING",
            )?
            .execute(row)?
            == 1;
        // Earlier feedback on this very request is replaced; on an earlier
        // request that had the same id, it stands.
        let old: Option<(f64, f64, i64)> = match first {
            true => None,
            false => self.replace_feedback(row)?,
        };
        if let Some((score, weight, at)) = old {
            p.remove(score, weight, at, now_ms, half_life_ms);
        }
        p.add(f.score, f.weight, now_ms, half_life_ms);
        self.put_posterior_in((&up, &task, &model), &p, taught)?;
        Ok(Ok(Applied {
            upstream: up,
            key: key_name,
            task,
            model,
            replaced: old.is_some(),
            replaced_event: old,
            posterior: p,
        }))
    }

    /// Replaces the feedback kept on a request id with `row` (key, id,
    /// request, upstream, task, model, score, weight, at); returns the
    /// score, weight and time of the one replaced when it judged the same
    /// request, which its posterior must take back.
    fn replace_feedback(
        &self,
        row: &[&dyn rusqlite::ToSql],
    ) -> Result<Option<(f64, f64, i64)>, StoreError> {
        let old = self
            .conn
            .prepare_cached(
                "SELECT score, weight, at FROM feedback
                 WHERE key_name = ?1 AND rid = ?2 AND coalesce(request, ?3) = ?3
                   AND upstream = ?4 AND task = ?5 AND model = ?6",
            )?
            .query_row(&row[..6], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?;
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO feedback
                 (key_name, rid, request, upstream, task, model, score, weight, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(row)?;
        Ok(old)
    }

    /// The latest request with id `rid` that `judge` may judge. Another
    /// key's request is as unknown as one that never was.
    fn judged(&self, rid: &str, judge: Judge<'_>) -> Result<Option<Judged>, StoreError> {
        let (sql, key) = match judge {
            Judge::Any => (
                "SELECT id, model, task, key_name, nullif(upstream, '') FROM requests
                 WHERE rid = ?1 AND ?2 IS NULL ORDER BY id DESC LIMIT 1",
                None,
            ),
            Judge::Key(k) => (
                "SELECT id, model, task, key_name, nullif(upstream, '') FROM requests
                 WHERE rid = ?1 AND key_name IS ?2 ORDER BY id DESC LIMIT 1",
                k,
            ),
        };
        Ok(self
            .conn
            .prepare_cached(sql)?
            .query_row(params![rid, key], |r| {
                Ok(Judged {
                    id: r.get(0)?,
                    model: r.get(1)?,
                    task: r.get(2)?,
                    key: r.get(3)?,
                    upstream: r.get(4)?,
                })
            })
            .optional()?)
    }
}

/// The request a feedback event judges, as recorded.
struct Judged {
    id: i64,
    model: Option<String>,
    task: Option<String>,
    key: Option<String>,
    upstream: Option<String>,
}

/// A request id as an error message shows it.
fn shown(rid: &str) -> String {
    crate::core::failure::snippet(rid.as_bytes()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ports::{Record, RequestRow};

    fn request(s: &Store, rid: &str, model: Option<&str>, task: &str, key: Option<&str>) {
        let row = RequestRow {
            ts: 1,
            line: 1,
            request_id: None,
            model: model.map(Into::into),
            ok: model.is_some(),
            cached: false,
            latency_ms: 1.0,
            cost_usd: None,
            prompt_tokens: None,
            completion_tokens: None,
            score: None,
            attempts: 1,
            error_type: None,
            key: key.map(Into::into),
            rid: Some(rid.into()),
            task: Some(task.into()),
            charged_usd: None,
        };
        s.write_line(&Record {
            request: Some(row),
            ..Record::default()
        })
        .unwrap();
    }

    fn fb(rid: &str, score: f64) -> Feedback {
        Feedback {
            rid: rid.into(),
            score,
            weight: 1.0,
        }
    }

    #[test]
    fn a_batch_learns_what_the_same_lines_one_by_one_learn() {
        let hl = crate::core::learned::HALF_LIFE_MS;
        let lines = [
            ("r1", 1.0),
            ("r2", 0.0),
            ("r1", 0.0),
            ("r3", 1.0),
            ("r4", 1.0),
        ];
        let fill = |s: &Store| {
            request(s, "r1", Some("m"), "sql", None);
            request(s, "r2", Some("m"), "sql", None);
            request(s, "r3", Some("n"), "sql", None);
            request(s, "r4", Some("m"), "tickets", None);
        };
        let alone = Store::in_memory().unwrap();
        fill(&alone);
        for (rid, score) in lines {
            alone
                .apply_feedback(&fb(rid, score), Judge::Any, 10, hl)
                .unwrap()
                .unwrap();
        }
        let batched = Store::in_memory().unwrap();
        fill(&batched);
        let mut taught = Taught::default();
        let tx = batched.conn().unchecked_transaction().unwrap();
        let mut last = None;
        for (rid, score) in lines {
            last = Some(
                batched
                    .apply_feedback_in(&fb(rid, score), Judge::Any, (10, hl), &mut taught)
                    .unwrap()
                    .unwrap(),
            );
        }
        batched.keep_taught(taught).unwrap();
        tx.commit().unwrap();
        let mut a = alone.quality().unwrap();
        let mut b = batched.quality().unwrap();
        a.sort_by(|x, y| (&x.0, &x.1).cmp(&(&y.0, &y.1)));
        b.sort_by(|x, y| (&x.0, &x.1).cmp(&(&y.0, &y.1)));
        assert_eq!(a, b);
        // r1 twice counts once (replaced), r2: two events on (sql, m).
        let sql_m = b.iter().find(|(t, m, _)| t == "sql" && m == "m").unwrap();
        assert_eq!(sql_m.2.events, 2);
        assert_eq!(last.unwrap().posterior.events, 1);
    }

    #[test]
    fn feedback_teaches_the_answering_model_on_the_request_s_task() {
        let s = Store::in_memory().unwrap();
        request(&s, "r1", Some("m"), "sql", None);
        request(&s, "r2", None, "sql", None);
        request(&s, "r3", Some("m"), "sql", Some("team-a"));
        let hl = crate::core::learned::HALF_LIFE_MS;
        let a = s
            .apply_feedback(&fb("r1", 0.0), Judge::Any, 10, hl)
            .unwrap()
            .unwrap();
        assert_eq!(
            (a.task.as_str(), a.model.as_str(), a.replaced),
            ("sql", "m", false)
        );
        assert!(a.posterior.bad > 0.99);
        // Again on the same request: it replaces the first.
        let a = s
            .apply_feedback(&fb("r1", 1.0), Judge::Any, 10, hl)
            .unwrap()
            .unwrap();
        assert!(a.replaced && a.posterior.bad < 1e-9 && a.posterior.good > 0.99);
        assert_eq!(a.posterior.events, 1);
        assert!(s
            .apply_feedback(&fb("nope", 1.0), Judge::Any, 10, hl)
            .unwrap()
            .is_err());
        assert!(s
            .apply_feedback(&fb("r2", 1.0), Judge::Any, 10, hl)
            .unwrap()
            .unwrap_err()
            .contains("failed"));
        // A key judges its own requests only.
        assert!(s
            .apply_feedback(&fb("r3", 1.0), Judge::Key(Some("team-b")), 10, hl)
            .unwrap()
            .is_err());
        assert!(s
            .apply_feedback(&fb("r3", 1.0), Judge::Key(None), 10, hl)
            .unwrap()
            .is_err());
        assert!(s
            .apply_feedback(&fb("r3", 1.0), Judge::Key(Some("team-a")), 10, hl)
            .unwrap()
            .is_ok());
        let q = s.quality().unwrap();
        assert_eq!(q.len(), 1);
        assert_eq!(q[0].2.events, 2);
        let (task, p) = s.add_outcome(("tickets", "m"), (1.0, 3.0), 10, hl).unwrap();
        assert_eq!(task, "tickets");
        assert!((p.good - 3.0).abs() < 1e-9);
    }

    #[test]
    fn a_key_s_feedback_stays_its_own_when_another_key_reuses_the_request_id() {
        let hl = crate::core::learned::HALF_LIFE_MS;
        let s = Store::in_memory().unwrap();
        request(&s, "same", Some("m"), "sql", Some("alice"));
        let a = s
            .apply_feedback(&fb("same", 0.0), Judge::Key(Some("alice")), 10, hl)
            .unwrap()
            .unwrap();
        assert!(!a.replaced);
        // Bob sends his own request with Alice's id, and judges it.
        request(&s, "same", Some("n"), "tickets", Some("bob"));
        let b = s
            .apply_feedback(&fb("same", 1.0), Judge::Key(Some("bob")), 10, hl)
            .unwrap()
            .unwrap();
        assert!(!b.replaced, "Bob learns nothing of Alice's feedback");
        assert_eq!((b.task.as_str(), b.model.as_str()), ("tickets", "n"));
        // Alice's request and feedback are still hers: judging again
        // replaces her own score, on her own request's task and model.
        let a = s
            .apply_feedback(&fb("same", 1.0), Judge::Key(Some("alice")), 10, hl)
            .unwrap()
            .unwrap();
        assert!(a.replaced);
        assert_eq!((a.task.as_str(), a.model.as_str()), ("sql", "m"));
        assert_eq!(a.posterior.events, 1);
        assert!(a.posterior.bad < 1e-9);
        let rows: i64 = s
            .conn()
            .query_row("SELECT count(*) FROM feedback", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 2);
    }

    #[test]
    fn feedback_on_a_reused_id_takes_back_nothing_from_the_earlier_request_s_task() {
        let hl = crate::core::learned::HALF_LIFE_MS;
        let s = Store::in_memory().unwrap();
        request(&s, "dup", Some("m"), "one", None);
        s.apply_feedback(&fb("dup", 1.0), Judge::Any, 10, hl)
            .unwrap()
            .unwrap();
        // A later request with the same id, on another task.
        request(&s, "dup", Some("m"), "two", None);
        let a = s
            .apply_feedback(&fb("dup", 0.0), Judge::Any, 10, hl)
            .unwrap()
            .unwrap();
        assert_eq!(a.task, "two");
        assert!(!a.replaced, "it judges another request");
        let q = s.quality().unwrap();
        let one = q.iter().find(|(t, _, _)| t == "one").unwrap();
        let two = q.iter().find(|(t, _, _)| t == "two").unwrap();
        assert_eq!((one.2.events, two.2.events), (1, 1));
        assert!(one.2.good > 0.99 && two.2.bad > 0.99);
    }

    #[test]
    fn feedback_teaches_the_upstream_that_answered_whatever_the_judge_s_upstream() {
        let hl = crate::core::learned::HALF_LIFE_MS;
        let mut s = Store::in_memory().unwrap();
        s.set_upstream("http://127.0.0.1:1/v1");
        request(&s, "r1", Some("m"), "sql", None);
        s.set_upstream("https://openrouter.ai/api/v1");
        let a = s
            .apply_feedback(&fb("r1", 1.0), Judge::Any, 10, hl)
            .unwrap()
            .unwrap();
        assert_eq!(a.upstream, "http://127.0.0.1:1/v1");
        assert!(s.quality().unwrap().is_empty());
        s.set_upstream("http://127.0.0.1:1/v1");
        assert_eq!(s.quality().unwrap().len(), 1);
    }
}
