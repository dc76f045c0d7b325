//! Secrets (webhook tokens, HMAC keys, the admin token, notifier URLs) that must never reach a
//! log line, an error message or a response.

use std::fmt;

use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

/// A secret string, already resolved by the binary (from a file, the environment, ...).
///
/// `Debug` and `Display` print `***`. Comparisons run in constant time and do not leak the
/// secret's length either: both sides are hashed to 32 bytes first, then compared with
/// [`subtle`].
#[derive(Clone, Deserialize)]
#[serde(from = "String")]
pub struct Secret {
    value: String,
    /// SHA-256 of `value`, so a comparison hashes only the candidate.
    hash: [u8; 32],
}

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        let value = value.into();
        let hash = Sha256::digest(value.as_bytes()).into();
        Self { value, hash }
    }

    /// The secret itself, for signing or for sending it where it belongs.
    pub fn expose(&self) -> &str {
        &self.value
    }

    /// Whether `candidate` equals the secret, in constant time.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        let theirs: [u8; 32] = Sha256::digest(candidate).into();
        self.hash.ct_eq(&theirs).into()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.value.is_empty()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_and_compares_exactly() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "*** ***");
        assert!(s.matches(b"hunter2"));
        assert!(!s.matches(b"hunter"));
        assert!(!s.matches(b"hunter22"));
        assert!(!s.matches(b""));
    }
}
