//! Leases on answering a request, for single flight between the processes
//! of one store: a lookup that misses takes the lease on the key (one
//! statement, which also checks that no answer has come meanwhile); other
//! processes then find it held, and wait for the answer in the cache. The
//! holder deletes its lease once its answer (or failure) is recorded. A
//! lease ends by itself at its `until_ms`, and sooner when its holder is
//! seen to have died.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rusqlite::{params, OptionalExtension};

use super::{CachedAnswer, Store, StoreError};
use crate::core::cachekey::Key;

/// Takes the lease on ?1 for ?2 until ?3, unless an answer made at or
/// after ?4 is cached: when nobody holds it, or its lease ended by ?5, or
/// its holder is ?6 (known to be gone).
const TAKE: &str = "INSERT INTO flights (key, owner, until_ms)
     SELECT ?1, ?2, ?3 WHERE NOT EXISTS (SELECT 1 FROM cache WHERE key = ?1 AND created_at >= ?4)
     ON CONFLICT (key) DO UPDATE SET owner = excluded.owner, until_ms = excluded.until_ms
     WHERE flights.until_ms <= ?5 OR flights.owner = ?6";
const HOLDER: &str = "SELECT owner, until_ms FROM flights WHERE key = ?1";
const END: &str = "DELETE FROM flights WHERE key = ?1 AND owner = ?2";

/// What a lookup asks for when it misses: the lease on answering the key.
#[derive(Debug, Clone)]
pub struct Claim {
    /// This process (see [`this_process`]).
    pub owner: Arc<str>,
    /// How long the lease lasts, in ms.
    pub lease_ms: i64,
    /// Look who holds the lease before trying to take it: a request
    /// waiting on another's lease looks often, and should not take the
    /// write lock each time.
    pub peek: bool,
    /// A holder known to be gone, whose lease is taken over.
    pub gone: Option<String>,
}

/// What a lookup found.
#[derive(Debug, Clone, PartialEq)]
pub enum Looked {
    Hit(CachedAnswer),
    /// No answer, and no lease: none was asked for, or the store failed.
    Miss,
    /// No answer; the lease on making it is this process's now.
    Leased,
    /// No answer; `owner` holds the lease until `until_ms` (unix ms).
    Held {
        owner: String,
        until_ms: i64,
    },
}

impl Looked {
    pub fn hit(self) -> Option<CachedAnswer> {
        match self {
            Looked::Hit(a) => Some(a),
            _ => None,
        }
    }
}

impl Claim {
    /// Whether a lease held as `holder` may be taken at `now`.
    pub fn may_take(&self, holder: Option<&(String, i64)>, now: i64) -> bool {
        match holder {
            None => true,
            Some((owner, until_ms)) => {
                *until_ms <= now || self.gone.as_deref() == Some(owner.as_str())
            }
        }
    }
}

impl Store {
    /// Takes the lease on answering `key` for `claim` at `now` (unix ms),
    /// unless an answer made at or after `min_created_at` is cached (then
    /// that answer) or another holds it (then who). One statement when it
    /// is taken. Call it in a write transaction.
    pub fn take_flight(
        &self,
        key: &Key,
        min_created_at: i64,
        claim: &Claim,
        now: i64,
    ) -> Result<Looked, StoreError> {
        let until = now.saturating_add(claim.lease_ms);
        let took = self.conn().prepare_cached(TAKE)?.execute(params![
            &key.0[..],
            &*claim.owner,
            until,
            min_created_at,
            now,
            claim.gone
        ])?;
        if took == 1 {
            return Ok(Looked::Leased);
        }
        if let Some(a) = self.lookup(key, min_created_at)? {
            return Ok(Looked::Hit(a));
        }
        Ok(match self.flight_holder(key)? {
            Some((owner, until_ms)) => Looked::Held { owner, until_ms },
            None => Looked::Miss,
        })
    }

