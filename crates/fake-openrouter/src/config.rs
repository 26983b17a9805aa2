//! How a server is started: its catalogue, logging, key, port and threads.

use crate::ModelSpec;

/// Server configuration for [`FakeServer::start_with`].
#[derive(Clone, Debug)]
pub struct Config {
    /// Models listed by `GET /models`.
    pub models: Vec<ModelSpec>,
    /// Whether requests are recorded for [`FakeServer::requests`].
    pub log_requests: bool,
    /// When `Some`, a request whose `Authorization` is not `Bearer <key>` gets 401.
    pub api_key: Option<String>,
    /// Port to bind on 127.0.0.1; 0 picks an ephemeral port.
    pub port: u16,
    /// Worker threads of the server's tokio runtime (at least 1 is used).
    pub workers: usize,
}

impl Default for Config {
    /// No models, logging on, no API key, ephemeral port, one worker thread.
    fn default() -> Self {
        Config {
            models: Vec::new(),
            log_requests: true,
            api_key: None,
            port: 0,
            workers: 1,
        }
    }
}
