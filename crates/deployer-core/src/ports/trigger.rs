use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::BoxError;
use crate::driver::EventSink;
use crate::image::{Digest, ImageRef};
use crate::shutdown::Shutdown;
use crate::target::Source;
use crate::time::Timestamp;

/// "repo:tag has a new build", as a trigger heard it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageEvent {
    /// The repo:tag (a digest in it is ignored; use `digest`).
    pub image: ImageRef,
    /// The new build, when the sender said; otherwise it is resolved from the registry.
    pub digest: Option<Digest>,
    /// Who sent it.
    pub source: Source,
    /// When it arrived.
    pub received_at: Timestamp,
    /// The sender's delivery id; repeated ids are dropped as redeliveries.
    pub delivery_id: Option<String>,
    /// When the sender says the build was pushed.
    pub event_time: Option<Timestamp>,
    /// Where the sender wants the result reported.
    pub callback_url: Option<String>,
}

impl ImageEvent {
    /// An event for `image` from `source`, received now, with nothing else known.
    pub fn new(image: ImageRef, source: Source) -> Self {
        Self {
            image,
            digest: None,
            source,
            received_at: Timestamp::now(),
            delivery_id: None,
            event_time: None,
            callback_url: None,
        }
    }

    /// The same event with a known digest.
    pub fn with_digest(mut self, digest: Digest) -> Self {
        self.digest = Some(digest);
        self
    }
}

/// Why a trigger stopped.
#[derive(Debug, thiserror::Error)]
#[error("trigger {trigger} failed")]
pub struct TriggerError {
    /// The trigger's name.
    pub trigger: String,
    /// What went wrong underneath.
    #[source]
    pub source: BoxError,
}

/// A source of [`ImageEvent`]s: webhooks, a poller, a signal, the CLI.
///
/// Contract: `run` sends events into the sink until `shutdown` fires, then returns `Ok`.
/// It verifies what it hears before sending (signatures, tokens); the sink filters untracked
/// images and redeliveries, so a trigger need not. An error return means the trigger cannot go
/// on (its port is taken, ...); the engine logs it and keeps the others running.
#[async_trait]
pub trait Trigger: Send + Sync {
    /// A short name for logs (`webhooks`, `poll`).
    fn name(&self) -> &str;

    /// Runs until `shutdown`.
    async fn run(&self, sink: EventSink, shutdown: Shutdown) -> Result<(), TriggerError>;
}
