//! What goes into the state machine (inputs, operation results) and what comes out (effects).

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use super::types::{GenerationRef, Health, InstanceId, InstanceSpec, JournalEntry, Observed};
use crate::image::{Digest, ImageRef};
use crate::ports::{FailureKind, Fetched, Promoted, Removed, Retired, Started};
use crate::report::{Outcome, ServiceState};
use crate::service::ServiceSpec;
use crate::target::{Halt, Target};

/// Correlates an operation with its result, so a result that arrives after its operation was
/// cancelled or superseded is recognised and ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct OpId(pub u64);

/// Work the driver carries out through the ports; its result comes back as [`Input::Done`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Wait for a local deploy permit (bounds deploys running at once).
    Admit,
    /// Pull or build the image.
    Fetch {
        /// The tracked repo:tag.
        image: ImageRef,
        /// The build to make local.
        digest: Digest,
    },
    /// Wait for a cluster rollout slot.
    AcquireSlot {
        /// The target to roll out.
        target: Arc<Target>,
    },
    /// List the service's containers, and load its journal when asked (only the first
    /// observation needs it: afterwards the machine itself is the journal's writer).
    Observe {
        /// Load the journal too.
        journal: bool,
    },
    /// Durably write the journal.
    Journal(JournalEntry),
    /// Ensure one container runs.
    Start(InstanceSpec),
    /// Probe one container once.
    Probe(InstanceId),
    /// Let one container take traffic.
    Promote(InstanceId),
    /// Take one container out of traffic, drain and stop it.
    Retire(InstanceId),
    /// Delete one container.
    Remove(InstanceId),
    /// Tell the coordinator this build failed here, halting it everywhere (the driver adds
    /// the node name and time).
    Halt {
        /// The failed target.
        target: Arc<Target>,
        /// Why it failed.
        reason: String,
    },
}

impl Op {
    /// Whether the driver may drop this operation half-way. Only waits and reads qualify:
    /// everything that changes containers runs to completion so the model stays true.
    pub fn is_cancellable(&self) -> bool {
        matches!(
            self,
            Self::Admit | Self::Fetch { .. } | Self::AcquireSlot { .. } | Self::Probe(_)
        )
    }

    /// The bound the driver puts on this operation; `None` means unbounded (waiting for a
    /// permit or a slot is bounded by supersede and shutdown instead).
    pub fn timeout(&self, spec: &ServiceSpec) -> Option<Duration> {
        const QUICK: Duration = Duration::from_secs(30);
        let t = spec.timeouts();
        match self {
            Self::Admit | Self::AcquireSlot { .. } => None,
            Self::Fetch { .. } => Some(t.fetch),
            Self::Start(_) => Some(t.start),
            Self::Probe(_) => Some(spec.health().timeout()),
            Self::Retire(_) => Some(t.drain.saturating_add(t.stop).saturating_add(QUICK)),
            Self::Remove(_) => Some(t.stop.saturating_add(QUICK)),
            Self::Observe { .. } | Self::Journal(_) | Self::Promote(_) | Self::Halt { .. } => {
                Some(QUICK)
            }
        }
    }

    /// The operation's name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Admit => "admit",
            Self::Fetch { .. } => "fetch",
            Self::AcquireSlot { .. } => "acquire_slot",
            Self::Observe { .. } => "observe",
            Self::Journal(_) => "journal",
            Self::Start(_) => "start",
            Self::Probe(_) => "probe",
            Self::Promote(_) => "promote",
            Self::Retire(_) => "retire",
            Self::Remove(_) => "remove",
            Self::Halt { .. } => "halt",
        }
    }
}

/// A failed step, as the machine sees it: what the failure means for the build, and the words
/// for people (already rendered with the error's causes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepError {
    /// What the failure means; the machine's policy depends only on this.
    pub kind: FailureKind,
    /// What went wrong, for reports, statuses and logs.
    pub message: String,
}

impl StepError {
    /// A failure of `kind`.
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// A failure retrying may cure.
    pub fn transient(message: impl Into<String>) -> Self {
        Self::new(FailureKind::Transient, message)
    }

