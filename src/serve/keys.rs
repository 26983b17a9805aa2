//! Client keys as a server holds them: looked up by the SHA-256 of the
//! bearer token, each with its policy, its budget for the current period
//! and its requests and tokens of the current minute. The ring is rebuilt
//! from the store (and Redis) every few seconds, so keys made or revoked
//! while the server runs take effect without a restart; a key whose
//! record did not change keeps its counters.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::core::keys::{KeyRecord, Period, Policy};
use crate::core::minute::{minute_of, Window};
use crate::engine::ports::Allowance;

/// Makes a key's budget for a period: (name, policy, the period's start
/// in unix ms, the period's name).
pub type MakeBudget = Box<dyn Fn(&str, &Policy, i64, &str) -> Allowance + Send + Sync>;

/// How often the keys are read again.
pub const RELOAD_EVERY: Duration = Duration::from_secs(2);

/// A key the server lets in.
pub struct Client {
    pub name: Arc<str>,
    /// The SHA-256 of its token.
    pub digest: [u8; 32],
    pub policy: Policy,
    /// A token of `LLMROUTE_AUTH_TOKENS` or `--auth-token-file`: no limits,
    /// and it may read the dashboard and the metrics.
    pub trusted: bool,
    /// Its own part of the cache: its name's, for a key (the name is the
    /// client: made again with a new token, it keeps its cache as it keeps
    /// its spend); its token's digest for a trusted token, which is named
    /// only by its place in a list.
    pub cache_scope: [u8; 32],
    record: Option<KeyRecord>,
    /// The budget of the current period, by the period's name.
    budget: Mutex<Option<(String, Allowance)>>,
    window: Mutex<Window>,
    /// Requests it made through this process.
    pub requests: AtomicU64,
    /// Requests refused for its rates.
    pub limited: AtomicU64,
    /// What its requests cost through this process (f64 bits).
    spent: AtomicU64,
}

/// Tokens a request holds of its key's minute while in flight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Held {
    minute: i64,
    tokens: u64,
}

impl Held {
    /// The tokens held: the request's estimate.
    pub fn tokens(&self) -> u64 {
        self.tokens
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Client({})", self.name)
    }
}

impl Client {
    fn new(name: Arc<str>, digest: [u8; 32], record: Option<KeyRecord>) -> Client {
        let cache_scope = match record {
            Some(_) => Sha256::new()
                .chain_update(b"llmroute key name\0")
                .chain_update(name.as_bytes())
                .finalize()
                .into(),
            None => digest,
        };
        Client {
            name,
            digest,
            cache_scope,
            policy: record
                .as_ref()
                .map(|r| r.policy.clone())
                .unwrap_or_default(),
            trusted: record.is_none(),
            record,
            budget: Mutex::new(None),
            window: Mutex::new(Window::default()),
            requests: AtomicU64::new(0),
            limited: AtomicU64::new(0),
            spent: AtomicU64::new(0f64.to_bits()),
        }
    }

    /// The key's budget now, made (or made anew, when a period has begun)
    /// by `make`. None for a key without a budget.
    pub fn allowance(&self, now_ms: i64, make: &MakeBudget) -> Option<Allowance> {
        self.policy.budget_usd?;
        let (start, _, period) = self.policy.period.at(now_ms);
        let mut held = self.budget.lock().unwrap_or_else(|e| e.into_inner());
        match &*held {
            Some((p, a)) if *p == period => Some(a.clone()),
            _ => {
                let a = make(&self.name, &self.policy, start, &period);
                *held = Some((period, a.clone()));
                Some(a)
            }
        }
    }

