//! The report as one self-contained HTML page (`--format html`), drawn by
//! [`crate::view`]: it opens offline, and mails as it is.

use super::Report;
use crate::view::data::{Bins, Summary};
use crate::view::html::{document, Page};
use crate::view::{Breakdown, ModelRow, Picture, TaskRow, Totals};

/// A page that loads nothing: styles inline, no scripts at all.
pub const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:";

pub fn render(report: &Report) -> String {
    let page = Page {
        csp_meta: Some(CSP),
        ..Page::default()
    };
    document(&picture(report), &page)
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// The picture of a report: the same numbers as the table and JSON.
pub fn picture(r: &Report) -> Picture {
    let mut subtitle = r.window();
    if !r.filter.is_empty() {
        subtitle.push_str(&format!(", models {}", r.filter.join(", ")));
    }
    Picture {
        title: "llmroute report".into(),
        subtitle,
        generated_ms: r.to_ms,
        totals: Totals {
            requests: count(r.requests),
            answered: count(r.answered),
            errors: count(r.errors),
            cache_hits: count(r.cache_hits),
            attempts: count(r.attempts),
            cost_usd: r.cost_usd,
            cost_unknown: count(r.cost_unknown_lines),
            prompt_tokens: count(r.tokens.prompt),
            completion_tokens: count(r.tokens.completion),
        },
        latency: Summary::of_sorted(r.latencies.sorted()),
        series: r.series.clone(),
        models: r
            .models
            .iter()
            .map(|m| ModelRow {
                model: m.model.clone(),
                attempts: count(m.requests),
                errors: count(m.errors),
                latency: Summary::of_sorted(m.latencies.sorted()),
                cost_usd: m.cost_usd,
                cost_unknown: count(m.cost_unknown_attempts),
                bins: Bins::of(m.latencies.sorted().iter().copied()),
            })
            .collect(),
        tasks: r
            .tasks
            .iter()
            .map(|t| TaskRow {
                task: t.task.clone(),
                model: t.model.clone(),
                answered: count(t.answered),
                feedback: count(t.feedback),
                mean_score: t.mean_score,
                learned_good_share: t.learned_good_share,
                learned_events: count(t.learned_events),
            })
            .collect(),
        breakdowns: breakdowns(r),
        live: None,
    }
}

/// The tables by key and by upstream, when there is more than one row to
/// tell apart (every line on the default upstream is no breakdown).
fn breakdowns(r: &super::Report) -> Vec<Breakdown> {
    fn table<const N: usize>(
        id: &str,
        title: &str,
        (header, rows): ([&str; N], Vec<[String; N]>),
    ) -> Breakdown {
        Breakdown {
            id: id.into(),
            title: title.into(),
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: rows.into_iter().map(Vec::from).collect(),
        }
    }
    let mut out = Vec::new();
    if !r.keys.is_empty() {
        out.push(table("by-key", "Keys", super::keys::cells(&r.keys)));
    }
    let named = r
        .upstreams
        .iter()
        .any(|u| u.upstream != super::upstreams::DEFAULT);
    if named {
        out.push(table(
            "by-upstream",
            "Upstreams",
            super::upstreams::cells(&r.upstreams),
        ));
    }
    out
}
