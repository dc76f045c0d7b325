use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::BoxError;
use crate::image::{Digest, ImageRef};
use crate::service::BuildSpec;

/// Why an image could not be resolved, fetched or built. Every variant names the image.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// The registry has no such repository, tag or digest.
    #[error("image {image} not found")]
    NotFound {
        /// The image asked for.
        image: String,
    },
    /// The registry refused the credentials (or their absence).
    #[error("not authorised to pull {image}")]
    Unauthorized {
        /// The image asked for.
        image: String,
    },
    /// The registry could not be reached or answered nonsense.
    #[error("registry for {image} unreachable")]
    RegistryUnreachable {
        /// The image asked for.
        image: String,
        /// What went wrong underneath.
        #[source]
        source: BoxError,
    },
    /// `docker build` failed.
    #[error("build of {image} failed: {}", last_lines.join(" | "))]
    BuildFailed {
        /// The image being built.
        image: String,
        /// The build's last lines of output.
        last_lines: Vec<String>,
    },
    /// The container engine could not be reached.
    #[error("container engine unreachable while handling {image}")]
    EngineUnreachable {
        /// The image being handled.
        image: String,
        /// What went wrong underneath.
        #[source]
        source: BoxError,
    },
    /// This source cannot do what was asked (for example build).
    #[error("{operation} is not supported for {image}")]
    Unsupported {
        /// What was asked.
        operation: &'static str,
        /// The image asked for.
        image: String,
    },
    /// Anything else.
    #[error("{operation} of {image} failed")]
    Other {
        /// What was asked.
        operation: &'static str,
        /// The image asked for.
        image: String,
        /// What went wrong underneath.
        #[source]
        source: BoxError,
    },
}

impl ImageError {
    /// What this failure means for a deploy: a missing or forbidden image will not appear by
    /// retrying; a failed `docker build` is the build's own fault.
    pub fn kind(&self) -> super::FailureKind {
        use super::FailureKind as K;
        match self {
            Self::NotFound { .. } | Self::Unauthorized { .. } | Self::Unsupported { .. } => {
                K::Permanent
            }
            Self::BuildFailed { .. } => K::Build,
            Self::RegistryUnreachable { .. }
            | Self::EngineUnreachable { .. }
            | Self::Other { .. } => K::Transient,
        }
    }
}

/// How a pull is going, for progress output.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullProgress {
    /// Layers seen so far.
    pub layers_total: u32,
    /// Layers downloaded and extracted (or already present).
    pub layers_done: u32,
    /// Bytes to download, as far as known.
    pub bytes_total: u64,
    /// Bytes downloaded.
    pub bytes_done: u64,
    /// The engine's latest status line.
    pub status: String,
}

/// Receives progress while an image is pulled or built. Must be cheap and never block.
pub trait FetchProgress: Send + Sync {
    /// Called whenever the engine reports progress.
    fn update(&self, progress: &PullProgress);
}

/// A [`FetchProgress`] that drops everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl FetchProgress for NoProgress {
    fn update(&self, _: &PullProgress) {}
}

/// Whether a fetch had anything to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fetched {
    /// The image was already local: nothing was pulled.
    AlreadyPresent,
    /// The image was pulled (or built).
    Pulled,
}

/// Where images come from: a registry (through the engine) or a local build.
///
/// Contract:
/// - `resolve` never pulls; it asks the registry which digest a tag points to.
/// - `fetch` is idempotent: when `image@digest` is already local it returns
///   [`Fetched::AlreadyPresent`] without network traffic. On `Ok`, the image with that digest
///   is local and the tag `image` points at it (so a supervisor running the tag gets it).
/// - Dropping a `fetch` future cancels the pull; a later `fetch` starts over or resumes.
/// - Errors are the variants of [`ImageError`]; `NotFound` and `Unauthorized` will not go away by
///   retrying, the others may.
#[async_trait]
pub trait ImageSource: Send + Sync {
    /// The digest `image` (a repo:tag) points to in its registry, without pulling.
    async fn resolve(&self, image: &ImageRef) -> Result<Digest, ImageError>;

    /// Makes `image@digest` available locally.
    async fn fetch(
        &self,
        image: &ImageRef,
        digest: &Digest,
        progress: &dyn FetchProgress,
    ) -> Result<Fetched, ImageError>;

    /// Builds `build` into a local image tagged `image`; returns its content digest (image ID).
    async fn build(
        &self,
        image: &ImageRef,
        build: &BuildSpec,
        progress: &dyn FetchProgress,
    ) -> Result<Digest, ImageError> {
        let _ = (build, progress);
        Err(ImageError::Unsupported {
            operation: "build",
            image: image.to_string(),
        })
    }
}