    /// Takes a request of the current minute against the key's rates:
    /// `shared` is what all machines counted (Redis), else this one's
    /// count holds. Err: the seconds until the minute ends.
    pub fn take(&self, now_ms: i64, shared: Option<(u64, u64)>) -> Result<(), u64> {
        let (_, left) = minute_of(now_ms);
        let mut held = self.window.lock().unwrap_or_else(|e| e.into_inner());
        let w = held.at(now_ms);
        // A shared count already holds this request.
        let (requests, tokens) = shared.unwrap_or((w.requests + 1, w.tokens));
        let over_rpm = self.policy.rpm.is_some_and(|n| requests > u64::from(n));
        let over_tpm = self.policy.tpm.is_some_and(|n| tokens >= u64::from(n));
        if over_rpm || over_tpm {
            self.limited.fetch_add(1, Ordering::Relaxed);
            return Err(left);
        }
        w.requests += 1;
        if let Some((r, t)) = shared {
            w.shared = (w.shared.0.max(r), w.shared.1.max(t));
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Holds `estimate` tokens of the current minute for a request of a
    /// key with a `tpm`, once its body is read: refused (Err: the seconds
    /// until the minute ends) while the minute's tokens, used and held by
    /// requests in flight, are at the limit, so that requests sent at once
    /// cannot all pass before any has used its tokens. `shared`: the
    /// tokens all machines counted (Redis). Ok: the hold, given back by
    /// [`Self::used`]; None for a key without a `tpm`.
    pub fn hold(
        &self,
        now_ms: i64,
        estimate: u64,
        shared: Option<u64>,
    ) -> Result<Option<Held>, u64> {
        let Some(tpm) = self.policy.tpm else {
            return Ok(None);
        };
        let (_, left) = minute_of(now_ms);
        let mut held = self.window.lock().unwrap_or_else(|e| e.into_inner());
        let w = held.at(now_ms);
        let used = shared.unwrap_or(w.tokens).max(w.tokens);
        if used + w.held >= u64::from(tpm) {
            // Let past the rates by `take`, it is refused by them after all.
            let _ = (self.requests).fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(1))
            });
            self.limited.fetch_add(1, Ordering::Relaxed);
            return Err(left);
        }
        w.held += estimate;
        Ok(Some(Held {
            minute: w.minute,
            tokens: estimate,
        }))
    }

    /// Counts the tokens a request of the key used, and gives back what
    /// it held.
    pub fn used(&self, now_ms: i64, tokens: u64, cost_usd: Option<f64>, held: Option<Held>) {
        let (minute, _) = minute_of(now_ms);
        let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = held.filter(|h| h.minute == w.minute) {
            w.held = w.held.saturating_sub(h.tokens);
        }
        if w.minute <= minute {
            w.at(now_ms).tokens += tokens;
        }
        drop(w);
        if let Some(c) = cost_usd.filter(|c| *c > 0.0) {
            let _ = self
                .spent
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                    Some((f64::from_bits(b) + c).to_bits())
                });
        }
    }

    /// Counts a request of a key without rates in the current minute, for
    /// `/v1/key` and the dashboard: nothing to refuse, so no shared count.
    pub fn count(&self, now_ms: i64) {
        self.window
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .at(now_ms)
            .requests += 1;
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether it has per-minute rates to keep.
    pub fn has_rates(&self) -> bool {
        self.policy.rpm.is_some() || self.policy.tpm.is_some()
    }

    /// Its row on the dashboard.
    pub fn row(&self, now_ms: i64, make: &MakeBudget) -> crate::view::KeyRow {
        let v = self.view(now_ms, make);
        let n = |k: &str| v[k].as_u64().unwrap_or(0);
        let f = |k: &str| v[k].as_f64();
        crate::view::KeyRow {
            name: self.name.to_string(),
            requests: n("requests"),
            rate_limited: n("rate_limited"),
            spent_usd: f("spent_usd"),
            budget_usd: self.policy.budget_usd,
            left_usd: f("left_usd"),
            period: self
                .policy
                .budget_usd
                .map(|_| self.policy.period.name().to_string()),
            requests_this_minute: n("requests_this_minute"),
            rpm: self.policy.rpm,
            tokens_this_minute: n("tokens_this_minute"),
            tpm: self.policy.tpm,
        }
    }

    /// What it has used and has left, as the dashboard and `GET /v1/key`
    /// show it (its budget made by `make`, if no request has yet: this
    /// may read the store).
    pub fn view(&self, now_ms: i64, make: &MakeBudget) -> serde_json::Value {
        let _ = self.allowance(now_ms, make);
        let (requests_now, tokens_now) = self
            .window
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .counts(now_ms);
        let budget = self
            .budget
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .and_then(|(_, a)| a.0.budget());
        let p = &self.policy;
        let (_, end, period) = p.period.at(now_ms);
        serde_json::json!({
            "name": &*self.name,
            "budget_usd": p.budget_usd,
            "period": p.budget_usd.map(|_| period),
            "period_ends_ms": (p.budget_usd.is_some() && p.period != Period::Total).then_some(end),
            "spent_usd": budget.map(|b| shown_usd(b.spent)),
            "reserved_usd": budget.map(|b| shown_usd(b.reserved)),
            "left_usd": budget.map(|b| shown_usd((b.max - b.spent).max(0.0))),
            "spent_here_usd": crate::core::numbers::round_usd(f64::from_bits(self.spent.load(Ordering::Relaxed))),
            "rpm": p.rpm,
            "requests_this_minute": requests_now,
            "tpm": p.tpm,
            "tokens_this_minute": tokens_now,
            "requests": self.requests.load(Ordering::Relaxed),
            "rate_limited": self.limited.load(Ordering::Relaxed),
            "models": &p.models,
            "priorities": &p.priorities,
            "max_tokens": p.max_tokens,
            "cache": p.cache,
            "feedback": p.feedback,
            "expires_at_ms": p.expires_at_ms,
        })
    }
}

