//! Content digests (`algorithm:hex`), validated the way the OCI `go-digest` package does.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a digest string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DigestError {
    /// No `algorithm:` prefix.
    #[error(
        "invalid digest {input:?}: expected algorithm:hex (for example sha256:<64 hex digits>)"
    )]
    MissingAlgorithm {
        /// The rejected input.
        input: String,
    },
    /// The algorithm is not one a registry uses for content addressing.
    #[error(
        "invalid digest {input:?}: unsupported algorithm {algorithm:?} (expected sha256, sha384 or sha512)"
    )]
    UnsupportedAlgorithm {
        /// The rejected input.
        input: String,
        /// The algorithm named in it.
        algorithm: String,
    },
    /// The encoded part has the wrong length for the algorithm.
    #[error("invalid digest {input:?}: {algorithm} needs {expected} hex digits, found {found}")]
    WrongLength {
        /// The rejected input.
        input: String,
        /// The algorithm named in it.
        algorithm: &'static str,
        /// Hex digits the algorithm produces.
        expected: usize,
        /// Hex digits found.
        found: usize,
    },
    /// The encoded part holds something other than lowercase hex digits.
    #[error("invalid digest {input:?}: the hex part must be lowercase hex digits [0-9a-f]")]
    NotHex {
        /// The rejected input.
        input: String,
    },
}

/// A content digest such as `sha256:74f9…`. Always valid once built.
///
/// Stored as the canonical string so that `Display`, serialisation and comparison are free.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    /// The whole `algorithm:hex` string, shared: digests are copied into every target, status
    /// and report, and a clone should not allocate.
    text: Arc<str>,
    /// Where the `:` separating algorithm and hex sits in `text`.
    colon: usize,
}

impl Digest {
    /// Parses and validates `algorithm:hex`.
    pub fn parse(input: &str) -> Result<Self, DigestError> {
        let Some(colon) = input.find(':') else {
            return Err(DigestError::MissingAlgorithm {
                input: input.to_owned(),
            });
        };
        let (algorithm, hex) = (&input[..colon], &input[colon + 1..]);
        let (name, expected) = match algorithm {
            "sha256" => ("sha256", 64),
            "sha384" => ("sha384", 96),
            "sha512" => ("sha512", 128),
            other => {
                return Err(DigestError::UnsupportedAlgorithm {
                    input: input.to_owned(),
                    algorithm: other.to_owned(),
                });
            }
        };
        if hex.len() != expected {
            return Err(DigestError::WrongLength {
                input: input.to_owned(),
                algorithm: name,
                expected,
                found: hex.len(),
            });
        }
        if !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(DigestError::NotHex {
                input: input.to_owned(),
            });
        }
        Ok(Self {
            text: input.into(),
            colon,
        })
    }

    /// Builds a sha256 digest from its 64 lowercase hex digits.
    pub fn sha256(hex: &str) -> Result<Self, DigestError> {
        Self::parse(&format!("sha256:{hex}"))
    }

    /// The algorithm, for example `sha256`.
    pub fn algorithm(&self) -> &str {
        &self.text[..self.colon]
    }

    /// The hex-encoded part.
    pub fn hex(&self) -> &str {
        &self.text[self.colon + 1..]
    }

    /// The first 12 hex digits, as `docker images` shows them: for humans, never for identity.
    pub fn short(&self) -> &str {
        &self.hex()[..12]
    }

    /// The canonical string.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.text)
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "74f9ca9aa780491d0401ce76b5c1c41b3109741abdbf06ccc096ebd5fbd5fa0f";

    #[test]
    fn accepts_registry_digests() {
        let d = Digest::parse(&format!("sha256:{HEX}")).unwrap();
        assert_eq!(d.algorithm(), "sha256");
        assert_eq!(d.hex(), HEX);
        assert_eq!(d.short(), "74f9ca9aa780");
        assert_eq!(d.to_string(), format!("sha256:{HEX}"));
        let long = "a".repeat(128);
        assert!(Digest::parse(&format!("sha512:{long}")).is_ok());
    }

    #[test]
    fn rejects_each_kind_of_nonsense_with_a_named_problem() {
        let cases: &[(&str, &str)] = &[
            ("", "expected algorithm:hex"),
            (HEX, "expected algorithm:hex"),
            (
                "md5:d41d8cd98f00b204e9800998ecf8427e",
                "unsupported algorithm \"md5\"",
            ),
            ("sha256:abc", "needs 64 hex digits, found 3"),
            (
                "sha256:74F9CA9AA780491D0401CE76B5C1C41B3109741ABDBF06CCC096EBD5FBD5FA0F",
                "lowercase hex",
            ),
            (
                "sha256:zzf9ca9aa780491d0401ce76b5c1c41b3109741abdbf06ccc096ebd5fbd5fa0f",
                "lowercase hex",
            ),
        ];
        for (input, message) in cases {
            let err = Digest::parse(input).unwrap_err().to_string();
            assert!(err.contains(message), "{input:?}: {err}");
        }
    }

    #[test]
    fn serde_round_trips_and_validates() {
        let d = Digest::sha256(HEX).unwrap();
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"sha256:{HEX}\""));
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
        assert!(serde_json::from_str::<Digest>("\"sha256:nope\"").is_err());
    }
}
