//! [`ImagePruner`]: opt-in removal of old images after successful deploys, keeping the
//! newest N of each repository for rollbacks.
//!
//! It is a `Notifier`: add it to the driver's notifiers when cleanup is wanted (it is off by
//! default: without it every image stays). On each `succeeded` report it looks at the local
//! images of the report's repository and removes the references (tags and digests of that
//! repository only) of every image beyond the newest `keep` by creation time, unless a
//! container (running or stopped, kept for a rollback) uses it or the tracked tag points
//! at it. Images that other repositories also reference survive with those references.

use std::collections::HashSet;

use async_trait::async_trait;
use bollard::Docker;
use bollard::query_parameters::{ListContainersOptions, ListImagesOptions, RemoveImageOptions};
use deployer_core::ports::{Notifier, NotifyError};
use deployer_core::{DeployReport, ImageRef, Outcome};

use crate::error::{DockerError, is_not_found};

/// Removes images of a repository beyond the newest `keep`. See the module docs.
#[derive(Debug, Clone)]
pub struct ImagePruner {
    docker: Docker,
    keep: usize,
}

impl ImagePruner {
    /// Keeps the newest `keep` images per repository (at least 1).
    pub fn new(docker: Docker, keep: usize) -> Self {
        Self {
            docker,
            keep: keep.max(1),
        }
    }

    /// Prunes `image`'s repository now; returns the references removed.
    pub async fn prune(&self, image: &ImageRef) -> Result<Vec<String>, DockerError> {
        let engine = |operation: &'static str| {
            move |source| DockerError::Engine {
                operation,
                subject: image.to_string(),
                source,
            }
        };
        let images = self
            .docker
            .list_images(Some(ListImagesOptions::default()))
            .await
            .map_err(engine("listing images"))?;
        let containers = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                ..Default::default()
            }))
            .await
            .map_err(engine("listing containers"))?;
        let in_use: HashSet<String> = containers.into_iter().filter_map(|c| c.image_id).collect();
        let ours =
            |reference: &String| ImageRef::parse(reference).is_ok_and(|r| r.same_repository(image));
        let tracked = image.without_digest();
        let mut mine: Vec<_> = images
            .into_iter()
            .filter(|i| i.repo_tags.iter().chain(&i.repo_digests).any(ours))
            .collect();
        mine.sort_by_key(|i| std::cmp::Reverse(i.created));
        let mut removed = Vec::new();
        for old in mine.into_iter().skip(self.keep) {
            let points_at = old
                .repo_tags
                .iter()
                .any(|t| ImageRef::parse(t).is_ok_and(|r| r == tracked));
            if in_use.contains(&old.id) || points_at {
                continue;
            }
            for reference in old
                .repo_tags
                .iter()
                .chain(&old.repo_digests)
                .filter(|r| ours(r))
            {
                match self
                    .docker
                    .remove_image(reference, None::<RemoveImageOptions>, None)
                    .await
                {
                    Ok(_) => removed.push(reference.clone()),
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => tracing::warn!(reference, "could not remove an old image: {e}"),
                }
            }
        }
        if !removed.is_empty() {
            tracing::info!(image = %image, removed = removed.len(), "old images pruned");
        }
        Ok(removed)
    }
}

#[async_trait]
impl Notifier for ImagePruner {
    fn name(&self) -> &str {
        "image-pruner"
    }

    async fn notify(&self, report: &DeployReport) -> Result<(), NotifyError> {
        if report.outcome != Outcome::Succeeded {
            return Ok(());
        }
        self.prune(&report.image)
            .await
            .map(|_| ())
            .map_err(|e| NotifyError::Undelivered {
                notifier: self.name().to_owned(),
                source: Box::new(e),
            })
    }
}
