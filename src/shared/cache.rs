//! Answers shared through Redis. A lookup reads the local store first, then
//! Redis (and keeps a Redis hit in the local store); an answer is written
//! to both (`SET ... PX` the cache TTL, unless it is larger than the cap).
//! Identical requests in flight on several machines make one call: the
//! first takes a short lease (`SET NX PX`), the others wait for its answer
//! in the cache, and go on their own if the lease ends without one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::Script;
use serde_json::{json, Value};

use super::{keys, Link};
use crate::core::cachekey::Key;
use crate::core::learned::DEFAULT_TASK;
use crate::engine::ports::{
    Answer, BoxFuture, Cache, CacheEntry, Claimed, Commit, Record, Recorder,
};

/// How often a machine waiting on another's lease looks for its answer.
const POLL: Duration = Duration::from_millis(25);

/// The local store's cache and recorder, with Redis beside them.
pub struct SharedCache<L> {
    local: Arc<L>,
    link: Arc<Link>,
    /// How long a shared answer lives.
    ttl: Duration,
    /// Answers larger than this (bytes of JSON) are kept locally only.
    max_entry: usize,
    /// How long a lease lasts at most (its holder may have died).
    lease: Duration,
    /// Leases taken by a lookup that missed, for the claim that follows it:
    /// a miss costs one round trip, not two.
    taken: Mutex<HashMap<Key, Lease>>,
    /// Leases taken so far: each lease's value is this process's id and
    /// its number, so that letting go of one never ends another.
    leases: AtomicU64,
    get_or_claim: Script,
    /// When the shared cache was last cleared (unix ms, by any machine's
    /// `DELETE /cache`): answers made before it are not served, though this
    /// machine's store still holds them. Read from Redis every second.
    cleared_at: Arc<std::sync::atomic::AtomicI64>,
    /// The upstream's scope ([`keys::upstream`]), for the notes of answered requests that
    /// let any machine take feedback on them ([`super::requests`]).
    scope: String,
}

/// How often a machine reads when the shared cache was last cleared.
const CLEARED_EVERY: Duration = Duration::from_secs(1);

/// Leases kept for their claims at most; past it they are let go.
const TAKEN: usize = 4096;

/// Looks an answer up and, when there is none, takes the lease on making
/// it: KEYS = the answer, the lease; ARGV = this process, the lease's ms.
/// Returns {answer or "", 1 when the lease was taken}.
const GET_OR_CLAIM: &str = r"
local v = redis.call('GET', KEYS[1])
if v then return {v, 0} end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {'', 1} end
return {'', 0}
";

