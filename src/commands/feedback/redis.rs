//! Feedback shared through Redis (`--redis`): what a batch teaches goes
//! there too, and feedback on requests another machine answered is taken
//! from what Redis noted of them.

use super::{Answer, Bad, Event, Item, Taken};
use crate::core::learned::HALF_LIFE_MS;
use crate::options::Options;
use crate::shared::requests::UNREACHED;
use crate::store::learned::UNKNOWN;
use crate::store::{self, Store};

/// Redis, with `--redis`: what feedback teaches is shared there too.
pub(super) struct Shared {
    rt: tokio::runtime::Runtime,
    link: std::sync::Arc<crate::shared::Link>,
    /// Redis stopped answering: the rest goes to the store alone.
    down: bool,
}

impl Shared {
    pub(super) fn open(options: &Options) -> anyhow::Result<Option<Shared>> {
        let Some(r) = &options.redis else {
            return Ok(None);
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let link = rt
            .block_on(crate::shared::Link::open(&r.url, &r.prefix, r.timeout))
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot reach Redis at {}: {e}",
                    crate::shared::shown(&r.url)
                )
            })?;
        Ok(Some(Shared {
            rt,
            link,
            down: false,
        }))
    }

    /// Shares what a batch taught, and marks `replaced` the results whose
    /// feedback replaced feedback taken on another machine. Redis not
    /// answering is no reason to stop: the store has it all, as every
    /// other command goes on with its local state; it is said once.
    pub(super) fn share(&mut self, events: Vec<Event>, results: &mut [(u64, Taken)]) {
        if self.down {
            return;
        }
        let now = store::now_ms();
        let link = &self.link;
        let mut replaced = std::collections::HashSet::new();
        let mut shared_events = std::collections::HashMap::new();
        let shared = self.rt.block_on(async {
            for (identity, task, model, e, judged) in events {
                let at = (task.as_str(), model.as_str());
                let hl = (now, HALF_LIFE_MS);
                match judged {
                    // Feedback replaces what was taken on the request on
                    // any machine.
                    Some((key, rid, line)) => {
                        let id = ((key.as_deref(), rid.as_str()), identity.as_str());
                        let scored = (e.score, e.weight, e.replaced);
                        let (p, again) =
                            crate::shared::requests::teach_held(link, id, at, scored, hl).await?;
                        shared_events.insert(line, p.events);
                        if again {
                            replaced.insert(line);
                        }
                    }
                    None => {
                        crate::shared::quality::add(link, &identity, at, e, hl).await?;
                    }
                };
            }
            Some(())
        });
        // Every machine's events count.
        for (line, r) in results.iter_mut() {
            let Ok(a) = r else { continue };
            if replaced.contains(line) {
                a.replaced = Some(true);
            }
            if let Some(n) = shared_events.get(line) {
                a.quality_events = *n;
            }
        }
        if shared.is_none() {
            self.went_down();
        }
    }

    fn went_down(&mut self) {
        self.down = true;
        eprintln!(
            "llmroute: warning: Redis does not answer; what the rest of this input \
             teaches goes to the store alone"
        );
    }

    /// Takes feedback on requests this store does not hold that another
    /// machine answered, as Redis noted them: each such line's error in
    /// `results` becomes what it taught.
    pub(super) fn elsewhere(
        &mut self,
        batch: &[(u64, Result<Item, Bad>)],
        results: &mut [(u64, Taken)],
        store: &Store,
    ) {
        let now = store::now_ms();
        let bucket = |t: &str| store.task_bucket(store.upstream(), t).unwrap_or(t.into());
        // The results are in the batch's order, a line each.
        for ((n, r), (_, item)) in results.iter_mut().zip(batch) {
            let (Err((_, e)), Ok(Item::Feedback(f))) = (&mut *r, item) else {
                continue;
            };
            if !e.starts_with(UNKNOWN) {
                continue;
            }
            if self.down {
                e.push_str(&format!("; {UNREACHED}"));
                continue;
            }
            let taught = self.rt.block_on(crate::shared::requests::teach_elsewhere(
                &self.link,
                (None, &f.rid),
                (f.score, f.weight),
                (now, HALF_LIFE_MS),
                bucket,
            ));
            match taught {
                Ok(Some(t)) => {
                    *r = Ok(Answer {
                        line: *n,
                        request_id: Some(f.rid.clone()),
                        task: t.task,
                        model: t.model,
                        replaced: Some(t.replaced),
                        quality_events: t.posterior.events,
                    })
                }
                Ok(None) => {}
                Err(_) => {
                    e.push_str(&format!("; {UNREACHED}"));
                    self.went_down();
                }
            }
        }
    }
}
