//! A batch in one transaction: lookups answered (and leases taken on
//! misses), records written (each alone, under a savepoint, should one
//! fail), leases let go, and only then what waited for them.

use std::sync::Mutex;

use rusqlite::TransactionBehavior;
use tokio::sync::oneshot;

use super::{is_write, lock, run_hooks, AfterCommit, Hook, Msg, MAX_BATCH};
use crate::core::cachekey::Key;
use crate::store::flights::{Claim, Looked};
use crate::store::{now_ms, LatencyFold, Statements, Store, StoreError};

/// A lookup that missed in a transaction that only reads, and asks for
/// the lease: taken in a write transaction after it.
pub(super) struct Pending {
    key: Key,
    min_created_at: i64,
    claim: Claim,
    reply: oneshot::Sender<Looked>,
}

/// What committing a batch needs, and its after-commit work.
pub(super) struct Transactions<'a> {
    store: &'a Store,
    failure: &'a Mutex<Option<String>>,
    hooks: &'a Mutex<Vec<Hook>>,
    after: Vec<AfterCommit>,
    pending: Vec<Pending>,
    #[cfg(debug_assertions)]
    delay: std::time::Duration,
}

impl<'a> Transactions<'a> {
    pub(super) fn new(
        store: &'a Store,
        failure: &'a Mutex<Option<String>>,
        hooks: &'a Mutex<Vec<Hook>>,
    ) -> Transactions<'a> {
        Transactions {
            store,
            failure,
            hooks,
            after: Vec::with_capacity(MAX_BATCH),
            pending: Vec::new(),
            #[cfg(debug_assertions)]
            delay: commit_delay(),
        }
    }

    /// Handles `batch` in one transaction (emptying it), then runs what
    /// waited for its writes, and the hooks.
    pub(super) fn commit(&mut self, batch: &mut Vec<Msg>) {
        let writes = batch.iter().any(is_write);
        #[cfg(debug_assertions)]
        if writes {
            std::thread::sleep(self.delay);
        }
        let (after, pending) = (&mut self.after, &mut self.pending);
        if let Err(e) = apply(self.store, batch, after, pending, writes) {
            let mut slot = lock(self.failure);
            slot.get_or_insert_with(|| e.to_string());
        }
        // What a failed BEGIN left in the batch: lookups miss, and what
        // waits for a write still runs (the write is lost, the line is not).
        for m in batch.drain(..) {
            match m {
                Msg::Lookup { reply, .. } => {
                    let _ = reply.send(Looked::Miss);
                }
                Msg::Line { then, .. } => self.after.extend(then),
                // Lost: the lease ends when it expires.
                Msg::Release { .. } => {}
            }
        }
        // Only now: after the commit, or after the failure.
        let handed_on = !self.after.is_empty();
        for then in self.after.drain(..) {
            then();
        }
        if handed_on {
            run_hooks(self.hooks);
        }
        if !self.pending.is_empty() {
            take_leases(self.store, &mut self.pending);
        }
    }
}

/// Takes the leases the misses of a transaction that only read asked
/// for, in one write transaction; each takes one statement, which also
/// finds an answer that came meanwhile. Should it fail, they go without.
fn take_leases(store: &Store, pending: &mut Vec<Pending>) {
    let now = now_ms();
    let begun = rusqlite::Transaction::new_unchecked(store.conn(), TransactionBehavior::Immediate);
    let looked: Vec<Looked> = match begun {
        Ok(tx) => {
            let looked = pending
                .iter()
                .map(|p| store.take_flight(&p.key, p.min_created_at, &p.claim, now))
                .map(|l| l.unwrap_or(Looked::Miss))
                .collect::<Vec<_>>();
            match tx.commit() {
                Ok(()) => looked,
                // Rolled back: no lease was taken (an answer found stands).
                Err(_) => looked
                    .into_iter()
                    .map(|l| match l {
                        Looked::Leased => Looked::Miss,
                        l => l,
                    })
                    .collect(),
            }
        }
        Err(_) => Vec::new(),
    };
    let mut looked = looked.into_iter();
    for p in pending.drain(..) {
        let _ = p.reply.send(looked.next().unwrap_or(Looked::Miss));
    }
}

