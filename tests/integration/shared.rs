//! Several llmroute processes sharing one real `redis-server`: answers,
//! pauses, rate limits, the budget and single flight; Redis dying, never
//! there, or too slow; and what Redis holds.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::*;

/// A process of its own (its own store) on `env`'s fake upstream and `redis`.
fn machine(env: &Env, redis: &RedisServer, name: &str) -> Cmd {
    env.cmd()
        .env("LLMROUTE_DB", env.path(&format!("{name}.db")))
        .env("LLMROUTE_REDIS_URL", redis.url())
}

fn spawn(cmd: Cmd, input: &std::path::Path) -> Child {
    let mut c = cmd.cmd;
    c.arg(input)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("llmroute starts")
}

#[test]
fn a_second_machine_pays_nothing_for_the_first_ones_answers() {
    let env = Env::three();
    let redis = RedisServer::start();
    let input = prompts(5);
    let first = machine(&env, &redis, "one")
        .args(["--models", "t/a"])
        .stdin(&input)
        .run();
    first.assert_code(0);
    assert_eq!(env.server.count_for("t/a"), 5);
    let second = machine(&env, &redis, "two")
        .args(["--models", "t/a"])
        .stdin(&input)
        .run();
    second.assert_code(0);
    assert!(
        second.lines().iter().all(|l| l["cached"] == true),
        "{}",
        second.stdout
    );
    assert_eq!(env.server.count_for("t/a"), 5, "nothing paid twice");
    // The Redis hits are in the second store now: it answers without Redis.
    drop(redis);
    let third = env
        .cmd()
        .env("LLMROUTE_DB", env.path("two.db"))
        .args(["--models", "t/a"])
        .stdin(&input)
        .run();
    assert!(third.lines().iter().all(|l| l["cached"] == true));
    assert_eq!(env.server.count_for("t/a"), 5);
}

#[test]
fn a_rate_limit_one_machine_sees_pauses_the_model_for_the_other() {
    let env = Env::three();
    env.server.script("t/a", [Behavior::rate_limited(Some(60))]);
    let redis = RedisServer::start();
    let models = ["-p", "cost", "--models", "t/a,t/b"];
    let first = machine(&env, &redis, "one")
        .args(models)
        .stdin(prompts(1))
        .run();
    assert_eq!(answered_by(&first.lines()[0]), "t/b", "fell back");
    assert_eq!(env.server.count_for("t/a"), 1);
    let second = machine(&env, &redis, "two")
        .args(models)
        .stdin(prompts(3))
        .run();
    second.assert_code(0);
    for l in second.lines() {
        assert_eq!(answered_by(&l), "t/b", "t/a pauses for every machine");
    }
    assert_eq!(
        env.server.count_for("t/a"),
        1,
        "the second never called t/a"
    );
}

#[test]
fn with_shared_limits_two_machines_together_keep_to_the_rpm() {
    let env = Env::three();
    let redis = RedisServer::start();
    let input = env.write("in.jsonl", &prompts(3));
    let args = [
        "--models",
        "t/a",
        "--no-cache",
        "--rpm",
        "60",
        "--shared-limits",
    ];
    let started = Instant::now();
    let a = spawn(machine(&env, &redis, "one").args(args), &input);
    let b = spawn(machine(&env, &redis, "two").args(args), &input);
    for child in [a, b] {
        let (code, lines, err) = lines_of(child);
        assert_eq!((code, lines.len()), (0, 3), "{err}");
    }
    let mut at: Vec<Instant> = env.server.completions().iter().map(|r| r.at).collect();
    at.sort();
    assert_eq!(at.len(), 6);
    // One a second between them: six requests span at least five seconds
    // (each machine alone would have sent its three in two).
    let span = at[5] - at[0];
    assert!(span >= Duration::from_millis(4500), "{span:?}");
    assert!(started.elapsed() >= span);
}

