//! The chat endpoint: answering a completion request as its behaviour says.

use std::io;
use std::sync::atomic::Ordering;

use serde_json::Value;

use crate::behavior::{flaky_fails, tail_wait};
use crate::body::{answer_content, write_completion, write_error_body};
use crate::conn::{sleep, Conn};
use crate::state::InFlight;
use crate::{stream, Behavior};

impl Conn {
    /// Answers a completion request with `behavior`, its `n`-th for its model.
    pub(crate) async fn complete(
        &mut self,
        behavior: Behavior,
        n: u64,
        request: &Value,
        keep_alive: bool,
    ) -> io::Result<bool> {
        let model = request.get("model").and_then(Value::as_str).unwrap_or("");
        if stream::wants_stream(request) {
            if let Some(plan) = stream::Plan::new(&behavior, n, model, request) {
                return self.stream_answer(plan, model, request, keep_alive).await;
            }
        }
        match behavior {
            Behavior::Ok { latency, cost } => {
                let mut flight = InFlight::enter(&self.shared);
                sleep(latency).await;
                // Before the answer is sent: the client frees its slot only
                // once it has the answer, so it never counts twice.
                flight.leave();
                self.completion_body(model, request, cost, 0);
                self.respond(200, None, keep_alive).await
            }
            Behavior::Stream {
                first,
                interval,
                pieces,
                cut_after: _,
                cost,
            } => {
                let mut flight = InFlight::enter(&self.shared);
                sleep(stream::unstreamed_latency(first, interval, pieces)).await;
                flight.leave();
                let content = stream::stream_words(model, pieces).concat();
                self.completion_body_of(model, request, &content, cost, 0);
                self.respond(200, None, keep_alive).await
            }
            Behavior::Status {
                code,
                retry_after,
                body,
                latency,
            } => {
                sleep(latency).await;
                self.body.clear();
                match body {
                    Some(body) => self.body.extend_from_slice(body.as_bytes()),
                    None => write_error_body(&mut self.body, code, &format!("fake error {code}")),
                }
                let header = retry_after.as_deref().map(|v| ("retry-after", v));
                self.respond(code, header, keep_alive).await
            }
            Behavior::Redirect { code, location } => {
                self.body.clear();
                self.body.extend_from_slice(b"{}");
                self.respond(code, Some(("location", &location)), keep_alive)
                    .await
            }
            Behavior::UnknownModel(dialect) => {
                let (code, body) = dialect.unknown_model(model);
                self.body.clear();
                self.body.extend_from_slice(body.as_bytes());
                self.respond(code, None, keep_alive).await
            }
            Behavior::ErrorInBody => {
                self.body.clear();
                write_error_body(&mut self.body, 502, "Provider returned error");
                self.respond(200, None, keep_alive).await
            }
            Behavior::BigBody { bytes } => {
                self.big_body(model, request, bytes);
                self.respond(200, None, keep_alive).await
            }
            Behavior::Hang => self.hang().await,
            Behavior::Truncated => self.truncated(model, request).await,
            Behavior::ResetMidBody => self.reset_mid_body(model, request, keep_alive).await,
            Behavior::CloseWithoutResponse => Ok(false),
            Behavior::Drip { interval } => self.drip(model, request, interval, keep_alive).await,
            Behavior::NonJson => self.non_json(keep_alive).await,
            Behavior::BigBodyUnsized { bytes } => {
                self.big_body_unsized(model, request, bytes).await
            }
            Behavior::Flaky {
                fail_rate,
                seed,
                latency,
            } => {
                sleep(latency).await;
                if flaky_fails(seed, n, fail_rate) {
                    self.body.clear();
                    write_error_body(&mut self.body, 500, "fake error 500");
                    self.respond(500, None, keep_alive).await
                } else {
                    self.completion_body(model, request, None, 0);
                    self.respond(200, None, keep_alive).await
                }
            }
            Behavior::Tail {
                latency,
                slow,
                slow_rate,
                seed,
            } => {
                sleep(tail_wait(latency, slow, slow_rate, seed, n)).await;
                self.completion_body(model, request, None, 0);
                self.respond(200, None, keep_alive).await
            }
        }
    }

    /// Writes a successful completion body into `self.body`.
    pub(crate) fn completion_body(
        &mut self,
        model: &str,
        request: &Value,
        cost: Option<f64>,
        pad: usize,
    ) {
        let content = answer_content(model, request);
        self.completion_body_of(model, request, &content, cost, pad);
    }

    /// Writes a successful completion with this content into `self.body`.
    pub(crate) fn completion_body_of(
        &mut self,
        model: &str,
        request: &Value,
        content: &str,
        cost: Option<f64>,
        pad: usize,
    ) {
        let id = self.shared.next_gen.fetch_add(1, Ordering::Relaxed) + 1;
        self.body.clear();
        write_completion(&mut self.body, id, model, request, content, cost, pad);
    }

    /// A completion padded to about `bytes`, in `self.body`.
    pub(crate) fn big_body(&mut self, model: &str, request: &Value, bytes: usize) {
        self.completion_body(model, request, None, 0);
        let pad = bytes.saturating_sub(self.body.len());
        if pad > 0 {
            self.completion_body(model, request, None, pad);
        }
    }
}
