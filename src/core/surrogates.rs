//! JSON with a lone UTF-16 surrogate escape (`"\ud83d"`: half an emoji,
//! cut by a tool that counts UTF-16 units). JSON's grammar allows it, and
//! Python and JavaScript write it, but it is no character: serde_json
//! refuses the text whole. [`mended`] replaces each lone one with
//! `\ufffd`, the replacement character, as a UTF-8 decoder does with a
//! broken byte, so that one broken character does not lose a line, a
//! request or a paid answer. It is only tried once a parse has failed.

/// `json` with every lone surrogate escape replaced by `\ufffd` (an escape
/// of the same length); None when it has none, so a parse that failed
/// failed for another reason.
pub fn mended(json: &[u8]) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    let mut i = 0;
    while i < json.len() {
        if json[i] != b'\\' {
            i += 1;
            continue;
        }
        let Some(unit) = escape_at(json, i) else {
            // `\\`, `\"`, `\n`...: the escaped byte is no escape's start.
            i += 2;
            continue;
        };
        let next = escape_at(json, i + 6);
        let lone = match unit {
            0xD800..=0xDBFF => match next {
                Some(0xDC00..=0xDFFF) => {
                    // A whole pair: both escapes stay.
                    i += 12;
                    continue;
                }
                _ => true,
            },
            0xDC00..=0xDFFF => true,
            _ => false,
        };
        if lone {
            out.get_or_insert_with(|| json.to_vec())[i..i + 6].copy_from_slice(b"\\ufffd");
        }
        i += 6;
    }
    out
}

/// Parses `json`, mended if it fails for a lone surrogate escape; the
/// error is the first parse's.
pub fn from_slice<T: serde::de::DeserializeOwned>(json: &[u8]) -> serde_json::Result<T> {
    serde_json::from_slice(json).or_else(|e| {
        mended(json)
            .and_then(|m| serde_json::from_slice(&m).ok())
            .ok_or(e)
    })
}

/// [`from_slice`] of a text known to be UTF-8, which serde_json reads
/// without checking it again.
pub fn from_str<T: serde::de::DeserializeOwned>(json: &str) -> serde_json::Result<T> {
    serde_json::from_str(json).or_else(|e| {
        mended(json.as_bytes())
            .and_then(|m| serde_json::from_slice(&m).ok())
            .ok_or(e)
    })
}

/// The UTF-16 unit of the `\uXXXX` escape at `i`, if one is there.
fn escape_at(json: &[u8], i: usize) -> Option<u16> {
    let e = json.get(i..i + 6)?;
    if e[0] != b'\\' || e[1] != b'u' {
        return None;
    }
    let hex = std::str::from_utf8(&e[2..]).ok()?;
    u16::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mend(s: &str) -> Option<String> {
        mended(s.as_bytes()).map(|b| String::from_utf8(b).unwrap())
    }

    #[test]
    fn a_lone_surrogate_becomes_the_replacement_character() {
        assert_eq!(
            mend(r#"{"a":"x\ud83d y"}"#).as_deref(),
            Some(r#"{"a":"x\ufffd y"}"#)
        );
        assert_eq!(
            mend(r#"["\uDE00","\ud83d\u0041"]"#).as_deref(),
            Some(r#"["\ufffd","\ufffd\u0041"]"#)
        );
        let v: serde_json::Value =
            serde_json::from_str(&mend(r#"{"a":"\ud800"}"#).unwrap()).unwrap();
        assert_eq!(v["a"], "\u{fffd}");
    }

    #[test]
    fn whole_pairs_escaped_backslashes_and_plain_text_are_left_alone() {
        assert_eq!(mend(r#"{"a":"\ud83d\ude00"}"#), None);
        assert_eq!(mend(r#"{"a":"\\ud800"}"#), None);
        assert_eq!(mend(r#"{"a":"\u00e9 \n \" \\"}"#), None);
        assert_eq!(mend(r#"{"a":"\ud8"}"#), None);
        assert_eq!(mend(""), None);
        // A pair's low half is not taken for a lone one.
        assert_eq!(
            mend(r#""\ud83d\ude00\ude00""#).as_deref(),
            Some(r#""\ud83d\ude00\ufffd""#)
        );
    }
}
