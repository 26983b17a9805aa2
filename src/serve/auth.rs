//! Client and admin tokens. Each is kept as its SHA-256 and compared in
//! constant time against every token of its set, so neither a token's
//! content nor its length shows in how long a refusal takes.

use std::path::Path;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A set of tokens.
#[derive(Default, Clone)]
pub struct Tokens(Vec<[u8; 32]>);

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens({} set)", self.0.len())
    }
}

/// Client tokens from here, and admin tokens from `LLMROUTE_ADMIN_TOKENS`.
pub const CLIENT_VAR: &str = "LLMROUTE_AUTH_TOKENS";
pub const ADMIN_VAR: &str = "LLMROUTE_ADMIN_TOKENS";

impl Tokens {
    /// The tokens of a comma-separated variable and of a file (one a line,
    /// `#` comments and blank lines skipped).
    pub fn load(var: &str, file: Option<&Path>) -> anyhow::Result<Tokens> {
        let mut tokens = Tokens::default();
        if let Ok(list) = std::env::var(var) {
            list.split(',').for_each(|t| tokens.add(t));
        }
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                anyhow::anyhow!("cannot read the token file {}: {e}", path.display())
            })?;
            text.lines()
                .filter(|l| !l.trim_start().starts_with('#'))
                .for_each(|t| tokens.add(t));
            if tokens.is_empty() {
                anyhow::bail!("the token file {} holds no token", path.display());
            }
        }
        Ok(tokens)
    }

    fn add(&mut self, token: &str) {
        let t = token.trim();
        if !t.is_empty() {
            self.0.push(Sha256::digest(t.as_bytes()).into());
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `token` is one of the set, looking at every one.
    pub fn holds(&self, token: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
        let mut found = subtle::Choice::from(0);
        for t in &self.0 {
            found |= t.ct_eq(&digest);
        }
        found.into()
    }

    /// A dashboard session for `token`, if it is one of the set: the hex
    /// of a hash of its hash, which [`Tokens::holds_session`] knows again.
    pub fn session_for(&self, token: &str) -> Option<String> {
        if token.trim().is_empty() || !self.holds(token) {
            return None;
        }
        let digest: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
        Some(hex::encode(session_of(&digest)))
    }

    /// Whether `cookie` is a session of a token of the set, looking at
    /// every one.
    pub fn holds_session(&self, cookie: &str) -> bool {
        let Ok(given) = hex::decode(cookie.trim()) else {
            return false;
        };
        if given.len() != 32 {
            return false;
        }
        let mut found = subtle::Choice::from(0);
        for t in &self.0 {
            found |= session_of(t).ct_eq(&given[..]);
        }
        found.into()
    }

    /// Tokens of both sets.
    pub fn union(&self, other: &Tokens) -> Tokens {
        Tokens(self.0.iter().chain(other.0.iter()).copied().collect())
    }
}

/// A session's value for a token's digest: another hash, so that the
/// cookie is not the digest kept here and opens nothing but the dashboard.
fn session_of(digest: &[u8; 32]) -> [u8; 32] {
    Sha256::new()
        .chain_update(b"llmroute dashboard session\0")
        .chain_update(digest)
        .finalize()
        .into()
}

/// The bearer token of an `Authorization` header value.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let h = header?.trim();
    let (scheme, token) = h.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_whole_and_only_whole() {
        let mut t = Tokens::default();
        "alpha, beta".split(',').for_each(|x| t.add(x));
        assert!(t.holds("alpha") && t.holds("beta"));
        assert!(!t.holds("alph") && !t.holds("alphaa") && !t.holds(""));
    }

    #[test]
    fn a_session_opens_for_its_token_only() {
        let mut t = Tokens::default();
        t.add("alpha");
        let s = t.session_for("alpha").unwrap();
        assert!(t.holds_session(&s));
        assert_ne!(
            s,
            hex::encode(Sha256::digest(b"alpha")),
            "not the kept digest"
        );
        assert!(!s.contains("alpha"));
        assert_eq!(t.session_for("beta"), None);
        assert_eq!(t.session_for(""), None);
        assert!(!t.holds_session(&s[..62]));
        assert!(!t.holds_session("zz"));
        let mut other = Tokens::default();
        other.add("beta");
        assert!(!other.holds_session(&s));
        assert!(!t.holds(&s), "a session is no token");
    }

    #[test]
    fn bearer_tokens_are_read_from_the_header() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(None), None);
    }
}
