//! The numbers behind the charts, as plain data: latency bins, time buckets
//! and the most recent latencies. No I/O, no clock but the times given.

use std::collections::VecDeque;

/// The upper edges of the latency bins, in ms: 1, 1.5, 2, 3, 5 and 7 in each
/// decade from 1 ms to 100 s. Bin 0 is under 1 ms, bin `i` is
/// `[EDGES[i-1], EDGES[i])`, and the last bin is 100 s and over.
pub const EDGES: [f64; 31] = [
    1.0, 1.5, 2.0, 3.0, 5.0, 7.0, //
    10.0, 15.0, 20.0, 30.0, 50.0, 70.0, //
    100.0, 150.0, 200.0, 300.0, 500.0, 700.0, //
    1e3, 1.5e3, 2e3, 3e3, 5e3, 7e3, //
    1e4, 1.5e4, 2e4, 3e4, 5e4, 7e4, //
    1e5,
];

/// How many latency bins there are.
pub const BINS: usize = EDGES.len() + 1;

/// The fewest bins a histogram shows.
pub const SHOWN: usize = 6;

/// A latency histogram over [`EDGES`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bins {
    counts: [u64; BINS],
}

impl Default for Bins {
    fn default() -> Bins {
        Bins { counts: [0; BINS] }
    }
}

impl Bins {
    /// The histogram of `values` (ms); NaN is left out.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Bins {
        let mut b = Bins::default();
        for v in values {
            b.add(v);
        }
        b
    }

    /// The bin `ms` falls in.
    pub fn index(ms: f64) -> usize {
        EDGES.partition_point(|&e| e <= ms)
    }

    pub fn add(&mut self, ms: f64) {
        if !ms.is_nan() {
            self.counts[Bins::index(ms)] += 1;
        }
    }

    pub fn counts(&self) -> &[u64; BINS] {
        &self.counts
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The first and last bins that hold anything.
    pub fn occupied(&self) -> Option<(usize, usize)> {
        let first = self.counts.iter().position(|&c| c > 0)?;
        let last = self.counts.iter().rposition(|&c| c > 0)?;
        Some((first, last))
    }

    /// The bins a chart shows: those used, widened to at least
    /// [`SHOWN`] bins so that a narrow spread still has a scale.
    pub fn shown(&self) -> (usize, usize) {
        let (mut lo, mut hi) = self
            .occupied()
            .unwrap_or((Bins::index(100.0), Bins::index(100.0)));
        while hi - lo + 1 < SHOWN {
            lo = lo.saturating_sub(1);
            if hi - lo + 1 < SHOWN && hi < BINS - 1 {
                hi += 1;
            }
        }
        (lo, hi)
    }

    /// The upper edge of bin `i` in ms; `None` for the last.
    pub fn upper(i: usize) -> Option<f64> {
        EDGES.get(i).copied()
    }

    /// The lower edge of bin `i` in ms (0 for the first).
    pub fn lower(i: usize) -> f64 {
        if i == 0 {
            0.0
        } else {
            EDGES[(i - 1).min(EDGES.len() - 1)]
        }
    }

    /// Bin `i` for people: `<1 ms`, `10–15 ms`, `1.5–2 s`, `≥100 s`.
    pub fn label(i: usize) -> String {
        match i {
            0 => format!("<{}", ms_label(EDGES[0])),
            i if i >= EDGES.len() => format!("≥{}", ms_label(EDGES[EDGES.len() - 1])),
            i => {
                let (lo, hi) = (EDGES[i - 1], EDGES[i]);
                if lo < 1000.0 && hi >= 1000.0 {
                    format!("{}–{}", ms_label(lo), ms_label(hi))
                } else {
                    let hi = ms_label(hi);
                    let unit = hi.rsplit(' ').next().unwrap_or("");
                    let lo = ms_label(lo);
                    format!("{}–{hi}", lo.trim_end_matches(unit).trim_end())
                }
            }
        }
    }
}

/// A latency for people: `15 ms`, `1.5 s`.
pub fn ms_label(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{} s", trim(ms / 1000.0))
    } else {
        format!("{} ms", trim(ms))
    }
}

/// A number with at most one decimal and no trailing zero.
fn trim(x: f64) -> String {
    let s = format!("{x:.1}");
    s.strip_suffix(".0").map_or(s.clone(), str::to_string)
}

