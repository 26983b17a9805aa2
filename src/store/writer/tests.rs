//! The writer thread: lookups, group commit, held and lingering writes,
//! failures.

use std::time::Instant;

use super::commit::{apply, Transactions};
use super::*;
use crate::store::flights::{Claim, Looked};
use crate::store::CacheEntry;

/// A runtime to wait for the writer's answers on.
fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

fn found_answer() -> CachedAnswer {
    CachedAnswer {
        model: "m".into(),
        response: "{}".into(),
        content: None,
        cost_usd: None,
        prompt_tokens: None,
        completion_tokens: None,
        score: None,
        created_at: 10,
    }
}

#[test]
fn a_lingering_writer_answers_a_lookup_at_once_and_commits_what_gathered() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.db")).unwrap();
    // An hour's linger: only a lookup (or the end) ends the wait.
    let w = Writer::spawn_lingering(store, Duration::from_secs(3600));
    let h = w.handle();
    let key = Key([7; 32]);
    h.write_nowait(LineRecord {
        cache: Some(CacheEntry {
            key,
            answer: found_answer(),
        }),
        ..Default::default()
    });
    let rt = rt();
    let found = rt.block_on(h.lookup(key, 0));
    assert_eq!(found.map(|a| a.model), Some("m".to_string()));
    // A write gathering when the writer finishes is committed then,
    // not an hour later.
    h.write_nowait(LineRecord {
        cache: Some(CacheEntry {
            key: Key([8; 32]),
            answer: found_answer(),
        }),
        ..Default::default()
    });
    drop(h);
    let store = w.finish();
    assert_eq!(store.cache_stats(None).unwrap().entries, 2);
}

/// A record nobody waits for: a failed line's, with one attempt row.
fn quiet_record(model: &str) -> LineRecord {
    LineRecord {
        attempts: vec![crate::store::AttemptRow {
            ts: 1,
            model: model.into(),
            status: Some(500),
            ok: false,
            cached: false,
            latency_ms: Some(1.0),
            prompt_tokens: None,
            completion_tokens: None,
            cost_usd: None,
            score: None,
            error_type: Some("server_error"),
            ttft_ms: None,
        }],
        ..Default::default()
    }
}