/// What a lookup finds, asked with (the oldest answer it takes, its
/// claim, whether the transaction writes, now): the answer, else the
/// lease taken or who holds it. `Err` gives the claim back when its lease
/// is to be taken after this transaction, which only reads.
fn found<'c>(
    store: &'c Store,
    statements: &mut Statements<'c>,
    key: &Key,
    (min_created_at, claim, writes, now): (i64, Option<Claim>, bool, i64),
) -> Result<Looked, Claim> {
    let hit = store
        .lookup_held(key, min_created_at, statements)
        .unwrap_or(None);
    match (hit, claim) {
        (Some(a), _) => Ok(Looked::Hit(a)),
        (None, None) => Ok(Looked::Miss),
        // This transaction writes: the lease is taken in it.
        (None, Some(c)) if writes => Ok(store
            .take_flight(key, min_created_at, &c, now)
            .unwrap_or(Looked::Miss)),
        (None, Some(c)) => held(store, key, &c, now).ok_or(c),
    }
}

/// What a lookup that missed, in `claim`'s name, gets at once in a
/// transaction that only reads: who holds the lease, when it holds and
/// `claim` only peeks. `None`: try to take it.
fn held(store: &Store, key: &Key, claim: &Claim, now: i64) -> Option<Looked> {
    if !claim.peek {
        return None;
    }
    match store.flight_holder(key) {
        Ok(holder) if claim.may_take(holder.as_ref(), now) => None,
        Ok(holder) => holder.map(|(owner, until_ms)| Looked::Held { owner, until_ms }),
        Err(_) => Some(Looked::Miss),
    }
}

/// In debug builds only: `LLMROUTE_COMMIT_DELAY_MS` holds every write
/// transaction back that long, so that tests can see that nothing waiting
/// for a commit goes ahead of it.
#[cfg(debug_assertions)]
fn commit_delay() -> std::time::Duration {
    let ms = std::env::var("LLMROUTE_COMMIT_DELAY_MS").ok();
    std::time::Duration::from_millis(ms.and_then(|v| v.parse().ok()).unwrap_or(0))
}

/// Handles a batch in one transaction. Lookups are answered (and removed
/// from the batch) as they are met; what waits for a write is moved to
/// `after`. Should the transaction not even begin, the batch is left as it
/// is. Should a record fail to be written, the transaction is rolled back
/// and its records written again, each under a savepoint of its own, so
/// that a bad record fails alone.
pub(super) fn apply(
    store: &Store,
    batch: &mut Vec<Msg>,
    after: &mut Vec<AfterCommit>,
    pending: &mut Vec<Pending>,
    writes: bool,
) -> Result<(), StoreError> {
    let behavior = if writes {
        TransactionBehavior::Immediate
    } else {
        TransactionBehavior::Deferred
    };
    let tx = rusqlite::Transaction::new_unchecked(store.conn(), behavior)?;
    let mut result = Ok(());
    let mut latencies = LatencyFold::default();
    let mut records = Vec::new();
    let mut releases = Vec::new();
    let mut statements = Statements::default();
    let now = now_ms();
    for m in batch.drain(..) {
        match m {
            Msg::Lookup {
                key,
                min_created_at,
                claim,
                reply,
            } => {
                let asked = (min_created_at, claim, writes, now);
                match found(store, &mut statements, &key, asked) {
                    Ok(looked) => {
                        let _ = reply.send(looked);
                    }
                    Err(claim) => pending.push(Pending {
                        key,
                        min_created_at,
                        claim,
                        reply,
                    }),
                }
            }
            Msg::Line { record, then } => {
                if result.is_ok() {
                    result = store.write_line_folded(&record, &mut latencies, &mut statements);
                }
                records.push(record);
                after.extend(then);
            }
            Msg::Release { key, owner } => {
                if result.is_ok() {
                    result = store.end_flight(&key, &owner);
                }
                releases.push((key, owner));
            }
        }
    }
    drop(statements);
    if result.is_ok() {
        result = store.write_latencies(&mut latencies);
    }
    if result.is_ok() {
        return Ok(tx.commit()?);
    }
    let _ = tx.rollback();
    let first = result;
    let tx = rusqlite::Transaction::new_unchecked(store.conn(), TransactionBehavior::Immediate)?;
    let mut latencies = LatencyFold::default();
    for record in &records {
        let mut fold = LatencyFold::default();
        let conn = store.conn();
        conn.execute_batch("SAVEPOINT record")?;
        match store.write_line_folded(record, &mut fold, &mut Statements::default()) {
            Ok(()) => latencies.extend(fold),
            Err(_) => conn.execute_batch("ROLLBACK TO record")?,
        }
        conn.execute_batch("RELEASE record")?;
    }
    for (key, owner) in &releases {
        let _ = store.end_flight(key, owner);
    }
    store.write_latencies(&mut latencies)?;
    tx.commit()?;
    first
}
