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

/// Swaps the latest feedback on a request: KEYS[1] = its key; ARGV =
/// score, weight, unix ms. Returns nil when the request is not known,
/// else its scope, task and model and the feedback replaced (empty
/// strings when none).
const JUDGE: &str = r"
local v = redis.call('GET', KEYS[1])
if not v then return false end
local t = cjson.decode(v)
local old = t.f
t.f = {ARGV[1], ARGV[2], ARGV[3]}
redis.call('SET', KEYS[1], cjson.encode(t), 'KEEPTTL')
if old then return {t.s, t.t, t.m, old[1], old[2], old[3]} end
return {t.s, t.t, t.m, '', '', ''}
";

/// What a request's feedback teaches, as Redis holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    /// The upstream's scope ([`keys::upstream`]).
    pub scope: String,
    pub task: String,
    pub model: String,
    /// The feedback this replaces: score, weight and unix ms.
    pub replaced: Option<(f64, f64, i64)>,
}

/// Queues the note of an answered request: `key` is its client key's
/// name, `identity` the upstream that answered. Best effort, as all
/// sharing: the machine's own store holds the request anyway.
pub fn answered(link: &Link, (key, rid): (Option<&str>, &str), identity: &str, at: (&str, &str)) {
    let scope = keys::upstream(&link.prefix, identity);
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

/// Takes feedback `(score, weight)` at `now_ms` on the request `rid` of
/// the client key `key`: what it teaches and the feedback it replaces.
/// `Some(None)`: Redis knows no such request; `None`: Redis cannot be
/// reached.
pub async fn judge(
    link: &Link,
    (key, rid): (Option<&str>, &str),
    (score, weight): (f64, f64),
    now_ms: i64,
) -> Option<Option<Judged>> {
    let script = Script::new(JUDGE);
    let mut inv = script.prepare_invoke();
    inv.key(keys::request(&link.prefix, key, rid))
        .arg(score)
        .arg(weight)
        .arg(now_ms);
    let got: Option<Vec<String>> = link.script(inv).await?;
    Some(got.and_then(|v| parse(&v)))
}

/// What feedback taught every machine: where it was taken in, the
/// posterior after it, and whether it replaced earlier feedback.
#[derive(Debug, Clone)]
pub struct Taught {
    /// The upstream's scope ([`keys::upstream`]).
    pub scope: String,
    pub task: String,
    pub model: String,
    pub replaced: bool,
    pub posterior: Option<Posterior>,
}

/// Shares feedback on a request this machine answered, on `task` and
/// `model` as its store took it in: the feedback it replaces is the one
/// Redis holds, whichever machine took it, else `local` (the store's);
/// the posterior after it, or None when Redis cannot be reached.
pub async fn teach_held(
    link: &Link,
    (id, identity): ((Option<&str>, &str), &str),
    (task, model): (&str, &str),
    (score, weight, local): (f64, f64, Option<(f64, f64, i64)>),
    (now_ms, half_life_ms): (i64, i64),
) -> Option<Posterior> {
    let replaced = match judge(link, id, (score, weight), now_ms).await? {
        Some(j) => j.replaced,
        None => local,
    };
    let event = quality::Event {
        score,
        weight,
        replaced,
    };
    let scope = keys::upstream(&link.prefix, identity);
    quality::add_scoped(link, &scope, (task, model), event, (now_ms, half_life_ms)).await
}

/// Takes feedback on a request another machine answered, its task put
/// in `bucket` (past the bound of tasks, `other`). `Some(None)`: no
/// machine noted such a request; `None`: Redis cannot be reached.
pub async fn teach_elsewhere(
    link: &Link,
    id: (Option<&str>, &str),
    (score, weight): (f64, f64),
    (now_ms, half_life_ms): (i64, i64),
    bucket: impl Fn(&str) -> String,
) -> Option<Option<Taught>> {
    let Some(j) = judge(link, id, (score, weight), now_ms).await? else {
        return Some(None);
    };
    let task = bucket(&j.task);
    let event = quality::Event {
        score,
        weight,
        replaced: j.replaced,
    };
    let hl = (now_ms, half_life_ms);
    let posterior = quality::add_scoped(link, &j.scope, (&task, &j.model), event, hl).await;
    Some(Some(Taught {
        scope: j.scope,
        task,
        model: j.model,
        replaced: j.replaced.is_some(),
        posterior,
    }))
}

/// A [`JUDGE`] answer.
fn parse(v: &[String]) -> Option<Judged> {
    let [scope, task, model, s, w, at] = v else {
        return None;
    };
    let replaced = match (s.parse(), w.parse(), at.parse::<f64>()) {
        (Ok(s), Ok(w), Ok(at)) => Some((s, w, at as i64)),
        _ => None,
    };
    Some(Judged {
        scope: scope.clone(),
        task: task.clone(),
        model: model.clone(),
        replaced,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn an_answer_with_feedback_before_says_what_it_replaces() {
        let j = parse(&strings(&[
            "p:up:ab:",
            "sql",
            "a/b",
            "0.5",
            "2",
            "1700000000000",
        ]))
        .unwrap();
        assert_eq!(
            j,
            Judged {
                scope: "p:up:ab:".into(),
                task: "sql".into(),
                model: "a/b".into(),
                replaced: Some((0.5, 2.0, 1_700_000_000_000)),
            }
        );
        let first = parse(&strings(&["p:up:ab:", "sql", "a/b", "", "", ""])).unwrap();
        assert_eq!(first.replaced, None);
        assert_eq!(parse(&strings(&["p:up:ab:", "sql"])), None);
    }
}
