//! The canonical form of a request and its cache key.
//!
//! Two lines that ask the same thing under the same routing settings share a
//! key: object keys are sorted, insignificant whitespace is gone, and `id`,
//! `custom_id` and the `llmroute` object never take part (the input parser
//! has already removed them). The routing settings that decide the choice
//! (candidates, weights, fallback, quality overrides, pinned model) are part
//! of the key, so changing the priority misses the cache, and so is the
//! upstream's identity (its normalised base URL), so that answers from a
//! mock server never come back from the real API.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Bumped whenever the canonical form changes, so old entries stop matching.
const VERSION: &[u8] = b"llmroute-cache-v1\n";

/// Marks the upstream's part of a key, so that no fingerprint alone can
/// give the key of an upstream and another fingerprint.
const UPSTREAM: &[u8] = b"\nupstream\n";

/// A SHA-256 cache key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key(pub [u8; 32]);

impl Key {
    /// This key within `scope` (a client's own cache): the same request
    /// from two scopes is two entries, and one cannot tell the other's
    /// exists.
    pub fn scoped(&self, scope: &[u8; 32]) -> Key {
        let mut h = Sha256::new();
        h.update(b"llmroute-scope\0");
        h.update(self.0);
        h.update(scope);
        Key(h.finalize().into())
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// Writes `v` in canonical form: compact, object keys sorted by their bytes.
pub fn write_canonical(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(map) => write_object(map, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        // Scalars: serde_json's own compact form (shortest round-trip numbers,
        // minimal string escapes) is already canonical.
        scalar => serde_json::to_writer(&mut *out, scalar).expect("writing to a Vec cannot fail"),
    }
}

/// Writes an object in canonical form.
pub fn write_object(map: &Map<String, Value>, out: &mut Vec<u8>) {
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    out.push(b'{');
    for (i, (k, v)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut *out, k).expect("writing to a Vec cannot fail");
        out.push(b':');
        write_canonical(v, out);
    }
    out.push(b'}');
}

/// The cache key of a request body under the given routing fingerprint
/// (see [`crate::core::ranking::Settings::fingerprint`]). `scratch` is reused
/// between calls to avoid allocating.
pub fn key(body: &Map<String, Value>, fingerprint: &str, scratch: &mut Vec<u8>) -> Key {
    digest(body, scratch).key(fingerprint)
}

/// The body's share of a cache key: its canonical form, hashed. Worked out
/// once per line; [`BodyDigest::key`] then adds a line's routing settings.
#[derive(Clone)]
pub struct BodyDigest(Sha256);

impl std::fmt::Debug for BodyDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BodyDigest")
    }
}

/// Hashes `body` in canonical form. `scratch` is reused between calls.
pub fn digest(body: &Map<String, Value>, scratch: &mut Vec<u8>) -> BodyDigest {
    scratch.clear();
    write_object(body, scratch);
    digest_canonical(scratch)
}

/// The digest of a body already in canonical form: the same as
/// [`digest`] of the body it is the form of, without writing it again.
pub fn digest_canonical(canonical: &[u8]) -> BodyDigest {
    let mut h = Sha256::new();
    h.update(VERSION);
    h.update((canonical.len() as u64).to_le_bytes());
    h.update(canonical);
    BodyDigest(h)
}

/// Two digests are equal when they give the same keys.
impl PartialEq for BodyDigest {
    fn eq(&self, other: &Self) -> bool {
        self.key("") == other.key("")
    }
}

impl BodyDigest {
    /// The cache key of the body under a routing fingerprint.
    pub fn key(&self, fingerprint: &str) -> Key {
        let mut h = self.0.clone();
        h.update(fingerprint.as_bytes());
        Key(h.finalize().into())
    }

    /// The cache key of the body sent to `upstream` (the API's identity, as
    /// [`crate::upstream::identity`] gives it) under a routing fingerprint:
    /// the same request to another API is another entry.
    pub fn upstream_key(&self, upstream: &str, fingerprint: &str) -> Key {
        self.sealed_key(&Seal::new(upstream, fingerprint))
    }

    /// The cache key of the body under a [`Seal`].
    pub fn sealed_key(&self, seal: &Seal) -> Key {
        let mut h = self.0.clone();
        h.update(UPSTREAM);
        h.update(seal.0);
        Key(h.finalize().into())
    }
}

/// The routing side of a cache key: the upstream and the routing
/// fingerprint, hashed once. A run seals its settings once, so a line's key
/// hashes 32 bytes after its body instead of the whole fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seal([u8; 32]);

impl Seal {
    pub fn new(upstream: &str, fingerprint: &str) -> Seal {
        SealBase::new(upstream, fingerprint).seal()
    }
}

