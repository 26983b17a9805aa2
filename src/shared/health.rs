//! Model health shared through Redis. A pause (a rate limit's cooldown, a
//! circuit opened) is written with its expiry (`SET ... PX`) and announced
//! on a channel, so that every machine subscribed skips the model within
//! one round trip. Averages (latency, errors, latency by answer length)
//! are folded in atomically by a Lua script, the same folds as
//! [`crate::core::health::ModelStat`]'s, and read back every second; as
//! with a shared store, the copy with more samples wins.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{keys, Link};
use crate::core::failure::HealthSignal;
use crate::core::health::{Fit, HealthView, ModelStat, State, EWMA_ALPHA};
use crate::engine::health::LocalHealth;
use crate::engine::ports::Health;

/// How often the averages and pauses are read back.
const REFRESH: Duration = Duration::from_secs(1);
/// How long averages nobody updates are kept.
const KEEP_MS: u64 = 30 * 86_400_000;

/// The fields of a model's averages, in the script's order.
const FIELDS: [&str; 10] = [
    "ewma_ms",
    "samples",
    "error_rate",
    "tries",
    "last_at",
    "fit_x",
    "fit_xx",
    "fit_xy",
    "fit_y",
    "fit_n",
];

/// Folds one attempt into a model's averages: ARGV = alpha, latency (or -1),
/// completion tokens (or -1), failed (1, 0, or -1 when it says nothing),
/// unix ms, and how long to keep the key.
const FOLD: &str = r"
local k = KEYS[1]
local a = tonumber(ARGV[1])
local lat = tonumber(ARGV[2])
local tok = tonumber(ARGV[3])
local failed = tonumber(ARGV[4])
local at = tonumber(ARGV[5])
local h = redis.call('HMGET', k, 'ewma_ms', 'samples', 'error_rate', 'tries', 'last_at',
  'fit_x', 'fit_xx', 'fit_xy', 'fit_y', 'fit_n')
local function n(i) return tonumber(h[i]) or 0 end
local ewma, samples, err, tries, last = n(1), n(2), n(3), n(4), n(5)
local fx, fxx, fxy, fy, fn = n(6), n(7), n(8), n(9), n(10)
local function mix(v, count, x) if count > 0 then return v * (1 - a) + x * a end return x end
if lat >= 0 then ewma = mix(ewma, samples, lat); samples = samples + 1 end
if lat >= 0 and tok >= 0 then
  fx = mix(fx, fn, tok); fxx = mix(fxx, fn, tok * tok)
  fxy = mix(fxy, fn, tok * lat); fy = mix(fy, fn, lat); fn = fn + 1
end
if failed >= 0 then
  err = err * (1 - a) + failed * a; tries = tries + 1
  if at > last then last = at end
end
redis.call('HSET', k, 'ewma_ms', tostring(ewma), 'samples', samples, 'error_rate', tostring(err),
  'tries', tries, 'last_at', last, 'fit_x', tostring(fx), 'fit_xx', tostring(fxx),
  'fit_xy', tostring(fxy), 'fit_y', tostring(fy), 'fit_n', fn)
redis.call('PEXPIRE', k, ARGV[6])
return 1
";

/// Local health, with Redis beside it.
pub struct SharedHealth {
    pub local: Arc<LocalHealth>,
    pub link: Arc<Link>,
    /// The prefix of this upstream's keys ([`keys::upstream`]).
    scope: Arc<str>,
}

impl SharedHealth {
    /// Reads what other machines share, for `models`, once now; then
    /// pauses as they are announced, and everything every second.
    /// Health is kept per upstream: `upstream` is the API's identity.
    pub async fn start(
        local: Arc<LocalHealth>,
        link: Arc<Link>,
        upstream: &str,
        models: Vec<String>,
    ) -> SharedHealth {
        let scope: Arc<str> = keys::upstream(&link.prefix, upstream).into();
        read_all(&link, &scope, &local, &models).await;
        tokio::spawn(listen(Arc::downgrade(&link), scope.clone(), local.clone()));
        tokio::spawn(refresh(
            Arc::downgrade(&link),
            scope.clone(),
            local.clone(),
            models,
        ));
        SharedHealth { local, link, scope }
    }