    /// Who holds the lease on `key`, and until when.
    pub fn flight_holder(&self, key: &Key) -> Result<Option<(String, i64)>, StoreError> {
        Ok(self
            .conn()
            .prepare_cached(HOLDER)?
            .query_row(params![&key.0[..]], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }

    /// Lets go of `owner`'s lease on `key` (another's is left alone).
    pub fn end_flight(&self, key: &Key, owner: &str) -> Result<(), StoreError> {
        self.conn()
            .prepare_cached(END)?
            .execute(params![&key.0[..], owner])?;
        Ok(())
    }
}

/// This process, as the holder of leases: `pid@namespace:random`. The
/// namespace (Linux's pid namespace) says whether another process can see
/// the pid; the random part tells this process from an earlier one that
/// had its pid.
pub fn this_process() -> Arc<str> {
    static ME: OnceLock<Arc<str>> = OnceLock::new();
    ME.get_or_init(|| {
        let mut nonce = [0u8; 8];
        if getrandom::fill(&mut nonce).is_err() {
            nonce = super::now_ms().to_le_bytes();
        }
        let id = format!(
            "{}@{}:{}",
            std::process::id(),
            pid_namespace(),
            hex::encode(nonce)
        );
        Arc::from(id)
    })
    .clone()
}

/// This process's pid namespace, as a number; empty where there is none
/// to read (then no holder is ever judged gone).
fn pid_namespace() -> &'static str {
    static NS: OnceLock<String> = OnceLock::new();
    NS.get_or_init(|| {
        let link = std::fs::read_link("/proc/self/ns/pid").unwrap_or_default();
        link.to_string_lossy()
            .chars()
            .filter(char::is_ascii_digit)
            .collect()
    })
}

/// Whether the process that took a lease as `owner` has ended: it ran in
/// this process's pid namespace, and its pid runs no longer (or runs this
/// process, which is not it). A holder this process cannot see is never
/// judged gone: its lease ends when it expires.
pub fn is_gone(owner: &str) -> bool {
    let ns = pid_namespace();
    let Some((pid, rest)) = owner.split_once('@') else {
        return false;
    };
    let Some((theirs, _)) = rest.split_once(':') else {
        return false;
    };
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    if ns.is_empty() || theirs != ns {
        return false;
    }
    if pid == std::process::id() {
        return *this_process() != *owner;
    }
    !Path::new(&format!("/proc/{pid}")).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(owner: &str) -> Claim {
        Claim {
            owner: Arc::from(owner),
            lease_ms: 1000,
            peek: false,
            gone: None,
        }
    }

    #[test]
    fn a_lease_is_taken_once_until_it_ends_or_is_let_go() {
        let s = Store::in_memory().unwrap();
        let key = Key([7; 32]);
        assert_eq!(
            s.take_flight(&key, 0, &claim("a"), 100).unwrap(),
            Looked::Leased
        );
        let held = Looked::Held {
            owner: "a".into(),
            until_ms: 1100,
        };
        assert_eq!(s.take_flight(&key, 0, &claim("b"), 200).unwrap(), held);
        // Expired: another takes it over.
        assert_eq!(
            s.take_flight(&key, 0, &claim("b"), 1100).unwrap(),
            Looked::Leased
        );
        // Only its holder lets it go.
        s.end_flight(&key, "a").unwrap();
        assert_eq!(s.flight_holder(&key).unwrap(), Some(("b".into(), 2100)));
        s.end_flight(&key, "b").unwrap();
        assert_eq!(s.flight_holder(&key).unwrap(), None);
    }

    #[test]
    fn a_gone_holders_lease_is_taken_over_and_an_answer_takes_no_lease() {
        let s = Store::in_memory().unwrap();
        let key = Key([7; 32]);
        s.take_flight(&key, 0, &claim("dead"), 100).unwrap();
        let mut c = claim("b");
        c.gone = Some("dead".into());
        assert!(c.may_take(Some(&("dead".into(), 5000)), 200));
        assert!(!claim("b").may_take(Some(&("dead".into(), 5000)), 200));
        assert_eq!(s.take_flight(&key, 0, &c, 200).unwrap(), Looked::Leased);
        s.end_flight(&key, "b").unwrap();
        let answer = CachedAnswer {
            model: "m".into(),
            response: "{}".into(),
            content: None,
            cost_usd: None,
            prompt_tokens: None,
            completion_tokens: None,
            score: None,
            created_at: 150,
        };
        s.write_line(&crate::store::LineRecord {
            cache: Some(crate::store::CacheEntry {
                key,
                answer: answer.clone(),
            }),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            s.take_flight(&key, 0, &claim("c"), 300).unwrap(),
            Looked::Hit(answer)
        );
        // Too old an answer does not count.
        assert_eq!(
            s.take_flight(&key, 151, &claim("c"), 300).unwrap(),
            Looked::Leased
        );
    }

    #[test]
    fn only_a_holder_that_ran_here_and_runs_no_more_is_gone() {
        let me = this_process();
        assert!(!is_gone(&me));
        assert!(!is_gone("a process elsewhere"));
        assert!(!is_gone("1@0:00"), "another namespace");
        let ns = pid_namespace();
        assert!(!ns.is_empty(), "Linux names its pid namespace");
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(is_gone(&format!("{pid}@{ns}:00")));
        assert!(!is_gone(&format!("1@{ns}:00")), "init runs");
        assert!(is_gone(&format!("{}@{ns}:00", std::process::id())));
    }
}
