use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;

use super::Failures;
use crate::image::{Digest, ImageRef};
use crate::ports::{FetchProgress, Fetched, ImageError, ImageSource, PullProgress};
use crate::service::BuildSpec;

/// An image source with a table of tags, recording fetches; fetches can be slowed or failed.
#[derive(Debug, Default)]
pub struct FakeImageSource {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    tags: HashMap<ImageRef, Digest>,
    local: HashSet<Digest>,
    fetches: Vec<(ImageRef, Digest)>,
    resolves: u32,
    fetch_delay: Duration,
    delay_for: HashMap<ImageRef, Duration>,
    fetching: u32,
    max_fetching: u32,
    failures: Failures,
    /// Builds the registry does not have (any more): fetching them is "not found".
    missing: HashSet<Digest>,
}

impl FakeImageSource {
    /// An empty source.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes fetches of `digest` answer "not found", as a registry that deleted it would.
    pub fn set_missing(&self, digest: Digest) {
        self.state().missing.insert(digest);
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes `image` (a repo:tag) resolve to `digest`.
    pub fn set_tag(&self, image: &ImageRef, digest: Digest) {
        self.state().tags.insert(image.without_digest(), digest);
    }

    /// Makes every fetch take `delay` (use with paused tokio time).
    pub fn set_fetch_delay(&self, delay: Duration) {
        self.state().fetch_delay = delay;
    }

    /// Makes fetches of `image` (a repo:tag) take `delay`, overriding the general delay.
    pub fn set_fetch_delay_for(&self, image: &ImageRef, delay: Duration) {
        self.state().delay_for.insert(image.without_digest(), delay);
    }

    /// The most fetches that ever ran at once.
    pub fn max_concurrent_fetches(&self) -> u32 {
        self.state().max_fetching
    }

    /// Fails the next `times` calls of `op` (`resolve`, `fetch`, `build`).
    pub fn fail_next(&self, op: &'static str, times: u32) {
        self.state().failures.set(op, times);
    }

    /// Every fetch so far.
    pub fn fetches(&self) -> Vec<(ImageRef, Digest)> {
        self.state().fetches.clone()
    }

    /// How many times `resolve` was called.
    pub fn resolves(&self) -> u32 {
        self.state().resolves
    }
}

#[async_trait]
impl ImageSource for FakeImageSource {
    async fn resolve(&self, image: &ImageRef) -> Result<Digest, ImageError> {
        let mut state = self.state();
        state.resolves += 1;
        if state.failures.take("resolve") {
            return Err(ImageError::RegistryUnreachable {
                image: image.to_string(),
                source: "injected failure".into(),
            });
        }
        state
            .tags
            .get(&image.without_digest())
            .cloned()
            .ok_or_else(|| ImageError::NotFound {
                image: image.to_string(),
            })
    }

    async fn fetch(
        &self,
        image: &ImageRef,
        digest: &Digest,
        progress: &dyn FetchProgress,
    ) -> Result<Fetched, ImageError> {
        let delay = {
            let mut state = self.state();
            state.fetches.push((image.clone(), digest.clone()));
            if state.failures.take("fetch") {
                return Err(ImageError::RegistryUnreachable {
                    image: image.to_string(),
                    source: "injected failure".into(),
                });
            }
            if state.missing.contains(digest) {
                return Err(ImageError::NotFound {
                    image: format!("{image}@{digest}"),
                });
            }
            state.fetching += 1;
            state.max_fetching = state.max_fetching.max(state.fetching);
            state
                .delay_for
                .get(&image.without_digest())
                .copied()
                .unwrap_or(state.fetch_delay)
        };
        // Counts the fetch as finished even when the future is dropped (cancelled).
        struct Done<'a>(&'a FakeImageSource);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.state().fetching -= 1;
            }
        }
        let _done = Done(self);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        progress.update(&PullProgress {
            layers_total: 1,
            layers_done: 1,
            bytes_total: 1,
            bytes_done: 1,
            status: "done".into(),
        });
        let fresh = self.state().local.insert(digest.clone());
        Ok(if fresh {
            Fetched::Pulled
        } else {
            Fetched::AlreadyPresent
        })
    }

    async fn build(
        &self,
        image: &ImageRef,
        _build: &BuildSpec,
        _progress: &dyn FetchProgress,
    ) -> Result<Digest, ImageError> {
        let mut state = self.state();
        if state.failures.take("build") {
            return Err(ImageError::BuildFailed {
                image: image.to_string(),
                last_lines: vec!["injected failure".into()],
            });
        }
        let digest = state
            .tags
            .get(&image.without_digest())
            .cloned()
            .ok_or_else(|| ImageError::NotFound {
                image: image.to_string(),
            })?;
        state.local.insert(digest.clone());
        Ok(digest)
    }
}
