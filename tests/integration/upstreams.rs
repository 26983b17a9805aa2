//! Several upstreams in one candidate list: the default one (OpenRouter's
//! shape, with prices) and a named one (a local server's, with none),
//! each with its own key.

use serde_json::Value;

use crate::util::*;

const LOCAL_KEY: &str = "local-key-3f9a1c";

/// A local server that takes `LOCAL_KEY` only and lists `llama3` as vLLM
/// does: no prices, the window as `max_model_len`.
fn local() -> FakeServer {
    let server = FakeServer::start_with(fake_openrouter::Config {
        models: vec![ModelSpec::new("llama3")],
        api_key: Some(LOCAL_KEY.into()),
        ..fake_openrouter::Config::default()
    });
    server.set_catalogue_behavior(vllm_catalogue());
    server
}

/// The local server's catalogue, as vLLM lists its model.
fn vllm_catalogue() -> fake_openrouter::CatalogueBehavior {
    fake_openrouter::CatalogueBehavior::Raw(
        r#"{"object":"list","data":[{"id":"llama3","object":"model","created":1,"owned_by":"vllm","max_model_len":8192}]}"#
            .into(),
    )
}

/// The default upstream lists `m/x` (and `llama3`, a model of the same id).
fn env() -> Env {
    Env::new(vec![
        ModelSpec::new("m/x").prices("0.000001", "0.000001"),
        ModelSpec::new("llama3").prices("0.000002", "0.000002"),
    ])
}

/// A config file naming `local` at `url`, its models free.
fn config(env: &Env, url: &str) -> std::path::PathBuf {
    local_config(env, url, "headers = { \"X-Team\" = \"search\" }\n", "0")
}

/// A config file naming `local` at `url`, with `more` keys in its table and
/// `llama3` at `price` a token.
fn local_config(env: &Env, url: &str, more: &str, price: &str) -> std::path::PathBuf {
    env.write(
        "config.toml",
        &format!(
            "[upstreams.local]\nbase_url = \"{url}\"\napi_key_env = \"LOCAL_KEY\"\n{more}\n\
             [upstreams.local.models.\"llama3\"]\nprompt_price = {price}\ncompletion_price = {price}\n"
        ),
    )
}

/// The binary with `cfg` as its config and the local server's key set.
fn with(env: &Env, cfg: &std::path::Path) -> Cmd {
    env.cmd()
        .env("LLMROUTE_CONFIG", cfg)
        .env("LOCAL_KEY", LOCAL_KEY)
}

/// A server with `cfg` as its config and `key` as the local server's key.
fn serve_on(env: &Env, cfg: &std::path::Path, key: &str, args: &[&str]) -> Served {
    let cfg = cfg.to_str().unwrap();
    env.serve_with(args, &[("LLMROUTE_CONFIG", cfg), ("LOCAL_KEY", key)])
}

fn run(env: &Env, cfg: &std::path::Path, args: &[&str], n: usize) -> Output {
    with(env, cfg).args(args).stdin(prompts(n)).run()
}

#[test]
fn the_cheapest_candidate_on_any_upstream_answers_with_that_upstream_s_key() {
    let env = env();
    let local = local();
    let cfg = config(&env, &local.base_url());
    let out = run(
        &env,
        &cfg,
        &["--models", "m/x,local:llama3", "-p", "cost", "--no-cache"],
        3,
    );
    out.assert_code(0);
    for l in out.lines() {
        assert_eq!(l["model"], "local:llama3", "{l}");
        assert_eq!(l["upstream"], "local", "{l}");
    }
    // The local server got the requests, as `llama3`, with its own key and headers.
    let got = local.completions();
    assert_eq!(got.len(), 3);
    for r in &got {
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {LOCAL_KEY}").as_str())
        );
        assert_eq!(r.header("x-team"), Some("search"));
        assert_eq!(r.json()["model"], "llama3");
    }
    // The default upstream never saw the local key, nor the local one the default's.
    for r in env.server.requests() {
        assert_ne!(
            r.header("authorization"),
            Some(format!("Bearer {LOCAL_KEY}").as_str())
        );
    }
    for r in local.requests() {
        assert!(!r.header("authorization").unwrap_or("").contains(KEY));
    }
    // `llmroute models` lists both upstreams' candidates; `config show` the
    // upstream without its key.
    let out = with(&env, &cfg)
        .args(["models", "--models", "m/x,local:llama3", "--json"])
        .run();
    out.assert_code(0);
    let rows: Value = serde_json::from_str(&out.stdout).unwrap();
    let ids: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["model"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"local:llama3") && ids.contains(&"m/x"),
        "{ids:?}"
    );
    // With the price its own table gives it, not as a model nobody lists.
    let llama = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["model"] == "local:llama3")
        .unwrap();
    assert_eq!(llama["in_catalogue"], true, "{llama}");
    assert_eq!(llama["prompt_usd_per_mtok"], 0.0, "{llama}");
    // The window the server lists, as vLLM names it.
    assert_eq!(llama["context_length"], 8192, "{llama}");
    assert!(
        !out.stderr.contains("not in the model catalogue"),
        "{}",
        out.stderr
    );
    let out = with(&env, &cfg).args(["models", "--all", "--json"]).run();
    out.assert_code(0);
    assert!(out.stdout.contains("\"local:llama3\""), "{}", out.stdout);
    let out = with(&env, &cfg).args(["config", "show"]).run();
    assert!(out.stdout.contains("[upstreams.local]"), "{}", out.stdout);
    assert!(!out.stdout.contains(LOCAL_KEY));
}

