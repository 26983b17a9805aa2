//! OpenRouter's model catalogue (`GET {base}/models`): parsing, the compact
//! form kept in the store, and the snapshot embedded in the binary.
//!
//! Parsing is lenient the way a long-lived tool must be with a live API:
//! prices may be strings or numbers, negative prices (router models answer
//! `"-1"`) mean "unknown", nulls are absent values, and an entry that cannot
//! be read is skipped rather than failing the whole catalogue.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// The embedded snapshot (see `scripts/update-catalogue-snapshot`).
pub const EMBEDDED: &str = include_str!("../../assets/catalogue.json");
/// The date of the embedded snapshot.
pub const EMBEDDED_DATE: &str = "2026-06-16";

/// How old a stored catalogue may be before it is refetched.
pub const MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// What llmroute knows of one model.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct ModelInfo {
    pub id: String,
    /// USD per prompt token; `None` when unknown.
    pub prompt_price: Option<f64>,
    /// USD per completion token; `None` when unknown.
    pub completion_price: Option<f64>,
    pub context_length: Option<u64>,
    pub max_completion_tokens: Option<u64>,
    /// Empty when the catalogue does not say.
    pub supported_parameters: Vec<String>,
    pub intelligence_index: Option<f64>,
}

impl ModelInfo {
    /// Whether the catalogue says this model takes `param`. A model whose
    /// catalogue entry lists no parameters at all is assumed to take any.
    pub fn supports(&self, param: &str) -> bool {
        self.supported_parameters.is_empty() || self.supported_parameters.iter().any(|p| p == param)
    }

    /// Estimated cost in USD of a request, or `None` if a price is unknown.
    pub fn estimate_cost(&self, prompt_tokens: u64, completion_tokens: u64) -> Option<f64> {
        Some(
            self.prompt_price? * prompt_tokens as f64
                + self.completion_price? * completion_tokens as f64,
        )
    }
}

/// Where the catalogue in use came from.
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    /// Fetched during this run.
    Live,
    /// The store's copy, fetched this long ago.
    Stored { age: Duration },
    /// The snapshot built into the binary.
    Embedded,
}

/// A parsed catalogue.
#[derive(Debug, Clone)]
pub struct Catalogue {
    models: Vec<ModelInfo>,
    /// Looked up several times a request: a fast hash, not SipHash.
    index: foldhash::HashMap<String, usize>,
    /// Entries that could not be read.
    pub skipped: usize,
    pub origin: Origin,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    #[error("the model catalogue is not JSON of the form {{\"data\": [...]}}: {0}")]
    Shape(String),
    #[error("the model catalogue lists no usable model")]
    Empty,
}

#[derive(Deserialize)]
struct Wire {
    data: Vec<Value>,
}

#[derive(Deserialize)]
struct WireModel {
    id: String,
    #[serde(default, deserialize_with = "lenient_u64")]
    context_length: Option<u64>,
    /// vLLM's name for the context window.
    #[serde(default, deserialize_with = "lenient_u64")]
    max_model_len: Option<u64>,
    #[serde(default)]
    pricing: Option<WirePricing>,
    #[serde(default)]
    top_provider: Option<WireTopProvider>,
    #[serde(default, deserialize_with = "lenient_strings")]
    supported_parameters: Vec<String>,
    #[serde(default)]
    benchmarks: Option<WireBenchmarks>,
}

#[derive(Deserialize)]
struct WirePricing {
    #[serde(default, deserialize_with = "lenient_price")]
    prompt: Option<f64>,
    #[serde(default, deserialize_with = "lenient_price")]
    completion: Option<f64>,
}

#[derive(Deserialize)]
struct WireTopProvider {
    #[serde(default, deserialize_with = "lenient_u64")]
    context_length: Option<u64>,
    #[serde(default, deserialize_with = "lenient_u64")]
    max_completion_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct WireBenchmarks {
    #[serde(default)]
    artificial_analysis: Option<WireAa>,
}

#[derive(Deserialize)]
struct WireAa {
    #[serde(default, deserialize_with = "lenient_f64")]
    intelligence_index: Option<f64>,
}

fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|x: &f64| x.is_finite())
}

