//! `GET /metrics`: live counters and histograms of this process, in
//! Prometheus' text format (the `prometheus-client` crate encodes them).
//! The engine's observer for a server feeds the upstream-side ones.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::engine::ports::Observer;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub status: u16,
    /// The model that answered; empty when none did.
    pub model: String,
    pub cached: bool,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    pub model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub model: String,
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CachedLabels {
    pub cached: bool,
}

/// Every metric of a server.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub duration: Family<CachedLabels, Histogram>,
    pub ttft: Family<ModelLabels, Histogram>,
    pub cache_hits: Counter,
    pub in_flight: Gauge,
    pub queued: Gauge,
    pub spend: Counter<f64, AtomicU64>,
    pub upstream_errors: Family<ErrorLabels, Counter>,
}

fn seconds() -> Histogram {
    // 5 ms to about 82 s.
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

impl Default for Metrics {
    fn default() -> Metrics {
        let mut registry = Registry::with_prefix("llmroute");
        let requests = Family::<RequestLabels, Counter>::default();
        let duration =
            Family::<CachedLabels, Histogram>::new_with_constructor(seconds as fn() -> Histogram);
        let ttft =
            Family::<ModelLabels, Histogram>::new_with_constructor(seconds as fn() -> Histogram);
        let cache_hits = Counter::default();
        let in_flight = Gauge::default();
        let queued = Gauge::default();
        let spend = Counter::<f64, AtomicU64>::default();
        let upstream_errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "requests",
            "Chat completion requests answered, by HTTP status, model and whether the cache answered",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Chat completion requests from arrival to answer (to the first chunk for a stream)",
            duration.clone(),
        );
        registry.register(
            "time_to_first_token_seconds",
            "Streamed answers: from the attempt's start to its first chunk",
            ttft.clone(),
        );
        registry.register(
            "cache_hits",
            "Requests the cache answered",
            cache_hits.clone(),
        );
        registry.register(
            "requests_in_flight",
            "Chat completion requests holding an upstream slot",
            in_flight.clone(),
        );
        registry.register(
            "requests_queued",
            "Chat completion requests waiting for an upstream slot",
            queued.clone(),
        );
        registry.register("spend_usd", "What answers cost, in USD", spend.clone());
        registry.register(
            "upstream_errors",
            "Failed upstream attempts, by model and kind",
            upstream_errors.clone(),
        );
        Metrics {
            registry,
            requests,
            duration,
            ttft,
            cache_hits,
            in_flight,
            queued,
            spend,
            upstream_errors,
        }
    }
}

impl Metrics {
    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// One chat completion request answered.
    pub fn answered(&self, status: u16, model: Option<&str>, cached: bool, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                status,
                model: model.unwrap_or("").to_string(),
                cached,
            })
            .inc();
        self.duration
            .get_or_create(&CachedLabels { cached })
            .observe(seconds);
    }

    pub fn spent(&self, usd: Option<f64>) {
        if let Some(c) = usd.filter(|c| c.is_finite() && *c > 0.0) {
            self.spend.inc_by(c);
        }
    }
}

/// The engine's observer for a server: upstream errors and cache hits.
pub struct ServeObserver {
    pub metrics: std::sync::Arc<Metrics>,
}

impl Observer for ServeObserver {
    fn cache_hit(&self, _tag: u64, _model: &str) {
        self.metrics.cache_hits.inc();
    }

    fn upstream_error(&self, model: &str, kind: &'static str) {
        self.metrics
            .upstream_errors
            .get_or_create(&ErrorLabels {
                model: model.to_string(),
                kind: kind.to_string(),
            })
            .inc();
    }

    fn stopping(&self, message: &str) {
        tracing::error!(
            "the upstream API refused the key or the account ({message}); requests get 503 until it is tried again"
        );
    }

    fn budget_reached(&self, o: &crate::engine::ports::OverBudget) {
        use crate::core::numbers::usd;
        tracing::warn!(
            "the budget of {} is reached ({} spent, {} reserved by requests in flight); requests whose estimate does not fit get 429",
            usd(o.max),
            usd(o.spent),
            usd(o.reserved)
        );
    }

    fn waiting(&self, _tag: u64, model: &str, wait: std::time::Duration, why: &str) {
        tracing::debug!("waiting {:.1}s for {model}: {why}", wait.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_names_what_was_counted() {
        let m = Metrics::default();
        m.answered(200, Some("a/b"), false, 0.2);
        m.spent(Some(0.5));
        let text = m.encode();
        assert!(
            text.contains(r#"llmroute_requests_total{status="200",model="a/b",cached="false"} 1"#),
            "{text}"
        );
        assert!(text.contains("llmroute_spend_usd_total 0.5"), "{text}");
        assert!(
            text.contains("llmroute_request_duration_seconds_bucket"),
            "{text}"
        );
    }
}
