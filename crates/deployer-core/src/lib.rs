//! # deployer-core
//!
//! The domain model, the ports and the pure reconcile engine of deployer: the part with no
//! I/O of its own, which every adapter plugs into.
//!
//! - [`ImageRef`], [`Digest`]: image references, normalised as Docker does.
//! - [`ServiceSpec`]: what a service tracks and how it is switched.
//! - [`Target`]: "repo:tag should run digest D", published to a [`ports::Coordinator`].
//! - [`ports`]: `ImageSource`, `Trigger`, `Coordinator`, `Switcher`, `Notifier` (and `Journal`).
//! - [`reconcile`]: the per-service state machine `step(state, now, input) -> (state, effects)`.
//! - [`driver`]: runs the state machines through the ports, turns events into targets.
//! - [`memory`]: the single-host coordinator (in memory, or durable with a
//!   [`memory::LocalStore`]) and an in-memory journal.
//!
//! Entry point for embedders: build a [`driver::Driver`] from the ports and call
//! [`driver::Driver::run`] with a shutdown future.
#![warn(missing_docs)]

pub mod backoff;
pub mod deadline;
pub mod driver;
pub mod image;
pub mod memory;
pub mod ports;
pub mod reconcile;
pub mod report;
pub mod service;
pub mod shutdown;
pub mod target;
#[cfg(feature = "test-util")]
pub mod testing;
pub mod time;

pub use backoff::Backoff;
pub use image::{Digest, DigestError, ImageRef, ReferenceError};
pub use report::{DeployReport, Outcome, ServiceState, ServiceStatus};
pub use service::{ServiceName, ServiceSpec, SpecError};
pub use target::{PublishOutcome, PublishRequest, Revision, Source, Target};
pub use time::Timestamp;