fn attempts_seen(path: &std::path::Path) -> i64 {
    let other = rusqlite::Connection::open(path).unwrap();
    other
        .query_row("SELECT count(*) FROM attempts", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn quiet_records_go_with_the_next_durable_one_or_soon_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let writer = Writer::spawn(Store::open(&path).unwrap());
    let h = writer.handle();
    let rt = rt();
    for i in 0..10 {
        h.write_nowait(quiet_record(&format!("m/{i}")));
    }
    // A lookup is answered while they are held.
    assert_eq!(rt.block_on(h.lookup(Key([9; 32]), 0)), None);
    // A write someone waits for takes them along.
    rt.block_on(h.write(quiet_record("m/durable")));
    assert_eq!(attempts_seen(&path), 11);
    // Alone, they commit soon, with nothing else to carry them.
    h.write_nowait(quiet_record("m/alone"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while attempts_seen(&path) < 12 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(attempts_seen(&path), 12);
    // And what is held when the writer finishes is committed then.
    h.write_nowait(quiet_record("m/last"));
    drop(h);
    let store = writer.finish();
    drop(store);
    assert_eq!(attempts_seen(&path), 13);
}

#[test]
fn a_write_someone_waits_for_does_not_wait_out_the_quiet_ones_hold() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    // Quiet writes held for an hour: only a wake-up commits them sooner.
    let hour = Duration::from_secs(3600);
    let writer = Writer::spawn_holding(Store::open(&path).unwrap(), Duration::ZERO, hour);
    let h = writer.handle();
    h.write_nowait(quiet_record("m/quiet"));
    // Let the writer take it and fall asleep holding it.
    std::thread::sleep(Duration::from_millis(50));
    let (done, acked) = mpsc::channel();
    let waiter = {
        let h = h.clone();
        std::thread::spawn(move || {
            let rt = rt();
            rt.block_on(h.write(quiet_record("m/durable")));
            let _ = done.send(());
        })
    };
    assert!(
        acked.recv_timeout(Duration::from_secs(30)).is_ok(),
        "the durable write waited for the held ones' hour"
    );
    waiter.join().unwrap();
    assert_eq!(attempts_seen(&path), 2);
    // The end wakes the writer too: what it holds then is committed.
    h.write_nowait(quiet_record("m/last"));
    drop(h);
    drop(writer.finish());
    assert_eq!(attempts_seen(&path), 3);
}

#[test]
fn under_a_stream_of_lookups_held_records_still_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let writer = Writer::spawn(Store::open(&path).unwrap());
    let h = writer.handle();
    let rt = rt();
    h.write_nowait(quiet_record("m/a"));
    // Lookups without pause, faster than they are answered, so that the
    // queue is never empty: the held record does not wait for a quiet
    // moment that never comes.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood = {
        let (tx, stop) = (h.tx.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for _ in 0..1000 {
                    let (reply, _) = oneshot::channel();
                    let _ = tx.send(Msg::Lookup {
                        key: Key([1; 32]),
                        min_created_at: 0,
                        claim: None,
                        reply,
                    });
                }
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while attempts_seen(&path) < 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    flood.join().unwrap();
    assert_eq!(attempts_seen(&path), 1);
    assert!(rt.block_on(h.lookup(Key([1; 32]), 0)).is_none());
    drop(h);
    writer.finish();
}

#[test]
fn writes_commit_before_they_are_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let writer = Writer::spawn(Store::open(&path).unwrap());
    let h = writer.handle();
    let rt = rt();
    let answer = CachedAnswer {
        model: "m".into(),
        response: "{}".into(),
        content: None,
        cost_usd: None,
        prompt_tokens: None,
        completion_tokens: None,
        score: None,
        created_at: 10,
    };
    rt.block_on(h.write(LineRecord {
        cache: Some(CacheEntry {
            key: Key([7; 32]),
            answer: answer.clone(),
        }),
        ..Default::default()
    }));
    // A second connection sees the committed row at once.
    let other = Store::open(&path).unwrap();
    assert_eq!(
        other.lookup(&Key([7; 32]), 0).unwrap(),
        Some(answer.clone())
    );
    assert_eq!(rt.block_on(h.lookup(Key([7; 32]), 0)), Some(answer));
    assert_eq!(rt.block_on(h.lookup(Key([8; 32]), 0)), None);
    assert_eq!(h.failure(), None);
    drop(h);
    writer.finish();
}

#[test]
fn hooks_run_after_the_thens_of_a_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let writer = Writer::spawn(Store::open(&dir.path().join("s.db")).unwrap());
    let h = writer.handle();
    let events = Arc::new(Mutex::new(Vec::new()));
    let log = events.clone();
    h.after_each_commit(move || log.lock().unwrap().push("hook".to_string()));
    for i in 0..50 {
        let log = events.clone();
        h.write_then(
            Box::<LineRecord>::default(),
            Box::new(move || log.lock().unwrap().push(format!("then {i}"))),
        );
    }
    h.write_nowait(LineRecord::default());
    drop(h);
    writer.finish();
    let events = events.lock().unwrap();
    let thens: Vec<&String> = events.iter().filter(|e| e.starts_with("then")).collect();
    assert_eq!(thens.len(), 50);
    assert_eq!(thens[0], "then 0", "in the order written");
    assert_eq!(thens[49], "then 49");
    let hooks = events.iter().filter(|e| *e == "hook").count();
    assert!((1..=50).contains(&hooks), "{events:?}");
    assert_eq!(
        events.last().unwrap(),
        "hook",
        "nothing is left behind a hook"
    );
    assert_ne!(events[0], "hook", "a hook follows thens, never leads");
}

#[test]
fn what_waits_for_a_write_runs_even_when_the_transaction_cannot_begin() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let store = Store::open(&path).unwrap();
    store
        .conn()
        .busy_timeout(std::time::Duration::from_millis(20))
        .unwrap();
    // Another connection holds the write lock, so BEGIN IMMEDIATE fails.
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let writer = Writer::spawn(store);
    let h = writer.handle();
    let events = Arc::new(Mutex::new(Vec::new()));
    let log = events.clone();
    h.after_each_commit(move || log.lock().unwrap().push("hook"));
    let log = events.clone();
    let rt = rt();
    h.write_then(
        Box::<LineRecord>::default(),
        Box::new(move || log.lock().unwrap().push("then")),
    );
    assert_eq!(rt.block_on(h.lookup(Key([1; 32]), 0)), None);
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    while events.lock().unwrap().len() < 2 && Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(*events.lock().unwrap(), ["then", "hook"]);
    assert!(
        h.failure().is_some_and(|f| f.contains("locked")),
        "{:?}",
        h.failure()
    );
    drop(h);
    let store = writer.finish();
    other.execute_batch("ROLLBACK").unwrap();
    drop(store);
}

