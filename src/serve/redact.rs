//! The server's last guard of its upstreams' keys. What a client sent is
//! echoed in errors, access lines and logged bodies, and a client may
//! have sent a key: every error answer and access line passes through
//! [`clean`], which blanks out any upstream's key. Set once, when the
//! server has its upstreams.

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

/// `text` without any key, or None when it holds none.
pub type Scrub = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

static SCRUB: OnceLock<Scrub> = OnceLock::new();

/// Sets what [`clean`] blanks out, once for the process.
pub fn set(scrub: Scrub) {
    let _ = SCRUB.set(scrub);
}

/// `text` with any upstream's key replaced by `[redacted]`.
pub fn clean(text: &str) -> Cow<'_, str> {
    match SCRUB.get().and_then(|s| s(text)) {
        Some(c) => Cow::Owned(c),
        None => Cow::Borrowed(text),
    }
}