fn lenient_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Ok(as_f64(&Value::deserialize(d)?))
}

fn lenient_price<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Ok(as_f64(&Value::deserialize(d)?).filter(|p| *p >= 0.0))
}

fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(as_f64(&Value::deserialize(d)?)
        .filter(|x| *x > 0.0)
        .map(|x| x as u64))
}

fn lenient_strings<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Array(items) => items
            .into_iter()
            .filter_map(|v| match v {
                Value::String(s) => Some(s),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    })
}

impl Catalogue {
    /// Parses a `/models` response (or the compact form written by
    /// [`Catalogue::to_json`], which has the same shape).
    pub fn parse(bytes: &[u8], origin: Origin) -> Result<Catalogue, CatalogueError> {
        let wire: Wire =
            serde_json::from_slice(bytes).map_err(|e| CatalogueError::Shape(e.to_string()))?;
        let mut models = Vec::with_capacity(wire.data.len());
        let mut skipped = 0;
        for entry in wire.data {
            match serde_json::from_value::<WireModel>(entry) {
                Ok(m) if !m.id.trim().is_empty() => {
                    let (prompt_price, completion_price) =
                        m.pricing.map_or((None, None), |p| (p.prompt, p.completion));
                    let top = m.top_provider;
                    models.push(ModelInfo {
                        context_length: m
                            .context_length
                            .or(top.as_ref().and_then(|t| t.context_length))
                            .or(m.max_model_len),
                        max_completion_tokens: top.and_then(|t| t.max_completion_tokens),
                        id: m.id,
                        prompt_price,
                        completion_price,
                        supported_parameters: m.supported_parameters,
                        intelligence_index: m
                            .benchmarks
                            .and_then(|b| b.artificial_analysis?.intelligence_index),
                    })
                }
                _ => skipped += 1,
            }
        }
        if models.is_empty() {
            return Err(CatalogueError::Empty);
        }
        Ok(Catalogue::from_models(models, skipped, origin))
    }

    /// Builds a catalogue from model entries (later duplicates win).
    pub fn from_models(models: Vec<ModelInfo>, skipped: usize, origin: Origin) -> Catalogue {
        let index = models
            .iter()
            .enumerate()
            .map(|(i, m)| (m.id.clone(), i))
            .collect();
        Catalogue {
            models,
            index,
            skipped,
            origin,
        }
    }

    /// The snapshot built into the binary.
    pub fn embedded() -> Catalogue {
        Catalogue::parse(EMBEDDED.as_bytes(), Origin::Embedded)
            .expect("the embedded catalogue parses")
    }

    pub fn get(&self, id: &str) -> Option<&ModelInfo> {
        self.index.get(id).map(|&i| &self.models[i])
    }

    pub fn models(&self) -> &[ModelInfo] {
        &self.models
    }

    /// What the dearest model whose prices are known would charge for a
    /// request of these tokens: what a budget holds for a model whose price
    /// is unknown. `None` when the catalogue knows no price.
    pub fn dearest_estimate(&self, prompt_tokens: u64, completion_tokens: u64) -> Option<f64> {
        self.models
            .iter()
            .filter_map(|m| m.estimate_cost(prompt_tokens, completion_tokens))
            .filter(|c| c.is_finite())
            .reduce(f64::max)
    }

