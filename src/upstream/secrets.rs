//! What an upstream is sent that must never be kept or shown, though the
//! upstream may echo it back (in an error body, an answer, an event): its
//! API key, and the user and password of a base URL, which go as Basic
//! authorisation.

use std::sync::Arc;

use base64::Engine as _;

/// What stands for a secret where a text held it.
pub const REDACTED: &str = "[redacted]";

/// A key or password shorter than this is not blanked out on its own (a
/// password only as part of its Basic credentials): a short word would be
/// cut out of every answer that happened to hold it. Keys that short are
/// the placeholders local servers take (`EMPTY`, `x`), not secrets; any
/// key a provider issues is far longer.
const MIN_ALONE: usize = 8;

/// The secrets of one upstream, longest first (so that one holding another
/// is blanked out whole).
#[derive(Debug, Clone, Default)]
pub struct Secrets(Arc<[String]>);

impl Secrets {
    /// The key, and the credentials of `url`'s user and password.
    pub fn new(api_key: Option<&str>, url: &url::Url) -> Secrets {
        let mut all: Vec<String> = api_key
            .map(|k| k.trim().to_string())
            .filter(|k| k.len() >= MIN_ALONE)
            .into_iter()
            .collect();
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
        Secrets(all.into())
    }

    /// Whether `text` holds any of them.
    pub fn in_text(&self, text: &str) -> bool {
        self.0.iter().any(|s| text.contains(s.as_str()))
    }

    /// `text` with each of them replaced by `[redacted]`; None when it
    /// holds none.
    pub fn scrub(&self, text: &str) -> Option<String> {
        if !self.in_text(text) {
            return None;
        }
        let mut out = text.to_string();
        for s in self.0.iter() {
            out = out.replace(s.as_str(), REDACTED);
        }
        Some(out)
    }

    /// [`Secrets::scrub`], or `text` as it was.
    pub fn scrubbed(&self, text: String) -> String {
        self.scrub(&text).unwrap_or(text)
    }

    /// `body` (JSON) with each of them replaced in every string, as JSON
    /// holds it (escapes decoded); not JSON, replaced as text.
    pub fn scrub_json(&self, body: &str) -> String {
        fn walk(v: &mut serde_json::Value, s: &Secrets) {
            match v {
                serde_json::Value::String(t) => {
                    if let Some(clean) = s.scrub(t) {
                        *t = clean;
                    }
                }
                serde_json::Value::Array(a) => a.iter_mut().for_each(|v| walk(v, s)),
                serde_json::Value::Object(o) => o.values_mut().for_each(|v| walk(v, s)),
                _ => {}
            }
        }
        match serde_json::from_str::<serde_json::Value>(body) {
            Ok(mut v) => {
                walk(&mut v, self);
                self.scrubbed(v.to_string())
            }
            Err(_) => self.scrubbed(body.to_string()),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
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
    fn a_placeholder_key_leaves_answers_alone() {
        // What local servers take: any word, often a letter or `EMPTY`.
        let url = url::Url::parse("http://127.0.0.1:1/v1").unwrap();
        for key in ["x", "e", "EMPTY", "ollama"] {
            let s = Secrets::new(Some(key), &url);
            let body = r#"{"index":0,"usage":{"prompt_tokens":1},"content":"EMPTY ollama text"}"#;
            assert_eq!(s.scrub(body), None, "{key}");
            let parsed = |t: &str| serde_json::from_str::<serde_json::Value>(t).unwrap();
            assert_eq!(parsed(&s.scrub_json(body)), parsed(body), "{key}");
        }
    }
}
