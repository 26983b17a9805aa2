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
