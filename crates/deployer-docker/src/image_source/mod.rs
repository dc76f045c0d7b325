//! [`DockerImageSource`]: the core's `ImageSource` over the Docker engine.
//!
//! - `resolve` asks the registry through the engine (distribution inspect), never pulls;
//! - `fetch` compares with what is local (`RepoDigests`, or the image ID of a built image)
//!   and pulls `repo@digest` only when it is missing, then points `repo:tag` at it;
//! - `build` tars a directory (honouring `.dockerignore`), builds it, and tags the result
//!   `repo:tag` and `repo:build-<id>`.

mod build;
mod dockerignore;
mod pull;
mod resolve;

use async_trait::async_trait;
use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::models::ImageInspect;
use bollard::query_parameters::TagImageOptions;
use deployer_core::ports::{FetchProgress, Fetched, ImageError, ImageSource};
use deployer_core::service::BuildSpec;
use deployer_core::{Digest, ImageRef};

use crate::credentials::Credentials;
use crate::error::{image_error, is_not_found};

pub use dockerignore::DockerIgnore;

/// Resolves, pulls and builds images through the Docker engine.
#[derive(Debug, Clone)]
pub struct DockerImageSource {
    docker: Docker,
    credentials: Credentials,
}

impl DockerImageSource {
    /// A source on `docker` (see [`crate::connect`]) using `credentials` for registries.
    pub fn new(docker: Docker, credentials: Credentials) -> Self {
        Self {
            docker,
            credentials,
        }
    }

    /// The engine client.
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// Credentials for `image`'s registry, in the engine's form.
    fn credentials_for(&self, image: &ImageRef) -> Result<Option<DockerCredentials>, ImageError> {
        self.credentials
            .for_registry(image.registry())
            .map(|auth| auth.map(|a| a.to_docker()))
            .map_err(|e| ImageError::Other {
                operation: "reading registry credentials",
                image: image.to_string(),
                source: Box::new(e),
            })
    }

    /// The local image called `name` (a tag, `repo@digest` or an ID), if there is one.
    async fn local(
        &self,
        name: &str,
        image: &ImageRef,
    ) -> Result<Option<ImageInspect>, ImageError> {
        match self.docker.inspect_image(name).await {
            Ok(found) => Ok(Some(found)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(image_error(
                "inspecting the local image",
                &image.to_string(),
                e,
            )),
        }
    }

    /// Points `image`'s tag at `local` (an image ID or `repo@digest`) unless it already does.
    async fn ensure_tag(&self, image: &ImageRef, id: &str) -> Result<(), ImageError> {
        let tag = image.tag().unwrap_or(deployer_core::image::DEFAULT_TAG);
        let tagged = format!("{}:{tag}", image.name());
        if let Some(current) = self.local(&tagged, image).await?
            && current.id.as_deref() == Some(id)
        {
            return Ok(());
        }
        let options = TagImageOptions {
            repo: Some(image.name()),
            tag: Some(tag.to_owned()),
        };
        self.docker
            .tag_image(id, Some(options))
            .await
            .map_err(|e| image_error("tagging", &tagged, e))?;
        tracing::debug!(image = %tagged, id, "tag moved");
        Ok(())
    }
}

/// Whether `inspect` lists `image@digest` among its `RepoDigests` (compared normalised, as
/// the engine writes Docker Hub's names in their short form).
pub(crate) fn has_repo_digest(inspect: &ImageInspect, image: &ImageRef, digest: &Digest) -> bool {
    inspect.repo_digests.iter().flatten().any(|rd| {
        ImageRef::parse(rd).is_ok_and(|r| r.same_repository(image) && r.digest() == Some(digest))
    })
}

#[async_trait]
impl ImageSource for DockerImageSource {
    async fn resolve(&self, image: &ImageRef) -> Result<Digest, ImageError> {
        resolve::resolve(self, image).await
    }

    async fn fetch(
        &self,
        image: &ImageRef,
        digest: &Digest,
        progress: &dyn FetchProgress,
    ) -> Result<Fetched, ImageError> {
        pull::fetch(self, image, digest, progress).await
    }

    async fn build(
        &self,
        image: &ImageRef,
        build: &BuildSpec,
        progress: &dyn FetchProgress,
    ) -> Result<Digest, ImageError> {
        build::build(self, image, build, progress).await
    }
}
