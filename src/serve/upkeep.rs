//! A server runs for months: every `--upkeep-every` its store drops
//! expired answers, metrics past `--retention`, and the least recently used
//! answers past `--cache-max-size`, on a connection of its own, so that the
//! store stays bounded while it runs.

use std::path::PathBuf;
use std::time::Duration;

use crate::setup::PRUNE_BATCH;
use crate::store::{now_ms, Store};

/// What to keep.
#[derive(Debug, Clone)]
pub struct Keep {
    pub path: PathBuf,
    pub cache_ttl: Duration,
    pub retention: Duration,
    pub cache_max_size: Option<u64>,
}

/// Runs the upkeep every `every` (and once at once), until dropped.
pub async fn run(keep: Keep, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let k = keep.clone();
        match tokio::task::spawn_blocking(move || once(&k)).await {
            Ok(Ok(done)) if done.any() => tracing::info!(
                expired = done.expired,
                evicted = done.evicted,
                metrics = done.metrics,
                "store upkeep"
            ),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!("store upkeep failed: {e}"),
            Err(_) => {}
        }
    }
}

/// What one upkeep removed.
#[derive(Debug, Default, PartialEq)]
pub struct Removed {
    pub expired: usize,
    pub evicted: usize,
    pub metrics: usize,
}

impl Removed {
    fn any(&self) -> bool {
        self.expired + self.evicted + self.metrics > 0
    }
}

/// One upkeep.
pub fn once(keep: &Keep) -> Result<Removed, crate::store::StoreError> {
    let store = Store::open(&keep.path)?;
    let now = now_ms();
    let expired = store.cache_remove(Some(crate::core::duration::before(now, keep.cache_ttl)))?;
    let evicted = match keep.cache_max_size {
        Some(max) => store.cache_shrink(max)?,
        None => 0,
    };
    let before = crate::core::duration::before(now, keep.retention);
    let mut metrics = 0;
    loop {
        let n = store.prune_metrics(before, PRUNE_BATCH)?;
        metrics += n;
        if n < PRUNE_BATCH {
            break;
        }
    }
    Ok(Removed {
        expired,
        evicted,
        metrics,
    })
}
