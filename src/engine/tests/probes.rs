//! Probes and the one request a half-open circuit lets through: a request
//! that finds another holding a model's one attempt goes elsewhere or
//! waits, and never asks again and again while it is under way.

use std::sync::atomic::Ordering;

use super::*;

#[tokio::test(flavor = "current_thread")]
async fn a_request_that_loses_the_race_to_probe_a_model_goes_to_the_best_instead() {
    // Every request explores: `b`, never tried, is probed. Two requests
    // choose to probe it before either has begun (each reservation of the
    // budget is a round trip); the first probe takes 200 ms.
    let upstream = FakeUpstream::with(&[("b", &[Reply::Slow(Duration::from_millis(200))])]);
    let budget = Arc::new(RoundTrips::default());
    let admission = budget.clone();
    let w = world_of(
        &["a", "b"],
        upstream,
        false,
        |c| c.explore = 1.0,
        |p| p.admission = admission,
    );
    let mut set = tokio::task::JoinSet::new();
    for prompt in ["x", "y"] {
        let router = w.router.clone();
        set.spawn(async move {
            router
                .route(&request(prompt), RouteOptions::default())
                .await
        });
    }
    let mut models: Vec<String> = set
        .join_all()
        .await
        .iter()
        .map(|r| answered_by(r).to_string())
        .collect();
    let reserves = budget.reserves.load(Ordering::Relaxed);
    assert!(
        reserves <= 4,
        "{reserves} reservations for two requests: the loser asked again and again"
    );
    models.sort();
    assert_eq!(models, ["a", "b"], "one probed b, the other went to a");
}
