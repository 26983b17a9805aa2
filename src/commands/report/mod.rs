//! `llmroute report`: what the store says about past runs.
//!
//! The totals come from table `requests` (one row per routed input line), the
//! per-model rows from table `attempts` (one row per upstream attempt), each
//! read in one pass ([`query`]). Percentiles are exact (nearest rank), over
//! every latency in the window sorted in memory. The result is one [`Report`],
//! written as a table ([`table`]), JSON, or the Prometheus text format
//! ([`prometheus`]).

mod html;
mod keys;
mod prometheus;
mod query;
mod table;
mod tasks;
mod upstreams;

use std::io::IsTerminal;

use serde::Serialize;

use anyhow::Context;
use clap::ValueEnum;

pub use crate::core::health::percentile;

use crate::cli::{ReportArgs, ReportFormat, Since};
use crate::core::numbers;
use crate::options::Options;
use crate::store;

/// The quantiles every latency summary gives, in percent.
pub const QUANTILES: [u32; 3] = [50, 95, 99];

/// Runs `llmroute report` and returns the exit status.
pub fn main(args: &ReportArgs, options: &Options) -> anyhow::Result<i32> {
    let format = match (args.json, args.format) {
        (true, None | Some(ReportFormat::Json)) => ReportFormat::Json,
        (true, Some(other)) => {
            let name = other
                .to_possible_value()
                .map_or_else(String::new, |v| v.get_name().to_string());
            anyhow::bail!("--json conflicts with --format {name} (--json means --format json)")
        }
        (false, f) => f.unwrap_or(ReportFormat::Table),
    };
    let path = options.store_path()?;
    let store = crate::setup::open_to_read(&path)?;
    let window = Window::new(args.since, store::now_ms());
    let models = model_filter(&args.models);
    let mut report = query::load(store.conn(), &window, &models)
        .with_context(|| format!("cannot read the store at {}", path.display()))?;
    report.keys = keys::load(store.conn(), &window, &models)
        .with_context(|| format!("cannot read the store at {}", path.display()))?;
    report.tasks = tasks::load(store.conn(), &window, &models)
        .with_context(|| format!("cannot read the store at {}", path.display()))?;
    let names: Vec<String> = options.upstreams.keys().cloned().collect();
    report.upstreams = upstreams::load(store.conn(), &window, &names, &models)
        .with_context(|| format!("cannot read the store at {}", path.display()))?;
    let text = match format {
        ReportFormat::Table if args.by == crate::cli::ReportBy::Key => {
            keys::render(&report.keys, &report.window())
        }
        ReportFormat::Table if args.by == crate::cli::ReportBy::Task => {
            tasks::render(&report.tasks, &report.window())
        }
        ReportFormat::Table if args.by == crate::cli::ReportBy::Upstream => {
            let on_one: i64 = report.upstreams.iter().map(|u| u.requests).sum();
            let unrouted = match report.filter.is_empty() {
                true => (report.requests - on_one).max(0),
                false => 0,
            };
            upstreams::render(&report.upstreams, &report.window(), unrouted)
        }
        ReportFormat::Table => {
            // A file is never a terminal, whatever stdout is.
            let terminal = args.output.is_none() && std::io::stdout().is_terminal();
            table::render(&report, options.colours(terminal))
        }
        ReportFormat::Json => {
            let mut s = serde_json::to_string_pretty(&report)?;
            s.push('\n');
            s
        }
        ReportFormat::Prometheus => prometheus::render(&report),
        ReportFormat::Html => html::render(&report),
    };
    match &args.output {
        None => crate::setup::write_stdout(text.as_bytes()),
        Some(file) => {
            write_whole(file, text.as_bytes())
                .with_context(|| format!("cannot write the report to {}", file.display()))?;
            Ok(crate::setup::exit::OK)
        }
    }
}

/// "in the last 24h", or "in all time", of a window as
/// [`Report::window`] writes it.
pub fn within(window: &str) -> String {
    match window.starts_with("last ") {
        true => format!("in the {window}"),
        false => format!("in {window}"),
    }
}