    pub fn len(&self) -> usize {
        self.models.len()
    }

    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    /// The compact form kept in the store: the same shape as OpenRouter's
    /// response, with only the fields llmroute reads.
    pub fn to_json(&self) -> String {
        let data: Vec<Value> = self
            .models
            .iter()
            .map(|m| {
                serde_json::json!({
                    "id": m.id,
                    "context_length": m.context_length,
                    "pricing": {"prompt": m.prompt_price, "completion": m.completion_price},
                    "top_provider": {"max_completion_tokens": m.max_completion_tokens},
                    "supported_parameters": m.supported_parameters,
                    "benchmarks": {"artificial_analysis": {"intelligence_index": m.intelligence_index}},
                })
            })
            .collect();
        serde_json::json!({ "data": data }).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_fields() {
        let json = br#"{"data":[
            {"id":"a/one","context_length":"8192","pricing":{"prompt":"0.000001","completion":2e-6},
             "supported_parameters":["tools", 3, null],
             "benchmarks":{"artificial_analysis":{"intelligence_index":"41.5"}}},
            {"id":"router/auto","context_length":null,"pricing":{"prompt":"-1","completion":"-1"},
             "top_provider":{"context_length":2000000,"max_completion_tokens":null}},
            {"id":"free/model","pricing":{"prompt":"0","completion":"0"},"supported_parameters":null},
            {"name":"no id"},
            "not an object",
            {"id":"","pricing":{}}
        ]}"#;
        let c = Catalogue::parse(json, Origin::Live).unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!(c.skipped, 3);
        let one = c.get("a/one").unwrap();
        assert_eq!(one.context_length, Some(8192));
        assert_eq!(one.prompt_price, Some(0.000001));
        assert_eq!(one.completion_price, Some(0.000002));
        assert_eq!(one.supported_parameters, vec!["tools".to_string()]);
        assert_eq!(one.intelligence_index, Some(41.5));
        assert!(one.supports("tools") && !one.supports("response_format"));
        let auto = c.get("router/auto").unwrap();
        assert_eq!((auto.prompt_price, auto.completion_price), (None, None));
        assert_eq!(auto.context_length, Some(2_000_000));
        assert_eq!(auto.estimate_cost(10, 10), None);
        let free = c.get("free/model").unwrap();
        assert_eq!(free.estimate_cost(1000, 1000), Some(0.0));
        assert!(free.supports("anything"));
    }

    #[test]
    fn a_vllm_listing_gives_its_context_window() {
        // vLLM's GET /v1/models: no prices, the window as `max_model_len`.
        let json = br#"{"object":"list","data":[
            {"id":"Qwen/Qwen2.5-7B-Instruct","object":"model","owned_by":"vllm","max_model_len":32768},
            {"id":"llama3","object":"model","owned_by":"library"}
        ]}"#;
        let c = Catalogue::parse(json, Origin::Live).unwrap();
        let q = c.get("Qwen/Qwen2.5-7B-Instruct").unwrap();
        assert_eq!(q.context_length, Some(32768));
        assert_eq!((q.prompt_price, q.completion_price), (None, None));
        assert_eq!(c.get("llama3").unwrap().context_length, None);
    }

    #[test]
    fn rejects_wrong_shapes() {
        assert!(matches!(
            Catalogue::parse(b"[]", Origin::Live),
            Err(CatalogueError::Shape(_))
        ));
        assert!(matches!(
            Catalogue::parse(b"<html>", Origin::Live),
            Err(CatalogueError::Shape(_))
        ));
        assert!(matches!(
            Catalogue::parse(br#"{"data":[]}"#, Origin::Live),
            Err(CatalogueError::Empty)
        ));
    }

    #[test]
    fn compact_form_round_trips() {
        let c = Catalogue::embedded();
        let again = Catalogue::parse(c.to_json().as_bytes(), Origin::Embedded).unwrap();
        assert_eq!(c.models(), again.models());
    }

    #[test]
    fn embedded_snapshot_has_what_routing_needs() {
        let c = Catalogue::embedded();
        assert!(c.len() > 300, "{}", c.len());
        assert_eq!(c.skipped, 0);
        let m = c
            .get("openai/gpt-5.4-mini")
            .expect("a popular model is in the snapshot");
        assert!(m.prompt_price.unwrap() > 0.0 && m.context_length.unwrap() >= 128_000);
        assert!(m.intelligence_index.is_some());
    }
}
