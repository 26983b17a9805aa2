//! Single flight between processes on one store, without Redis: identical
//! lines in flight in two processes at once make one upstream call, and a
//! lease whose holder is gone, or holds it too long, holds no line forever.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use crate::util::*;

/// How many times the upstream was asked each prompt.
fn calls_by_prompt(env: &Env) -> BTreeMap<String, usize> {
    let mut calls = BTreeMap::new();
    for r in env.server.completions() {
        let prompt = r.json()["messages"][0]["content"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        *calls.entry(prompt).or_insert(0) += 1;
    }
    calls
}

/// The store's leases.
fn leases(env: &Env) -> i64 {
    env.count("SELECT count(*) FROM flights")
}

#[test]
fn two_processes_on_one_store_pay_once_for_the_lines_both_have_in_flight() {
    let env = Env::three();
    env.server.set_default("t/a", Behavior::ok_after(300));
    // 40 lines, 32 prompts: a few repeat within each process too.
    let input: String = (0..40)
        .map(|i| format!("{{\"id\":\"r{i}\",\"prompt\":\"p{}\"}}\n", i % 32))
        .collect();
    let file = env.write("in.jsonl", &input);
    let args = ["--models", "t/a", "-j", "8"];
    let a = env.spawn(&args, &file);
    let b = env.spawn(&args, &file);
    let mut cached = 0;
    for child in [a, b] {
        let (code, lines, err) = lines_of(child);
        assert_eq!(code, 0, "{err}");
        assert_eq!(lines.len(), 40, "{err}");
        for (i, l) in lines.iter().enumerate() {
            assert_eq!(l["id"], format!("r{i}"));
            assert_eq!(l["error"], Value::Null, "{l}");
            assert_eq!(l["content"], format!("[t/a] p{}", i % 32), "{l}");
        }
        cached += lines.iter().filter(|l| l["cached"] == true).count();
    }
    let calls = calls_by_prompt(&env);
    assert_eq!(calls.len(), 32, "{calls:?}");
    assert!(
        calls.values().all(|&n| n == 1),
        "one call a prompt: {calls:?}"
    );
    assert_eq!(cached, 80 - 32, "every line but the paid ones is cached");
    assert_eq!(leases(&env), 0, "every lease is let go");
}

#[test]
fn a_lease_left_by_a_killed_process_does_not_hold_the_line() {
    let env = Env::three();
    env.server.set_default("t/a", Behavior::ok_after(60_000));
    let file = env.write("in.jsonl", "{\"prompt\":\"same\"}\n");
    let mut first = env.spawn(&["--models", "t/a", "--timeout", "60s"], &file);
    // Killed once it holds the lease and waits for the upstream.
    let held = || {
        let conn = rusqlite::Connection::open_with_flags(
            env.db(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        );
        conn.and_then(|c| c.query_row("SELECT count(*) FROM flights", [], |r| r.get(0)))
            .unwrap_or(0i64)
    };
    // The lease is taken before the call goes out: wait for both, or the
    // kill may come before the upstream was asked at all.
    let asked = || env.server.completions().len();
    let mut waited = 0;
    while (held() == 0 || asked() == 0) && waited < 600 {
        std::thread::sleep(Duration::from_millis(50));
        waited += 1;
    }
    assert_eq!(leases(&env), 1, "the first process took the lease");
    assert_eq!(asked(), 1, "the first process asked the upstream");
    first.kill().expect("SIGKILL");
    first.wait().unwrap();
    env.server.set_default("t/a", Behavior::ok());
    let out = env
        .cmd()
        .args(["--models", "t/a", "--timeout", "1s"])
        .arg(&file)
        .run();
    out.assert_code(0);
    let lines = out.lines();
    assert_eq!(lines[0]["content"], "[t/a] same", "{}", out.stdout);
    assert_eq!(lines[0]["cached"], false);
    assert_eq!(
        calls_by_prompt(&env)["same"],
        2,
        "the killed one's and its own"
    );
    assert_eq!(leases(&env), 0, "the lease taken over is let go");
}

#[test]
fn a_lease_held_elsewhere_holds_a_line_no_longer_than_a_lease_lasts() {
    let env = Env::three();
    let file = env.write("in.jsonl", "{\"prompt\":\"same\"}\n");
    let args = ["--models", "t/a", "--timeout", "1s"];
    env.cmd().args(args).arg(&file).run().assert_code(0);
    // The answer forgotten, and a lease on it held for an hour by a
    // process this one cannot see.
    let conn = rusqlite::Connection::open(env.db()).unwrap();
    let key: Vec<u8> = conn
        .query_row("SELECT key FROM cache", [], |r| r.get(0))
        .unwrap();
    conn.execute("DELETE FROM cache", []).unwrap();
    conn.execute(
        "INSERT INTO flights (key, owner, until_ms) VALUES (?1, 'a process elsewhere', ?2)",
        rusqlite::params![key, now_ms() + 3_600_000],
    )
    .unwrap();
    drop(conn);
    let out = env.cmd().args(args).arg(&file).run();
    out.assert_code(0);
    let lines = out.lines();
    assert_eq!(lines[0]["content"], "[t/a] same", "{}", out.stdout);
    assert_eq!(lines[0]["cached"], false);
    assert_eq!(calls_by_prompt(&env)["same"], 2);
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn identical_requests_on_one_server_leave_no_lease_in_the_store() {
    let env = Env::three();
    env.server.set_default("t/a", Behavior::ok_after(50));
    let s = env.serve(&["--models", "t/a"]);
    for round in 0..20 {
        let statuses = together(&s, &chat(None, &format!("same {round}")), 8);
        assert!(statuses.iter().all(|c| *c == 200), "{statuses:?}");
        let mut waited = 0;
        while leases(&env) > 0 && waited < 20 {
            std::thread::sleep(Duration::from_millis(50));
            waited += 1;
        }
        assert_eq!(leases(&env), 0, "round {round}: a lease is left");
    }
    assert_eq!(env.server.count_for("t/a"), 20, "one call a round");
    s.stop();
}
