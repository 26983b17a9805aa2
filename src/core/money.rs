//! Sums of dollars as messages show them.

/// A sum of dollars as people read it: `$0.0012`, `$1.25`, `$0` — six
/// significant digits at most, without a float's noise.
pub fn usd(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return "$0".into();
    }
    let digits = (5 - x.abs().log10().floor() as i32).clamp(2, 12) as usize;
    let text = format!("{x:.digits$}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("${text}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollars_read_without_float_noise() {
        assert_eq!(usd(0.020560000000000002), "$0.02056");
        assert_eq!(usd(1.7247999999999998e-05), "$0.000017248");
        assert_eq!(usd(0.001), "$0.001");
        assert_eq!(usd(12.5), "$12.5");
        assert_eq!(usd(0.0), "$0");
    }
}
