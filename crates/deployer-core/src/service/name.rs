use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize};

use super::SpecError;

/// Longest service name: it becomes part of container names, labels and etcd keys.
const NAME_MAX: usize = 63;

/// A service's name: 1 to 63 of `[a-zA-Z0-9_.-]`, starting with a letter or digit.
///
/// Those are the characters Docker allows in container names, so a name can be embedded in
/// container names, labels and coordinator keys without escaping.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ServiceName(Arc<str>);

impl ServiceName {
    /// Validates a service name.
    pub fn new(name: &str) -> Result<Self, SpecError> {
        let problem = if name.is_empty() {
            Some("must not be empty".to_owned())
        } else if name.len() > NAME_MAX {
            Some(format!("{name:?} is longer than {NAME_MAX} characters"))
        } else if !name.as_bytes()[0].is_ascii_alphanumeric() {
            Some(format!("{name:?} must start with a letter or digit"))
        } else {
            let allowed = |c: &char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
            name.chars().find(|c| !allowed(c)).map(|bad| {
                format!("{name:?} contains {bad:?}; allowed are letters, digits, '_', '.', '-'")
            })
        };
        match problem {
            Some(problem) => Err(SpecError::invalid("name", problem)),
            None => Ok(Self(name.into())),
        }
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServiceName({})", self.0)
    }
}

impl FromStr for ServiceName {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl<'de> Deserialize<'de> for ServiceName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::new(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_docker_style_names() {
        for ok in ["web", "api-v2", "a", "svc_1.blue", "0day"] {
            assert!(ServiceName::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_with_a_reason() {
        for (bad, why) in [
            ("", "must not be empty"),
            ("-web", "must start with a letter or digit"),
            ("web app", "contains ' '"),
            ("a/b", "contains '/'"),
        ] {
            let err = ServiceName::new(bad).unwrap_err().to_string();
            assert!(
                err.starts_with("invalid name:") && err.contains(why),
                "{bad:?}: {err}"
            );
        }
        assert!(ServiceName::new(&"x".repeat(64)).is_err());
    }
}