#[test]
fn a_local_server_that_is_down_sends_its_requests_elsewhere() {
    let env = env();
    let local = local();
    let cfg = config(&env, &local.base_url());
    local.set_default("llama3", Behavior::status(503));
    let out = run(
        &env,
        &cfg,
        &["--models", "m/x,local:llama3", "-p", "cost", "--no-cache"],
        4,
    );
    out.assert_code(0);
    for l in out.lines() {
        assert_eq!(l["model"], "m/x", "{l}");
    }
    // Back: once what was learned of it is forgotten (or its pause ends),
    // it takes them again.
    local.set_default("llama3", Behavior::ok());
    // A misspelt upstream forgets nothing, and says so.
    let out = with(&env, &cfg)
        .args(["models", "--reset", "lcoal:llama3"])
        .run();
    out.assert_code(2);
    assert!(
        out.stderr.contains("no upstream is named"),
        "{}",
        out.stderr
    );
    with(&env, &cfg)
        .args(["models", "--reset", "local:llama3"])
        .run()
        .assert_code(0);
    let out = run(
        &env,
        &cfg,
        &["--models", "m/x,local:llama3", "-p", "cost", "--no-cache"],
        3,
    );
    for l in out.lines() {
        assert_eq!(l["model"], "local:llama3", "{l}");
    }
}

/// A 402 says one account's credit is short: a candidate on another
/// upstream, dearer as it may be, is billed to another account and still
/// takes the request.
#[test]
fn a_402_from_one_upstream_leaves_the_others_candidates_open() {
    let env = env();
    let local = local();
    // llama3 costs a little on the local server, less than m/x.
    let cfg = local_config(&env, &local.base_url(), "", "0.0000001");
    local.set_default("llama3", Behavior::status(402));
    let out = run(
        &env,
        &cfg,
        &[
            "--models",
            "local:llama3,m/x",
            "-p",
            "cost",
            "--explore",
            "0",
            "--no-cache",
        ],
        3,
    );
    out.assert_code(0);
    for l in out.lines() {
        assert_eq!(l["attempts"][0]["model"], "local:llama3", "{l}");
        assert_eq!(l["attempts"][0]["status"], 402, "{l}");
        assert_eq!(l["model"], "m/x", "{l}");
    }
}

