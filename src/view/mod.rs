//! Pictures of the router at work, for `llmroute report --format html` and
//! the server's dashboard: one [`Picture`] of some traffic, drawn as SVG
//! charts ([`chart`], with `plotters`) in one self-contained HTML page
//! ([`html`]). The numbers behind the charts are plain data ([`data`]).
//!
//! Neither front end nor command is imported here: the report fills a
//! picture from the store, the server from its live counters.

pub mod chart;
pub mod data;
pub mod html;
pub mod text;

use serde::Serialize;

use data::{Bins, Series, Summary};

/// What a page shows.
#[derive(Debug, Clone)]
pub struct Picture {
    /// The page's heading.
    pub title: String,
    /// What it covers, in a few words (`last 24h`, `this server, up 5m`).
    pub subtitle: String,
    /// When it was made, in unix ms.
    pub generated_ms: i64,
    pub totals: Totals,
    /// End-to-end latency of answered requests (cache hits left out).
    pub latency: Summary,
    /// Requests, errors, cost and cache hits over time.
    pub series: Series,
    /// Upstream attempts by model, most first.
    pub models: Vec<ModelRow>,
    /// Answers and feedback by task and model (the report's; none shown
    /// when empty).
    pub tasks: Vec<TaskRow>,
    /// Other tables of the report (by key, by upstream), as its text
    /// tables have them.
    pub breakdowns: Vec<Breakdown>,
    /// What only a running server knows.
    pub live: Option<Live>,
}

/// Counts over the whole picture.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Totals {
    /// Requests routed, cache hits included.
    pub requests: u64,
    /// Requests a model answered (not the cache).
    pub answered: u64,
    /// Requests that ended with an error.
    pub errors: u64,
    /// Requests the cache answered.
    pub cache_hits: u64,
    /// Upstream attempts.
    pub attempts: u64,
    /// Known costs.
    pub cost_usd: f64,
    /// Answers whose cost is unknown, left out of `cost_usd`.
    pub cost_unknown: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

impl Totals {
    pub fn hit_rate(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.cache_hits as f64 / self.requests as f64)
    }
}

/// One model's upstream attempts.
#[derive(Debug, Clone, Serialize)]
pub struct ModelRow {
    pub model: String,
    pub attempts: u64,
    pub errors: u64,
    /// Latency of its successful attempts.
    pub latency: Summary,
    pub cost_usd: f64,
    /// Its answers whose cost is unknown, left out of `cost_usd`.
    pub cost_unknown: u64,
    /// Its successful attempts' latencies, binned.
    #[serde(skip)]
    pub bins: Bins,
}

/// What a running server adds to its picture.
#[derive(Debug, Clone, Serialize)]
pub struct Live {
    /// Requests a second over the last few seconds.
    pub requests_per_second: f64,
    /// Requests holding an upstream slot, and waiting for one.
    pub in_flight: i64,
    pub queued: i64,
    pub uptime_s: u64,
    /// The ranking each priority would make now.
    pub rankings: Vec<Ranking>,
    /// The last requests, newest first.
    pub recent: Vec<RecentRequest>,
    /// The client keys: their spend, budget left and rate use.
    pub keys: Vec<KeyRow>,
}

/// One task and model: its answers, the feedback on them, and what the
/// router learned of the model on the task.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TaskRow {
    pub task: String,
    pub model: String,
    pub answered: u64,
    pub feedback: u64,
    pub mean_score: Option<f64>,
    pub learned_good_share: Option<f64>,
    pub learned_events: u64,
}

/// A table of a breakdown, its cells written as for people.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Breakdown {
    /// The table's id in the page (`keys`, `upstreams`).
    pub id: String,
    pub title: String,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// One client key as the dashboard shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct KeyRow {
    pub name: String,
    /// Requests through this server, and how many its rates refused.
    pub requests: u64,
    pub rate_limited: u64,
    /// What its budget's period has spent (with what is in flight), of
    /// how much; none without a budget.
    pub spent_usd: Option<f64>,
    pub budget_usd: Option<f64>,
    pub left_usd: Option<f64>,
    /// `day`, `month` or `total`.
    pub period: Option<String>,
    /// This minute's requests and tokens, and the key's rates.
    pub requests_this_minute: u64,
    pub rpm: Option<u32>,
    pub tokens_this_minute: u64,
    pub tpm: Option<u32>,
}

/// The candidates of one priority, best first.
#[derive(Debug, Clone, Serialize)]
pub struct Ranking {
    pub priority: String,
    /// Whether it is the one a request gets when it names none.
    pub default: bool,
    pub candidates: Vec<Candidate>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    pub model: String,
    /// None for one the budget excludes: it is not ranked.
    pub score: Option<f64>,
    pub latency_ms: Option<f64>,
    /// Whether `latency_ms` was measured, not assumed.
    pub latency_measured: bool,
    /// USD per million prompt and completion tokens.
    pub prompt_per_mtok: Option<f64>,
    pub completion_per_mtok: Option<f64>,
    pub quality: f64,
    /// The feedback events the quality was learned from on the default
    /// task.
    pub quality_events: u64,
    /// `prior`, `pooled` or `learned` (see `core::pooled`).
    pub quality_source: &'static str,
    /// measured, prior, probing, cooling or open; or excluded (by the
    /// budget), after the ranked ones.
    pub state: String,
    /// Why it is in that state.
    pub why: String,
}

/// One request, without its text.
#[derive(Debug, Clone, Serialize)]
pub struct RecentRequest {
    pub at_ms: i64,
    pub model: Option<String>,
    pub status: u16,
    pub latency_ms: f64,
    pub cached: bool,
    pub attempts: usize,
}
