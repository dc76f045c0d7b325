//! Image references (`[registry/]path[:tag][@digest]`), parsed and normalised the way the Docker
//! CLI does (`distribution/reference`'s `ParseNormalizedNamed`).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::digest::{Digest, DigestError};

/// The registry a reference without a host part points to.
pub const DOCKER_HUB: &str = "docker.io";
/// The host older Docker tooling wrote for Docker Hub; normalised to [`DOCKER_HUB`].
const LEGACY_DOCKER_HUB: &str = "index.docker.io";
/// Tag assumed when a reference names neither tag nor digest.
pub const DEFAULT_TAG: &str = "latest";
/// Docker's limit on the length of `registry/path`.
const NAME_MAX: usize = 255;
/// Docker's limit on a tag's length.
const TAG_MAX: usize = 128;

/// Why an image reference was rejected. The message quotes the input and names the part at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference {input:?}: {problem}")]
pub struct ReferenceError {
    /// The rejected input.
    pub input: String,
    /// What is wrong with it.
    pub problem: ReferenceProblem,
}

/// The part of a reference that broke the rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReferenceProblem {
    /// Nothing was given.
    #[error("it is empty")]
    Empty,
    /// A bare 64-hex-digit string is an image ID, not a name.
    #[error("a 64-digit hex string is an image ID, not a repository name")]
    ImageId,
    /// The repository path has uppercase letters.
    #[error("repository name {0:?} must be lowercase")]
    Uppercase(String),
    /// The registry host or port is malformed.
    #[error("registry {0:?} is not a valid host[:port]")]
    Registry(String),
    /// A path component breaks `[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*`.
    #[error(
        "path component {0:?} must be lowercase letters and digits, separated by '.', '_', '__' or dashes"
    )]
    PathComponent(String),
    /// The tag breaks `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
    #[error("tag {0:?} must be 1 to 128 of [A-Za-z0-9_.-] and not start with '.' or '-'")]
    Tag(String),
    /// `registry/path` is longer than Docker allows.
    #[error("name is {0} characters long; the limit is 255")]
    TooLong(usize),
    /// The `@digest` part is malformed.
    #[error("{0}")]
    Digest(DigestError),
}

/// A normalised image reference.
///
/// Always has a registry and a full path (`docker.io/library/nginx`), and a tag or a digest or
/// both: a reference naming neither gets the tag `latest`. `Display` prints the canonical form,
/// which parses back to an equal value.
///
/// ```
/// use deployer_core::ImageRef;
/// let image: ImageRef = "nginx".parse().unwrap();
/// assert_eq!(image.to_string(), "docker.io/library/nginx:latest");
/// assert_eq!(image.familiar(), "nginx:latest");
/// let local: ImageRef = "localhost:5000/demo/app:v2".parse().unwrap();
/// assert_eq!(local.registry(), "localhost:5000");
/// assert_eq!(local.tag(), Some("v2"));
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageRef(Arc<Parts>);

/// The parts of a reference, shared: references are copied into every target, status and
/// report, and a clone should not allocate.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Parts {
    /// Registry host with optional port, for example `docker.io` or `127.0.0.1:5000`.
    registry: String,
    /// Repository path inside the registry, for example `library/nginx`.
    repository: String,
    /// Tag, if any; `None` only when a digest is present.
    tag: Option<String>,
    /// Pinned content, if any.
    digest: Option<Digest>,
}

impl ImageRef {
    /// Parses and normalises a reference as `docker pull` would.
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        parse(input).map_err(|problem| ReferenceError {
            input: input.to_owned(),
            problem,
        })
    }

    /// Registry host with optional port.
    pub fn registry(&self) -> &str {
        &self.0.registry
    }

    /// Repository path inside the registry.
    pub fn repository(&self) -> &str {
        &self.0.repository
    }

    /// The tag, if the reference has one.
    pub fn tag(&self) -> Option<&str> {
        self.0.tag.as_deref()
    }

    /// The pinned digest, if the reference has one.
    pub fn digest(&self) -> Option<&Digest> {
        self.0.digest.as_ref()
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.0.registry, self.0.repository)
    }

    /// Whether the image lives on Docker Hub.
    pub fn is_docker_hub(&self) -> bool {
        self.0.registry == DOCKER_HUB
    }

    /// The short form people type: `nginx:latest`, `user/app:v1`, `ghcr.io/o/app:v1`.
    pub fn familiar(&self) -> String {
        let mut out = if self.is_docker_hub() {
            self.0
                .repository
                .strip_prefix("library/")
                .unwrap_or(&self.0.repository)
                .to_owned()
        } else {
            self.name()
        };
        self.push_suffix(&mut out);
        out
    }

    /// The same repository and tag with the digest dropped: the key a service tracks.
    /// A digest-only reference gets the default tag.
    pub fn without_digest(&self) -> Self {
        if self.0.digest.is_none() {
            return self.clone();
        }
        Self(Arc::new(Parts {
            registry: self.0.registry.clone(),
            repository: self.0.repository.clone(),
            tag: Some(self.0.tag.clone().unwrap_or_else(|| DEFAULT_TAG.to_owned())),
            digest: None,
        }))
    }

    /// The same reference pinned to `digest` (the tag is kept for readability).
    pub fn with_digest(&self, digest: Digest) -> Self {
        Self(Arc::new(Parts {
            digest: Some(digest),
            ..(*self.0).clone()
        }))
    }

    /// The same repository with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Result<Self, ReferenceError> {
        check_tag(tag).map_err(|problem| ReferenceError {
            input: format!("{}:{tag}", self.name()),
            problem,
        })?;
        Ok(Self(Arc::new(Parts {
            tag: Some(tag.to_owned()),
            digest: None,
            ..(*self.0).clone()
        })))
    }

    /// Whether `other` names the same repository (registry and path), whatever tag or digest.
    pub fn same_repository(&self, other: &Self) -> bool {
        self.0.registry == other.0.registry && self.0.repository == other.0.repository
    }

    fn push_suffix(&self, out: &mut String) {
        if let Some(tag) = &self.0.tag {
            out.push(':');
            out.push_str(tag);
        }
        if let Some(digest) = &self.0.digest {
            out.push('@');
            out.push_str(digest.as_str());
        }
    }
}