/// The widths a time bucket may have, in ms: round numbers of seconds,
/// minutes, hours and days.
const WIDTHS_MS: [i64; 23] = [
    1_000,
    2_000,
    5_000,
    10_000,
    15_000,
    30_000,
    60_000,
    120_000,
    300_000,
    600_000,
    900_000,
    1_800_000,
    3_600_000,
    7_200_000,
    10_800_000,
    21_600_000,
    43_200_000,
    86_400_000,
    172_800_000,
    604_800_000,
    2_592_000_000,
    7_776_000_000,
    31_536_000_000,
];

/// The narrowest round width that covers `span_ms` in at most `max`
/// buckets (the widest there is for longer spans).
pub fn bucket_width(span_ms: i64, max: usize) -> i64 {
    let max = max.max(1) as i64;
    WIDTHS_MS
        .iter()
        .copied()
        .find(|w| {
            let span = span_ms.max(1);
            span / w + i64::from(span % w != 0) <= max
        })
        .unwrap_or(WIDTHS_MS[WIDTHS_MS.len() - 1])
}

/// What happened to the requests of one stretch of time.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Bucket {
    /// Its start, in unix ms; it ends where the next starts.
    pub start_ms: i64,
    pub requests: u64,
    pub errors: u64,
    pub cache_hits: u64,
    /// The known costs of its answers.
    pub cost_usd: f64,
}

impl Bucket {
    /// The share of its requests the cache answered; `None` with none.
    pub fn hit_rate(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.cache_hits as f64 / self.requests as f64)
    }
}

/// Requests over time, in buckets of one width aligned on multiples of it
/// since the epoch (so on whole minutes, hours, UTC days).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    width_ms: i64,
    buckets: VecDeque<Bucket>,
    /// Rolling: later times add buckets and drop the oldest, keeping
    /// this many. Fixed (`None`): later times count in the last bucket.
    keep: Option<usize>,
}

impl Default for Series {
    /// No buckets: counts nothing.
    fn default() -> Series {
        Series {
            width_ms: 60_000,
            buckets: VecDeque::new(),
            keep: None,
        }
    }
}

impl Series {
    /// Buckets covering `from_ms..=to_ms`, at most about `max` of them.
    /// A span longer than `max` of the widest buckets keeps its end.
    pub fn spanning(from_ms: i64, to_ms: i64, max: usize) -> Series {
        let to_ms = to_ms.max(from_ms);
        let width_ms = bucket_width(to_ms.saturating_sub(from_ms), max);
        let last = to_ms.div_euclid(width_ms) * width_ms;
        let widest = (max.max(1) as i64).saturating_mul(width_ms);
        let first = from_ms.max(last.saturating_sub(widest));
        let first = first.div_euclid(width_ms) * width_ms;
        let buckets = (0..=(last - first) / width_ms)
            .map(|i| Bucket {
                start_ms: first + i * width_ms,
                ..Bucket::default()
            })
            .collect();
        Series {
            width_ms,
            buckets,
            keep: None,
        }
    }

    /// The last `keep` buckets of `width_ms` up to `now_ms`, rolling on
    /// as later times are added.
    pub fn rolling(width_ms: i64, keep: usize, now_ms: i64) -> Series {
        let width_ms = width_ms.max(1);
        let keep = keep.max(1);
        let last = now_ms.div_euclid(width_ms) * width_ms;
        let buckets = (0..keep as i64)
            .rev()
            .map(|i| Bucket {
                start_ms: last - i * width_ms,
                ..Bucket::default()
            })
            .collect();
        Series {
            width_ms,
            buckets,
            keep: Some(keep),
        }
    }

    pub fn width_ms(&self) -> i64 {
        self.width_ms
    }

    pub fn buckets(&self) -> impl ExactSizeIterator<Item = &Bucket> + Clone {
        self.buckets.iter()
    }

    /// The start of the first bucket and the end of the last.
    pub fn span(&self) -> (i64, i64) {
        let first = self.buckets.front().map_or(0, |b| b.start_ms);
        let last = self.buckets.back().map_or(0, |b| b.start_ms);
        (first, last + self.width_ms)
    }

    /// Without the buckets that end at or before `ms`, keeping at least
    /// the last `min` (a chart of a process that just started still has
    /// a scale).
    pub fn since(&self, ms: i64, min: usize) -> Series {
        let mut s = self.clone();
        while s.buckets.len() > min.max(1)
            && s.buckets
                .front()
                .is_some_and(|b| b.start_ms + s.width_ms <= ms)
        {
            s.buckets.pop_front();
        }
        s
    }