#[test]
fn with_shared_limits_two_machines_share_one_budget() {
    let env = Env::new(vec![ModelSpec::new("t/a").prices("0", "0.00002")]);
    env.server.set_default("t/a", Behavior::ok_with_cost(0.01));
    let redis = RedisServer::start();
    // 512 tokens each: a $0.01 estimate, however short the answers are, so
    // that spend plus what is held never passes the cap.
    let input = env.write("in.jsonl", &prompts_with_max_tokens(6, 512));
    let args = [
        "--models",
        "t/a",
        "--no-cache",
        "--max-cost",
        "0.05",
        "--shared-limits",
        "--budget-id",
        "test",
    ];
    let a = spawn(machine(&env, &redis, "one").args(args), &input);
    let b = spawn(machine(&env, &redis, "two").args(args), &input);
    let mut spent = 0.0;
    let mut refused = 0;
    for child in [a, b] {
        let (_, lines, _) = lines_of(child);
        for l in lines {
            match l["cost_usd"].as_f64() {
                Some(c) if l["error"].is_null() => spent += c,
                _ => {
                    assert_eq!(l["error"]["type"], "budget_exceeded", "{l}");
                    refused += 1;
                }
            }
        }
    }
    assert!(spent <= 0.05 + 1e-9, "spent {spent} of one budget of 0.05");
    assert!(
        refused >= 6,
        "at least half the lines were refused: {refused}"
    );
}

#[test]
fn identical_requests_on_two_machines_make_one_call() {
    let env = Env::three();
    env.server.set_default("t/a", Behavior::ok_after(800));
    let redis = RedisServer::start();
    let input = env.write("in.jsonl", "{\"prompt\":\"same\"}\n");
    let a = spawn(
        machine(&env, &redis, "one").args(["--models", "t/a"]),
        &input,
    );
    let b = spawn(
        machine(&env, &redis, "two").args(["--models", "t/a"]),
        &input,
    );
    let mut cached = 0;
    for child in [a, b] {
        let (code, lines, err) = lines_of(child);
        assert_eq!(code, 0, "{err}");
        cached += usize::from(lines[0]["cached"] == true);
    }
    assert_eq!(env.server.count_for("t/a"), 1, "one call for both");
    assert_eq!(cached, 1);
}

#[test]
fn without_redis_every_line_is_answered_with_one_warning() {
    let env = Env::three();
    let out = env
        .cmd()
        .args(["--models", "t/a", "--redis", "redis://127.0.0.1:9"])
        .stdin(prompts(20))
        .run();
    out.assert_code(0);
    assert_eq!(out.lines().len(), 20);
    assert_eq!(out.stderr.matches("Redis").count(), 1, "{}", out.stderr);
}

#[test]
fn redis_killed_mid_run_loses_no_line_and_sharing_resumes() {
    let env = Env::three();
    env.server.set_default("t/a", Behavior::ok_after(50));
    let redis = RedisServer::start();
    let input = env.write("in.jsonl", &prompts(60));
    let child = spawn(
        machine(&env, &redis, "one").args(["--models", "t/a", "-j", "2"]),
        &input,
    );
    while env.server.count_for("t/a") < 10 {
        std::thread::sleep(Duration::from_millis(10));
    }
    let redis = redis.restart();
    let (code, lines, err) = lines_of(child);
    assert_eq!((code, lines.len()), (0, 60), "{err}");
    assert!(lines.iter().all(|l| l["error"].is_null()));
    assert_eq!(env.server.count_for("t/a"), 60, "nothing paid twice");
    // Back: a new answer is shared again.
    machine(&env, &redis, "one")
        .args(["--models", "t/a"])
        .stdin("{\"prompt\":\"after\"}\n")
        .run()
        .assert_code(0);
    let other = machine(&env, &redis, "two")
        .args(["--models", "t/a"])
        .stdin("{\"prompt\":\"after\"}\n")
        .run();
    assert_eq!(other.lines()[0]["cached"], true, "{}", other.stderr);
}

