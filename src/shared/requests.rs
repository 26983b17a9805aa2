//! Answered requests shared through Redis, so that feedback on an answer
//! is taken by any machine, not only the one that gave it: behind a load
//! balancer a client's feedback lands where it lands.
//!
//! Each answer with a request id leaves a key (a hash of the client key's
//! name and the id, see [`keys::request`]) holding what its feedback
//! teaches: the upstream's scope (a hash), the task and the model. It
//! also holds the latest feedback taken on it, so that feedback given
//! again, on whichever machine, replaces that one in what every machine
//! learns. It lives [`KEPT_FOR`]; the machine that gave the answer keeps
//! it in its store for good.

use std::time::Duration;

use redis::Script;

use super::{keys, quality, Link};
use crate::core::learned::Posterior;

/// How long an answered request can be judged on a machine that did not
/// give it.
pub const KEPT_FOR: Duration = Duration::from_secs(86_400);

/// Why feedback on a request a machine does not hold was not taken when
/// Redis, which may know the request, did not answer: worth trying again.
pub const UNREACHED: &str = "Redis, which may know it, did not answer: try again";

/// Takes in feedback on a request, its note and the posterior together,
/// so that neither changes without the other: KEYS[1] = the note, KEYS[2]
/// = the hash of the posterior it teaches; ARGV = field, score, weight,
/// now ms, half-life ms, then `held` and the feedback the store replaces
/// (score, weight, ms; empty strings when none), used when there is no
/// note; or `elsewhere` and the note's scope, task and model as read
/// (nil is returned when it changed since). The note keeps the latest
/// feedback and where it was taken in, and what it replaces is taken back
/// from there. Returns the posterior after it, and 1 if it replaced
/// earlier feedback.
const TEACH: &str = r"
local now, hl = tonumber(ARGV[4]), tonumber(ARGV[5])
local s, w = tonumber(ARGV[2]), tonumber(ARGV[3])
local v = redis.call('GET', KEYS[1])
local note = v and cjson.decode(v)
if ARGV[6] == 'elsewhere' then
  if not note or note.s ~= ARGV[7] or note.t ~= ARGV[8] or note.m ~= ARGV[9] then return false end
end
local old = nil
if note then
  -- Each part checked before anything is written: a script that fails
  -- halfway keeps what it wrote.
  local f = note.f
  if type(f) == 'table' and tonumber(f[1]) and tonumber(f[2]) and tonumber(f[3]) then
    old = {tonumber(f[1]), tonumber(f[2]), tonumber(f[3]), KEYS[2], ARGV[1]}
    if type(f[4]) == 'string' and type(f[5]) == 'string' then old[4], old[5] = f[4], f[5] end
  end
elseif ARGV[7] ~= '' then
  old = {tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9]), KEYS[2], ARGV[1]}
end
-- The event first, then what it replaces, then the note: a step that
-- fails leaves the ones after it undone.
local r
local replaced = 0
if old then replaced = 1 end
if old and old[4] == KEYS[2] and old[5] == ARGV[1] then
  r = fold(KEYS[2], ARGV[1], now, hl, s, w, old[1], old[2], old[3])
else
  r = fold(KEYS[2], ARGV[1], now, hl, s, w, false, false, false)
  if old then fold(old[4], old[5], now, hl, false, false, old[1], old[2], old[3]) end
end
if note then
  note.f = {s, w, now, KEYS[2], ARGV[1]}
  redis.call('SET', KEYS[1], cjson.encode(note), 'KEEPTTL')
end
table.insert(r, replaced)
return r
";

/// What a request's feedback taught every machine: where it was taken in,
/// the posterior after it, and whether it replaced earlier feedback.
#[derive(Debug, Clone)]
pub struct Taught {
    /// The upstream's scope ([`keys::upstream`]).
    pub scope: String,
    pub task: String,
    pub model: String,
    pub replaced: bool,
    pub posterior: Posterior,
}

/// Redis did not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unreached;

/// Queues the note of an answered request: `key` is its client key's
/// name, `scope` that of the upstream that answered ([`keys::upstream`]). Best effort, as all
/// sharing: the machine's own store holds the request anyway.
pub fn answered(link: &Link, (key, rid): (Option<&str>, &str), scope: &str, at: (&str, &str)) {
    let (task, model) = at;
    let value = serde_json::json!({"s": scope, "t": task, "m": model}).to_string();
    let mut p = redis::pipe();
    p.cmd("SET")
        .arg(keys::request(&link.prefix, key, rid))
        .arg(value)
        .arg("PX")
        .arg(KEPT_FOR.as_millis() as u64)
        .ignore();
    link.send(p);
}

