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
pub struct KeyLabels {
    pub key: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KeyStatusLabels {
    pub key: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KeyRefusedLabels {
    pub key: String,
    pub reason: String,
}

/// Most key names the metrics carry as labels; past them, `other`.
pub const KEY_LABELS_MAX: usize = 1000;
/// Most model names the metrics carry as labels; past them, `other`. A
/// key whose patterns allow any model under a prefix could otherwise grow
/// the label set with every name it pins.
pub const MODEL_LABELS_MAX: usize = 500;

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
    pub key_requests: Family<KeyStatusLabels, Counter>,
    pub key_spend: Family<KeyLabels, Counter<f64, AtomicU64>>,
    pub key_refused: Family<KeyRefusedLabels, Counter>,
    /// The key names given labels so far.
    key_names: std::sync::Mutex<std::collections::HashSet<String>>,
    /// The model names given labels so far.
    model_names: std::sync::Mutex<std::collections::HashSet<String>>,
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
        let key_requests = Family::<KeyStatusLabels, Counter>::default();
        let key_spend = Family::<KeyLabels, Counter<f64, AtomicU64>>::default();
        let key_refused = Family::<KeyRefusedLabels, Counter>::default();
        registry.register(
            "key_requests",
            "Chat completion requests answered, by client key and HTTP status",
            key_requests.clone(),
        );
        registry.register(
            "key_spend_usd",
            "What a client key's answers cost, in USD",
            key_spend.clone(),
        );
        registry.register(
            "key_refused",
            "Requests a client key's limits refused, by key and reason (rate, budget)",
            key_refused.clone(),
        );
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
            key_requests,
            key_spend,
            key_refused,
            key_names: Default::default(),
            model_names: Default::default(),
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
                model: self.model_label(model.unwrap_or("")),
                cached,
            })
            .inc();
        self.duration
            .get_or_create(&CachedLabels { cached })
            .observe(seconds);
    }

    /// Gives `names` (the configured candidates) their labels before any
    /// request, so that names clients pin cannot push them into `other`.
    pub fn keep_labels<'a>(&self, names: impl IntoIterator<Item = &'a String>) {
        let mut kept = self.model_names.lock().unwrap_or_else(|e| e.into_inner());
        kept.extend(names.into_iter().cloned());
    }

    /// The label of model `name`: itself (escaped), or `other` once
    /// [`MODEL_LABELS_MAX`] names have labels, so the metrics stay bounded.
    pub fn model_label(&self, name: &str) -> String {
        let mut names = self.model_names.lock().unwrap_or_else(|e| e.into_inner());
        if !names.contains(name) {
            if names.len() >= MODEL_LABELS_MAX {
                return "other".to_string();
            }
            names.insert(name.to_string());
        }
        crate::view::text::label_value(name)
    }

    /// The label of key `name`: itself, or `other` once
    /// [`KEY_LABELS_MAX`] names have labels, so the metrics stay bounded.
    fn key_label(&self, name: &str) -> String {
        let mut names = self.key_names.lock().unwrap_or_else(|e| e.into_inner());
        if names.contains(name) {
            return name.to_string();
        }
        if names.len() >= KEY_LABELS_MAX {
            return "other".to_string();
        }
        names.insert(name.to_string());
        name.to_string()
    }

    /// A request of key `name` answered with `status`, at `cost` USD.
    pub fn key_answered(&self, name: &str, status: u16, cost: Option<f64>) {
        let key = self.key_label(name);
        if let Some(c) = cost.filter(|c| c.is_finite() && *c > 0.0) {
            self.key_spend
                .get_or_create(&KeyLabels { key: key.clone() })
                .inc_by(c);
        }
        self.key_requests
            .get_or_create(&KeyStatusLabels { key, status })
            .inc();
    }

    /// A request of key `name` refused by its limits.
    pub fn key_refused(&self, name: &str, reason: &str) {
        let key = self.key_label(name);
        self.key_refused
            .get_or_create(&KeyRefusedLabels {
                key,
                reason: reason.to_string(),
            })
            .inc();
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
                model: self.metrics.model_label(model),
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

    fn circuit_opened(&self, model: &str, pause: std::time::Duration, last: &str) {
        tracing::warn!(
            "{model} fails: left alone for {} after failures in a row (last: {last}); then one request tries it",
            crate::core::duration::format(pause.max(std::time::Duration::from_secs(1)))
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_name_cannot_end_a_label_or_a_line_and_names_stay_bounded() {
        let m = Metrics::default();
        let evil = "slow/x\",cached=\"false\"} 1\nllmroute_spend_usd_total 999999\n#";
        m.answered(200, Some(evil), false, 0.1);
        let text = m.encode();
        assert!(
            !text
                .lines()
                .any(|l| l.starts_with("llmroute_spend_usd_total 999999")),
            "{text}"
        );
        let line = text
            .lines()
            .find(|l| l.starts_with("llmroute_requests_total{"))
            .unwrap();
        assert!(line.ends_with(r#",cached="false"} 1"#), "{line}");
        assert!(
            line.contains(r#"model="slow/x\",cached=\"false\"} 1\nllmroute"#),
            "{line}"
        );
        for i in 0..MODEL_LABELS_MAX + 50 {
            m.answered(200, Some(&format!("slow/{i}")), false, 0.1);
        }
        let series = m
            .encode()
            .lines()
            .filter(|l| l.starts_with("llmroute_requests_total{"))
            .count();
        assert!(series <= MODEL_LABELS_MAX + 1, "{series}");
        assert!(m.encode().contains(r#"model="other""#));
        // The configured candidates keep theirs, whatever was pinned first.
        let m = Metrics::default();
        m.keep_labels(&["fast/a".to_string()]);
        for i in 0..MODEL_LABELS_MAX + 5 {
            m.answered(200, Some(&format!("junk/{i}")), false, 0.1);
        }
        m.answered(200, Some("fast/a"), false, 0.1);
        assert!(m.encode().contains(r#"model="fast/a""#));
    }

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
