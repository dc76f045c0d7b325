//! Docker Hub repository webhooks: `push_data` and `repository`, no digest (the ingest worker
//! resolves it), an optional `callback_url`.

use super::decode::{Build, DecodeError, Parts};
use super::json::Field;

pub(crate) fn decode(root: &Field<'_>) -> Result<Vec<Build>, DecodeError> {
    let push = root.get("push_data");
    let tag_field = push.get("tag");
    let tag = tag_field.text()?;
    let repository = root.get("repository");
    let name_field = repository.get("repo_name");
    let name = match name_field.opt_text()? {
        Some(name) => name.to_owned(),
        None => format!(
            "{}/{}",
            repository.get("namespace").text()?,
            repository.get("name").text()?
        ),
    };
    let parts = Parts {
        registry: &name_field,
        repository: &name_field,
        tag: &tag_field,
    };
    let image = parts.image(&format!("{name}:{tag}"))?;
    if !image.is_docker_hub() {
        return Err(name_field.error(format!("{name:?} is not a Docker Hub repository")));
    }
    let mut build = Build::new(image).at(push.get("pushed_at").unix_time());
    build.callback_url = root.get("callback_url").opt_text()?.map(str::to_owned);
    Ok(vec![build])
}
