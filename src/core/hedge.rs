//! Hedging, the pure policy: how long an attempt may go unanswered before
//! the same request goes to another model as well (`--hedge auto`), and how
//! many requests may be hedged. Which model the hedge goes to is the
//! attempt policy's ([`crate::core::attempts::Attempts::hedge`]).

use crate::core::health::percentile;

/// At most this share of requests is hedged (plus one).
pub const SHARE: f64 = 0.1;

/// Answers a model needs before `--hedge auto` trusts its percentile.
pub const MIN_SAMPLES: usize = 20;

/// Answers a model needs before `--hedge auto` hedges it at all: as many as
/// make it measured ([`crate::core::health::WARMUP_TRIES`]).
pub const FEW_SAMPLES: usize = 3;

/// The latest a hedge goes, in times the median of the model's answers.
pub const MEDIAN_TIMES: f64 = 3.0;

/// The soonest a hedge goes, in times the median of the model's answers.
pub const MEDIAN_TIMES_FIRST: f64 = 1.5;

/// Answers of a model whose latencies are kept for the delay.
pub const RECENT: usize = 64;

/// How long (ms) an attempt on a model whose latest answers took `recent`
/// ms may go unanswered before `--hedge auto` hedges it: their 95th
/// percentile, once there are [`MIN_SAMPLES`], kept between
/// [`MEDIAN_TIMES_FIRST`] and [`MEDIAN_TIMES`] their median; with fewer
/// (from [`FEW_SAMPLES`]), [`MEDIAN_TIMES`] the median.
///
/// The median bounds it because the percentile is no estimate of the tail
/// a hedge is for when that tail is in its window: with a 4% tail, 64
/// answers hold four tails or more one time in four, and twenty answers
/// two or more one time in five, and then the percentile is a tail itself,
/// and a delay there hedges none. The median is not moved by a tail, and
/// with a few answers it is the one figure they give that a tail does not
/// make. From below, because when a model's answers take about the same
/// time, the answers past their percentile (one in twenty, by its
/// definition) are only a few ms late: a hedge sent then is cancelled at
/// once, and the share of hedges it took is missing when a tail comes.
pub fn auto_delay_ms(recent: &[f64]) -> Option<f64> {
    if recent.len() < FEW_SAMPLES {
        return None;
    }
    let mut sorted = recent.to_vec();
    sorted.sort_by(f64::total_cmp);
    let median = percentile(&sorted, 50)?;
    let latest = MEDIAN_TIMES * median;
    if sorted.len() < MIN_SAMPLES {
        return Some(latest);
    }
    let soonest = MEDIAN_TIMES_FIRST * median;
    Some(percentile(&sorted, 95)?.clamp(soonest, latest))
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
        // Before, three times their median.
        assert_eq!(auto_delay_ms(&[20.0; 19]), Some(60.0));
        let mut recent: Vec<f64> = (1..=20).map(f64::from).collect();
        recent.reverse();
        assert_eq!(auto_delay_ms(&recent), Some(19.0));
    }

    /// `fast` answers of 20 to 29 ms, then `slow` of 2.5 s, oldest first.
    fn tailing(fast: usize, slow: usize) -> Vec<f64> {
        let mut recent: Vec<f64> = (0..fast).map(|i| 20.0 + (i % 10) as f64).collect();
        recent.extend(std::iter::repeat_n(2_500.0, slow));
        recent
    }

    #[test]
    fn a_tail_in_the_window_does_not_push_the_delay_into_the_tail() {
        // Four tails of 64 answers: the 95th percentile is a tail itself,
        // and a delay there would hedge none of them.
        let recent = tailing(60, 4);
        let p95 = percentile(&sorted(&recent), 95);
        assert_eq!(p95, Some(2_500.0));
        let delay = auto_delay_ms(&recent).unwrap();
        assert!(delay < 100.0, "{delay} ms");
        // Two of twenty (the fewest the percentile needs) alike.
        let delay = auto_delay_ms(&tailing(18, 2)).unwrap();
        assert!(delay < 100.0, "{delay} ms");
    }

    #[test]
    fn an_answer_a_little_past_the_percentile_is_not_hedged() {
        // Answers of 20 to 29 ms and no tail: the 95th percentile, 29 ms, is
        // an answer a few ms late, and a hedge then would be spent on it
        // (and taken from a tail later in the run).
        let recent = tailing(64, 0);
        assert_eq!(percentile(&sorted(&recent), 95), Some(29.0));
        let delay = auto_delay_ms(&recent).unwrap();
        assert!(delay >= 1.5 * 24.0, "{delay} ms");
        // A spread-out model keeps its percentile.
        let spread: Vec<f64> = (1..=100).map(|i| f64::from(i) * 10.0).collect();
        assert_eq!(auto_delay_ms(&spread), Some(950.0));
    }

    #[test]
    fn a_model_with_a_few_answers_is_hedged_too() {
        // A model the ranking seldom picks (a probe, a fallback, one that
        // just became the best): a few answers, one a tail.
        let delay = auto_delay_ms(&tailing(4, 1)).unwrap();
        assert!((40.0..100.0).contains(&delay), "{delay} ms");
        assert_eq!(
            auto_delay_ms(&[20.0, 2_500.0]),
            None,
            "two answers tell too little"
        );
    }

    fn sorted(xs: &[f64]) -> Vec<f64> {
        let mut v = xs.to_vec();
        v.sort_by(f64::total_cmp);
        v
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
