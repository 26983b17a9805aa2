//! Quality learned from outcomes: tasks, request ids, feedback through the
//! command, and a synthetic world where the router learns, per task, which
//! model is worth its price.

use std::time::Duration;

use serde_json::{json, Value};

use crate::util::*;

/// A cheap model and a strong one 40 times as dear, with the
/// catalogue in the store (a dry run reads it there).
pub fn two() -> Env {
    let env = Env::new(vec![
        ModelSpec::new("t/cheap")
            .prices("0.000001", "0.000001")
            .intelligence(40.0),
        ModelSpec::new("t/strong")
            .prices("0.00004", "0.00004")
            .intelligence(45.0),
    ]);
    // One answer from each: the catalogue and both latencies are known.
    env.cmd()
        .arg("--no-cache")
        .stdin(
            "{\"prompt\":\"warm\",\"model\":\"t/cheap\"}\n{\"prompt\":\"warm\",\"model\":\"t/strong\"}\n",
        )
        .run()
        .assert_code(0);
    env
}

/// The quality preset's weights without its latency weight: the two
/// models are one fake server, whose latencies differ by noise alone.
const WEIGHTS: &str = "latency=0,cost=0.2,quality=0.7";

/// Whether `model`'s answer to line `n` of `task` is good: task `easy`,
/// both models 90% of the time; task `hard`, the cheap one 20% and the
/// strong one 95%. Deterministic in `n`.
fn good(task: &str, model: &str, n: u64) -> bool {
    let accuracy = match (task, model) {
        ("easy", _) => 90,
        ("hard", "t/cheap") => 20,
        _ => 95,
    };
    (n.wrapping_mul(2_654_435_761) >> 3) % 100 < accuracy
}

fn lines_for(round: u64, per_task: u64) -> String {
    let mut s = String::new();
    for i in 0..per_task {
        for task in ["easy", "hard"] {
            s.push_str(&format!(
                "{{\"prompt\":\"{task} {round} {i}\",\"llmroute\":{{\"task\":\"{task}\"}}}}\n"
            ));
        }
    }
    s
}

/// The model a dry run picks for a line of `task`, and its candidates.
fn choice(env: &Env, task: &str) -> (String, Vec<Value>) {
    let out = env
        .cmd()
        .args([
            "--models",
            "t/cheap,t/strong",
            "--weights",
            WEIGHTS,
            "--dry-run",
        ])
        .stdin(format!(
            "{{\"prompt\":\"which\",\"llmroute\":{{\"task\":\"{task}\"}}}}\n"
        ))
        .run();
    out.assert_code(0);
    let l = &out.lines()[0];
    (
        l["model"].as_str().unwrap().to_string(),
        l["candidates"].as_array().unwrap().clone(),
    )
}

#[test]
fn each_task_ends_on_the_model_worth_its_price() {
    let env = two();
    // The prior says the strong model is a step better: it takes both.
    let (first, c) = choice(&env, "easy");
    assert_eq!(first, "t/strong", "{c:?}");
    assert_eq!(choice(&env, "hard").0, "t/strong");
    let mut events = 0;
    let mut learned = false;
    for round in 0..20 {
        let out = env
            .cmd()
            .args(["--models", "t/cheap,t/strong", "--weights", WEIGHTS])
            // One line at a time: which lines explore is then the same on
            // every run, however loaded the machine.
            .args(["--explore", "0.4", "--no-cache", "-j", "1"])
            .stdin(lines_for(round, 20))
            .run();
        out.assert_code(0);
        let mut feedback = String::new();
        for l in out.lines() {
            // Lines alternate: easy, hard, easy, ...
            let task = match l["line"].as_u64().unwrap() % 2 {
                1 => "easy",
                _ => "hard",
            };
            let n = round * 1000 + l["line"].as_u64().unwrap();
            let ok = good(task, l["model"].as_str().unwrap(), n);
            feedback.push_str(&format!(
                "{}\n",
                json!({"request_id": l["request_id"], "score": ok})
            ));
            events += 1;
        }
        env.cmd()
            .args(["feedback", "--quiet"])
            .stdin(feedback)
            .run()
            .assert_code(0);
        let (easy, _) = choice(&env, "easy");
        let (hard, _) = choice(&env, "hard");
        if easy == "t/cheap" && hard == "t/strong" {
            learned = true;
            break;
        }
    }
    assert!(learned, "not learned after {events} feedback events");
    assert!(events <= 800, "{events}");
    // What was learned is in the store: a new process sees it, and says
    // where each quality came from.
    let (_, candidates) = choice(&env, "hard");
    let strong = candidates
        .iter()
        .find(|c| c["model"] == "t/strong")
        .unwrap();
    assert_eq!(strong["quality_source"], "learned");
    assert!(strong["quality_events"].as_u64().unwrap() > 0);
    // A task never judged starts from what each model showed on the
    // others: the strong model, right more often, ahead.
    let (_, candidates) = choice(&env, "unseen");
    assert!(
        candidates.iter().all(|c| c["quality_source"] == "pooled"),
        "{candidates:?}"
    );
    let quality = |m: &str| {
        candidates.iter().find(|c| c["model"] == m).unwrap()["quality"]
            .as_f64()
            .unwrap()
    };
    assert!(quality("t/strong") > quality("t/cheap"), "{candidates:?}");
}