/// An amount of a budget as shown: what reservations taken and given back
/// leave below a billionth of a dollar (their sums' rounding) is 0.
fn shown_usd(x: f64) -> f64 {
    match x.abs() < 1e-9 {
        true => 0.0,
        false => crate::core::numbers::round_usd(x),
    }
}

/// The key a request came with (none on a server without tokens).
#[derive(Clone)]
pub struct Caller(pub Option<Arc<Client>>);

/// What a bearer token is to the server.
pub enum Found {
    /// The server takes no tokens (loopback, no keys).
    Open,
    Key(Arc<Client>),
    /// Why, and the key's name when the token is a revoked or expired one.
    Refused(String, Option<Arc<str>>),
}

#[derive(Default)]
struct Table {
    live: HashMap<[u8; 32], Arc<Client>>,
    /// Revoked or expired keys, by token, with why and their names.
    dead: HashMap<[u8; 32], (String, Arc<str>)>,
    /// Whether tokens are needed at all.
    required: bool,
}

/// Every key the server knows.
pub struct KeyRing {
    table: RwLock<Arc<Table>>,
    /// The trusted tokens' digests, kept across reloads.
    trusted: Vec<[u8; 32]>,
    /// The admin tokens' digests: trusted too, but they alone do not make
    /// the server take tokens.
    admins: Vec<[u8; 32]>,
    /// The records last loaded.
    loaded: Mutex<Vec<KeyRecord>>,
    pub make_budget: MakeBudget,
}

impl KeyRing {
    /// A ring of the trusted and admin tokens (digests) alone.
    pub fn new(trusted: Vec<[u8; 32]>, admins: Vec<[u8; 32]>, make_budget: MakeBudget) -> KeyRing {
        let ring = KeyRing {
            table: RwLock::new(Arc::new(Table::default())),
            trusted,
            admins,
            loaded: Mutex::new(Vec::new()),
            make_budget,
        };
        ring.build(&[], crate::engine::now_ms());
        ring
    }

    /// Whether a request needs a token.
    pub fn required(&self) -> bool {
        self.table().required
    }