#[test]
fn a_stalled_redis_does_not_stall_the_lines() {
    let env = Env::three();
    let redis = RedisServer::start();
    signal(redis.child.id(), "STOP");
    let out = machine(&env, &redis, "one")
        .args(["--models", "t/a", "--redis-timeout", "50ms", "-j", "1"])
        .stdin(prompts(20))
        .run();
    signal(redis.child.id(), "CONT");
    out.assert_code(0);
    assert_eq!(out.lines().len(), 20);
    assert!(out.stderr.contains("does not answer"), "{}", out.stderr);
}

#[test]
fn redis_holds_hashes_and_numbers_never_prompts_or_the_key() {
    let env = Env::three();
    env.server.script("t/a", [Behavior::rate_limited(Some(30))]);
    // An answer that does not echo the prompt, as a real model's does not
    // (the fake's usual answer repeats it).
    env.server.set_default("t/b", Behavior::stream(0, 0, 3));
    let redis = RedisServer::start();
    let secret_prompt = "my very private prompt 8f2c";
    machine(&env, &redis, "one")
        .args([
            "--models",
            "t/a,t/b",
            "--shared-limits",
            "--rpm",
            "600",
            "--max-cost",
            "1",
        ])
        .stdin(format!("{{\"prompt\":\"{secret_prompt}\"}}\n"))
        .run()
        .assert_code(0);
    let dump = redis.dump();
    let kinds: Vec<&str> = dump
        .iter()
        .map(|(k, _)| {
            // Health keys are per upstream: `up:HASH:health:MODEL`.
            let k = k.trim_start_matches("llmroute:v1:");
            let mut parts = k.split(':');
            match parts.next().unwrap() {
                "up" => parts.nth(1).unwrap(),
                kind => kind,
            }
        })
        .collect();
    for kind in ["cache", "health", "pause", "rate", "budget"] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
    for (k, v) in &dump {
        assert!(k.starts_with("llmroute:v1:"), "{k}");
        assert!(!k.contains(secret_prompt) && !k.contains(KEY), "{k}");
        assert!(!v.contains(KEY), "{k} holds the key");
        assert!(!v.contains(secret_prompt), "{k} holds the prompt: {v}");
    }
    // The one answer is there, as the answer alone.
    let answers: Vec<&String> = dump
        .iter()
        .filter(|(k, _)| k.contains(":cache:"))
        .map(|(_, v)| v)
        .collect();
    assert_eq!(answers.len(), 1);
    assert!(answers[0].contains("[t/b] w2 w3"), "{}", answers[0]);
}

