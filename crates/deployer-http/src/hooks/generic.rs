//! The generic endpoint for CI jobs and people: `{"image": "repo:tag", "digest": "sha256:..."}`,
//! the digest optional (resolved from the registry when absent). Optional `"id"` (the sender's
//! event id: the same id again is a replay) and `"time"` (RFC 3339: when the build was pushed;
//! a call dated before the current target is refused).

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
    // Optional: a CI system that names its events and dates them gets replays refused and
    // late calls ordered, as registries do.
    let time_field = root.get("time");
    let time = match time_field.opt_text()? {
        Some(_) => Some(
            time_field
                .rfc3339()
                .ok_or_else(|| time_field.error("not an RFC 3339 time"))?,
        ),
        None => None,
    };
    let id_field = root.get("id");
    let id = match id_field.opt_text()? {
        Some(id) if id.len() > 128 => return Err(id_field.error("longer than 128 characters")),
        id => id.map(str::to_owned),
    };
    Ok(vec![
        Build::new(image.without_digest())
            .digest(digest)
            .at(time)
            .id(id),
    ])
}
