//! The real OpenRouter catalogue (a saved `/models` response) parses, and
//! the scorer works over all of it.

use std::collections::HashMap;

use llmroute::core::catalogue::{Catalogue, Origin};
use llmroute::core::ranking::{rank, Settings};
use llmroute::core::request::parse_line;
use llmroute::core::scoring::Priority;

use crate::util::*;

fn real() -> Catalogue {
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/openrouter-models.json"
    ))
    .unwrap();
    Catalogue::parse(&bytes, Origin::Live).expect("the real catalogue parses")
}

#[test]
fn real_catalogue_parses_with_nulls_and_odd_prices() {
    let c = real();
    assert_eq!(c.len(), 337);
    assert_eq!(c.skipped, 0);
    // Router models answer a price of "-1": unknown, not negative.
    let fusion = c.get("openrouter/fusion").unwrap();
    assert_eq!((fusion.prompt_price, fusion.completion_price), (None, None));
    // Free variants cost nothing.
    let free = c
        .models()
        .iter()
        .filter(|m| m.id.ends_with(":free"))
        .collect::<Vec<_>>();
    assert_eq!(free.len(), 22);
    assert!(free.iter().all(|m| m.prompt_price == Some(0.0)));
    let glm = c.get("z-ai/glm-5.2").unwrap();
    assert_eq!(glm.prompt_price, Some(0.0000014));
    assert_eq!(glm.context_length, Some(1_048_576));
    assert_eq!(glm.max_completion_tokens, Some(131_072));
    assert!(glm.supports("tools") && !glm.supports("response_format"));
    let with_index = c
        .models()
        .iter()
        .filter(|m| m.intelligence_index.is_some())
        .count();
    assert_eq!(with_index, 44);
    // The embedded snapshot is this catalogue, trimmed.
    let embedded = Catalogue::embedded();
    assert_eq!(embedded.models(), c.models());
}

