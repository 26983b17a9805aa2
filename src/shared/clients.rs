//! Client keys shared through Redis: every key's record (its token only
//! as SHA-256) in one hash, and each key's requests and tokens of the
//! current minute as counters all machines add to.

use super::Link;
use crate::core::keys::KeyRecord;

/// The hash of every key's record, as JSON by name.
fn records(prefix: &str) -> String {
    format!("{prefix}clients")
}

/// A key's counter of `what` (`rpm` or `tpm`) in minute `minute`.
fn window(prefix: &str, name: &str, what: &str, minute: i64) -> String {
    format!("{prefix}client:{name}:{what}:{minute}")
}

/// Keeps a key's record. None when Redis cannot be reached.
pub async fn put(link: &Link, key: &KeyRecord) -> Option<()> {
    let json = serde_json::to_string(key).expect("a key record serialises");
    link.call::<i64>(
        redis::cmd("HSET")
            .arg(records(&link.prefix))
            .arg(&key.name)
            .arg(json),
    )
    .await
    .map(|_| ())
}

/// Keeps a key's record unless Redis has one of that name (a Redis that
/// restarted empty is given back what a machine knew; a record another
/// machine wrote meanwhile is never overwritten).
pub async fn put_new(link: &Link, key: &KeyRecord) -> Option<()> {
    let json = serde_json::to_string(key).expect("a key record serialises");
    link.call::<i64>(
        redis::cmd("HSETNX")
            .arg(records(&link.prefix))
            .arg(&key.name)
            .arg(json),
    )
    .await
    .map(|_| ())
}

/// Every key's record (unreadable ones skipped). None when Redis cannot be
/// reached.
pub async fn all(link: &Link) -> Option<Vec<KeyRecord>> {
    let map: std::collections::HashMap<String, String> = link
        .call(redis::cmd("HGETALL").arg(records(&link.prefix)))
        .await?;
    Some(
        map.values()
            .filter_map(|v| serde_json::from_str(v).ok())
            .collect(),
    )
}

/// Counts a request of key `name` in minute `minute`; returns the key's
/// requests and tokens in that minute across machines, this one included.
/// None when Redis cannot be reached.
pub async fn take(link: &Link, name: &str, minute: i64) -> Option<(u64, u64)> {
    let rpm = window(&link.prefix, name, "rpm", minute);
    let tpm = window(&link.prefix, name, "tpm", minute);
    let mut p = redis::pipe();
    p.cmd("INCR").arg(&rpm);
    p.cmd("EXPIRE").arg(&rpm).arg(120).ignore();
    p.cmd("GET").arg(&tpm);
    let (requests, tokens): (u64, Option<u64>) = link.pipe(&p).await?;
    Some((requests, tokens.unwrap_or(0)))
}

/// Adds a request's tokens to key `name`'s minute `minute`, in the background.
pub fn add_tokens(link: &Link, name: &str, minute: i64, tokens: u64) {
    let tpm = window(&link.prefix, name, "tpm", minute);
    let mut p = redis::pipe();
    p.cmd("INCRBY").arg(&tpm).arg(tokens).ignore();
    p.cmd("EXPIRE").arg(&tpm).arg(120).ignore();
    link.send(p);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_prefix_and_no_token() {
        assert_eq!(records("p:"), "p:clients");
        assert_eq!(window("p:", "team-a", "rpm", 7), "p:client:team-a:rpm:7");
    }
}
