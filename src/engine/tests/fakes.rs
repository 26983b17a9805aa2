//! In-memory fakes of the engine's traits, and a router built on them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::core::attempts::Ending;
use crate::core::cachekey::Key;
use crate::core::catalogue::{Catalogue, Origin};
use crate::core::failure::{classify_status, Failure, Success, Usage};
use crate::core::ranking::{Presets, Settings};
use crate::core::request::{parse_line, Request};
use crate::core::scoring::Priority;
use crate::engine::admission::{Limits, RateLimits};
use crate::engine::health::LocalHealth;
use crate::engine::ports::*;
use crate::engine::{Config, Hedge, Outcome, Parts, Routed, Router};

/// What a fake model does with a request.
#[derive(Clone)]
pub(super) enum Reply {
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
pub(super) struct FakeUpstream {
    /// Replies in turn; the last one repeats.
    pub(super) script: Mutex<HashMap<String, Vec<Reply>>>,
    pub(super) calls: Mutex<Vec<String>>,
}

impl FakeUpstream {
    pub(super) fn with(script: &[(&str, &[Reply])]) -> Arc<FakeUpstream> {
        let f = FakeUpstream::default();
        for (model, replies) in script {
            f.script
                .lock()
                .unwrap()
                .insert(model.to_string(), replies.to_vec());
        }
        Arc::new(f)
    }

    pub(super) fn calls(&self) -> Vec<String> {
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

pub(super) fn success(model: &str) -> Success {
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
                    // Runs next, once the request waits for its answer.
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
pub(super) struct Memory {
    pub(super) cache: Mutex<HashMap<Key, Answer>>,
    pub(super) records: Mutex<Vec<Record>>,
    /// Records someone waits to see durable.
    pub(super) durable: std::sync::atomic::AtomicUsize,
}

impl Cache for Memory {
    fn get(&self, key: Key, _min: i64) -> BoxFuture<'_, Option<Answer>> {
        let hit = self.cache.lock().unwrap().get(&key).cloned();
        Box::pin(async move { hit })
    }

    fn clear(&self) -> BoxFuture<'_, Result<u64, String>> {
        let mut cache = self.cache.lock().unwrap();
        let n = cache.len() as u64;
        cache.clear();
        Box::pin(async move { Ok(n) })
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
        self.durable
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.record(record);
        Commit::done()
    }

    fn after_each_commit(&self, _hook: Box<dyn Fn() + Send + Sync>) {}
}

/// A budget kept elsewhere (as one shared through Redis is): every
/// reservation is a round trip, and is counted.
#[derive(Default)]
pub(super) struct RoundTrips {
    pub(super) reserves: std::sync::atomic::AtomicUsize,
}

impl Admission for RoundTrips {
    fn reserve(&self, estimate: f64, _wait: bool) -> Reserve<'_> {
        self.reserves
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Reserve::Later(Box::pin(async move {
            tokio::task::yield_now().await;
            Ok(Some(Reservation(estimate)))
        }))
    }

    fn settle(&self, _r: Reservation, _actual: Option<f64>) {}

    fn budget_left(&self) -> Option<f64> {
        None
    }

    fn budget(&self) -> Option<BudgetView> {
        None
    }

    fn unlimited(&self) -> bool {
        true
    }

    fn acquire(&self, _tokens: u64) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }

    fn owe(&self, _tokens: u64) {}
}

pub(super) struct Quiet;
impl Observer for Quiet {}

pub(super) struct World {
    pub(super) router: Arc<Router>,
    pub(super) upstream: Arc<FakeUpstream>,
    pub(super) memory: Arc<Memory>,
    pub(super) health: Arc<LocalHealth>,
}

pub(super) fn world(models: &[&str], upstream: Arc<FakeUpstream>, use_cache: bool) -> World {
    world_with(models, upstream, use_cache, |_| {})
}

pub(super) fn world_with(
    models: &[&str],
    upstream: Arc<FakeUpstream>,
    use_cache: bool,
    tweak: impl FnOnce(&mut Config),
) -> World {
    world_of(models, upstream, use_cache, tweak, |_| {})
}

/// A world whose parts `change` changes.
pub(super) fn world_of(
    models: &[&str],
    upstream: Arc<FakeUpstream>,
    use_cache: bool,
    tweak: impl FnOnce(&mut Config),
    change: impl FnOnce(&mut Parts),
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
    let mut parts = Parts {
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
    change(&mut parts);
    let catalogue = Catalogue::from_models(vec![], 0, Origin::Live);
    World {
        router: Arc::new(Router::new(config, catalogue, parts)),
        upstream,
        memory,
        health,
    }
}

pub(super) fn request(prompt: &str) -> Request {
    let mut r = parse_line(format!(r#"{{"prompt":"{prompt}"}}"#).as_bytes()).unwrap();
    r.prepare(true);
    r
}

pub(super) fn answered_by(routed: &Routed) -> &str {
    match &routed.outcome {
        Outcome::Answered(a) | Outcome::Cached(a) => &a.model,
        other => panic!("no answer: {other:?}"),
    }
}

pub(super) fn ending(routed: &Routed) -> &Ending {
    match &routed.outcome {
        Outcome::Failed(e) => e,
        other => panic!("not a failure: {other:?}"),
    }
}