/// Where `file` leads through its symbolic links, if it is one: their
/// last target, which need not exist yet.
fn through_links(file: &std::path::Path) -> std::io::Result<std::path::PathBuf> {
    let mut path = file.to_path_buf();
    // As many links as Linux follows.
    for _ in 0..40 {
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => {
                let to = std::fs::read_link(&path)?;
                // A relative target is relative to the link's directory.
                path = match path.parent() {
                    Some(dir) => dir.join(to),
                    None => to,
                };
            }
            _ => return Ok(path),
        }
    }
    Err(std::io::Error::other("too many levels of symbolic links"))
}

/// Writes `bytes` to `file` through a temporary file beside it, renamed
/// over it at the end: a reader (a mailer, a web server) sees the old
/// report or the new one, never half of one. The temporary file is always
/// a new one (never a file or link someone put there in its name).
fn write_whole(file: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    // Where the path leads: a link's target is written, not the link; a
    // FIFO or a device is written into, as a shell's `>` would.
    let resolved = through_links(file)?;
    let file = resolved.as_path();
    let old = std::fs::metadata(file).ok();
    if old.as_ref().is_some_and(|m| !m.is_file()) {
        return std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(file)?
            .write_all(bytes);
    }
    let name = file
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"))?;
    let (tmp, mut f) = new_beside(file, name)?;
    // A file replaced keeps its mode.
    let written = old
        .map_or(Ok(()), |m| f.set_permissions(m.permissions()))
        .and_then(|()| f.write_all(bytes))
        .and_then(|()| f.sync_all());
    drop(f);
    match written.and_then(|()| std::fs::rename(&tmp, file)) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// A file created new beside `file`: `.NAME.PID.N.tmp`, the first N free.
fn new_beside(
    file: &std::path::Path,
    name: &std::ffi::OsStr,
) -> std::io::Result<(std::path::PathBuf, std::fs::File)> {
    let mut last = None;
    for n in 0..100 {
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".{}.{n}.tmp", std::process::id()));
        let tmp = file.with_file_name(tmp_name);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
        {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no temporary name is free")))
}

/// The `--model` values, trimmed, without blanks or repeats, in the order given.
fn model_filter(models: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for m in models.iter().map(|m| m.trim()).filter(|m| !m.is_empty()) {
        if !out.iter().any(|o| o == m) {
            out.push(m.to_string());
        }
    }
    out
}

/// The rows a report covers: `ts >= from_ms` (no lower bound for `all`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// How the window is written on the command line: `24h`, `7d`, `all`.
    pub label: String,
    pub from_ms: Option<i64>,
    pub to_ms: i64,
}

impl Window {
    pub fn new(since: Since, now_ms: i64) -> Window {
        match since {
            Since::All => Window {
                label: "all".into(),
                from_ms: None,
                to_ms: now_ms,
            },
            Since::Last(d) => Window {
                label: crate::core::duration::window_label(d),
                // No record is from before 1970.
                from_ms: Some(crate::core::duration::before(now_ms, d).max(0)),
                to_ms: now_ms,
            },
        }
    }
}