/// A seal's hash part way: the upstream and a fingerprint, to which a
/// request's own part of the fingerprint (its pinned model) is added
/// without hashing the whole fingerprint again.
#[derive(Clone)]
pub struct SealBase(Sha256);

impl SealBase {
    pub fn new(upstream: &str, fingerprint: &str) -> SealBase {
        let mut h = Sha256::new();
        h.update((upstream.len() as u64).to_le_bytes());
        h.update(upstream.as_bytes());
        h.update(fingerprint.as_bytes());
        SealBase(h)
    }

    /// The seal of the fingerprint as it is.
    pub fn seal(&self) -> Seal {
        Seal(self.0.clone().finalize().into())
    }

    /// The seal of the fingerprint followed by `more`: the same as
    /// [`Seal::new`] of the whole.
    pub fn seal_with(&self, more: &[&str]) -> Seal {
        let mut h = self.0.clone();
        for part in more {
            h.update(part.as_bytes());
        }
        Seal(h.finalize().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    fn canon(v: &Value) -> String {
        let mut out = Vec::new();
        write_canonical(v, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn sorts_keys_at_every_depth() {
        let v = json!({"b": 1, "a": {"z": [3, {"y": null, "x": "s"}], "c": true}});
        assert_eq!(
            canon(&v),
            r#"{"a":{"c":true,"z":[3,{"x":"s","y":null}]},"b":1}"#
        );
    }

    #[test]
    fn order_and_whitespace_do_not_change_the_key() {
        let a: Value = serde_json::from_str(
            r#"{"messages":[{"role":"user","content":"hi"}],"temperature":0.5}"#,
        )
        .unwrap();
        let b: Value =
            serde_json::from_str("{ \"temperature\" : 0.5,\n \"messages\" : [ { \"content\":\"hi\", \"role\":\"user\" } ] }")
                .unwrap();
        let mut s = Vec::new();
        assert_eq!(key(&obj(a), "fp", &mut s), key(&obj(b), "fp", &mut s));
    }

    #[test]
    fn content_and_fingerprint_change_the_key() {
        let mut s = Vec::new();
        let a = obj(json!({"messages":[{"role":"user","content":"hi"}]}));
        let b = obj(json!({"messages":[{"role":"user","content":"hi!"}]}));
        assert_ne!(key(&a, "fp", &mut s), key(&b, "fp", &mut s));
        assert_ne!(key(&a, "fp1", &mut s), key(&a, "fp2", &mut s));
        // Array order is meaningful.
        let c =
            obj(json!({"messages":[{"role":"user","content":"1"},{"role":"user","content":"2"}]}));
        let d =
            obj(json!({"messages":[{"role":"user","content":"2"},{"role":"user","content":"1"}]}));
        assert_ne!(key(&c, "fp", &mut s), key(&d, "fp", &mut s));
    }

    #[test]
    fn body_and_fingerprint_cannot_run_into_each_other() {
        // The body's length is hashed, so moving bytes between body and
        // fingerprint changes the key.
        let mut s = Vec::new();
        let a = obj(json!({"k": "v"}));
        assert_ne!(
            key(&a, "xy", &mut s),
            key(&obj(json!({"k": "v"})), "x", &mut s)
        );
        assert_eq!(key(&a, "fp", &mut s).to_hex().len(), 64);
    }

    #[test]
    fn the_upstream_changes_the_key() {
        let d = digest(&obj(json!({"k": "v"})), &mut Vec::new());
        let a = d.upstream_key("https://openrouter.ai/api/v1", "fp");
        assert_eq!(a, d.upstream_key("https://openrouter.ai/api/v1", "fp"));
        assert_ne!(a, d.upstream_key("http://127.0.0.1:4000/v1", "fp"));
        assert_ne!(a, d.upstream_key("https://openrouter.ai/api/v1", "fp2"));
        // Bytes moved between upstream and fingerprint give another key.
        assert_ne!(d.upstream_key("ab", "c"), d.upstream_key("a", "bc"));
        assert_ne!(a, d.key("fp"));
    }

    #[test]
    fn keys_are_stable_across_versions() {
        // sha256("llmroute-cache-v1\n" ‖ len as u64 LE ‖ canonical body ‖ fingerprint).
        // A different key here orphans every cache written before: bump
        // VERSION on purpose instead.
        let body = obj(json!({"b": 1, "a": [true, null]}));
        let want = "8d2f10cf00c5d83302372f5cb4a9cfc26cf24de78543c901c85530f4314a578b";
        assert_eq!(key(&body, "fp", &mut Vec::new()).to_hex(), want);
        let d = digest(&body, &mut Vec::new());
        assert_eq!(d.key("fp").to_hex(), want);
        assert_ne!(d.key("other"), d.key("fp"));
        assert_eq!(
            d,
            digest(&obj(json!({"a": [true, null], "b": 1})), &mut Vec::new())
        );
    }
}