    fn table(&self) -> Arc<Table> {
        self.table.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Loads `records` (the store's and Redis's, merged) when they changed.
    /// Returns whether they did.
    pub fn load(&self, records: Vec<KeyRecord>, now_ms: i64) -> bool {
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if *loaded == records {
            return false;
        }
        self.build(&records, now_ms);
        *loaded = records;
        true
    }

    fn build(&self, records: &[KeyRecord], now_ms: i64) {
        let old = self.table();
        let mut t = Table {
            required: !self.trusted.is_empty() || !records.is_empty(),
            ..Table::default()
        };
        // Named by place, not by their digests: a name shown in reports,
        // logs and metrics must not help anyone guess a weak token.
        let named = (self
            .trusted
            .iter()
            .enumerate()
            .map(|(i, d)| (format!("token-{}", i + 1), d)))
        .chain(
            self.admins
                .iter()
                .enumerate()
                .map(|(i, d)| (format!("admin-{}", i + 1), d)),
        );
        for (name, d) in named {
            if t.live.contains_key(d) {
                continue;
            }
            let name: Arc<str> = name.into();
            let client = old
                .live
                .get(d)
                .filter(|c| c.trusted)
                .cloned()
                .unwrap_or_else(|| Arc::new(Client::new(name, *d, None)));
            t.live.insert(*d, client);
        }
        for r in records {
            let Some(d) = r.digest() else { continue };
            if !r.active(now_ms) {
                let why = match r.revoked_at_ms {
                    Some(_) => format!("key {} was revoked", r.name),
                    None => format!("key {} has expired", r.name),
                };
                t.dead.insert(d, (why, r.name.as_str().into()));
                continue;
            }
            let kept = old
                .live
                .get(&d)
                .filter(|c| c.record.as_ref() == Some(r))
                .cloned();
            let client = kept.unwrap_or_else(|| {
                Arc::new(Client::new(r.name.as_str().into(), d, Some(r.clone())))
            });
            t.live.insert(d, client);
        }
        *self.table.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(t);
    }

    /// Who `token` is.
    pub fn find(&self, token: Option<&str>, now_ms: i64) -> Found {
        let t = self.table();
        if !t.required {
            return Found::Open;
        }
        let Some(token) = token.map(str::trim).filter(|t| !t.is_empty()) else {
            return Found::Refused(
                "a valid token is needed: send Authorization: Bearer <token>".into(),
                None,
            );
        };
        let d: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        match t.live.get(&d) {
            Some(c) if c.policy.expires_at_ms.is_some_and(|e| now_ms >= e) => {
                Found::Refused(format!("key {} has expired", c.name), Some(c.name.clone()))
            }
            Some(c) => Found::Key(c.clone()),
            None => match t.dead.get(&d) {
                Some((why, name)) => Found::Refused(why.clone(), Some(name.clone())),
                None => Found::Refused(
                    "a valid token is needed: send Authorization: Bearer <token>".into(),
                    None,
                ),
            },
        }
    }

    /// Every live key, by name.
    pub fn clients(&self) -> Vec<Arc<Client>> {
        let mut all: Vec<Arc<Client>> = self.table().live.values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }
}

/// Makes each key's budget: this machine's, started from what the store
/// says the key spent in the period; with Redis, one all machines share
/// (kept there past the period's end).
pub fn budgets(path: std::path::PathBuf, redis: Option<Arc<crate::shared::Link>>) -> MakeBudget {
    use crate::engine::admission::{Budget, Limits, RateLimits};
    // This store's spending is one part of a budget shared through Redis,
    // whichever of its servers spent it.
    let store_id = crate::store::Store::open_reader(&path)
        .and_then(|s| s.store_id())
        .ok();
    Box::new(move |name, policy, start, period| {
        let max = policy.budget_usd.unwrap_or(0.0);
        let spent = crate::store::Store::open_reader(&path)
            .and_then(|s| s.key_spend(name, start))
            .unwrap_or(0.0);
        let local = Limits {
            rates: RateLimits::new(None, None),
            budget: Some(Budget::with_spent(max, spent)),
        };
        match &redis {
            None => Allowance(Arc::new(local)),
            Some(link) => {
                const DAY_MS: u64 = 86_400_000;
                let keep = match policy.period {
                    Period::Day => 3 * DAY_MS,
                    Period::Month => 40 * DAY_MS,
                    Period::Total => 3650 * DAY_MS,
                };
                let id = format!("key:{name}:{period}");
                let shared = crate::shared::limits::SharedLimits::new(
                    local,
                    link.clone(),
                    None,
                    None,
                    Some(max),
                    &id,
                )
                .keep_for(keep);
                let shared = match &store_id {
                    Some(s) => shared.contributed_by(&format!("store-{s}")),
                    None => shared,
                };
                Allowance(Arc::new(shared))
            }
        }
    })
}

/// Reads the keys of the store at `path` and of Redis every
/// [`RELOAD_EVERY`], and loads them into `ring` when they changed.
pub async fn watch(
    ring: Arc<KeyRing>,
    path: std::path::PathBuf,
    redis: Option<Arc<crate::shared::Link>>,
    seen: Arc<SeenInRedis>,
) {
    let mut tick = tokio::time::interval(RELOAD_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Some(records) = read(&path, redis.as_deref(), &seen).await {
            if ring.load(records, crate::engine::now_ms()) {
                tracing::info!("client keys reloaded");
            }
        }
    }
}

/// The names of the keys this server has seen in Redis: only those are
/// given back to a Redis that lost them (a key made here without
/// `--redis` stays this store's).
#[derive(Default)]
pub struct SeenInRedis(Mutex<std::collections::HashSet<String>>);

/// The keys of the store and of Redis, merged; None when the store cannot
/// be read (the ring then keeps what it has).
pub async fn read(
    path: &std::path::Path,
    redis: Option<&crate::shared::Link>,
    seen: &SeenInRedis,
) -> Option<Vec<KeyRecord>> {
    let p = path.to_path_buf();
    let local = tokio::task::spawn_blocking(move || {
        crate::store::Store::open_reader(&p).and_then(|s| s.keys())
    })
    .await
    .ok()?;
    let records = match local {
        Ok((keys, _)) => keys,
        // A store without the keys table yet has no keys.
        Err(crate::store::StoreError::Sql(_)) => Vec::new(),
        Err(_) => return None,
    };
    let Some(link) = redis else {
        return Some(crate::core::keys::merge(records));
    };
    let Some(shared) = crate::shared::clients::all(link).await else {
        // Redis away: the store has what it taught before.
        return Some(crate::core::keys::merge(records));
    };
    let merged = crate::core::keys::merge(records.iter().chain(&shared).cloned());
    // What Redis knew newer (a key made or revoked on another machine) is
    // kept in the store, so that it holds while Redis is away.
    let newer: Vec<KeyRecord> = merged
        .iter()
        .filter(|k| !records.contains(k))
        .cloned()
        .collect();
    for k in give_back(&merged, &shared, seen) {
        let _ = match k.revoked_at_ms {
            // A revocation wins over the live record it revokes.
            Some(_) => crate::shared::clients::put(link, k).await,
            None => crate::shared::clients::put_new(link, k).await,
        };
    }
    if !newer.is_empty() {
        let p = path.to_path_buf();
        let kept = tokio::task::spawn_blocking(move || {
            let store = crate::store::Store::open(&p)?;
            newer.iter().try_for_each(|k| store.mirror_key(k))
        })
        .await;
        if !matches!(kept, Ok(Ok(()))) {
            tracing::warn!("cannot keep in the store the client keys Redis holds");
        }
    }
    Some(merged)
}

/// What this server gives Redis of the keys it knows (`merged`): a key
/// Redis had and lost (restarted empty), and a revocation of a key Redis
/// holds live (made here, or learned while Redis was away). Never a key
/// Redis never had: one made without `--redis` stays its store's.
fn give_back<'a>(
    merged: &'a [KeyRecord],
    shared: &[KeyRecord],
    seen: &SeenInRedis,
) -> Vec<&'a KeyRecord> {
    let mut seen = seen.0.lock().unwrap_or_else(|e| e.into_inner());
    seen.extend(shared.iter().map(|r| r.name.clone()));
    merged
        .iter()
        .filter(|k| match shared.iter().find(|r| r.name == k.name) {
            None => seen.contains(&k.name),
            Some(r) => {
                k.revoked_at_ms.is_some()
                    && r.revoked_at_ms.is_none()
                    && r.token_sha256 == k.token_sha256
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::admission::{Budget, Limits, RateLimits};

    #[test]
    fn redis_is_given_back_what_it_lost_and_revocations_but_no_local_key() {
        let seen = SeenInRedis::default();
        let a = record("a", "t-a", Policy::default());
        let local = record("local", "t-l", Policy::default());
        // Redis holds a; this server has a and a key of its own.
        let here = [a.clone(), local.clone()];
        assert!(give_back(&here, std::slice::from_ref(&a), &seen).is_empty());
        // Redis restarted empty: a comes back, the local key does not.
        assert_eq!(give_back(&here, &[], &seen), [&a]);
        // A revocation made here wins over Redis's live record.
        let mut revoked = a.clone();
        revoked.revoked_at_ms = Some(5);
        let redis = [a.clone()];
        assert_eq!(
            give_back(std::slice::from_ref(&revoked), &redis, &seen),
            [&revoked]
        );
        // Not over another token of the same name.
        let other = record("a", "t-other", Policy::default());
        assert!(give_back(std::slice::from_ref(&revoked), &[other], &seen).is_empty());
    }

    fn make() -> MakeBudget {
        Box::new(|_, p, _, _| {
            Allowance(Arc::new(Limits {
                rates: RateLimits::new(None, None),
                budget: Some(Budget::new(p.budget_usd.unwrap_or(0.0))),
            }))
        })
    }

    fn record(name: &str, token: &str, policy: Policy) -> KeyRecord {
        KeyRecord {
            name: name.into(),
            token_sha256: hex::encode(Sha256::digest(token.as_bytes())),
            policy,
            created_at_ms: 1,
            revoked_at_ms: None,
        }
    }

    #[test]
    fn trusted_tokens_are_named_by_place_not_by_digest() {
        let d = |t: &str| -> [u8; 32] { Sha256::digest(t.as_bytes()).into() };
        let ring = KeyRing::new(
            vec![d("weak"), d("other")],
            vec![d("adm"), d("weak")],
            make(),
        );
        let name = |t: &str| match ring.find(Some(t), 0) {
            Found::Key(c) => c.name.to_string(),
            _ => panic!("{t} not found"),
        };
        assert_eq!(
            (name("weak"), name("other"), name("adm")),
            ("token-1".into(), "token-2".into(), "admin-1".into())
        );
        assert!(!name("weak").contains(&hex::encode(&d("weak")[..2])));
    }

    #[test]
    fn tokens_find_their_keys_and_dead_keys_say_why() {
        let ring = KeyRing::new(Vec::new(), Vec::new(), make());
        assert!(matches!(ring.find(None, 0), Found::Open));
        let mut revoked = record("old", "t-old", Policy::default());
        revoked.revoked_at_ms = Some(5);
        ring.load(vec![record("a", "t-a", Policy::default()), revoked], 10);
        assert!(matches!(ring.find(Some("t-a"), 10), Found::Key(c) if &*c.name == "a"));
        assert!(
            matches!(ring.find(Some("t-old"), 10), Found::Refused(m, _) if m.contains("revoked"))
        );
        assert!(matches!(
            ring.find(Some("nope"), 10),
            Found::Refused(_, None)
        ));
        assert!(matches!(ring.find(None, 10), Found::Refused(_, None)));
    }

    #[test]
    fn an_unchanged_key_keeps_its_counters_across_reloads() {
        let ring = KeyRing::new(Vec::new(), Vec::new(), make());
        let p = Policy {
            rpm: Some(2),
            ..Policy::default()
        };
        ring.load(vec![record("a", "t", p.clone())], 0);
        let Found::Key(c) = ring.find(Some("t"), 0) else {
            panic!()
        };
        let now = 120_000;
        assert!(c.take(now, None).is_ok() && c.take(now, None).is_ok());
        assert_eq!(c.take(now + 1000, None), Err(59), "until the minute ends");
        ring.load(
            vec![record("a", "t", p.clone()), record("b", "u", p.clone())],
            0,
        );
        let Found::Key(same) = ring.find(Some("t"), 0) else {
            panic!()
        };
        assert!(Arc::ptr_eq(&c, &same));
        assert!(same.take(now, None).is_err(), "still over");
        assert!(same.take(now + 60_000, None).is_ok(), "a new minute");
    }

    #[test]
    fn tokens_a_minute_refuse_once_used_up() {
        let c = Client::new(
            "a".into(),
            [0; 32],
            Some(record(
                "a",
                "t",
                Policy {
                    tpm: Some(100),
                    ..Policy::default()
                },
            )),
        );
        assert!(c.take(0, None).is_ok());
        c.used(0, 100, Some(0.5), None);
        assert!(c.take(0, None).is_err());
        assert!(c.take(0, Some((1, 99))).is_ok(), "the shared count rules");
    }

    #[test]
    fn the_minute_shown_is_all_machines_when_redis_says_so() {
        let c = client(Policy {
            rpm: Some(100),
            ..Policy::default()
        });
        assert!(c.take(61_000, None).is_ok());
        // Another machine took 14 of the minute's requests and 900 tokens.
        assert!(c.take(62_000, Some((16, 900))).is_ok());
        let shown = |now| c.window.lock().unwrap().counts(now);
        assert_eq!(shown(62_500), (16, 900));
        // A new minute counts from zero.
        assert_eq!(shown(121_000), (0, 0));
        assert!(c.take(121_000, None).is_ok());
        assert_eq!(shown(121_500), (1, 0));
    }

    /// A client of key `a` with `policy`.
    fn client(policy: Policy) -> Client {
        Client::new("a".into(), [0; 32], Some(record("a", "t", policy)))
    }

    #[test]
    fn a_key_without_rates_still_counts_its_minute() {
        let c = client(Policy::default());
        c.count(61_000);
        c.used(61_000, 7, None, None);
        let w = c.window.lock().unwrap();
        assert_eq!(w.counts(61_500), (1, 7));
    }

    #[test]
    fn requests_in_flight_hold_their_tokens_until_they_end() {
        let c = client(Policy {
            tpm: Some(50),
            ..Policy::default()
        });
        // Sent at once: all pass the door, then each holds its estimate.
        for _ in 0..3 {
            assert!(c.take(0, None).is_ok());
        }
        let first = c.hold(0, 30, None).unwrap();
        assert!(c.hold(0, 30, None).unwrap().is_some(), "30 < 50 held");
        assert!(c.hold(0, 30, None).is_err(), "60 held: at the limit");
        // Taken past the rates, then refused by the tokens held: counted
        // once, as refused.
        assert!(c.take(0, None).is_ok());
        assert!(c.hold(0, 30, None).is_err());
        let v = c.view(0, &make());
        assert_eq!(
            (v["requests"].as_u64(), v["rate_limited"].as_u64()),
            (Some(2), Some(2))
        );
        // The first ends having used 10: its hold goes back, its use counts.
        c.used(0, 10, None, first);
        assert!(c.hold(0, 30, None).is_ok(), "10 used + 30 held < 50");
        // A new minute starts from nothing, and an old hold is no debt.
        assert!(c.hold(60_000, 30, None).is_ok());
    }

    #[test]
    fn a_budget_is_made_once_a_period() {
        let c = Client::new(
            "a".into(),
            [0; 32],
            Some(record(
                "a",
                "t",
                Policy {
                    budget_usd: Some(1.0),
                    period: Period::Day,
                    ..Policy::default()
                },
            )),
        );
        let m = make();
        let a = c.allowance(0, &m).unwrap();
        let b = c.allowance(1000, &m).unwrap();
        assert!(Arc::ptr_eq(&a.0, &b.0));
        let next_day = c.allowance(86_400_000, &m).unwrap();
        assert!(!Arc::ptr_eq(&a.0, &next_day.0));
    }
}
