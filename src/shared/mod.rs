//! Shared state in Redis (or Valkey), for several machines running
//! llmroute: answers, model health, and (with `--shared-limits`) the rate
//! limits and the budget. Each is a second implementation of one of the
//! engine's traits, layered over the local one; the engine does not know.
//!
//! | module     | shares                                                         |
//! |------------|----------------------------------------------------------------|
//! | this one   | the link: one multiplexed connection, timeouts, down and back  |
//! | [`keys`]   | key names: a prefix, a kind, and a hash or a model id           |
//! | [`cache`]  | answers (local store first, then Redis) and the flight lease   |
//! | [`health`] | pauses (at once, by pub/sub), latency and error averages       |
//! | [`limits`] | rpm and tpm as one GCRA, and one budget with reservations      |
//! | [`quality`] | learned quality: a posterior per task and model                |
//! | [`requests`] | answered requests, for feedback taken on any machine          |
//!
//! Redis is never needed: a call that fails or takes longer than
//! `--redis-timeout` is answered from local state, and after a failure
//! Redis is left alone for a second while a ping finds out when it is back.
//! Keys hold hashes, model ids and numbers; never prompt text or the key.

pub mod cache;
pub mod clients;
pub mod health;
pub mod keys;
pub mod limits;
pub mod quality;
pub mod requests;

use crate::setup::warn;
use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, FromRedisValue, Pipeline};
use tokio::sync::mpsc;

/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "llmroute:v1:";
/// The default time limit of one Redis call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(50);
/// How long Redis is left alone after a call failed.
const REST: Duration = Duration::from_secs(1);
/// Writes queued at most; past it, writes are dropped (and counted).
const QUEUE: usize = 8192;
/// Writes kept for Redis at most (see [`Link::send_kept`]); past it, new
/// ones are dropped.
const KEPT: usize = 8192;
/// Writes sent to Redis in one pipeline at most.
const BATCH: usize = 256;

/// The connection to Redis, shared by every part that uses it.
pub struct Link {
    conn: ConnectionManager,
    pub prefix: String,
    timeout: Duration,
    /// Unix ms until which Redis is left alone (after a failure).
    resting_until: AtomicI64,
    /// Whether the last call succeeded.
    up: AtomicBool,
    /// That Redis is down was said, and that it is back is not yet.
    down_said: AtomicBool,
    /// Redis refused the user or password when the link opened, and has
    /// not answered since.
    refused: AtomicBool,
    /// Writes, in the order they were made, for the writer task.
    writes: mpsc::Sender<Pipeline>,
    /// Writes queued and not yet sent (or given up on).
    pending: AtomicUsize,
    /// Writes that must reach Redis, kept until it has taken them.
    kept: Arc<Kept>,
    /// Where it is, without any password, for messages.
    pub shown: String,
    /// This process, for leases.
    pub id: String,
    client: redis::Client,
}

/// How the link is, for `/ready`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Up,
    Down,
}

