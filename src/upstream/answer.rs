//! An answer read the same way whichever client fetched it (reqwest, or
//! hyper-util's for a plain-`http` API): a redirect refused, a whole body
//! read within [`MAX_BODY_BYTES`], a stream handed on as it comes.

use std::time::Duration;

use futures_util::StreamExt;
use http_body_util::BodyExt;
use hyper::body::{Body, Bytes};
use hyper::Response;
use reqwest::header::{
    HeaderMap, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, RETRY_AFTER,
};

use super::MAX_BODY_BYTES;
use crate::core::failure::{
    classify_status, parse_completion, parse_retry_after, snippet, Failure, FailureKind, Success,
};
use crate::engine::ports::Opened;

/// How a client's errors in reading a body become failures.
pub(super) type Fail<E> = fn(E) -> Failure;

/// A whole answer.
pub(super) struct Whole {
    status: u16,
    /// How long the answer asks us to wait before trying again.
    retry_after: Option<Duration>,
    bytes: Vec<u8>,
}

impl Whole {
    /// The completion a 2xx carries, or the failure any other status says.
    pub(super) fn completion(self) -> Result<Success, Failure> {
        if (200..300).contains(&self.status) {
            parse_completion(self.status, &self.bytes)
        } else {
            Err(classify_status(self.status, self.retry_after, &self.bytes))
        }
    }
}

/// The whole of `resp`, unless it redirects.
pub(super) async fn whole<B>(resp: Response<B>, fail: Fail<B::Error>) -> Result<Whole, Failure>
where
    B: Body<Data = Bytes> + Unpin,
{
    let status = resp.status().as_u16();
    if (300..400).contains(&status) {
        return Err(redirected(status, resp.headers().get(LOCATION)));
    }
    let retry_after = retry_after(resp.headers());
    let bytes = read_capped(resp, fail).await?;
    Ok(Whole {
        status,
        retry_after,
        bytes,
    })
}

/// A stream's events as they come, each failure's message with the key
/// (`redact`) blanked out. A 2xx that is not a stream (an API that
/// ignored `stream`) is read whole and replayed as one.
pub(super) async fn opened<B>(
    resp: Response<B>,
    fail: Fail<B::Error>,
    redact: super::Secrets,
) -> Result<Opened, Failure>
where
    B: Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: 'static,
{
    let status = resp.status().as_u16();
    let is_stream = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if !(200..300).contains(&status) || !is_stream {
        let s = whole(resp, fail).await?.completion()?;
        return Ok(Opened::whole(&s));
    }
    let events = resp.into_body().into_data_stream().map(move |r| {
        r.map_err(|e| {
            let mut f = fail(e);
            if let Some(clean) = redact.scrub(&f.message) {
                f.message = clean;
            }
            f
        })
    });
    Ok(Opened {
        status,
        events: Box::pin(events),
    })
}

/// The body of `resp`, refused past [`MAX_BODY_BYTES`] (at once when its
/// length says so). The chunks are kept as they come and joined once at
/// the end, into one buffer of the final size: a growing buffer doubles
/// its allocation on the way. Four 50 MB bodies without Content-Length,
/// cut off at the cap, peaked at 150 MB that way and at 104 MB this way.
pub(super) async fn read_capped<B>(
    resp: Response<B>,
    fail: Fail<B::Error>,
) -> Result<Vec<u8>, Failure>
where
    B: Body<Data = Bytes> + Unpin,
{
    let status = Some(resp.status().as_u16());
    let declared = resp
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large(status));
    }
    let mut body = resp.into_body();
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Failure { status, ..fail(e) })?;
        if let Ok(data) = frame.into_data() {
            total += data.len();
            if total > MAX_BODY_BYTES {
                return Err(too_large(status));
            }
            chunks.push(data);
        }
    }
    Ok(match chunks.len() {
        1 => chunks.pop().map(Vec::from).unwrap_or_default(),
        _ => chunks.concat(),
    })
}

/// `message`, then each error of the chain from `first` that it does not
/// already say, `limit` at most: how a transport error is worded.
pub(super) fn with_causes(
    mut message: String,
    first: Option<&(dyn std::error::Error + 'static)>,
    limit: usize,
) -> String {
    for c in std::iter::successors(first, |e| e.source()).take(limit) {
        let c = c.to_string();
        if !message.contains(&c) {
            message.push_str(": ");
            message.push_str(&c);
        }
    }
    message
}

/// How long a response asks us to wait before trying again.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after)
}

/// An answer whose body is past [`MAX_BODY_BYTES`].
fn too_large(status: Option<u16>) -> Failure {
    Failure {
        kind: FailureKind::TooLarge,
        status,
        message: format!(
            "response body larger than {} MiB",
            MAX_BODY_BYTES / (1024 * 1024)
        ),
        retry_after: None,
    }
}

/// A redirect, which llmroute does not follow: the API does not redirect,
/// so one means a wrong base URL, and following it could send the key on.
fn redirected(status: u16, location: Option<&HeaderValue>) -> Failure {
    // As sent, but on one line and short, like any text from the server.
    let to = location
        .map(|v| snippet(v.as_bytes()))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "nowhere given".into());
    Failure {
        kind: FailureKind::Client,
        status: Some(status),
        message: format!(
            "HTTP {status}: redirected to {to}; redirects are not followed (check the base URL)"
        ),
        retry_after: None,
    }
}
