//! `resolve`: which digest a tag points to, asked of the registry without pulling.

use deployer_core::ports::ImageError;
use deployer_core::{Digest, ImageRef};

use super::DockerImageSource;
use crate::error::image_error;

pub(super) async fn resolve(
    source: &DockerImageSource,
    image: &ImageRef,
) -> Result<Digest, ImageError> {
    let image = image.without_digest();
    let name = image.to_string();
    let credentials = source.credentials_for(&image)?;
    // Distribution inspect: the engine asks the registry for the manifest's digest (a HEAD
    // or GET of the manifest), the cheap way to poll a tag.
    let inspect = source
        .docker
        .inspect_registry_image(&name, credentials)
        .await
        .map_err(|e| image_error("resolving", &name, e))?;
    let digest = inspect.descriptor.digest.unwrap_or_default();
    let digest = Digest::parse(&digest).map_err(|e| ImageError::RegistryUnreachable {
        image: name.clone(),
        source: format!("the registry answered an invalid digest {digest:?}: {e}").into(),
    })?;
    tracing::debug!(image = %name, digest = %digest, "resolved");
    Ok(digest)
}