impl Link {
    /// Connects to `url` (lazily: Redis need not be there). Must run inside
    /// a tokio runtime. Warns once on stderr when Redis does not answer.
    pub async fn open(url: &str, prefix: &str, timeout: Duration) -> anyhow::Result<Arc<Link>> {
        let shown = shown(url);
        let client = redis::Client::open(url)
            .map_err(|e| anyhow::anyhow!("--redis {shown}: {}", redact(&e.to_string(), url)))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout.max(Duration::from_millis(200))))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)
            .map_err(|e| anyhow::anyhow!("--redis {shown}: {}", redact(&e.to_string(), url)))?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let link = Arc::new(Link {
            conn,
            prefix: prefix.to_string(),
            timeout,
            resting_until: AtomicI64::new(0),
            up: AtomicBool::new(false),
            down_said: AtomicBool::new(false),
            refused: AtomicBool::new(false),
            writes: tx,
            pending: AtomicUsize::new(0),
            kept: Arc::new(Kept::default()),
            shown,
            id: format!(
                "{}-{:x}-{:x}",
                hostname(),
                std::process::id(),
                crate::engine::now_ms()
            ),
            client,
        });
        let pong: Option<String> = link.call(&redis::cmd("PING")).await;
        if pong.is_none() {
            link.down_said.store(true, Ordering::Relaxed);
            let refused = refused_login(&link.client, timeout).await;
            link.refused.store(refused, Ordering::Relaxed);
            let why = match refused {
                true => "refuses its user or password",
                false => "does not answer",
            };
            warn(format_args!(
                "Redis at {} {why}; running on local state until it does",
                link.shown
            ));
        }
        tokio::spawn(write_loop(Arc::downgrade(&link), rx));
        tokio::spawn(keep_loop(Arc::downgrade(&link), link.kept.clone()));
        tokio::spawn(watch(Arc::downgrade(&link)));
        Ok(link)
    }

    /// Whether calls are left alone now.
    fn resting(&self) -> bool {
        self.resting_until.load(Ordering::Relaxed) > crate::engine::now_ms()
    }

    fn failed(&self) {
        if self.up.swap(false, Ordering::Relaxed) {
            self.down_said.store(true, Ordering::Relaxed);
            warn(format_args!(
                "Redis at {} stopped answering; running on local state until it is back",
                self.shown
            ));
        }
        let until = crate::engine::now_ms() + REST.as_millis() as i64;
        self.resting_until.store(until, Ordering::Relaxed);
    }

    /// Why a call just failed, for a message after "Redis": "did not
    /// answer", or that it refuses the user or password when it did so
    /// from the start.
    pub fn unreached(&self) -> &'static str {
        match self.refused.load(Ordering::Relaxed) {
            true => "refuses its user or password",
            false => "did not answer",
        }
    }

    fn answered(&self) {
        self.refused.store(false, Ordering::Relaxed);
        // Said once it was said to be down (the watcher clears the rest
        // before the ping that finds it back, so the rest cannot tell).
        if !self.up.swap(true, Ordering::Relaxed) && self.down_said.swap(false, Ordering::Relaxed) {
            say(format_args!("Redis at {} is back", self.shown));
        }
    }

    /// Runs one command; `None` when Redis is resting, fails or is late.
    pub async fn call<T: FromRedisValue>(&self, cmd: &Cmd) -> Option<T> {
        let mut conn = self.conn.clone();
        self.bounded(async move { cmd.query_async::<T>(&mut conn).await })
            .await
    }

    /// Runs a pipeline; `None` when Redis is resting, fails or is late.
    pub async fn pipe<T: FromRedisValue>(&self, pipe: &Pipeline) -> Option<T> {
        let mut conn = self.conn.clone();
        self.bounded(async move { pipe.query_async::<T>(&mut conn).await })
            .await
    }

    /// Runs a script; `None` when Redis is resting, fails or is late.
    pub async fn script<T: FromRedisValue>(&self, inv: redis::ScriptInvocation<'_>) -> Option<T> {
        let mut conn = self.conn.clone();
        self.bounded(async move { inv.invoke_async::<T>(&mut conn).await })
            .await
    }

    /// A call to Redis, unless it rests, within the time limit; a failure
    /// or a late answer sends it to rest.
    async fn bounded<T>(&self, call: impl Future<Output = redis::RedisResult<T>>) -> Option<T> {
        if self.resting() {
            return None;
        }
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(v)) => {
                self.answered();
                Some(v)
            }
            _ => {
                self.failed();
                None
            }
        }
    }

    /// Queues writes, to be sent in order without waiting for them. When
    /// Redis is resting, or too much is queued, they are dropped: sharing
    /// is best effort, local state holds.
    pub fn send(&self, pipe: Pipeline) {
        if !self.resting() && self.writes.try_send(pipe).is_ok() {
            self.pending.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Queues writes that must reach Redis (a settlement of the budget),
    /// to be sent in order without waiting for them. Unlike
    /// [`Link::send`]'s, they are kept while Redis is away (up to [`KEPT`])
    /// and sent again, in order, until Redis has taken them: one that Redis
    /// carried out but did not confirm in time is sent again, so each must
    /// tell when it has been carried out already.
    pub fn send_kept(&self, pipe: Pipeline) {
        let mut queue = self.kept.queue.lock().unwrap_or_else(|e| e.into_inner());
        if queue.len() < KEPT {
            queue.push_back(pipe);
            drop(queue);
            self.kept.added.notify_one();
        }
    }

    /// Sends kept writes; whether Redis took them (even with errors that
    /// sending them again would not mend), or they are to be sent again.
    async fn deliver(&self, pipe: &Pipeline) -> bool {
        if self.resting() {
            return false;
        }
        let mut conn = self.conn.clone();
        match tokio::time::timeout(self.timeout, pipe.query_async::<()>(&mut conn)).await {
            Ok(Ok(())) => {
                self.answered();
                true
            }
            Ok(Err(e)) if matches!(e.retry_method(), redis::RetryMethod::NoRetry) => {
                self.answered();
                true
            }
            _ => {
                self.failed();
                false
            }
        }
    }

    /// Waits, at most `within`, until every queued write has been sent, and
    /// every kept one taken while Redis answers: a run's last answers and
    /// settlements reach Redis before it exits.
    pub async fn flush(&self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        self.kept.added.notify_one();
        while (self.pending.load(Ordering::Acquire) > 0
            || (self.kept.waiting() && self.up.load(Ordering::Relaxed)))
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    pub fn status(&self) -> Status {
        if self.up.load(Ordering::Relaxed) && !self.resting() {
            Status::Up
        } else {
            Status::Down
        }
    }

    /// A connection of its own, for a subscription.
    pub async fn subscriber(&self) -> Option<redis::aio::PubSub> {
        tokio::time::timeout(
            self.timeout.max(Duration::from_millis(500)),
            self.client.get_async_pubsub(),
        )
        .await
        .ok()?
        .ok()
    }
}

/// Sends queued writes in order, a batch at a time.
async fn write_loop(link: std::sync::Weak<Link>, mut rx: mpsc::Receiver<Pipeline>) {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let Some(link) = link.upgrade() else { return };
        let n = batch.len();
        let mut all = redis::pipe();
        for p in batch.drain(..) {
            for cmd in p.cmd_iter() {
                all.add_command(cmd.clone()).ignore();
            }
        }
        let _: Option<()> = link.pipe(&all).await;
        link.pending.fetch_sub(n, Ordering::AcqRel);
    }
}

/// Writes that must reach Redis, oldest first, until it has taken them.
#[derive(Default)]
struct Kept {
    queue: Mutex<VecDeque<Pipeline>>,
    /// Told when a write is kept (or a flush waits).
    added: tokio::sync::Notify,
}

impl Kept {
    fn waiting(&self) -> bool {
        !self
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }
}

/// Sends kept writes in order, a batch at a time, as they come; what Redis
/// did not take stays first, and is sent again once it is back (looked
/// for as often as the watcher pings).
async fn keep_loop(link: std::sync::Weak<Link>, kept: Arc<Kept>) {
    loop {
        tokio::select! {
            _ = kept.added.notified() => {}
            _ = tokio::time::sleep(REST / 2) => {}
        }
        let Some(link) = link.upgrade() else { return };
        loop {
            let mut all = redis::pipe();
            let n = {
                let queue = kept.queue.lock().unwrap_or_else(|e| e.into_inner());
                for p in queue.iter().take(BATCH) {
                    for cmd in p.cmd_iter() {
                        all.add_command(cmd.clone()).ignore();
                    }
                }
                queue.len().min(BATCH)
            };
            if n == 0 || !link.deliver(&all).await {
                break;
            }
            kept.queue
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .drain(..n);
        }
    }
}

/// While Redis rests, pings it now and then, so that it is used again as
/// soon as it is back.
async fn watch(link: std::sync::Weak<Link>) {
    loop {
        tokio::time::sleep(REST / 2).await;
        let Some(link) = link.upgrade() else { return };
        if link.resting() || !link.up.load(Ordering::Relaxed) {
            link.resting_until.store(0, Ordering::Relaxed);
            let _: Option<String> = link.call(&redis::cmd("PING")).await;
        }
    }
}

impl Link {
    /// Deletes every key that matches `pattern`, a page of `SCAN` at a
    /// time (never `KEYS`, which would stall Redis on a large database);
    /// the number deleted, or `None` when Redis does not answer.
    pub async fn delete_matching(&self, pattern: &str) -> Option<u64> {
        let mut cursor = 0u64;
        let mut deleted = 0u64;
        loop {
            let (next, keys): (u64, Vec<String>) = self
                .call(
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(pattern)
                        .arg("COUNT")
                        .arg(1000),
                )
                .await?;
            if !keys.is_empty() {
                deleted += self.call::<u64>(redis::cmd("UNLINK").arg(&keys)).await?;
            }
            if next == 0 {
                return Some(deleted);
            }
            cursor = next;
        }
    }
}

/// News about Redis, as [`warn`] but not a warning.
fn say(message: std::fmt::Arguments<'_>) {
    match tracing::dispatcher::has_been_set() {
        true => tracing::info!("{message}"),
        false => eprintln!("llmroute: {message}"),
    }
}

/// A Redis URL as it may be shown: scheme, host, port and database, never
/// a user or a password.
pub fn shown(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => {
            let host = u.host_str().unwrap_or("?");
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            format!("{}://{host}{port}{}", u.scheme(), u.path())
        }
        Err(_) => "(an invalid URL)".into(),
    }
}