#[test]
fn a_bad_record_fails_alone_and_the_rest_of_its_transaction_commits() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.db")).unwrap();
    // Any attempt row naming model "bad" is refused.
    store
        .conn()
        .execute_batch(
            "CREATE TEMP TRIGGER refuse BEFORE INSERT ON attempts WHEN NEW.model = 'bad'
             BEGIN SELECT RAISE(ABORT, 'a bad row'); END;",
        )
        .unwrap();
    let record = |key: u8, model: &str| LineRecord {
        cache: Some(CacheEntry {
            key: Key([key; 32]),
            answer: CachedAnswer {
                model: model.into(),
                response: "{}".into(),
                content: None,
                cost_usd: None,
                prompt_tokens: None,
                completion_tokens: None,
                score: None,
                created_at: 1,
            },
        }),
        attempts: vec![crate::store::AttemptRow {
            ts: 1,
            model: model.into(),
            status: Some(200),
            ok: true,
            cached: false,
            latency_ms: Some(10.0),
            prompt_tokens: None,
            completion_tokens: None,
            cost_usd: None,
            score: None,
            error_type: None,
            ttft_ms: None,
        }],
        ..Default::default()
    };
    let mut batch: Vec<Msg> = [(1, "good/a"), (2, "bad"), (3, "good/b")]
        .into_iter()
        .map(|(k, m)| Msg::Line {
            record: Box::new(record(k, m)),
            then: None,
        })
        .collect();
    let result = apply(&store, &mut batch, &mut Vec::new(), &mut Vec::new(), true);
    assert!(result.is_err(), "the bad record's error is reported");
    for (key, cached) in [(1u8, true), (2, false), (3, true)] {
        assert_eq!(
            store.lookup(&Key([key; 32]), 0).unwrap().is_some(),
            cached,
            "record {key}"
        );
    }
    let stats = store.model_stats().unwrap();
    assert_eq!(
        stats.len(),
        2,
        "the good records' latencies count: {stats:?}"
    );
}

fn claim(owner: &str, peek: bool) -> Claim {
    Claim {
        owner: Arc::from(owner),
        lease_ms: 60_000,
        peek,
        gone: None,
    }
}

#[test]
fn a_miss_takes_the_lease_and_another_writer_finds_it_held_then_answered() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let a = Writer::spawn(Store::open(&path).unwrap());
    let b = Writer::spawn(Store::open(&path).unwrap());
    let (ha, hb) = (a.handle(), b.handle());
    let rt = rt();
    let key = Key([3; 32]);
    assert_eq!(
        rt.block_on(ha.look_up(key, 0, Some(claim("a", false)))),
        Looked::Leased
    );
    for peek in [false, true] {
        let looked = rt.block_on(hb.look_up(key, 0, Some(claim("b", peek))));
        assert!(
            matches!(&looked, Looked::Held { owner, .. } if owner == "a"),
            "{looked:?}"
        );
    }
    assert_eq!(rt.block_on(hb.look_up(key, 0, None)), Looked::Miss);
    // The answer, then the lease let go after it.
    ha.write_nowait(LineRecord {
        cache: Some(CacheEntry {
            key,
            answer: found_answer(),
        }),
        ..LineRecord::default()
    });
    ha.release(key, Arc::from("a"));
    rt.block_on(ha.sync());
    assert_eq!(
        rt.block_on(hb.look_up(key, 0, Some(claim("b", true)))),
        Looked::Hit(found_answer())
    );
    // A lease let go without an answer is there to take.
    let other = Key([4; 32]);
    assert_eq!(
        rt.block_on(ha.look_up(other, 0, Some(claim("a", false)))),
        Looked::Leased
    );
    ha.release(other, Arc::from("a"));
    rt.block_on(ha.sync());
    assert_eq!(
        rt.block_on(hb.look_up(other, 0, Some(claim("b", true)))),
        Looked::Leased
    );
    drop((ha, hb));
    let (a, b) = (a.finish(), b.finish());
    assert_eq!(a.flight_holder(&key).unwrap(), None);
    assert_eq!(b.flight_holder(&other).unwrap().unwrap().0, "b");
}

#[test]
fn a_miss_takes_its_lease_in_a_writing_transaction_else_in_one_after() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.db")).unwrap();
    let (failure, hooks) = (Mutex::new(None), Mutex::new(Vec::new()));
    let mut t = Transactions::new(&store, &failure, &hooks);
    for (k, writes) in [(5u8, true), (6, false)] {
        let key = Key([k; 32]);
        let (reply, mut rx) = oneshot::channel();
        let mut batch = vec![Msg::Lookup {
            key,
            min_created_at: 0,
            claim: Some(claim("a", false)),
            reply,
        }];
        if writes {
            batch.push(Msg::Line {
                record: Box::new(LineRecord::default()),
                then: None,
            });
        }
        t.commit(&mut batch);
        assert_eq!(rx.try_recv().unwrap(), Looked::Leased, "writes: {writes}");
        assert_eq!(store.flight_holder(&key).unwrap().unwrap().0, "a");
    }
    drop(t);
    assert_eq!(*failure.lock().unwrap(), None);
}
