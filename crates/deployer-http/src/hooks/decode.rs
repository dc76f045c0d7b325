//! What every sender's decoder shares: the decoded [`Build`], the errors, and assembling an
//! image reference from the parts a payload gives, blaming the right field when it is bad.

use deployer_core::image::ReferenceProblem;
use deployer_core::{Digest, ImageRef, Timestamp};

use super::json::{Field, Json};
use super::{Sender, dockerhub, generic, github, harbor, quay, registry};

/// Most entries (Harbor resources, Quay tags, registry events) one request may carry. Far
/// below the event queue (1,024 by default), so one request can never fill it: a longer one
/// is refused whole with 400, before anything is queued, instead of being queued in part and
/// answered 503, which made senders retry it forever.
pub const MAX_ENTRIES: usize = 100;

/// A payload that cannot be used, naming the field at fault (`push_data.tag`, `body`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct DecodeError {
    /// Path of the field in the payload (`events[0].target.digest`), or `body`.
    pub field: String,
    /// What is wrong with it.
    pub problem: String,
}

/// "A new build of repo:tag", as one payload announced it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Build {
    /// The repo:tag, without digest.
    pub image: ImageRef,
    /// The manifest digest, when the sender says.
    pub digest: Option<Digest>,
    /// When the sender says it was pushed.
    pub event_time: Option<Timestamp>,
    /// Where the sender wants the result (Docker Hub's `callback_url`).
    pub callback_url: Option<String>,
    /// The sender's id of this event, when the payload has one (a registry event's `id`); a
    /// redelivery repeats it, so it tells a replay from a new push of the same build.
    pub event_id: Option<String>,
}

impl Build {
    pub(crate) fn new(image: ImageRef) -> Self {
        Self {
            image,
            digest: None,
            event_time: None,
            callback_url: None,
            event_id: None,
        }
    }

    pub(crate) fn id(mut self, event_id: Option<String>) -> Self {
        self.event_id = event_id;
        self
    }

    pub(crate) fn digest(mut self, digest: Option<Digest>) -> Self {
        self.digest = digest;
        self
    }

    pub(crate) fn at(mut self, event_time: Option<Timestamp>) -> Self {
        self.event_time = event_time;
        self
    }
}

/// What a decoder needs besides the body.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct DecodeContext<'a> {
    /// The sender's event name header (GitHub's `X-GitHub-Event`).
    pub event: Option<&'a str>,
    /// The configured registry name that replaces the one in the payload.
    pub registry: Option<&'a str>,
}

impl<'a> DecodeContext<'a> {
    /// A context with an event name and an optional registry override.
    pub fn new(event: Option<&'a str>, registry: Option<&'a str>) -> Self {
        Self { event, registry }
    }
}

/// Decodes one payload of `sender` into the builds it announces (none when it announces no
/// new build: a pull, a blob push, a ping, a digest-only push, ...).
///
/// Never panics; every problem is a [`DecodeError`] naming its field.
pub fn decode(
    sender: Sender,
    body: &[u8],
    ctx: &DecodeContext<'_>,
) -> Result<Vec<Build>, DecodeError> {
    let value: Json<'_> = serde_json::from_slice(body).map_err(|e| DecodeError {
        field: "body".to_owned(),
        problem: format!("invalid JSON: {e}"),
    })?;
    if !value.is_object() {
        return Err(Field::root(&value).error("expected a JSON object"));
    }
    let root = Field::root(&value);
    match sender {
        Sender::DockerHub => dockerhub::decode(&root),
        Sender::Registry => registry::decode(&root, ctx),
        Sender::GitHub => github::decode(&root, ctx),
        Sender::Quay => quay::decode(&root, ctx),
        Sender::Harbor => harbor::decode(&root, ctx),
        Sender::Generic => generic::decode(&root),
    }
}

/// The fields a reference was assembled from, to blame the right one.
pub(crate) struct Parts<'f, 'a> {
    /// Where the registry host came from.
    pub(crate) registry: &'f Field<'a>,
    /// Where the repository path came from.
    pub(crate) repository: &'f Field<'a>,
    /// Where the tag came from.
    pub(crate) tag: &'f Field<'a>,
}

