//! The engine with in-memory fakes of its traits: no HTTP, no SQLite.

mod fakes;
mod hedging;
mod leases;
mod probes;

use std::sync::Arc;
use std::time::Duration;

use super::ports::*;
use super::*;
use crate::core::failure::{error_type, FailureKind};
use crate::core::health::HealthView;
use crate::core::request::{parse_line, Request};
use fakes::*;

#[tokio::test(flavor = "current_thread")]
async fn failures_fall_back_in_ranking_order_and_are_all_recorded() {
    let upstream = FakeUpstream::with(&[
        ("a", &[Reply::Status(500, None)]),
        ("b", &[Reply::Status(503, Some("60"))]),
    ]);
    let w = world(&["a", "b", "c"], upstream, true);
    let routed = w.router.route(&request("x"), RouteOptions::tagged(1)).await;
    assert_eq!(answered_by(&routed), "c");
    assert_eq!(w.upstream.calls(), ["a", "b", "c"]);
    let statuses: Vec<Option<u16>> = routed.attempts.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [Some(500), Some(503), Some(200)]);
    let records = w.memory.records.lock().unwrap();
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(r.attempts.len(), 3);
    assert_eq!(r.request.as_ref().map(|q| q.attempts), Some(3));
    assert!(r.cache.is_some(), "the answer is cached");
    assert_eq!(r.cooldowns.len(), 1);
    assert_eq!(r.cooldowns[0].0, "b");
    assert!(w.health.cooling_until("b").is_some(), "b pauses");
    assert!(w.health.stat("c").is_some(), "c is measured");
}

#[tokio::test(flavor = "current_thread")]
async fn a_bad_request_is_not_sent_elsewhere() {
    let upstream = FakeUpstream::with(&[("a", &[Reply::Status(400, None)])]);
    let w = world(&["a", "b"], upstream, true);
    let routed = w.router.route(&request("x"), RouteOptions::default()).await;
    assert_eq!(ending(&routed).kind, error_type::BAD_REQUEST);
    assert_eq!(w.upstream.calls(), ["a"]);
}

#[tokio::test(flavor = "current_thread")]
async fn a_request_waits_for_a_cooling_model_and_then_sends_again() {
    // The only model is rate limited for 200 ms, then answers.
    let upstream = FakeUpstream::with(&[("a", &[Reply::Status(429, Some("0.2")), Reply::Ok])]);
    let w = world(&["a"], upstream, true);
    let routed = w.router.route(&request("x"), RouteOptions::default()).await;
    assert_eq!(answered_by(&routed), "a");
    assert_eq!(w.upstream.calls(), ["a", "a"]);
    assert_eq!(routed.attempts.len(), 2);
}

#[tokio::test(flavor = "current_thread")]
async fn a_model_paused_by_another_request_is_skipped() {
    let upstream = FakeUpstream::with(&[]);
    let w = world(&["a", "b"], upstream, true);
    w.health.rate_limited(
        "a",
        std::time::Instant::now(),
        Some(Duration::from_secs(60)),
    );
    let routed = w.router.route(&request("x"), RouteOptions::default()).await;
    assert_eq!(answered_by(&routed), "b");
    assert_eq!(w.upstream.calls(), ["b"]);
}

