//! URLs as llmroute shows them: never with their password, even when they
//! do not parse (a typo in the port must not print the password in the
//! error that reports it).

/// Where the password of `url`'s user part is, if it has a non-empty one.
/// Read as text, not parsed, so that it holds for any string a user gave
/// as a URL: the user part is what comes before the last `@` of the
/// authority (after `scheme://`, up to the first `/`, `?` or `#`), and
/// the password what follows its first `:`.
fn password_at(url: &str) -> Option<std::ops::Range<usize>> {
    let start = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[start..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let at = authority.rfind('@')?;
    let colon = authority[..at].find(':')?;
    // `user:@host`: an empty password, nothing to hide.
    (colon + 1 < at).then(|| start + colon + 1..start + at)
}

/// What stands for a secret (a password, an API key) where a text held it.
pub const REDACTED: &str = "[redacted]";

/// `url` with the password of its user part, if any, replaced by
/// `[redacted]` ([`password_at`] says where it is).
pub fn without_password(url: &str) -> String {
    match password_at(url) {
        Some(p) => format!("{}[redacted]{}", &url[..p.start], &url[p.end..]),
        None => url.to_string(),
    }
}

/// Whether `base` can be an API's base URL: an http or https URL; an
/// error naming it (without its password) otherwise.
pub fn check_base(base: &str) -> Result<url::Url, String> {
    let base = base.trim_end_matches('/');
    let url = url::Url::parse(base)
        .map_err(|e| format!("invalid base URL '{}': {e}", without_password(base)))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "invalid base URL '{}': the scheme must be http or https",
            without_password(base)
        ));
    }
    Ok(url)
}

/// `text` with the password of `url`'s user part, wherever it appears,
/// replaced by `[redacted]`: an error that quotes the URL shows none.
pub fn scrubbed(text: &str, url: &str) -> String {
    match password_at(url) {
        Some(p) => text.replace(&url[p], "[redacted]"),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_quoting_a_url_shows_no_password() {
        let url = "http://bob:pw%40x@h.example:8/v1";
        let text = format!("error sending request for url ({url}/models): pw%40x");
        let out = scrubbed(&text, url);
        assert!(!out.contains("pw%40x"), "{out}");
        assert!(
            out.contains("http://bob:[redacted]@h.example:8/v1/models"),
            "{out}"
        );
        assert_eq!(scrubbed("plain", "http://h.example/v1"), "plain");
        assert_eq!(scrubbed("user:@h", "http://user:@h/v1"), "user:@h");
    }

    #[test]
    fn a_password_is_hidden_whether_or_not_the_url_parses() {
        for (given, shown) in [
            (
                "redis://u:hunter2@127.0.0.1:6379/0",
                "redis://u:[redacted]@127.0.0.1:6379/0",
            ),
            (
                "redis://u:hunter2@127.0.0.1:notaport/0",
                "redis://u:[redacted]@127.0.0.1:notaport/0",
            ),
            (
                "http://user:pw1234@127.0.0.1:badport/api/v1",
                "http://user:[redacted]@127.0.0.1:badport/api/v1",
            ),
            ("rediss://:pw@h/", "rediss://:[redacted]@h/"),
            // A password with an `@` or a `:` of its own is hidden whole.
            ("redis://u:p@ss:w@h:1/0", "redis://u:[redacted]@h:1/0"),
            ("u:secret@host:6379", "u:[redacted]@host:6379"),
        ] {
            assert_eq!(without_password(given), shown, "{given}");
            assert!(!without_password(given).contains("hunter2"));
        }
    }

    #[test]
    fn a_url_without_a_password_is_left_as_it_is() {
        for url in [
            "https://openrouter.ai/api/v1",
            "redis://127.0.0.1:6379/0",
            "redis://user@h/0",
            "redis://user:@h/0",
            "http://h/path@with:colon",
            "http://h?q=a:b@c",
            "not a url",
            "",
        ] {
            assert_eq!(without_password(url), url);
        }
    }
}
