//! The server's log on stderr, through `tracing`: one start line, warnings,
//! and an access line per request (text, or JSON with `--log-format json`).
//! An access line holds the request id, method, path, status, model,
//! latency, attempts and whether the cache answered; bodies (which hold
//! prompts) only with `--log-bodies`. Never the API key: nothing the
//! server logs is built from it.

use tracing_subscriber::fmt::format::FmtSpan;

use crate::cli::LogFormat;

/// Sets the process's log: `quiet` keeps warnings and errors only.
pub fn init(format: LogFormat, quiet: bool) {
    let level = if quiet {
        tracing::Level::WARN
    } else {
        tracing::Level::INFO
    };
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_span_events(FmtSpan::NONE)
        .with_ansi(false);
    let _ = match format {
        LogFormat::Text => builder.with_target(false).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
}

/// One request's access line, filled in as it goes.
#[derive(Debug, Clone, Default)]
pub struct Access {
    pub id: String,
    pub method: &'static str,
    pub path: &'static str,
    pub model: Option<String>,
    pub cached: bool,
    pub attempts: usize,
    /// The upstream attempts, for the dashboard; not logged.
    pub tried: Vec<crate::engine::Attempt>,
    pub cost_usd: Option<f64>,
    pub ttft_ms: Option<f64>,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    pub error: Option<String>,
    pub request_body: Option<String>,
    pub response_body: Option<String>,
    /// The key it came with.
    pub client: Option<std::sync::Arc<super::keys::Client>>,
    /// The tokens it holds of its key's minute while in flight.
    pub held: Option<super::keys::Held>,
}

impl Access {
    pub fn new(id: &str, method: &'static str, path: &'static str) -> Access {
        Access {
            id: id.to_string(),
            method,
            path,
            ..Access::default()
        }
    }

    /// Writes the line.
    pub fn log(&self, status: u16, latency_ms: f64) {
        tracing::info!(
            target: "access",
            request_id = %self.id,
            method = self.method,
            path = self.path,
            status,
            key = self.client.as_ref().map(|c| &*c.name),
            model = self.model.as_deref().unwrap_or("-"),
            latency_ms = (latency_ms * 10.0).round() / 10.0,
            cached = self.cached,
            attempts = self.attempts,
            cost_usd = self.cost_usd.map(crate::core::numbers::round_usd),
            ttft_ms = self.ttft_ms.map(|t| (t * 10.0).round() / 10.0),
            error = self.error.as_deref().map(super::redact::clean).as_deref(),
            request_body = self.request_body.as_deref().map(super::redact::clean).as_deref(),
            response_body = self.response_body.as_deref(),
            "request"
        );
    }
}
