//! `llmroute feedback`: feedback on answers, by request id, or outcomes of
//! an evaluation, by task and model, taken into the store's learned
//! quality. One output line per input line: what it taught, or why not; a
//! bad line harms no other.

use std::io::{BufRead, Write};

use anyhow::Context;
use serde_json::{json, Map, Value};

use crate::cli::FeedbackArgs;
use crate::core::learned::{
    check_task, only_fields, score_of, weight_of, FEEDBACK_FIELDS, HALF_LIFE_MS, OUTCOME_FIELDS,
};
use crate::options::Options;
use crate::setup::exit;
use crate::store::learned::{Feedback, Judge};
use crate::store::{self, Store};

mod redis;
use redis::Shared;

/// Lines taken in one transaction. A transaction takes its lines in the
/// order of their request ids: the more lines, the nearer their requests'
/// and feedback's pages lie, and the fewer commits. 25,000 hold the
/// store's write lock for well under a second.
const BATCH: usize = 25_000;

/// What one input line asks.
enum Item {
    Feedback(Feedback),
    Outcome {
        task: String,
        model: String,
        score: f64,
        weight: f64,
    },
}

/// Runs `llmroute feedback`.
pub fn main(args: &FeedbackArgs, options: &Options) -> anyhow::Result<i32> {
    let path = options.store_path()?;
    // Outcomes may warm a store no request has used yet; feedback names
    // requests, which only a store that exists holds, or, with Redis,
    // another machine's.
    let mut store = match (&args.outcomes, &options.redis) {
        (None, None) => crate::setup::open_existing(&path)?,
        _ => Store::open(&path)?,
    };
    store.set_upstream(&crate::upstream::identity(&options.base_url));
    let named = args
        .outcomes
        .as_ref()
        .or(args.file.as_ref())
        .filter(|p| p.as_os_str() != "-");
    let input = open_input(named)?;
    let input_name = named.map_or("the input".to_string(), |p| p.display().to_string());
    let outcomes = args.outcomes.is_some();
    let mut unlisted = Unlisted::new(&store, options);
    let secrets = crate::wiring::secrets(options);
    let mut shared = Shared::open(options)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let (mut taken, mut errors, mut line_no) = (0u64, 0u64, 0u64);
    let mut batch: Vec<(u64, Result<Item, Bad>)> = Vec::with_capacity(BATCH);
    let mut lines = input.split(b'\n');
    loop {
        let next = lines.next();
        let end = next.is_none();
        if let Some(line) = next {
            let line = line.with_context(|| format!("cannot read {input_name}"))?;
            line_no += 1;
            let text = text_of(&line, line_no == 1);
            if text.as_ref().is_ok_and(|t| t.trim().is_empty()) {
                continue;
            }
            let item = text
                .map_err(|e| (Value::Null, e))
                .and_then(|t| parse(t, outcomes))
                .and_then(|i| keyless(i, &secrets));
            if let Ok(Item::Outcome { model, .. }) = &item {
                unlisted.check(model);
            }
            batch.push((line_no, item));
        }
        if batch.len() >= BATCH || (end && !batch.is_empty()) {
            let (mut results, events) = take_in(&store, &batch, &path)?;
            if let Some(s) = &mut shared {
                s.share(events, &mut results);
                // Every machine's counts, rising in the input's order.
                count_in_line_order(&mut results);
                s.elsewhere(&batch, &mut results, &store);
            }
            for (n, r) in results {
                match &r {
                    Ok(_) => taken += 1,
                    Err(_) => errors += 1,
                }
                if r.is_err() || !args.quiet {
                    let _ = write_answer(&mut out, n, r, &secrets);
                }
            }
            batch.clear();
        }
        if end {
            break;
        }
    }
    let _ = out.flush();
    if !args.quiet {
        eprintln!(
            "llmroute: took in {} ({})",
            crate::core::numbers::counted(
                taken,
                if outcomes { "outcome" } else { "feedback line" }
            ),
            crate::core::numbers::counted(errors, "error")
        );
    }
    Ok(if errors > 0 {
        exit::LINE_ERRORS
    } else {
        exit::OK
    })
}

