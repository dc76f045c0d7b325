//! The five ports deployer's engine talks through, plus the journal it keeps.
//!
//! Each is a small `Send + Sync` trait with `&self` methods, usable as `Arc<dyn Port>`.
//! Adapters live in their own crates (`deployer-docker`, `deployer-etcd`, `deployer-http`);
//! in-memory implementations are in [`crate::memory`], recording fakes in `testing`
//! (feature `test-util`).

mod coordinator;
mod image_source;
mod journal;
mod notifier;
mod switcher;
mod trigger;

pub use coordinator::{
    Coordinator, CoordinatorError, SlotGrant, SlotLease, TargetSnapshot, TargetWatch, WatchEvent,
};
pub use image_source::{FetchProgress, Fetched, ImageError, ImageSource, NoProgress, PullProgress};
pub use journal::{Journal, JournalError};
pub use notifier::{Notifier, NotifyError};
pub use switcher::{EngineEvent, Promoted, Removed, Retired, Started, SwitchError, Switcher};
pub use trigger::{ImageEvent, Trigger, TriggerError};

/// A boxed error from an adapter, kept as the `source` of a port error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What a port's failure means for the deploy that met it. Every port error answers
/// `kind()`, and only the engine's policy decides what follows from it:
/// only [`Build`](Self::Build) halts a build, [`Transient`](Self::Transient) backs off and
/// retries, [`Permanent`](Self::Permanent) fails the deploy at once without blaming the build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The machinery, not the build: an engine, registry or store unreachable, a timeout, a
    /// conflict. Retrying may succeed.
    Transient,
    /// Retrying cannot help and the build is not to blame: not found, not authorised, a
    /// configuration the engine refuses.
    Permanent,
    /// The build's own fault: it exited, never became healthy, or its image cannot run.
    Build,
}

impl FailureKind {
    /// The kind's name, as in JSON and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Transient => "transient",
            Self::Permanent => "permanent",
            Self::Build => "build",
        }
    }
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
