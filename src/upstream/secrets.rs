//! What an upstream is sent that must never be kept or shown, though the
//! upstream may echo it back (in an error body, an answer, an event): its
//! API key, and the user and password of a base URL, which go as Basic
//! authorisation.

use std::sync::Arc;

use base64::Engine as _;

use crate::core::urls::REDACTED;

/// A key or password shorter than this is not blanked out inside other
/// words (a password only as part of its Basic credentials): a short word
/// would be cut out of every answer that happened to hold it. A short key
/// is blanked out where it stands as a word of its own.
const MIN_ALONE: usize = 8;

/// A secret this long or longer is a real key: a name that holds it was
/// given a key by mistake. Shorter keys (`anthropic`, `sk-1234`) are the
/// kind local servers take for form's sake, and model names hold them.
const KEY_LIKE: usize = 16;

/// Keys local servers are given for form's sake, never blanked out: as
/// words they are everywhere (`none`, `x`, `EMPTY`), and they guard nothing.
const PLACEHOLDERS: [&str; 12] = [
    "empty",
    "none",
    "null",
    "x",
    "-",
    "dummy",
    "fake",
    "ollama",
    "vllm",
    "lm-studio",
    "no-key",
    "sk-no-key-required",
];

/// The secrets of one upstream, longest first (so that one holding another
/// is blanked out whole), and short keys, blanked out only as words of
/// their own (not inside another word).
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    whole: Arc<[String]>,
    words: Arc<[String]>,
    /// Those of `whole` of [`KEY_LIKE`] characters or more, in lower case:
    /// what [`Secrets::holds_key`] looks for, once a request.
    keys: Arc<[String]>,
}

/// Whether `key` is one a local server takes for form's sake: one of
/// [`PLACEHOLDERS`], two characters or fewer, or a word (letters alone,
/// shorter than a real key: `anthropic`, `notneeded`), which model names
/// and answers hold.
fn placeholder(key: &str) -> bool {
    let n = key.chars().count();
    n <= 2
        || PLACEHOLDERS.iter().any(|p| p.eq_ignore_ascii_case(key))
        || (n < KEY_LIKE && key.chars().all(|c| c.is_ascii_alphabetic()))
}

/// Whether `c` may be part of a word a short key would be cut out of.
fn in_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '-'
}

/// Where `word` stands as a word of its own in `text`.
fn as_word<'t>(text: &'t str, word: &'t str) -> impl Iterator<Item = usize> + 't {
    text.match_indices(word)
        .map(|(at, _)| at)
        .filter(move |at| {
            let before = text[..*at].chars().next_back();
            let after = text[at + word.len()..].chars().next();
            !before.is_some_and(in_word) && !after.is_some_and(in_word)
        })
}

impl Secrets {
    /// The key, and the credentials of `url`'s user and password.
    pub fn new(api_key: Option<&str>, url: &url::Url) -> Secrets {
        let key = api_key
            .map(|k| k.trim().to_string())
            .filter(|k| !placeholder(k));
        let (mut all, words): (Vec<String>, Vec<String>) =
            key.into_iter().partition(|k| k.len() >= MIN_ALONE);
        if let Some(password) = url.password() {
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            let (user, password) = (decode(url.username()), decode(password));
            let basic =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            all.push(basic);
            if password.len() >= MIN_ALONE {
                all.push(password);
            }
        }
        all.sort_by_key(|s| std::cmp::Reverse(s.len()));
        all.dedup();
        Secrets::of(all, words)
    }

    /// Of the secrets blanked out whole and those blanked out as words.
    fn of(whole: Vec<String>, words: Vec<String>) -> Secrets {
        let keys: Vec<String> = (whole.iter())
            .filter(|s| s.chars().count() >= KEY_LIKE)
            .map(|s| s.to_ascii_lowercase())
            .collect();
        Secrets {
            whole: whole.into(),
            words: words.into(),
            keys: keys.into(),
        }
    }

    /// Whether `text` holds any of them.
    pub fn in_text(&self, text: &str) -> bool {
        self.whole.iter().any(|s| text.contains(s.as_str()))
            || self.words.iter().any(|w| as_word(text, w).next().is_some())
    }

    /// `text` with each of them replaced by `[redacted]`; None when it
    /// holds none.
    pub fn scrub(&self, text: &str) -> Option<String> {
        if !self.in_text(text) {
            return None;
        }
        let mut out = text.to_string();
        for s in self.whole.iter() {
            out = out.replace(s.as_str(), REDACTED);
        }
        for w in self.words.iter() {
            let at: Vec<usize> = as_word(&out, w).collect();
            for i in at.into_iter().rev() {
                out.replace_range(i..i + w.len(), REDACTED);
            }
        }
        Some(out)
    }

    /// [`Secrets::scrub`] of what is shown back or logged rather than
    /// answered: a key in another case counts, and a text whose
    /// percent-decoded form (a path) holds a key is shown decoded.
    pub fn scrub_shown(&self, text: &str) -> Option<String> {
        let decoded = percent_encoding::percent_decode_str(text).decode_utf8_lossy();
        let lower = decoded.to_ascii_lowercase();
        let spelt = |s: &String| lower.contains(&s.to_ascii_lowercase());
        if !self.whole.iter().any(spelt) {
            return self.scrub(text);
        }
        // ASCII case leaves every byte where it was.
        let mut out = decoded.into_owned();
        for s in self.whole.iter() {
            let needle = s.to_ascii_lowercase();
            let at: Vec<usize> = (out.to_ascii_lowercase().match_indices(&needle))
                .map(|(i, _)| i)
                .collect();
            for i in at.into_iter().rev() {
                out.replace_range(i..i + s.len(), REDACTED);
            }
        }
        Some(self.scrubbed(out))
    }

