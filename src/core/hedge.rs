//! Hedging, the pure policy: how long an attempt may go unanswered before
//! the same request goes to another model as well (`--hedge auto`), and how
//! many requests may be hedged. Which model the hedge goes to is the
//! attempt policy's ([`crate::core::attempts::Attempts::hedge`]).

/// At most this share of requests is hedged (plus one).
pub const SHARE: f64 = 0.1;

/// Answers a model needs before `--hedge auto` trusts its percentile.
pub const MIN_SAMPLES: usize = 20;

/// Answers of a model whose latencies are kept for the delay.
pub const RECENT: usize = 64;

/// How long (ms) an attempt on a model whose latest answers took `recent`
/// ms may go unanswered before `--hedge auto` hedges it: their 95th
/// percentile, once there are [`MIN_SAMPLES`].
pub fn auto_delay_ms(recent: &[f64]) -> Option<f64> {
    if recent.len() < MIN_SAMPLES {
        return None;
    }
    let mut sorted = recent.to_vec();
    sorted.sort_by(f64::total_cmp);
    crate::core::health::percentile(&sorted, 95)
}

/// Whether one more request may be hedged, `hedged` having been of the
/// `requests` so far.
pub fn may_hedge(hedged: u64, requests: u64) -> bool {
    (hedged + 1) as f64 <= SHARE * requests as f64 + 1.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_is_the_95th_percentile_once_twenty_answers_are_known() {
        assert_eq!(auto_delay_ms(&[20.0; 19]), None);
        let mut recent: Vec<f64> = (1..=20).map(f64::from).collect();
        recent.reverse();
        assert_eq!(auto_delay_ms(&recent), Some(19.0));
    }

    #[test]
    fn a_tenth_of_the_requests_plus_one_may_be_hedged() {
        assert!(may_hedge(0, 0));
        assert!(!may_hedge(1, 9));
        assert!(may_hedge(1, 10));
        assert!(!may_hedge(11, 100));
        assert!(may_hedge(10, 100));
    }
}
