//! Model statistics in the store: each model's averages (latency, errors,
//! latency against completion length), and how the attempts of a
//! transaction fold into them with one update per model.

use rusqlite::{params, OptionalExtension};

use super::{AttemptRow, Store, StoreError};
use std::collections::HashMap;

use crate::core::health::{Fit, Fold, ModelStat};

/// SQL over `attempts`: whether a failed attempt is an error of its model.
/// Not one that llmroute itself ended: a hedge that lost (`cancelled`) or an
/// attempt stopped by the run's or the server's stop (`interrupted`).
pub const MODEL_ERROR_SQL: &str =
    "(ok = 0 AND coalesce(error_type, '') NOT IN ('cancelled', 'interrupted'))";

impl Store {
    /// Successful-attempt latencies of `model` on this store's upstream
    /// (or on no named one: attempts from before upstreams were recorded),
    /// sorted, and its attempt and error counts, over attempts since
    /// `since` (unix ms).
    pub fn model_measurements(
        &self,
        model: &str,
        since: i64,
    ) -> Result<(Vec<f64>, i64, i64), StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT latency_ms FROM attempts
             WHERE model = ?1 AND ts >= ?2 AND cached = 0 AND ok = 1 AND latency_ms IS NOT NULL
               AND coalesce(upstream, ?3) = ?3
             ORDER BY latency_ms",
        )?;
        let lat = stmt
            .query_map(params![model, since, self.upstream], |r| r.get(0))?
            .collect::<Result<Vec<f64>, _>>()?;
        let (n, errors) = self
            .conn
            .prepare_cached(&format!(
                "SELECT count(*), coalesce(sum({MODEL_ERROR_SQL}), 0) FROM attempts
                 WHERE model = ?1 AND ts >= ?2 AND cached = 0 AND coalesce(upstream, ?3) = ?3"
            ))?
            .query_row(params![model, since, self.upstream], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
        Ok((lat, n, errors))
    }

    /// What is measured of every model on this store's upstream.
    pub fn model_stats(&self) -> Result<HashMap<String, ModelStat>, StoreError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT model, {STAT_COLUMNS} FROM model_stats WHERE upstream = ?1"
        ))?;
        let rows = stmt.query_map([&self.upstream], |r| Ok((r.get(0)?, stat_of(r, 1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The latencies (ms) of each model's latest answers on this store's
    /// upstream (or on no named one: attempts from before upstreams were
    /// recorded), oldest first: at most `limit` of a model, and no more
    /// than its averages hold, so that what `models --reset` forgot stays
    /// forgotten.
    pub fn latest_latencies(&self, limit: usize) -> Result<HashMap<String, Vec<f64>>, StoreError> {
        let models: Vec<(String, i64)> = self
            .conn
            .prepare("SELECT model, samples FROM model_stats WHERE upstream = ?1")?
            .query_map([&self.upstream], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let mut stmt = self.conn.prepare(
            "SELECT latency_ms FROM attempts
             WHERE model = ?1 AND cached = 0 AND ok = 1 AND latency_ms IS NOT NULL
               AND coalesce(upstream, ?2) = ?2
             ORDER BY ts DESC, id DESC LIMIT ?3",
        )?;
        let mut latest = HashMap::new();
        for (model, samples) in models {
            let n = samples.clamp(0, limit as i64);
            if n == 0 {
                continue;
            }
            let mut ms = stmt
                .query_map(params![model, self.upstream, n], |r| r.get(0))?
                .collect::<Result<Vec<f64>, _>>()?;
            ms.reverse();
            latest.insert(model, ms);
        }
        Ok(latest)
    }

    /// Writes and clears what [`Store::write_line_folded`] gathered: each
    /// model's averages are read, folded as [`Fold::apply`] says, and
    /// written back, inside the caller's transaction.
    pub fn write_latencies(&self, latencies: &mut LatencyFold) -> Result<(), StoreError> {
        for (model, f) in latencies.models.drain(..) {
            let old = self
                .conn
                .prepare_cached(&format!(
                    "SELECT {STAT_COLUMNS} FROM model_stats WHERE upstream = ?1 AND model = ?2"
                ))?
                .query_row([&self.upstream, &model], |r| stat_of(r, 0))
                .optional()?;
            let old = old.unwrap_or_default();
            let mut new = old;
            if let Some(l) = &f.latency {
                let a = l.apply(old.latency());
                (new.ewma_ms, new.samples) = (a.value, a.n);
            }
            if let Some(e) = &f.errors {
                let a = e.apply(Some(old.errors()));
                (new.error_rate, new.tries) = (a.value, a.n);
            }
            new.last_at = old.last_at.max(f.last_at);
            if let Some(fit) = &f.fit {
                new.fit = fit.apply(old.fit);
            }
            self.conn
                .prepare_cached(
                    "INSERT INTO model_stats (model, ewma_ms, samples, error_rate, tries, last_at,
                       fit_x, fit_xx, fit_xy, fit_y, fit_n, updated_at, upstream)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
                     ON CONFLICT (upstream, model) DO UPDATE SET
                       ewma_ms = excluded.ewma_ms,
                       samples = excluded.samples,
                       error_rate = excluded.error_rate,
                       tries = excluded.tries,
                       last_at = excluded.last_at,
                       fit_x = excluded.fit_x,
                       fit_xx = excluded.fit_xx,
                       fit_xy = excluded.fit_xy,
                       fit_y = excluded.fit_y,
                       fit_n = excluded.fit_n,
                       updated_at = max(updated_at, excluded.updated_at)",
                )?
                .execute(params![
                    model,
                    new.ewma_ms,
                    new.samples,
                    new.error_rate,
                    new.tries,
                    new.last_at,
                    new.fit.x,
                    new.fit.xx,
                    new.fit.xy,
                    new.fit.y,
                    new.fit.n,
                    f.ts,
                    self.upstream
                ])?;
        }
        Ok(())
    }
}

/// A `model_stats` row's averages, from column `at` on.
fn stat_of(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<ModelStat> {
    Ok(ModelStat {
        ewma_ms: r.get(at)?,
        samples: r.get(at + 1)?,
        error_rate: r.get(at + 2)?,
        tries: r.get(at + 3)?,
        last_at: r.get(at + 4)?,
        fit: Fit {
            x: r.get(at + 5)?,
            xx: r.get(at + 6)?,
            xy: r.get(at + 7)?,
            y: r.get(at + 8)?,
            n: r.get(at + 9)?,
        },
    })
}

/// The columns [`stat_of`] reads, in its order.
const STAT_COLUMNS: &str =
    "ewma_ms, samples, error_rate, tries, last_at, fit_x, fit_xx, fit_xy, fit_y, fit_n";

/// What the attempts of a transaction say of each model, folded
/// ([`Fold`]): `model_stats` then takes one update per model however many
/// lines a transaction holds.
#[derive(Debug, Default)]
pub struct LatencyFold {
    models: Vec<(String, Folded)>,
}

#[derive(Debug, Default)]
struct Folded {
    /// Latencies of answers and of attempts that ran out of time.
    latency: Option<Fold>,
    /// 1 for each attempt that failed for the model's sake, 0 for each answer.
    errors: Option<Fold>,
    /// Answers' lengths and latencies.
    fit: Option<FitFold>,
    /// The latest attempt that says something of the model.
    last_at: i64,
    /// The latest row.
    ts: i64,
}

impl LatencyFold {
    /// Whether nothing is gathered.
    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    /// Adds what another fold gathered, as if its samples came after these.
    pub fn extend(&mut self, other: LatencyFold) {
        for (model, f) in other.models {
            let mine = self.entry(&model);
            merge(&mut mine.latency, f.latency);
            merge(&mut mine.errors, f.errors);
            match (&mut mine.fit, f.fit) {
                (Some(m), Some(l)) => m.merge(&l),
                (m @ None, l) => *m = l,
                (Some(_), None) => {}
            }
            mine.last_at = mine.last_at.max(f.last_at);
            mine.ts = mine.ts.max(f.ts);
        }
    }

    fn entry(&mut self, model: &str) -> &mut Folded {
        // A run routes among a handful of models: a list beats a map here.
        let i = match self.models.iter().position(|(m, _)| m == model) {
            Some(i) => i,
            None => {
                self.models.push((model.to_string(), Folded::default()));
                self.models.len() - 1
            }
        };
        &mut self.models[i].1
    }

    /// Takes in one attempt row (not a cache hit).
    pub(super) fn add(&mut self, a: &AttemptRow) {
        let signal = crate::core::failure::health_signal(a.ok, a.error_type);
        if signal.latency.is_none() && signal.failed.is_none() {
            return;
        }
        let f = self.entry(&a.model);
        f.ts = f.ts.max(a.ts);
        if let (Some(()), Some(ms)) = (signal.latency, a.latency_ms) {
            add(&mut f.latency, ms);
        }
        if let Some(failed) = signal.failed {
            add(&mut f.errors, if failed { 1.0 } else { 0.0 });
            f.last_at = f.last_at.max(a.ts);
        }
        if let (true, Some(t), Some(ms)) = (a.ok, a.completion_tokens, a.latency_ms) {
            let t = t.max(0) as f64;
            match &mut f.fit {
                Some(fit) => fit.add(t, ms),
                None => f.fit = Some(FitFold::new(t, ms)),
            }
        }
    }
}

/// A [`Fit`]'s four averages, folded alike.
#[derive(Debug, Clone, Copy)]
struct FitFold([Fold; 4]);

impl FitFold {
    fn new(t: f64, ms: f64) -> FitFold {
        FitFold([
            Fold::new(t),
            Fold::new(t * t),
            Fold::new(t * ms),
            Fold::new(ms),
        ])
    }

    fn add(&mut self, t: f64, ms: f64) {
        for (f, x) in self.0.iter_mut().zip([t, t * t, t * ms, ms]) {
            f.add(x);
        }
    }

    fn merge(&mut self, later: &FitFold) {
        for (f, l) in self.0.iter_mut().zip(later.0.iter()) {
            f.merge(l);
        }
    }

    fn apply(&self, old: Fit) -> Fit {
        let one = |i: usize, value: f64| {
            self.0[i].apply((old.n > 0).then_some(crate::core::health::Avg { value, n: old.n }))
        };
        let (x, xx, xy, y) = (one(0, old.x), one(1, old.xx), one(2, old.xy), one(3, old.y));
        Fit {
            x: x.value,
            xx: xx.value,
            xy: xy.value,
            y: y.value,
            n: y.n,
        }
    }
}

fn add(fold: &mut Option<Fold>, x: f64) {
    match fold {
        Some(f) => f.add(x),
        None => *fold = Some(Fold::new(x)),
    }
}

fn merge(fold: &mut Option<Fold>, later: Option<Fold>) {
    match (fold.as_mut(), later) {
        (Some(f), Some(l)) => f.merge(&l),
        (None, l) => *fold = l,
        (Some(_), None) => {}
    }
}
