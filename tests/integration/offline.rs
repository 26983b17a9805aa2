//! The catalogue when the API cannot give it: a refresh that fails says so,
//! and a failed fetch is not retried on every command.

use crate::util::*;

fn fetches(env: &Env) -> usize {
    env.server
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/models"))
        .count()
}

#[test]
fn a_refresh_that_cannot_fetch_fails_and_says_why() {
    let env = Env::three();
    env.cmd().args(["--dry-run", "-q"]).run().assert_code(0);
    env.server
        .set_catalogue_behavior(CatalogueBehavior::Status(500));
    let out = env.cmd().args(["models", "--refresh", "--json"]).run();
    out.assert_code(2);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    assert!(
        out.stderr.contains("cannot refresh the catalogue") && out.stderr.contains("HTTP 500"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_failed_fetch_is_remembered_for_a_few_minutes() {
    let env = Env::three();
    env.cmd().args(["--dry-run", "-q"]).run().assert_code(0);
    env.server
        .set_catalogue_behavior(CatalogueBehavior::Status(503));
    let first = env.cmd().args(["models", "--json"]).run();
    first.assert_code(0);
    assert!(first.stderr.contains("HTTP 503"), "{}", first.stderr);
    assert_eq!(fetches(&env), 1);
    for args in [&["models", "--json"][..], &["models", "--all", "--json"]] {
        let out = env.cmd().args(args).run();
        out.assert_code(0);
        assert!(
            out.stderr.contains("the last fetch") && out.stderr.contains("HTTP 503"),
            "{}",
            out.stderr
        );
    }
    let run = env.cmd().args(["--models", "t/a"]).stdin(prompts(1)).run();
    run.assert_code(0);
    assert_eq!(fetches(&env), 1, "not looked up again");
    // A refresh asks again, whatever failed before.
    env.server.set_catalogue_behavior(CatalogueBehavior::Models);
    env.cmd()
        .args(["models", "--refresh", "--json"])
        .run()
        .assert_code(0);
    assert_eq!(fetches(&env), 2);
}