impl<L: Cache + Recorder + 'static> SharedCache<L> {
    pub fn new(
        local: Arc<L>,
        link: Arc<Link>,
        ttl: Duration,
        max_entry: usize,
        lease: Duration,
        identity: &str,
    ) -> SharedCache<L> {
        let scope = keys::upstream(&link.prefix, identity);
        SharedCache {
            local,
            link,
            ttl,
            max_entry,
            lease,
            taken: Mutex::new(HashMap::new()),
            leases: AtomicU64::new(0),
            get_or_claim: Script::new(GET_OR_CLAIM),
            cleared_at: Arc::default(),
            scope,
        }
    }

    /// Reads when the shared cache was last cleared, now and then every
    /// [`CLEARED_EVERY`], for as long as the runtime runs: another
    /// machine's `DELETE /cache` ends this one's local copies too.
    pub async fn watch_cleared(&self) {
        let key = keys::cleared(&self.link.prefix);
        let (link, at, local) = (
            self.link.clone(),
            self.cleared_at.clone(),
            self.local.clone(),
        );
        // A clear learned of also removes this store's older answers, so
        // that it holds should Redis forget it (restarted empty).
        let read = move || {
            let (link, at, key, local) = (link.clone(), at.clone(), key.clone(), local.clone());
            async move {
                let v: Option<Option<i64>> = link.call(redis::cmd("GET").arg(&key)).await;
                if let Some(Some(ms)) = v {
                    if at.fetch_max(ms, Ordering::Relaxed) < ms {
                        let _ = local.clear_before(ms).await;
                    }
                }
            }
        };
        read().await;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(CLEARED_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                read().await;
            }
        });
    }

    /// `min_created_at`, or later when the shared cache was cleared since.
    fn since(&self, min_created_at: i64) -> i64 {
        min_created_at.max(self.cleared_at.load(Ordering::Relaxed))
    }

    async fn in_redis(&self, key: Key, min_created_at: i64) -> Option<Answer> {
        let k = keys::answer(&self.link.prefix, &key);
        let text: Option<String> = self.link.call(redis::cmd("GET").arg(&k)).await?;
        fresh(decode(&text?)?, min_created_at)
    }

    /// The value of a new lease: this process's id and the lease's number.
    fn lease_value(&self) -> String {
        let n = self.leases.fetch_add(1, Ordering::Relaxed);
        format!("{}:{n:x}", self.link.id)
    }

    /// A lookup that takes the lease when it misses, in one round trip.
    async fn look_up(&self, key: Key, min_created_at: i64) -> Option<Answer> {
        let lease_key = keys::flight(&self.link.prefix, &key);
        let value = self.lease_value();
        let mut inv = self.get_or_claim.prepare_invoke();
        inv.key(keys::answer(&self.link.prefix, &key))
            .key(&lease_key)
            .arg(&value)
            .arg(self.lease_ms());
        let (text, took): (String, i64) = self.link.script(inv).await?;
        if took == 1 {
            let mut taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
            if taken.len() >= TAKEN {
                taken.clear();
            }
            let lease = Lease {
                link: self.link.clone(),
                key: lease_key,
                value,
            };
            taken.insert(key, lease);
            return None;
        }
        fresh(decode(&text)?, min_created_at)
    }

    fn lease_ms(&self) -> u64 {
        u64::try_from(self.lease.as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    fn share(&self, entry: &CacheEntry) {
        let value = encode(&entry.answer);
        if value.len() > self.max_entry {
            return;
        }
        let ttl = u64::try_from(self.ttl.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut p = redis::pipe();
        p.cmd("SET")
            .arg(keys::answer(&self.link.prefix, &entry.key))
            .arg(value)
            .arg("PX")
            .arg(ttl);
        self.link.send(p);
    }

    async fn claim_or_wait(&self, key: Key, min_created_at: i64) -> Claimed {
        let mine = self
            .taken
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
        if let Some(lease) = mine {
            return Claimed::Go(Some(Box::new(lease)));
        }
        let lease_key = keys::flight(&self.link.prefix, &key);
        let value = self.lease_value();
        let ms = self.lease_ms();
        let take = || {
            let mut c = redis::cmd("SET");
            c.arg(&lease_key).arg(&value).arg("NX").arg("PX").arg(ms);
            c
        };
        let deadline = tokio::time::Instant::now() + self.lease;
        loop {
            match self.link.call::<Option<String>>(&take()).await {
                // Redis is not there: answer it alone.
                None => return Claimed::Go(None),
                Some(Some(_)) => {
                    let guard = Lease {
                        link: self.link.clone(),
                        key: lease_key,
                        value,
                    };
                    // The holder the lookup found may have answered and
                    // let go since: its answer, not a second payment.
                    if let Some(a) = self.in_redis(key, min_created_at).await {
                        drop(guard);
                        self.keep_locally(key, &a);
                        return Claimed::Answered(a);
                    }
                    return Claimed::Go(Some(Box::new(guard)));
                }
                Some(None) => {}
            }
            // Another machine is answering it: wait for its answer.
            loop {
                if let Some(a) = self.in_redis(key, min_created_at).await {
                    self.keep_locally(key, &a);
                    return Claimed::Answered(a);
                }
                if tokio::time::Instant::now() >= deadline {
                    return Claimed::Go(None);
                }
                tokio::time::sleep(POLL).await;
                let held: Option<i64> = self.link.call(redis::cmd("EXISTS").arg(&lease_key)).await;
                match held {
                    None => return Claimed::Go(None),
                    // The lease ended: look once more, then try to take it.
                    Some(0) => break,
                    Some(_) => {}
                }
            }
            if let Some(a) = self.in_redis(key, min_created_at).await {
                self.keep_locally(key, &a);
                return Claimed::Answered(a);
            }
        }
    }

    /// A Redis hit goes into the local store too.
    fn keep_locally(&self, key: Key, answer: &Answer) {
        self.local.record(Record {
            cache: Some(CacheEntry {
                key,
                answer: answer.clone(),
            }),
            ..Record::default()
        });
    }
}

impl<L: Cache + Recorder + 'static> Cache for SharedCache<L> {
    fn get(&self, key: Key, min_created_at: i64) -> BoxFuture<'_, Option<Answer>> {
        let min_created_at = self.since(min_created_at);
        Box::pin(async move {
            if let Some(a) = self.local.get(key, min_created_at).await {
                return Some(a);
            }
            let a = self.look_up(key, min_created_at).await?;
            self.keep_locally(key, &a);
            Some(a)
        })
    }

    fn claim(&self, key: Key, min_created_at: i64) -> Option<BoxFuture<'_, Claimed>> {
        Some(Box::pin(
            self.claim_or_wait(key, self.since(min_created_at)),
        ))
    }

    fn let_go(&self, key: Key) {
        // Dropped: deleted in Redis, unless another has it by now.
        drop(
            self.taken
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&key),
        );
        self.local.let_go(key);
    }

    /// The local store's answers, then every answer Redis shares under
    /// this prefix: a cleared cache must not be served back from Redis.
    fn clear(&self) -> BoxFuture<'_, Result<u64, String>> {
        Box::pin(async move {
            // Marked first: the other machines stop serving their local
            // copies within a second, whatever happens next.
            let now = crate::engine::now_ms();
            let marked: Option<()> = self
                .link
                .call(
                    redis::cmd("SET")
                        .arg(keys::cleared(&self.link.prefix))
                        .arg(now),
                )
                .await;
            marked
                .ok_or_else(|| format!("Redis at {} {}", self.link.shown, self.link.unreached()))?;
            self.cleared_at.fetch_max(now, Ordering::Relaxed);
            let local = self.local.clear().await?;
            let shared = self
                .link
                .delete_matching(&format!("{}cache:*", self.link.prefix))
                .await
                .ok_or_else(|| format!("Redis at {} {}", self.link.shown, self.link.unreached()))?;
            Ok(local + shared)
        })
    }
}