/// Runs [`TEACH`]; None when Redis did not answer, Some(None) when the
/// note it was to find changed.
async fn teach(
    link: &Link,
    (note, scope): (&str, &str),
    (task, model): (&str, &str),
    (score, weight, (now_ms, half_life_ms)): (f64, f64, (i64, i64)),
    mode: [String; 4],
) -> Option<Option<(Posterior, bool)>> {
    let script = Script::new(&format!("{}{TEACH}", quality::FOLD));
    let mut inv = script.prepare_invoke();
    inv.key(note)
        .key(quality::hash(scope))
        .arg(quality::field(task, model))
        .arg(score)
        .arg(weight)
        .arg(now_ms)
        .arg(half_life_ms);
    for m in mode {
        inv.arg(m);
    }
    let got: Option<(String, String, i64, i64, i64)> = link.script(inv).await?;
    Some(got.and_then(|(g, b, e, at, replaced)| {
        Some((quality::posterior((g, b, e, at))?, replaced == 1))
    }))
}

/// Shares feedback on a request this machine answered, on `task` and
/// `model` as its store took it in: it replaces the latest feedback taken
/// on the request on any machine, as its note holds it; without a note,
/// `local` (the store's). The posterior after it, and whether it replaced
/// feedback (taken on any machine); None when Redis did not answer.
pub async fn teach_held(
    link: &Link,
    (id, identity): ((Option<&str>, &str), &str),
    at: (&str, &str),
    (score, weight, local): (f64, f64, Option<(f64, f64, i64)>),
    hl: (i64, i64),
) -> Option<(Posterior, bool)> {
    let note = keys::request(&link.prefix, id.0, id.1);
    let scope = keys::upstream(&link.prefix, identity);
    let shown = |x: Option<String>| x.unwrap_or_default();
    let mode = [
        "held".to_string(),
        shown(local.map(|l| l.0.to_string())),
        shown(local.map(|l| l.1.to_string())),
        shown(local.map(|l| l.2.to_string())),
    ];
    teach(link, (&note, &scope), at, (score, weight, hl), mode).await?
}

/// Takes feedback on a request another machine answered, its task put
/// in `bucket` (past the bound of tasks, `other`). Ok(None): no machine
/// noted such a request.
pub async fn teach_elsewhere(
    link: &Link,
    (key, rid): (Option<&str>, &str),
    (score, weight): (f64, f64),
    hl: (i64, i64),
    bucket: impl Fn(&str) -> String,
) -> Result<Option<Taught>, Unreached> {
    let note = keys::request(&link.prefix, key, rid);
    let got: Option<String> = link
        .call(redis::cmd("GET").arg(&note))
        .await
        .ok_or(Unreached)?;
    let Some((scope, task, model)) = got.as_deref().and_then(read_note) else {
        return Ok(None);
    };
    let learned_as = bucket(&task);
    let mode = ["elsewhere".to_string(), scope.clone(), task, model.clone()];
    let at = (learned_as.as_str(), model.as_str());
    match teach(link, (&note, &scope), at, (score, weight, hl), mode).await {
        None => Err(Unreached),
        // Another request took the id between the two calls.
        Some(None) => Ok(None),
        Some(Some((posterior, replaced))) => Ok(Some(Taught {
            scope,
            task: learned_as,
            model,
            replaced,
            posterior,
        })),
    }
}

/// A note's scope, task and model.
fn read_note(v: &str) -> Option<(String, String, String)> {
    let j: serde_json::Value = serde_json::from_str(v).ok()?;
    let s = |k: &str| j.get(k)?.as_str().map(str::to_string);
    Some((s("s")?, s("t")?, s("m")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_is_read_for_its_scope_task_and_model_only() {
        let v =
            serde_json::json!({"s": "p:up:ab:", "t": "sql", "m": "a/b", "f": [1, 1, 2, "h", "f"]});
        assert_eq!(
            read_note(&v.to_string()),
            Some(("p:up:ab:".into(), "sql".into(), "a/b".into()))
        );
        assert_eq!(read_note("{\"s\": \"p:up:ab:\"}"), None);
        assert_eq!(read_note("not json"), None);
    }
}
