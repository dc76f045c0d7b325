use async_trait::async_trait;
use tokio::sync::mpsc;

use super::BoxError;
use crate::image::{Digest, ImageRef};
use crate::report::{DeployReport, ServiceStatus};
use crate::service::ServiceName;
use crate::target::{Halt, PublishOutcome, PublishRequest, Revision, Target};

/// Why a coordinator call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoordinatorError {
    /// The backing store could not be reached; the call may succeed later.
    #[error("coordinator unavailable during {operation}")]
    Unavailable {
        /// The call that failed.
        operation: &'static str,
        /// What went wrong underneath.
        #[source]
        source: BoxError,
    },
    /// A stored record could not be decoded.
    #[error("corrupt record at {key}: {problem}")]
    Corrupt {
        /// Where the record sits.
        key: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The coordinator is shutting down.
    #[error("coordinator closed")]
    Closed,
}

impl CoordinatorError {
    /// What this failure means for a deploy: the store may come back; a corrupt record will not
    /// mend itself.
    pub fn kind(&self) -> super::FailureKind {
        match self {
            Self::Unavailable { .. } | Self::Closed => super::FailureKind::Transient,
            Self::Corrupt { .. } => super::FailureKind::Permanent,
        }
    }
}

/// All targets at one revision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetSnapshot {
    /// Every target.
    pub targets: Vec<Target>,
    /// The revision the snapshot was read at; watch from the one after it.
    pub revision: Revision,
}

/// A change seen by a [`TargetWatch`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // reason: `Updated` is the common case; boxing it would allocate per event
pub enum WatchEvent {
    /// One target changed.
    Updated(Target),
    /// The watch lost its place (history compacted, or a reconnect after a gap it cannot
    /// replay): here is everything, read afresh.
    Resync(TargetSnapshot),
}

/// A stream of target changes, in revision order, without gaps.
#[derive(Debug)]
pub struct TargetWatch {
    events: mpsc::Receiver<WatchEvent>,
}

impl TargetWatch {
    /// Wraps a channel fed by the coordinator.
    pub fn new(events: mpsc::Receiver<WatchEvent>) -> Self {
        Self { events }
    }

    /// The next change; `None` once the coordinator has closed the watch for good.
    pub async fn next(&mut self) -> Option<WatchEvent> {
        self.events.recv().await
    }
}

/// A held cluster rollout slot; give it back with [`Coordinator::release_slot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotLease {
    /// The service the slot is for.
    pub service: ServiceName,
    /// The coordinator's handle for the slot.
    pub token: String,
}

/// The answer to a slot request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotGrant {
    /// Go ahead; release the slot when done.
    Granted(SlotLease),
    /// Do not start: another host failed this build.
    Halted(Halt),
}

/// Where targets, statuses and history are shared: in memory on one host, etcd for a fleet.
///
/// Contract:
/// - `publish` is atomic and only moves a target forward by the rule in [`crate::target::decide`]:
///   a late or replayed request never rolls a target back. Accepted publishes get increasing
///   revisions.
/// - `watch(after)` delivers every change with a revision greater than `after`, in order and
///   without gaps, for as long as the returned watch lives. When it cannot (history compacted,
///   a long disconnect) it sends [`WatchEvent::Resync`] with a fresh snapshot instead. While the
///   backing store is unreachable the watch stays open and silent and resumes by itself.
/// - `acquire_slot` waits until fewer than K hosts hold a slot for the service (K is the
///   coordinator's setting), or until the target's build is halted. It is idempotent per
///   (service, node): a host that asks again while holding a slot gets the same slot back, so a
///   dropped call cannot leak one. Slots of a host that dies are freed by the coordinator.
/// - `halt` marks a build failed so that no other host starts it; it only applies while the
///   target still has that digest.
/// - Statuses, reports and history are best-effort records: errors are returned, never panics.
#[async_trait]
pub trait Coordinator: Send + Sync {
    /// Publishes a target if it is newer than the current one.
    async fn publish(&self, request: PublishRequest) -> Result<PublishOutcome, CoordinatorError>;

    /// The current target of one repo:tag.
    async fn target(&self, image: &ImageRef) -> Result<Option<Target>, CoordinatorError>;

    /// Every target and the revision they were read at.
    async fn snapshot(&self) -> Result<TargetSnapshot, CoordinatorError>;

    /// Changes after revision `after`.
    async fn watch(&self, after: Revision) -> Result<TargetWatch, CoordinatorError>;

    /// Marks `digest` of `image` as failed on a host: the rollout stops everywhere.
    async fn halt(
        &self,
        image: &ImageRef,
        digest: &Digest,
        halt: Halt,
    ) -> Result<(), CoordinatorError>;

    /// Waits for a cluster rollout slot for `service` to switch to `target`.
    async fn acquire_slot(
        &self,
        service: &ServiceName,
        target: &Target,
    ) -> Result<SlotGrant, CoordinatorError>;

    /// Gives a slot back. Releasing a slot twice is harmless.
    async fn release_slot(&self, slot: SlotLease) -> Result<(), CoordinatorError>;

    /// Records what a service does on this host (and, for fleets, where it can be reached).
    async fn report_status(&self, status: &ServiceStatus) -> Result<(), CoordinatorError>;

    /// Forgets what `service` did on host `node` (a service this host no longer runs): its
    /// status and, for fleets, its advertised endpoint. Forgetting an unknown one is harmless.
    async fn forget_status(
        &self,
        node: &str,
        service: &ServiceName,
    ) -> Result<(), CoordinatorError>;

    /// The latest status of every service on every host.
    async fn statuses(&self) -> Result<Vec<ServiceStatus>, CoordinatorError>;

    /// Appends a report to the bounded history.
    async fn record(&self, report: &DeployReport) -> Result<(), CoordinatorError>;

    /// The newest reports first, optionally for one service only.
    async fn history(
        &self,
        service: Option<&ServiceName>,
        limit: usize,
    ) -> Result<Vec<DeployReport>, CoordinatorError>;
}
