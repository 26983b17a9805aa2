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
        return Ok(Duration::from_secs_f64(secs));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("invalid duration '{s}': {e} (try 500ms, 30s, 2m, 7d)"))
}

/// Formats a duration compactly (`90d`, `45s`, `1h 30m`), in a form
/// [`parse`] reads back.
pub fn format(d: Duration) -> String {
    let ms = d.as_millis() as u64;
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn rejects_garbage() {
        assert!(parse("").is_err());
        assert!(parse("-1").is_err());
        assert!(parse("soon").is_err());
        assert!(parse("NaN").is_err());
    }
}