/// Everything `llmroute report` says; serialises to the JSON report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The window as written on the command line (`24h`, `all`).
    pub since: String,
    /// The window's lower bound in unix ms; `null` for `all`.
    pub from_ms: Option<i64>,
    /// When the report was made, in unix ms.
    pub to_ms: i64,
    /// Rows of `requests`: routed input lines, cache hits included.
    pub requests: i64,
    /// Lines answered by a model (ok, not from the cache).
    pub answered: i64,
    /// Lines that ended with an error.
    pub errors: i64,
    /// Lines answered from the cache.
    pub cache_hits: i64,
    pub cache_hit_rate: f64,
    /// End-to-end latency of answered lines.
    pub latency_ms: LatencySummary,
    /// Sum of the lines' known costs.
    #[serde(serialize_with = "numbers::serialize_usd")]
    pub cost_usd: f64,
    /// Answered lines whose cost is unknown (no price, no `usage.cost`),
    /// left out of `cost_usd` rather than counted as 0.
    pub cost_unknown_lines: i64,
    /// Whether any line's cost is known: `cost_usd` is then a sum, $0
    /// included (a free model's), not nothing known.
    #[serde(skip)]
    pub cost_known: bool,
    /// Token sums over answered lines.
    pub tokens: Tokens,
    /// Upstream attempts (rows of `attempts` that are not cache hits).
    pub attempts: i64,
    /// One entry per model that was called, most attempts first.
    pub models: Vec<ModelReport>,
    /// One entry per client key that made requests, most requests first.
    pub keys: Vec<keys::KeyReport>,
    /// One entry per task and model that answered or got feedback.
    pub tasks: Vec<tasks::TaskReport>,
    /// One entry per upstream that ended requests, most requests first.
    pub upstreams: Vec<upstreams::UpstreamReport>,
    /// The `--model` filter, empty for none.
    #[serde(skip)]
    pub filter: Vec<String>,
    /// The answered lines' latencies, ascending.
    #[serde(skip)]
    pub latencies: Latencies,
    /// The lines over time.
    #[serde(skip)]
    pub series: crate::view::data::Series,
}

