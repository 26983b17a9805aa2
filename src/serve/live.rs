//! What the dashboard shows of this process: its requests since it
//! started, kept in memory that stays the same size however long it runs.
//! Totals are exact; the time series keeps the last hour in 10 s buckets;
//! percentiles are over the last 10,000 answers (each model's over its
//! last 1,000); the last 50 requests are kept, without their text. The
//! configured candidates and fallback models are counted by name; other
//! names a client pins, up to [`MODELS`] of at most [`NAME_MAX`] bytes,
//! and the rest together under [`OTHERS`].

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use crate::engine::Attempt;
use crate::view::data::{Bins, Recent, Series, Summary};
use crate::view::{ModelRow, RecentRequest, Totals};

/// The time series: 360 buckets of 10 s.
pub const BUCKET_MS: i64 = 10_000;
pub const BUCKETS: usize = 360;
/// Latencies kept for the percentiles, overall and per model.
pub const LATENCIES: usize = 10_000;
pub const MODEL_LATENCIES: usize = 1_000;
/// The fewest buckets the dashboard draws (5 minutes), however young
/// the process.
pub const MIN_SHOWN: usize = 30;
/// Requests listed.
pub const RECENT: usize = 50;
/// Models outside the configuration counted apart; attempts of later ones,
/// and of longer names, count under [`OTHERS`].
pub const MODELS: usize = 200;
pub const NAME_MAX: usize = 200;
pub const OTHERS: &str = "(other models)";

/// One request as it ended.
#[derive(Debug, Clone, Default)]
pub struct Ended {
    pub at_ms: i64,
    pub status: u16,
    /// The model that answered, if one did.
    pub model: Option<String>,
    pub latency_ms: f64,
    pub cached: bool,
    pub attempts: usize,
    /// Its upstream attempts, counted by model.
    pub tried: Vec<Attempt>,
    pub cost_usd: Option<f64>,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
}

#[derive(Debug)]
struct ModelLive {
    attempts: u64,
    errors: u64,
    cost_usd: f64,
    cost_unknown: u64,
    bins: Bins,
    latencies: Recent<f64>,
}

impl Default for ModelLive {
    fn default() -> ModelLive {
        ModelLive {
            attempts: 0,
            errors: 0,
            cost_usd: 0.0,
            cost_unknown: 0,
            bins: Bins::default(),
            latencies: Recent::new(MODEL_LATENCIES),
        }
    }
}

#[derive(Debug)]
struct Inner {
    /// The configured models, always counted by name.
    known: HashSet<String>,
    /// Models counted by name that are not configured.
    unknown: usize,
    totals: Totals,
    series: Series,
    latencies: Recent<f64>,
    models: HashMap<String, ModelLive>,
    recent: Recent<RecentRequest>,
}

/// The live counters, shared by every request.
#[derive(Debug)]
pub struct Live {
    inner: Mutex<Inner>,
    started_ms: i64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub totals: Totals,
    pub latency: Summary,
    pub series: Series,
    /// Most attempts first, then by name.
    pub models: Vec<ModelRow>,
    /// Newest first.
    pub recent: Vec<RecentRequest>,
    /// Requests a second over the last 10 to 20 s.
    pub requests_per_second: f64,
}

