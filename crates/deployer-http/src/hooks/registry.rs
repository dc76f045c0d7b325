//! Docker Registry (distribution) notifications: `{"events": [...]}`.
//!
//! One `docker push` sends several envelopes (blob pushes, HEAD/GET pulls, one manifest push);
//! only a `push` of a manifest or index with a tag is a new build of repo:tag. Everything else
//! is acknowledged and skipped without looking at its other fields.

use super::decode::{Build, DecodeContext, DecodeError, Parts, registry_host};
use super::json::Field;

/// Content types the registry sends (2.x, 3.x), plus plain JSON for hand-made requests.
pub(crate) const MEDIA_TYPES: &[&str] = &[
    "application/vnd.docker.distribution.events.v1+json",
    "application/vnd.docker.distribution.events.v2+json",
    "application/json",
];

/// Longer event ids are not kept: they are not the registry's (a UUID), and every id is
/// remembered with the target.
const EVENT_ID_MAX: usize = 128;

/// Media types of pushes that name an image (as opposed to a layer or config blob).
const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
];

pub(crate) fn decode(root: &Field<'_>, ctx: &DecodeContext<'_>) -> Result<Vec<Build>, DecodeError> {
    let mut builds = Vec::new();
    for event in root
        .get("events")
        .items_at_most(super::decode::MAX_ENTRIES)?
    {
        if event.get("action").opt_str()? != Some("push") {
            continue;
        }
        let target = event.get("target");
        let is_manifest = target
            .get("mediaType")
            .opt_str()?
            .is_some_and(|t| MANIFEST_TYPES.iter().any(|m| m.eq_ignore_ascii_case(t)));
        let tag_field = target.get("tag");
        // A push by digest only (an index's child manifests) moves no tag.
        let (true, Some(tag)) = (is_manifest, tag_field.opt_text()?) else {
            continue;
        };
        let repository_field = target.get("repository");
        let repository = repository_field.text()?;
        let digest = target.get("digest").digest()?;
        let request = event.get("request");
        let host_field = request.get("host");
        let url_field = target.get("url");
        let host = match (ctx.registry, host_field.opt_text()?) {
            (Some(configured), _) => configured,
            (None, Some(host)) => registry_host(&host_field, host)?,
            (None, None) => match url_host(&url_field)? {
                Some(host) => registry_host(&url_field, host)?,
                None => return Err(host_field.error("missing (configure the registry name)")),
            },
        };
        let parts = Parts {
            registry: &host_field,
            repository: &repository_field,
            tag: &tag_field,
        };
        let image = parts.image(&format!("{host}/{repository}:{tag}"))?;
        let time = event.get("timestamp").rfc3339();
        let id = event
            .get("id")
            .opt_text()?
            .filter(|id| id.len() <= EVENT_ID_MAX)
            .map(str::to_owned);
        builds.push(Build::new(image).digest(Some(digest)).at(time).id(id));
    }
    Ok(builds)
}

/// `host[:port]` of `target.url` (`http://127.0.0.1:5000/v2/...`).
fn url_host<'a>(url: &Field<'a>) -> Result<Option<&'a str>, DecodeError> {
    Ok(url
        .opt_text()?
        .and_then(|u| u.split_once("://"))
        .and_then(|(_, rest)| rest.split('/').next())
        .filter(|host| !host.is_empty()))
}