/// The feedback's input: the file named (not a directory), or stdin.
fn open_input(named: Option<&std::path::PathBuf>) -> anyhow::Result<Box<dyn BufRead>> {
    Ok(match named {
        Some(p) => {
            if p.is_dir() {
                anyhow::bail!("cannot read {}: it is a directory", p.display());
            }
            Box::new(std::io::BufReader::new(
                std::fs::File::open(p).with_context(|| format!("cannot read {}", p.display()))?,
            ))
        }
        None => Box::new(std::io::stdin().lock()),
    })
}

/// Writes the output line of input line `n`: what was taken in, or its
/// error.
fn write_answer(
    out: &mut impl Write,
    n: u64,
    r: Taken,
    secrets: &crate::upstream::Secrets,
) -> std::io::Result<()> {
    match r {
        Ok(a) => serde_json::to_writer(&mut *out, &a)?,
        Err((rid, message)) => {
            // Both echo what the line gave, which may hold a key.
            let shown = |t: String| secrets.scrub_shown(&t).unwrap_or(t);
            let rid = match rid {
                Value::String(r) => Value::String(shown(r)),
                other => other,
            };
            serde_json::to_writer(
                &mut *out,
                &json!({
                    "line": n,
                    "request_id": rid,
                    "error": {"type": "invalid_feedback", "message": shown(message)},
                }),
            )?
        }
    }
    out.write_all(b"\n")
}

/// Refuses a line that gives an upstream's key for a request id, a task
/// or a model: these are kept, and shown.
fn keyless(item: Item, secrets: &crate::upstream::Secrets) -> Result<Item, Bad> {
    let given = match &item {
        Item::Feedback(f) => vec![("request_id", &f.rid)],
        Item::Outcome { task, model, .. } => vec![("task", task), ("model", model)],
    };
    match given.into_iter().find(|(_, t)| secrets.holds_key(t)) {
        None => Ok(item),
        Some((field, _)) => Err((
            Value::Null,
            format!("\"{field}\" holds an upstream's API key; the line was not taken in"),
        )),
    }
}

/// What one line taught. Its fields are in the order of their names, as
/// every other output line's are.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
struct Answer {
    line: u64,
    model: String,
    /// The events (task, model) has taken in, up to this line.
    quality_events: u64,
    /// Feedback only: it replaced earlier feedback on its request.
    #[serde(skip_serializing_if = "Option::is_none")]
    replaced: Option<bool>,
    /// Feedback only.
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
    task: String,
}

/// The models an evaluation's outcomes may name without a word: those of
/// the catalogue the store holds for the API, the named upstreams'
/// (`NAME:model`), and the configured candidates. An outcome of another
/// model is taken in all the same (it may be served later), and a
/// warning says so once a model, as it is most likely misspelt.
struct Unlisted {
    /// The models of the catalogue routing would use (the store's, else
    /// the built-in one) and the configured candidates.
    known: std::collections::HashSet<String>,
    /// The named upstreams.
    names: Vec<String>,
    said: std::collections::HashSet<String>,
}

impl Unlisted {
    fn new(store: &Store, options: &Options) -> Unlisted {
        let identity = crate::upstream::identity(&options.base_url);
        let catalogue = store
            .catalogue(&identity)
            .ok()
            .flatten()
            .and_then(|(_, body)| {
                let origin = crate::core::catalogue::Origin::Stored {
                    age: std::time::Duration::ZERO,
                };
                crate::core::catalogue::Catalogue::parse(body.as_bytes(), origin).ok()
            })
            .unwrap_or_else(crate::core::catalogue::Catalogue::embedded);
        let settings = options.settings().ok();
        let configured = settings
            .iter()
            .flat_map(|s| s.models.iter().chain(s.fallback.iter()));
        let listed = catalogue.models().iter().map(|m| m.id.clone());
        let known = listed.chain(configured.cloned()).collect();
        Unlisted {
            known,
            names: options.upstreams.keys().cloned().collect(),
            said: Default::default(),
        }
    }