#[test]
fn a_server_reports_redis_in_ready() {
    let env = Env::three();
    let redis = RedisServer::start();
    let s = env.serve_with(
        &["--models", "t/a"],
        &[("LLMROUTE_REDIS_URL", &redis.url())],
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ready = |s: &Served| -> Value {
        rt.block_on(async {
            reqwest::get(s.url("/ready"))
                .await
                .unwrap()
                .json()
                .await
                .unwrap()
        })
    };
    assert_eq!(ready(&s)["redis"]["status"], "up", "{}", ready(&s));
    drop(redis);
    // A call finds it gone.
    rt.block_on(async {
        reqwest::Client::new()
            .post(s.url("/v1/chat/completions"))
            .json(&chat(None, "r"))
            .send()
            .await
            .unwrap()
    });
    let r = ready(&s);
    assert!(
        r["redis"]["status"].as_str().unwrap().starts_with("down"),
        "{r}"
    );
    assert_eq!(r["ready"], true, "local state answers");
}

#[test]
fn shared_limits_without_redis_is_a_usage_error() {
    let env = Env::three();
    let out = env
        .cmd()
        .args(["--shared-limits", "--rpm", "60"])
        .stdin(prompts(1))
        .run();
    out.assert_code(2);
    assert!(out.stderr.contains("--redis"), "{}", out.stderr);
    assert_eq!(env.server.completions().len(), 0);
}

#[test]
fn no_lease_outlives_its_request_streamed_or_not() {
    let env = Env::three();
    env.server.set_default("t/a", Behavior::status(500));
    let redis = RedisServer::start();
    let s = env.serve_with(
        &["--models", "t/a"],
        &[("LLMROUTE_REDIS_URL", &redis.url())],
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut body = chat(None, "same");
    body["stream"] = Value::Bool(true);
    let status = rt.block_on(async {
        let c = reqwest::Client::new();
        let r = c
            .post(s.url("/v1/chat/completions"))
            .json(&body)
            .send()
            .await
            .unwrap();
        r.status().as_u16()
    });
    assert_eq!(status, 502);
    // Let go while the server runs on, not only when it stops.
    let leases = || -> Vec<String> {
        redis
            .dump()
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| k.contains(":flight:"))
            .collect()
    };
    let mut waited = 0;
    while !leases().is_empty() && waited < 100 {
        std::thread::sleep(Duration::from_millis(50));
        waited += 1;
    }
    assert!(leases().is_empty(), "{:?}", leases());
    let (code, log) = s.stop();
    assert_eq!(code, 0, "{log}");
    env.server.set_default("t/a", Behavior::ok());
    machine(&env, &redis, "two")
        .args(["--models", "t/a"])
        .stdin("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}\n")
        .run()
        .assert_code(0);
    assert!(leases().is_empty(), "{:?}", leases());
}

/// A server whose Redis stops answering says so, and says it is back when
/// it is; with `--log-format json`, both lines are JSON like the rest.
#[test]
fn a_server_logs_redis_down_and_back_as_json() {
    let env = Env::three();
    let redis = RedisServer::start();
    let s = env.serve(&[
        "--models",
        "t/a",
        "--redis",
        &redis.url(),
        "--redis-timeout",
        "50ms",
        "--log-format",
        "json",
    ]);
    let ask = |prompt: &str| {
        let body = chat(None, prompt);
        let url = s.url("/v1/chat/completions");
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                reqwest::Client::new()
                    .post(url)
                    .json(&body)
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
    };
    signal(redis.child.id(), "STOP");
    assert!(ask("while it is away").is_success());
    signal(redis.child.id(), "CONT");
    let mut back = false;
    for i in 0..100 {
        std::thread::sleep(Duration::from_millis(100));
        assert!(ask(&format!("after {i}")).is_success());
        if s.log().contains("is back") {
            back = true;
            break;
        }
    }
    let log = s.log();
    assert!(back, "{log}");
    assert!(log.contains("stopped answering"), "{log}");
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "not JSON: {line}"
        );
    }
    s.stop();
}

/// What the budget `--budget-id test` holds in Redis: spent (the larger
/// of the settlements' sum and the contributors' parts'), and held by
/// requests in flight.
fn shared_budget(redis: &RedisServer) -> (f64, f64) {
    let mut c = redis.client().get_connection().unwrap();
    let h: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
        .arg("llmroute:v1:budget:test")
        .query(&mut c)
        .unwrap();
    let get = |f: &str| h.get(f).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (get("run").max(get("sum")), get("held"))
}

/// A server on the budget `test` shared through `redis`, whose one model
/// answers after a second at a cost of $0.004; and one request sent to
/// it, whose estimate ($0.01024, for 512 tokens) is held in Redis once
/// this returns. The request's thread gives its status.
fn a_request_on_a_shared_budget(
    env: &Env,
    redis: &RedisServer,
) -> (Served, std::thread::JoinHandle<u16>) {
    env.server.set_default(
        "t/a",
        Behavior::Ok {
            latency: Duration::from_millis(1000),
            cost: Some(0.004),
        },
    );
    let s = env.serve_with(
        &[
            "--models",
            "t/a",
            "--max-cost",
            "1",
            "--shared-limits",
            "--budget-id",
            "test",
        ],
        &[("LLMROUTE_REDIS_URL", &redis.url())],
    );
    let mut body = chat(None, "x");
    body["max_tokens"] = Value::from(512);
    let url = s.url("/v1/chat/completions");
    let asked = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let r = reqwest::Client::new().post(url).json(&body).send().await;
                r.unwrap().status().as_u16()
            })
    });
    let start = Instant::now();
    while shared_budget(redis).1 == 0.0 {
        assert!(start.elapsed() < Duration::from_secs(10), "nothing held");
        std::thread::sleep(Duration::from_millis(10));
    }
    (s, asked)
}

