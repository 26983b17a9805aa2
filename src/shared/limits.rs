//! Rate limits and the budget shared through Redis (`--shared-limits`).
//!
//! `--rpm` and `--tpm` are one GCRA each, kept in Redis by a Lua script:
//! every request takes the next slot of the schedule all machines share
//! and waits for it, so N machines together send at most `--rpm` a minute.
//! `--max-cost` is one budget (`--budget-id` names it): a reservation of a
//! request's estimate is taken atomically against what all machines have
//! spent and hold, and settled with the real cost after. A settlement
//! Redis does not take (it is away) is kept, and sent again until it does:
//! what a request held is never held for good. Each process numbers its
//! settlements, and Redis keeps the last number it took from each, so that
//! one sent again after Redis carried it out unconfirmed counts once.
//!
//! Each machine keeps its own limits as well, so that while Redis is away
//! it still holds to them alone.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::Script;

use super::{keys, Link};
use crate::engine::admission::{Limits, SLACK};
use crate::engine::ports::{Admission, BoxFuture, BudgetView, OverBudget, Reservation, Reserve};

/// How long a shared budget nobody touches is kept.
const KEEP_BUDGET_MS: u64 = 7 * 86_400_000;

/// Takes the next slot of one or two schedules: KEYS = the schedules;
/// ARGV = now (unix ms), then per key its step (ms this request takes of
/// it) and its burst (ms of slack). Returns how long to wait, in ms.
const SCHEDULE: &str = r"
local now = tonumber(ARGV[1])
local wait = 0
for i, k in ipairs(KEYS) do
  local step = tonumber(ARGV[2 * i])
  local burst = tonumber(ARGV[2 * i + 1])
  local tat = tonumber(redis.call('GET', k) or '0')
  if tat < now then tat = now end
  local next = tat + step
  local w = next - burst - now
  if w > wait then wait = w end
  redis.call('SET', k, tostring(next), 'PX', math.ceil(next - now + 60000))
end
return math.ceil(wait)
";

/// A shared budget is a hash: `held`, what requests in flight hold;
/// `run`, the sum of every settlement it took; one field `by:ID` a
/// contributor (a store of `serve`'s client keys, a process of a run) with
/// what that contributor knows it has spent of the budget in all; and
/// `sum`, the sum of those parts, kept as they grow. The spend is the
/// larger of `run` and `sum`: `run` counts every machine's spending
/// exactly while Redis keeps it; a Redis that restarted empty gets each
/// part back whole with its contributor's next settlement, what the other
/// machines never heard of included. A settlement sent twice changes
/// nothing.
///
/// Reserves an estimate: KEYS[1] = the budget; ARGV = estimate, cap, keep
/// ms, what this machine knows was spent. The spend is checked as the
/// larger of that and what this machine knows (a Redis that restarted
/// empty lacks the parts of contributors that have not settled since),
/// which is not written. Returns {1 or 0, spent, held} as strings.
const RESERVE: &str = r"
local est = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
local got = redis.call('HMGET', KEYS[1], 'run', 'sum', 'held')
local spent = math.max(tonumber(got[1] or '0'), tonumber(got[2] or '0'), tonumber(ARGV[4]))
local held = tonumber(got[3] or '0')
local ok = 0
if cap > 0 and spent + held + est <= cap + 1e-9 then
  held = held + est
  redis.call('HSET', KEYS[1], 'held', tostring(held))
  ok = 1
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {ok, tostring(spent), tostring(held)}
";

/// Settles a reservation: KEYS[1] = the budget, KEYS[2] = the number of the
/// last settlement of this budget's holder in this process Redis took;
/// ARGV = estimate, keep ms, this settlement's number, what this
/// contributor knows it has spent in all (this settlement included), the
/// contributor's id, the cost. One numbered no later than the last is one
/// taken already: it changes nothing. A contributor's part only grows,
/// and `sum` with it.
const SETTLE: &str = r"
local n = tonumber(ARGV[3])
if n <= tonumber(redis.call('GET', KEYS[2]) or '0') then return 0 end
redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[2])
local held = tonumber(redis.call('HGET', KEYS[1], 'held') or '0') - tonumber(ARGV[1])
-- What sums of estimates leave over (1e-21) is nothing held.
if held < 1e-12 then held = 0 end
redis.call('HSET', KEYS[1], 'held', tostring(held))
redis.call('HINCRBYFLOAT', KEYS[1], 'run', ARGV[6])
local part = 'by:' .. ARGV[5]
local mine = tonumber(ARGV[4])
local before = tonumber(redis.call('HGET', KEYS[1], part) or '0')
if mine > before then
  redis.call('HSET', KEYS[1], part, tostring(mine))
  redis.call('HINCRBYFLOAT', KEYS[1], 'sum', tostring(mine - before))
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
";

