//! Walking a JSON body while remembering where we are, so every error names its field
//! (`events[2].target.digest: ...`).
//!
//! Decoding is lenient (unknown fields are ignored, and so are fields of events we skip) and
//! strict where it matters (the fields that become an image, a digest or a tag).
//!
//! Webhooks are the hot path, so the body is parsed into a [`Json`] tree that borrows its
//! strings from the body and keeps objects as small vectors (no per-object map, no per-string
//! allocation), and a [`Field`]'s path is a chain of parents on the stack, rendered only when
//! an error needs it. This made decoding several times cheaper than `serde_json::Value`.

use std::borrow::Cow;
use std::fmt::{self, Display};

use deployer_core::{Digest, Timestamp};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use super::DecodeError;
use super::time::parse_rfc3339;

/// A parsed JSON document whose strings borrow from the input where they can.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Json<'a> {
    Null,
    Bool(bool),
    Number(f64),
    String(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    /// Members in document order; a repeated key counts with its last value, as in serde_json.
    Object(Vec<(Cow<'a, str>, Json<'a>)>),
}

impl<'a> Json<'a> {
    pub(crate) fn is_object(&self) -> bool {
        matches!(self, Self::Object(_))
    }

    fn member(&self, key: &str) -> Option<&Json<'a>> {
        match self {
            Self::Object(members) => members.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Json::Bool(v))
    }

    #[allow(clippy::cast_precision_loss)] // reason: numbers only matter as timestamps
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Json::Number(v as f64))
    }

    #[allow(clippy::cast_precision_loss)] // reason: numbers only matter as timestamps
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Json::Number(v as f64))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Json::Number(v))
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Json::String(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Json::String(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Json::String(Cow::Owned(v)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Json::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Json::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        Json::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = Vec::new();
        while let Some((Key(key), value)) = map.next_entry()? {
            members.push((key, value));
        }
        Ok(Json::Object(members))
    }
}

/// An object key, borrowed when it has no escapes (serde's own `Cow` impl always copies).
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Json::deserialize(deserializer)? {
            Json::String(s) => Ok(Key(s)),
            _ => Err(de::Error::custom("object keys are strings")),
        }
    }
}

/// One step of a path.
#[derive(Debug, Clone, Copy)]
enum Step<'a> {
    Root,
    Key(&'a str),
    Index(usize),
}

/// A place in a JSON document: the value there, if any, and how we got there.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field<'a> {
    value: Option<&'a Json<'a>>,
    parent: Option<&'a Field<'a>>,
    step: Step<'a>,
}

impl<'a> Field<'a> {
    /// The document itself.
    pub(crate) fn root(value: &'a Json<'a>) -> Self {
        Self {
            value: Some(value),
            parent: None,
            step: Step::Root,
        }
    }

    /// The member `key` (missing when this is not an object or has no such member).
    pub(crate) fn get<'s>(&'s self, key: &'s str) -> Field<'s> {
        Field {
            value: self.value.and_then(|v| v.member(key)),
            parent: Some(self),
            step: Step::Key(key),
        }
    }

    /// The path, as `events[0].target.tag` (`body` for the document).
    fn path(&self) -> String {
        let mut steps = Vec::new();
        let mut at = Some(self);
        while let Some(field) = at {
            steps.push(field.step);
            at = field.parent;
        }
        let mut path = String::new();
        for step in steps.iter().rev() {
            match step {
                Step::Root => {}
                Step::Key(key) if path.is_empty() => path.push_str(key),
                Step::Key(key) => {
                    path.push('.');
                    path.push_str(key);
                }
                Step::Index(i) => path.push_str(&format!("[{i}]")),
            }
        }
        if path.is_empty() {
            path.push_str("body");
        }
        path
    }

    /// An error about this field.
    pub(crate) fn error(&self, problem: impl Display) -> DecodeError {
        DecodeError {
            field: self.path(),
            problem: problem.to_string(),
        }
    }