/// A named upstream refusing its key refuses that upstream only: its
/// requests go elsewhere, and the run goes on.
#[test]
fn a_local_server_refusing_its_key_sends_its_requests_elsewhere() {
    let env = env();
    let local = local();
    let cfg = config(&env, &local.base_url());
    let out = with(&env, &cfg)
        .env("LOCAL_KEY", "not-the-key")
        .args(["--models", "m/x,local:llama3", "-p", "cost", "--no-cache"])
        .stdin(prompts(4))
        .run();
    out.assert_code(0);
    for l in out.lines() {
        assert_eq!(l["model"], "m/x", "{l}");
    }
    assert!(!out.stderr.contains("refused the run"), "{}", out.stderr);
    // The warning says why its catalogue was not fetched.
    assert!(
        out.stderr.contains("upstream local: cannot fetch") && out.stderr.contains("401"),
        "{}",
        out.stderr
    );
    let first = &out.lines()[0]["attempts"][0];
    assert_eq!(first["model"], "local:llama3", "{first}");
    assert_eq!(first["status"], 401, "{first}");
    assert!(
        first["error"]
            .as_str()
            .unwrap()
            .starts_with("upstream local refused its key: HTTP 401"),
        "{first}"
    );
    // A server goes on answering too.
    let s = serve_on(
        &env,
        &cfg,
        "not-the-key",
        &["--models", "m/x,local:llama3", "-p", "cost"],
    );
    crate::serve::rt().block_on(async {
        let c = reqwest::Client::new();
        for model in [None, Some("m/x"), None] {
            let r = c
                .post(s.url("/v1/chat/completions"))
                .json(&chat(model, "hi"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        }
    });
}

/// A refused key is the upstream's failure like a 500: its circuit opens
/// after failures in a row, so that lines stop paying a round trip to it
/// and exploration stops probing it as a model never tried.
#[test]
fn an_upstream_refusing_its_key_is_not_tried_on_every_line() {
    let env = env();
    let local = local();
    let cfg = config(&env, &local.base_url());
    let out = with(&env, &cfg)
        .env("LOCAL_KEY", "not-the-key")
        .args([
            "--models",
            "m/x,local:llama3",
            "-p",
            "cost",
            "--no-cache",
            "-j",
            "1",
        ])
        .stdin(prompts(30))
        .run();
    out.assert_code(0);
    let refused = out
        .lines()
        .iter()
        .flat_map(|l| l["attempts"].as_array().unwrap().clone())
        .filter(|a| a["model"] == "local:llama3")
        .count();
    assert!((1..=3).contains(&refused), "{refused} of 30 lines tried it");
    let models = with(&env, &cfg)
        .env("LOCAL_KEY", "not-the-key")
        .args(["models", "--models", "m/x,local:llama3", "--json"])
        .run();
    let v: Value = serde_json::from_str(&models.stdout).unwrap();
    let row = v
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["model"] == "local:llama3")
        .unwrap();
    assert_ne!(row["state"], "prior", "{row}");
}

/// Every line a server logs is JSON with `--log-format json`, the
/// warnings of its set-up too (here: a named upstream's catalogue that
/// cannot be fetched).
#[test]
fn a_server_s_set_up_warnings_are_json_like_the_rest() {
    let env = env();
    let cfg = local_config(&env, "http://127.0.0.1:9/v1", "", "0");
    let s = serve_on(
        &env,
        &cfg,
        LOCAL_KEY,
        &["--models", "m/x,local:llama3", "--log-format", "json"],
    );
    let (_, log) = s.stop();
    assert!(log.contains("/models"), "the warning is there: {log}");
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            serde_json::from_str::<Value>(line).is_ok(),
            "not JSON: {line}\n{log}"
        );
    }
}

#[test]
fn the_same_model_on_two_upstreams_is_two_candidates() {
    let env = env();
    let local = local();
    let cfg = config(&env, &local.base_url());
    local.set_default("llama3", Behavior::status(500));
    let args = [
        "--models",
        "llama3,local:llama3",
        "-p",
        "cost",
        "--no-cache",
        "--max-attempts",
        "2",
    ];
    let out = run(&env, &cfg, &args, 5);
    out.assert_code(0);
    // The local one fails and the default one answers; the local one's
    // failures are its own.
    for l in out.lines() {
        assert_eq!(l["model"], "llama3", "{l}");
    }
    let out = with(&env, &cfg)
        .args(["models", "--models", "llama3,local:llama3", "--json"])
        .run();
    let rows: Value = serde_json::from_str(&out.stdout).unwrap();
    let row = |id: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["model"] == id)
            .unwrap()
            .clone()
    };
    assert!(row("local:llama3")["errors"].as_i64().unwrap() > 0);
    assert_eq!(row("llama3")["errors"], 0);
    // And their answers are cached apart: the default's answer to a prompt
    // is not the local one's.
    let first = run(&env, &cfg, &["--models", "llama3"], 1);
    assert_eq!(first.lines()[0]["model"], "llama3");
    local.set_default("llama3", Behavior::ok());
    with(&env, &cfg)
        .args(["models", "--reset", "local:llama3"])
        .run()
        .assert_code(0);
    let other = run(&env, &cfg, &["--models", "local:llama3"], 1);
    let l = &other.lines()[0];
    assert_eq!(
        (l["model"].as_str(), l["cached"].as_bool()),
        (Some("local:llama3"), Some(false)),
        "{l}"
    );
}

