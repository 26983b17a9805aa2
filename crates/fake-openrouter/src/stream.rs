//! Streamed answers: OpenAI-style server-sent events over a chunked body.
//!
//! Each SSE event is written as one HTTP chunk, so a client sees the events
//! as they are sent. While the server waits (the latency, the interval
//! between chunks), it keeps reading the socket: a client that closes the
//! connection is noticed at once and the stream is counted as abandoned.

use std::io::{self, Write as _};
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncWriteExt;

use crate::behavior::{flaky_fails, tail_wait};
use crate::body::{answer_content, push_escaped, unix_now, write_usage};
use crate::conn::Conn;
use crate::http::{reason, MAX_HEAD};
use crate::state::InFlight;
use crate::{Behavior, StreamUsage};

/// Whether a chat request asks for a streamed answer.
pub(crate) fn wants_stream(request: &Value) -> bool {
    request.get("stream").and_then(Value::as_bool) == Some(true)
}

/// Whether a streamed answer should carry usage.
fn wants_usage(request: &Value) -> bool {
    request
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        == Some(true)
}

/// Ends the chunk begun in `out`: `"usage":null` in it when `null_usage`.
fn end_chunk(out: &mut Vec<u8>, null_usage: bool) {
    if null_usage {
        out.extend_from_slice(b",\"usage\":null");
    }
    out.extend_from_slice(b"}\n\n");
}

/// Splits `content` into stream pieces: each word with the whitespace that
/// follows it (whitespace before the first word goes with the first word).
/// Joined, the pieces are `content`; there is always at least one piece.
pub(crate) fn split_pieces(content: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut seen_word = false;
    let mut after_space = false;
    for (i, c) in content.char_indices() {
        let space = c.is_whitespace();
        if !space && after_space && seen_word {
            pieces.push(&content[start..i]);
            start = i;
        }
        seen_word |= !space;
        after_space = space;
    }
    if start < content.len() || pieces.is_empty() {
        pieces.push(&content[start..]);
    }
    pieces
}

/// The pieces of a [`Behavior::Stream`] answer as `model`: `pieces` words
/// (at least 1), the first `[<model>]`, the k-th `w<k>`, each followed by a
/// space but the last. Three pieces as `m/a`: `"[m/a] "`, `"w2 "`, `"w3"`.
pub(crate) fn stream_words(model: &str, pieces: usize) -> Vec<String> {
    let pieces = pieces.max(1);
    (1..=pieces)
        .map(|k| {
            let word = if k == 1 {
                format!("[{model}]")
            } else {
                format!("w{k}")
            };
            if k < pieces {
                word + " "
            } else {
                word
            }
        })
        .collect()
}

/// How long a [`Behavior::Stream`] takes to answer a request that does not
/// ask to stream: as long as its last content chunk would take.
pub(crate) fn unstreamed_latency(first: Duration, interval: Duration, pieces: usize) -> Duration {
    let gaps = u32::try_from(pieces.max(1) - 1).unwrap_or(u32::MAX);
    first.saturating_add(interval.checked_mul(gaps).unwrap_or(Duration::MAX))
}

/// How a streamed answer is sent.
pub(crate) struct Plan {
    first: Duration,
    interval: Duration,
    pieces: Vec<String>,
    cut_after: Option<usize>,
    cost: Option<f64>,
    /// Whether the answer counts in [`crate::FakeServer::in_flight`].
    counted: bool,
}

impl Plan {
    /// The streamed answer of `behavior` to its `n`-th request, or `None`
    /// when the behaviour does not answer with a completion (it then answers
    /// a streaming request exactly like any other).
    pub(crate) fn new(behavior: &Behavior, n: u64, model: &str, request: &Value) -> Option<Plan> {
        let ok = |latency: Duration, cost: Option<f64>, counted: bool| {
            let content = answer_content(model, request);
            Plan {
                first: latency,
                interval: Duration::ZERO,
                pieces: split_pieces(&content)
                    .into_iter()
                    .map(str::to_owned)
                    .collect(),
                cut_after: None,
                cost,
                counted,
            }
        };
        match *behavior {
            Behavior::Ok { latency, cost } => Some(ok(latency, cost, true)),
            Behavior::Flaky {
                fail_rate,
                seed,
                latency,
            } => (!flaky_fails(seed, n, fail_rate)).then(|| ok(latency, None, false)),
            Behavior::Tail {
                latency,
                slow,
                slow_rate,
                seed,
            } => Some(ok(
                tail_wait(latency, slow, slow_rate, seed, n),
                None,
                false,
            )),
            Behavior::Stream {
                first,
                interval,
                pieces,
                cut_after,
                cost,
            } => Some(Plan {
                first,
                interval,
                pieces: stream_words(model, pieces),
                cut_after,
                cost,
                counted: true,
            }),
            _ => None,
        }
    }
}

