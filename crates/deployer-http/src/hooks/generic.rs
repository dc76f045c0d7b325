//! The generic endpoint for CI jobs and people: `{"image": "repo:tag", "digest": "sha256:..."}`,
//! the digest optional (resolved from the registry when absent).

use super::decode::{Build, DecodeError, Parts};
use super::json::Field;

pub(crate) fn decode(root: &Field<'_>) -> Result<Vec<Build>, DecodeError> {
    let image_field = root.get("image");
    let parts = Parts {
        registry: &image_field,
        repository: &image_field,
        tag: &image_field,
    };
    let image = parts.image(image_field.text()?)?;
    let digest_field = root.get("digest");
    let digest = match (image.digest(), digest_field.opt_digest()?) {
        (Some(pinned), Some(given)) if *pinned != given => {
            return Err(digest_field.error("differs from the digest in image"));
        }
        (Some(pinned), _) => Some(pinned.clone()),
        (None, given) => given,
    };
    Ok(vec![Build::new(image.without_digest()).digest(digest)])
}