/// Whether `url` is a Redis URL a link can be opened on (checked without
/// reaching Redis); what is wrong with it, showing no password, if not.
pub fn check_url(url: &str) -> Result<(), String> {
    let form = "give redis://[:PASSWORD@]HOST[:PORT][/DB], rediss://... for TLS, or unix:///PATH";
    let named = crate::core::urls::without_password(url);
    let scheme = match url::Url::parse(url) {
        Ok(u) => u.scheme().to_string(),
        Err(e) => return Err(format!("--redis {named}: not a URL ({e}); {form}")),
    };
    let known = [
        "redis",
        "rediss",
        "unix",
        "redis+unix",
        "valkey",
        "valkeys",
        "valkey+unix",
    ];
    if !known.contains(&scheme.as_str()) {
        return Err(format!("--redis {named}: not a Redis URL; {form}"));
    }
    redis::Client::open(url)
        .map(|_| ())
        .map_err(|e| format!("--redis {named}: {}; {form}", redact(&e.to_string(), url)))
}

/// Whether Redis answers, but refuses the URL's user or password: a
/// wrong password is not a Redis that is away, and should not be told as
/// one.
async fn refused_login(client: &redis::Client, timeout: Duration) -> bool {
    let connect = client.get_multiplexed_async_connection();
    let login = |e: &redis::RedisError| {
        let text = e.to_string();
        e.kind() == redis::ErrorKind::AuthenticationFailed
            || ["WRONGPASS", "NOAUTH", "AUTH"]
                .iter()
                .any(|w| text.contains(w))
    };
    let wait = timeout.max(Duration::from_millis(200));
    match tokio::time::timeout(wait, connect).await {
        Ok(Err(e)) => login(&e),
        // Connected without a password where one is asked: PING says so.
        Ok(Ok(mut c)) => {
            let ping = redis::cmd("PING");
            let answer = tokio::time::timeout(wait, ping.query_async::<String>(&mut c)).await;
            matches!(answer, Ok(Err(e)) if login(&e))
        }
        Err(_) => false,
    }
}

/// `text` without the URL's password, wherever it appears.
fn redact(text: &str, url: &str) -> String {
    match url::Url::parse(url)
        .ok()
        .and_then(|u| u.password().map(str::to_string))
    {
        Some(p) if !p.is_empty() => text.replace(&p, "[redacted]"),
        _ => text.to_string(),
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_shown_without_its_password() {
        assert_eq!(
            shown("redis://user:s3cret@cache.local:6380/2"),
            "redis://cache.local:6380/2"
        );
        assert_eq!(shown("rediss://:pw@h/"), "rediss://h/");
        assert_eq!(
            redact("auth failed for s3cret", "redis://u:s3cret@h"),
            "auth failed for [redacted]"
        );
    }
}