#[test]
fn scorer_ranks_the_whole_real_catalogue() {
    let c = real();
    let models: Vec<String> = c.models().iter().map(|m| m.id.clone()).collect();
    let req =
        parse_line(br#"{"prompt":"hello","tools":[{"type":"function","function":{"name":"f"}}]}"#)
            .unwrap();
    let mut winners = Vec::new();
    for p in Priority::ALL {
        let s = Settings::new(
            p.name().into(),
            p.weights(),
            models.clone(),
            vec![],
            HashMap::new(),
        );
        let r = rank(&req, &s, &c, &HashMap::new(), None);
        assert!(r.ranked.len() > 100, "most models take tools");
        assert!(r
            .excluded
            .iter()
            .all(|(m, _)| !c.get(m).unwrap().supports("tools")));
        assert!(r.ranked.windows(2).all(|w| w[0].score >= w[1].score));
        winners.push(r.ranked[0].model.clone());
    }
    // Cost and quality cannot agree on this catalogue.
    assert_ne!(winners[1], winners[2], "{winners:?}");
    let quality_winner = c.get(&winners[2]).unwrap();
    assert!(
        quality_winner.intelligence_index.unwrap() > 50.0,
        "{winners:?}"
    );
    // Min-max over the whole catalogue: every cheap model is near the best
    // cost, so the cost winner is cheap but not necessarily free.
    let cost_of = |m: &str| c.get(m).unwrap().estimate_cost(10, 512).unwrap();
    let dearest = c
        .models()
        .iter()
        .filter_map(|m| m.estimate_cost(10, 512))
        .fold(0.0, f64::max);
    assert!(cost_of(&winners[1]) < dearest / 100.0, "{winners:?}");
    assert!(cost_of(&winners[1]) < cost_of(&winners[2]), "{winners:?}");
}

fn catalogue_fetches(env: &Env) -> usize {
    env.server
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/models"))
        .count()
}

#[test]
fn catalogue_is_fetched_stored_and_reused() {
    let env = Env::new(vec![ModelSpec::new("t/only").prices("0.000001", "0.000001")]);
    env.cmd()
        .args(["--models", "t/only"])
        .stdin(prompts(1))
        .run()
        .assert_code(0);
    assert_eq!(catalogue_fetches(&env), 1);
    assert_eq!(env.count("SELECT count(*) FROM catalogue"), 1);
    // A second run within 24 h uses the stored copy.
    env.cmd()
        .args(["--models", "t/only", "--no-cache"])
        .stdin(prompts(1))
        .run()
        .assert_code(0);
    assert_eq!(catalogue_fetches(&env), 1);

    // Older than 24 h: fetched again.
    let age_by = |hours: i64| {
        rusqlite::Connection::open(env.db())
            .unwrap()
            .execute(
                "UPDATE catalogue SET fetched_at = fetched_at - ?1",
                [hours * 3_600_000],
            )
            .unwrap();
    };
    age_by(25);
    let out = env
        .cmd()
        .args(["--models", "t/only", "--no-cache"])
        .stdin(prompts(1))
        .run();
    out.assert_code(0);
    assert_eq!(catalogue_fetches(&env), 2, "a stale copy is refetched");
    assert!(!out.stderr.contains("warning"), "{}", out.stderr);

    // Stale and the fetch fails: the stored copy, with a warning.
    age_by(30);
    env.server
        .set_catalogue_behavior(CatalogueBehavior::Status(500));
    let out = env
        .cmd()
        .args(["--models", "t/only", "--no-cache"])
        .stdin(prompts(1))
        .run();
    out.assert_code(0);
    assert_eq!(catalogue_fetches(&env), 3);
    assert!(
        out.stderr.contains("using the stored catalogue from"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("built-in"), "{}", out.stderr);
    // The stored price is still used: t/only is not in the built-in snapshot.
    assert!(out.lines()[0]["cost_usd"].as_f64().is_some());
}

#[test]
fn unreachable_catalogue_falls_back_to_the_embedded_one_with_a_warning() {
    let env = Env::new(vec![]);
    env.server
        .set_catalogue_behavior(CatalogueBehavior::Status(500));
    let out = env
        .cmd()
        .args(["--models", "openai/gpt-5.4-mini"])
        .stdin(prompts(1))
        .run();
    out.assert_code(0);
    assert!(out.stderr.contains("built-in catalogue"), "{}", out.stderr);
    // The embedded catalogue knows this model's price, so cost is computed.
    let line = &out.lines()[0];
    assert!(line["cost_usd"].as_f64().is_some(), "{line}");
}

#[test]
fn dry_run_works_offline_on_the_embedded_defaults() {
    let env = Env::new(vec![]);
    let out = env
        .cmd()
        .env("LLMROUTE_BASE_URL", "http://127.0.0.1:9/api/v1")
        .env_remove("OPENROUTER_API_KEY")
        .arg("--dry-run")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/requests.jsonl"
        ))
        .run();
    // The README's first command: every example line is routed, status 0.
    out.assert_code(0);
    let lines = out.lines();
    assert_eq!(lines.len(), 7, "seven requests and a blank line");
    for l in &lines {
        assert!(l["error"].is_null(), "{l}");
        assert_eq!(l["dry_run"], true);
        let model = l["model"].as_str().unwrap();
        assert!(
            llmroute::core::ranking::DEFAULT_MODELS.contains(&model) || l["id"] == "pinned",
            "{l}"
        );
        assert!(!l["candidates"].as_array().unwrap().is_empty() || l["id"] == "pinned");
    }
    assert!(env.server.requests().is_empty());
    assert!(!out.stderr.contains("warning"), "{}", out.stderr);
}

#[test]
fn a_bare_base_url_works_with_or_without_its_trailing_slash() {
    let env = Env::new(vec![ModelSpec::new("t/a")]);
    let root = format!("http://{}", env.server.addr());
    let run = |base: &str, db: &str| {
        env.cmd()
            .env("LLMROUTE_DB", env.path(db))
            .args(["--base-url", base, "--models", "t/a", "--no-cache"])
            .stdin(prompts(1))
            .run()
    };
    for base in [format!("{root}/"), root.clone()] {
        let out = run(&base, "store.db");
        out.assert_code(0);
        assert_eq!(answered_by(&out.lines()[0]), "t/a", "{base}");
        assert!(!out.stderr.contains("//"), "{base}: {}", out.stderr);
    }
    // One upstream, so one catalogue, fetched once.
    assert_eq!(catalogue_fetches(&env), 1);
    assert_eq!(env.count("SELECT count(*) FROM catalogue"), 1);
    for r in env.server.requests() {
        assert!(!r.path.contains("//"), "{}", r.path);
    }
    // A server with no catalogue there: the warning names the URL it asked.
    env.server
        .set_catalogue_behavior(CatalogueBehavior::Status(404));
    for (base, db) in [(format!("{root}/"), "a.db"), (root.clone(), "b.db")] {
        let out = run(&base, db);
        out.assert_code(0);
        assert!(
            out.stderr
                .contains(&format!("cannot fetch {root}/models (HTTP 404")),
            "{base}: {}",
            out.stderr
        );
        assert!(!out.stderr.contains("//models"), "{base}: {}", out.stderr);
    }
}