    fn check(&mut self, model: &str) {
        let named = crate::upstreams::split(model, |n| self.names.iter().any(|u| u == n)).is_some();
        if named || self.known.contains(model) || !self.said.insert(model.to_string()) {
            return;
        }
        eprintln!(
            "llmroute: warning: {} is in no catalogue this store holds, nor among the configured \
             candidates; its outcomes are taken in all the same (check its spelling)",
            crate::core::failure::snippet(model.as_bytes())
        );
    }
}

type Taken = Result<Answer, (Value, String)>;

/// An event taken in, to share: its upstream, task and model, the
/// event, and the request it judged, by its key's name and its id, with
/// the input's line (none for an outcome).
type Event = (
    String,
    String,
    String,
    crate::shared::quality::Event,
    Option<(Option<String>, String, u64)>,
);

/// What a batch did, line by line, and the events to share.
type TakenIn = (Vec<(u64, Taken)>, Vec<Event>);

/// Takes a batch in, in one transaction.
fn take_in(
    store: &Store,
    batch: &[(u64, Result<Item, Bad>)],
    path: &std::path::Path,
) -> anyhow::Result<TakenIn> {
    let mut events = Vec::new();
    let tx = store
        .write_transaction()
        .map_err(crate::setup::store_fatal(path))?;
    // Once the store is this batch's alone: a wait for it is no part of
    // how long its rows take to commit after their stamp.
    let now = store::now_ms();
    let mut out: Vec<Option<(u64, Taken)>> = vec![None; batch.len()];
    let mut taught = crate::store::learned::Taught::default();
    // Taken in the order of their request ids, which the store's index
    // keeps them in, so that lookups walk it rather than jump about; a
    // request's feedback keeps its order (a later one replaces an earlier).
    let mut order: Vec<usize> = (0..batch.len()).collect();
    order.sort_by(|&a, &b| rid_of(&batch[a].1).cmp(&rid_of(&batch[b].1)));
    for i in order {
        let (n, item) = &batch[i];
        let r = match item {
            Err(e) => Err(e.clone()),
            Ok(Item::Feedback(f)) => {
                let rid = Value::String(f.rid.clone());
                match store
                    .apply_feedback_in(f, Judge::Any, (now, HALF_LIFE_MS), &mut taught)
                    .map_err(crate::setup::store_fatal(path))?
                {
                    Ok(a) => {
                        events.push((
                            a.upstream.clone(),
                            a.task.clone(),
                            a.model.clone(),
                            crate::shared::quality::Event {
                                score: f.score,
                                weight: f.weight,
                                replaced: a.replaced_event,
                            },
                            Some((a.key.clone(), f.rid.clone(), *n)),
                        ));
                        Ok(Answer {
                            line: *n,
                            request_id: Some(f.rid.clone()),
                            task: a.task,
                            model: a.model,
                            replaced: Some(a.replaced),
                            quality_events: a.posterior.events,
                        })
                    }
                    Err(e) => Err((rid, e)),
                }
            }
            Ok(Item::Outcome {
                task,
                model,
                score,
                weight,
            }) => {
                let (task, p) = store
                    .add_outcome_in(
                        (task, model),
                        (*score, *weight),
                        (now, HALF_LIFE_MS),
                        &mut taught,
                    )
                    .map_err(crate::setup::store_fatal(path))?;
                events.push((
                    store.upstream().to_string(),
                    task.clone(),
                    model.clone(),
                    crate::shared::quality::Event {
                        score: *score,
                        weight: *weight,
                        replaced: None,
                    },
                    None,
                ));
                Ok(Answer {
                    line: *n,
                    request_id: None,
                    task,
                    model: model.clone(),
                    replaced: None,
                    quality_events: p.events,
                })
            }
        };
        out[i] = Some((*n, r));
    }
    store
        .keep_taught(taught)
        .map_err(crate::setup::store_fatal(path))?;
    let mut out: Vec<(u64, Taken)> = out.into_iter().flatten().collect();
    count_in_line_order(&mut out);
    tx.commit()
        .map_err(|e| crate::setup::store_fatal(path)(e.into()))?;
    Ok((out, events))
}

