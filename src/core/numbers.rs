//! Numbers as people read them. Sums of float costs carry noise
//! (`0.020560000000000002`, `3.5999999999999994e-5`): it goes when a number
//! is written out, never from the sums kept, so that rounding never adds up.
//!
//! - Costs in JSON and Prometheus keep [`USD_DIGITS`] significant digits.
//! - Costs in text keep three significant digits ([`usd`]).
//! - Milliseconds have three decimals at most ([`round_ms`]).
//! - A count names its thing in the singular when there is one ([`counted`]).

/// Significant digits of a cost written for machines.
pub const USD_DIGITS: usize = 6;

/// A score or a quality as shown: to 4 decimals, so that the tie-break a
/// millionth in size, which can take a best score a hair past 1, shows
/// neither as noise nor past the [0, 1] a score is documented in.
pub fn round_score(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// A millisecond figure to the microsecond: 3 decimals at most.
pub fn round_ms(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}

/// `x` to [`USD_DIGITS`] significant digits: `0.020560000000000002` is
/// `0.02056`. Zero, and what is not finite, stay as they are.
pub fn round_usd(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    format!("{x:.*e}", USD_DIGITS - 1).parse().unwrap_or(x)
}

/// Serialises a cost with [`round_usd`], for `#[serde(serialize_with)]`.
pub fn serialize_usd<S: serde::Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(round_usd(*x))
}

/// Serialises a cost that may be unknown with [`round_usd`].
pub fn serialize_usd_opt<S: serde::Serializer>(x: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match x {
        Some(x) => s.serialize_some(&round_usd(*x)),
        None => s.serialize_none(),
    }
}

/// A cost for people: `$0.0123`, `$0.000036`, `$3.46`, `$1234`; three
/// significant digits under a dollar, and at least two decimals.
pub fn usd(x: f64) -> String {
    if x == 0.0 {
        "$0".into()
    } else if x.abs() >= 100.0 {
        format!("${x:.0}")
    } else if x.abs() >= 1.0 {
        format!("${x:.2}")
    } else {
        let digits = (-x.abs().log10()).floor().max(0.0) as usize + 3;
        let s = format!("{x:.digits$}");
        let s = s.trim_end_matches('0');
        let decimals = s.split_once('.').map_or(0, |(_, d)| d.len());
        format!("${s}{}", "0".repeat(2usize.saturating_sub(decimals)))
    }
}

/// A size for people, in the largest binary unit it reaches: `312 B`,
/// `5.2 KiB`, `1.0 MiB`, `2.3 GiB`.
pub fn bytes(n: u64) -> String {
    let units = [(1u64 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    match units.iter().find(|(unit, _)| n >= *unit) {
        Some((unit, name)) => format!("{:.1} {name}", n as f64 / *unit as f64),
        None => format!("{n} B"),
    }
}

/// `n` and its thing, in the singular for one: `1 line`, `3 lines`.
/// `thing` is the singular, which takes an `s` in the plural.
pub fn counted(n: u64, thing: &str) -> String {
    format!("{n} {thing}{}", if n == 1 { "" } else { "s" })
}

/// A rate per second for people: one decimal under 10, whole above.
pub fn per_second(rate: f64) -> String {
    if !rate.is_finite() || rate < 0.0 {
        "0/s".into()
    } else if rate < 9.95 {
        format!("{rate:.1}/s")
    } else {
        format!("{rate:.0}/s")
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn sizes_are_in_the_largest_unit_they_reach() {
        assert_eq!(bytes(312), "312 B");
        assert_eq!(bytes(5_300), "5.2 KiB");
        assert_eq!(bytes(1 << 20), "1.0 MiB");
        assert_eq!(bytes(5 << 29), "2.5 GiB");
    }
    use super::*;

    #[test]
    fn scores_show_four_decimals_and_stay_within_one() {
        assert_eq!(round_score(1.000_000_3), 1.0);
        assert_eq!(round_score(0.694_812), 0.6948);
    }

    #[test]
    fn milliseconds_keep_three_decimals() {
        assert_eq!(round_ms(0.630_408_000_000_000_1), 0.63);
        assert_eq!(round_ms(8.395_707_944_799_998), 8.396);
        assert_eq!(round_ms(12.0), 12.0);
    }

    #[test]
    fn costs_lose_their_noise_and_keep_six_digits() {
        assert_eq!(round_usd(0.020_560_000_000_000_002), 0.02056);
        assert_eq!(round_usd(3.599_999_999_999_999_4e-5), 3.6e-5);
        assert_eq!(round_usd(1.724_799_999_999_999_8e-5), 1.7248e-5);
        assert_eq!(round_usd(123.456_789), 123.457);
        assert_eq!(round_usd(0.0), 0.0);
        assert!(round_usd(f64::NAN).is_nan());
        assert_eq!(
            serde_json::to_string(&round_usd(0.000_107_999_999_999_999_98)).unwrap(),
            "0.000108"
        );
    }

    #[test]
    fn costs_for_people_keep_three_significant_digits() {
        assert_eq!(usd(0.0), "$0");
        assert_eq!(usd(0.5), "$0.50");
        assert_eq!(usd(0.0123), "$0.0123");
        assert_eq!(usd(0.000_012), "$0.000012");
        assert_eq!(usd(0.000_237_999_999_999_999_98), "$0.000238");
        assert_eq!(usd(3.456), "$3.46");
        assert_eq!(usd(1234.5), "$1234");
    }

    #[test]
    fn one_is_singular() {
        assert_eq!(counted(1, "line"), "1 line");
        assert_eq!(counted(0, "line"), "0 lines");
        assert_eq!(counted(2, "model"), "2 models");
    }

    #[test]
    fn rates_keep_one_decimal_under_ten() {
        assert_eq!(per_second(5.354_5), "5.4/s");
        assert_eq!(per_second(49.509_4), "50/s");
        assert_eq!(per_second(0.0), "0.0/s");
        assert_eq!(per_second(f64::INFINITY), "0/s");
    }
}