#[test]
fn every_answer_has_a_request_id_unique_across_runs() {
    let env = two();
    let run = || {
        let out = env
            .cmd()
            .args(["--models", "t/cheap", "--no-cache"])
            .stdin(prompts(3))
            .run();
        out.assert_code(0);
        out.lines()
            .iter()
            .map(|l| l["request_id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let mut ids = run();
    ids.extend(run());
    let distinct: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(distinct.len(), 6, "{ids:?}");
    assert_eq!(
        env.count("SELECT count(DISTINCT rid) FROM requests WHERE rid IS NOT NULL"),
        8,
        "these and the two that warmed the store"
    );
}

/// A line that is no valid request gets no id to give feedback by,
/// whether it fails to parse or names a priority no preset has.
#[test]
fn an_invalid_line_has_no_request_id() {
    let env = two();
    let input = [
        r#"{"messages":"not a list"}"#,
        r#"{"messages":[{"role":"user","content":"hi"}],"llmroute":{"priority":"bogus"}}"#,
        r#"{"messages":[{"role":"user","content":"hi"}]}"#,
    ]
    .join("\n");
    let out = env
        .cmd()
        .args(["--models", "t/cheap", "--no-cache"])
        .stdin(input)
        .run();
    let lines = out.lines();
    assert_eq!(lines.len(), 3, "{}", out.stdout);
    for l in &lines[..2] {
        assert_eq!(l["error"]["type"], "invalid_input", "{l}");
        assert!(l.get("request_id").is_none(), "{l}");
    }
    assert!(lines[2]["request_id"].is_string(), "{}", lines[2]);
}

/// Two prompts answered by the cheap model on task `sql`: requests to
/// give feedback on.
fn two_answered_on_sql(env: &Env) -> Output {
    let out = env
        .cmd()
        .args(["--models", "t/cheap", "--task", "sql"])
        .stdin(prompts(2))
        .run();
    out.assert_code(0);
    out
}

#[test]
fn bad_feedback_gets_an_error_line_each_and_the_rest_is_taken_in() {
    let env = two();
    let out = two_answered_on_sql(&env);
    let ids: Vec<String> = out
        .lines()
        .iter()
        .map(|l| l["request_id"].as_str().unwrap().to_string())
        .collect();
    // A byte order mark first, as some editors write; CRLF endings; and a
    // line that is not UTF-8, which is its own error alone.
    let mut input = b"\xef\xbb\xbf".to_vec();
    input.extend(
        format!(
            "{}\r\n{}\nnot json\n{}\n",
            json!({"request_id": ids[0], "score": 0.25}),
            json!({"request_id": "req_nobody_1", "score": 1}),
            json!({"request_id": ids[1], "score": 1.5}),
        )
        .as_bytes(),
    );
    input.extend(b"\xff\xfe\n");
    input.extend(
        format!(
            "{}\n{}\n",
            json!({"request_id": ids[1], "score": true, "weight": 2}),
            json!({"request_id": ids[0], "score": false}),
        )
        .as_bytes(),
    );
    let out = env.cmd().arg("feedback").stdin(input).run();
    assert_eq!(out.code, 1, "{}", out.stderr);
    let lines = out.lines();
    assert_eq!(lines.len(), 7, "one line per input line: {}", out.stdout);
    let errors: Vec<u64> = lines
        .iter()
        .filter(|l| l["error"].is_object())
        .map(|l| l["line"].as_u64().unwrap())
        .collect();
    assert_eq!(errors, [2, 3, 4, 5]);
    assert_eq!(lines[0]["task"], "sql");
    assert_eq!(
        lines[3]["request_id"], ids[1],
        "an error line names the request it was about"
    );
    assert_eq!(
        lines[6]["replaced"], true,
        "a repeated id replaces its score"
    );
    // Two requests judged, the first twice: two events, one good (weight 2)
    // and one bad.
    assert_eq!(env.count("SELECT count(*) FROM feedback"), 2);
    let (good, bad): (f64, f64) = env
        .sql()
        .query_row(
            "SELECT good, bad FROM quality WHERE task = 'sql' AND model = 't/cheap'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(
        (good - 2.0).abs() < 1e-6 && (bad - 1.0).abs() < 1e-6,
        "{good} {bad}"
    );
}

#[test]
fn a_batch_s_output_or_a_misspelt_field_is_not_taken_as_feedback() {
    let env = two();
    let out = two_answered_on_sql(&env);
    // The output lines themselves carry a request id and a `score` (the
    // routing score): given to `feedback` by mistake, none is taken in.
    let given = env.cmd().arg("feedback").stdin(out.stdout.clone()).run();
    assert_eq!(given.code, 1, "{}", given.stdout);
    let lines = given.lines();
    assert_eq!(lines.len(), 2, "{}", given.stdout);
    for l in &lines {
        let message = l["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("unknown field"), "{l}");
    }
    // A misspelt weight is an error, not a weight of 1.
    let id = out.lines()[0]["request_id"].as_str().unwrap().to_string();
    let given = env
        .cmd()
        .arg("feedback")
        .stdin(format!(
            "{}\n",
            json!({"request_id": id, "score": 1, "wieght": 5})
        ))
        .run();
    assert_eq!(given.code, 1, "{}", given.stdout);
    let message = given.lines()[0]["error"]["message"].clone();
    assert!(
        message.as_str().unwrap().contains("\"wieght\""),
        "{message}"
    );
    assert_eq!(env.count("SELECT count(*) FROM feedback"), 0);
}

#[test]
fn a_directory_as_input_is_a_clear_error() {
    let env = two();
    let dir = env.path("");
    let out = env.cmd().arg("feedback").arg(&dir).run();
    out.assert_code(2);
    assert!(
        out.stderr
            .contains(&format!("cannot read {}: it is a directory", dir.display())),
        "{}",
        out.stderr
    );
}

/// Two feedback commands started together on one store both take their
/// input in: one waits for the other's write.
#[test]
fn feedback_commands_at_once_share_the_store() {
    let env = two();
    choice(&env, "tickets");
    let mut outcomes = String::new();
    for i in 0..200 {
        let score = i % 3 == 0;
        outcomes.push_str(&format!(
            "{}\n",
            json!({"task": format!("t{}", i % 7), "model": "t/cheap", "score": score})
        ));
    }
    let file = env.write("outcomes.jsonl", &outcomes);
    for _ in 0..4 {
        let both: Vec<_> = (0..2)
            .map(|_| {
                let mut c = env
                    .cmd()
                    .args(["feedback", "-q", "--outcomes"])
                    .arg(&file)
                    .cmd;
                c.stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in both {
            let out = child.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{:?}: {stderr}", out.status);
        }
    }
}

#[test]
fn outcomes_for_a_store_without_a_catalogue_are_checked_against_the_candidates() {
    // Warming a store no run has used: no catalogue in it, but the
    // candidates configured (and the built-in catalogue) to check against.
    let env = two();
    let outcomes = [
        json!({"task": "t", "model": "t/cheap", "score": 1}),
        json!({"task": "t", "model": "t/chaep", "score": 1}),
        json!({"task": "t", "model": "openai/gpt-5.4", "score": 1}),
    ]
    .map(|o| format!("{o}\n"))
    .concat();
    let out = env
        .cmd()
        .env("LLMROUTE_DB", env.path("fresh.db"))
        .env(
            "LLMROUTE_CONFIG",
            env.write("c.toml", "models = [\"t/cheap\", \"t/strong\"]\n"),
        )
        .args(["feedback", "--outcomes", "-"])
        .stdin(outcomes)
        .run();
    out.assert_code(0);
    assert!(
        out.stderr.contains("t/chaep is in no catalogue"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("t/cheap is"), "{}", out.stderr);
    assert!(!out.stderr.contains("gpt-5.4 is"), "{}", out.stderr);
}

#[test]
fn outcomes_of_an_evaluation_warm_the_router() {
    let env = two();
    let (before, _) = choice(&env, "tickets");
    let mut outcomes = String::new();
    for i in 0..30 {
        outcomes.push_str(&format!(
            "{}\n{}\n",
            json!({"task": "tickets", "model": "t/cheap", "score": 1}),
            json!({"task": "tickets", "model": "t/strong", "score": i % 10 != 0}),
        ));
    }
    outcomes.push_str("{\"task\":\"bad task\",\"model\":\"m\",\"score\":1}\n");
    // A model no catalogue lists is taken, with a warning, once.
    let misspelt = json!({"task": "other-task", "model": "t/chaep", "score": 1});
    outcomes.push_str(&format!("{misspelt}\n{misspelt}\n"));
    // An empty LLMROUTE_REDIS_URL, as a script may export, names no Redis.
    let out = env
        .cmd()
        .env("LLMROUTE_REDIS_URL", "")
        .args(["feedback", "--outcomes", "-", "--quiet"])
        .stdin(outcomes)
        .run();
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(out.lines().len(), 1, "only the error: {}", out.stdout);
    assert!(
        !out.stderr.contains("took in"),
        "no summary: {}",
        out.stderr
    );
    assert_eq!(
        out.stderr.matches("t/chaep is in no catalogue").count(),
        1,
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("t/cheap is"), "{}", out.stderr);
    assert_eq!(before, "t/strong");
    let (after, candidates) = choice(&env, "tickets");
    assert_eq!(after, "t/cheap", "{candidates:?}");
    // `llmroute models --task` shows quality with its source.
    let out = env
        .cmd()
        .args([
            "models",
            "--models",
            "t/cheap,t/strong",
            "--task",
            "tickets",
            "--json",
        ])
        .run();
    out.assert_code(0);
    let rows: Value = serde_json::from_str(&out.stdout).unwrap();
    let cheap = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["model"] == "t/cheap")
        .unwrap();
    assert_eq!(cheap["quality_source"], "learned");
    assert_eq!(cheap["quality_events"], 30);
    let out = env
        .cmd()
        .args([
            "models",
            "--models",
            "t/cheap,t/strong",
            "--task",
            "tickets",
        ])
        .run();
    assert!(out.stdout.contains("(30 fb)"), "{}", out.stdout);
    let out = env
        .cmd()
        .args(["models", "--models", "t/cheap,t/strong", "--json"])
        .run();
    // On the default task, never judged, each model starts from what it
    // showed on `tickets`: the cheap model, right every time, above its
    // static prior (0.6, from its index 40).
    let rows: Value = serde_json::from_str(&out.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert!(
        rows.iter().all(|r| r["quality_source"] == "pooled"),
        "{rows:?}"
    );
    let cheap = rows.iter().find(|r| r["model"] == "t/cheap").unwrap();
    assert!(cheap["quality"].as_f64().unwrap() > 0.8, "{cheap}");
    let out = env
        .cmd()
        .args(["models", "--models", "t/cheap,t/strong"])
        .run();
    assert!(out.stdout.contains("(pooled)"), "{}", out.stdout);
}

/// A model poor on the other tasks starts a task low, but its own record
/// there, right every time, overturns that start within tens of answers:
/// the start weighs less once the task's feedback stands far from it.
#[test]
fn a_model_right_every_time_on_a_task_wins_it_though_poor_elsewhere() {
    let env = two();
    let mut outcomes = String::new();
    let mut add = |task: &str, model: &str, score: u8, n: usize| {
        for _ in 0..n {
            outcomes.push_str(&format!(
                "{}\n",
                json!({"task": task, "model": model, "score": score})
            ));
        }
    };
    add("sql", "t/cheap", 0, 40);
    add("sql", "t/strong", 1, 40);
    add("tickets", "t/strong", 1, 20);
    add("tickets", "t/cheap", 1, 15);
    let out = env
        .cmd()
        .args(["feedback", "--outcomes", "-", "-q"])
        .stdin(outcomes)
        .run();
    out.assert_code(0);
    let (tickets, candidates) = choice(&env, "tickets");
    assert_eq!(tickets, "t/cheap", "{candidates:?}");
    let cheap = candidates.iter().find(|c| c["model"] == "t/cheap").unwrap();
    assert!(cheap["quality"].as_f64().unwrap() > 0.95, "{cheap}");
    // The cheap model's lead here reads as an easy task, which lifts where
    // the strong one starts, but not to 1, where its own perfect record
    // would sit on it whatever it was.
    let strong = candidates
        .iter()
        .find(|c| c["model"] == "t/strong")
        .unwrap();
    let q = strong["quality"].as_f64().unwrap();
    assert!(q > 0.95 && q < 1.0, "{strong}");
    let (sql, candidates) = choice(&env, "sql");
    assert_eq!(sql, "t/strong", "{candidates:?}");
}

/// Posts `body` to `path` with `token`; the status and the JSON answer.
pub fn post(s: &Served, token: &str, path: &str, body: &Value) -> (u16, Value, Option<String>) {
    crate::serve::rt().block_on(async {
        let r = reqwest::Client::new()
            .post(s.url(path))
            .bearer_auth(token)
            .header("x-llmroute-task", "support")
            .json(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let id = r
            .headers()
            .get("x-request-id")
            .map(|v| v.to_str().unwrap().to_string());
        (status, r.json().await.unwrap_or(Value::Null), id)
    })
}

#[test]
fn a_key_gives_feedback_on_its_own_requests_only() {
    let env = two();
    let token = |name: &str| {
        let out = env.cmd().args(["keys", "create", name]).run();
        out.assert_code(0);
        out.stdout.lines().next().unwrap().to_string()
    };
    let (a, b) = (token("a"), token("b"));
    let s = env.serve(&["--models", "t/cheap,t/strong", "-p", "quality"]);
    let (status, _, id) = post(&s, &a, "/v1/chat/completions", &chat(None, "help me"));
    assert_eq!(status, 200);
    let id = id.unwrap();
    let fb = |score: Value| json!({"request_id": id, "score": score});
    // Another key's request is unknown to b.
    let (status, v, _) = post(&s, &b, "/v1/feedback", &fb(json!(1)));
    assert_eq!(status, 404, "{v}");
    assert_eq!(v["error"]["code"], "invalid_feedback");
    let (status, v, _) = post(&s, &a, "/v1/feedback", &fb(json!(7)));
    assert_eq!(status, 400, "{v}");
    // A misspelt weight is refused, not taken at weight 1.
    let misspelt = json!({"request_id": id, "score": 1, "wieght": 3});
    let (status, v, _) = post(&s, &a, "/v1/feedback", &misspelt);
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("wieght"),
        "{v}"
    );
    let (status, v, _) = post(&s, &a, "/v1/feedback", &fb(json!(false)));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["task"], "support", "the task the header gave");
    assert_eq!(v["quality_events"], 1, "{v}");
    // An array: each item on its own.
    let many = json!([fb(json!(0.5)), {"request_id": "nope", "score": 1}, {"score": 1}]);
    let (status, v, _) = post(&s, &a, "/v1/feedback", &many);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["taken"], 1);
    assert_eq!(v["results"][0]["replaced"], true);
    assert!(v["results"][1]["error"].is_object() && v["results"][2]["error"].is_object());
    drop(s);
    assert_eq!(
        env.count("SELECT count(*) FROM feedback WHERE key_name = 'a' AND task = 'support'"),
        1
    );
}

/// Posts a chat request with `token` under the client's own `x-request-id`.
/// A key made with `--feedback off` uses the server but teaches no one:
/// its feedback is refused, however it is sent.
#[test]
fn a_key_without_feedback_teaches_nothing() {
    let env = two();
    let out = env
        .cmd()
        .args(["keys", "create", "app", "--feedback", "off"])
        .run();
    out.assert_code(0);
    let token = out.stdout.lines().next().unwrap().to_string();
    let shown = env.cmd().args(["keys", "show", "app", "--json"]).run();
    shown.assert_code(0);
    assert!(
        shown.stdout.contains("\"feedback\":\"off\""),
        "{}",
        shown.stdout
    );
    let s = env.serve(&["--models", "t/cheap,t/strong"]);
    let (status, _, id) = post(&s, &token, "/v1/chat/completions", &chat(None, "hi"));
    assert_eq!(status, 200);
    let seen = crate::serve::rt().block_on(async {
        let r = reqwest::Client::new()
            .get(s.url("/v1/key"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        r.json::<Value>().await.unwrap()
    });
    assert_eq!(seen["feedback"], "off", "{seen}");
    let fb = json!({"request_id": id.unwrap(), "score": 0, "weight": 100});
    for body in [fb.clone(), json!([fb])] {
        let (status, v, _) = post(&s, &token, "/v1/feedback", &body);
        assert_eq!(status, 403, "{v}");
        assert_eq!(v["error"]["code"], "feedback_not_allowed", "{v}");
    }
    drop(s);
    assert_eq!(env.count("SELECT count(*) FROM feedback"), 0);
    assert_eq!(env.count("SELECT count(*) FROM quality"), 0);
}

fn chat_as(s: &Served, token: &str, id: &str, model: &str) -> u16 {
    crate::serve::rt().block_on(async {
        let mut body = chat(None, "help me");
        body["model"] = json!(model);
        reqwest::Client::new()
            .post(s.url("/v1/chat/completions"))
            .bearer_auth(token)
            .header("x-request-id", id)
            .header("x-llmroute-task", "support")
            .json(&body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    })
}

#[test]
fn a_key_reusing_another_s_request_id_neither_replaces_nor_learns_of_its_feedback() {
    let env = two();
    let token = |name: &str| {
        let out = env.cmd().args(["keys", "create", name]).run();
        out.assert_code(0);
        out.stdout.lines().next().unwrap().to_string()
    };
    let (alice, bob) = (token("alice"), token("bob"));
    let s = env.serve(&["--models", "t/cheap,t/strong"]);
    assert_eq!(chat_as(&s, &alice, "shared-1", "t/cheap"), 200);
    let fb = |score: Value| json!({"request_id": "shared-1", "score": score});
    let (status, v, _) = post(&s, &alice, "/v1/feedback", &fb(json!(1)));
    assert_eq!((status, &v["replaced"]), (200, &json!(false)), "{v}");
    // Bob takes the same id for a request of his own, and judges it.
    assert_eq!(chat_as(&s, &bob, "shared-1", "t/strong"), 200);
    let (status, v, _) = post(&s, &bob, "/v1/feedback", &fb(json!(0)));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["model"], "t/strong");
    assert_eq!(v["replaced"], false, "nothing of Alice's shows: {v}");
    // Alice still judges her own answer, and replaces her own score.
    let (status, v, _) = post(&s, &alice, "/v1/feedback", &fb(json!(0.5)));
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (&v["model"], &v["replaced"]),
        (&json!("t/cheap"), &json!(true))
    );
    drop(s);
    assert_eq!(env.count("SELECT count(*) FROM feedback"), 2);
    assert_eq!(
        env.count("SELECT events FROM quality WHERE task = 'support' AND model = 't/cheap'"),
        1
    );
    assert_eq!(
        env.count("SELECT events FROM quality WHERE task = 'support' AND model = 't/strong'"),
        1
    );
}

#[test]
fn feedback_teaches_the_upstream_that_answered_whatever_the_command_s_base_url() {
    let env = two();
    let out = env
        .cmd()
        .args(["-q", "--models", "t/cheap", "--task", "bt"])
        .stdin("{\"prompt\": \"x\"}\n")
        .run();
    out.assert_code(0);
    let rid = serde_json::from_str::<Value>(out.stdout.lines().next().unwrap()).unwrap()
        ["request_id"]
        .as_str()
        .unwrap()
        .to_string();
    let answered: String = env.value("SELECT upstream FROM requests LIMIT 1");
    // The judge's own --base-url names another API.
    let fb = env
        .cmd()
        .args(["feedback", "--base-url", "http://127.0.0.1:9/v1"])
        .stdin(format!("{}\n", json!({"request_id": rid, "score": 0})))
        .run();
    fb.assert_code(0);
    assert_eq!(
        env.value::<String>("SELECT upstream FROM quality WHERE task = 'bt'"),
        answered
    );
    // And routing on that API sees it.
    let e = env
        .cmd()
        .args(["-n", "--models", "t/cheap", "--task", "bt"])
        .stdin("{\"prompt\": \"x\"}\n")
        .run();
    let c = &e.lines()[0]["candidates"][0];
    assert_eq!(c["quality_source"], "learned", "{c}");
}

#[test]
fn what_one_machine_learns_another_uses_through_redis() {
    let redis = RedisServer::start();
    let env = two();
    // The other machine: its own store, the same API and Redis.
    let other = env.path("other.db");
    let on_other = || env.cmd().env("LLMROUTE_DB", &other);
    on_other()
        .arg("--no-cache")
        .stdin("{\"prompt\":\"warm\",\"model\":\"t/cheap\"}\n{\"prompt\":\"warm\",\"model\":\"t/strong\"}\n")
        .run()
        .assert_code(0);
    let mut outcomes = String::new();
    for _ in 0..30 {
        outcomes.push_str(&format!(
            "{}\n{}\n",
            json!({"task": "tickets", "model": "t/cheap", "score": 1}),
            json!({"task": "tickets", "model": "t/strong", "score": 1}),
        ));
    }
    env.cmd()
        .args([
            "feedback",
            "--quiet",
            "--outcomes",
            "-",
            "--redis",
            &redis.url(),
        ])
        .stdin(outcomes)
        .run()
        .assert_code(0);
    let route = |redis_url: Option<&str>| {
        let mut c = on_other()
            .args([
                "--models",
                "t/cheap,t/strong",
                "-p",
                "quality",
                "--task",
                "tickets",
            ])
            .args(["--explain", "--no-cache"]);
        if let Some(u) = redis_url {
            c = c.args(["--redis", u]);
        }
        let out = c.stdin(prompts(1)).run();
        out.assert_code(0);
        out.lines()[0].clone()
    };
    // Without Redis, the other store knows nothing of it.
    assert_eq!(route(None)["model"], "t/strong");
    // With it, tickets go to the cheap model on what the first learned.
    let l = route(Some(&redis.url()));
    assert_eq!(l["model"], "t/cheap", "{l}");
    let cheap = l["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["model"] == "t/cheap")
        .unwrap()
        .clone();
    assert_eq!(cheap["quality_source"], "learned");
    assert_eq!(cheap["quality_events"], 30);
    // A dry run and `models --task` show what routing uses.
    let dry = on_other()
        .args(["-n", "--models", "t/cheap,t/strong", "-p", "quality"])
        .args(["--task", "tickets", "--redis", &redis.url()])
        .stdin(prompts(1))
        .run();
    dry.assert_code(0);
    assert_eq!(dry.lines()[0]["model"], "t/cheap", "{}", dry.stdout);
    let models = on_other()
        .args(["models", "--json", "--models", "t/cheap,t/strong"])
        .args(["--task", "tickets", "--redis", &redis.url()])
        .run();
    models.assert_code(0);
    let v: Value = serde_json::from_str(&models.stdout).unwrap();
    let rows = v.as_array().or_else(|| v["models"].as_array()).unwrap();
    let cheap = rows.iter().find(|r| r["model"] == "t/cheap").unwrap();
    assert_eq!(cheap["quality_source"], "learned", "{cheap}");
}

#[test]
fn a_graded_run_teaches_the_router_as_it_goes() {
    let env = two();
    // The grader likes the cheap model's answers and not the strong one's.
    let grader = r#"grep -q '"model":"t/cheap"' && echo 1 || echo false"#;
    let out = env
        .cmd()
        .args([
            "--models",
            "t/cheap,t/strong",
            "-p",
            "quality",
            "--task",
            "faq",
        ])
        .args(["--explore", "0.25", "--no-cache", "--grade", grader])
        .stdin(prompts(40))
        .run();
    out.assert_code(0);
    let lines = out.lines();
    for l in &lines {
        let want = if l["model"] == "t/cheap" { 1.0 } else { 0.0 };
        assert_eq!(l["grade"].as_f64(), Some(want), "{l}");
    }
    // Every grade is in the store, on its request.
    assert_eq!(
        env.count("SELECT count(*) FROM feedback WHERE task = 'faq'"),
        40
    );
    // The run learned as it went: its last lines went to the cheap model,
    // but for the one in four that explores. (A strong answer a little
    // faster than its average does not win it more: it could not win
    // however fast.)
    let cheap = lines[28..]
        .iter()
        .filter(|l| l["model"] == "t/cheap")
        .count();
    let seq: Vec<&str> = lines.iter().filter_map(|l| l["model"].as_str()).collect();
    assert!(cheap >= 8, "{cheap} of the last 12: {seq:?}");
    assert_eq!(choice(&env, "faq").0, "t/cheap");
    // The report by task shows the grades and what was learned.
    let out = env
        .cmd()
        .args(["report", "--by", "task", "--since", "all"])
        .run();
    out.assert_code(0);
    assert!(
        out.stdout.contains("faq") && out.stdout.contains("good of"),
        "{}",
        out.stdout
    );
    let out = env.cmd().args(["report", "--json", "--since", "all"]).run();
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    let row = v["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["task"] == "faq" && t["model"] == "t/cheap")
        .unwrap()
        .clone();
    assert_eq!(row["mean_score"], 1.0, "{row}");
    assert!(row["feedback"].as_i64().unwrap() > 0);
    // Prometheus and HTML have the tasks too, whatever --by says.
    for format in ["prometheus", "html"] {
        let out = env
            .cmd()
            .args([
                "report", "--by", "task", "--since", "all", "--format", format,
            ])
            .run();
        out.assert_code(0);
        let want = match format {
            "prometheus" => "llmroute_task_mean_score{task=\"faq\",model=\"t/cheap\"} 1",
            _ => "<td class=\"name\">faq</td><td class=\"name\">t/cheap</td>",
        };
        assert!(out.stdout.contains(want), "{format}: {}", out.stdout);
        // What was learned is the share of good outcomes, said as the text
        // table says it: not the quality routing uses, which starts from
        // the prior.
        if format == "html" {
            assert!(out.stdout.contains("100% good of"), "{}", out.stdout);
        }
    }
    // A grader that fails says so, and the line still goes out.
    let out = env
        .cmd()
        .args(["--models", "t/cheap", "--no-cache", "--grade", "exit 3"])
        .stdin(prompts(1))
        .run();
    out.assert_code(0);
    assert!(out.lines()[0].get("grade").is_none());
    assert!(out.stderr.contains("grader exited"), "{}", out.stderr);
}

#[test]
fn a_graded_run_with_redis_teaches_every_machine() {
    let redis = RedisServer::start();
    let env = two();
    let grader = r#"grep -q '"model":"t/cheap"' && echo 1 || echo false"#;
    let out = env
        .cmd()
        .args(["--models", "t/cheap,t/strong", "-p", "quality"])
        .args(["--task", "faq", "--redis", &redis.url(), "-j", "1"])
        .args(["--explore", "0.25", "--no-cache", "--grade", grader])
        .stdin(prompts(40))
        .run();
    out.assert_code(0);
    let lines = out.lines();
    let graded = |model: &str| lines.iter().filter(|l| l["model"] == model).count();
    let cheap = lines[28..]
        .iter()
        .filter(|l| l["model"] == "t/cheap")
        .count();
    assert!(cheap >= 8, "{cheap} of the last 12 went to the cheap model");
    // Another machine, with a store of its own, routes on every grade.
    let other = env.path("other.db");
    let dry = env
        .cmd()
        .env("LLMROUTE_DB", &other)
        .args(["-n", "--models", "t/cheap,t/strong", "-p", "quality"])
        .args(["--task", "faq", "--redis", &redis.url()])
        .stdin(prompts(1))
        .run();
    dry.assert_code(0);
    let l = &dry.lines()[0];
    assert_eq!(l["model"], "t/cheap", "{l}");
    for c in l["candidates"].as_array().unwrap() {
        let model = c["model"].as_str().unwrap();
        assert_eq!(c["quality_events"], graded(model) as u64, "{c}");
    }
}

#[test]
fn a_grader_is_held_to_its_time_and_to_the_run_s_concurrency() {
    let env = two();
    // A grader that never reads a large request and sleeps: cut off at
    // --grade-timeout, with whatever it started, and the line goes out.
    let big = format!("{}\n", json!({"prompt": "x".repeat(300_000)}));
    let started = std::time::Instant::now();
    let out = env
        .cmd()
        .args(["--models", "t/cheap", "--no-cache"])
        .args(["--grade", "sleep 30; echo 1", "--grade-timeout", "1s"])
        .stdin(big)
        .run();
    out.assert_code(0);
    assert!(out.lines()[0].get("grade").is_none());
    assert!(out.stderr.contains("took more than 1s"), "{}", out.stderr);
    assert!(started.elapsed() < Duration::from_secs(20), "cut off");
    // A grader that prints much after its score is read while it runs.
    let out = env
        .cmd()
        .args(["--models", "t/cheap", "--no-cache"])
        .args([
            "--grade",
            "cat >/dev/null; echo 1; head -c 200000 /dev/zero | tr '\\0' x",
        ])
        .args(["--grade-timeout", "20s"])
        .stdin(prompts(1))
        .run();
    out.assert_code(0);
    assert_eq!(out.lines()[0]["grade"], 1.0, "{}", out.stderr);
    // With -j 1, graders run one at a time: each counts itself in a
    // shared file while it runs.
    let count = env.path("running");
    let grader = format!(
        "cat >/dev/null; echo . >> {0}; n=$(wc -l < {0}); sleep 0.2; echo $n >> {0}.max; sed -i '$d' {0}; echo 1",
        count.display()
    );
    let out = env
        .cmd()
        .args(["--models", "t/cheap", "--no-cache", "-j", "1"])
        .args(["--grade", &grader])
        .stdin(prompts(5))
        .run();
    out.assert_code(0);
    let most = std::fs::read_to_string(format!("{}.max", count.display())).unwrap();
    assert!(most.lines().all(|n| n.trim() == "1"), "{most}");
    assert_eq!(most.lines().count(), 5);
    // A timeout no grader could keep, or no command, is a usage error.
    for (flags, said) in [
        (
            ["--grade", "echo 1", "--grade-timeout", "0s"],
            "at least 100ms",
        ),
        (
            ["--grade", "  ", "--grade-timeout", "1s"],
            "the command is empty",
        ),
    ] {
        let out = env
            .cmd()
            .args(["--models", "t/cheap"])
            .args(flags)
            .stdin(prompts(1))
            .run();
        assert_eq!(out.code, 2, "{flags:?}: {}", out.stderr);
        assert!(out.stderr.contains(said), "{}", out.stderr);
    }
}

/// A grader that leaves a process behind, holding its output open: its
/// score is taken once it exits, and what it left is killed.
#[test]
fn a_grader_s_score_is_taken_when_it_exits_and_what_it_left_is_killed() {
    let env = two();
    // The request a grader is shown is the body sent, with its model.
    let shown = "python3 -c 'import json,sys; d=json.load(sys.stdin); \
                 print(1 if d[\"request\"][\"model\"] == d[\"model\"] else 0)'";
    let out = env
        .cmd()
        .args(["--models", "t/cheap", "--no-cache", "--grade", shown])
        .stdin(prompts(1))
        .run();
    out.assert_code(0);
    assert_eq!(out.lines()[0]["grade"], 1.0, "{}", out.stderr);
    // One that left its group (setsid) cannot be killed with it, but its
    // grader's score is taken all the same.
    let out = env
        .cmd()
        .args(["--models", "t/cheap", "--no-cache", "-j", "2"])
        .args([
            "--grade",
            "setsid sleep 20 2>/dev/null & echo 0.25",
            "--grade-timeout",
            "4s",
        ])
        .stdin(prompts(2))
        .run();
    out.assert_code(0);
    for l in out.lines() {
        assert_eq!(l["grade"], 0.25, "{l} {}", out.stderr);
    }
    let pids = env.path("left-behind");
    let grader = format!("sleep 30 & echo $! >> {}; echo 0.5", pids.display());
    let out = env
        .cmd()
        .args(["--models", "t/cheap", "--no-cache", "-j", "2"])
        .args(["--grade", &grader, "--grade-timeout", "10s"])
        .stdin(prompts(2))
        .run();
    out.assert_code(0);
    for l in out.lines() {
        assert_eq!(l["grade"], 0.5, "{l} {}", out.stderr);
    }
    let pids = std::fs::read_to_string(&pids).unwrap();
    assert_eq!(pids.lines().count(), 2, "{pids}");
    for pid in pids.lines() {
        // Killed, it is gone once its new parent has reaped it.
        let gone = (0..100).any(|_| {
            let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| !s.contains(") Z "));
            if alive {
                std::thread::sleep(Duration::from_millis(50));
            }
            !alive
        });
        assert!(gone, "the grader's sleep {pid} still runs");
    }
}

#[test]
fn an_interrupted_graded_run_kills_its_graders_and_keeps_its_answers() {
    let env = two();
    let input = env.write("in.jsonl", &prompts(4));
    // A grader slower than the grace period, marked to be found after.
    let marker = format!("grader-{}", std::process::id());
    let grader = format!("cat >/dev/null; sleep 47; echo 1 # {marker}");
    let child = env.spawn(
        &[
            "--models",
            "t/cheap",
            "--no-cache",
            "-j",
            "2",
            "--grade",
            &grader,
        ],
        &input,
    );
    // Until both graders run.
    let running = || {
        let out = std::process::Command::new("pgrep")
            .args(["-f", &marker])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    for _ in 0..100 {
        if running() >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(running() >= 2, "the graders started");
    signal(child.id(), "INT");
    let (code, lines, stderr) = lines_of(child);
    assert_eq!(code, 130, "{stderr}");
    // The answers being graded go out, without a grade; none is lost as
    // an internal error.
    assert!(!lines.is_empty(), "{stderr}");
    for l in &lines {
        assert!(
            l["error"].is_null() || l["error"]["type"] == "interrupted",
            "{l}"
        );
        assert!(l.get("grade").is_none(), "{l}");
    }
    assert!(lines.iter().any(|l| l["model"] == "t/cheap"), "{stderr}");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(running(), 0, "no grader outlives the run");
}

#[test]
fn feedback_with_redis_down_answers_every_line_and_keeps_what_it_took() {
    let env = two();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let outcomes = format!(
        "{}\n{}\n",
        json!({"task": "tickets", "model": "t/cheap", "score": 1}),
        json!({"task": "tickets", "model": "t/cheap", "score": 9}),
    );
    let out = env
        .cmd()
        .args(["feedback", "--outcomes", "-"])
        .args(["--redis", &format!("redis://127.0.0.1:{port}/0")])
        .stdin(outcomes)
        .run();
    // As every other command: a warning, then the work, on the store alone.
    assert_eq!(out.code, 1, "{}", out.stderr);
    let lines = out.lines();
    assert_eq!(lines.len(), 2, "{}", out.stdout);
    assert!(lines[0].get("error").is_none(), "{}", out.stdout);
    assert!(lines[1]["error"]["message"].is_string(), "{}", out.stdout);
    assert!(out.stderr.contains("Redis"), "{}", out.stderr);
    assert_eq!(
        env.count("SELECT events FROM quality WHERE task = 'tickets' AND model = 't/cheap'"),
        1
    );
}

#[test]
fn route_takes_the_task_header_as_a_chat_request_does() {
    let env = two();
    let mut outcomes = String::new();
    for _ in 0..30 {
        outcomes.push_str(&format!(
            "{}\n{}\n",
            json!({"task": "support", "model": "t/cheap", "score": 1}),
            json!({"task": "support", "model": "t/strong", "score": 0.3}),
        ));
    }
    env.cmd()
        .args(["feedback", "--outcomes", "-", "--quiet"])
        .stdin(outcomes)
        .run()
        .assert_code(0);
    let out = env.cmd().args(["keys", "create", "a"]).run();
    out.assert_code(0);
    let token = out.stdout.lines().next().unwrap().to_string();
    let s = env.serve(&["--models", "t/cheap,t/strong", "-p", "quality"]);
    let body = json!({"messages": [{"role": "user", "content": "x"}]});
    // `post` sends `x-llmroute-task: support`.
    let (status, route, _) = post(&s, &token, "/route", &body);
    assert_eq!(status, 200, "{route}");
    assert_eq!(route["model"], "t/cheap", "{route}");
    for r in route["ranking"].as_array().unwrap() {
        let q = r["quality"].as_f64().unwrap();
        assert_eq!(q, (q * 1e4).round() / 1e4, "rounded as /v1/models: {r}");
    }
}

/// `--explain` on an answer from the cache ranks with what was learned,
/// as it does for one sent upstream.
#[test]
fn a_cached_answer_is_explained_with_the_learned_quality() {
    let env = two();
    let outcomes = format!(
        "{}\n{}\n",
        json!({"task": "sql", "model": "t/strong", "score": 0.95, "weight": 20}),
        json!({"task": "sql", "model": "t/cheap", "score": 0.2, "weight": 20})
    );
    let file = env.write("outcomes.jsonl", &outcomes);
    env.cmd()
        .args(["feedback", "-q", "--outcomes"])
        .arg(&file)
        .run()
        .assert_code(0);
    let run = || {
        let out = env
            .cmd()
            .args(["--models", "t/cheap,t/strong", "--task", "sql", "--explain"])
            .stdin("{\"prompt\":\"cache me\"}\n")
            .run();
        out.assert_code(0);
        out.lines()[0].clone()
    };
    let (sent, cached) = (run(), run());
    assert_eq!(cached["cached"], true, "{cached}");
    let sources = |l: &Value| -> Vec<(String, String, String)> {
        l["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["model"].as_str().unwrap().to_string(),
                    c["quality_source"].as_str().unwrap().to_string(),
                    format!("{:.2}", c["quality"].as_f64().unwrap()),
                )
            })
            .collect()
    };
    let mut a = sources(&sent);
    let mut b = sources(&cached);
    a.sort();
    b.sort();
    assert_eq!(a, b, "sent: {sent}\ncached: {cached}");
    assert!(b.iter().all(|(_, s, _)| s == "learned"), "{b:?}");
}
