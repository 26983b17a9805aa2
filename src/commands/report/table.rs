//! The report for people: totals, then one row per model, in 80 columns.
//!
//! Latency distributions are drawn as histograms over log-spaced latency
//! buckets. A bar's height grows with the square root of its count, and any
//! count at all draws at least the lowest bar, so that a handful of slow
//! requests still shows on the right.

use super::{Latencies, Report};
use crate::core::numbers;

/// The widest line the table writes.
const WIDTH: usize = 80;
/// Width of the labels in front of the totals.
const LABEL: usize = 10;
/// Cells of the totals' latency histogram.
const TOTAL_CELLS: usize = 24;
/// Cells of a model's latency histogram.
const MODEL_CELLS: usize = 8;
/// Cells of a model's share bar.
const BAR_CELLS: usize = 4;
/// Width of everything in a model row but the model's name. The attempts
/// column is 8 wide but holds at most 7 characters, which keeps it apart
/// from the name.
const ROW_FIXED: usize = 9 + (1 + 4 + 1 + BAR_CELLS) + (1 + 5) * 3 + (1 + MODEL_CELLS) + (1 + 7);
/// The narrowest model column.
const MIN_NAME: usize = 5;

const BLOCKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
const EIGHTHS: [char; 8] = [' ', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];
/// Latencies below this (ms) share the first histogram bucket.
const LOG_FLOOR_MS: f64 = 0.1;

/// ANSI styling, or none.
struct Paint {
    on: bool,
}