impl Live {
    /// Counters from `now_ms` on; `known` are the configured models.
    pub fn new(now_ms: i64, known: impl IntoIterator<Item = String>) -> Live {
        Live {
            inner: Mutex::new(Inner {
                known: known.into_iter().collect(),
                unknown: 0,
                totals: Totals::default(),
                series: Series::rolling(BUCKET_MS, BUCKETS, now_ms),
                latencies: Recent::new(LATENCIES),
                models: HashMap::new(),
                recent: Recent::new(RECENT),
            }),
            started_ms: now_ms,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere leaves counts that are still counts.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A request that ended, with its attempts: one lock a request.
    pub fn ended(&self, e: Ended) {
        let ok = e.status < 400;
        let mut inner = self.lock();
        for a in &e.tried {
            inner.count(a);
        }
        let t = &mut inner.totals;
        t.requests += 1;
        t.errors += u64::from(!ok);
        let cost = e.cost_usd.filter(|c| c.is_finite());
        if e.cached {
            t.cache_hits += 1;
        } else if ok {
            t.answered += 1;
            match cost {
                Some(c) => t.cost_usd += c,
                None => t.cost_unknown += 1,
            }
            t.prompt_tokens += e
                .prompt_tokens
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(0);
            t.completion_tokens += e
                .completion_tokens
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(0);
            inner.latencies.push(e.latency_ms);
            if let Some(model) = &e.model {
                let m = inner.model(model);
                match cost {
                    Some(c) => m.cost_usd += c,
                    None => m.cost_unknown += 1,
                }
            }
        }
        inner.totals.attempts += e.attempts as u64;
        inner
            .series
            .add(e.at_ms, ok, e.cached, cost.filter(|_| !e.cached));
        inner.recent.push(RecentRequest {
            at_ms: e.at_ms,
            model: e.model.map(|m| shortened(m, NAME_MAX)),
            status: e.status,
            latency_ms: e.latency_ms,
            cached: e.cached,
            attempts: e.attempts,
        });
    }

    /// The counters now, the time series rolled on to `now_ms`. The lock
    /// is held to copy them only; percentiles are sorted out after it.
    pub fn snapshot(&self, now_ms: i64) -> Snapshot {
        let (models, latencies, totals, series, recent, rps) = {
            let mut inner = self.lock();
            inner.series.advance(now_ms);
            let models: Vec<(ModelRow, Vec<f64>)> = inner
                .models
                .iter()
                .map(|(name, m)| {
                    let row = ModelRow {
                        model: name.clone(),
                        attempts: m.attempts,
                        errors: m.errors,
                        latency: Summary::default(),
                        cost_usd: m.cost_usd,
                        cost_unknown: m.cost_unknown,
                        bins: m.bins.clone(),
                    };
                    (row, m.latencies.to_vec())
                })
                .collect();
            (
                models,
                inner.latencies.to_vec(),
                inner.totals,
                inner.series.since(self.started_ms, MIN_SHOWN),
                inner.recent.newest().cloned().collect::<Vec<_>>(),
                rate(&inner.series, now_ms),
            )
        };
        let mut models: Vec<ModelRow> = models
            .into_iter()
            .map(|(mut row, l)| {
                row.latency = Summary::of(l);
                row
            })
            .collect();
        models.sort_by(|a, b| b.attempts.cmp(&a.attempts).then(a.model.cmp(&b.model)));
        Snapshot {
            totals,
            latency: Summary::of(latencies),
            series,
            models,
            recent,
            requests_per_second: rps,
        }
    }
}

impl Inner {
    /// One upstream attempt, under its model.
    fn count(&mut self, a: &Attempt) {
        let m = self.model(&a.model);
        m.attempts += 1;
        if a.error.is_none() {
            m.bins.add(a.latency_ms);
            m.latencies.push(a.latency_ms);
        } else {
            m.errors += 1;
        }
    }

    fn model(&mut self, name: &str) -> &mut ModelLive {
        let own = self.models.contains_key(name)
            || self.known.contains(name)
            || (self.unknown < MODELS && name.len() <= NAME_MAX);
        let name = if own { name } else { OTHERS };
        if !self.models.contains_key(name) {
            if name != OTHERS && !self.known.contains(name) {
                self.unknown += 1;
            }
            self.models.insert(name.to_string(), ModelLive::default());
        }
        self.models.get_mut(name).expect("just inserted")
    }
}

/// `s` cut to at most `max` bytes, on a character boundary, with `…`.
fn shortened(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

/// Requests a second over the current bucket and the one before it.
fn rate(series: &Series, now_ms: i64) -> f64 {
    let n = series.buckets().len();
    if n == 0 {
        return 0.0;
    }
    let last = series.buckets().nth(n - 1).expect("not empty");
    let before = if n >= 2 {
        series.buckets().nth(n - 2).map_or(0, |b| b.requests)
    } else {
        0
    };
    let elapsed = (now_ms - last.start_ms).clamp(0, series.width_ms()) + series.width_ms();
    (last.requests + before) as f64 * 1000.0 / elapsed as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Live {
        /// Attempts without a request of their own.
        fn attempts(&self, attempts: &[Attempt]) {
            let mut inner = self.lock();
            for a in attempts {
                inner.count(a);
            }
        }
    }

    fn attempt(model: &str, ok: bool, ms: f64) -> Attempt {
        Attempt {
            model: model.into(),
            status: Some(if ok { 200 } else { 503 }),
            error: (!ok).then(|| "HTTP 503".to_string()),
            latency_ms: ms,
        }
    }

    fn ended(at_ms: i64, status: u16, cached: bool, ms: f64, cost: Option<f64>) -> Ended {
        Ended {
            at_ms,
            status,
            model: Some("m/a".into()),
            latency_ms: ms,
            cached,
            attempts: usize::from(!cached),
            tried: Vec::new(),
            cost_usd: cost,
            prompt_tokens: Some(10),
            completion_tokens: Some(5),
        }
    }

    #[test]
    fn totals_count_every_request_once() {
        let t0 = 1_000_000_000;
        let live = Live::new(t0, []);
        live.attempts(&[attempt("m/b", false, 50.0), attempt("m/a", true, 120.0)]);
        live.ended(ended(t0 + 1, 200, false, 130.0, Some(0.01)));
        live.ended(ended(t0 + 2, 200, true, 0.4, Some(0.0)));
        live.ended(ended(t0 + 3, 502, false, 60.0, None));
        let s = live.snapshot(t0 + 5);
        let t = s.totals;
        assert_eq!(
            (t.requests, t.answered, t.errors, t.cache_hits),
            (3, 1, 1, 1)
        );
        assert_eq!((t.prompt_tokens, t.completion_tokens), (10, 5));
        assert!((t.cost_usd - 0.01).abs() < 1e-12);
        assert_eq!(s.latency.count, 1, "cache hits and errors are not answers");
        let names: Vec<_> = s
            .models
            .iter()
            .map(|m| (m.model.as_str(), m.attempts, m.errors))
            .collect();
        assert_eq!(names, [("m/a", 1, 0), ("m/b", 1, 1)]);
        assert_eq!(s.models[0].bins.total(), 1);
        assert_eq!(s.recent.len(), 3);
        assert_eq!(s.recent[0].status, 502, "newest first");
        let in_series: u64 = s.series.buckets().map(|b| b.requests).sum();
        assert_eq!(in_series, 3);
    }

    #[test]
    fn a_client_cannot_crowd_out_the_configured_models_or_grow_names() {
        let live = Live::new(0, ["c/one".to_string()]);
        let huge = "x".repeat(1 << 20);
        live.attempts(&[attempt(&huge, false, 1.0)]);
        for i in 0..(MODELS + 5) {
            live.attempts(&[attempt(&format!("pinned/{i}"), false, 1.0)]);
        }
        live.attempts(&[attempt("c/one", true, 5.0)]);
        let mut e = ended(1, 502, false, 1.0, None);
        e.model = Some(huge.clone());
        live.ended(e);
        let s = live.snapshot(10);
        assert!(s
            .models
            .iter()
            .any(|m| m.model == "c/one" && m.attempts == 1));
        assert_eq!(
            s.models.len(),
            MODELS + 2,
            "the pinned ones, the configured one, others"
        );
        let others = s.models.iter().find(|m| m.model == OTHERS).unwrap();
        assert_eq!(
            others.attempts, 6,
            "the huge name and the five past the cap"
        );
        assert!(s.models.iter().all(|m| m.model.len() <= NAME_MAX));
        let shown = s.recent[0].model.as_deref().unwrap();
        assert!(shown.len() <= NAME_MAX + '…'.len_utf8(), "{}", shown.len());
        assert_eq!(shortened("ééé".into(), 3), "é…");
    }

    #[test]
    fn memory_stays_bounded() {
        let live = Live::new(0, []);
        for i in 0..(MODELS + 10) {
            live.attempts(&[attempt(&format!("m/{i}"), true, 1.0)]);
        }
        for i in 0..(LATENCIES as i64 + 500) {
            live.ended(ended(i * 1000, 200, false, i as f64, None));
        }
        let s = live.snapshot(LATENCIES as i64 * 1000 + 500_000);
        assert_eq!(s.models.len(), MODELS + 1);
        let others = s.models.iter().find(|m| m.model == OTHERS).unwrap();
        assert_eq!(others.attempts, 10);
        assert_eq!(s.latency.count, LATENCIES as u64);
        assert_eq!(s.latency.max, Some(LATENCIES as f64 + 499.0));
        assert_eq!(s.recent.len(), RECENT);
        assert_eq!(s.series.buckets().len(), BUCKETS);
        // The series keeps the last hour only: the requests before it are
        // gone from it, and only from it.
        let in_series: u64 = s.series.buckets().map(|b| b.requests).sum();
        assert!(in_series < s.totals.requests);
        assert_eq!(s.totals.requests, LATENCIES as u64 + 500);
    }

    #[test]
    fn the_rate_is_over_the_last_buckets() {
        let t0 = 1_000_000_000; // on a bucket's start
        let live = Live::new(t0, []);
        for i in 0..30 {
            live.ended(ended(t0 + i * 100, 200, false, 1.0, None));
        }
        // 30 requests in the 10 s before, 0 in the current 5 s: 2/s.
        let s = live.snapshot(t0 + BUCKET_MS + 5_000);
        assert!(
            (s.requests_per_second - 2.0).abs() < 1e-9,
            "{}",
            s.requests_per_second
        );
        let s = live.snapshot(t0 + 60_000);
        assert_eq!(s.requests_per_second, 0.0);
    }
}
