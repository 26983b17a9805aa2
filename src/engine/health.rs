//! Model health held in memory: latency and error averages, rate-limit
//! pauses, circuit breakers and probes under way, updated as attempts come
//! back, and merged with what a shared store says (so that processes
//! sharing a store see each other's pauses and measurements during their
//! runs, not only at start).
//!
//! The circuit breaker: `BREAKER_FAILURES` (3) failures in a row (for the
//! model's own sake: see [`crate::core::failure::FailureKind::counts_against_model`])
//! open a model's circuit for [`crate::core::health::breaker_pause`]; then it is half-open: one
//! request at a time may try it. An answer closes it; a failure opens it
//! again, for twice as long.

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::core::failure::HealthSignal;
use crate::core::health::{breaker_pause, HealthView, ModelStat, Pause, BREAKER_FAILURES};
use crate::engine::ports::Health;

/// How far a pause may move on its way through the store's unix
/// milliseconds and back.
const ROUNDING: Duration = Duration::from_millis(5);

/// How often a request waiting only for a half-open model looks again.
const HALF_OPEN_POLL: Duration = Duration::from_millis(50);

/// A latency this far under a model's average marks it as recovering.
const IMPROVING: f64 = 0.6;

/// What this process alone knows of a model.
#[derive(Debug, Default)]
struct Local {
    pause: Option<Pause>,
    /// Failures in a row.
    fails: u32,
    /// Times its circuit opened in a row.
    opens: u32,
    open_until: Option<Instant>,
    /// A probe (or the one request a half-open circuit lets through) is under way.
    probing: bool,
    improving: bool,
    /// The latencies of its latest answers, oldest first.
    recent: std::collections::VecDeque<f64>,
}

/// Answers whose latencies are kept for `--hedge auto`.
const RECENT: usize = crate::core::hedge::RECENT;

/// Health in memory, shared by every request of a process.
#[derive(Debug, Default)]
pub struct LocalHealth {
    // Looked up a dozen times a request, by short names nobody outside
    // chooses: a fast hash, not SipHash.
    stats: RwLock<foldhash::HashMap<String, ModelStat>>,
    local: Mutex<foldhash::HashMap<String, Local>>,
    /// The open circuits the store held when this process first read it
    /// (an earlier run's, or another process's from before it started):
    /// when that was, and each model's pause end (unix ms).
    found: Mutex<Option<(Instant, HashMap<String, i64>)>>,
}

/// How long a process trusts an open circuit it found in the store as it
/// started: a first pause of its own. Then it tries the model itself, so
/// that a re-run after its upstream came back is not turned away for
/// minutes by what an earlier run saw.
pub const FOUND_TRUST: Duration = crate::core::health::BREAKER_OPEN;

impl LocalHealth {
    pub fn new(stats: HashMap<String, ModelStat>) -> LocalHealth {
        LocalHealth {
            stats: RwLock::new(stats.into_iter().collect()),
            local: Mutex::new(foldhash::HashMap::default()),
            found: Mutex::new(None),
        }
    }

    fn local(&self) -> std::sync::MutexGuard<'_, foldhash::HashMap<String, Local>> {
        self.local.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `model`'s entry, made on first sight: the model's name is copied once,
/// not on every attempt.
fn entry<'a>(local: &'a mut foldhash::HashMap<String, Local>, model: &str) -> &'a mut Local {
    if !local.contains_key(model) {
        local.insert(model.to_string(), Local::default());
    }
    local.get_mut(model).expect("just made")
}

impl LocalHealth {
    /// Takes in what a shared store holds: its averages (which fold in this
    /// process's own samples once recorded, and other processes'), and its
    /// pauses, each kept when longer than the one known here.
    pub fn merge(&self, stats: HashMap<String, ModelStat>, pauses: HashMap<String, Instant>) {
        {
            let mut mine = self.stats.write().unwrap_or_else(|e| e.into_inner());
            for (model, theirs) in stats {
                match mine.get(&model) {
                    // Samples not yet recorded here are newer than the store's copy.
                    Some(s) if s.samples + s.tries > theirs.samples + theirs.tries => {}
                    _ => {
                        mine.insert(model, theirs);
                    }
                }
            }
        }
        let mut local = self.local();
        for (model, until) in pauses {
            let l = local.entry(model).or_default();
            match &mut l.pause {
                // This process's own pauses come back through the store's
                // unix milliseconds, rounded: those are not lengthened.
                Some(p) if until <= p.until + ROUNDING => {}
                Some(p) => p.until = until,
                None => l.pause = Some(Pause::until(until)),
            }
        }
    }