/// Waits, ten seconds at most, until the shared budget is `want`.
fn wait_for_budget(redis: &RedisServer, want: (f64, f64)) -> (f64, f64) {
    let start = Instant::now();
    loop {
        let (spent, held) = shared_budget(redis);
        let near = |a: f64, b: f64| (a - b).abs() < 1e-9;
        if (near(spent, want.0) && near(held, want.1)) || start.elapsed() > Duration::from_secs(10)
        {
            return (spent, held);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_budget_settled_while_redis_is_away_is_settled_there_once_it_is_back() {
    let env = Env::new(vec![ModelSpec::new("t/a").prices("0", "0.00002")]);
    let redis = RedisServer::start();
    let (s, asked) = a_request_on_a_shared_budget(&env, &redis);
    // Redis goes away (its data kept) while the request is in flight: the
    // request is answered, and settled, while it is away.
    let redis = redis.down_and_back(|| assert_eq!(asked.join().unwrap(), 200));
    let (spent, held) = wait_for_budget(&redis, (0.004, 0.0));
    assert!(
        (spent - 0.004).abs() < 1e-9 && held.abs() < 1e-9,
        "spent {spent}, held {held}: the settlement was lost"
    );
    s.stop();
}

#[test]
fn a_settlement_redis_takes_late_is_not_counted_twice() {
    let env = Env::new(vec![ModelSpec::new("t/a").prices("0", "0.00002")]);
    let redis = RedisServer::start();
    let (s, asked) = a_request_on_a_shared_budget(&env, &redis);
    // Redis holds back writes until after the answer: the settlement is
    // sent but not confirmed in time, and Redis carries it out later.
    let mut c = redis.client().get_connection().unwrap();
    let () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(1500)
        .arg("WRITE")
        .query(&mut c)
        .unwrap();
    assert_eq!(asked.join().unwrap(), 200);
    wait_for_budget(&redis, (0.004, 0.0));
    // Long enough for the link to be back and to send it again.
    std::thread::sleep(Duration::from_secs(3));
    let (spent, held) = shared_budget(&redis);
    assert!(
        (spent - 0.004).abs() < 1e-9 && held.abs() < 1e-9,
        "spent {spent}, held {held}"
    );
    s.stop();
}

/// The leases on answering requests Redis holds now.
fn leases(redis: &RedisServer) -> Vec<String> {
    redis
        .dump()
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| k.contains(":flight:"))
        .collect()
}

#[test]
fn identical_requests_on_one_server_leave_no_lease_behind() {
    let env = Env::three();
    env.server.set_default("t/a", Behavior::ok_after(300));
    let redis = RedisServer::start();
    // A lease lasts an attempt's time limit and 5 s more.
    let s = env.serve_with(
        &["--models", "t/a", "--timeout", "3s"],
        &[("LLMROUTE_REDIS_URL", &redis.url())],
    );
    for round in 0..5 {
        let started = Instant::now();
        let statuses = together(&s, &chat(None, &format!("same {round}")), 8);
        assert!(statuses.iter().all(|c| *c == 200), "{statuses:?}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "round {round} waited on a lease: {:?}",
            started.elapsed()
        );
        let mut waited = 0;
        while !leases(&redis).is_empty() && waited < 20 {
            std::thread::sleep(Duration::from_millis(50));
            waited += 1;
        }
        assert!(
            leases(&redis).is_empty(),
            "round {round}: {:?}",
            leases(&redis)
        );
    }
    assert_eq!(env.server.count_for("t/a"), 5, "one call a round");
    s.stop();
}

#[test]
fn a_no_cache_request_takes_no_lease() {
    let env = Env::three();
    env.server.set_default("t/a", Behavior::ok_after(500));
    let redis = RedisServer::start();
    let s = env.serve_with(
        &["--models", "t/a"],
        &[("LLMROUTE_REDIS_URL", &redis.url())],
    );
    let seen = |no_cache: bool| {
        let url = s.url("/v1/chat/completions");
        let body = chat(None, &format!("fresh {no_cache}"));
        let asked = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    let mut r = reqwest::Client::new().post(url).json(&body);
                    if no_cache {
                        r = r.header("Cache-Control", "no-cache");
                    }
                    r.send().await.unwrap().status().as_u16()
                })
        });
        let mut seen = false;
        while !asked.is_finished() {
            seen |= !leases(&redis).is_empty();
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(asked.join().unwrap(), 200);
        seen
    };
    assert!(
        seen(false),
        "a request that may share its answer takes the lease"
    );
    assert!(
        !seen(true),
        "a no-cache request shares no answer, and takes no lease"
    );
    s.stop();
}

