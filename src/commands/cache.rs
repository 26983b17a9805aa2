//! `llmroute cache`: stats, clear, prune.

use std::time::Duration;

use serde::Serialize;

use crate::cli::{CacheAction, CacheArgs, Since};
use crate::core::numbers::counted;
use crate::options::Options;
use crate::setup as app;
use crate::store;

#[derive(Serialize)]
struct StatsOut {
    path: String,
    entries: i64,
    /// Bytes of cached responses.
    bytes: i64,
    /// Bytes of the store file and its WAL.
    file_bytes: u64,
    oldest_ms: Option<i64>,
    newest_ms: Option<i64>,
    since: String,
    lookups: i64,
    hits: i64,
    hit_rate: f64,
}

/// Runs `llmroute cache ...`.
pub fn main(args: &CacheArgs, options: &Options) -> anyhow::Result<i32> {
    let path = options.store_path()?;
    let store = match &args.action {
        CacheAction::Stats { .. } => crate::setup::open_to_read(&path)?,
        _ => crate::setup::open_existing(&path)?,
    };
    let now = store::now_ms();
    let text = match &args.action {
        CacheAction::Clear => {
            let n = store.cache_remove(None).map_err(app::store_fatal(&path))?;
            format!("removed {}\n", counted(n as u64, "cached answer"))
        }
        CacheAction::Prune { older_than } => {
            let n = store
                .cache_remove(Some(crate::core::duration::before(now, *older_than)))
                .map_err(app::store_fatal(&path))?;
            format!(
                "removed {} older than {}\n",
                counted(n as u64, "cached answer"),
                crate::core::duration::format(*older_than)
            )
        }
        CacheAction::Stats { since, json } => {
            let (from, label) = match since {
                Since::All => (None, "all".to_string()),
                Since::Last(d) => (
                    Some(crate::core::duration::before(now, *d)),
                    crate::core::duration::window_label(*d),
                ),
            };
            let s = store.cache_stats(from).map_err(app::store_fatal(&path))?;
            let file_bytes = ["", "-wal"]
                .iter()
                .filter_map(|suffix| std::fs::metadata(format!("{}{suffix}", path.display())).ok())
                .map(|m| m.len())
                .sum();
            let out = StatsOut {
                path: path.display().to_string(),
                entries: s.entries,
                bytes: s.bytes,
                file_bytes,
                oldest_ms: s.oldest,
                newest_ms: s.newest,
                since: label,
                lookups: s.lookups,
                hits: s.hits,
                hit_rate: if s.lookups > 0 {
                    s.hits as f64 / s.lookups as f64
                } else {
                    0.0
                },
            };
            if *json {
                let mut t = serde_json::to_string_pretty(&out)?;
                t.push('\n');
                t
            } else {
                human(&out, now)
            }
        }
    };
    app::write_stdout(text.as_bytes())
}

fn age(now: i64, t: Option<i64>) -> String {
    t.map_or_else(
        || "-".into(),
        |t| {
            format!(
                "{} ago",
                crate::core::duration::human(Duration::from_millis(
                    now.saturating_sub(t).max(0) as u64
                ))
            )
        },
    )
}

fn human(s: &StatsOut, now: i64) -> String {
    let window = match s.since.as_str() {
        "all" => "all time".to_string(),
        d => format!("last {d}"),
    };
    format!(
        "store      {}\nentries    {}\nsize       {} of answers, {} on disk\noldest     {}\nnewest     {}\nhit rate   {:.1}% ({} of {}, {})\n",
        s.path,
        s.entries,
        crate::core::numbers::bytes(s.bytes.max(0) as u64),
        crate::core::numbers::bytes(s.file_bytes),
        age(now, s.oldest_ms),
        age(now, s.newest_ms),
        s.hit_rate * 100.0,
        s.hits,
        counted(s.lookups.max(0) as u64, "line"),
        window,
    )
}