/// The client went away: it closed the connection, or a write failed.
struct Gone;

/// How a stream that was not abandoned ended.
enum End {
    /// `data: [DONE]` and the terminating chunk were sent.
    Done,
    /// `cut_after` was reached: the connection must be closed now.
    Cut,
}

impl Conn {
    /// Answers a streaming request according to `plan`; `Ok(true)` when the
    /// connection should stay open.
    pub(crate) async fn stream_answer(
        &mut self,
        plan: Plan,
        model: &str,
        request: &Value,
        keep_alive: bool,
    ) -> io::Result<bool> {
        let shared = std::sync::Arc::clone(&self.shared);
        shared.streams_started.fetch_add(1, Ordering::SeqCst);
        let mut flight = plan.counted.then(|| InFlight::enter(&shared));
        let end = self
            .send_stream(&plan, model, request, keep_alive, &mut flight)
            .await;
        drop(flight);
        match end {
            Ok(End::Done) => self.finish(keep_alive).await,
            Ok(End::Cut) => {
                shared.streams_cut.fetch_add(1, Ordering::SeqCst);
                let _ = self.stream.shutdown().await;
                Ok(false)
            }
            Err(Gone) => {
                shared.streams_abandoned.fetch_add(1, Ordering::SeqCst);
                Ok(false)
            }
        }
    }

    async fn send_stream(
        &mut self,
        plan: &Plan,
        model: &str,
        request: &Value,
        keep_alive: bool,
        flight: &mut Option<InFlight>,
    ) -> Result<End, Gone> {
        self.watch(plan.first).await?;
        self.out.clear();
        write_stream_head(&mut self.out, !keep_alive);
        self.send_out().await?;

        let id = self.shared.next_gen.fetch_add(1, Ordering::Relaxed) + 1;
        let created = unix_now();
        let usage = wants_usage(request).then(|| self.shared.lock().stream_usage);
        let null_usage = usage == Some(StreamUsage::NullInEveryChunk);
        let cut = plan.cut_after.map(|k| k.min(plan.pieces.len()));
        for (i, piece) in plan.pieces.iter().enumerate() {
            if i > 0 {
                self.watch(plan.interval).await?;
            }
            if cut == Some(i) {
                return Ok(End::Cut);
            }
            self.body.clear();
            write_delta_event(&mut self.body, id, created, model, i == 0, piece);
            end_chunk(&mut self.body, null_usage);
            self.send_event().await?;
        }
        if cut.is_some() {
            self.watch(plan.interval).await?;
            return Ok(End::Cut);
        }

        // The same numbers as the unstreamed answer's.
        let content_chars = plan.pieces.iter().map(|p| p.chars().count()).sum();
        self.body.clear();
        write_event_start(&mut self.body, id, created, model);
        self.body.extend_from_slice(
            b"\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]",
        );
        if usage == Some(StreamUsage::InFinishChunk) {
            self.body.push(b',');
            write_usage(&mut self.body, request, content_chars, plan.cost);
        }
        end_chunk(&mut self.body, null_usage);
        self.send_event().await?;

        if usage.is_some_and(|u| u != StreamUsage::InFinishChunk) {
            self.body.clear();
            write_event_start(&mut self.body, id, created, model);
            self.body.extend_from_slice(b"\"choices\":[],");
            write_usage(&mut self.body, request, content_chars, plan.cost);
            self.body.extend_from_slice(b"}\n\n");
            self.send_event().await?;
        }

        // Counted before the client can read `[DONE]`, so a client that has
        // read it sees the stream completed and no longer in flight.
        if let Some(flight) = flight {
            flight.leave();
        }
        self.shared.streams_completed.fetch_add(1, Ordering::SeqCst);
        self.body.clear();
        self.body.extend_from_slice(b"data: [DONE]\n\n");
        frame_chunk(&mut self.out, &self.body);
        self.out.extend_from_slice(b"0\r\n\r\n");
        if self.send_out().await.is_err() {
            self.shared.streams_completed.fetch_sub(1, Ordering::SeqCst);
            return Err(Gone);
        }
        Ok(End::Done)
    }

    /// Sends the event in `self.body` as one HTTP chunk.
    async fn send_event(&mut self) -> Result<(), Gone> {
        frame_chunk(&mut self.out, &self.body);
        self.send_out().await
    }