#[tokio::test(flavor = "current_thread")]
async fn identical_requests_in_flight_share_one_call() {
    let upstream = FakeUpstream::with(&[("a", &[Reply::Slow(Duration::from_millis(50))])]);
    let w = world(&["a"], upstream, true);
    let req = request("same");
    let routed = route_together(&w.router, &req, 4).await;
    assert_eq!(
        w.upstream.calls().len(),
        1,
        "one upstream call for four lines"
    );
    let answered = routed
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Answered(_)))
        .count();
    let shared = routed
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Cached(_)))
        .count();
    assert_eq!((answered, shared), (1, 3));
    // Each is recorded; only the leader's carries the answer to cache.
    let records = w.memory.records.lock().unwrap();
    assert_eq!(records.len(), 4);
    assert_eq!(records.iter().filter(|r| r.cache.is_some()).count(), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn without_the_cache_identical_requests_each_go_upstream() {
    let upstream = FakeUpstream::with(&[("a", &[Reply::Slow(Duration::from_millis(20))])]);
    let w = world(&["a"], upstream, false);
    let req = request("same");
    route_together(&w.router, &req, 4).await;
    assert_eq!(w.upstream.calls().len(), 4);
}

#[tokio::test(flavor = "current_thread")]
async fn a_cancelled_router_sends_nothing_and_an_aborted_one_ends_what_is_in_flight() {
    let upstream = FakeUpstream::with(&[("a", &[Reply::Hang])]);
    let w = world(&["a"], upstream, true);
    let router = w.router.clone();
    let req = request("x");
    let in_flight = tokio::spawn(async move { router.route(&req, RouteOptions::default()).await });
    // Let it send, then end the run.
    while w.upstream.calls().is_empty() {
        tokio::task::yield_now().await;
    }
    w.router.cancel();
    let later = w.router.route(&request("y"), RouteOptions::default()).await;
    assert!(
        matches!(later.outcome, Outcome::Unsent),
        "nothing is sent after a cancel"
    );
    w.router.abort();
    let routed = in_flight.await.unwrap();
    let e = ending(&routed);
    assert_eq!(e.kind, error_type::INTERRUPTED);
    assert!(
        e.message.starts_with("interrupted after 1 attempt") && !e.message.contains("(s)"),
        "{}",
        e.message
    );
    assert_eq!(routed.attempts.len(), 1, "the attempt sent is kept");
    assert_eq!(w.upstream.calls(), ["a"]);
    let records = w.memory.records.lock().unwrap();
    assert_eq!(records.len(), 1, "the interrupted request is recorded");
    assert_eq!(
        records[0].attempts[0].error_type,
        Some(FailureKind::Interrupted.name())
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_refused_key_stops_every_request_after_it() {
    let upstream = FakeUpstream::with(&[("a", &[Reply::Status(401, None)])]);
    let w = world(&["a", "b"], upstream, true);
    let first = w.router.route(&request("x"), RouteOptions::default()).await;
    assert_eq!(ending(&first).kind, error_type::AUTH);
    let second = w.router.route(&request("y"), RouteOptions::default()).await;
    let e = ending(&second);
    assert_eq!(e.kind, error_type::AUTH);
    assert!(
        e.message.starts_with("not sent: the run was stopped"),
        "{}",
        e.message
    );
    assert_eq!(w.upstream.calls(), ["a"], "nothing after the 401");
    assert_eq!(w.router.stopped().map(|e| e.kind), Some(error_type::AUTH));
}

/// The request whose attempt the API refused was sent: its message says
/// so, not that it never was. A server, which has no run, says neither
/// that a run stopped.
#[tokio::test(flavor = "current_thread")]
async fn a_refused_request_says_it_was_sent_and_a_server_names_no_run() {
    for retry in [None, Some(Duration::from_secs(30))] {
        let upstream = FakeUpstream::with(&[("a", &[Reply::Status(401, None)])]);
        let w = world_with(&["a", "b"], upstream, true, |c| c.retry_refused = retry);
        let first = w.router.route(&request("x"), RouteOptions::default()).await;
        assert_eq!(first.attempts.len(), 1);
        let e = ending(&first);
        assert_eq!(e.kind, error_type::AUTH);
        assert!(!e.message.contains("not sent"), "{}", e.message);
        assert!(e.message.contains("after 1 attempt ("), "{}", e.message);
        assert!(e.message.contains("HTTP 401"), "{}", e.message);
        assert_eq!(e.message.contains("run"), retry.is_none(), "{}", e.message);
        let second = w.router.route(&request("y"), RouteOptions::default()).await;
        let e = ending(&second);
        assert!(e.message.starts_with("not sent"), "{}", e.message);
        assert_eq!(e.message.contains("run"), retry.is_none(), "{}", e.message);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_cached_answer_is_served_without_a_call() {
    let upstream = FakeUpstream::with(&[]);
    let w = world(&["a"], upstream, true);
    let first = w.router.route(&request("x"), RouteOptions::default()).await;
    assert!(matches!(first.outcome, Outcome::Answered(_)));
    let again = w.router.route(&request("x"), RouteOptions::default()).await;
    assert!(matches!(again.outcome, Outcome::Cached(_)));
    assert_eq!(again.cost_usd(), Some(0.0));
    assert_eq!(w.upstream.calls().len(), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn an_answer_nobody_waits_to_see_recorded_is_recorded_lazily() {
    let durable = |w: &World| w.memory.durable.load(std::sync::atomic::Ordering::Relaxed);
    let w = world(&["a"], FakeUpstream::with(&[]), false);
    let waited = w.router.route(&request("x"), RouteOptions::default()).await;
    assert!(waited.commit.is_some(), "a batch waits to write its line");
    assert_eq!(durable(&w), 1);
    let lazily = RouteOptions {
        record_lazily: true,
        ..RouteOptions::default()
    };
    let answered = w.router.route(&request("y"), lazily).await;
    assert!(matches!(answered.outcome, Outcome::Answered(_)));
    assert!(answered.commit.is_none(), "nothing to wait for");
    assert_eq!(durable(&w), 1, "the record may wait to commit with others");
    assert_eq!(w.memory.records.lock().unwrap().len(), 2, "and is recorded");
}

/// Routes `n` copies of `req` at once.
async fn route_together(router: &Arc<Router>, req: &Request, n: u64) -> Vec<Routed> {
    let mut set = tokio::task::JoinSet::new();
    for tag in 0..n {
        let (router, req) = (router.clone(), req.clone());
        set.spawn(async move { router.route(&req, RouteOptions::tagged(tag)).await });
    }
    set.join_all().await
}

#[test]
fn the_future_of_a_request_stays_small() {
    // A cache hit should not carry the attempt loop's state: tasks are
    // moved into place when spawned, so size is time.
    let upstream = FakeUpstream::with(&[]);
    let w = world(&["a"], upstream, true);
    let req = request("x");
    let fut = w.router.route(&req, RouteOptions::default());
    let size = std::mem::size_of_val(&fut);
    assert!(size <= 1024, "Router::route's future is {size} bytes");
}

#[tokio::test(flavor = "current_thread")]
async fn a_line_whose_own_settings_equal_the_runs_shares_its_cache_key() {
    let upstream = FakeUpstream::with(&[]);
    let w = world(&["a"], upstream, true);
    let plain = w.router.route(&request("x"), RouteOptions::default()).await;
    assert!(matches!(plain.outcome, Outcome::Answered(_)));
    // The same settings, given by the line: the key (sealed once for the
    // run, and worked out for this line) is the same.
    let mut own = parse_line(br#"{"prompt":"x","llmroute":{"priority":"speed"}}"#).unwrap();
    own.prepare(true);
    let again = w.router.route(&own, RouteOptions::default()).await;
    assert!(
        matches!(again.outcome, Outcome::Cached(_)),
        "{:?}",
        again.outcome
    );
    assert_eq!(w.upstream.calls().len(), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn a_server_tries_a_refused_key_again_after_a_while() {
    let upstream = FakeUpstream::with(&[("a", &[Reply::Status(401, None), Reply::Ok])]);
    let w = world_with(&["a"], upstream, true, |c| {
        c.retry_refused = Some(Duration::ZERO)
    });
    let first = w.router.route(&request("x"), RouteOptions::default()).await;
    assert_eq!(ending(&first).kind, error_type::AUTH);
    let second = w.router.route(&request("y"), RouteOptions::default()).await;
    assert_eq!(answered_by(&second), "a", "tried again, and answered");
    assert_eq!(w.upstream.calls(), ["a", "a"]);
    assert!(w.router.stopped().is_none());
}

fn streamed(routed: Routed) -> Box<Streaming> {
    match routed.outcome {
        Outcome::Streaming(s) => s,
        other => panic!("not a stream: {other:?}"),
    }
}

async fn read_all(mut s: Box<Streaming>) -> String {
    use futures_util::StreamExt;
    let mut out = Vec::new();
    while let Some(b) = s.next().await {
        out.extend_from_slice(&b);
    }
    String::from_utf8(out).unwrap()
}

fn stream_options() -> RouteOptions {
    RouteOptions {
        stream: true,
        ..RouteOptions::default()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_stream_falls_back_before_its_first_chunk_and_is_cached_whole() {
    let upstream = FakeUpstream::with(&[("a", &[Reply::Status(500, None)])]);
    let w = world(&["a", "b"], upstream, true);
    let routed = w.router.route(&request("x"), stream_options()).await;
    assert_eq!(routed.attempts.len(), 2);
    let mut s = streamed(routed);
    assert_eq!(s.model(), "b");
    let ended = Arc::new(Mutex::new(None));
    let seen = ended.clone();
    s.on_end(Box::new(move |e| *seen.lock().unwrap() = Some(e.clone())));
    let text = read_all(s).await;
    assert!(
        text.contains("[b]") && text.ends_with("data: [DONE]\n\n"),
        "{text}"
    );
    assert!(
        !text.contains("\"usage\""),
        "usage only when asked for: {text}"
    );
    let end = ended.lock().unwrap().clone().expect("told of its end");
    assert!(end.ok && end.model == "b");
    let records = w.memory.records.lock().unwrap().clone();
    let last = records.last().unwrap();
    let rows: Vec<_> = last
        .attempts
        .iter()
        .map(|a| (a.model.as_str(), a.ok))
        .collect();
    assert_eq!(rows, [("a", false), ("b", true)]);
    assert!(last.attempts[1].ttft_ms.is_some());
    assert!(last.request.as_ref().unwrap().ok);
    drop(records);
    // The same request, not streamed, is answered by the folded stream.
    let again = w.router.route(&request("x"), RouteOptions::default()).await;
    match &again.outcome {
        Outcome::Cached(a) => assert_eq!(a.content.as_deref(), Some("[b]")),
        other => panic!("not cached: {other:?}"),
    }
    assert_eq!(w.upstream.calls(), ["a", "b"]);
}

#[tokio::test(flavor = "current_thread")]
async fn a_stream_its_client_leaves_is_recorded_and_not_cached() {
    let upstream = FakeUpstream::with(&[("a", &[Reply::FirstChunkOnly])]);
    let w = world(&["a"], upstream, true);
    let mut s = streamed(w.router.route(&request("x"), stream_options()).await);
    use futures_util::StreamExt;
    let first = s.next().await.expect("the first chunk");
    assert!(String::from_utf8_lossy(&first).contains("Hel"));
    drop(s);
    let records = w.memory.records.lock().unwrap().clone();
    let last = records.last().expect("recorded when dropped");
    assert!(last.cache.is_none());
    assert_eq!(
        last.attempts[0].error_type,
        Some(FailureKind::Interrupted.name())
    );
    assert!(w.memory.cache.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "current_thread")]
async fn a_stream_the_server_stops_ends_with_its_last_event_and_is_recorded() {
    let upstream = FakeUpstream::with(&[("a", &[Reply::FirstChunkOnly])]);
    let w = world(&["a"], upstream, true);
    let mut s = streamed(w.router.route(&request("x"), stream_options()).await);
    let ended = Arc::new(Mutex::new(None));
    let seen = ended.clone();
    s.on_end(Box::new(move |e| *seen.lock().unwrap() = Some(e.clone())));
    s.stop("stopping", bytes::Bytes::from_static(b"data: bye\n\n"));
    let text = read_all(s).await;
    assert!(text.ends_with("data: bye\n\n"), "{text}");
    assert!(!text.contains("[DONE]"), "{text}");
    let end = ended.lock().unwrap().clone().expect("told of its end");
    assert!(!end.ok);
    assert_eq!(end.error.as_deref(), Some("stopping"));
    assert_eq!(end.error_kind, Some(FailureKind::Interrupted.name()));
    let records = w.memory.records.lock().unwrap().clone();
    let last = records.last().expect("recorded");
    assert!(last.cache.is_none());
    assert_eq!(
        last.attempts[0].error_type,
        Some(FailureKind::Interrupted.name())
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_cancelled_request_ends_its_attempt_and_records_it() {
    let upstream = FakeUpstream::with(&[("a", &[Reply::Hang])]);
    let w = world(&["a", "b"], upstream, true);
    let token = tokio_util::sync::CancellationToken::new();
    let opts = RouteOptions {
        cancel: Some(token.clone()),
        ..RouteOptions::default()
    };
    let router = w.router.clone();
    let task = tokio::spawn(async move { router.route(&request("x"), opts).await });
    while w.upstream.calls().is_empty() {
        tokio::task::yield_now().await;
    }
    token.cancel();
    let routed = task.await.unwrap();
    assert_eq!(ending(&routed).kind, error_type::INTERRUPTED);
    assert_eq!(w.upstream.calls(), ["a"], "no fallback after a cancel");
    let records = w.memory.records.lock().unwrap();
    let rows = &records.last().unwrap().attempts;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].error_type, Some(FailureKind::Interrupted.name()));
}

#[tokio::test(flavor = "current_thread")]
async fn cache_control_skips_the_read_or_the_write() {
    let upstream = FakeUpstream::with(&[]);
    let w = world(&["a"], upstream, true);
    let no_store = RouteOptions {
        skip_cache_write: true,
        ..RouteOptions::default()
    };
    w.router.route(&request("x"), no_store).await;
    let again = w.router.route(&request("x"), RouteOptions::default()).await;
    assert!(matches!(again.outcome, Outcome::Answered(_)), "not stored");
    let no_cache = RouteOptions {
        skip_cache_read: true,
        ..RouteOptions::default()
    };
    let fresh = w.router.route(&request("x"), no_cache).await;
    assert!(matches!(fresh.outcome, Outcome::Answered(_)), "not read");
    assert_eq!(w.upstream.calls().len(), 3);
}

#[tokio::test(flavor = "current_thread")]
async fn a_follower_whose_client_left_stops_waiting_for_the_leader() {
    let upstream = FakeUpstream::with(&[("a", &[Reply::Hang])]);
    let w = world(&["a"], upstream, true);
    let req = request("same");
    let leader = {
        let (router, req) = (w.router.clone(), req.clone());
        tokio::spawn(async move { router.route(&req, RouteOptions::tagged(1)).await })
    };
    tokio::task::yield_now().await;
    let token = tokio_util::sync::CancellationToken::new();
    let opts = RouteOptions {
        cancel: Some(token.clone()),
        ..RouteOptions::tagged(2)
    };
    let follower = {
        let (router, req) = (w.router.clone(), req.clone());
        tokio::spawn(async move { router.route(&req, opts).await })
    };
    tokio::task::yield_now().await;
    token.cancel();
    let routed = tokio::time::timeout(Duration::from_secs(5), follower)
        .await
        .expect("the follower stops waiting")
        .unwrap();
    assert_eq!(ending(&routed).kind, error_type::INTERRUPTED);
    assert_eq!(w.upstream.calls().len(), 1, "only the leader went upstream");
    leader.abort();
}
