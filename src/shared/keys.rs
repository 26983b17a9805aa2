//! The names of llmroute's keys in Redis: the prefix (`llmroute:v1:` by
//! default), a kind, and a cache key's hash in hex or a model id. A key
//! never holds prompt text or the API key.

use crate::core::cachekey::Key;

/// A cached answer: the answer as JSON.
pub fn answer(prefix: &str, key: &Key) -> String {
    format!("{prefix}cache:{}", hex::encode(key.0))
}

/// When the shared cache was last cleared: unix ms.
pub fn cleared(prefix: &str) -> String {
    format!("{prefix}cache-cleared")
}

/// The lease of a request in flight on some machine.
pub fn flight(prefix: &str, key: &Key) -> String {
    format!("{prefix}flight:{}", hex::encode(key.0))
}

/// The prefix of one upstream's health keys: the prefix, then a hash of
/// the API's identity (its normalised base URL), so that the same model
/// names on two APIs are two models, and no URL shows in a key name.
pub fn upstream(prefix: &str, identity: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(identity.as_bytes());
    format!("{prefix}up:{}:", hex::encode(&digest[..8]))
}

/// A model's averages on an upstream (`scope`, from [`upstream`]): a hash
/// of numbers.
pub fn health(scope: &str, model: &str) -> String {
    format!("{scope}health:{model}")
}

/// A model's pause on an upstream: unix ms until when, expiring then.
pub fn pause(scope: &str, model: &str) -> String {
    format!("{scope}pause:{model}")
}

/// Where an upstream's pauses are announced as they happen.
pub fn events(scope: &str) -> String {
    format!("{scope}events")
}

/// The theoretical arrival time of a rate limit (`rpm` or `tpm`).
pub fn rate(prefix: &str, which: &str) -> String {
    format!("{prefix}rate:{which}")
}

/// A shared budget: a hash of what is spent and what is held.
pub fn budget(prefix: &str, id: &str) -> String {
    format!("{prefix}budget:{id}")
}

/// The number of the last settlement of the budget `id` that Redis took
/// from the process `process` (see [`super::Link::id`]).
pub fn settled(prefix: &str, id: &str, process: &str) -> String {
    format!("{prefix}settled:{id}:{process}")
}

/// An answered request, for feedback on it from any machine: a hash of
/// the client key's name (none for a request without one) and the
/// request's id, so that neither shows.
pub fn request(prefix: &str, key: Option<&str>, rid: &str) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    match key {
        Some(k) => {
            h.update([1u8]);
            h.update((k.len() as u64).to_le_bytes());
            h.update(k.as_bytes());
        }
        None => h.update([0u8]),
    }
    h.update(rid.as_bytes());
    format!("{prefix}req:{}", hex::encode(&h.finalize()[..16]))
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

    #[test]
    fn each_upstream_has_its_own_health_keys() {
        let a = upstream("p:", "https://openrouter.ai/api/v1");
        let b = upstream("p:", "http://127.0.0.1:8000/v1");
        assert_ne!(health(&a, "m"), health(&b, "m"));
        assert_ne!(pause(&a, "m"), pause(&b, "m"));
        assert_ne!(events(&a), events(&b));
        assert!(a.starts_with("p:up:") && !a.contains("openrouter"), "{a}");
    }

    #[test]
    fn a_request_s_key_hides_its_id_and_tells_keys_apart() {
        let a = request("p:", Some("alice"), "req-1");
        assert!(a.starts_with("p:req:") && !a.contains("req-1") && !a.contains("alice"));
        assert_eq!(a.len(), "p:req:".len() + 32);
        assert_ne!(a, request("p:", Some("bob"), "req-1"));
        assert_ne!(a, request("p:", None, "req-1"));
        assert_ne!(request("p:", Some(""), "x"), request("p:", None, "x"));
        assert_eq!(a, request("p:", Some("alice"), "req-1"));
    }
}
