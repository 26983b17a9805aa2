//! The scripted behaviours of the chat endpoint, and the reproducible draws
//! of the random ones.

use std::time::Duration;

use crate::Dialect;

/// How the server answers one chat completion request.
#[derive(Clone, Debug)]
pub enum Behavior {
    /// 200 with a valid chat completion after `latency`.
    Ok {
        latency: Duration,
        /// Sent as `usage.cost` when `Some`.
        cost: Option<f64>,
    },
    /// Any status, optional `Retry-After` value (sent verbatim), optional body
    /// (default: `{"error":{"code":N,"message":"fake error N"}}`), after `latency`.
    Status {
        code: u16,
        retry_after: Option<String>,
        body: Option<String>,
        latency: Duration,
    },
    /// A redirect: `code` (e.g. 307) with `Location: location` and an empty JSON body.
    Redirect { code: u16, location: String },
    /// Reads the request and never answers; the connection stays open until the
    /// client closes it or the server is dropped.
    Hang,
    /// 200 whose `Content-Length` is larger than the bytes sent (half of a valid
    /// completion body), then the connection is closed.
    Truncated,
    /// Sends the status line, headers and half of the body, then resets the
    /// connection (`SO_LINGER` 0).
    ResetMidBody,
    /// Closes the connection right after reading the request, sending nothing.
    CloseWithoutResponse,
    /// 200 headers, then a valid completion body one byte every `interval`.
    Drip { interval: Duration },
    /// 200 with a body that is not JSON.
    NonJson,
    /// The status and body with which `Dialect`'s server answers a request
    /// naming a model it does not serve, the request's model in its message
    /// (see [`Dialect`]).
    UnknownModel(Dialect),
    /// 200 with `{"error":{"code":502,"message":"Provider returned error"}}` and no choices.
    ErrorInBody,
    /// 200 with a valid completion whose content is padded so the body is about `bytes` long.
    BigBody { bytes: usize },
    /// Like [`Behavior::BigBody`], but without `Content-Length`: the body runs
    /// until the server closes the connection, so a client can only stop it
    /// by counting what it reads.
    BigBodyUnsized { bytes: usize },
    /// After `latency`, 500 with probability `fail_rate`, otherwise a valid
    /// completion. The draw is a xorshift PRNG seeded by `seed` plus the number of
    /// earlier completion requests naming the same model, so a run is reproducible.
    Flaky {
        fail_rate: f64,
        seed: u64,
        latency: Duration,
    },
    /// A heavy tail: 200 after `latency`, except a share `slow_rate` of
    /// answers, which take `slow`. Drawn like [`Behavior::Flaky`], so a run
    /// is reproducible.
    Tail {
        latency: Duration,
        slow: Duration,
        slow_rate: f64,
        seed: u64,
    },
    /// A paced stream. Asked to stream, waits `first`, sends the head and the
    /// first content chunk, then one content chunk every `interval`,
    /// `pieces` in all (at least 1), then the finish chunk, the usage chunk
    /// when asked for, and `data: [DONE]`. The content has `pieces` words
    /// (see the module documentation), one per chunk.
    ///
    /// With `cut_after: Some(k)`, the connection is closed instead of sending
    /// the (k+1)-th content chunk (or the finish chunk when `k >= pieces`),
    /// that is `first + interval * min(k, pieces)` after the request, without
    /// a finish chunk, `[DONE]` or the terminating zero-length HTTP chunk.
    ///
    /// Not asked to stream, answers like [`Behavior::Ok`] with the same
    /// content after `first + interval * (pieces - 1)`; `cut_after` is ignored.
    Stream {
        first: Duration,
        interval: Duration,
        pieces: usize,
        cut_after: Option<usize>,
        /// Sent as `usage.cost` when `Some`.
        cost: Option<f64>,
    },
}

impl Behavior {
    /// 200 immediately, no cost.
    pub fn ok() -> Self {
        Behavior::Ok {
            latency: Duration::ZERO,
            cost: None,
        }
    }

    /// 200 after `ms` milliseconds, no cost.
    pub fn ok_after(ms: u64) -> Self {
        Behavior::Ok {
            latency: Duration::from_millis(ms),
            cost: None,
        }
    }