/// What all machines spent of the budget at `key`; None when Redis does
/// not answer or holds none of it.
pub async fn spent(link: &Link, key: &str) -> Option<f64> {
    let got: Vec<Option<String>> = link
        .call(redis::cmd("HMGET").arg(key).arg("run").arg("sum"))
        .await?;
    got.iter()
        .filter_map(|v| v.as_deref()?.parse::<f64>().ok())
        .reduce(f64::max)
}

/// Each holder of a budget in this process numbers its settlements apart:
/// one made anew for the same budget (a key's policy changed) does not
/// start again from numbers Redis has taken.
static HOLDERS: AtomicU64 = AtomicU64::new(0);

/// A machine's limits, shared with the others through Redis.
pub struct SharedLimits {
    pub local: Limits,
    pub link: Arc<Link>,
    rpm: Option<u32>,
    tpm: Option<u32>,
    /// The budget's key and cap.
    budget: Option<(String, f64)>,
    /// How long the budget is kept in Redis after its last use.
    keep_ms: u64,
    /// The key of the number of this process's last settlement Redis took.
    settled_key: String,
    /// Whose part of the budget this machine's spending is (see [`RESERVE`]).
    contributor: String,
    /// The number of this process's last settlement; held while one is
    /// numbered and queued, so that they are queued in order.
    settled: Mutex<u64>,
    /// What all machines have spent, as last seen (f64 bits).
    spent: AtomicU64,
    schedule: Script,
    reserve: Script,
}

impl SharedLimits {
    pub fn new(
        local: Limits,
        link: Arc<Link>,
        rpm: Option<u32>,
        tpm: Option<u32>,
        max_cost: Option<f64>,
        budget_id: &str,
    ) -> SharedLimits {
        let budget = max_cost.map(|m| (keys::budget(&link.prefix, budget_id), m));
        SharedLimits {
            local,
            rpm,
            tpm,
            budget,
            keep_ms: KEEP_BUDGET_MS,
            settled_key: keys::settled(
                &link.prefix,
                budget_id,
                &format!("{}-{}", link.id, HOLDERS.fetch_add(1, Ordering::Relaxed)),
            ),
            contributor: link.id.clone(),
            settled: Mutex::new(0),
            spent: AtomicU64::new(0f64.to_bits()),
            schedule: Script::new(SCHEDULE),
            reserve: Script::new(RESERVE),
            link,
        }
    }

    /// What this machine knows was spent of the budget: its own budget's
    /// spend (for a key, from its store at start), or what Redis last said
    /// all machines spent, whichever is more.
    fn known_spent(&self) -> f64 {
        let own = self.local.budget().map_or(0.0, |b| b.spent);
        own.max(f64::from_bits(self.spent.load(Ordering::Relaxed)))
    }

    /// Counts this machine's spending as `id`'s part of the budget instead
    /// of this process's: a store of client keys, whose spend in the
    /// period this machine's budget starts from, is one contributor across
    /// its servers' restarts.
    pub fn contributed_by(mut self, id: &str) -> SharedLimits {
        self.contributor = id.to_string();
        self
    }

    /// Keeps the budget in Redis for `ms` after its last use (a week by
    /// default): a budget for a key's whole life must outlast quiet months.
    pub fn keep_for(mut self, ms: u64) -> SharedLimits {
        self.keep_ms = ms;
        self
    }

    /// The steps and bursts a request of `tokens` takes of each schedule.
    fn schedules(&self, tokens: u64) -> Vec<(String, f64, f64)> {
        let mut out = Vec::new();
        if let Some(n) = self.rpm.filter(|n| *n > 0) {
            let step = 60_000.0 / f64::from(n);
            out.push((keys::rate(&self.link.prefix, "rpm"), step, step));
        }
        if let Some(n) = self.tpm.filter(|n| *n > 0) {
            let per_token = 60_000.0 / f64::from(n);
            let burst = f64::from((n / 60).max(4096).min(n));
            let tokens = (tokens as f64).min(f64::from(n));
            out.push((
                keys::rate(&self.link.prefix, "tpm"),
                tokens * per_token,
                burst * per_token,
            ));
        }
        out
    }

    async fn take_slot(&self, tokens: u64) -> Option<Duration> {
        let slots = self.schedules(tokens);
        if slots.is_empty() {
            return Some(Duration::ZERO);
        }
        let mut inv = self.schedule.prepare_invoke();
        for (k, _, _) in &slots {
            inv.key(k);
        }
        inv.arg(crate::engine::now_ms());
        for (_, step, burst) in &slots {
            inv.arg(*step).arg(*burst);
        }
        let wait: i64 = self.link.script(inv).await?;
        Some(Duration::from_millis(wait.max(0) as u64))
    }

