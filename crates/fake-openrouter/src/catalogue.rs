//! The model catalogue: the entries `GET /models` lists, and what that
//! endpoint answers.

use serde_json::{json, Value};

/// One entry of the model catalogue served by `GET /models`.
#[derive(Clone, Debug)]
pub struct ModelSpec {
    pub id: String,
    /// USD per prompt token, as a string like OpenRouter's (`"0.0000015"`).
    pub prompt_price: String,
    /// USD per completion token, as a string.
    pub completion_price: String,
    pub context_length: Option<u64>,
    pub supported_parameters: Vec<String>,
    /// Served as `benchmarks.artificial_analysis.intelligence_index` when `Some`.
    pub intelligence_index: Option<f64>,
}

impl ModelSpec {
    /// Prices `"0.000001"` / `"0.000002"`, context 128000, parameters
    /// `max_tokens`, `temperature`, `tools`, `response_format`, no intelligence index.
    pub fn new(id: &str) -> Self {
        ModelSpec {
            id: id.to_owned(),
            prompt_price: "0.000001".to_owned(),
            completion_price: "0.000002".to_owned(),
            context_length: Some(128_000),
            supported_parameters: ["max_tokens", "temperature", "tools", "response_format"]
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            intelligence_index: None,
        }
    }

    /// Sets the prompt and completion prices (USD per token, as strings).
    pub fn prices(mut self, prompt: impl Into<String>, completion: impl Into<String>) -> Self {
        self.prompt_price = prompt.into();
        self.completion_price = completion.into();
        self
    }

    /// Sets the context length.
    pub fn context(mut self, n: u64) -> Self {
        self.context_length = Some(n);
        self
    }

    /// Removes the context length (served as `null`).
    pub fn no_context(mut self) -> Self {
        self.context_length = None;
        self
    }

    /// Replaces the supported parameters.
    pub fn params(mut self, params: &[&str]) -> Self {
        self.supported_parameters = params.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    /// Sets the intelligence index.
    pub fn intelligence(mut self, x: f64) -> Self {
        self.intelligence_index = Some(x);
        self
    }
}

/// What `GET /models` answers.
#[derive(Clone, Debug)]
pub enum CatalogueBehavior {
    /// The JSON catalogue built from the configured [`ModelSpec`]s.
    Models,
    /// This body with 200.
    Raw(String),
    /// This status with the default error body.
    Status(u16),
    /// Never answer.
    Hang,
}

/// The JSON catalogue of these models, as `GET /models` serves it.
pub(crate) fn catalogue_json(models: &[ModelSpec]) -> Vec<u8> {
    let data: Vec<Value> = models
        .iter()
        .map(|m| {
            let mut entry = json!({
                "id": m.id,
                "name": m.id,
                "created": 0,
                "context_length": m.context_length,
                "pricing": {
                    "prompt": m.prompt_price,
                    "completion": m.completion_price,
                },
                "top_provider": {
                    "context_length": m.context_length,
                    "max_completion_tokens": null,
                    "is_moderated": false,
                },
                "supported_parameters": m.supported_parameters,
            });
            if let Some(x) = m.intelligence_index {
                entry["benchmarks"] = json!({ "artificial_analysis": { "intelligence_index": x } });
            }
            entry
        })
        .collect();
    serde_json::to_vec(&json!({ "data": data })).unwrap_or_default()
}
