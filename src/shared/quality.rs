//! Learned quality shared through Redis: one hash per upstream, a field
//! per (task, model) holding its posterior as JSON. A feedback event is
//! taken in by a Lua script, decay and all, so that machines giving
//! feedback at once add up; every machine reads the hash every second.

use redis::Script;

use super::{keys, Link};
use crate::core::learned::Posterior;

/// A Lua function: folds an event into the posterior a hash `h` holds at
/// field `f`, decay and all: brings it to `now`, takes back a replaced
/// event (`rs`, `rw`, `rat`; `rs` false when none) and adds one (`s`,
/// `w`; `s` false when none). Returns the posterior after it.
pub const FOLD: &str = r"
local function fold(h, f, now, hl, s, w, rs, rw, rat)
  local good, bad, events, at = 0, 0, 0, now
  local v = redis.call('HGET', h, f)
  if v then
    local t = cjson.decode(v)
    good, bad, events, at = t.good, t.bad, t.events, t.at
  end
  local function kept(from)
    if hl > 0 and now > from then return math.pow(0.5, (now - from) / hl) end
    return 1
  end
  local k = kept(at)
  good, bad = good * k, bad * k
  if rs then
    local ok = kept(rat)
    good = math.max(0, good - rs * rw * ok)
    bad = math.max(0, bad - (1 - rs) * rw * ok)
    events = math.max(0, events - 1)
  end
  if s then
    good, bad, events = good + s * w, bad + (1 - s) * w, events + 1
  end
  if now > at then at = now end
  redis.call('HSET', h, f, cjson.encode({good = good, bad = bad, events = events, at = at}))
  return {tostring(good), tostring(bad), events, at}
end
";

/// Takes in an event: KEYS[1] = the hash; ARGV = field, score, weight,
/// now ms, half-life ms, then the replaced event's score, weight and ms
/// (empty strings when none). Returns the posterior after it.
const ADD: &str = r"
local rs, rw, rat = false, false, false
if ARGV[6] ~= '' then rs, rw, rat = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8]) end
return fold(KEYS[1], ARGV[1], tonumber(ARGV[4]), tonumber(ARGV[5]),
  tonumber(ARGV[2]), tonumber(ARGV[3]), rs, rw, rat)
";

/// The hash of an upstream's posteriors (`scope` from [`keys::upstream`]).
pub fn hash(scope: &str) -> String {
    format!("{scope}quality")
}

/// A (task, model) as a field: the task has no tab in it.
pub fn field(task: &str, model: &str) -> String {
    format!("{task}\t{model}")
}

/// One feedback event, and the one it replaces.
#[derive(Debug, Clone, Copy)]
pub struct Event {
    pub score: f64,
    pub weight: f64,
    /// The replaced event's score, weight and unix ms.
    pub replaced: Option<(f64, f64, i64)>,
}

/// Takes in `event` on `model` at `task`, on the upstream `identity`;
/// the posterior after it, or None when Redis cannot be reached.
pub async fn add(
    link: &Link,
    identity: &str,
    (task, model): (&str, &str),
    event: Event,
    hl: (i64, i64),
) -> Option<Posterior> {
    let scope = keys::upstream(&link.prefix, identity);
    add_scoped(link, &scope, (task, model), event, hl).await
}

/// [`add`] on the upstream whose scope ([`keys::upstream`]) is `scope`.
pub async fn add_scoped(
    link: &Link,
    scope: &str,
    (task, model): (&str, &str),
    event: Event,
    (now_ms, half_life_ms): (i64, i64),
) -> Option<Posterior> {
    let script = Script::new(&format!("{FOLD}{ADD}"));
    let mut inv = script.prepare_invoke();
    inv.key(hash(scope))
        .arg(field(task, model))
        .arg(event.score)
        .arg(event.weight)
        .arg(now_ms)
        .arg(half_life_ms);
    match event.replaced {
        Some((s, w, at)) => inv.arg(s).arg(w).arg(at),
        None => inv.arg("").arg("").arg(""),
    };
    let (good, bad, events, at): (String, String, i64, i64) = link.script(inv).await?;
    posterior((good, bad, events, at))
}

/// A posterior as [`FOLD`] returns it.
pub fn posterior((good, bad, events, at): (String, String, i64, i64)) -> Option<Posterior> {
    Some(Posterior {
        good: good.parse().ok()?,
        bad: bad.parse().ok()?,
        events: events.max(0) as u64,
        at_ms: at,
    })
}

/// Puts back posteriors Redis lost (emptied, or restarted without its
/// data): KEYS[1] = the hash; ARGV = five a posterior: field, good, bad,
/// events, at. Each is written where the hash has no such field, or one
/// with fewer events: events only add up, so fewer means lost (what came
/// in since may be in the machine's already, as its store took it in).
/// Returns how many it wrote.
const PUT_BACK: &str = r"
local n = 0
for i = 1, #ARGV, 5 do
  local f, events = ARGV[i], tonumber(ARGV[i+3])
  local v = redis.call('HGET', KEYS[1], f)
  if not v or cjson.decode(v).events < events then
    local p = {good = tonumber(ARGV[i+1]), bad = tonumber(ARGV[i+2]), events = events, at = tonumber(ARGV[i+4])}
    redis.call('HSET', KEYS[1], f, cjson.encode(p))
    n = n + 1
  end
end
return n
";