    /// 200 immediately with `usage.cost` set.
    pub fn ok_with_cost(cost: f64) -> Self {
        Behavior::Ok {
            latency: Duration::ZERO,
            cost: Some(cost),
        }
    }

    /// The given status immediately, with the default error body.
    pub fn status(code: u16) -> Self {
        Behavior::Status {
            code,
            retry_after: None,
            body: None,
            latency: Duration::ZERO,
        }
    }

    /// The given status immediately, with this body.
    pub fn status_with_body(code: u16, body: impl Into<String>) -> Self {
        Behavior::Status {
            code,
            retry_after: None,
            body: Some(body.into()),
            latency: Duration::ZERO,
        }
    }

    /// A stream of `pieces` content chunks, the first after `first_ms`
    /// milliseconds, then one every `interval_ms`; no cost, not cut.
    pub fn stream(first_ms: u64, interval_ms: u64, pieces: usize) -> Self {
        Behavior::Stream {
            first: Duration::from_millis(first_ms),
            interval: Duration::from_millis(interval_ms),
            pieces,
            cut_after: None,
            cost: None,
        }
    }

    /// Like [`Behavior::stream`], but the connection is closed after
    /// `cut_after` content chunks, mid-stream.
    pub fn stream_cut(first_ms: u64, interval_ms: u64, pieces: usize, cut_after: usize) -> Self {
        Behavior::Stream {
            first: Duration::from_millis(first_ms),
            interval: Duration::from_millis(interval_ms),
            pieces,
            cut_after: Some(cut_after),
            cost: None,
        }
    }

    /// Answers as `dialect`'s server does for a model it does not serve.
    pub fn unknown_model(dialect: Dialect) -> Self {
        Behavior::UnknownModel(dialect)
    }

    /// 429, with `Retry-After: <secs>` when given.
    pub fn rate_limited(retry_after_secs: Option<u64>) -> Self {
        Behavior::Status {
            code: 429,
            retry_after: retry_after_secs.map(|s| s.to_string()),
            body: None,
            latency: Duration::ZERO,
        }
    }
}

/// Where a stream that was asked for usage (`"stream_options":
/// {"include_usage": true}`) puts it; a stream not asked for it carries no
/// `usage` field at all, whatever the shape.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StreamUsage {
    /// A chunk of its own after the finish chunk, with `"choices":[]`, as
    /// OpenRouter sends it.
    #[default]
    Chunk,
    /// As [`StreamUsage::Chunk`], and every other chunk carries
    /// `"usage":null`, as OpenAI sends it.
    NullInEveryChunk,
    /// In the finish chunk, beside its choice, and no chunk of its own, as
    /// llama.cpp's server sends it.
    InFinishChunk,
}

/// How long a [`Behavior::Tail`] answer takes: `slow` for a share
/// `slow_rate` of them, drawn as [`Behavior::Flaky`] draws.
pub(crate) fn tail_wait(
    latency: Duration,
    slow: Duration,
    slow_rate: f64,
    seed: u64,
    n: u64,
) -> Duration {
    if flaky_fails(seed, n, slow_rate) {
        slow
    } else {
        latency
    }
}

/// Whether a `Flaky` behaviour fails its `n`-th request.
pub(crate) fn flaky_fails(seed: u64, n: u64, fail_rate: f64) -> bool {
    let mut x = seed
        .wrapping_add(n)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(0x2545_F491_4F6C_DD1D);
    if x == 0 {
        x = 0x2545_F491_4F6C_DD1D;
    }
    for _ in 0..4 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    let unit = (x >> 11) as f64 / (1u64 << 53) as f64;
    unit < fail_rate
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flaky_rates() {
        assert!((0..100).all(|n| !flaky_fails(1, n, 0.0)));
        assert!((0..100).all(|n| flaky_fails(1, n, 1.0)));
        let fails = (0..10_000).filter(|&n| flaky_fails(42, n, 0.3)).count();
        assert!((2500..3500).contains(&fails), "{fails}");
    }
}