    /// Tells every machine that `model` pauses until `until`.
    fn share_pause(&self, model: &str, until: Instant) {
        let ahead = until.saturating_duration_since(Instant::now()).as_millis() as i64;
        if ahead <= 0 {
            return;
        }
        let until_ms = crate::engine::now_ms() + ahead;
        let mut p = redis::pipe();
        // A longer pause already there is kept: SET ... GT is Redis 7's,
        // so the longer of the two is taken with a script.
        p.cmd("EVAL")
            .arg(LONGER)
            .arg(1)
            .arg(keys::pause(&self.scope, model))
            .arg(until_ms)
            .arg(ahead);
        p.cmd("PUBLISH")
            .arg(keys::events(&self.scope))
            .arg(format!("{until_ms}\t{model}"));
        self.link.send(p);
    }
}

/// Sets a pause unless a longer one is there: ARGV = until (unix ms), ms ahead.
const LONGER: &str = "local t = tonumber(redis.call('GET', KEYS[1]) or '0') \
if tonumber(ARGV[1]) > t then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end return 1";

impl HealthView for SharedHealth {
    fn stat(&self, model: &str) -> Option<ModelStat> {
        self.local.stat(model)
    }
    fn cooling_until(&self, model: &str) -> Option<Instant> {
        self.local.cooling_until(model)
    }
    fn open(&self, model: &str) -> bool {
        self.local.open(model)
    }
    fn pause_reason(&self, model: &str) -> Option<String> {
        self.local.pause_reason(model)
    }
    fn probing(&self, model: &str) -> bool {
        self.local.probing(model)
    }
    fn hedge_delay_ms(&self, model: &str) -> Option<f64> {
        self.local.hedge_delay_ms(model)
    }
    fn improving(&self, model: &str) -> bool {
        self.local.improving(model)
    }
    fn state(&self, model: &str, now: Instant) -> State {
        self.local.state(model, now)
    }
}

impl Health for SharedHealth {
    fn observe(
        &self,
        model: &str,
        signal: HealthSignal,
        latency_ms: f64,
        tokens: Option<i64>,
        at: i64,
    ) -> Option<Instant> {
        let opened = self.local.observe(model, signal, latency_ms, tokens, at);
        if signal.latency.is_some() || signal.failed.is_some() {
            let answered = signal.failed == Some(false);
            let lat = if answered || signal.latency.is_some() {
                latency_ms
            } else {
                -1.0
            };
            let tok = tokens.filter(|t| answered && *t >= 0).unwrap_or(-1);
            let failed = signal.failed.map_or(-1, i64::from);
            let mut p = redis::pipe();
            p.cmd("EVAL")
                .arg(FOLD)
                .arg(1)
                .arg(keys::health(&self.scope, model))
                .arg(EWMA_ALPHA)
                .arg(lat)
                .arg(tok)
                .arg(failed)
                .arg(at)
                .arg(KEEP_MS);
            self.link.send(p);
        }
        if let Some(until) = opened {
            self.share_pause(model, until);
        }
        opened
    }

    fn rate_limited(&self, model: &str, sent: Instant, retry_after: Option<Duration>) -> Instant {
        let until = self.local.rate_limited(model, sent, retry_after);
        self.share_pause(model, until);
        until
    }

    fn begin(&self, model: &str, probe: bool) -> Option<bool> {
        self.local.begin(model, probe)
    }

    fn end(&self, model: &str, marked: bool) {
        self.local.end(model, marked);
    }
}