/// Puts `lost` (a machine's posteriors of the upstream `identity` that
/// Redis holds no more of) back ([`PUT_BACK`]). None when Redis cannot be
/// reached.
async fn put_back(
    link: &Link,
    identity: &str,
    lost: &[(String, String, Posterior)],
) -> Option<i64> {
    let scope = keys::upstream(&link.prefix, identity);
    let script = Script::new(PUT_BACK);
    let mut inv = script.prepare_invoke();
    inv.key(hash(&scope));
    for (task, model, p) in lost {
        inv.arg(field(task, model))
            .arg(p.good)
            .arg(p.bad)
            .arg(p.events)
            .arg(p.at_ms);
    }
    link.script(inv).await
}

/// Every (task, model) posterior of the upstream `identity`; None when
/// Redis cannot be reached.
pub async fn all(link: &Link, identity: &str) -> Option<Vec<(String, String, Posterior)>> {
    let scope = keys::upstream(&link.prefix, identity);
    let map: std::collections::HashMap<String, String> =
        link.call(redis::cmd("HGETALL").arg(hash(&scope))).await?;
    Some(
        map.into_iter()
            .filter_map(|(f, v)| {
                let (task, model) = f.split_once('\t')?;
                let j: serde_json::Value = serde_json::from_str(&v).ok()?;
                Some((
                    task.to_string(),
                    model.to_string(),
                    Posterior {
                        good: j["good"].as_f64()?,
                        bad: j["bad"].as_f64()?,
                        events: j["events"].as_f64()?.max(0.0) as u64,
                        at_ms: j["at"].as_f64()? as i64,
                    },
                ))
            })
            .collect(),
    )
}

/// Reads the posteriors Redis shares into `book` every second, until the
/// task is dropped. What Redis lost (emptied, or restarted without its
/// data) is put back first: a field `book` holds that Redis no longer
/// has, or has fewer events of than this machine read there before
/// (events only add up, so fewer means lost); so the events that come in
/// next add to what was learned instead of replacing it on every machine
/// (an event taken in elsewhere in the second before may be lost). A
/// field Redis has, and has not lost, is never replaced: what this
/// machine holds more of may be its own store's, taken without Redis, and
/// would erase what other machines gave. A posterior read from Redis
/// never lowers what `book` holds.
pub async fn watch(
    link: std::sync::Arc<Link>,
    identity: String,
    book: std::sync::Arc<crate::engine::learned::QualityBook>,
) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Each field's events as last read from Redis.
    let mut seen: std::collections::HashMap<(String, String), u64> = Default::default();
    loop {
        tick.tick().await;
        // What this machine shared since it last read, of what it took
        // while Redis did not answer, adds to what it saw there. Taken
        // before Redis is read (an event shared after is in what is read),
        // and kept in `seen` should the read fail.
        for (field, n) in book.take_replayed() {
            *seen.entry(field).or_default() += n;
        }
        let Some(mut rows) = all(&link, &identity).await else {
            continue;
        };
        // Less the events this machine took while Redis did not answer and
        // has not shared yet: they reach it on their own, and put back too
        // would count twice.
        let held = book.all_shared(crate::store::now_ms());
        let lost = lost(&held, &rows, &seen);
        if !lost.is_empty() {
            if put_back(&link, &identity, &lost).await.is_none() {
                continue;
            }
            match all(&link, &identity).await {
                Some(again) => rows = again,
                None => continue,
            }
        }
        for (task, model, p) in rows {
            seen.insert((task.clone(), model.clone()), p.events);
            book.set_shared(&task, &model, p);
        }
    }
}

type Field = (String, String, Posterior);

/// What of `held` Redis lost: the fields it no longer has (`shared`), or
/// has fewer events of than were `seen` there.
fn lost(
    held: &[Field],
    shared: &[Field],
    seen: &std::collections::HashMap<(String, String), u64>,
) -> Vec<Field> {
    let now: std::collections::HashMap<(&str, &str), u64> = shared
        .iter()
        .map(|(t, m, p)| ((t.as_str(), m.as_str()), p.events))
        .collect();
    held.iter()
        .filter(|(t, m, p)| {
            p.events > 0
                && match now.get(&(t.as_str(), m.as_str())) {
                    None => true,
                    Some(events) => seen
                        .get(&(t.clone(), m.clone()))
                        .is_some_and(|before| events < before),
                }
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(events: u64) -> Posterior {
        Posterior {
            good: events as f64,
            bad: 0.0,
            events,
            at_ms: 0,
        }
    }

    fn f(task: &str, events: u64) -> Field {
        (task.into(), "m".into(), p(events))
    }

    #[test]
    fn only_what_redis_lost_is_put_back() {
        let held = [f("gone", 5), f("fewer", 9), f("mine", 12), f("same", 3)];
        let shared = [f("fewer", 1), f("mine", 10), f("same", 3)];
        let seen = [("fewer", 9), ("same", 3)]
            .map(|(t, n)| ((t.to_string(), "m".to_string()), n))
            .into_iter()
            .collect();
        let put: Vec<String> = lost(&held, &shared, &seen)
            .into_iter()
            .map(|(t, _, _)| t)
            .collect();
        // `mine`: more here than Redis ever had, from this store alone.
        assert_eq!(put, ["gone", "fewer"]);
    }

    #[test]
    fn fields_and_hashes_hold_no_more_than_names() {
        assert_eq!(hash("p:up:ab:"), "p:up:ab:quality");
        assert_eq!(field("sql", "a/b"), "sql\ta/b");
    }
}
