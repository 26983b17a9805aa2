//! The store thread's loop: what comes commits at once, or gathers for a
//! linger, or (a quiet write) is held back to go with the next
//! transaction; the thread sleeps meanwhile, and a lookup wakes it.

use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::commit::Transactions;
use super::{is_write, Msg, Shared, MAX_BATCH};
use crate::store::Store;

/// A write nobody waits for that caches nothing: it may be held back.
fn quiet(m: &Msg) -> bool {
    match m {
        Msg::Line { record, then } => then.is_none() && record.cache.is_none(),
        Msg::Release { .. } => true,
        Msg::Lookup { .. } => false,
    }
}

/// What came while quiet writes were held.
enum Held {
    Came(Msg),
    TimeUp,
    Ended,
}

/// Sleeps until a message comes, or `deadline`: asleep, not waiting on
/// the channel, so that quiet writes do not wake the thread one by one (a
/// lookup, a write someone waits for, or the end does). A wake-up with
/// nothing to take (spurious, or left by an earlier unpark) sleeps again.
fn sleep_holding(rx: &mpsc::Receiver<Msg>, holding: &AtomicBool, deadline: Instant) -> Held {
    holding.store(true, Ordering::SeqCst);
    fence(Ordering::SeqCst);
    let held = loop {
        match rx.try_recv() {
            Ok(m) => break Held::Came(m),
            Err(mpsc::TryRecvError::Disconnected) => break Held::Ended,
            Err(mpsc::TryRecvError::Empty) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break Held::TimeUp;
                }
                std::thread::park_timeout(left);
            }
        }
    };
    holding.store(false, Ordering::SeqCst);
    held
}

pub(super) fn run(
    store: Store,
    rx: mpsc::Receiver<Msg>,
    shared: Shared,
    linger: Duration,
    hold: Duration,
) -> Store {
    let mut t = Transactions::new(&store, &shared.failure, &shared.hooks);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut lookups = Vec::with_capacity(MAX_BATCH);
    // Quiet writes held back, in the order they came, and since when.
    let mut held: Vec<Msg> = Vec::new();
    let mut held_since: Option<Instant> = None;
    loop {
        let first = match held_since {
            None => rx.recv().ok(),
            Some(since) => match sleep_holding(&rx, &shared.holding, since + hold) {
                Held::Came(m) => Some(m),
                Held::TimeUp => None,
                Held::Ended => {
                    t.commit(&mut held);
                    break;
                }
            },
        };
        let due = match first {
            Some(m) => {
                batch.push(m);
                drain(&rx, &mut batch)
                    || held.len() + batch.len() >= MAX_BATCH
                    || held_since.is_some_and(|s| s.elapsed() >= hold)
            }
            // Nothing came: the end, or the held writes' time is up.
            None if held_since.is_none() => break,
            None => true,
        };
        if !linger.is_zero() {
            gather(&rx, &mut batch, linger);
        }
        let holds = linger.is_zero() && !due && batch.iter().all(|m| quiet(m) || !is_write(m));
        if holds {
            // The writes stay, the lookups are answered now; no new vectors.
            let before = held.len();
            for m in batch.drain(..) {
                if is_write(&m) {
                    held.push(m);
                } else {
                    lookups.push(m);
                }
            }
            if held.len() > before {
                held_since.get_or_insert_with(Instant::now);
            }
            if !lookups.is_empty() {
                t.commit(&mut lookups);
            }
            continue;
        }
        // Everything commits: what was held first, as it came first.
        if !held.is_empty() {
            batch.splice(0..0, held.drain(..));
            held_since = None;
        }
        t.commit(&mut batch);
    }
    if !held.is_empty() {
        t.commit(&mut held);
    }
    drop(t);
    store
}

/// Lets writes gather for `linger`, unless a lookup comes: a lookup is
/// answered at once, with the writes gathered so far. The thread sleeps
/// meanwhile, so that writes do not wake it one by one; a lookup wakes it.
fn gather(rx: &mpsc::Receiver<Msg>, batch: &mut Vec<Msg>, linger: Duration) {
    let lookup = |m: &Msg| matches!(m, Msg::Lookup { .. });
    let deadline = Instant::now() + linger;
    loop {
        let ended = drain(rx, batch);
        if ended || batch.len() >= MAX_BATCH || batch.iter().any(lookup) {
            return;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::park_timeout(left);
    }
}

/// Takes what is queued, up to a batch; whether every sender has gone.
fn drain(rx: &mpsc::Receiver<Msg>, batch: &mut Vec<Msg>) -> bool {
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(m) => batch.push(m),
            Err(mpsc::TryRecvError::Empty) => return false,
            Err(mpsc::TryRecvError::Disconnected) => return true,
        }
    }
    false
}