/// Deletes what Redis holds of the health of `models` (every model when
/// empty) on the upstream `upstream`; the number of keys deleted, or
/// `None` when Redis did not answer.
pub async fn forget(link: &Link, upstream: &str, models: &[String]) -> Option<u64> {
    let scope = keys::upstream(&link.prefix, upstream);
    if models.is_empty() {
        let health = link.delete_matching(&format!("{scope}health:*")).await?;
        let pauses = link.delete_matching(&format!("{scope}pause:*")).await?;
        return Some(health + pauses);
    }
    let doomed: Vec<String> = models
        .iter()
        .flat_map(|m| [keys::health(&scope, m), keys::pause(&scope, m)])
        .collect();
    link.call::<u64>(redis::cmd("DEL").arg(&doomed)).await
}

/// Unix ms ahead of now as an instant.
fn instant(until_ms: i64) -> Option<Instant> {
    let ahead = until_ms - crate::engine::now_ms();
    (ahead > 0).then(|| Instant::now() + Duration::from_millis(ahead as u64))
}

/// Takes in pauses as they are announced; subscribes again when the
/// connection is lost.
async fn listen(link: std::sync::Weak<Link>, scope: Arc<str>, local: Arc<LocalHealth>) {
    use futures_util::StreamExt;
    let channel = keys::events(&scope);
    loop {
        let Some(l) = link.upgrade() else { return };
        let sub = l.subscriber().await;
        drop(l);
        let Some(mut sub) = sub else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        if sub.subscribe(&channel).await.is_err() {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        let mut messages = sub.on_message();
        while let Some(m) = messages.next().await {
            let Ok(text) = m.get_payload::<String>() else {
                continue;
            };
            let Some((until, model)) = text.split_once('\t') else {
                continue;
            };
            if let Some(at) = until.parse().ok().and_then(instant) {
                local.merge(HashMap::new(), HashMap::from([(model.to_string(), at)]));
            }
        }
        if link.upgrade().is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Reads every model's averages and pause every second.
async fn refresh(
    link: std::sync::Weak<Link>,
    scope: Arc<str>,
    local: Arc<LocalHealth>,
    models: Vec<String>,
) {
    loop {
        tokio::time::sleep(REFRESH).await;
        let Some(l) = link.upgrade() else { return };
        read_all(&l, &scope, &local, &models).await;
    }
}

/// Reads the averages and pauses of `models` into `local`, in one round trip.
async fn read_all(link: &Link, scope: &str, local: &LocalHealth, models: &[String]) {
    let mut p = redis::pipe();
    for m in models {
        p.cmd("HMGET").arg(keys::health(scope, m)).arg(&FIELDS[..]);
        p.cmd("GET").arg(keys::pause(scope, m));
    }
    let Some(flat) = link.pipe::<Vec<redis::Value>>(&p).await else {
        return;
    };
    let mut stats = HashMap::new();
    let mut pauses = HashMap::new();
    for (m, pair) in models.iter().zip(flat.chunks(2)) {
        let fields: Vec<Option<f64>> = redis::from_redis_value(pair[0].clone()).unwrap_or_default();
        let pause: Option<i64> = pair
            .get(1)
            .and_then(|v| redis::from_redis_value(v.clone()).ok())
            .flatten();
        if let Some(s) = stat(&fields) {
            stats.insert(m.clone(), s);
        }
        if let Some(at) = pause.and_then(instant) {
            pauses.insert(m.clone(), at);
        }
    }
    local.merge(stats, pauses);
}

/// A model's averages from the fields of its hash.
fn stat(f: &[Option<f64>]) -> Option<ModelStat> {
    let v = |i: usize| f.get(i).copied().flatten().unwrap_or(0.0);
    f.first().copied().flatten()?;
    Some(ModelStat {
        ewma_ms: v(0),
        samples: v(1) as i64,
        error_rate: v(2),
        tries: v(3) as i64,
        last_at: v(4) as i64,
        fit: Fit {
            x: v(5),
            xx: v(6),
            xy: v(7),
            y: v(8),
            n: v(9) as i64,
        },
    })
}