    /// The value, unless missing or `null`.
    pub(crate) fn value(&self) -> Option<&'a Json<'a>> {
        self.value.filter(|v| **v != Json::Null)
    }

    /// A string, or nothing when missing or `null`.
    pub(crate) fn opt_str(&self) -> Result<Option<&'a str>, DecodeError> {
        match self.value() {
            None => Ok(None),
            Some(Json::String(s)) => Ok(Some(s)),
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
    pub(crate) fn items<'s>(&'s self) -> Result<Vec<Field<'s>>, DecodeError> {
        match self.value() {
            None => Err(self.error("missing")),
            Some(Json::Array(items)) => Ok(items
                .iter()
                .enumerate()
                .map(|(i, value)| Field {
                    value: Some(value),
                    parent: Some(self),
                    step: Step::Index(i),
                })
                .collect()),
            Some(_) => Err(self.error("expected an array")),
        }
    }

    /// Refuses an array or object of more than `max` entries, before any entry is looked at.
    pub(crate) fn at_most(&self, max: usize) -> Result<(), DecodeError> {
        let len = match self.value() {
            Some(Json::Array(items)) => items.len(),
            Some(Json::Object(members)) => members.len(),
            _ => 0,
        };
        if len > max {
            return Err(self.error(format!(
                "{len} entries; at most {max} are taken in one request"
            )));
        }
        Ok(())
    }

    /// The elements of an array that must be there and hold at most `max` of them.
    pub(crate) fn items_at_most<'s>(&'s self, max: usize) -> Result<Vec<Field<'s>>, DecodeError> {
        self.at_most(max)?;
        self.items()
    }

    /// The keys of an object, or nothing when this is not an object.
    pub(crate) fn keys(&self) -> Option<Vec<&'a str>> {
        match self.value()? {
            Json::Object(members) => Some(members.iter().map(|(k, _)| k.as_ref()).collect()),
            _ => None,
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
            Json::Number(n) => *n,
            Json::String(s) => s.trim().parse::<f64>().ok()?,
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

    fn parse(text: &str) -> Json<'_> {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn errors_carry_the_path() {
        let doc = parse(r#"{"events": [{"target": {"digest": 5}}, {"target": {}}]}"#);
        let root = Field::root(&doc);
        let events = root.get("events");
        let events = events.items().unwrap();
        let err = events[0].get("target").get("digest").opt_str().unwrap_err();
        assert_eq!(
            err.to_string(),
            "events[0].target.digest: expected a string"
        );
        let err = events[1].get("target").get("tag").text().unwrap_err();
        assert_eq!(err.to_string(), "events[1].target.tag: missing");
        assert_eq!(root.error("x").field, "body");
        assert!(root.get("nope").items().is_err());
        let err = root.get("events").items_at_most(1).unwrap_err();
        assert_eq!(
            err.to_string(),
            "events: 2 entries; at most 1 are taken in one request"
        );
        assert_eq!(root.get("events").items_at_most(2).unwrap().len(), 2);
        assert!(root.get("events").get("x").opt_str().unwrap().is_none());
    }

    #[test]
    fn strings_borrow_unless_escaped_and_the_last_duplicate_wins() {
        let doc = parse(r#"{"a": "plain", "b": "tab\there", "a": "again", "n": null}"#);
        let Json::Object(members) = &doc else {
            panic!("an object")
        };
        assert!(matches!(
            &members[0].1,
            Json::String(Cow::Borrowed("plain"))
        ));
        assert!(matches!(&members[1].1, Json::String(Cow::Owned(s)) if s == "tab\there"));
        let root = Field::root(&doc);
        assert_eq!(root.get("a").opt_str().unwrap(), Some("again"));
        assert_eq!(root.get("n").opt_str().unwrap(), None);
        assert_eq!(root.keys().unwrap(), ["a", "b", "a", "n"]);
    }

    #[test]
    fn timestamps_are_lenient() {
        let doc = parse(
            r#"{"a": 1417566161, "b": 1417566161.5, "c": "1417566161", "d": "soon", "e": -1}"#,
        );
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