#[test]
fn a_bad_upstream_in_the_config_names_the_upstream_and_the_line() {
    let env = env();
    let missing_var = env.write(
        "a.toml",
        "priority = \"cost\"\n\n[upstreams.gpu]\nbase_url = \"http://127.0.0.1:9/v1\"\napi_key_env = \"NO_SUCH_VAR_9F\"\n",
    );
    let out = env
        .cmd()
        .env("LLMROUTE_CONFIG", &missing_var)
        .args(["--models", "gpu:x"])
        .stdin(prompts(1))
        .run();
    // A run that would call it: before anything is sent.
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("upstream gpu")
            && out.stderr.contains("NO_SUCH_VAR_9F")
            && out.stdout.is_empty(),
        "{}",
        out.stderr
    );
    // `default` is the name of the --base-url upstream: taken.
    let taken = env.write(
        "d.toml",
        "[upstreams.default]\nbase_url = \"http://127.0.0.1:9/v1\"\n",
    );
    let out = env
        .cmd()
        .env("LLMROUTE_CONFIG", &taken)
        .stdin(prompts(1))
        .run();
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("line 1") && out.stderr.contains("\"default\""),
        "{}",
        out.stderr
    );
    let bad_url = env.write("b.toml", "[upstreams.gpu]\nbase_url = \"ftp://x\"\n");
    let out = env
        .cmd()
        .env("LLMROUTE_CONFIG", &bad_url)
        .stdin(prompts(1))
        .run();
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("line 2") && out.stderr.contains("gpu"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_misspelt_upstream_name_is_an_error_not_a_call_to_the_default_api() {
    let env = env();
    let local = local();
    let cfg = config(&env, &local.base_url());
    // A dry run on a fresh store has only the built-in catalogue: what it
    // does not list may be the API's own (an Ollama tag), so it is let be.
    let out = run(&env, &cfg, &["-n", "--models", "llama3:8b"], 1);
    out.assert_code(0);
    // As a candidate: the run does not start.
    let out = run(&env, &cfg, &["--models", "lcoal:llama3"], 1);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("lcoal") && out.stderr.contains("local"),
        "{}",
        out.stderr
    );
    // Pinned by a line: that line's error; the others are answered.
    let out = with(&env, &cfg)
        .args(["--models", "local:llama3"])
        .stdin("{\"prompt\":\"a\",\"model\":\"lcoal:llama3\"}\n{\"prompt\":\"b\"}\n")
        .run();
    let lines = out.lines();
    assert_eq!(lines[0]["error"]["type"], "invalid_input", "{}", out.stdout);
    assert!(lines[1]["error"].is_null(), "{}", out.stdout);
    // A server refuses it, even one that lets requests name any model,
    // pinned or listed.
    let s = serve_on(
        &env,
        &cfg,
        LOCAL_KEY,
        &["--models", "local:llama3", "--allow-any-model"],
    );
    crate::serve::rt().block_on(async {
        let c = reqwest::Client::new();
        let mut listed = chat(None, "hi");
        listed["llmroute"] = serde_json::json!({"models": ["lcoal:llama3"]});
        for body in [chat(Some("lcoal:llama3"), "hi"), listed] {
            let r = c
                .post(s.url("/v1/chat/completions"))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 400);
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["error"]["code"], "model_not_allowed", "{v}");
            assert!(
                v["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("no upstream is named"),
                "{v}"
            );
        }
    });
    drop(s);
    // Nothing reached the default API under that name.
    assert!(env
        .server
        .completions()
        .iter()
        .all(|r| !String::from_utf8_lossy(&r.body).contains("lcoal")));
    // A model id with a colon that the default API lists is its own.
    let out = run(&env, &cfg, &["--models", "m/x"], 1);
    out.assert_code(0);
    // Forgetting a named candidate's health names its upstream.
    let out = with(&env, &cfg)
        .args(["models", "--reset", "local:llama3"])
        .run();
    out.assert_code(0);
    assert!(out.stdout.contains("on upstream local"), "{}", out.stdout);
}

