//! Quay `repo_push` notifications: one build per entry of `updated_tags` (a list; very old
//! senders send a map tag -> image id).

use super::decode::{Build, DecodeContext, DecodeError, MAX_ENTRIES, Parts, rehost, strip_tag};
use super::json::Field;

pub(crate) fn decode(root: &Field<'_>, ctx: &DecodeContext<'_>) -> Result<Vec<Build>, DecodeError> {
    let repository_field = root.get("repository");
    let repository = repository_field.text()?;
    let url_field = root.get("docker_url");
    let base = match url_field.opt_text()? {
        Some(url) => strip_tag(url).to_owned(),
        None => format!("quay.io/{repository}"),
    };
    let base = rehost(&base, ctx.registry);
    let tags_field = root.get("updated_tags");
    tags_field.at_most(MAX_ENTRIES)?;
    let tag_fields = match tags_field.keys() {
        Some(keys) => keys.into_iter().map(|k| (tags_field.get(k), k)).collect(),
        None => tags_field
            .items()?
            .into_iter()
            .map(|f| {
                let tag = f.text()?;
                Ok((f, tag))
            })
            .collect::<Result<Vec<_>, DecodeError>>()?,
    };
    tag_fields
        .iter()
        .map(|(tag_field, tag)| {
            let parts = Parts {
                registry: &url_field,
                repository: &repository_field,
                tag: tag_field,
            };
            Ok(Build::new(parts.image(&format!("{base}:{tag}"))?))
        })
        .collect()
}