impl Report {
    /// The window for people: `last 24h` or `all time`.
    pub fn window(&self) -> String {
        match self.from_ms {
            None => "all time".into(),
            Some(_) => format!("last {}", self.since),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tokens {
    pub prompt: i64,
    pub completion: i64,
}

/// One model's upstream attempts.
#[derive(Debug, Clone, Serialize)]
pub struct ModelReport {
    pub model: String,
    /// Its attempts.
    pub requests: i64,
    /// Its attempts over all upstream attempts in the report.
    pub share: f64,
    /// Its failed attempts.
    pub errors: i64,
    pub error_rate: f64,
    /// Latency of its successful attempts.
    pub latency_ms: LatencySummary,
    /// Sum of its attempts' known costs.
    #[serde(serialize_with = "numbers::serialize_usd")]
    pub cost_usd: f64,
    /// Its successful attempts whose cost is unknown, left out of `cost_usd`.
    pub cost_unknown_attempts: i64,
    /// Whether any of its attempts' cost is known.
    #[serde(skip)]
    pub cost_known: bool,
    /// Its successful attempts' latencies, ascending.
    #[serde(skip)]
    pub latencies: Latencies,
}

/// avg, p50, p95, p99 and max of a set of latencies; all `None` when empty.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    pub avg: Option<f64>,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

/// Latencies in milliseconds, sorted ascending.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Latencies(Vec<f64>);

impl Latencies {
    pub fn new(mut values: Vec<f64>) -> Latencies {
        values.retain(|v| !v.is_nan());
        values.sort_unstable_by(f64::total_cmp);
        Latencies(values)
    }

    pub fn sorted(&self) -> &[f64] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn sum(&self) -> f64 {
        // Folding from +0.0: an empty `sum()` of floats is -0.0.
        self.0.iter().fold(0.0, |a, b| a + b)
    }

    pub fn percentile(&self, p: u32) -> Option<f64> {
        percentile(&self.0, p)
    }

    /// The summary, in ms with at most 3 decimals (sums leave float noise).
    pub fn summary(&self) -> LatencySummary {
        let s = crate::view::data::Summary::of_sorted(&self.0);
        let ms = |v: Option<f64>| v.map(|x| (x * 1000.0).round() / 1000.0);
        LatencySummary {
            avg: ms(s.avg),
            p50: ms(s.p50),
            p95: ms(s.p95),
            p99: ms(s.p99),
            max: ms(s.max),
        }
    }
}

/// `part / whole`, 0 when `whole` is 0.
/// The table of `report --by WHAT`: a row per thing under `header`, below
/// the heading `llmroute report by WHAT · WINDOW`.
fn by_table<const N: usize>(
    what: &str,
    window: &str,
    header: [&str; N],
    rows: impl IntoIterator<Item = [String; N]>,
) -> String {
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::NOTHING);
    t.set_header(header);
    for row in rows {
        t.add_row(row.map(|cell| crate::view::text::printable(&cell)));
    }
    without_trailing_blanks(&format!("llmroute report by {what} · {window}\n\n{t}\n"))
}

/// `text` with the blanks at the ends of its lines taken off (a table
/// pads its last column).
fn without_trailing_blanks(text: &str) -> String {
    text.lines()
        .map(|l| l.trim_end().to_string() + "\n")
        .collect()
}

fn ratio(part: i64, whole: i64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// What the tests of the reports by key and by upstream read.
#[cfg(test)]
mod fixtures {
    use crate::engine::ports::{Record, RequestRow};
    use crate::store::Store;

    /// A request that `model` answered (or did not) with `key`, at a cost.
    pub fn request(model: Option<&str>, key: Option<&str>, ok: bool, cost: f64) -> RequestRow {
        RequestRow {
            ts: 10,
            line: 1,
            request_id: None,
            model: model.map(Into::into),
            ok,
            cached: false,
            latency_ms: 1.0,
            cost_usd: Some(cost),
            prompt_tokens: Some(3),
            completion_tokens: Some(4),
            score: None,
            attempts: 1,
            error_type: None,
            key: key.map(Into::into),
            rid: None,
            task: None,
            charged_usd: None,
        }
    }

    /// A store holding these requests.
    pub fn store_of(rows: impl IntoIterator<Item = RequestRow>) -> Store {
        let s = Store::in_memory().unwrap();
        for r in rows {
            s.write_line(&Record {
                request: Some(r),
                ..Record::default()
            })
            .unwrap();
        }
        s
    }

    /// The whole store's time.
    pub fn all_time() -> super::Window {
        super::Window {
            label: "all".into(),
            from_ms: None,
            to_ms: 100,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Nearest rank the long way: the smallest value v such that at least
    /// p% of the values are <= v.
    fn by_definition(values: &[f64], p: u32) -> f64 {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len() as f64;
        *sorted
            .iter()
            .find(|&&v| sorted.iter().filter(|&&w| w <= v).count() as f64 * 100.0 >= p as f64 * n)
            .unwrap()
    }

    #[test]
    fn percentile_is_nearest_rank() {
        let one_to_hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&one_to_hundred, 50), Some(50.0));
        assert_eq!(percentile(&one_to_hundred, 95), Some(95.0));
        assert_eq!(percentile(&one_to_hundred, 99), Some(99.0));
        assert_eq!(percentile(&one_to_hundred, 100), Some(100.0));
        assert_eq!(percentile(&one_to_hundred, 0), Some(1.0), "clamped to 0");
        assert_eq!(percentile(&[], 50), None);
        assert_eq!(percentile(&[7.0], 99), Some(7.0));
        // Ten values: p50 is the 5th, p95 and p99 the 10th.
        let ten: Vec<f64> = (1..=10).map(|i| f64::from(i) * 10.0).collect();
        assert_eq!(percentile(&ten, 50), Some(50.0));
        assert_eq!(percentile(&ten, 95), Some(100.0));
        assert_eq!(percentile(&ten, 99), Some(100.0));
        // Three values: p50 is the 2nd (ceil(1.5) = 2).
        assert_eq!(percentile(&[1.0, 2.0, 3.0], 50), Some(2.0));
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 50), Some(2.0));
    }

    #[test]
    fn percentile_sees_a_slow_tail() {
        // 97 fast values and 3 very slow ones.
        let mut values: Vec<f64> = (0..97).map(|i| 100.0 + f64::from(i)).collect();
        values.extend([9_000.0, 12_000.0, 30_000.0]);
        let l = Latencies::new(values.iter().rev().copied().collect());
        assert_eq!(l.percentile(50), Some(149.0));
        assert_eq!(l.percentile(95), Some(194.0));
        assert_eq!(l.percentile(97), Some(196.0));
        assert_eq!(l.percentile(98), Some(9_000.0));
        assert_eq!(l.percentile(99), Some(12_000.0));
        let s = l.summary();
        assert_eq!(s.max, Some(30_000.0));
        assert_eq!(s.p99, Some(12_000.0));
        let avg = values.iter().sum::<f64>() / 100.0;
        assert!((s.avg.unwrap() - avg).abs() < 1e-9);
    }

    #[test]
    fn percentile_agrees_with_the_definition() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for n in 1..=60usize {
            let values: Vec<f64> = (0..n)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    (seed % 1000) as f64
                })
                .collect();
            let l = Latencies::new(values.clone());
            for p in [1, 10, 25, 50, 75, 90, 95, 99, 100] {
                assert_eq!(
                    l.percentile(p),
                    Some(by_definition(&values, p)),
                    "n={n} p={p}"
                );
            }
        }
    }

    #[test]
    fn empty_latencies_summarise_to_nulls() {
        let s = Latencies::new(vec![]).summary();
        assert_eq!(s, LatencySummary::default());
        let json = serde_json::to_value(s).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"avg": null, "p50": null, "p95": null, "p99": null, "max": null})
        );
    }

    #[test]
    fn an_empty_report_says_where_it_looked_in_words() {
        assert_eq!(
            keys::render(&[], "all time"),
            "no requests with a client key in all time\n"
        );
        assert_eq!(
            tasks::render(&[], "last 24h"),
            "no answers, feedback or learned quality in the last 24h\n"
        );
    }

    #[test]
    fn windows_and_their_labels() {
        let h = |n: u64| Duration::from_secs(n * 3600);
        assert_eq!(crate::core::duration::window_label(h(24)), "24h");
        assert_eq!(crate::core::duration::window_label(h(1)), "1h");
        assert_eq!(crate::core::duration::window_label(h(7 * 24)), "7d");
        assert_eq!(crate::core::duration::window_label(h(36)), "36h");
        assert_eq!(
            crate::core::duration::window_label(Duration::from_secs(90 * 60)),
            "90m"
        );
        assert_eq!(
            crate::core::duration::window_label(Duration::from_secs(45)),
            "45s"
        );
        assert_eq!(
            crate::core::duration::window_label(Duration::from_millis(1500)),
            "1500ms"
        );
        assert_eq!(crate::core::duration::window_label(Duration::ZERO), "0s");
        let w = Window::new(Since::Last(h(24)), 100_000_000);
        assert_eq!(w.from_ms, Some(100_000_000 - 86_400_000));
        assert_eq!((w.label.as_str(), w.to_ms), ("24h", 100_000_000));
        let all = Window::new(Since::All, 5);
        assert_eq!((all.label.as_str(), all.from_ms), ("all", None));
        // A window from before 1970 starts at 1970: no record is older.
        let huge = Window::new(Since::Last(Duration::from_secs(u64::MAX)), 5);
        assert_eq!(huge.from_ms, Some(0));
    }

    #[test]
    fn the_output_never_writes_through_a_planted_link() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let out = dir.path().join("r.html");
        // The temporary names a run of this process would try first.
        for n in 0..3 {
            let planted = dir
                .path()
                .join(format!(".r.html.{}.{n}.tmp", std::process::id()));
            std::os::unix::fs::symlink(&victim, planted).unwrap();
        }
        write_whole(&out, b"report").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert_eq!(std::fs::read(&out).unwrap(), b"report");
    }

    #[test]
    fn the_model_filter_is_trimmed_and_deduplicated() {
        let given = ["a/b", " c/d ", "", "a/b"].map(String::from);
        assert_eq!(model_filter(&given), vec!["a/b", "c/d"]);
    }
}
