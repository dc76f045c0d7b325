//! `fetch`: make `repo@digest` local, pulling only when it is not, and report progress.

use std::collections::BTreeMap;

use bollard::models::CreateImageInfo;
use bollard::query_parameters::CreateImageOptions;
use deployer_core::ports::{FetchProgress, Fetched, ImageError, PullProgress};
use deployer_core::{Digest, ImageRef};
use futures_util::StreamExt;

use super::{DockerImageSource, has_repo_digest};
use crate::error::image_error;

pub(super) async fn fetch(
    source: &DockerImageSource,
    image: &ImageRef,
    digest: &Digest,
    progress: &dyn FetchProgress,
) -> Result<Fetched, ImageError> {
    let image = image.without_digest();
    // A built image's "digest" is its image ID: it exists locally or nowhere.
    if let Some(local) = source.local(digest.as_str(), &image).await?
        && local.id.as_deref() == Some(digest.as_str())
    {
        source.ensure_tag(&image, digest.as_str()).await?;
        return Ok(Fetched::AlreadyPresent);
    }
    // The common case of a poll that found nothing new: the tag already is that digest.
    let tagged = format!("{}:{}", image.name(), image.tag().unwrap_or("latest"));
    if let Some(local) = source.local(&tagged, &image).await?
        && has_repo_digest(&local, &image, digest)
    {
        return Ok(Fetched::AlreadyPresent);
    }
    // An older build still kept locally (a rollback): no pull, just move the tag back.
    let pinned = format!("{}@{digest}", image.name());
    if let Some(local) = source.local(&pinned, &image).await?
        && let Some(id) = local.id
    {
        source.ensure_tag(&image, &id).await?;
        return Ok(Fetched::AlreadyPresent);
    }
    pull(source, &image, digest, progress).await?;
    let local = source
        .local(&pinned, &image)
        .await?
        .and_then(|l| l.id)
        .ok_or_else(|| ImageError::NotFound {
            image: pinned.clone(),
        })?;
    source.ensure_tag(&image, &local).await?;
    Ok(Fetched::Pulled)
}

async fn pull(
    source: &DockerImageSource,
    image: &ImageRef,
    digest: &Digest,
    progress: &dyn FetchProgress,
) -> Result<(), ImageError> {
    let pinned = format!("{}@{digest}", image.name());
    let credentials = source.credentials_for(image)?;
    // As `docker pull repo@digest` does: the digest goes in the tag parameter.
    let options = CreateImageOptions {
        from_image: Some(image.name()),
        tag: Some(digest.to_string()),
        ..Default::default()
    };
    tracing::info!(image = %pinned, "pulling");
    let mut stream = source.docker.create_image(Some(options), None, credentials);
    let mut tracker = Tracker::default();
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| image_error("pulling", &pinned, e))?;
        if tracker.apply(&info) {
            progress.update(&tracker.progress);
        }
    }
    tracing::info!(
        image = %pinned,
        layers = tracker.progress.layers_total,
        bytes = tracker.progress.bytes_done,
        "pulled"
    );
    Ok(())
}

/// Folds the engine's per-layer status lines into one [`PullProgress`].
#[derive(Debug, Default)]
struct Tracker {
    /// Per layer: (bytes done, bytes total, finished).
    layers: BTreeMap<String, (u64, u64, bool)>,
    progress: PullProgress,
}

impl Tracker {
    /// Applies one line; true when the progress changed.
    fn apply(&mut self, info: &CreateImageInfo) -> bool {
        let status = info.status.clone().unwrap_or_default();
        let Some(id) = info.id.clone().filter(|_| is_layer_status(&status)) else {
            if status.is_empty() || status == self.progress.status {
                return false;
            }
            self.progress.status = status;
            return true;
        };
        let layer = self.layers.entry(id).or_default();
        let detail = info.progress_detail.as_ref();
        let number = |v: Option<i64>| v.and_then(|v| u64::try_from(v).ok());
        match status.as_str() {
            "Downloading" => {
                if let Some(total) = number(detail.and_then(|d| d.total)) {
                    layer.1 = total;
                }
                if let Some(current) = number(detail.and_then(|d| d.current)) {
                    layer.0 = current;
                }
            }
            "Download complete" => layer.0 = layer.1,
            "Pull complete" | "Already exists" => {
                layer.0 = layer.1;
                layer.2 = true;
            }
            _ => {}
        }
        self.progress.layers_total = u32::try_from(self.layers.len()).unwrap_or(u32::MAX);
        self.progress.layers_done =
            u32::try_from(self.layers.values().filter(|l| l.2).count()).unwrap_or(u32::MAX);
        self.progress.bytes_total = self.layers.values().map(|l| l.1).sum();
        self.progress.bytes_done = self.layers.values().map(|l| l.0).sum();
        self.progress.status = status;
        true
    }
}

fn is_layer_status(status: &str) -> bool {
    matches!(
        status,
        "Pulling fs layer"
            | "Waiting"
            | "Downloading"
            | "Verifying Checksum"
            | "Download complete"
            | "Extracting"
            | "Pull complete"
            | "Already exists"
    )
}

#[cfg(test)]
mod tests {
    use bollard::models::ProgressDetail;

    use super::*;

    fn line(id: &str, status: &str, current: Option<i64>, total: Option<i64>) -> CreateImageInfo {
        CreateImageInfo {
            id: Some(id.to_owned()),
            status: Some(status.to_owned()),
            progress_detail: Some(ProgressDetail { current, total }),
            ..Default::default()
        }
    }

    #[test]
    fn layers_and_bytes_add_up() {
        let mut t = Tracker::default();
        t.apply(&line("a", "Pulling fs layer", None, None));
        t.apply(&line("b", "Already exists", None, None));
        t.apply(&line("a", "Downloading", Some(10), Some(100)));
        assert_eq!(
            (
                t.progress.layers_total,
                t.progress.layers_done,
                t.progress.bytes_done,
                t.progress.bytes_total
            ),
            (2, 1, 10, 100)
        );
        t.apply(&line("a", "Pull complete", None, None));
        assert_eq!((t.progress.layers_done, t.progress.bytes_done), (2, 100));
        assert!(t.apply(&line("sha256:x", "Digest: sha256:x", None, None)));
        assert_eq!(t.progress.layers_total, 2, "status lines are not layers");
    }
}