#[test]
fn a_server_says_which_upstream_answered() {
    let env = env();
    let local = local();
    let cfg = config(&env, &local.base_url());
    let s = serve_on(
        &env,
        &cfg,
        LOCAL_KEY,
        &["--models", "m/x,local:llama3", "-p", "cost"],
    );
    crate::serve::rt().block_on(async {
        let c = reqwest::Client::new();
        for (model, upstream) in [(None, "local"), (Some("m/x"), "default")] {
            let r = c
                .post(s.url("/v1/chat/completions"))
                .json(&chat(model, "hi"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            assert_eq!(r.headers()["x-llmroute-upstream"], upstream);
        }
        // Both upstreams' candidates are listed.
        let v = crate::serve::get_json(&c, &s, "/v1/models").await;
        let ids: Vec<&str> = v["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["id"].as_str())
            .collect();
        assert!(
            ids.contains(&"local:llama3") && ids.contains(&"m/x"),
            "{ids:?}"
        );
    });
}

#[test]
fn a_local_server_at_its_limit_sends_the_rest_elsewhere() {
    let env = env();
    let local = local();
    local.set_default("llama3", Behavior::ok_after(400));
    let cfg = local_config(&env, &local.base_url(), "concurrency = 1\n", "0");
    let out = run(
        &env,
        &cfg,
        &[
            "--models",
            "m/x,local:llama3",
            "-p",
            "cost",
            "--no-cache",
            "-j",
            "4",
        ],
        4,
    );
    out.assert_code(0);
    let models: Vec<String> = out
        .lines()
        .iter()
        .map(|l| l["model"].as_str().unwrap().to_string())
        .collect();
    assert!(models.iter().any(|m| m == "local:llama3"), "{models:?}");
    assert!(
        models.iter().any(|m| m == "m/x"),
        "the rest went elsewhere: {models:?}"
    );
    assert!(local.most_in_flight() <= 1);
}

/// Its limit is llmroute's own: a request it holds back was never sent,
/// so it is no attempt, and no failure of the model.
#[test]
fn requests_held_back_by_a_local_server_s_limit_wait_and_are_not_attempts() {
    let env = env();
    let local = local();
    local.set_default("llama3", Behavior::ok_after(300));
    let cfg = local_config(&env, &local.base_url(), "concurrency = 1\n", "0");
    let out = run(
        &env,
        &cfg,
        &["--models", "local:llama3", "--no-cache", "-j", "4"],
        6,
    );
    out.assert_code(0);
    for l in out.lines() {
        assert_eq!(l["model"], "local:llama3", "{l}");
        let attempts = l["attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), 1, "{l}");
    }
    assert_eq!(local.completions().len(), 6);
    assert!(local.most_in_flight() <= 1);
    assert_eq!(env.count("SELECT count(*) FROM attempts WHERE ok = 0"), 0);
    let report = with(&env, &cfg)
        .args(["report", "--json", "--since", "all"])
        .run();
    let v: Value = serde_json::from_str(&report.stdout).unwrap();
    assert_eq!(v["attempts"], 6, "{}", report.stdout);
}

#[test]
fn a_local_server_out_of_tokens_this_minute_sends_the_rest_elsewhere() {
    let env = env();
    let local = local();
    let cfg = local_config(&env, &local.base_url(), "tpm = 1\n", "0");
    let out = run(
        &env,
        &cfg,
        &[
            "--models",
            "m/x,local:llama3",
            "-p",
            "cost",
            "--no-cache",
            "-j",
            "1",
        ],
        5,
    );
    out.assert_code(0);
    let on_local = out
        .lines()
        .iter()
        .filter(|l| l["model"] == "local:llama3")
        .count();
    // One answer uses the minute's token; a minute may end once in the run.
    assert!((1..=2).contains(&on_local), "{on_local} of 5 on local");
    assert_eq!(local.completions().len(), on_local);
}

#[test]
fn the_report_counts_each_upstream_s_requests() {
    let env = env();
    let local = local();
    let cfg = config(&env, &local.base_url());
    let out = run(
        &env,
        &cfg,
        &["--models", "m/x,local:llama3", "-p", "cost", "--no-cache"],
        3,
    );
    out.assert_code(0);
    let out = run(&env, &cfg, &["--models", "m/x", "--no-cache"], 2);
    out.assert_code(0);
    let report = |args: &[&str]| with(&env, &cfg).args(args).run();
    let out = report(&["report", "--json"]);
    out.assert_code(0);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    let rows = v["upstreams"].as_array().unwrap();
    let of = |name: &str| rows.iter().find(|r| r["upstream"] == name).unwrap().clone();
    assert_eq!(of("local")["requests"], 3, "{rows:?}");
    assert_eq!(of("local")["models"][0], "local:llama3");
    assert_eq!(of("default")["requests"], 2, "{rows:?}");
    let out = report(&["report", "--by", "upstream"]);
    out.assert_code(0);
    assert!(out.stdout.contains("local:llama3"), "{}", out.stdout);
    assert!(!out.stdout.contains("no upstream"), "{}", out.stdout);
    // A bad line reaches no upstream, and the table says so.
    let out = with(&env, &cfg).stdin("{not json\n").run();
    out.assert_code(1);
    let out = report(&["report", "--by", "upstream"]);
    assert!(
        out.stdout
            .contains("\n1 line on no upstream: ended before any model was tried"),
        "{}",
        out.stdout
    );
    let out = report(&["report", "--format", "html"]);
    assert!(
        out.stdout.contains("<table id=\"by-upstream\">"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("<td class=\"name\">local</td><td>3</td>"),
        "{}",
        out.stdout
    );
    let out = report(&["report", "--format", "prometheus"]);
    assert!(
        out.stdout
            .contains("llmroute_upstream_requests{upstream=\"local\"} 3"),
        "{}",
        out.stdout
    );
}

#[test]
fn each_priority_picks_its_best_across_upstreams() {
    // The default upstream's model is cheap, smart and slow; the local one
    // is dear (by its table), unrated and fast.
    let env = Env::new(vec![ModelSpec::new("m/x")
        .prices("0.0000001", "0.0000001")
        .intelligence(58.0)]);
    env.server.set_default("m/x", Behavior::ok_after(120));
    let local = local();
    let cfg = local_config(&env, &local.base_url(), "", "0.0001");
    let models = ["--models", "m/x,local:llama3", "--no-cache"];
    // Both measured: three requests pinned to each.
    let pinned: String = ["m/x", "local:llama3"]
        .iter()
        .flat_map(|m| {
            (0..3).map(move |i| format!("{{\"model\":\"{m}\",\"prompt\":\"warm {i}\"}}\n"))
        })
        .collect();
    with(&env, &cfg)
        .args(["--no-cache", "-j", "1"])
        .stdin(pinned)
        .run()
        .assert_code(0);
    let pick = |priority: &str| {
        let out = run(
            &env,
            &cfg,
            &[&models[..], &["-p", priority, "--dry-run"]].concat(),
            1,
        );
        out.assert_code(0);
        out.lines()[0]["model"].as_str().unwrap().to_string()
    };
    assert_eq!(pick("speed"), "local:llama3");
    assert_eq!(pick("cost"), "m/x");
    assert_eq!(pick("quality"), "m/x");
}

#[test]
fn lines_that_fail_count_on_the_upstream_that_failed_them() {
    let env = env();
    let local = local();
    local.set_default("llama3", Behavior::status(500));
    let cfg = config(&env, &local.base_url());
    // Two lines fail on the local server (its only candidate), one is
    // answered by the default upstream.
    let out = run(&env, &cfg, &["--models", "local:llama3", "--no-cache"], 2);
    assert_eq!(out.code, 1, "{}", out.stderr);
    run(&env, &cfg, &["--models", "m/x", "--no-cache"], 1).assert_code(0);
    let report = |args: &[&str]| with(&env, &cfg).args(args).run();
    let out = report(&["report", "--json"]);
    out.assert_code(0);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    let rows = v["upstreams"].as_array().unwrap();
    let of = |name: &str| rows.iter().find(|r| r["upstream"] == name).cloned();
    let local_row = of("local").unwrap_or_else(|| panic!("no local row: {rows:?}"));
    assert_eq!(local_row["requests"], 2, "{rows:?}");
    assert_eq!(local_row["errors"], 2, "{rows:?}");
    assert_eq!(local_row["answered"], 0, "{rows:?}");
    assert_eq!(of("default").unwrap()["errors"], 0, "{rows:?}");
    let out = report(&["report", "--format", "prometheus"]);
    assert!(
        out.stdout
            .contains("llmroute_upstream_errors{upstream=\"local\"} 2"),
        "{}",
        out.stdout
    );
}

/// `NAME:` with no model after it names nothing: a usage error, not a
/// candidate sent to the default API as "NAME:".
#[test]
fn a_candidate_with_nothing_after_its_colon_is_refused() {
    let env = env();
    let out = env
        .cmd()
        .args(["--models", "m/x,local:", "--dry-run"])
        .stdin("{\"prompt\":\"x\"}\n")
        .run();
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("\"local:\" names no model"),
        "{}",
        out.stderr
    );
    // In a line too, where an upstream is configured: never sent.
    let local = local();
    let cfg = config(&env, &local.base_url());
    let out = with(&env, &cfg)
        .args(["--models", "m/x", "--no-cache"])
        .stdin(
            "{\"prompt\":\"hi\",\"model\":\"local:\"}\n\
             {\"prompt\":\"hi\",\"llmroute\":{\"models\":[\"local:\"]}}\n",
        )
        .run();
    assert_eq!(out.code, 1, "{}", out.stderr);
    for l in out.lines() {
        let message = l["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("local: names no model"), "{l}");
    }
    assert_eq!(env.server.completions().len(), 0);
}

/// Lines that wait for an upstream's one slot take it in turn: a line
/// that came later does not take the slot from one waiting before it
/// (lines 2 to 8 used to wait seconds while hundreds went first).
#[test]
fn lines_waiting_for_an_upstream_s_slot_take_it_in_turn() {
    let env = env();
    let local = local();
    local.set_default("llama3", Behavior::ok_after(20));
    let cfg = local_config(&env, &local.base_url(), "concurrency = 1\n", "0");
    let n = 60;
    let out = run(
        &env,
        &cfg,
        &["--models", "local:llama3", "--no-cache", "-j", "8"],
        n,
    );
    out.assert_code(0);
    // The order the upstream saw the prompts in, by line number.
    let seen: Vec<usize> = local
        .completions()
        .iter()
        .map(|r| {
            let body = r.json();
            let text = body["messages"][0]["content"].as_str().unwrap().to_string();
            text.trim_start_matches('p').parse::<usize>().unwrap()
        })
        .collect();
    assert_eq!(seen.len(), n, "{seen:?}");
    // A line goes at most a few places after lines that came well after it.
    for (at, line) in seen.iter().enumerate() {
        let overtaken_by = seen[..at].iter().filter(|&&l| l > line + 8).count();
        assert!(
            overtaken_by == 0,
            "line {line} went after {overtaken_by} lines read 8 or more after it: {seen:?}"
        );
    }
}

/// `models --refresh` fetches a named upstream's catalogue again, even
/// right after a fetch failed; a run then says when the last one failed.
#[test]
fn models_refresh_fetches_a_named_upstream_s_catalogue_again() {
    let env = env();
    let local = local();
    let cfg = config(&env, &local.base_url());
    // Its catalogue fails: a run says so, and the next one, within a few
    // minutes, says when the last fetch failed rather than ask again.
    local.set_catalogue_behavior(fake_openrouter::CatalogueBehavior::Status(500));
    let run = || {
        with(&env, &cfg)
            .args(["--models", "m/x,local:llama3", "--no-cache"])
            .stdin(prompts(1))
            .run()
    };
    let out = run();
    assert!(
        out.stderr.contains("upstream local: cannot fetch"),
        "{}",
        out.stderr
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let out = run();
    assert!(
        out.stderr.contains("not fetched: the last fetch"),
        "{}",
        out.stderr
    );
    local.set_catalogue_behavior(vllm_catalogue());
    let out = with(&env, &cfg)
        .args([
            "models",
            "--refresh",
            "--models",
            "m/x,local:llama3",
            "--json",
        ])
        .run();
    out.assert_code(0);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    let row = v
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["model"] == "local:llama3")
        .unwrap();
    assert_eq!(row["context_length"], 8192, "{row}");
    // Refreshed again while it fails: the stored copy is not passed off
    // as fresh, and the command fails naming the upstream, as it does
    // for the default API.
    local.set_catalogue_behavior(fake_openrouter::CatalogueBehavior::Status(500));
    let out = with(&env, &cfg)
        .args(["models", "--refresh", "--models", "m/x,local:llama3"])
        .run();
    out.assert_code(2);
    assert!(
        out.stderr
            .contains("upstream local: cannot refresh the catalogue"),
        "{}",
        out.stderr
    );
}

/// Requests waiting for a slot take the first one free on any of their
/// candidates' upstreams: one upstream full does not leave another's
/// free slots idle.
#[test]
fn waiting_requests_take_a_free_slot_on_any_upstream() {
    let env = env();
    let (one, other) = (local(), local());
    for s in [&one, &other] {
        s.set_default("llama3", Behavior::ok_after(100));
    }
    let cfg = env.write(
        "two.toml",
        &format!(
            "[upstreams.one]\nbase_url = \"{}\"\napi_key_env = \"LOCAL_KEY\"\nconcurrency = 1\n\
             [upstreams.one.models.\"llama3\"]\nprompt_price = 0\ncompletion_price = 0\n\
             [upstreams.other]\nbase_url = \"{}\"\napi_key_env = \"LOCAL_KEY\"\nconcurrency = 8\n\
             [upstreams.other.models.\"llama3\"]\nprompt_price = 0\ncompletion_price = 0\n",
            one.base_url(),
            other.base_url()
        ),
    );
    let out = run(
        &env,
        &cfg,
        &[
            "--models",
            "one:llama3,other:llama3",
            "--no-cache",
            "-j",
            "64",
        ],
        40,
    );
    out.assert_code(0);
    let (on_one, on_other) = (one.completions().len(), other.completions().len());
    assert_eq!(on_one + on_other, 40);
    // At 8 a time against 1, the other takes most of them.
    assert!(on_other >= 24, "{on_one} on one, {on_other} on the other");
    assert!(one.most_in_flight() <= 1 && other.most_in_flight() <= 8);
}

/// An answer that echoes a key (a prompt that held it) has every
/// upstream's key blanked out, not only the key of the upstream that
/// answered it: in the output and in the cache.
#[test]
fn an_answer_holds_no_upstream_s_key() {
    let env = env();
    let local = local();
    let cfg = config(&env, &local.base_url());
    let prompt = format!("say {KEY} and {LOCAL_KEY}");
    let lines = ["local:llama3", "m/x"]
        .map(|m| serde_json::json!({"prompt": prompt, "model": m}).to_string() + "\n")
        .concat();
    let out = with(&env, &cfg).stdin(lines).run();
    out.assert_code(0);
    for l in out.lines() {
        let content = l["content"].as_str().unwrap();
        assert_eq!(content.matches("[redacted]").count(), 2, "{l}");
    }
    for secret in [KEY, LOCAL_KEY] {
        assert!(!out.stdout.contains(secret), "{}", out.stdout);
        for (name, bytes) in crate::crashes::store_bytes(&env.db()) {
            assert!(!crate::crashes::contains(&bytes, secret), "{name}");
        }
    }
}

/// Commands that call no upstream need none of their keys: a report, the
/// model list from the stored catalogues, a dry run. A run that would
/// call an upstream whose key variable is unset says so before it sends
/// anything, as does a refresh of its catalogue.
#[test]
fn only_what_calls_an_upstream_needs_its_key() {
    let env = env();
    let local = local();
    let cfg = config(&env, &local.base_url());
    let without = |args: &[&str]| {
        env.cmd()
            .env("LLMROUTE_CONFIG", &cfg)
            .env_remove("LOCAL_KEY")
            .args(args)
    };
    // Before any run (a dry run made the store): its catalogue is not
    // fetched, and the warning says why, not that it cannot be.
    without(&["--dry-run"])
        .stdin(prompts(1))
        .run()
        .assert_code(0);
    let out = without(&["models", "--models", "m/x,local:llama3"]).run();
    out.assert_code(0);
    assert!(
        out.stderr.contains(
            "the variable LOCAL_KEY that holds its key is not set, so its catalogue is not fetched"
        ),
        "{}",
        out.stderr
    );
    assert!(local.requests().is_empty());
    let out = run(
        &env,
        &cfg,
        &["--models", "m/x,local:llama3", "-p", "cost"],
        2,
    );
    out.assert_code(0);
    for args in [
        &["report"][..],
        &["report", "--by", "upstream", "--json"],
        &["models", "--models", "m/x,local:llama3"],
        &["--dry-run", "--models", "m/x,local:llama3"],
    ] {
        let out = without(args).stdin(prompts(1)).run();
        out.assert_code(0);
        assert!(!out.stdout.contains(LOCAL_KEY));
    }
    let out = without(&["models", "--models", "m/x,local:llama3", "--json"]).run();
    assert!(out.stdout.contains("\"local:llama3\""), "{}", out.stdout);
    let sent = local.completions().len();
    for args in [
        &["--models", "m/x,local:llama3"][..],
        &["models", "--refresh"],
    ] {
        let out = without(args).stdin(prompts(1)).run();
        out.assert_code(2);
        assert!(
            out.stderr
                .contains("upstream local: the variable LOCAL_KEY that holds its key is not set"),
            "{}",
            out.stderr
        );
    }
    assert_eq!(local.completions().len(), sent);
}
