//! The engine with in-memory fakes of its traits: no HTTP, no SQLite.

mod hedging;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::admission::{Limits, RateLimits};
use super::health::LocalHealth;
use super::ports::*;
use super::*;
use crate::core::cachekey::Key;
use crate::core::catalogue::{Catalogue, Origin};
use crate::core::failure::{classify_status, error_type, Failure, FailureKind, Success, Usage};
use crate::core::health::HealthView;
use crate::core::request::{parse_line, Request};
use crate::core::scoring::Priority;

/// What a fake model does with a request.
#[derive(Clone)]
enum Reply {
    Ok,
    Status(u16, Option<&'static str>),
    /// Answers after this long.
    Slow(Duration),
    /// Answers after 10 ms; but once the request is sent, the process is
    /// starved of CPU (its thread blocked) for 50 ms.
    Starved,
    /// Never answers.
    Hang,
    /// For a stream: the first chunk, then nothing more.
    FirstChunkOnly,
}

/// An upstream that answers by a script per model, and logs which model
/// each request went to.
#[derive(Default)]
struct FakeUpstream {
    /// Replies in turn; the last one repeats.
    script: Mutex<HashMap<String, Vec<Reply>>>,
    calls: Mutex<Vec<String>>,
}

impl FakeUpstream {
    fn with(script: &[(&str, &[Reply])]) -> Arc<FakeUpstream> {
        let f = FakeUpstream::default();
        for (model, replies) in script {
            f.script
                .lock()
                .unwrap()
                .insert(model.to_string(), replies.to_vec());
        }
        Arc::new(f)
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    /// Logs a call, and takes the model's next reply.
    fn next_reply(&self, body: &[u8]) -> (String, Reply) {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap();
        let model = v["model"].as_str().unwrap().to_string();
        self.calls.lock().unwrap().push(model.clone());
        let mut script = self.script.lock().unwrap();
        let replies = script
            .entry(model.clone())
            .or_insert_with(|| vec![Reply::Ok]);
        let reply = if replies.len() > 1 {
            replies.remove(0)
        } else {
            replies[0].clone()
        };
        (model, reply)
    }
}

fn success(model: &str) -> Success {
    Success {
        status: 200,
        body: format!(r#"{{"choices":[{{"message":{{"content":"[{model}]"}}}}]}}"#),
        content: Some(format!("[{model}]")),
        usage: Usage::default(),
    }
}

impl Upstream for FakeUpstream {
    fn complete(
        &self,
        body: Vec<u8>,
        _timeout: Duration,
    ) -> BoxFuture<'_, Result<Success, Failure>> {
        let (model, reply) = self.next_reply(&body);
        Box::pin(async move {
            match reply {
                Reply::Ok | Reply::FirstChunkOnly => Ok(success(&model)),
                Reply::Slow(d) => {
                    tokio::time::sleep(d).await;
                    Ok(success(&model))
                }
                Reply::Starved => {
                    // Polled next, once the request's task waits.
                    tokio::spawn(async { std::thread::sleep(Duration::from_millis(50)) });
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    Ok(success(&model))
                }
                Reply::Hang => std::future::pending().await,
                Reply::Status(code, retry_after) => Err(classify_status(
                    code,
                    retry_after.and_then(crate::core::failure::parse_retry_after),
                    b"fake",
                )),
            }
        })
    }

    fn open(&self, body: Vec<u8>, timeout: Duration) -> BoxFuture<'_, Result<Opened, Failure>> {
        if let Some(opened) = self.first_chunk_only(body.clone()) {
            return Box::pin(async move { Ok(opened) });
        }
        Box::pin(async move {
            self.complete(body, timeout)
                .await
                .map(|s| Opened::whole(&s))
        })
    }
}

impl FakeUpstream {
    /// A stream's first chunk, then nothing: a stream a client may leave.
    fn first_chunk_only(&self, body: Vec<u8>) -> Option<Opened> {
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let model = v["model"].as_str()?;
        let script = self.script.lock().unwrap();
        if !matches!(script.get(model)?.first()?, Reply::FirstChunkOnly) {
            return None;
        }
        drop(script);
        self.calls.lock().unwrap().push(model.to_string());
        let first = bytes::Bytes::from(crate::core::sse::frame(
            r#"{"choices":[{"index":0,"delta":{"content":"Hel"}}]}"#,
        ));
        use futures_util::StreamExt;
        let events = futures_util::stream::once(async move { Ok::<_, Failure>(first) })
            .chain(futures_util::stream::pending());
        Some(Opened {
            status: 200,
            events: Box::pin(events),
        })
    }
}

/// A cache and recorder in memory; records are durable at once.
#[derive(Default)]
struct Memory {
    cache: Mutex<HashMap<Key, Answer>>,
    records: Mutex<Vec<Record>>,
}

impl Cache for Memory {
    fn get(&self, key: Key, _min: i64) -> BoxFuture<'_, Option<Answer>> {
        let hit = self.cache.lock().unwrap().get(&key).cloned();
        Box::pin(async move { hit })
    }
}