/// Sets each line's `quality_events` to what it was after that line in
/// the input's order, as if the lines had been taken in one by one: the
/// batch takes them in another order. A line that replaced earlier
/// feedback on its request added no event.
fn count_in_line_order(out: &mut [(u64, Taken)]) {
    use std::collections::HashMap;
    // Each line's (task, model), as a number.
    let mut pairs: HashMap<(&str, &str), usize> = HashMap::new();
    let pair: Vec<Option<usize>> = out
        .iter()
        .map(|(_, r)| {
            let a = r.as_ref().ok()?;
            let next = pairs.len();
            Some(*pairs.entry((&a.task, &a.model)).or_insert(next))
        })
        .collect();
    // Per (task, model): the count after the whole batch, and the events
    // the batch added.
    let mut totals = vec![(0u64, 0u64); pairs.len()];
    for ((_, r), p) in out.iter().zip(&pair) {
        if let (Ok(a), Some(p)) = (r, p) {
            let t = &mut totals[*p];
            t.0 = t.0.max(a.quality_events);
            t.1 += u64::from(a.replaced != Some(true));
        }
    }
    let mut running: Vec<u64> = totals
        .into_iter()
        .map(|(after, added)| after.saturating_sub(added))
        .collect();
    for ((_, r), p) in out.iter_mut().zip(&pair) {
        if let (Ok(a), Some(p)) = (r, p) {
            running[*p] += u64::from(a.replaced != Some(true));
            a.quality_events = running[*p];
        }
    }
}

/// The request id a line gives feedback on, if it is feedback.
fn rid_of(item: &Result<Item, Bad>) -> Option<&str> {
    match item {
        Ok(Item::Feedback(f)) => Some(&f.rid),
        _ => None,
    }
}

/// A line's text: UTF-8, less a CR before its newline and, on the first
/// line, a byte order mark. Anything else is that line's error alone.
fn text_of(line: &[u8], first: bool) -> Result<&str, String> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = match first {
        true => line.strip_prefix(b"\xef\xbb\xbf").unwrap_or(line),
        false => line,
    };
    std::str::from_utf8(line).map_err(|e| format!("the line is not UTF-8: {e}"))
}

/// Reads one line: feedback or an outcome.
/// A line that is not feedback: the request id it names, if any, and why.
type Bad = (Value, String);

/// Reads one line: feedback or an outcome. An error names the line's
/// request id when it has one, so that it can be matched to its request.
fn parse(line: &str, outcome: bool) -> Result<Item, Bad> {
    let v: Value =
        serde_json::from_str(line).map_err(|e| (Value::Null, format!("not a JSON object: {e}")))?;
    let Value::Object(o) = v else {
        return Err((Value::Null, "not a JSON object".into()));
    };
    // Echoed so that the error can be matched to its request; one too
    // long to be an id is cut, not written back whole.
    let rid = match o.get("request_id") {
        Some(Value::String(r)) if r.len() > 256 => {
            let cut: String = r.chars().take(256).collect();
            Value::String(cut + "…")
        }
        Some(r @ Value::String(_)) => r.clone(),
        _ => Value::Null,
    };
    item_of(&o, outcome).map_err(|e| (rid, e))
}