    /// Reserves `estimate` on this machine's budget, then on the one all
    /// machines share. A request that fits the shared budget once the
    /// requests in flight settle waits for them (with `wait`), as it does
    /// on a budget of its own: polling, since they settle on any machine,
    /// for at most [`SHARED_WAIT`], in case a machine died holding some.
    async fn reserve_shared(
        &self,
        estimate: f64,
        wait: bool,
    ) -> Result<Option<Reservation>, OverBudget> {
        let Some((key, max)) = &self.budget else {
            return self.local.reserve(estimate, wait).get().await;
        };
        let give_up = std::time::Instant::now() + SHARED_WAIT;
        let mut pause = Duration::from_millis(5);
        loop {
            let local = match self.local.reserve(estimate, wait).get().await? {
                Some(r) => r,
                None => return Ok(None),
            };
            let mut inv = self.reserve.prepare_invoke();
            inv.key(key)
                .arg(estimate)
                .arg(*max)
                .arg(self.keep_ms)
                .arg(self.known_spent());
            let (ok, spent, held) = match self.link.script::<(i64, String, String)>(inv).await {
                // Redis is away: this machine's own budget holds.
                None => return Ok(Some(local)),
                Some(answer) => answer,
            };
            let spent: f64 = spent.parse().unwrap_or(0.0);
            self.spent.store(spent.to_bits(), Ordering::Relaxed);
            if ok == 1 {
                return Ok(Some(local));
            }
            self.local.settle(local, Some(0.0));
            let over = OverBudget {
                spent,
                reserved: held.parse().unwrap_or(0.0),
                estimate,
                max: *max,
            };
            let fits_later = *max > 0.0 && spent + estimate <= *max + SLACK;
            if !wait || !fits_later || std::time::Instant::now() >= give_up {
                return Err(over);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }
}

/// The longest a request waits for the requests in flight on all machines
/// to settle before the shared budget refuses it.
pub const SHARED_WAIT: Duration = Duration::from_secs(60);

impl Admission for SharedLimits {
    fn reserve(&self, estimate: f64, wait: bool) -> Reserve<'_> {
        if self.budget.is_none() {
            return self.local.reserve(estimate, wait);
        }
        Reserve::Later(Box::pin(self.reserve_shared(estimate, wait)))
    }

    fn settle(&self, r: Reservation, actual: Option<f64>) {
        let estimate = r.0;
        self.local.settle(r, actual);
        if let Some((key, _)) = &self.budget {
            // What all machines spent, as far as this one knows, now
            // includes this settlement.
            let cost = actual.unwrap_or(estimate);
            let _ = self
                .spent
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                    Some((f64::from_bits(bits) + cost).to_bits())
                });
            let mut n = self.settled.lock().unwrap_or_else(|e| e.into_inner());
            *n += 1;
            let mut p = redis::pipe();
            let mine = self.local.budget().map_or(cost, |b| b.spent);
            p.cmd("EVAL")
                .arg(SETTLE)
                .arg(2)
                .arg(key)
                .arg(&self.settled_key)
                .arg(estimate)
                .arg(self.keep_ms)
                .arg(*n)
                .arg(mine)
                .arg(&self.contributor)
                .arg(cost);
            self.link.send_kept(p);
        }
    }

    fn budget_left(&self) -> Option<f64> {
        let local = self.local.budget_left()?;
        let shared = self.budget.as_ref().map_or(f64::INFINITY, |(_, max)| {
            max - f64::from_bits(self.spent.load(Ordering::Relaxed))
        });
        Some(local.min(shared).max(0.0))
    }

    fn budget(&self) -> Option<BudgetView> {
        let local = self.local.budget()?;
        let shared = f64::from_bits(self.spent.load(Ordering::Relaxed));
        Some(BudgetView {
            spent: local.spent.max(shared),
            ..local
        })
    }

    fn unlimited(&self) -> bool {
        self.local.unlimited()
    }

    fn acquire(&self, tokens: u64) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Some(wait) = self.take_slot(tokens).await {
                tokio::time::sleep(wait).await;
            }
            // This machine's own limits are kept in step too: Redis spaces
            // its requests as far apart at least, so they cost no wait
            // while it answers; when it stops, they go on from where they
            // are, and requests spaced by Redis and by them do not both go.
            self.local.acquire(tokens).await;
        })
    }

    fn owe(&self, tokens: u64) {
        self.local.owe(tokens);
        if let Some(n) = self.tpm.filter(|n| *n > 0) {
            let step = tokens.min(u64::from(n)) as f64 * 60_000.0 / f64::from(n);
            let mut p = redis::pipe();
            p.cmd("EVAL")
                .arg(SCHEDULE)
                .arg(1)
                .arg(keys::rate(&self.link.prefix, "tpm"))
                .arg(crate::engine::now_ms())
                .arg(step)
                .arg(f64::MAX);
            self.link.send(p);
        }
    }

    fn give_back(&self, tokens: u64) {
        self.local.give_back(tokens);
    }
}
