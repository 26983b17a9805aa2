//! Durations as people write them: `500ms`, `30s`, `2m`, `7d`, or a bare
//! number of seconds (`90`, `1.5`).

use std::time::Duration;

/// Parses a humantime duration or a bare (possibly fractional) number of seconds.
pub fn parse(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(secs) = s.parse::<f64>() {
        if !secs.is_finite() || secs < 0.0 {
            return Err(format!(
                "invalid duration '{s}': must be a non-negative number of seconds"
            ));
        }
        return Duration::try_from_secs_f64(secs)
            .map_err(|_| format!("invalid duration '{s}': too large"));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("invalid duration '{s}': {e} (try 500ms, 30s, 2m, 7d)"))
}

/// A duration in whole milliseconds, at most `i64::MAX` (some 292 million
/// years): what unix-ms arithmetic takes without overflow.
pub fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The unix ms `d` before `now_ms`, saturating: a duration longer than
/// time itself reaches back to the earliest time, never wraps.
pub fn before(now_ms: i64, d: Duration) -> i64 {
    now_ms.saturating_sub(millis(d))
}

/// A duration in the one unit that says it exactly: `24h`, `7d`, `90m`,
/// `45s`, `1500ms`. Whole days are kept in hours up to a day (`24h`).
pub fn window_label(d: Duration) -> String {
    const UNITS: [(u128, &str); 4] = [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1_000, "s"),
    ];
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    for (size, unit) in UNITS {
        if ms.is_multiple_of(size) && (unit != "d" || ms / size >= 2) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// Formats a duration compactly (`90d`, `45s`, `1h 30m`), in a form
/// [`parse`] reads back.
pub fn format(d: Duration) -> String {
    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    for (unit, len) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if ms >= len && ms % len == 0 {
            return format!("{}{unit}", ms / len);
        }
    }
    // Whole milliseconds keep humantime from printing nanoseconds.
    humantime::format_duration(Duration::from_millis(ms)).to_string()
}

/// Whole seconds, rounded up and at least 1, as `Retry-After` gives a
/// wait: a retry sooner would find it not over.
pub fn secs_up(d: Duration) -> u64 {
    u64::try_from(d.as_millis().div_ceil(1000).max(1)).unwrap_or(u64::MAX)
}

/// A duration for people, rounded to what matters at its size: to the
/// millisecond under 10 s (`9s 967ms`, `850ms`), to the second under an
/// hour (`1m 20s`), to the minute under a day (`2h 5m`), else to the hour
/// (`3d 4h`). Zero units are left out; the form [`parse`] reads back.
pub fn human(d: Duration) -> String {
    const SECOND: u128 = 1000;
    const MINUTE: u128 = 60 * SECOND;
    const HOUR: u128 = 60 * MINUTE;
    const DAY: u128 = 24 * HOUR;
    let ms = d.as_millis();
    let step = match ms {
        x if x < 10 * SECOND => 1,
        x if x < HOUR => SECOND,
        x if x < DAY => MINUTE,
        _ => HOUR,
    };
    let mut left = (ms + step / 2) / step * step;
    if left == 0 {
        return "0s".into();
    }
    let mut parts = Vec::new();
    for (size, unit) in [
        (DAY, "d"),
        (HOUR, "h"),
        (MINUTE, "m"),
        (SECOND, "s"),
        (1, "ms"),
    ] {
        if left >= size {
            parts.push(format!("{}{unit}", left / size));
            left %= size;
        }
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_round_up_to_one_at_least() {
        assert_eq!(secs_up(Duration::ZERO), 1);
        assert_eq!(secs_up(Duration::from_millis(9_200)), 10);
        assert_eq!(secs_up(Duration::from_secs(40)), 40);
    }

    #[test]
    fn bare_numbers_are_seconds() {
        assert_eq!(parse("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse("0").unwrap(), Duration::ZERO);
    }

    #[test]
    fn humantime_forms() {
        assert_eq!(parse("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse("7d").unwrap(), Duration::from_secs(7 * 86400));
        assert_eq!(parse("1h 30m").unwrap(), Duration::from_secs(5400));
    }

    #[test]
    fn formats_compactly_and_round_trips() {
        for (d, text) in [
            (Duration::from_secs(90 * 86400), "90d"),
            (Duration::from_secs(60), "1m"),
            (Duration::from_secs(45), "45s"),
            (Duration::from_millis(500), "500ms"),
            (Duration::from_secs(5400), "90m"),
            (Duration::from_millis(1500), "1s 500ms"),
        ] {
            assert_eq!(format(d), text);
            assert_eq!(parse(text).unwrap(), d);
        }
    }

    #[test]
    fn durations_for_people_round_to_what_matters() {
        let ms = Duration::from_millis;
        for (d, text) in [
            (ms(0), "0s"),
            (ms(850), "850ms"),
            (ms(9_967), "9s 967ms"),
            (ms(79_967), "1m 20s"),
            (ms(79_400), "1m 19s"),
            (ms(60_000), "1m"),
            (ms(3_599_700), "1h"),
            (ms(7_529_000), "2h 5m"),
            (ms(90 * 86_400_000 + 5_000_000), "90d 1h"),
        ] {
            assert_eq!(human(d), text, "{d:?}");
            parse(text).unwrap();
        }
        assert!(!human(Duration::MAX).is_empty());
    }

    #[test]
    fn huge_durations_saturate_or_are_refused() {
        assert!(parse("1e30").unwrap_err().contains("too large"));
        let huge = parse("1000000000y").unwrap();
        assert_eq!(millis(huge), i64::MAX);
        assert_eq!(before(1_000, huge), 1_000 - i64::MAX);
        assert_eq!(before(i64::MIN + 5, Duration::from_millis(10)), i64::MIN);
        assert_eq!(before(1_000, Duration::from_millis(10)), 990);
        assert!(!format(Duration::MAX).is_empty());
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse("").is_err());
        assert!(parse("-1").is_err());
        assert!(parse("soon").is_err());
        assert!(parse("NaN").is_err());
    }
}
