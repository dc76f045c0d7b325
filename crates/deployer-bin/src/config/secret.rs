//! Secrets given by reference (`{ env = "NAME" }`, `{ file = "/path" }`), read through an
//! injectable environment so tests never touch the process's.

#[cfg(test)]
use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

/// Where a secret comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// Written in the file (allowed, with a warning: config files get copied around).
    Inline(String),
    /// An environment variable (trailing whitespace and newlines dropped).
    Env(String),
    /// A file whose content (trimmed) is the secret.
    File(PathBuf),
}

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RefVisitor;
        impl<'de> Visitor<'de> for RefVisitor {
            type Value = SecretRef;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, { env = \"NAME\" } or { file = \"/path\" }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SecretRef, E> {
                Ok(SecretRef::Inline(v.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SecretRef, A::Error> {
                let Some(key) = map.next_key::<String>()? else {
                    return Err(de::Error::custom(
                        "expected { env = \"NAME\" } or { file = \"/path\" }",
                    ));
                };
                let secret = match key.as_str() {
                    "env" => SecretRef::Env(map.next_value()?),
                    "file" => SecretRef::File(map.next_value()?),
                    other => return Err(de::Error::unknown_field(other, &["env", "file"])),
                };
                if let Some(extra) = map.next_key::<String>()? {
                    return Err(de::Error::custom(format!(
                        "give either env or file, not also {extra}"
                    )));
                }
                Ok(secret)
            }
        }
        deserializer.deserialize_any(RefVisitor)
    }
}

/// A resolved secret. Never printed: `Debug` and `Display` show `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The value, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Reads environment variables.
pub trait EnvSource {
    /// The variable's value, if set.
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

/// A fixed set of variables, for tests.
#[cfg(test)]
#[derive(Debug, Clone, Default)]
pub struct MapEnv(pub HashMap<String, String>);

#[cfg(test)]
impl MapEnv {
    /// The variables `vars`, as `(name, value)` pairs.
    pub fn of(vars: &[(&str, &str)]) -> Self {
        Self(
            vars.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }
}

#[cfg(test)]
impl EnvSource for MapEnv {
    fn var(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

impl SecretRef {
    /// Reads the secret; the error says where from, never what.
    pub fn resolve(&self, env: &dyn EnvSource) -> Result<Secret, String> {
        let value = match self {
            Self::Inline(value) => value.clone(),
            // `export X=$(cat file)` keeps no newline, but env files and `echo` often do; a
            // token with one would never match what senders send.
            Self::Env(name) => env
                .var(name)
                .ok_or_else(|| format!("environment variable {name} is not set"))?
                .trim_end()
                .to_owned(),
            Self::File(path) => super::read::read_capped(path, super::read::SECRET_MAX)
                .map_err(|e| format!("cannot read secret file {}: {e}", path.display()))?
                .trim()
                .to_owned(),
        };
        if value.is_empty() {
            return Err("the secret is empty".into());
        }
        Ok(Secret(value))
    }
}
