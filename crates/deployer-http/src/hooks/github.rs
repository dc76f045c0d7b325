//! GitHub `package` and `registry_package` events for container packages (GHCR).
//!
//! Other events (`ping`, anything a webhook was also subscribed to), other actions, other
//! package types and digest-only pushes (empty tag) announce no build and are skipped.

use super::decode::{Build, DecodeContext, DecodeError, Parts, strip_tag};
use super::json::Field;

pub(crate) fn decode(root: &Field<'_>, ctx: &DecodeContext<'_>) -> Result<Vec<Build>, DecodeError> {
    let Some(kind @ ("package" | "registry_package")) = ctx.event else {
        return Ok(Vec::new());
    };
    if !matches!(root.get("action").opt_str()?, Some("published" | "updated")) {
        return Ok(Vec::new());
    }
    let package = root.get(kind);
    let is_container = package
        .get("package_type")
        .opt_str()?
        .is_some_and(|t| t.eq_ignore_ascii_case("container"));
    if !is_container {
        return Ok(Vec::new());
    }
    let version = package.get("package_version");
    let metadata = version.get("container_metadata");
    let tag_meta = metadata.get("tag");
    let tag_field = tag_meta.get("name");
    let Some(tag) = tag_field.opt_text()? else {
        return Ok(Vec::new());
    };
    let url_field = version.get("package_url");
    let name_field = package.get("name");
    // GHCR names are lowercase even when the GitHub owner's name is not.
    let (base, blame) = match url_field.opt_text()? {
        Some(url) => (strip_tag(url).to_ascii_lowercase(), &url_field),
        None => (
            format!(
                "ghcr.io/{}/{}",
                package.get("namespace").text()?,
                name_field.text()?
            )
            .to_ascii_lowercase(),
            &name_field,
        ),
    };
    let parts = Parts {
        registry: blame,
        repository: blame,
        tag: &tag_field,
    };
    let image = parts.image(&format!("{base}:{tag}"))?;
    let digest = tag_meta.get("digest").opt_digest()?;
    let time = version
        .get("updated_at")
        .rfc3339()
        .or_else(|| package.get("updated_at").rfc3339());
    Ok(vec![Build::new(image).digest(digest).at(time)])
}
