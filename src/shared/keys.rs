//! The names of llmroute's keys in Redis: the prefix (`llmroute:v1:` by
//! default), a kind, and a cache key's hash in hex or a model id. A key
//! never holds prompt text or the API key.

use crate::core::cachekey::Key;

/// A cached answer: the answer as JSON.
pub fn answer(prefix: &str, key: &Key) -> String {
    format!("{prefix}cache:{}", hex::encode(key.0))
}

/// The lease of a request in flight on some machine.
pub fn flight(prefix: &str, key: &Key) -> String {
    format!("{prefix}flight:{}", hex::encode(key.0))
}

/// A model's averages: a hash of numbers.
pub fn health(prefix: &str, model: &str) -> String {
    format!("{prefix}health:{model}")
}

/// A model's pause: unix ms until when, expiring then.
pub fn pause(prefix: &str, model: &str) -> String {
    format!("{prefix}pause:{model}")
}

/// Where pauses are announced as they happen.
pub fn events(prefix: &str) -> String {
    format!("{prefix}events")
}

/// The theoretical arrival time of a rate limit (`rpm` or `tpm`).
pub fn rate(prefix: &str, which: &str) -> String {
    format!("{prefix}rate:{which}")
}

/// A shared budget: a hash of what is spent and what is held.
pub fn budget(prefix: &str, id: &str) -> String {
    format!("{prefix}budget:{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_the_prefix_and_a_hash() {
        let k = Key([0xab; 32]);
        let a = answer("p:", &k);
        assert!(a.starts_with("p:cache:abab"));
        assert_eq!(a.len(), "p:cache:".len() + 64);
        assert_eq!(flight("p:", &k).replace("flight", "cache"), a);
        assert_eq!(pause("llmroute:v1:", "a/b"), "llmroute:v1:pause:a/b");
    }
}