    /// Caps the circuits read from the store, `(model, until_ms, until)`:
    /// those it held at this process's first read are trusted until
    /// [`FOUND_TRUST`] after it; those opened since, in full.
    pub fn trust_found(&self, circuits: &mut [(String, i64, Instant)]) {
        let mut found = self.found.lock().unwrap_or_else(|e| e.into_inner());
        let first = found.is_none();
        let (at, seen) = found.get_or_insert_with(|| (Instant::now(), HashMap::new()));
        for (model, until_ms, until) in circuits.iter_mut() {
            if first {
                seen.insert(model.clone(), *until_ms);
            }
            if seen.get(model.as_str()) == Some(until_ms) {
                *until = (*until).min(*at + FOUND_TRUST);
            }
        }
    }

    /// Marks the models' circuits open until then, as another process on
    /// the store found them failing: a request waits for them no more than
    /// for a circuit of its own (see [`crate::core::attempts::OPEN_PATIENCE`]).
    pub fn open_circuits(&self, circuits: HashMap<String, Instant>) {
        let mut local = self.local();
        for (model, until) in circuits {
            let l = local.entry(model).or_default();
            l.open_until = Some(l.open_until.map_or(until, |t| t.max(until)));
        }
    }

    /// Takes in the latencies of models' answers from before this process
    /// (each model's oldest first), for `--hedge auto`: they are older than
    /// its own, so they fill only what room its window has left.
    pub fn remember(&self, latencies: HashMap<String, Vec<f64>>) {
        let mut local = self.local();
        for (model, ms) in latencies {
            let recent = &mut entry(&mut local, &model).recent;
            let room = RECENT.saturating_sub(recent.len());
            for x in ms.iter().rev().take(room) {
                recent.push_front(*x);
            }
        }
    }

    /// Every model's averages, as known now.
    pub fn stats(&self) -> HashMap<String, ModelStat> {
        let stats = self.stats.read().unwrap_or_else(|e| e.into_inner());
        stats.iter().map(|(m, s)| (m.clone(), *s)).collect()
    }
}

impl HealthView for LocalHealth {
    fn stat(&self, model: &str) -> Option<ModelStat> {
        self.stats
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(model)
            .copied()
    }

    fn cooling_until(&self, model: &str) -> Option<Instant> {
        let local = self.local();
        let l = local.get(model)?;
        let now = Instant::now();
        let paused = [l.pause.map(|p| p.until), l.open_until]
            .into_iter()
            .flatten()
            .filter(|t| *t > now)
            .max();
        if paused.is_some() {
            return paused;
        }
        // Half-open: while its one request is under way, others wait.
        (l.fails >= BREAKER_FAILURES && l.probing).then_some(now + HALF_OPEN_POLL)
    }

    fn pause_reason(&self, model: &str) -> Option<String> {
        let local = self.local();
        let l = local.get(model)?;
        let now = Instant::now();
        let open = l.open_until.filter(|t| *t > now);
        let paused = l.pause.filter(|p| p.until > now);
        Some(match (open, paused) {
            (Some(o), Some(p)) if p.until > o && p.streak > 0 => "rate-limited by the API".into(),
            (Some(_), _) if l.fails == 0 => "circuit open: failing, as an earlier run or another \
                 process on this store found (once it is back, `llmroute models --reset` forgets that)"
                .into(),
            (Some(_), _) => format!("circuit open after {} failures in a row", l.fails),
            (None, Some(p)) if p.streak > 0 => "rate-limited by the API".into(),
            (None, Some(_)) => {
                "paused by another process on this store or Redis (a rate limit or failures)".into()
            }
            (None, None) if l.fails >= BREAKER_FAILURES && l.probing => {
                "circuit half-open: another request is trying it".into()
            }
            (None, None) => return None,
        })
    }

