//! The request log: what the server received, as tests read it back.

use std::time::Instant;

use serde_json::Value;

use crate::stream;

/// A request as received by the server.
#[derive(Clone, Debug)]
pub struct LoggedRequest {
    pub method: String,
    /// The request target as sent, including any query string.
    pub path: String,
    /// Header names are lowercased; values are trimmed.
    pub headers: Vec<(String, String)>,
    /// The body (decoded when it was sent chunked).
    pub body: Vec<u8>,
    /// The body's `"model"` when the body is a JSON object with a string `model`.
    pub model: Option<String>,
    /// When the full request had been read.
    pub at: Instant,
}

impl LoggedRequest {
    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON, or `Value::Null` when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// Whether the body asked for a streamed answer (`"stream": true`).
    pub fn stream(&self) -> bool {
        stream::wants_stream(&self.json())
    }
}
