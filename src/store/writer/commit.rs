//! A batch in one transaction: lookups answered, records written (each
//! alone, under a savepoint, should one fail), and only then what waited
//! for them.

use std::sync::Mutex;

use rusqlite::TransactionBehavior;

use super::{is_write, lock, run_hooks, AfterCommit, Hook, Msg, MAX_BATCH};
use crate::store::{LatencyFold, Statements, Store, StoreError};

/// What committing a batch needs, and its after-commit work.
pub(super) struct Transactions<'a> {
    store: &'a Store,
    failure: &'a Mutex<Option<String>>,
    hooks: &'a Mutex<Vec<Hook>>,
    after: Vec<AfterCommit>,
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
        if let Err(e) = apply(self.store, batch, &mut self.after, writes) {
            let mut slot = lock(self.failure);
            slot.get_or_insert_with(|| e.to_string());
        }
        // What a failed BEGIN left in the batch: lookups miss, and what
        // waits for a write still runs (the write is lost, the line is not).
        for m in batch.drain(..) {
            match m {
                Msg::Lookup { reply, .. } => {
                    let _ = reply.send(None);
                }
                Msg::Line { then, .. } => self.after.extend(then),
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
    let mut statements = Statements::default();
    for m in batch.drain(..) {
        match m {
            Msg::Lookup {
                key,
                min_created_at,
                reply,
            } => {
                let hit = store
                    .lookup_held(&key, min_created_at, &mut statements)
                    .unwrap_or(None);
                let _ = reply.send(hit);
            }
            Msg::Line { record, then } => {
                if result.is_ok() {
                    result = store.write_line_folded(&record, &mut latencies, &mut statements);
                }
                records.push(record);
                after.extend(then);
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
    store.write_latencies(&mut latencies)?;
    tx.commit()?;
    first
}
