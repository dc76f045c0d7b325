//! Harbor `PUSH_ARTIFACT` webhooks (and Harbor 1.x `pushImage`): one build per tagged resource.

use super::decode::{Build, DecodeContext, DecodeError, MAX_ENTRIES, Parts, rehost, strip_tag};
use super::json::Field;

/// Event types that announce a push.
const PUSH_TYPES: &[&str] = &["PUSH_ARTIFACT", "pushImage"];

pub(crate) fn decode(root: &Field<'_>, ctx: &DecodeContext<'_>) -> Result<Vec<Build>, DecodeError> {
    if !PUSH_TYPES.contains(&root.get("type").text()?) {
        return Ok(Vec::new());
    }
    let time = root.get("occur_at").unix_time();
    let data = root.get("event_data");
    let mut builds = Vec::new();
    for resource in data.get("resources").items_at_most(MAX_ENTRIES)? {
        let tag_field = resource.get("tag");
        let Some(tag) = tag_field.opt_text()? else {
            continue;
        };
        let url_field = resource.get("resource_url");
        let repository = data.get("repository");
        let name_field = repository.get("repo_full_name");
        let (base, blame) = match (url_field.opt_text()?, ctx.registry) {
            (Some(url), registry) => (rehost(strip_tag(url), registry), &url_field),
            (None, Some(registry)) => (format!("{registry}/{}", name_field.text()?), &name_field),
            (None, None) => return Err(url_field.error("missing")),
        };
        let parts = Parts {
            registry: blame,
            repository: blame,
            tag: &tag_field,
        };
        let image = parts.image(&format!("{base}:{tag}"))?;
        let digest = resource.get("digest").opt_digest()?;
        builds.push(Build::new(image).digest(digest).at(time));
    }
    Ok(builds)
}