fn parse(input: &str) -> Result<ImageRef, ReferenceProblem> {
    if input.is_empty() {
        return Err(ReferenceProblem::Empty);
    }
    let (rest, digest) = match input.split_once('@') {
        Some((rest, digest)) => (
            rest,
            Some(Digest::parse(digest).map_err(ReferenceProblem::Digest)?),
        ),
        None => (input, None),
    };
    // A ':' after the last '/' starts the tag; one before it belongs to a registry port.
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if name.is_empty() {
        return Err(ReferenceProblem::Empty);
    }
    if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ReferenceProblem::ImageId);
    }
    let (registry, repository) = split_registry(name);
    if let Some(registry) = registry {
        check_registry(registry)?;
    }
    if repository.to_ascii_lowercase() != repository {
        return Err(ReferenceProblem::Uppercase(repository.to_owned()));
    }
    let registry = match registry {
        None | Some(LEGACY_DOCKER_HUB) => DOCKER_HUB,
        Some(host) => host,
    };
    let repository = if registry == DOCKER_HUB && !repository.contains('/') {
        format!("library/{repository}")
    } else {
        repository.to_owned()
    };
    for component in repository.split('/') {
        check_path_component(component)?;
    }
    let length = registry.len() + 1 + repository.len();
    if length > NAME_MAX {
        return Err(ReferenceProblem::TooLong(length));
    }
    if let Some(tag) = tag {
        check_tag(tag)?;
    }
    let tag = match (tag, &digest) {
        (Some(tag), _) => Some(tag.to_owned()),
        (None, Some(_)) => None,
        (None, None) => Some(DEFAULT_TAG.to_owned()),
    };
    Ok(ImageRef(Arc::new(Parts {
        registry: registry.to_owned(),
        repository,
        tag,
        digest,
    })))
}

/// Docker's rule: the first component is a registry if it has a '.' or ':', is `localhost`,
/// or has uppercase letters (which a repository path may not).
fn split_registry(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.to_ascii_lowercase() != first =>
        {
            (Some(first), rest)
        }
        _ => (None, name),
    }
}

fn check_registry(registry: &str) -> Result<(), ReferenceProblem> {
    let bad = || ReferenceProblem::Registry(registry.to_owned());
    let (host, port) = if let Some(rest) = registry.strip_prefix('[') {
        // IPv6 literal: [addr] or [addr]:port
        let (addr, after) = rest.split_once(']').ok_or_else(bad)?;
        if addr.is_empty() || !addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return Err(bad());
        }
        match after {
            "" => return Ok(()),
            _ => (None, Some(after.strip_prefix(':').ok_or_else(bad)?)),
        }
    } else {
        match registry.rsplit_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(registry), None),
        }
    };
    if let Some(host) = host {
        let component_ok = |c: &str| {
            !c.is_empty()
                && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !c.starts_with('-')
                && !c.ends_with('-')
        };
        if !host.split('.').all(component_ok) {
            return Err(bad());
        }
    }
    if let Some(port) = port
        && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(bad());
    }
    Ok(())
}

fn check_path_component(component: &str) -> Result<(), ReferenceProblem> {
    let bad = || ReferenceProblem::PathComponent(component.to_owned());
    let is_alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = component.as_bytes();
    if bytes.is_empty() || !is_alnum(bytes[0]) || !is_alnum(bytes[bytes.len() - 1]) {
        return Err(bad());
    }
    let mut i = 0;
    while i < bytes.len() {
        if is_alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !is_alnum(bytes[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        let allowed = matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
        if !allowed {
            return Err(bad());
        }
    }
    Ok(())
}

fn check_tag(tag: &str) -> Result<(), ReferenceProblem> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= TAG_MAX
        && word(bytes[0])
        && bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ReferenceProblem::Tag(tag.to_owned()))
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = self.name();
        self.push_suffix(&mut out);
        f.write_str(&out)
    }
}

impl fmt::Debug for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ImageRef({self})")
    }
}

impl FromStr for ImageRef {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for ImageRef {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ImageRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}