    fn open(&self, model: &str) -> bool {
        let local = self.local();
        local
            .get(model)
            .and_then(|l| l.open_until)
            .is_some_and(|t| t > Instant::now())
    }

    fn probing(&self, model: &str) -> bool {
        self.local().get(model).is_some_and(|l| l.probing)
    }

    fn improving(&self, model: &str) -> bool {
        self.local().get(model).is_some_and(|l| l.improving)
    }

    fn hedge_delay_ms(&self, model: &str) -> Option<f64> {
        let local = self.local();
        let (older, newer) = local.get(model)?.recent.as_slices();
        crate::core::hedge::auto_delay_ms(&[older, newer].concat())
    }
}

impl Health for LocalHealth {
    fn observe(
        &self,
        model: &str,
        signal: HealthSignal,
        latency_ms: f64,
        tokens: Option<i64>,
        at: i64,
    ) -> Option<Instant> {
        if signal.latency.is_none() && signal.failed.is_none() {
            return None;
        }
        let before = {
            let mut stats = self.stats.write().unwrap_or_else(|e| e.into_inner());
            let update = |mut s: ModelStat| {
                if signal.failed == Some(false) {
                    s = s.answered(latency_ms, tokens);
                } else if signal.latency.is_some() {
                    s = s.update(latency_ms);
                }
                if let Some(failed) = signal.failed {
                    s = s.tried(failed, at);
                }
                s
            };
            match stats.get_mut(model) {
                Some(s) => {
                    let old = s.latency();
                    *s = update(*s);
                    old
                }
                None => {
                    stats.insert(model.to_string(), update(ModelStat::default()));
                    None
                }
            }
        };
        let improving = before.is_some_and(|b| latency_ms < b.value * IMPROVING);
        let mut local = self.local();
        let l = entry(&mut local, model);
        if signal.latency.is_some() {
            l.improving = improving;
        }
        if signal.failed == Some(false) {
            if l.recent.len() == RECENT {
                l.recent.pop_front();
            }
            l.recent.push_back(latency_ms);
        }
        match signal.failed {
            Some(false) => {
                // An answer closes the circuit and ends a run of rate limits
                // (not a pause under way).
                l.fails = 0;
                l.opens = 0;
                l.open_until = None;
                if let Some(p) = &mut l.pause {
                    p.streak = 0;
                }
                None
            }
            Some(true) => {
                l.fails = l.fails.saturating_add(1);
                if l.fails < BREAKER_FAILURES {
                    return None;
                }
                // Already open: a request in flight when it opened failed
                // too. It neither reopens the circuit nor lengthens the
                // pause, or a burst of failures sent at once would take it
                // to the longest pause at once.
                if l.open_until.is_some_and(|u| u > Instant::now()) {
                    return None;
                }
                l.opens = l.opens.saturating_add(1);
                let until = Instant::now() + breaker_pause(l.opens);
                l.open_until = Some(until);
                Some(until)
            }
            None => None,
        }
    }

    fn rate_limited(&self, model: &str, sent: Instant, retry_after: Option<Duration>) -> Instant {
        let mut local = self.local();
        let l = entry(&mut local, model);
        let p = Pause::limited(l.pause, Instant::now(), sent, retry_after);
        l.pause = Some(p);
        p.until
    }

    fn begin(&self, model: &str, probe: bool) -> Option<bool> {
        let mut local = self.local();
        let half_open = local
            .get(model)
            .is_some_and(|l| l.fails >= BREAKER_FAILURES);
        if !probe && !half_open {
            return Some(false);
        }
        let l = entry(&mut local, model);
        if l.probing {
            return None;
        }
        l.probing = true;
        Some(true)
    }