impl Recorder for Memory {
    fn record(&self, record: Record) {
        if let Some(c) = &record.cache {
            self.cache.lock().unwrap().insert(c.key, c.answer.clone());
        }
        self.records.lock().unwrap().push(record);
    }

    fn record_durable(&self, record: Record) -> Commit {
        self.record(record);
        Commit::done()
    }

    fn after_each_commit(&self, _hook: Box<dyn Fn() + Send + Sync>) {}
}

struct Quiet;
impl Observer for Quiet {}

struct World {
    router: Arc<Router>,
    upstream: Arc<FakeUpstream>,
    memory: Arc<Memory>,
    health: Arc<LocalHealth>,
}

fn world(models: &[&str], upstream: Arc<FakeUpstream>, use_cache: bool) -> World {
    world_with(models, upstream, use_cache, |_| {})
}

fn world_with(
    models: &[&str],
    upstream: Arc<FakeUpstream>,
    use_cache: bool,
    tweak: impl FnOnce(&mut Config),
) -> World {
    let memory = Arc::new(Memory::default());
    let health = Arc::new(LocalHealth::default());
    let config = Config {
        settings: Settings::new(
            "speed".into(),
            Priority::Speed.weights(),
            models.iter().map(|m| m.to_string()).collect(),
            vec![],
            HashMap::new(),
        ),
        presets: Presets::new(),
        dry_run: false,
        explain: false,
        timeout: Duration::from_secs(5),
        cache_ttl: Duration::from_secs(3600),
        use_cache,
        max_attempts: 4,
        explore: 0.0,
        hedge: Hedge::Off,
        upstream: "http://upstream.test/v1".into(),
        retry_refused: None,
        track_cache_use: false,
    };
    let mut config = config;
    tweak(&mut config);
    let parts = Parts {
        upstream: Some(upstream.clone()),
        cache: memory.clone(),
        recorder: memory.clone(),
        health: health.clone(),
        admission: Arc::new(Limits {
            rates: RateLimits::new(None, None),
            budget: None,
        }),
        observer: Arc::new(Quiet),
    };
    let catalogue = Catalogue::from_models(vec![], 0, Origin::Live);
    World {
        router: Arc::new(Router::new(config, catalogue, parts)),
        upstream,
        memory,
        health,
    }
}

fn request(prompt: &str) -> Request {
    let mut r = parse_line(format!(r#"{{"prompt":"{prompt}"}}"#).as_bytes()).unwrap();
    r.prepare(true, &mut Vec::new());
    r
}

fn answered_by(routed: &Routed) -> &str {
    match &routed.outcome {
        Outcome::Answered(a) | Outcome::Cached(a) => &a.model,
        other => panic!("no answer: {other:?}"),
    }
}

fn ending(routed: &Routed) -> &Ending {
    match &routed.outcome {
        Outcome::Failed(e) => e,
        other => panic!("not a failure: {other:?}"),
    }
}

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
        e.message.starts_with("interrupted after 1 attempt(s)"),
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
    own.prepare(true, &mut Vec::new());
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