/// A wrong or missing Redis password is told as such, not as a Redis that
/// is away; the run goes on with local state, and the password is never
/// shown.
#[test]
fn a_redis_that_refuses_the_password_says_so() {
    let env = Env::three();
    let redis = RedisServer::start_with_password("right-pw-7");
    for url in [
        format!("redis://:wrong-pw-9@127.0.0.1:{}", redis.port),
        format!("redis://127.0.0.1:{}", redis.port),
    ] {
        let out = env
            .cmd()
            .args(["--models", "t/a", "--redis", &url])
            .stdin(prompts(1))
            .run();
        out.assert_code(0);
        assert!(
            out.stderr.contains("refuses its user or password"),
            "{url}: {}",
            out.stderr
        );
        assert!(!out.stderr.contains("wrong-pw-9"), "{}", out.stderr);
        // Nor does a command reading keys say Redis did not answer.
        let out = env.cmd().args(["keys", "list", "--redis", &url]).run();
        out.assert_code(0);
        assert!(
            out.stderr.contains("refuses its user or password")
                && !out.stderr.contains("did not answer"),
            "{url}: {}",
            out.stderr
        );
    }
}

#[test]
fn a_machine_keeps_to_its_rate_when_redis_goes_away_mid_run() {
    // 600 a minute: one request every 100 ms, whether Redis spaces them or
    // this machine alone does; never both at once, which doubles the rate.
    let env = Env::three();
    let redis = RedisServer::start();
    let file = env.write("in.jsonl", &prompts(40));
    let child = env.spawn(
        &[
            "--models",
            "t/a",
            "-j",
            "8",
            "--no-cache",
            "--redis",
            &redis.url(),
            "--shared-limits",
            "--rpm",
            "600",
        ],
        &file,
    );
    std::thread::sleep(std::time::Duration::from_millis(1_200));
    drop(redis);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.code().is_some(), "{out:?}");
    let at: Vec<std::time::Instant> = env.server.completions().iter().map(|r| r.at).collect();
    assert!(at.len() >= 20, "{} sent", at.len());
    for (i, first) in at.iter().enumerate() {
        let within = at[i..]
            .iter()
            .take_while(|t| t.duration_since(*first) < std::time::Duration::from_secs(1))
            .count();
        // GCRA lets one more through at a window's edge.
        let ms: Vec<u128> = at
            .iter()
            .map(|t| t.duration_since(at[0]).as_millis())
            .collect();
        assert!(
            within <= 11,
            "{within} requests within 1 s of request {i}: {ms:?}"
        );
    }
}