impl<L: Cache + Recorder + 'static> SharedCache<L> {
    /// Shares what a record holds for other machines: its answer, and
    /// that its request was answered (for feedback on it).
    fn share_record(&self, record: &Record) {
        if let Some(c) = &record.cache {
            self.share(c);
        }
        let Some(r) = record.request.as_ref().filter(|r| r.ok) else {
            return;
        };
        if let (Some(rid), Some(model)) = (&r.rid, &r.model) {
            let task = r.task.as_deref().unwrap_or(DEFAULT_TASK);
            let id = (r.key.as_deref(), &**rid);
            super::requests::answered(&self.link, id, &self.scope, (task, model));
        }
    }
}

impl<L: Cache + Recorder + 'static> Recorder for SharedCache<L> {
    fn record(&self, record: Record) {
        self.share_record(&record);
        self.local.record(record);
    }

    fn record_durable(&self, record: Record) -> Commit {
        self.share_record(&record);
        self.local.record_durable(record)
    }

    fn failure(&self) -> Option<String> {
        self.local.failure()
    }

    fn after_each_commit(&self, hook: Box<dyn Fn() + Send + Sync>) {
        self.local.after_each_commit(hook);
    }
}

/// A lease on answering a request; let go (if still ours) when dropped,
/// after the answer's write, which was queued before it.
struct Lease {
    link: Arc<Link>,
    key: String,
    /// What it holds in Redis: this lease's own.
    value: String,
}

const RELEASE: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

impl Drop for Lease {
    fn drop(&mut self) {
        let mut p = redis::pipe();
        p.cmd("EVAL")
            .arg(RELEASE)
            .arg(1)
            .arg(&self.key)
            .arg(&self.value);
        self.link.send(p);
    }
}

/// An answer if made after `min_created_at`.
fn fresh(a: Answer, min_created_at: i64) -> Option<Answer> {
    (a.created_at >= min_created_at).then_some(a)
}

/// An answer as Redis keeps it.
fn encode(a: &Answer) -> String {
    json!({
        "model": a.model,
        "response": a.response,
        "content": a.content,
        "cost_usd": a.cost_usd,
        "prompt_tokens": a.prompt_tokens,
        "completion_tokens": a.completion_tokens,
        "score": a.score,
        "created_at": a.created_at,
    })
    .to_string()
}

fn decode(text: &str) -> Option<Answer> {
    let v: Value = serde_json::from_str(text).ok()?;
    Some(Answer {
        model: v["model"].as_str()?.to_string(),
        response: v["response"].as_str()?.to_string(),
        content: v["content"].as_str().map(str::to_string),
        cost_usd: v["cost_usd"].as_f64(),
        prompt_tokens: v["prompt_tokens"].as_i64(),
        completion_tokens: v["completion_tokens"].as_i64(),
        score: v["score"].as_f64(),
        created_at: v["created_at"].as_i64()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_comes_back_as_it_went() {
        let a = Answer {
            model: "a/b".into(),
            response: r#"{"choices":[]}"#.into(),
            content: Some("hi".into()),
            cost_usd: Some(0.25),
            prompt_tokens: Some(3),
            completion_tokens: None,
            score: Some(0.5),
            created_at: 42,
        };
        assert_eq!(decode(&encode(&a)), Some(a));
        assert_eq!(decode("{}"), None);
        assert_eq!(decode("not json"), None);
    }
}
