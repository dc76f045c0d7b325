//! What a [`super::MemoryCoordinator`] keeps across restarts when it is given a store: the
//! seam between the coordinator's rules (in memory, here) and a file (in an adapter crate).

use crate::ports::BoxError;
use crate::report::{DeployReport, ServiceStatus};
use crate::service::ServiceName;
use crate::target::Target;

/// Everything a store holds, as read when the coordinator opens.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stored {
    /// Every target, with the revision it was written at.
    pub targets: Vec<Target>,
    /// The last status of every service.
    pub statuses: Vec<ServiceStatus>,
    /// Reports, newest first.
    pub history: Vec<DeployReport>,
}

/// A durable home for a single host's targets (with their halts and rollback points),
/// statuses and bounded history.
///
/// Contract: each call returns once its write is as durable as it says; a crash at any moment
/// leaves the store readable, with every write that returned. The calls are synchronous and
/// short (one small record): the coordinator makes them while it holds its lock, so that the
/// order of writes is the order of its decisions.
pub trait LocalStore: Send + Sync + std::fmt::Debug {
    /// Everything stored.
    fn load(&self) -> Result<Stored, BoxError>;

    /// Replaces a target. Durable on return (it decides what every later publish is
    /// compared with).
    fn save_target(&self, target: &Target) -> Result<(), BoxError>;

    /// Replaces a service's status. May be lazily durable: a lost status is rewritten at the
    /// service's next change.
    fn save_status(&self, status: &ServiceStatus) -> Result<(), BoxError>;

    /// Deletes a service's status on a node. May be lazily durable like [`Self::save_status`].
    fn forget_status(&self, node: &str, service: &ServiceName) -> Result<(), BoxError>;

    /// Appends a report, keeping the newest `kept`. Durable on return.
    fn save_report(&self, report: &DeployReport, kept: usize) -> Result<(), BoxError>;
}
