//! Walking a parsed JSON body while remembering where we are, so every error names its field
//! (`events[2].target.digest: ...`).
//!
//! Decoding is lenient (unknown fields are ignored, and so are fields of events we skip) and
//! strict where it matters (the fields that become an image, a digest or a tag).

use std::fmt::Display;

use deployer_core::{Digest, Timestamp};
use serde_json::Value;

use super::DecodeError;
use super::time::parse_rfc3339;

/// A place in a JSON document: the value there, if any, and its path.
#[derive(Debug, Clone)]
pub(crate) struct Field<'a> {
    value: Option<&'a Value>,
    path: String,
}

impl<'a> Field<'a> {
    /// The document itself.
    pub(crate) fn root(value: &'a Value) -> Self {
        Self {
            value: Some(value),
            path: String::new(),
        }
    }

    /// The member `key` (missing when this is not an object or has no such member).
    pub(crate) fn get(&self, key: &str) -> Field<'a> {
        let path = if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        };
        Field {
            value: self.value.and_then(|v| v.get(key)),
            path,
        }
    }

    /// An error about this field.
    pub(crate) fn error(&self, problem: impl Display) -> DecodeError {
        let field = if self.path.is_empty() {
            "body"
        } else {
            &self.path
        };
        DecodeError {
            field: field.to_owned(),
            problem: problem.to_string(),
        }
    }

    /// The value, unless missing or `null`.
    pub(crate) fn value(&self) -> Option<&'a Value> {
        self.value.filter(|v| !v.is_null())
    }

    /// A string, or nothing when missing or `null`.
    pub(crate) fn opt_str(&self) -> Result<Option<&'a str>, DecodeError> {
        match self.value() {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.error("expected a string")),
        }
    }

    /// A string that is neither missing, empty nor only blanks... or nothing.
    pub(crate) fn opt_text(&self) -> Result<Option<&'a str>, DecodeError> {
        Ok(self.opt_str()?.filter(|s| !s.trim().is_empty()))
    }

    /// A string that must be there and not be empty.
    pub(crate) fn text(&self) -> Result<&'a str, DecodeError> {
        match self.opt_str()? {
            None => Err(self.error("missing")),
            Some(s) if s.trim().is_empty() => Err(self.error("must not be empty")),
            Some(s) => Ok(s),
        }
    }

    /// The elements of an array that must be there.
    pub(crate) fn items(&self) -> Result<Vec<Field<'a>>, DecodeError> {
        match self.value() {
            None => Err(self.error("missing")),
            Some(Value::Array(items)) => Ok(items
                .iter()
                .enumerate()
                .map(|(i, value)| Field {
                    value: Some(value),
                    path: format!("{}[{i}]", self.path),
                })
                .collect()),
            Some(_) => Err(self.error("expected an array")),
        }
    }

    /// A digest, or nothing when missing or empty.
    pub(crate) fn opt_digest(&self) -> Result<Option<Digest>, DecodeError> {
        self.opt_text()?
            .map(|text| Digest::parse(text).map_err(|e| self.error(e)))
            .transpose()
    }

    /// A digest that must be there.
    pub(crate) fn digest(&self) -> Result<Digest, DecodeError> {
        Digest::parse(self.text()?).map_err(|e| self.error(e))
    }

    /// Unix seconds as an integer, a float (older Docker Hub payloads) or a numeric string.
    /// Timestamps only order deliveries, so anything unreadable counts as absent.
    pub(crate) fn unix_time(&self) -> Option<Timestamp> {
        let secs = match self.value()? {
            Value::Number(n) => n.as_f64()?,
            Value::String(s) => s.trim().parse::<f64>().ok()?,
            _ => return None,
        };
        Timestamp::from_secs_f64(secs)
    }

    /// An RFC 3339 timestamp; anything unreadable counts as absent (see [`Self::unix_time`]).
    pub(crate) fn rfc3339(&self) -> Option<Timestamp> {
        parse_rfc3339(self.opt_str().ok()??)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn errors_carry_the_path() {
        let doc = json!({"events": [{"target": {"digest": 5}}, {"target": {}}]});
        let root = Field::root(&doc);
        let events = root.get("events").items().unwrap();
        let err = events[0].get("target").get("digest").opt_str().unwrap_err();
        assert_eq!(
            err.to_string(),
            "events[0].target.digest: expected a string"
        );
        let err = events[1].get("target").get("tag").text().unwrap_err();
        assert_eq!(err.to_string(), "events[1].target.tag: missing");
        assert_eq!(root.error("x").field, "body");
        assert!(root.get("nope").items().is_err());
        assert!(root.get("events").get("x").opt_str().unwrap().is_none());
    }

    #[test]
    fn timestamps_are_lenient() {
        let doc =
            json!({"a": 1417566161, "b": 1417566161.5, "c": "1417566161", "d": "soon", "e": -1});
        let root = Field::root(&doc);
        assert_eq!(
            root.get("a").unix_time(),
            Some(Timestamp::from_millis(1_417_566_161_000))
        );
        assert_eq!(
            root.get("b").unix_time(),
            Some(Timestamp::from_millis(1_417_566_161_500))
        );
        assert!(root.get("c").unix_time().is_some());
        assert!(root.get("d").unix_time().is_none());
        assert!(root.get("e").unix_time().is_none());
        assert!(root.get("missing").rfc3339().is_none());
    }
}
