//! The floor under `llmroute serve`: an HTTP server on the same stack (axum
//! on hyper, tokio's multi-threaded runtime with one worker a core, the same
//! allocator) that passes each chat-completions body, unread, to an
//! OpenAI-compatible API with llmroute's own upstream client (the same
//! connection pool and response parsing) and answers with the API's body. No
//! keys, policy, routing, cache, store or log (and `GET /health`, to say it
//! is up). `bench/run` runs it beside
//! nginx and `llmroute serve`, so that what a server passing requests on
//! costs can be split into what the stack costs and what llmroute's own work
//! costs.
//!
//! ```text
//! cargo run --release --example serve_floor -- LISTEN BASE_URL
//! ```

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use llmroute::upstream::Client;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TIMEOUT: Duration = Duration::from_secs(60);

async fn pass_on(State(client): State<Arc<Client>>, body: Bytes) -> Response {
    match client.complete(body.to_vec(), TIMEOUT).await {
        Ok(answer) => ([(header::CONTENT_TYPE, "application/json")], answer.body).into_response(),
        Err(failure) => (StatusCode::BAD_GATEWAY, failure.message).into_response(),
    }
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, base_url] = args.as_slice() else {
        return Err("usage: serve_floor LISTEN BASE_URL".into());
    };
    let client = Arc::new(Client::new(base_url, Some("bench"), 1024)?);
    let app = axum::Router::new()
        .route("/v1/chat/completions", post(pass_on))
        .route("/health", get(|| async { "ok" }))
        .with_state(client);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen.as_str())
            .await
            .map_err(|e| format!("{listen}: {e}"))?
            .tap_io(|socket| {
                let _ = socket.set_nodelay(true);
            });
        axum::serve(listener, app).await.map_err(|e| e.to_string())
    })
}
