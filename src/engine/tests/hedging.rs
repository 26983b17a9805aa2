//! Hedging with the engine's fakes: which attempts are sent and which
//! answer wins, never how long it took. The slow replies take ten seconds,
//! a hundred times the delay, so that what answers first is never in doubt.

use super::*;

/// `a`, `b` and `c` ranked in that order, hedged after 100 ms; `a`
/// measured by ten answers first, so that the share allows two hedges, and
/// then replying `a`; `b` replying `b`.
async fn hedged_world(a: Reply, b: Reply) -> World {
    let a = [vec![Reply::Ok; 10], vec![a]].concat();
    let upstream = FakeUpstream::with(&[("a", &a[..]), ("b", &[b])]);
    let w = world_with(&["a", "b", "c"], upstream, false, |c| {
        c.hedge = Hedge::After(Duration::from_millis(100));
    });
    for i in 0..10 {
        let req = request(&format!("warm {i}"));
        let routed = w.router.route(&req, RouteOptions::default()).await;
        assert_eq!(answered_by(&routed), "a");
    }
    w
}

/// The models of a request's attempts, each with whether it was cancelled.
fn tried(routed: &Routed) -> Vec<(&str, bool)> {
    routed
        .attempts
        .iter()
        .map(|a| {
            let cancelled = a
                .error
                .as_deref()
                .is_some_and(|e| e.starts_with("cancelled"));
            (a.model.as_str(), cancelled)
        })
        .collect()
}

#[tokio::test(flavor = "current_thread")]
async fn a_hedge_that_is_slow_too_is_hedged_again_on_the_next_model() {
    let slow = Reply::Slow(Duration::from_secs(10));
    let w = hedged_world(slow.clone(), slow).await;
    let routed = w.router.route(&request("x"), RouteOptions::default()).await;
    assert_eq!(answered_by(&routed), "c");
    assert_eq!(&w.upstream.calls()[10..], ["a", "b", "c"]);
    let mut tried = tried(&routed);
    tried.sort();
    assert_eq!(tried, [("a", true), ("b", true), ("c", false)]);
}

#[tokio::test(flavor = "current_thread")]
async fn an_answer_in_by_the_time_the_delay_passes_is_not_hedged() {
    // `a` answers 10 ms after it is sent, past the 5 ms delay; but the
    // process is starved of CPU for 50 ms, so that when it looks again
    // the delay has passed and the answer is in, both at once.
    let upstream = FakeUpstream::with(&[("a", &[Reply::Starved])]);
    let w = world_with(&["a", "b"], upstream, false, |c| {
        c.hedge = Hedge::After(Duration::from_millis(5));
    });
    for i in 0..20 {
        let req = request(&format!("x {i}"));
        let routed = w.router.route(&req, RouteOptions::default()).await;
        assert_eq!(tried(&routed), [("a", false)], "request {i}");
    }
    assert_eq!(w.upstream.calls(), vec!["a"; 20]);
}