impl Paint {
    fn paint(&self, code: &str, s: &str) -> String {
        if self.on && !s.is_empty() {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    fn bold(&self, s: &str) -> String {
        self.paint("1", s)
    }
    fn dim(&self, s: &str) -> String {
        self.paint("2", s)
    }
    fn red(&self, s: &str) -> String {
        self.paint("31", s)
    }
    fn yellow(&self, s: &str) -> String {
        self.paint("33", s)
    }
    fn cyan(&self, s: &str) -> String {
        self.paint("36", s)
    }
}

/// The table; ANSI colours only when `colour`.
pub fn render(r: &Report, colour: bool) -> String {
    let p = Paint { on: colour };
    let mut out = String::new();
    let window = r.window();
    out.push_str(&p.bold(&format!("llmroute report · {window}")));
    out.push('\n');
    if !r.filter.is_empty() {
        let names: Vec<String> = r
            .filter
            .iter()
            .map(|m| crate::view::text::printable(m))
            .collect();
        wrapped(&mut out, "models", names, ", ");
    }
    out.push('\n');
    if r.requests == 0 && r.attempts == 0 {
        let scope = match r.from_ms {
            None => "in the store".to_string(),
            Some(_) => format!("in the {window}"),
        };
        let which = if r.filter.is_empty() {
            ""
        } else {
            " for these models"
        };
        out.push_str(&format!("no requests{which} {scope}\n"));
        return out;
    }
    totals(&mut out, r, &p);
    out.push('\n');
    models(&mut out, r, &p);
    super::without_trailing_blanks(&out)
}

fn totals(out: &mut String, r: &Report, p: &Paint) {
    let errors = format!(
        "errors {} ({})",
        count(r.errors),
        percent(r.errors, r.requests)
    );
    let errors = if r.errors > 0 { p.red(&errors) } else { errors };
    wrapped(
        out,
        "requests",
        vec![
            p.bold(&count(r.requests)),
            format!("answered {}", count(r.answered)),
            errors,
            format!(
                "cache hits {} ({})",
                count(r.cache_hits),
                percent(r.cache_hits, r.requests)
            ),
        ],
        "  ",
    );
    let l = &r.latency_ms;
    match (l.avg, l.p50, l.p95, l.p99, l.max) {
        (Some(avg), Some(p50), Some(p95), Some(p99), Some(max)) => {
            wrapped(
                out,
                "latency",
                vec![
                    format!("avg {}", millis(avg)),
                    format!("p50 {}", millis(p50)),
                    format!("p95 {}", millis(p95)),
                    format!("p99 {}", millis(p99)),
                    format!("max {}", millis(max)),
                ],
                "  ",
            );
            let lo = r.latencies.sorted()[0];
            let tail = Some(p95);
            let bars = histogram(&r.latencies, lo, max, TOTAL_CELLS, tail, p);
            let range = p.dim(&format!("{} … {}, log scale", millis(lo), millis(max)));
            out.push_str(&format!("{:LABEL$}{bars}  {range}\n", ""));
        }
        _ => wrapped(out, "latency", vec![p.dim("no answered requests")], ""),
    }
    wrapped(
        out,
        "cost",
        vec![
            total_cost(r.cost_usd, r.cost_known, r.cost_unknown_lines),
            format!(
                "tokens {} prompt · {} completion",
                count(r.tokens.prompt),
                count(r.tokens.completion)
            ),
        ],
        "  ",
    );
}

fn models(out: &mut String, r: &Report, p: &Paint) {
    if r.models.is_empty() {
        out.push_str(&p.dim("no upstream attempts in the window"));
        out.push('\n');
        return;
    }
    let names: Vec<String> = r
        .models
        .iter()
        .map(|m| crate::view::text::printable(&m.model))
        .collect();
    let name_width = names
        .iter()
        .map(|n| n.chars().count())
        .max()
        .unwrap_or(0)
        .clamp(MIN_NAME, WIDTH - ROW_FIXED);
    let header = format!(
        "{:<name_width$}{:>9} {:<w$} {:>5} {:>5} {:>5} {:<MODEL_CELLS$} {:>7}",
        "model",
        "attempts",
        "share",
        "err",
        "p50",
        "p99",
        "latency",
        "cost",
        w = 5 + BAR_CELLS
    );
    out.push_str(&p.bold(&header));
    out.push('\n');

    // One latency scale for every row, so that rows compare.
    let all: Vec<&Latencies> = r.models.iter().map(|m| &m.latencies).collect();
    let lo = all
        .iter()
        .filter_map(|l| l.sorted().first())
        .copied()
        .reduce(f64::min);
    let hi = all
        .iter()
        .filter_map(|l| l.sorted().last())
        .copied()
        .reduce(f64::max);
    let tail = overall_p95(&all);

    for (m, name) in r.models.iter().zip(&names) {
        let name = fit(name, name_width);
        let share = format!(
            "{:>4} {}",
            share_percent(m.share),
            p.cyan(&bar(m.share, BAR_CELLS))
        );
        let err = format!("{:>5}", percent(m.errors, m.requests));
        let err = match m.error_rate {
            x if x >= 0.1 => p.red(&err),
            x if x > 0.0 => p.yellow(&err),
            _ => p.dim(&err),
        };
        let q = |v: Option<f64>| v.map_or_else(|| "-".to_string(), millis);
        let bars = match (lo, hi, m.latencies.is_empty()) {
            (Some(lo), Some(hi), false) => histogram(&m.latencies, lo, hi, MODEL_CELLS, tail, p),
            _ => format!("{:<MODEL_CELLS$}", "-"),
        };
        out.push_str(&format!(
            "{name:<name_width$}{:>9} {share} {err} {:>5} {:>5} {bars} {:>7}\n",
            fit_count(m.requests, 7),
            q(m.latency_ms.p50),
            q(m.latency_ms.p99),
            model_cost(m.cost_usd, m.cost_unknown_attempts),
        ));
    }
    if let (Some(lo), Some(hi)) = (lo, hi) {
        let note = format!(
            "latency: successful attempts, {} … {}, log scale; err: failed attempts",
            millis(lo),
            millis(hi)
        );
        out.push_str(&p.dim(&fit(&note, WIDTH)));
        out.push('\n');
    }
}

/// The 95th percentile (nearest rank) of several sets taken together.
fn overall_p95(sets: &[&Latencies]) -> Option<f64> {
    let n: usize = sets.iter().map(|l| l.len()).sum();
    if n == 0 {
        return None;
    }
    let mut all: Vec<f64> = Vec::with_capacity(n);
    for l in sets {
        all.extend_from_slice(l.sorted());
    }
    let rank = (95 * n as u64).div_ceil(100).saturating_sub(1) as usize;
    let (_, v, _) = all.select_nth_unstable_by(rank.min(n - 1), f64::total_cmp);
    Some(*v)
}

/// Writes `label` and `parts` joined by `sep`, starting a new indented line
/// whenever the next part would pass [`WIDTH`].
fn wrapped(out: &mut String, label: &str, parts: Vec<String>, sep: &str) {
    let mut line = format!("{label:<LABEL$}");
    let mut first = true;
    for part in parts {
        let sep_now = if first { "" } else { sep };
        if !first && visible_width(&line) + sep.len() + visible_width(&part) > WIDTH {
            out.push_str(line.trim_end());
            out.push('\n');
            line = format!("{:LABEL$}", "");
            line.push_str(&part);
        } else {
            line.push_str(sep_now);
            line.push_str(&part);
        }
        first = false;
    }
    out.push_str(line.trim_end());
    out.push('\n');
}

/// Characters on screen: `s` without its ANSI escapes.
fn visible_width(s: &str) -> usize {
    let mut n = 0;
    let mut in_escape = false;
    for c in s.chars() {
        match (in_escape, c) {
            (false, '\x1b') => in_escape = true,
            (false, _) => n += 1,
            (true, 'm') => in_escape = false,
            (true, _) => {}
        }
    }
    n
}

/// `s` in at most `width` characters, cut in the middle with `…`.
fn fit(s: &str, width: usize) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= width {
        return s.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let tail = (width - 1) / 2;
    let head = width - 1 - tail;
    let mut out: String = chars[..head].iter().collect();
    out.push('…');
    out.extend(&chars[chars.len() - tail..]);
    out
}

/// A share in [0, 1] as a bar of `cells` characters, in eighths of a cell.
fn bar(share: f64, cells: usize) -> String {
    let eighths = (share.clamp(0.0, 1.0) * (cells * 8) as f64).round() as usize;
    // Any share at all shows as at least a sliver.
    let eighths = if share > 0.0 { eighths.max(1) } else { 0 };
    let mut s: String = std::iter::repeat_n('█', eighths / 8).collect();
    if eighths % 8 > 0 {
        s.push(EIGHTHS[eighths % 8]);
    }
    format!("{s:<cells$}")
}

/// A histogram of `values` over `cells` log-spaced buckets from `lo` to `hi`.
/// Buckets at or above the one holding `tail` are drawn in yellow.
fn histogram(
    values: &Latencies,
    lo: f64,
    hi: f64,
    cells: usize,
    tail: Option<f64>,
    p: &Paint,
) -> String {
    let levels = levels(values.sorted(), lo, hi, cells);
    let tail_from = tail.map_or(cells, |t| bucket(t, lo, hi, cells));
    let draw = |ls: &[u8]| -> String {
        ls.iter()
            .map(|&l| {
                if l == 0 {
                    ' '
                } else {
                    BLOCKS[usize::from(l) - 1]
                }
            })
            .collect()
    };
    let (body, rest) = levels.split_at(tail_from.min(cells));
    format!("{}{}", p.cyan(&draw(body)), p.yellow(&draw(rest)))
}

/// The bucket of `v` among `cells` log-spaced buckets from `lo` to `hi`.
fn bucket(v: f64, lo: f64, hi: f64, cells: usize) -> usize {
    let (a, b) = (lo.max(LOG_FLOOR_MS).ln(), hi.max(LOG_FLOOR_MS).ln());
    if b <= a || cells == 0 {
        return 0;
    }
    let x = (v.max(LOG_FLOOR_MS).ln() - a) / (b - a);
    ((x * cells as f64).floor().max(0.0) as usize).min(cells - 1)
}

/// Bar heights 0 (none) to 8 per bucket: the square root of the count,
/// scaled to the fullest bucket, and at least 1 for any count at all.
fn levels(values: &[f64], lo: f64, hi: f64, cells: usize) -> Vec<u8> {
    let mut counts = vec![0u64; cells];
    for &v in values {
        counts[bucket(v, lo, hi, cells)] += 1;
    }
    let top = counts.iter().copied().max().unwrap_or(0);
    counts
        .iter()
        .map(|&c| match c {
            0 => 0,
            _ => (8.0 * (c as f64 / top as f64).sqrt())
                .round()
                .clamp(1.0, 8.0) as u8,
        })
        .collect()
}

/// `1,234,567`, and `-1,234` below zero.
fn count(n: i64) -> String {
    let digits = crate::view::text::count(n.unsigned_abs());
    if n < 0 {
        format!("-{digits}")
    } else {
        digits
    }
}

/// A count in at most `width` characters: `123,456`, else `12.3M`.
fn fit_count(n: i64, width: usize) -> String {
    let s = count(n);
    if s.chars().count() <= width {
        return s;
    }
    compact(n as f64)
}

/// A large number in at most six characters: `12.3k`, `999.9M`.
fn compact(x: f64) -> String {
    for (size, unit) in [(1e3, "k"), (1e6, "M"), (1e9, "G"), (1e12, "T"), (1e15, "P")] {
        if x / size < 999.95 {
            return format!("{:.1}{unit}", x / size);
        }
    }
    format!("{:.0}E", x / 1e18)
}

/// `part / whole` in percent: `0%`, `<0.1%`, `2.5%`, `37%`.
fn percent(part: i64, whole: i64) -> String {
    if part <= 0 || whole <= 0 {
        return "0%".into();
    }
    let pc = part as f64 * 100.0 / whole as f64;
    match pc {
        x if x < 0.1 => "<0.1%".into(),
        x if x < 9.95 => format!("{x:.1}%"),
        x if x < 99.5 || part == whole => format!("{x:.0}%"),
        _ => ">99%".into(),
    }
}

/// A share in whole percent: `37%`, `<1%`.
fn share_percent(share: f64) -> String {
    let pc = share * 100.0;
    match pc {
        x if x <= 0.0 => "0%".into(),
        x if x < 0.5 => "<1%".into(),
        x if x >= 99.5 && share < 1.0 => ">99%".into(),
        x => format!("{x:.0}%"),
    }
}

/// Milliseconds in at most five characters: `0.4ms`, `612ms`, `2.10s`, `16.7m`.
fn millis(ms: f64) -> String {
    let s = ms / 1e3;
    match ms {
        x if x < 9.95 => format!("{x:.1}ms"),
        x if x < 999.5 => format!("{x:.0}ms"),
        _ if s < 9.995 => format!("{s:.2}s"),
        _ if s < 99.95 => format!("{s:.1}s"),
        _ if s < 999.5 => format!("{s:.0}s"),
        _ if s < 5_997.0 => format!("{:.1}m", s / 60.0),
        _ if s < 35_982.0 => format!("{:.1}h", s / 3600.0),
        _ => format!("{:.0}h", s / 3600.0),
    }
}

/// A model's cost in at most seven characters.
fn money(usd: f64) -> String {
    match usd {
        x if x <= 0.0 => "$0".into(),
        x if x < 0.001 => "<$0.001".into(),
        x if x < 0.99995 => format!("${x:.4}"),
        x if x < 999.995 => format!("${x:.2}"),
        x if x < 99_999.5 => format!("${}", count(x.round() as i64)),
        x => format!("${}", compact(x)),
    }
}

/// A model's cost: `?` when it is unknown, and `≥` before a sum that
/// leaves out attempts of unknown cost.
pub(super) fn model_cost(known: f64, unknown: i64) -> String {
    match (unknown, known) {
        (0, x) => money(x),
        (_, x) if x <= 0.0 => "?".into(),
        // At least the known part, rounded down, in seven characters.
        (_, x) if x < 0.001 => "≥$0".into(),
        (_, x) if x < 1.0 => format!("≥${:.3}", (x * 1000.0).floor() / 1000.0),
        (_, x) if x < 100.0 => format!("≥${:.1}", (x * 10.0).floor() / 10.0),
        (_, x) if x < 100_000.0 => format!("≥${}", x.floor()),
        (_, x) => format!("≥${}", compact(x)),
    }
}

/// The total cost, as costs in text are written (three significant
/// digits), and the lines whose cost is unknown, never shown as 0: `known`
/// sums the costs of the lines that have one, if any does (`any_known`; a
/// free model's $0 is a cost known).
pub(super) fn total_cost(known: f64, any_known: bool, unknown: i64) -> String {
    let lines = numbers::counted(unknown.max(0) as u64, "line");
    match (unknown, any_known) {
        (0, _) => numbers::usd(known),
        (_, false) => format!("unknown for {lines}"),
        (_, true) => format!("{} + unknown for {lines}", numbers::usd(known)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::report::{LatencySummary, ModelReport, Tokens};

    fn model(name: &str, attempts: i64, errors: i64, latencies: Vec<f64>) -> ModelReport {
        let latencies = Latencies::new(latencies);
        ModelReport {
            model: name.into(),
            requests: attempts,
            share: 0.0,
            errors,
            error_rate: errors as f64 / attempts as f64,
            latency_ms: latencies.summary(),
            cost_usd: 0.0123,
            cost_unknown_attempts: 0,
            cost_known: true,
            latencies,
        }
    }

    fn report(models: Vec<ModelReport>) -> Report {
        let mut answered: Vec<f64> = (0..97).map(|i| 200.0 + f64::from(i)).collect();
        answered.extend([8_000.0, 9_000.0, 20_000.0]);
        let latencies = Latencies::new(answered);
        let attempts: i64 = models.iter().map(|m| m.requests).sum();
        let models = models
            .into_iter()
            .map(|mut m| {
                m.share = m.requests as f64 / attempts as f64;
                m
            })
            .collect();
        Report {
            since: "24h".into(),
            from_ms: Some(0),
            to_ms: 1,
            requests: 1_234_567,
            answered: 100,
            errors: 7,
            cache_hits: 12,
            cache_hit_rate: 12.0 / 1_234_567.0,
            latency_ms: latencies.summary(),
            cost_usd: 12.5,
            cost_unknown_lines: 0,
            cost_known: true,
            tokens: Tokens {
                prompt: 123_456_789,
                completion: 987_654_321,
            },
            attempts,
            models,
            keys: Vec::new(),
            tasks: Vec::new(),
            upstreams: Vec::new(),
            filter: vec![],
            latencies,
            series: Default::default(),
        }
    }

    fn sample() -> Report {
        let fast: Vec<f64> = (0..500).map(|i| 300.0 + f64::from(i % 50)).collect();
        let mut slow_tail = fast.clone();
        slow_tail.extend([15_000.0, 16_000.0, 30_000.0]);
        report(vec![
            model("openai/gpt-5.4-mini", 503, 0, slow_tail),
            model(
                "anthropic/claude-sonnet-4.6-with-a-much-longer-name",
                400,
                3,
                fast,
            ),
            model("x\ny", 2, 2, vec![]),
        ])
    }

    #[test]
    fn lines_fit_in_80_columns_with_or_without_colour() {
        let plain = render(&sample(), false);
        let coloured = render(&sample(), true);
        assert!(!plain.contains('\x1b'));
        assert!(coloured.contains("\x1b["));
        for (a, b) in plain.lines().zip(coloured.lines()) {
            assert!(a.chars().count() <= WIDTH, "{a:?}");
            assert_eq!(visible_width(b), a.chars().count(), "{b:?}");
        }
        assert_eq!(plain.lines().count(), coloured.lines().count());
        assert!(plain.contains("openai/gpt-5.4-mini"), "{plain}");
        assert!(plain.contains("anthropic/cla…-longer-name "), "{plain}");
        assert!(
            plain.contains("x\\ny"),
            "a newline in a name is escaped: {plain}"
        );
    }

    #[test]
    fn the_slow_tail_shows_in_the_histogram() {
        let r = sample();
        let plain = render(&r, false);
        let row = plain
            .lines()
            .find(|l| l.starts_with("openai/"))
            .unwrap()
            .to_string();
        let fast_row = plain.lines().find(|l| l.starts_with("anthropic/")).unwrap();
        // Columns: the histogram is the 8 characters before the cost.
        let hist = |l: &str| -> String {
            let chars: Vec<char> = l.chars().collect();
            chars[chars.len() - 16..chars.len() - 8].iter().collect()
        };
        let (slow, fast) = (hist(&row), hist(fast_row));
        assert_ne!(slow.chars().last(), Some(' '), "tail bar in {row:?}");
        assert_eq!(fast.chars().last(), Some(' '), "no tail in {fast_row:?}");
        assert!(slow.starts_with('█'), "{row:?}");
    }

    #[test]
    fn an_empty_report_says_so() {
        let mut r = report(vec![]);
        r.requests = 0;
        r.attempts = 0;
        assert!(render(&r, false).contains("no requests in the last 24h"));
        r.from_ms = None;
        r.filter = vec!["a/b".into()];
        let t = render(&r, false);
        assert!(
            t.contains("no requests for these models in the store"),
            "{t}"
        );
        assert!(t.contains("a/b"));
    }

    #[test]
    fn no_answered_lines_and_no_attempts() {
        let mut r = report(vec![]);
        r.latency_ms = LatencySummary::default();
        r.latencies = Latencies::default();
        let t = render(&r, false);
        assert!(t.contains("no answered requests"), "{t}");
        assert!(t.contains("no upstream attempts"), "{t}");
    }

    #[test]
    fn numbers_are_short() {
        assert_eq!(count(0), "0");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(count(-1_000), "-1,000");
        assert_eq!(fit_count(12_345_678, 8), "12.3M");
        assert_eq!(fit_count(99_999_999, 8), "100.0M");
        assert_eq!(fit_count(123_456, 8), "123,456");
        for (ms, s) in [
            (0.42, "0.4ms"),
            (12.4, "12ms"),
            (999.4, "999ms"),
            (999.6, "1.00s"),
            (2_104.0, "2.10s"),
            (9_999.0, "10.0s"),
            (123_000.0, "123s"),
            (1_000_000.0, "16.7m"),
            (7_200_000.0, "2.0h"),
            (1e12, "277778h"),
        ] {
            assert_eq!(millis(ms), s);
        }
        for ms in [
            0.0,
            9.96,
            99.9,
            999.0,
            59_999.0,
            999_499.0,
            5_996_000.0,
            35_000_000.0,
        ] {
            assert!(millis(ms).len() <= 5, "{ms}: {}", millis(ms));
        }
        for usd in [
            0.0, 0.0004, 0.0123, 0.99996, 12.345, 999.999, 54_321.0, 123_456.0, 9e9,
        ] {
            assert!(money(usd).chars().count() <= 7, "{usd}: {}", money(usd));
        }
        assert_eq!(money(0.0123), "$0.0123");
        assert_eq!(money(12.346), "$12.35");
        assert_eq!(money(123_456.0), "$123.5k");
        assert_eq!(percent(0, 10), "0%");
        assert_eq!(percent(1, 4), "25%");
        assert_eq!(percent(1, 40), "2.5%");
        assert_eq!(percent(1, 10_000), "<0.1%");
        assert_eq!(percent(999, 1000), ">99%");
        assert_eq!(percent(5, 5), "100%");
        assert_eq!(share_percent(0.004), "<1%");
        assert_eq!(share_percent(1.0), "100%");
    }

    #[test]
    fn bars_and_buckets() {
        assert_eq!(bar(1.0, 4), "████");
        assert_eq!(bar(0.5, 4), "██  ");
        assert_eq!(bar(0.0, 4), "    ");
        assert_eq!(bar(0.001, 4), "▏   ");
        assert_eq!(bar(0.3, 4), "█▎  ");
        assert_eq!(bucket(10.0, 10.0, 1000.0, 8), 0);
        assert_eq!(bucket(1000.0, 10.0, 1000.0, 8), 7);
        assert_eq!(bucket(100.0, 10.0, 1000.0, 8), 4);
        assert_eq!(bucket(5.0, 5.0, 5.0, 8), 0);
        let mostly_fast = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 100.0];
        assert_eq!(levels(&mostly_fast, 1.0, 100.0, 4), vec![8, 0, 0, 3]);
        let mut skewed = vec![1.0; 1_000];
        skewed.extend([25.0; 250]);
        skewed.push(100.0);
        assert_eq!(levels(&skewed, 1.0, 100.0, 4), vec![8, 0, 4, 1]);
        assert_eq!(fit("abcdefghij", 5), "ab…ij");
        assert_eq!(fit("abc", 5), "abc");
        assert_eq!(overall_p95(&[]), None);
        let (a, b) = (
            Latencies::new((1..=50).map(f64::from).collect()),
            Latencies::new((51..=100).map(f64::from).collect()),
        );
        assert_eq!(overall_p95(&[&b, &a]), Some(95.0));
    }

    #[test]
    fn the_total_cost_keeps_three_significant_digits() {
        assert_eq!(total_cost(0.000_046, true, 0), "$0.000046");
        assert_eq!(
            total_cost(0.000_238, true, 2),
            "$0.000238 + unknown for 2 lines"
        );
        assert_eq!(total_cost(3.456, true, 0), "$3.46");
    }

    #[test]
    fn an_unknown_cost_is_never_zero() {
        assert_eq!(model_cost(0.0123, 0), "$0.0123");
        assert_eq!(model_cost(0.0, 3), "?");
        assert_eq!(model_cost(0.09829, 3), "≥$0.098");
        assert_eq!(model_cost(12.36, 1), "≥$12.3");
        for x in [0.0004, 0.5, 42.0, 5_000.0, 7e6] {
            assert!(model_cost(x, 1).chars().count() <= 7, "{x}");
        }
        assert_eq!(total_cost(0.5, true, 0), "$0.50");
        assert_eq!(total_cost(0.0, false, 1), "unknown for 1 line");
        assert_eq!(total_cost(0.0, true, 1), "$0 + unknown for 1 line");
        assert_eq!(total_cost(0.5, true, 3), "$0.50 + unknown for 3 lines");
    }
}
