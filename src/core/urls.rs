//! URLs as llmroute shows them: never with their password, even when they
//! do not parse (a typo in the port must not print the password in the
//! error that reports it).

/// `url` with the password of its user part, if any, replaced by
/// `[redacted]`. Read as text, not parsed, so that it holds for any string
/// a user gave as a URL: the user part is what comes before the last `@`
/// of the authority (after `scheme://`, up to the first `/`, `?` or `#`),
/// and the password what follows its first `:`.
pub fn without_password(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[start..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let Some(at) = authority.rfind('@') else {
        return url.to_string();
    };
    let Some(colon) = authority[..at].find(':') else {
        return url.to_string();
    };
    if colon + 1 == at {
        // `user:@host`: an empty password, nothing to hide.
        return url.to_string();
    }
    let (from, to) = (start + colon + 1, start + at);
    format!("{}[redacted]{}", &url[..from], &url[to..])
}

/// `text` with the password of `url`'s user part, wherever it appears,
/// replaced by `[redacted]`: an error that quotes the URL shows none.
pub fn scrubbed(text: &str, url: &str) -> String {
    let shown = without_password(url);
    if shown == url {
        return text.to_string();
    }
    // The password is what `without_password` took out.
    let start = url.find("://").map_or(0, |i| i + 3);
    let colon = start + url[start..].find(':').unwrap_or(0);
    let at = start
        + url[start..]
            .find(['/', '?', '#'])
            .map_or(url.len() - start, |e| e);
    let at = start + url[start..at].rfind('@').unwrap_or(0);
    match url.get(colon + 1..at).filter(|p| !p.is_empty()) {
        Some(password) => text.replace(url, &shown).replace(password, "[redacted]"),
        None => text.replace(url, &shown),
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