fn item_of(o: &Map<String, Value>, outcome: bool) -> Result<Item, String> {
    only_fields(
        o,
        if outcome {
            OUTCOME_FIELDS
        } else {
            FEEDBACK_FIELDS
        },
    )?;
    let score = score_of(o.get("score").unwrap_or(&Value::Null))?;
    let weight = weight_of(o.get("weight"))?;
    if outcome {
        // A task's own bound, not a field's: an empty name is a bad task.
        let task = match o.get("task") {
            Some(Value::String(t)) => t.trim().to_string(),
            _ => text(o, "task")?,
        };
        check_task(&task)?;
        let model = text(o, "model")?;
        return Ok(Item::Outcome {
            task,
            model,
            score,
            weight,
        });
    }
    Ok(Item::Feedback(Feedback {
        rid: text(o, "request_id")?,
        score,
        weight,
    }))
}

fn text(o: &Map<String, Value>, field: &str) -> Result<String, String> {
    match o.get(field) {
        Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= 256 => {
            Ok(s.trim().to_string())
        }
        Some(Value::String(_)) => Err(format!("\"{field}\" must be 1 to 256 characters")),
        None | Some(Value::Null) => Err(format!("no \"{field}\"")),
        Some(_) => Err(format!("\"{field}\" must be a string")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_line_s_error_is_short_and_says_the_right_bound() {
        let long = format!("{{\"request_id\":\"{}\",\"score\":1}}", "a".repeat(100_000));
        let (rid, message) = parse(&long, false).err().unwrap();
        assert!(
            rid.as_str().unwrap().chars().count() <= 257,
            "{}",
            rid.to_string().len()
        );
        assert!(message.contains("256"), "{message}");
        let (_, message) = parse(r#"{"task":"","model":"m","score":1}"#, true)
            .err()
            .unwrap();
        assert!(message.contains("1 to 64"), "{message}");
        let (_, message) = parse(r#"{"task":"  ","model":"m","score":1}"#, true)
            .err()
            .unwrap();
        assert!(message.contains("1 to 64"), "{message}");
    }

    #[test]
    fn each_line_counts_the_events_up_to_it_in_the_input_s_order() {
        let line = |events: u64, replaced: bool, model: &str| -> Taken {
            Ok(Answer {
                line: 0,
                model: model.into(),
                quality_events: events,
                replaced: Some(replaced),
                request_id: None,
                task: "t".into(),
            })
        };
        // Taken in as lines 3, 1, 2, 4 (by request id) on a posterior of 10
        // events: 11, 12, 12 (a replacement), 13; `n` on another model.
        let mut out = vec![
            (1, line(12, false, "m")),
            (2, line(12, true, "m")),
            (3, line(11, false, "m")),
            (4, Err((Value::Null, "bad".into()))),
            (5, line(13, false, "m")),
            (6, line(1, false, "n")),
        ];
        count_in_line_order(&mut out);
        let counts: Vec<Option<u64>> = out
            .iter()
            .map(|(_, r)| r.as_ref().ok().map(|a| a.quality_events))
            .collect();
        assert_eq!(
            counts,
            [Some(11), Some(11), Some(12), None, Some(13), Some(1)]
        );
    }

    #[test]
    fn lines_are_read_or_refused_with_why() {
        assert!(matches!(
            parse(r#"{"request_id":"r","score":true}"#, false),
            Ok(Item::Feedback(f)) if f.score == 1.0 && f.weight == 1.0
        ));
        assert!(matches!(
            parse(r#"{"task":"t","model":"m","score":0.5,"weight":2}"#, true),
            Ok(Item::Outcome { weight, .. }) if weight == 2.0
        ));
        for (bad, outcome) in [
            ("nope", false),
            ("[1]", false),
            (r#"{"score":1}"#, false),
            (r#"{"request_id":"r","score":2}"#, false),
            (r#"{"request_id":7,"score":1}"#, false),
            (r#"{"task":"a b","model":"m","score":1}"#, true),
            (r#"{"task":"t","score":1}"#, true),
        ] {
            assert!(parse(bad, outcome).is_err(), "{bad}");
        }
    }
}
