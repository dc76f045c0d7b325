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
pub use switcher::{Promoted, Removed, Retired, Started, SwitchError, Switcher};
pub use trigger::{ImageEvent, Trigger, TriggerError};

/// A boxed error from an adapter, kept as the `source` of a port error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;
