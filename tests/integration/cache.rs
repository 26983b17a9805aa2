//! The response cache as a user meets it: what decides a hit.

use crate::util::*;

#[test]
fn a_cached_answer_is_reused_only_for_the_upstream_that_gave_it() {
    let env = Env::three();
    let other = FakeServer::start(vec![ModelSpec::new("t/a")]);
    let input = prompts(2);
    env.cmd()
        .args(["--models", "t/a"])
        .stdin(&input)
        .run()
        .assert_code(0);
    assert_eq!(env.server.completions().len(), 2);

    // The same base URL, written differently, is the same upstream.
    let same = format!("{}/", env.server.base_url());
    let out = env
        .cmd()
        .env("LLMROUTE_BASE_URL", &same)
        .args(["--models", "t/a"])
        .stdin(&input)
        .run();
    out.assert_code(0);
    assert!(
        out.lines().iter().all(|l| l["cached"] == true),
        "{}",
        out.stdout
    );

    // Another upstream never gets this one's answers.
    let out = env
        .cmd()
        .env("LLMROUTE_BASE_URL", other.base_url())
        .args(["--models", "t/a"])
        .stdin(&input)
        .run();
    out.assert_code(0);
    assert!(
        out.lines().iter().all(|l| l["cached"] == false),
        "{}",
        out.stdout
    );
    assert_eq!(
        other.completions().len(),
        2,
        "each line asked the other upstream"
    );
    assert_eq!(env.server.completions().len(), 2);
}

/// A routed request's task decides its model, so it is part of its key;
/// a pinned model's answer is the same whatever the task.
#[test]
fn a_routed_answer_is_reused_only_for_its_task() {
    let env = crate::feedback::two();
    let mut outcomes = String::new();
    for i in 0..30 {
        for (task, cheap) in [("tickets", true), ("sql", false)] {
            outcomes.push_str(&format!(
                "{}\n{}\n",
                serde_json::json!({"task": task, "model": "t/cheap", "score": cheap}),
                serde_json::json!({"task": task, "model": "t/strong", "score": i % 10 != 0}),
            ));
        }
    }
    env.cmd()
        .args(["feedback", "--outcomes", "-", "--quiet"])
        .stdin(outcomes)
        .run()
        .assert_code(0);
    let line = |task: &str| format!("{{\"prompt\":\"q\",\"llmroute\":{{\"task\":\"{task}\"}}}}\n");
    let run = |input: String| {
        let out = env
            .cmd()
            .args(["--models", "t/cheap,t/strong", "--explore", "0"])
            .args(["--weights", "latency=0,cost=0.2,quality=0.7"])
            .stdin(input)
            .run();
        out.assert_code(0);
        out.lines()
    };
    let first = run(line("tickets"));
    assert_eq!(first[0]["model"], "t/cheap", "{first:?}");
    assert_eq!(first[0]["cached"], false);
    let other = run(line("sql"));
    assert_eq!(other[0]["cached"], false, "{other:?}");
    assert_eq!(other[0]["model"], "t/strong", "{other:?}");
    // The same task again is a hit, as is a pinned model under any task.
    let again = run(line("tickets"));
    assert_eq!(again[0]["cached"], true, "{again:?}");
    let pinned = |task: &str| {
        format!("{{\"prompt\":\"p\",\"model\":\"t/cheap\",\"llmroute\":{{\"task\":\"{task}\"}}}}\n")
    };
    run(pinned("tickets"));
    let pinned_elsewhere = run(pinned("sql"));
    assert_eq!(pinned_elsewhere[0]["cached"], true, "{pinned_elsewhere:?}");
}