    /// Rolls a rolling series on to `now_ms`; a fixed one stays.
    pub fn advance(&mut self, now_ms: i64) {
        let Some(keep) = self.keep else { return };
        let target = now_ms.div_euclid(self.width_ms) * self.width_ms;
        let Some(last) = self.buckets.back().map(|b| b.start_ms) else {
            return;
        };
        if target <= last {
            return;
        }
        let missing = (target - last) / self.width_ms;
        if missing as usize >= keep {
            // All of it is older than what is kept: start afresh.
            self.buckets.clear();
            for i in (0..keep as i64).rev() {
                self.buckets.push_back(Bucket {
                    start_ms: target - i * self.width_ms,
                    ..Bucket::default()
                });
            }
            return;
        }
        for i in 1..=missing {
            self.buckets.push_back(Bucket {
                start_ms: last + i * self.width_ms,
                ..Bucket::default()
            });
        }
        while self.buckets.len() > keep {
            self.buckets.pop_front();
        }
    }

    /// Counts one request at `ts_ms`. Before the first bucket it is left
    /// out; after the last it rolls the series on, or counts in the last
    /// bucket of a fixed one.
    pub fn add(&mut self, ts_ms: i64, ok: bool, cached: bool, cost_usd: Option<f64>) {
        self.advance(ts_ms);
        let Some(first) = self.buckets.front().map(|b| b.start_ms) else {
            return;
        };
        if ts_ms < first {
            return;
        }
        let i = ((ts_ms - first) / self.width_ms) as usize;
        let i = i.min(self.buckets.len() - 1);
        let b = &mut self.buckets[i];
        b.requests += 1;
        b.errors += u64::from(!ok);
        b.cache_hits += u64::from(cached);
        if let Some(c) = cost_usd.filter(|c| c.is_finite()) {
            b.cost_usd += c;
        }
    }
}

/// The last `cap` values added, oldest first.
#[derive(Debug, Clone, Default)]
pub struct Recent<T> {
    values: VecDeque<T>,
    cap: usize,
}

impl<T: Clone> Recent<T> {
    pub fn new(cap: usize) -> Recent<T> {
        Recent {
            values: VecDeque::with_capacity(cap.min(1024)),
            cap: cap.max(1),
        }
    }

    pub fn push(&mut self, v: T) {
        if self.values.len() == self.cap {
            self.values.pop_front();
        }
        self.values.push_back(v);
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Newest first.
    pub fn newest(&self) -> impl Iterator<Item = &T> {
        self.values.iter().rev()
    }

    pub fn to_vec(&self) -> Vec<T> {
        self.values.iter().cloned().collect()
    }
}

/// avg, p50, p95, p99 and max of some latencies; all `None` when empty.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Summary {
    pub count: u64,
    pub avg: Option<f64>,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

impl Summary {
    /// The summary of latencies sorted ascending (nearest-rank percentiles).
    pub fn of_sorted(sorted: &[f64]) -> Summary {
        let p = |q| crate::core::health::percentile(sorted, q);
        let n = sorted.len();
        Summary {
            count: n as u64,
            avg: (n > 0).then(|| sorted.iter().fold(0.0, |a, b| a + b) / n as f64),
            p50: p(50),
            p95: p(95),
            p99: p(99),
            max: sorted.last().copied(),
        }
    }

