//! Client and admin tokens, and the dashboard's sessions. A token is kept
//! as its SHA-256 and compared in constant time against every token of
//! its set, so neither a token's content nor its length shows in how long
//! a refusal takes.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A set of tokens, and how many of them are short enough to guess.
#[derive(Default, Clone)]
pub struct Tokens(Vec<[u8; 32]>, usize);

/// A token shorter than this draws a warning: a guess may find it.
/// `llmroute keys create` makes tokens of 43 characters.
pub const STRONG_LEN: usize = 16;

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
            self.1 += usize::from(t.chars().count() < STRONG_LEN);
        }
    }

    /// How many of them are shorter than [`STRONG_LEN`].
    pub fn short(&self) -> usize {
        self.1
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

    /// The tokens' SHA-256 digests.
    pub fn digests(&self) -> Vec<[u8; 32]> {
        self.0.clone()
    }
}

/// How long a dashboard session lasts after it is opened.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at once; opening one more forgets the oldest.
pub const SESSIONS_MAX: usize = 1024;

/// The dashboard's sessions: random ids, kept here as their SHA-256 with
/// when they end, so signing out (or a restart) ends one for good. A
/// session opens the dashboard only; the API takes tokens.
#[derive(Default)]
pub struct Sessions {
    open: Mutex<HashMap<[u8; 32], Instant>>,
}

impl Sessions {
    /// A new session, valid for [`SESSION_TTL`]; its id, in hex.
    pub fn open(&self, now: Instant) -> std::io::Result<String> {
        let mut id = [0u8; 32];
        getrandom::fill(&mut id).map_err(|e| std::io::Error::other(e.to_string()))?;
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.retain(|_, end| *end > now);
        if open.len() >= SESSIONS_MAX {
            if let Some(oldest) = open.iter().min_by_key(|(_, end)| **end).map(|(k, _)| *k) {
                open.remove(&oldest);
            }
        }
        open.insert(Sha256::digest(id).into(), now + SESSION_TTL);
        Ok(hex::encode(id))
    }

    /// Whether `id` is a session still open at `now`.
    pub fn holds(&self, id: &str, now: Instant) -> bool {
        let Some(key) = Sessions::key(id) else {
            return false;
        };
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.get(&key).is_some_and(|end| *end > now)
    }

    /// Ends session `id`.
    pub fn close(&self, id: &str) {
        if let Some(key) = Sessions::key(id) {
            self.open
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&key);
        }
    }

    fn key(id: &str) -> Option<[u8; 32]> {
        let raw = hex::decode(id.trim()).ok().filter(|r| r.len() == 32)?;
        Some(Sha256::digest(raw).into())
    }
}

/// The bearer token of an `Authorization` header value.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let h = header?.trim();
    let (scheme, token) = h.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Sign-ins, at most [`SIGN_INS_PER_MINUTE`] a minute for the whole
/// server (GCRA, with the same burst): past that, a sign-in gets 429
/// before its token is even looked at, so that guessing tokens through the
/// form is slow. People sign in a few times a day.
pub struct SignInLimit(governor::DefaultDirectRateLimiter);

/// Sign-ins a minute before the form answers 429.
pub const SIGN_INS_PER_MINUTE: u32 = 30;

impl Default for SignInLimit {
    fn default() -> Self {
        let n = std::num::NonZeroU32::new(SIGN_INS_PER_MINUTE).expect("not zero");
        SignInLimit(governor::RateLimiter::direct(governor::Quota::per_minute(
            n,
        )))
    }
}

impl SignInLimit {
    /// Takes a sign-in; false when the limit is reached.
    pub fn allow(&self) -> bool {
        self.0.check().is_ok()
    }
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
    fn a_session_lasts_until_closed_or_expired() {
        let sessions = Sessions::default();
        let t0 = Instant::now();
        let id = sessions.open(t0).unwrap();
        assert_eq!(id.len(), 64);
        assert!(sessions.holds(&id, t0));
        assert!(!sessions.holds(&id, t0 + SESSION_TTL), "expired");
        assert!(!sessions.holds(&id[..62], t0));
        assert!(!sessions.holds("not hex", t0));
        let other = sessions.open(t0).unwrap();
        assert_ne!(id, other);
        sessions.close(&id);
        assert!(!sessions.holds(&id, t0), "signed out");
        assert!(sessions.holds(&other, t0));
    }

    #[test]
    fn sessions_stay_bounded() {
        let sessions = Sessions::default();
        let t0 = Instant::now();
        let first = sessions.open(t0).unwrap();
        for i in 0..SESSIONS_MAX {
            sessions
                .open(t0 + Duration::from_millis(i as u64 + 1))
                .unwrap();
        }
        assert_eq!(sessions.open.lock().unwrap().len(), SESSIONS_MAX);
        assert!(!sessions.holds(&first, t0), "the oldest went");
    }

    #[test]
    fn bearer_tokens_are_read_from_the_header() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(None), None);
    }
}