    /// Writes and flushes `self.out`.
    async fn send_out(&mut self) -> Result<(), Gone> {
        self.stream.write_all(&self.out).await.map_err(|_| Gone)?;
        self.stream.flush().await.map_err(|_| Gone)
    }

    /// Waits `d` while watching the socket: a read that ends (the client
    /// closed) or fails means the client went away. Bytes the client sends
    /// meanwhile (a pipelined request) are kept for later; once more than
    /// [`MAX_HEAD`] of them are waiting, the socket is no longer read and a
    /// departure is only noticed by a failed write.
    async fn watch(&mut self, d: Duration) -> Result<(), Gone> {
        if d.is_zero() {
            return Ok(());
        }
        let sleep = tokio::time::sleep(d);
        tokio::pin!(sleep);
        loop {
            if self.buf.len() > MAX_HEAD {
                sleep.await;
                return Ok(());
            }
            tokio::select! {
                () = &mut sleep => return Ok(()),
                read = self.fill() => match read {
                    Ok(0) | Err(_) => return Err(Gone),
                    Ok(_) => {}
                },
            }
        }
    }
}

/// The head of a streamed answer: no `Content-Length`, a chunked body.
fn write_stream_head(out: &mut Vec<u8>, close: bool) {
    let _ = write!(
        out,
        "HTTP/1.1 200 {}\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n",
        reason(200)
    );
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Replaces `out` with `data` framed as one HTTP chunk.
fn frame_chunk(out: &mut Vec<u8>, data: &[u8]) {
    out.clear();
    let _ = write!(out, "{:x}\r\n", data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// `data: {"id":…,"object":"chat.completion.chunk","created":…,"model":…,`
fn write_event_start(out: &mut Vec<u8>, id: u64, created: u64, model: &str) {
    let _ = write!(
        out,
        "data: {{\"id\":\"gen-{id}\",\"object\":\"chat.completion.chunk\",\"created\":{created},\"model\":\""
    );
    push_escaped(out, model);
    out.extend_from_slice(b"\",");
}

/// A content chunk, all but its closing brace (see [`end_chunk`]); the first of a
/// stream also carries the role.
fn write_delta_event(
    out: &mut Vec<u8>,
    id: u64,
    created: u64,
    model: &str,
    first: bool,
    piece: &str,
) {
    write_event_start(out, id, created, model);
    out.extend_from_slice(b"\"choices\":[{\"index\":0,\"delta\":{");
    if first {
        out.extend_from_slice(b"\"role\":\"assistant\",");
    }
    out.extend_from_slice(b"\"content\":\"");
    push_escaped(out, piece);
    out.extend_from_slice(b"\"},\"finish_reason\":null}]");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_are_words_with_their_spaces() {
        assert_eq!(
            split_pieces("[m] hello  world"),
            ["[m] ", "hello  ", "world"]
        );
        assert_eq!(split_pieces("  a b\n"), ["  a ", "b\n"]);
        assert_eq!(split_pieces("one"), ["one"]);
        assert_eq!(split_pieces(""), [""]);
        assert_eq!(split_pieces("   "), ["   "]);
        assert_eq!(split_pieces("é ü"), ["é ", "ü"]);
    }

    #[test]
    fn stream_words_split_back_into_themselves() {
        assert_eq!(stream_words("m/a", 3), ["[m/a] ", "w2 ", "w3"]);
        assert_eq!(stream_words("m/a", 0), ["[m/a]"]);
        let words = stream_words("x", 5);
        let joined = words.concat();
        assert_eq!(split_pieces(&joined), words);
    }

    #[test]
    fn unstreamed_latency_is_that_of_the_last_chunk() {
        let ms = Duration::from_millis;
        assert_eq!(unstreamed_latency(ms(5), ms(10), 4), ms(35));
        assert_eq!(unstreamed_latency(ms(5), ms(10), 0), ms(5));
        assert_eq!(unstreamed_latency(ms(5), ms(10), 1), ms(5));
    }

    #[test]
    fn events_are_valid_json() {
        let mut out = Vec::new();
        write_delta_event(&mut out, 3, 9, "a/\"b\"", true, "x\ny");
        end_chunk(&mut out, false);
        let text = String::from_utf8(out).unwrap();
        let json = text
            .strip_prefix("data: ")
            .and_then(|t| t.strip_suffix("\n\n"))
            .unwrap();
        let v: Value = serde_json::from_str(json).unwrap();
        assert_eq!(v["model"], "a/\"b\"");
        assert_eq!(v["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(v["choices"][0]["delta"]["content"], "x\ny");
        assert_eq!(v["choices"][0]["finish_reason"], Value::Null);
    }
}