    /// A failure retrying cannot cure, not the build's fault.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self::new(FailureKind::Permanent, message)
    }

    /// The build's own fault.
    pub fn build(message: impl Into<String>) -> Self {
        Self::new(FailureKind::Build, message)
    }

    /// The same failure, its message prefixed with what was being done.
    pub fn context(self, doing: impl std::fmt::Display) -> Self {
        Self {
            kind: self.kind,
            message: format!("{doing}: {}", self.message),
        }
    }
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The result of an [`Op`]: what the port answered, or a typed failure.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // reason: one value per step, moved once; boxing buys nothing
pub enum OpResult {
    /// A permit is held.
    Admitted,
    /// Result of [`Op::Fetch`].
    Fetched(Result<Fetched, StepError>),
    /// Result of [`Op::AcquireSlot`].
    Slot(Result<SlotOutcome, StepError>),
    /// Result of [`Op::Observe`]: the containers and, if asked for, the journal.
    Observed(Result<(Observed, Option<JournalEntry>), StepError>),
    /// Result of [`Op::Journal`].
    Journaled(Result<(), StepError>),
    /// Result of [`Op::Start`].
    Started(Result<Started, StepError>),
    /// Result of [`Op::Probe`]; an error counts as unhealthy.
    Probed(Result<Health, StepError>),
    /// Result of [`Op::Promote`].
    Promoted(Result<Promoted, StepError>),
    /// Result of [`Op::Retire`].
    Retired(Result<Retired, StepError>),
    /// Result of [`Op::Remove`].
    Removed(Result<Removed, StepError>),
    /// Result of [`Op::Halt`].
    Halted(Result<(), StepError>),
}

/// The answer to a slot request, as the machine sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotOutcome {
    /// The driver holds a slot.
    Granted,
    /// Another host failed this build.
    Halted(Halt),
}

/// Something that happened to a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// The coordinator's newest target for the tracked repo:tag.
    Desired(Target),
    /// A time asked for with [`Effect::WakeAt`] has come.
    Tick,
    /// Look again at what runs and repair drift (a live container that died, or that its
    /// restart policy brought back on another port). Only acts at rest; quiet when nothing
    /// drifted.
    Resync,
    /// Stop: finish or undo what is under way, then stop.
    Shutdown,
    /// An operation finished.
    Done {
        /// Which operation.
        id: OpId,
        /// How it went.
        result: OpResult,
    },
}

/// What the machine asks the driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // reason: effects are short-lived; `Run` is the common one
pub enum Effect {
    /// Start an operation. At most one runs at a time.
    Run {
        /// Its id, echoed in [`Input::Done`].
        id: OpId,
        /// The work.
        op: Op,
    },
    /// Drop the running operation (always a cancellable one).
    Cancel(OpId),
    /// Send [`Input::Tick`] at this time (replaces any earlier request).
    WakeAt(Instant),
    /// Publish a report to notifiers and history.
    Report(Report),
    /// The service's state changed.
    Status(StatusUpdate),
    /// Give the cluster rollout slot back.
    ReleaseSlot,
    /// Give the local deploy permit back.
    Release,
}

/// A report as the machine knows it; the driver adds service, node and wall-clock times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// How it went.
    pub outcome: Outcome,
    /// The target deployed, if any.
    pub target: Option<Arc<Target>>,
    /// The build that served before.
    pub from: Option<Digest>,
    /// The generation created.
    pub generation: Option<GenerationRef>,
    /// Why it did not succeed.
    pub reason: Option<String>,
    /// Why undoing failed too.
    pub rollback_error: Option<String>,
    /// Requests or connections cut at drain deadlines.
    pub cut: u64,
    /// Problems that did not fail the deploy.
    pub warnings: Vec<String>,
    /// How long the deploy has run.
    pub duration: Duration,
}

/// The service's state, as the driver shows and reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusUpdate {
    /// What it is doing.
    pub state: ServiceState,
    /// The generation that serves.
    pub live: Option<GenerationRef>,
    /// The build the coordinator wants.
    pub target: Option<Digest>,
    /// The last problem, in failure states.
    pub message: Option<String>,
}