    /// The summary of latencies in any order; NaN is left out.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Summary {
        let mut v: Vec<f64> = values.into_iter().filter(|x| !x.is_nan()).collect();
        v.sort_unstable_by(f64::total_cmp);
        Summary::of_sorted(&v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bin of `ms` the long way: count the edges at or below it.
    fn bin_by_hand(ms: f64) -> usize {
        EDGES.iter().filter(|&&e| e <= ms).count()
    }

    #[test]
    fn values_fall_in_the_bin_their_edges_say() {
        let values = [
            0.0, 0.3, 0.999, 1.0, 1.2, 1.5, 9.99, 10.0, 14.9, 15.0, 99.0, 100.0, 250.0, 999.9,
            1000.0, 1499.0, 7000.0, 69_999.0, 70_000.0, 99_999.9, 100_000.0, 1e9,
        ];
        for v in values {
            assert_eq!(Bins::index(v), bin_by_hand(v), "{v} ms");
        }
        let b = Bins::of(values);
        assert_eq!(b.total(), values.len() as u64);
        for i in 0..BINS {
            let by_hand = values.iter().filter(|&&v| bin_by_hand(v) == i).count() as u64;
            assert_eq!(b.counts()[i], by_hand, "bin {i}");
        }
        assert_eq!(b.counts()[0], 3, "0, 0.3 and 0.999 are under 1 ms");
        assert_eq!(b.counts()[BINS - 1], 2, "100 s and 1e9 ms are the last bin");
        assert_eq!(Bins::of([f64::NAN]).total(), 0);
    }

    #[test]
    fn edges_rise_and_bins_have_labels() {
        assert!(EDGES.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(Bins::label(0), "<1 ms");
        assert_eq!(Bins::label(Bins::index(12.0)), "10–15 ms");
        assert_eq!(Bins::label(Bins::index(800.0)), "700 ms–1 s");
        assert_eq!(Bins::label(Bins::index(1700.0)), "1.5–2 s");
        assert_eq!(Bins::label(BINS - 1), "≥100 s");
        assert_eq!(Bins::lower(Bins::index(12.0)), 10.0);
        assert_eq!(Bins::lower(0), 0.0);
    }

    #[test]
    fn occupied_finds_the_first_and_last_bins_used() {
        assert_eq!(Bins::default().occupied(), None);
        let b = Bins::of([12.0, 400.0, 13.0]);
        assert_eq!(b.occupied(), Some((Bins::index(12.0), Bins::index(400.0))));
    }

    #[test]
    fn a_narrow_histogram_is_shown_with_some_scale() {
        let one = Bins::of([800.0, 810.0]);
        let (lo, hi) = one.shown();
        assert_eq!(hi - lo + 1, SHOWN);
        assert!(lo <= Bins::index(800.0) && Bins::index(800.0) <= hi);
        assert_eq!(Bins::of([0.1]).shown(), (0, SHOWN - 1));
        assert_eq!(Bins::of([1e9]).shown(), (BINS - SHOWN, BINS - 1));
        let wide = Bins::of([1.0, 50_000.0]);
        assert_eq!(wide.shown(), wide.occupied().unwrap());
        assert_eq!(Bins::upper(0), Some(1.0));
        assert_eq!(Bins::upper(BINS - 1), None);
    }

    #[test]
    fn a_huge_span_neither_overflows_nor_makes_billions_of_buckets() {
        assert_eq!(bucket_width(i64::MAX, 96), 31_536_000_000);
        let s = Series::spanning(5 - i64::MAX, 5, 96);
        assert!(s.buckets().len() <= 97, "{}", s.buckets().len());
        assert!(s.span().1 > 5, "it ends at the window's end");
        let s = Series::spanning(i64::MIN, i64::MAX, 10);
        assert!(s.buckets().len() <= 11);
    }

    #[test]
    fn bucket_widths_are_round_and_cover_the_span() {
        let hour = 3_600_000;
        assert_eq!(bucket_width(24 * hour, 96), 15 * 60_000);
        assert_eq!(bucket_width(hour, 60), 60_000);
        assert_eq!(bucket_width(hour, 120), 30_000);
        assert_eq!(bucket_width(0, 10), 1_000);
        assert_eq!(bucket_width(i64::MAX / 2, 10), 31_536_000_000);
        for span in [1, 999, 60_000, 7 * 24 * hour, 365 * 24 * hour] {
            let w = bucket_width(span, 100);
            assert!((span + w - 1) / w <= 100 || w == 31_536_000_000, "{span}");
        }
    }

    /// Buckets the long way: each timestamp's bucket start, then counts.
    fn by_hand(width: i64, rows: &[(i64, bool, bool, f64)]) -> Vec<(i64, u64, u64, u64, f64)> {
        let mut out: Vec<(i64, u64, u64, u64, f64)> = Vec::new();
        for &(ts, ok, cached, cost) in rows {
            let start = ts - ts.rem_euclid(width);
            match out.iter_mut().find(|b| b.0 == start) {
                Some(b) => {
                    b.1 += 1;
                    b.2 += u64::from(!ok);
                    b.3 += u64::from(cached);
                    b.4 += cost;
                }
                None => out.push((start, 1, u64::from(!ok), u64::from(cached), cost)),
            }
        }
        out.sort_by_key(|b| b.0);
        out
    }

    #[test]
    fn a_fixed_series_counts_each_request_in_its_bucket() {
        let day = 86_400_000;
        let from = 1_700_000_123_456;
        let mut seed = 7u64;
        let rows: Vec<(i64, bool, bool, f64)> = (0..2000)
            .map(|i| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let ts = from + (seed >> 20) as i64 % day;
                (ts, i % 7 != 0, i % 3 == 0, 0.001 * (i % 5) as f64)
            })
            .collect();
        let mut s = Series::spanning(from, from + day, 96);
        assert_eq!(s.width_ms(), 900_000);
        for &(ts, ok, cached, cost) in &rows {
            s.add(ts, ok, cached, Some(cost));
        }
        let expected = by_hand(s.width_ms(), &rows);
        let got: Vec<_> = s
            .buckets()
            .filter(|b| b.requests > 0)
            .map(|b| (b.start_ms, b.requests, b.errors, b.cache_hits, b.cost_usd))
            .collect();
        assert_eq!(got.len(), expected.len());
        for (g, e) in got.iter().zip(&expected) {
            assert_eq!((g.0, g.1, g.2, g.3), (e.0, e.1, e.2, e.3));
            assert!((g.4 - e.4).abs() < 1e-9);
        }
        let (start, end) = s.span();
        assert!(start <= from && end > from + day);
        assert_eq!(start % 900_000, 0, "aligned on a quarter hour");
        let total: u64 = s.buckets().map(|b| b.requests).sum();
        assert_eq!(total, 2000);
    }

    #[test]
    fn a_fixed_series_keeps_late_rows_and_drops_early_ones() {
        let mut s = Series::spanning(60_000, 120_000, 10);
        s.add(10, true, false, None);
        s.add(500_000, false, false, None);
        let last = s.buckets().last().unwrap();
        assert_eq!((last.requests, last.errors), (1, 1));
        assert_eq!(s.buckets().map(|b| b.requests).sum::<u64>(), 1);
    }

    #[test]
    fn a_rolling_series_keeps_the_last_buckets() {
        let mut s = Series::rolling(10_000, 6, 1_000_000);
        assert_eq!(s.buckets().len(), 6);
        assert_eq!(s.span(), (950_000, 1_010_000));
        s.add(1_005_000, true, true, Some(0.5));
        s.add(1_021_000, true, false, None);
        assert_eq!(s.span(), (970_000, 1_030_000));
        let counts: Vec<u64> = s.buckets().map(|b| b.requests).collect();
        assert_eq!(counts, [0, 0, 0, 1, 0, 1]);
        assert_eq!(s.buckets().nth(3).unwrap().hit_rate(), Some(1.0));
        assert_eq!(s.buckets().nth(4).unwrap().hit_rate(), None);
        s.advance(5_000_000);
        assert_eq!(s.buckets().len(), 6);
        assert!(s.buckets().all(|b| b.requests == 0));
        assert_eq!(s.span().1, 5_010_000);
        s.add(10, true, false, None);
        assert!(s.buckets().all(|b| b.requests == 0), "too old to count");
    }

    #[test]
    fn since_drops_the_buckets_before_a_start() {
        let s = Series::rolling(10_000, 100, 1_000_000);
        let t = s.since(950_000, 3);
        assert_eq!(t.span(), (950_000, 1_010_000));
        let t = s.since(1_005_000, 3);
        assert_eq!(t.buckets().len(), 3, "at least three");
        assert_eq!(s.since(0, 3).buckets().len(), 100);
    }

    #[test]
    fn recent_keeps_the_newest() {
        let mut r = Recent::new(3);
        for i in 0..5 {
            r.push(i);
        }
        assert_eq!(r.to_vec(), [2, 3, 4]);
        assert_eq!(r.newest().copied().collect::<Vec<_>>(), [4, 3, 2]);
    }

    #[test]
    fn a_summary_agrees_with_sorting_by_hand() {
        let values: Vec<f64> = (1..=200).rev().map(f64::from).collect();
        let s = Summary::of(values.iter().copied().chain([f64::NAN]));
        assert_eq!(s.count, 200);
        assert_eq!(
            (s.p50, s.p95, s.p99, s.max),
            (Some(100.0), Some(190.0), Some(198.0), Some(200.0))
        );
        assert_eq!(s.avg, Some(100.5));
        assert_eq!(Summary::of([]), Summary::default());
    }
}