    fn end(&self, model: &str, marked: bool) {
        if marked {
            if let Some(l) = self.local().get_mut(model) {
                l.probing = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::failure::health_signal;
    use crate::core::health::State;

    #[test]
    fn circuits_found_at_the_first_read_are_trusted_a_first_pause_only() {
        let h = LocalHealth::default();
        let later = Instant::now() + Duration::from_secs(300);
        let mut first = vec![("a".to_string(), 1_000, later)];
        h.trust_found(&mut first);
        assert!(first[0].2 <= Instant::now() + FOUND_TRUST, "capped");
        // Read again, the same pause stays capped...
        let mut again = vec![
            ("a".to_string(), 1_000, later),
            // ...while one opened since holds in full.
            ("b".to_string(), 2_000, later),
        ];
        h.trust_found(&mut again);
        assert!(again[0].2 <= Instant::now() + FOUND_TRUST);
        assert_eq!(again[1].2, later);
        // A's circuit opened again since: in full.
        let mut renewed = vec![("a".to_string(), 3_000, later)];
        h.trust_found(&mut renewed);
        assert_eq!(renewed[0].2, later);
    }

    fn stat(ewma_ms: f64, samples: i64) -> ModelStat {
        ModelStat {
            ewma_ms,
            samples,
            tries: samples,
            ..Default::default()
        }
    }

    fn answer(h: &LocalHealth, model: &str, ms: f64) {
        h.observe(model, health_signal(true, None), ms, None, 0);
    }

    fn fail(h: &LocalHealth, model: &str) -> Option<Instant> {
        h.observe(
            model,
            health_signal(false, Some("server_error")),
            5.0,
            None,
            0,
        )
    }

    #[test]
    fn failures_of_requests_in_flight_when_it_opens_do_not_reopen_it() {
        let h = LocalHealth::default();
        let mut opened = Vec::new();
        // Eight requests sent together, all failing.
        for _ in 0..8 {
            opened.extend(fail(&h, "m"));
        }
        assert_eq!(opened.len(), 1, "opened once");
        let pause = opened[0] - Instant::now();
        assert!(pause <= breaker_pause(1), "{pause:?}");
    }

    #[test]
    fn a_store_pause_is_seen_and_the_longer_pause_wins() {
        let h = LocalHealth::default();
        let now = Instant::now();
        let soon = now + Duration::from_secs(5);
        let later = now + Duration::from_secs(60);
        h.merge(HashMap::new(), HashMap::from([("m".to_string(), later)]));
        assert_eq!(h.cooling_until("m"), Some(later));
        h.merge(HashMap::new(), HashMap::from([("m".to_string(), soon)]));
        assert_eq!(h.cooling_until("m"), Some(later));
        assert_eq!(h.cooling_until("other"), None);
    }

    #[test]
    fn the_store_average_replaces_an_older_one_but_not_a_newer_one() {
        let h = LocalHealth::new(HashMap::from([("a".to_string(), stat(100.0, 3))]));
        h.merge(
            HashMap::from([("a".to_string(), stat(400.0, 5))]),
            HashMap::new(),
        );
        assert_eq!(h.stat("a"), Some(stat(400.0, 5)));
        answer(&h, "a", 400.0);
        answer(&h, "a", 400.0);
        // The store has not caught up with this process's two samples yet.
        h.merge(
            HashMap::from([("a".to_string(), stat(10.0, 5))]),
            HashMap::new(),
        );
        assert_eq!(h.stat("a").map(|s| s.samples), Some(7));
    }

    #[test]
    fn probes_are_one_at_a_time_and_plain_attempts_are_not_marked() {
        let h = LocalHealth::default();
        assert_eq!(h.begin("m", false), Some(false));
        assert_eq!(h.begin("m", true), Some(true));
        assert!(h.probing("m"));
        assert_eq!(h.begin("m", true), None);
        assert_eq!(
            h.begin("m", false),
            Some(false),
            "a closed circuit lets others by"
        );
        h.end("m", true);
        assert!(!h.probing("m"));
    }

    #[test]
    fn rate_limits_pause_and_a_success_ends_the_streak() {
        let h = LocalHealth::default();
        let t0 = Instant::now();
        let until = h.rate_limited("m", t0, Some(Duration::from_secs(30)));
        assert!(until >= t0 + Duration::from_secs(30));
        assert_eq!(h.cooling_until("m"), Some(until));
        answer(&h, "m", 12.0);
        let p = h.local()["m"].pause.unwrap();
        assert_eq!((p.streak, p.until), (0, until), "the pause under way stays");
    }

    #[test]
    fn a_pause_says_why() {
        let h = LocalHealth::default();
        assert_eq!(h.pause_reason("m"), None);
        for _ in 0..3 {
            fail(&h, "m");
        }
        assert_eq!(
            h.pause_reason("m").as_deref(),
            Some("circuit open after 3 failures in a row")
        );
        h.rate_limited("r", Instant::now(), Some(Duration::from_secs(30)));
        assert_eq!(
            h.pause_reason("r").as_deref(),
            Some("rate-limited by the API")
        );
        let later = Instant::now() + Duration::from_secs(60);
        h.merge(HashMap::new(), HashMap::from([("o".to_string(), later)]));
        assert!(h.pause_reason("o").unwrap().contains("another process"));
    }

    #[test]
    fn failures_in_a_row_open_the_circuit_and_an_answer_closes_it() {
        let h = LocalHealth::default();
        assert_eq!(fail(&h, "m"), None);
        assert_eq!(fail(&h, "m"), None);
        let until = fail(&h, "m").expect("the third failure opens it");
        assert!(h.open("m"));
        assert_eq!(h.cooling_until("m"), Some(until));
        assert_eq!(h.state("m", Instant::now()), State::Open);
        // Half-open once the pause is over: one request at a time.
        h.local().get_mut("m").unwrap().open_until = Some(Instant::now());
        assert_eq!(h.cooling_until("m"), None);
        assert_eq!(h.begin("m", false), Some(true), "half-open: marked");
        assert!(h.cooling_until("m").is_some(), "others wait for it");
        assert_eq!(h.begin("m", false), None);
        // It fails again: open for twice as long.
        h.end("m", true);
        let again = fail(&h, "m").expect("reopened");
        assert!(again - Instant::now() > breaker_pause(1));
        answer(&h, "m", 10.0);
        assert!(!h.open("m"));
        assert_eq!(h.cooling_until("m"), None);
        let s = h.stat("m").unwrap();
        assert!(s.error_rate > 0.5 && s.tries == 5, "{s:?}");
    }

    #[test]
    fn what_says_nothing_of_the_model_changes_nothing() {
        let h = LocalHealth::default();
        for kind in ["rate_limited", "bad_request", "auth", "interrupted"] {
            h.observe("m", health_signal(false, Some(kind)), 5.0, None, 0);
        }
        assert_eq!(h.stat("m"), None);
        // A time-out is a failure and a latency sample.
        h.observe(
            "m",
            health_signal(false, Some("timeout")),
            60_000.0,
            None,
            7,
        );
        let s = h.stat("m").unwrap();
        assert_eq!(
            (s.samples, s.tries, s.ewma_ms, s.last_at),
            (1, 1, 60_000.0, 7)
        );
    }

    #[test]
    fn answers_from_before_the_process_fill_only_the_room_its_own_leave() {
        let h = LocalHealth::default();
        h.remember(HashMap::from([("m".to_string(), vec![20.0; 19])]));
        assert_eq!(h.hedge_delay_ms("m"), Some(60.0), "three times the median");
        let h = LocalHealth::default();
        for _ in 0..RECENT - 2 {
            answer(&h, "m", 10.0);
        }
        h.remember(HashMap::from([("m".to_string(), vec![1.0, 2.0, 3.0])]));
        let recent: Vec<f64> = h.local()["m"].recent.iter().copied().collect();
        assert_eq!(recent.len(), RECENT);
        assert_eq!(
            recent[..3],
            [2.0, 3.0, 10.0],
            "the older ones before, the oldest left out"
        );
    }

    #[test]
    fn an_answer_well_under_the_average_marks_a_recovery() {
        let h = LocalHealth::default();
        answer(&h, "m", 600.0);
        assert!(!h.improving("m"));
        answer(&h, "m", 50.0);
        assert!(h.improving("m"));
        answer(&h, "m", 500.0);
        assert!(!h.improving("m"));
    }
}
