use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{BoxError, FailureKind};
use crate::reconcile::{Health, InstanceId, InstanceSpec, Observed};
use crate::service::ServiceSpec;

/// Why a switcher step failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SwitchError {
    /// The container engine could not be reached.
    #[error("engine unreachable during {operation} of {service}")]
    EngineUnreachable {
        /// The step.
        operation: &'static str,
        /// The service.
        service: String,
        /// What went wrong underneath.
        #[source]
        source: BoxError,
    },
    /// The step failed for this instance.
    #[error("{operation} of {service} {instance} failed: {reason}")]
    Failed {
        /// The step.
        operation: &'static str,
        /// The service.
        service: String,
        /// The instance.
        instance: InstanceId,
        /// What the failure means: the engine refusing the service's configuration is
        /// permanent, an image that cannot run is the build's fault, a conflict is transient.
        kind: FailureKind,
        /// What went wrong, for people.
        reason: String,
        /// What went wrong underneath, if an error caused it.
        #[source]
        source: Option<BoxError>,
    },
}

impl SwitchError {
    /// What this failure means for a deploy.
    pub fn kind(&self) -> FailureKind {
        match self {
            Self::EngineUnreachable { .. } => FailureKind::Transient,
            Self::Failed { kind, .. } => *kind,
        }
    }
}

/// A change the engine saw to one of a service's containers (it died, was killed, paused,
/// unpaused, restarted, removed, or its health changed), as [`Switcher::subscribe`] delivers
/// it. A hint: the driver looks again at the service, as its periodic scan would, at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineEvent {
    /// The service the container belongs to.
    pub service: crate::service::ServiceName,
    /// The container, when its labels name one.
    pub instance: Option<InstanceId>,
    /// The engine's word for what happened (`die`, `pause`, `destroy`, ...).
    pub action: String,
}

/// The result of [`Switcher::start`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Started {
    /// A container was created and started.
    Created,
    /// An existing stopped container was started again.
    Restarted,
    /// It already ran.
    AlreadyRunning,
}

/// The result of [`Switcher::promote`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Promoted {
    /// Traffic now reaches it.
    Switched,
    /// It already took traffic (or the strategy has no traffic to move).
    AlreadyServing,
}

/// The result of [`Switcher::retire`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Retired {
    /// Taken out of traffic, drained and stopped; `cut` requests or connections were still
    /// open at the drain deadline.
    Stopped {
        /// Requests or connections cut.
        cut: u64,
    },
    /// It was not running.
    AlreadyStopped,
}

/// The result of [`Switcher::remove`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Removed {
    /// The container was stopped if needed and deleted.
    Removed,
    /// There was no such container.
    AlreadyGone,
}

/// Runs a service's containers and moves its traffic, one instance at a time.
///
/// The engine decides the order of steps (the strategy's rules live in its planner); a switcher
/// carries them out. For strategies without a proxy, `promote` has no traffic to move and only
/// confirms the instance runs.
///
/// Contract:
/// - Every step is idempotent, and says so in its result: starting a running instance is
///   `AlreadyRunning`, removing a missing one `AlreadyGone`. The engine may repeat a step after a
///   crash or a timeout.
/// - Containers carry the service, generation and slot as labels from the moment they are
///   created, so `observe` finds everything, including what a crash left half-done.
/// - `start` of an instance that exists but is stopped starts that container again (this is
///   how the recreate strategy rolls back without losing the old container's config).
/// - For a strategy with a proxy, `promote` moves the traffic of the instance's replica slot:
///   the slot's instances of other generations leave the rotation in the same atomic step the
///   instance joins it, so no request reaches the old one after one reached the new. They keep
///   running (and finish what they serve) until `retire`.
/// - `retire` takes an instance out of traffic (if `promote` of its successor has not already),
///   waits for the drain (bounded by the service's drain timeout), then stops it (stop timeout,
///   then kill), but does not delete it.
/// - `remove` stops the instance if it still runs and deletes it.
/// - Futures may be dropped (cancelled) only at `probe`; the engine awaits the other steps.
/// - Errors name the step, service and instance.
#[async_trait]
pub trait Switcher: Send + Sync {
    /// The engine's changes to the containers this switcher runs, as they happen, so that a
    /// dead or paused container is repaired at once rather than at the next periodic scan.
    /// Called once, by the driver, when it starts; `None` (the default) means the switcher has
    /// no such stream and the scan is the only repair. A switcher may also act on an event
    /// itself before sending it (take a dead backend out of its proxy at once).
    fn subscribe(&self) -> Option<tokio::sync::mpsc::Receiver<EngineEvent>> {
        None
    }

    /// Lists the service's containers.
    async fn observe(&self, service: &ServiceSpec) -> Result<Observed, SwitchError>;

    /// Ensures the instance exists and runs.
    async fn start(
        &self,
        service: &ServiceSpec,
        instance: &InstanceSpec,
    ) -> Result<Started, SwitchError>;

    /// Probes the instance once, as the service's health check says.
    async fn probe(
        &self,
        service: &ServiceSpec,
        instance: InstanceId,
    ) -> Result<Health, SwitchError>;

    /// Lets the instance take traffic.
    async fn promote(
        &self,
        service: &ServiceSpec,
        instance: InstanceId,
    ) -> Result<Promoted, SwitchError>;

    /// Takes the instance out of traffic, drains and stops it.
    async fn retire(
        &self,
        service: &ServiceSpec,
        instance: InstanceId,
    ) -> Result<Retired, SwitchError>;

    /// Deletes the instance's container.
    async fn remove(
        &self,
        service: &ServiceSpec,
        instance: InstanceId,
    ) -> Result<Removed, SwitchError>;
}
