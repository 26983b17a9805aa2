//! Opening a stream: the body that asks for it, and the read up to its
//! first chunk, within the attempt's time limit. Until that chunk a failure
//! is an attempt's like any other, and the request falls back.

use std::collections::VecDeque;
use std::time::Instant;

use futures_util::StreamExt;
use serde_json::Value;

use super::ports::{Chunks, Upstream};
use super::{ms_since, Router};
use crate::core::failure::{Failure, FailureKind, Success, Usage};
use crate::core::sse::{self, Event, Events, Fold};

/// The upstream body of a stream: the request with `model`, `stream` and
/// usage at the end (which prices the answer) asked for.
pub(super) fn stream_body(model: &str, rest: &[u8]) -> Vec<u8> {
    crate::core::request::upstream_body(
        model,
        br#","stream":true,"stream_options":{"include_usage":true}"#,
        rest,
    )
}

/// A stream whose first chunk has come.
pub(crate) struct Live {
    pub(super) events: Chunks,
    pub(super) parser: Events,
    pub(super) fold: Fold,
    /// Events read but not yet handed on.
    pub(super) queued: VecDeque<Event>,
    /// ms from the attempt's start to its first chunk.
    pub(super) ttft_ms: f64,
}

impl Router {
    /// Opens a stream, and reads it up to its first chunk, within the
    /// attempt's time limit.
    pub(super) async fn open_stream(
        &self,
        upstream: &dyn Upstream,
        body: Vec<u8>,
    ) -> Result<(Success, Live), Failure> {
        let timeout = self.config.timeout;
        let sent = Instant::now();
        let first = async {
            let opened = upstream.open(body, timeout).await?;
            let mut live = Live {
                events: opened.events,
                parser: Events::default(),
                fold: Fold::default(),
                queued: VecDeque::new(),
                ttft_ms: 0.0,
            };
            live.first_chunk().await?;
            Ok((opened.status, live))
        };
        let (status, mut live) = match tokio::time::timeout(timeout, first).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(failure(
                    FailureKind::Timeout,
                    format!(
                        "no first chunk within {}",
                        crate::core::duration::format(timeout)
                    ),
                ))
            }
        };
        live.ttft_ms = ms_since(sent);
        let success = Success {
            status,
            body: String::new(),
            content: None,
            usage: Usage::default(),
        };
        Ok((success, live))
    }
}

impl Live {
    /// Reads until the first chunk that carries choices; fails when the
    /// stream ends, breaks or carries an error before it.
    async fn first_chunk(&mut self) -> Result<(), Failure> {
        let mut events = Vec::new();
        loop {
            let Some(bytes) = self.events.next().await else {
                return Err(failure(
                    FailureKind::Connect,
                    "the stream ended before its first chunk",
                ));
            };
            self.parser.push(&bytes?, &mut events);
            for event in events.drain(..) {
                if self.queued.is_empty() {
                    match &event {
                        Event::Done => {
                            return Err(failure(
                                FailureKind::InvalidResponse,
                                "the stream ended before its first chunk",
                            ))
                        }
                        Event::Data(d) => {
                            let chunk: Value = serde_json::from_str(d).map_err(|_| {
                                failure(
                                    FailureKind::InvalidResponse,
                                    format!("a chunk is not JSON: {}", sse_snippet(d)),
                                )
                            })?;
                            if let Some(e) = sse::error_of(&chunk) {
                                return Err(failure(FailureKind::UpstreamError, e));
                            }
                        }
                    }
                }
                self.queued.push_back(event);
            }
            if !self.queued.is_empty() {
                return Ok(());
            }
        }
    }
}

pub(super) fn sse_snippet(d: &str) -> String {
    crate::core::failure::snippet(d.as_bytes())
}

pub(super) fn failure(kind: FailureKind, message: impl Into<String>) -> Failure {
    Failure {
        kind,
        status: None,
        message: message.into(),
        retry_after: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_body_asks_for_usage() {
        let v: Value = serde_json::from_slice(&stream_body("m", br#"{"messages":[]}"#)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[]})
        );
    }
}
