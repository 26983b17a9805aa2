//! A scriptable, OpenRouter-compatible HTTP/1.1 server bound to `127.0.0.1`.
//!
//! The server speaks a deliberately small subset of HTTP/1.1 written directly on
//! top of tokio TCP sockets, which gives full control over the bytes on the wire
//! (truncated bodies, resets, slow drips, hangs).
//!
//! Endpoints (any prefix is accepted, `/api/v1` is the canonical one):
//!
//! * `GET …/models` answers the catalogue built from the [`ModelSpec`]s, or
//!   whatever [`CatalogueBehavior`] is configured.
//! * `POST …/chat/completions` answers according to the model's scripted
//!   [`Behavior`]s, then its default behaviour. [`Behavior::UnknownModel`]
//!   answers as LiteLLM, vLLM, Ollama, OpenAI or OpenRouter itself answer a
//!   model they do not serve (see [`Dialect`]).
//! * Anything else answers 404 (405 for a known path with the wrong method).
//!
//! HTTP details:
//!
//! * Request bodies are read with `Content-Length`; `Transfer-Encoding: chunked`
//!   request bodies are decoded as well (trailers are ignored).
//!   `Expect: 100-continue` is honoured.
//! * Connections are kept alive by default for HTTP/1.1 and closed for HTTP/1.0,
//!   following the `Connection` header when present. Pipelined requests are
//!   served in order.
//! * Every response carries `Content-Type: application/json` and a
//!   `Content-Length`, except streamed answers (below) and the fault
//!   behaviours that lie about it on purpose.
//! * When [`Config::api_key`] is set, every request (any path) must carry
//!   `Authorization: Bearer <key>`, otherwise it is answered with 401. Such
//!   requests are still logged but are not counted by [`FakeServer::count_for`].
//!
//! Streaming (OpenAI server-sent events):
//!
//! * A completion request whose body has `"stream": true` and meets a
//!   successful behaviour ([`Behavior::Ok`], [`Behavior::Stream`],
//!   [`Behavior::Tail`], a [`Behavior::Flaky`] that does not fail) is answered
//!   200 with `Content-Type: text/event-stream`, `Cache-Control: no-cache` and
//!   `Transfer-Encoding: chunked`, no `Content-Length`. Each event is one HTTP
//!   chunk, written and flushed on its own, so a client sees it as it is sent.
//! * The events, all `data: <json>\n\n` with the same `id` and `created`:
//!   content chunks `{"object":"chat.completion.chunk","model":…,"choices":
//!   [{"index":0,"delta":{"role":"assistant","content":…},"finish_reason":null}]}`
//!   (only the first carries `role`), then a finish chunk with `"delta":{}` and
//!   `"finish_reason":"stop"`, then, only when the body has
//!   `"stream_options":{"include_usage":true}`, a chunk with `"choices":[]` and
//!   the `usage` the unstreamed answer would have (with `cost` when the
//!   behaviour has one), then `data: [DONE]`, then the zero-length chunk. The
//!   connection then stays open like after any answer. Asked for usage, a
//!   server can also put it as OpenAI or llama.cpp's server do (see
//!   [`FakeServer::set_stream_usage`] and [`StreamUsage`]).
//! * The pieces, joined, are exactly the content of the unstreamed answer,
//!   `[<model>] <last message content>`, cut into words: each piece is one
//!   word with the whitespace after it (`"[m] "`, `"hello "`, `"world"`).
//!   [`Behavior::Ok`], [`Behavior::Flaky`] and [`Behavior::Tail`] wait their
//!   latency before the head, then send every event at once.
//! * [`Behavior::Stream`] paces them: its content is `pieces` words, the first
//!   `[<model>]`, the k-th `w<k>` (`"[m] w2 w3"` for 3 pieces), one word (with
//!   its following space) per chunk, the first after `first`, then one every
//!   `interval`; it can also cut the connection mid-stream.
//! * Every other behaviour answers a streaming request exactly as any other
//!   (an error status with its JSON body, a fault), so a client can fall back
//!   before the first chunk.
//! * While a stream waits (its latency, between chunks), the server reads the
//!   socket: a client that closes the connection (even only its sending
//!   half) is noticed at once, and the stream stops. Counters tell what
//!   became of streams: [`FakeServer::streams_started`],
//!   [`FakeServer::streams_completed`], [`FakeServer::streams_abandoned`],
//!   [`FakeServer::streams_cut`]; [`FakeServer::in_flight`] counts a stream
//!   until just before its `[DONE]`.

mod behavior;
mod body;
mod catalogue;
mod chat;
mod config;
mod conn;
mod dialect;
mod faults;
mod http;
mod log;
mod server;
mod state;
mod stream;

pub use behavior::{Behavior, StreamUsage};
pub use catalogue::{CatalogueBehavior, ModelSpec};
pub use config::Config;
pub use dialect::Dialect;
pub use log::LoggedRequest;
pub use server::FakeServer;