    /// [`Secrets::scrub`], or `text` as it was.
    pub fn scrubbed(&self, text: String) -> String {
        self.scrub(&text).unwrap_or(text)
    }

    /// `body` (JSON) with each of them replaced in every string, as JSON
    /// holds it (escapes decoded); not JSON, replaced as text.
    pub fn scrub_json(&self, body: &str) -> String {
        self.scrub_json_changed(body)
            .unwrap_or_else(|| body.to_string())
    }

    /// [`Secrets::scrub_json`], or None when `body` holds none.
    pub fn scrub_json_changed(&self, body: &str) -> Option<String> {
        fn walk(v: &mut serde_json::Value, s: &Secrets, changed: &mut bool) {
            match v {
                serde_json::Value::String(t) => {
                    if let Some(clean) = s.scrub(t) {
                        *t = clean;
                        *changed = true;
                    }
                }
                serde_json::Value::Array(a) => a.iter_mut().for_each(|v| walk(v, s, changed)),
                serde_json::Value::Object(o) => o.values_mut().for_each(|v| walk(v, s, changed)),
                _ => {}
            }
        }
        match serde_json::from_str::<serde_json::Value>(body) {
            Ok(mut v) => {
                let mut changed = false;
                walk(&mut v, self, &mut changed);
                let text = v.to_string();
                // Keys (of an object) are text too.
                match self.scrub(&text) {
                    Some(clean) => Some(clean),
                    None => changed.then_some(text),
                }
            }
            Err(_) => self.scrub(body),
        }
    }

    /// Whether `text` holds a secret of [`KEY_LIKE`] characters or more,
    /// in any case (a key in capitals spells it as well).
    pub fn holds_key(&self, text: &str) -> bool {
        if self.keys.is_empty() || text.len() < KEY_LIKE {
            return false;
        }
        let text = text.to_ascii_lowercase();
        self.keys.iter().any(|k| text.contains(k.as_str()))
    }

    pub fn is_empty(&self) -> bool {
        self.whole.is_empty() && self.words.is_empty()
    }

    /// These and `other`'s: an upstream's answer may echo another's key
    /// (a prompt that held it, sent to the one that answered).
    pub fn with(&self, other: &Secrets) -> Secrets {
        let join = |a: &[String], b: &[String]| {
            let mut all: Vec<String> = a.iter().chain(b).cloned().collect();
            all.sort_by(|x, y| y.len().cmp(&x.len()).then_with(|| x.cmp(y)));
            all.dedup();
            all
        };
        Secrets::of(
            join(&self.whole, &other.whole),
            join(&self.words, &other.words),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_url_s_credentials_are_secrets_as_sent_and_alone() {
        let url = url::Url::parse("http://alice:pw-TOPSECRET9@127.0.0.1:1/v1").unwrap();
        let s = Secrets::new(Some("sk-key-42"), &url);
        // base64("alice:pw-TOPSECRET9"), as Basic authorisation sends it.
        let echoed = "got Basic YWxpY2U6cHctVE9QU0VDUkVUOQ== and pw-TOPSECRET9 and sk-key-42";
        assert_eq!(
            s.scrub(echoed).unwrap(),
            "got Basic [redacted] and [redacted] and [redacted]"
        );
        assert_eq!(s.scrub("nothing here"), None);
    }

    #[test]
    fn a_short_password_is_blanked_out_only_with_its_user() {
        let url = url::Url::parse("http://dave:pw@127.0.0.1:1").unwrap();
        let s = Secrets::new(None, &url);
        assert_eq!(s.scrub("a pw here"), None);
        assert_eq!(s.scrub("Basic ZGF2ZTpwdw==").unwrap(), "Basic [redacted]");
    }

    #[test]
    fn a_short_key_is_blanked_out_only_as_a_word_of_its_own() {
        let url = url::Url::parse("http://127.0.0.1:1/v1").unwrap();
        let s = Secrets::new(Some("sk-1234"), &url);
        assert_eq!(
            s.scrub("bad key sk-1234, try again").unwrap(),
            "bad key [redacted], try again"
        );
        assert_eq!(s.scrub("ask-12345 and sk-1234x"), None);
    }

    #[test]
    fn secrets_joined_blank_out_each_other_s() {
        let url = url::Url::parse("http://127.0.0.1:1/v1").unwrap();
        let a = Secrets::new(Some("sk-or-SECRETKEY123456"), &url);
        let b = Secrets::new(Some("DIRECTKEY-abcdef123456"), &url);
        let c = Secrets::new(Some("sk-1234"), &url);
        let all = a.with(&b).with(&c).with(&a);
        assert_eq!(
            all.scrub("sk-or-SECRETKEY123456, DIRECTKEY-abcdef123456, sk-1234 and sk-12345")
                .unwrap(),
            "[redacted], [redacted], [redacted] and sk-12345"
        );
        assert_eq!(a.scrub("DIRECTKEY-abcdef123456"), None);
    }

    #[test]
    fn a_placeholder_key_leaves_answers_alone() {
        // What local servers take: any word, often a letter or `EMPTY`.
        let url = url::Url::parse("http://127.0.0.1:1/v1").unwrap();
        for key in ["x", "e", "EMPTY", "ollama", "anthropic", "NotNeeded"] {
            let s = Secrets::new(Some(key), &url);
            let body = r#"{"index":0,"model":"anthropic/claude-x","content":"EMPTY ollama notneeded text"}"#;
            assert_eq!(s.scrub(body), None, "{key}");
            let parsed = |t: &str| serde_json::from_str::<serde_json::Value>(t).unwrap();
            assert_eq!(parsed(&s.scrub_json(body)), parsed(body), "{key}");
        }
    }
}
