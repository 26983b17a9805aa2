//! The readers of flag values: sizes, durations with their minimums,
//! amounts of USD, shares, weights, quality priors and hedging.

use std::time::Duration;

use crate::core::scoring::Weights;
use crate::engine::Hedge;

/// A `--prompt`: anything but empty or blank, which would be sent (and
/// paid for) as a question nobody asked.
pub fn prompt_text(s: &str) -> Result<String, String> {
    match s.trim().is_empty() {
        true => Err("the prompt is empty: there is nothing to ask".into()),
        false => Ok(s.to_string()),
    }
}

/// Reads a size: bytes, or a number with a unit (KiB, MiB, GiB, KB, MB, GB).
pub fn parse_size(s: &str) -> Result<u64, String> {
    s.trim()
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|_| format!("'{s}' is not a size, e.g. 16MiB"))
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::core::duration::parse(s)
}

/// The shortest `--timeout`: a shorter one fails every attempt.
pub const MIN_TIMEOUT: Duration = Duration::from_millis(100);
/// The shortest `--retention`: a shorter one would prune the metrics of a
/// request as it is recorded. (A batch run with a retention shorter than
/// itself prunes its own first rows after it: what was asked for.)
pub const MIN_RETENTION: Duration = Duration::from_secs(60);

/// Checks a duration against its minimum; the message names the minimum.
pub fn at_least(d: Duration, min: Duration) -> Result<Duration, String> {
    if d < min {
        return Err(format!(
            "must be at least {}",
            crate::core::duration::format(min)
        ));
    }
    Ok(d)
}

pub(super) fn parse_timeout(s: &str) -> Result<Duration, String> {
    at_least(parse_duration(s)?, MIN_TIMEOUT).map_err(|e| format!("--timeout {e}"))
}

/// `--deadline`: as short as `--timeout` may be; a shorter one fails
/// every request.
pub(super) fn parse_deadline(s: &str) -> Result<Duration, String> {
    at_least(parse_duration(s)?, MIN_TIMEOUT)
}

/// The smallest `--max-body`: a smaller cap refuses any chat request.
pub const MIN_MAX_BODY: u64 = 1024;

/// `--max-body`: at least [`MIN_MAX_BODY`].
pub(super) fn parse_max_body(s: &str) -> Result<u64, String> {
    match parse_size(s)? {
        n if n < MIN_MAX_BODY => Err("must be at least 1KiB".into()),
        n => Ok(n),
    }
}

/// `--grade-timeout`: as short as `--timeout` may be, since a shorter one
/// gives no grader time to start.
pub(super) fn parse_grade_timeout(s: &str) -> Result<Duration, String> {
    at_least(parse_duration(s)?, MIN_TIMEOUT)
}

/// A command for `sh -c`: not blank, which would grade nothing.
pub(super) fn parse_command(s: &str) -> Result<String, String> {
    match s.trim().is_empty() {
        true => Err("the command is empty".into()),
        false => Ok(s.to_string()),
    }
}

pub(super) fn parse_retention(s: &str) -> Result<Duration, String> {
    at_least(parse_duration(s)?, MIN_RETENTION).map_err(|e| format!("--retention {e}"))
}

pub(super) fn parse_usd(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .trim_start_matches('$')
        .parse()
        .map_err(|_| format!("'{s}' is not an amount of USD"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("'{s}' is not a non-negative amount of USD"));
    }
    Ok(v)
}

pub(super) fn parse_hedge(s: &str) -> Result<Hedge, String> {
    match s.trim() {
        "auto" => Ok(Hedge::Auto),
        "off" => Ok(Hedge::Off),
        d => crate::core::duration::parse(d)
            .map(Hedge::After)
            .map_err(|e| format!("{e} (or auto, off)")),
    }
}

pub(super) fn parse_share(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("'{s}' is not a share between 0 and 1, e.g. 0.05")),
    }
}

pub(super) fn parse_weights(s: &str) -> Result<Weights, String> {
    Weights::parse(s).map_err(|e| e.to_string())
}

pub(super) fn parse_quality(s: &str) -> Result<super::QualityList, String> {
    crate::core::quality::parse_overrides(s).map(super::QualityList)
}

/// The last `--color WHEN` or `--color=WHEN` before `--`, if any.
pub(super) fn color_flag(args: &[std::ffi::OsString]) -> Option<super::ColorWhen> {
    let mut found = None;
    let mut args = args.iter().skip(1).map(|a| a.to_str().unwrap_or(""));
    while let Some(arg) = args.next() {
        let value = match arg {
            "--" => break,
            "--color" => args.next(),
            _ => arg.strip_prefix("--color="),
        };
        if let Some(v) = value {
            found = <super::ColorWhen as clap::ValueEnum>::from_str(v, true)
                .ok()
                .or(found);
        }
    }
    found
}
