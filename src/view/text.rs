//! Numbers and text for people, in a page: escaped, grouped, priced.

/// `s` safe in HTML text and attribute values, the characters that hide
/// or reorder text written as escapes ([`printable`]).
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if is_hidden(c) => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out
}

/// Whether `c` hides or moves text: a control character, or a
/// bidirectional override or isolate, or a zero-width mark.
pub fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061c}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

/// `s` as a label value of Prometheus's text exposition: backslash,
/// double quote and line feed escaped, as the format asks, so that no
/// name can end a label or a line.
pub fn label_value(s: &str) -> String {
    // Model names hold none of them: a copy, not a walk, on each request.
    if !s.contains(['\\', '"', '\n']) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// `s` safe in a line of a terminal: control characters, and the
/// invisible ones that reorder or hide text (bidirectional overrides and
/// isolates, zero-width marks), written as escapes, so that a name cannot
/// break a line or show itself as something else.
pub fn printable(s: &str) -> String {
    if !s.chars().any(is_hidden) {
        return s.to_string();
    }
    s.chars()
        .map(|c| match is_hidden(c) {
            true => c.escape_default().to_string(),
            false => c.to_string(),
        })
        .collect()
}

/// The last millisecond humantime can write (9999-12-31T23:59:59.999Z).
const LAST_MS: i64 = 253_402_300_799_999;

/// A unix time in ms as RFC 3339 to the second, `2026-11-29T11:40:56Z`;
/// times before 1970 or after 9999 are written as those bounds.
pub fn rfc3339(ms: i64) -> String {
    let ms = ms.clamp(0, LAST_MS) as u64;
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// `1234567` as `1,234,567`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A cost for an axis or a table: `$0.0123`.
pub use crate::core::numbers::usd;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_cannot_hide_or_reorder_itself_in_a_page() {
        assert_eq!(esc("m/\u{202e}<b>"), "m/\\u{202e}&lt;b&gt;");
        assert_eq!(esc("é 模型"), "é 模型");
    }

    #[test]
    fn a_name_cannot_hide_or_reorder_itself_in_a_terminal() {
        assert_eq!(printable("openai/gpt-5.4"), "openai/gpt-5.4");
        assert_eq!(printable("m/\u{202e}txt.exe"), "m/\\u{202e}txt.exe");
        assert_eq!(printable("a\nb\u{200b}c"), "a\\nb\\u{200b}c");
        assert_eq!(printable("é/ü 模型"), "é/ü 模型");
    }

    #[test]
    fn any_time_can_be_written() {
        assert_eq!(rfc3339(1_700_000_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(-5), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(i64::MAX), "9999-12-31T23:59:59Z");
        // Microseconds taken for milliseconds: a time after the year 9999.
        assert_eq!(rfc3339(1_700_000_000_000_000), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn text_is_escaped_and_counts_grouped() {
        assert_eq!(
            esc(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(1_234_567), "1,234,567");
    }
}