impl Parts<'_, '_> {
    /// Parses `reference`; an error names the part at fault.
    pub(crate) fn image(&self, reference: &str) -> Result<ImageRef, DecodeError> {
        ImageRef::parse(reference).map_err(|e| {
            let field = match e.problem {
                ReferenceProblem::Tag(_) => self.tag,
                ReferenceProblem::Registry(_) => self.registry,
                _ => self.repository,
            };
            field.error(e)
        })
    }
}

/// Checks that `host` (from `field`) names a registry: a bare word like `myregistry` would
/// otherwise silently become a Docker Hub path component.
pub(crate) fn registry_host<'h>(field: &Field<'_>, host: &'h str) -> Result<&'h str, DecodeError> {
    match ImageRef::parse(&format!("{host}/probe:latest")) {
        Ok(probe) if probe.registry() == host => Ok(host),
        _ => Err(field.error(format!("{host:?} is not a registry host[:port]"))),
    }
}

/// `host/path` of a reference that may end in `:tag` and/or `@digest`.
pub(crate) fn strip_tag(reference: &str) -> &str {
    let reference = reference.split('@').next().unwrap_or(reference);
    let last_slash = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[last_slash..].rfind(':') {
        Some(i) => &reference[..last_slash + i],
        None => reference,
    }
}

/// `base` (`host/path`) with its host replaced by `registry`, when one is configured.
pub(crate) fn rehost(base: &str, registry: Option<&str>) -> String {
    match (registry, base.split_once('/')) {
        (Some(registry), Some((_, path))) => format!("{registry}/{path}"),
        (Some(registry), None) => format!("{registry}/{base}"),
        (None, _) => base.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_tags_and_digests_but_not_ports() {
        assert_eq!(strip_tag("ghcr.io/o/app:v1"), "ghcr.io/o/app");
        assert_eq!(strip_tag("ghcr.io/o/app:"), "ghcr.io/o/app");
        assert_eq!(strip_tag("host:5000/o/app"), "host:5000/o/app");
        assert_eq!(strip_tag("host:5000/o/app@sha256:ab"), "host:5000/o/app");
        assert_eq!(strip_tag("app:1"), "app");
        assert_eq!(strip_tag(""), "");
    }

    #[test]
    fn registry_hosts_must_look_like_hosts() {
        let doc: Json<'_> = serde_json::from_str("{}").unwrap();
        let root = Field::root(&doc);
        let f = root.get("host");
        for good in [
            "127.0.0.1:5000",
            "localhost",
            "reg.example.com",
            "[::1]:5000",
        ] {
            assert_eq!(registry_host(&f, good), Ok(good));
        }
        for bad in ["myregistry", "bad host", "", "a/b", "reg.example.com:x"] {
            assert_eq!(registry_host(&f, bad).unwrap_err().field, "host", "{bad}");
        }
    }

    #[test]
    fn rehost_replaces_only_the_host() {
        assert_eq!(rehost("quay.io/ns/a", Some("q.local")), "q.local/ns/a");
        assert_eq!(rehost("quay.io/ns/a", None), "quay.io/ns/a");
    }

    #[test]
    fn bad_parts_are_blamed_precisely() {
        let doc: Json<'_> =
            serde_json::from_str(r#"{"host": "h", "repo": "r", "tag": "t"}"#).unwrap();
        let root = Field::root(&doc);
        let (host, repo, tag) = (root.get("host"), root.get("repo"), root.get("tag"));
        let parts = Parts {
            registry: &host,
            repository: &repo,
            tag: &tag,
        };
        assert_eq!(parts.image("a/b:-bad").unwrap_err().field, "tag");
        assert_eq!(parts.image("a:b:/x/y:1").unwrap_err().field, "host");
        assert_eq!(parts.image("a/B:1").unwrap_err().field, "repo");
        assert!(parts.image("a/b:1").is_ok());
    }
}
