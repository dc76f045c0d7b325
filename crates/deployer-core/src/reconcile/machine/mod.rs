//! The per-service deployment state machine: `step(state, now, input) -> (state, effects)`.
//!
//! No I/O and no clock: time comes in as `now`, work goes out as [`Effect`]s, and results come
//! back as [`Input::Done`]. At most one operation is in flight; a result whose id does not match
//! the operation in flight is stale and ignored.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::io::{Effect, Input, Op, OpId, OpResult, Report, SlotOutcome, StatusUpdate, StepError};
use super::model::{Model, Status};
use super::plan::{self, Action};
use super::types::{Generation, GenerationRef, Health, InstanceId, JournalEntry, Observed};
use crate::image::Digest;
use crate::ports::FailureKind;
use crate::report::{Outcome, ServiceState};
use crate::service::{Ordering, ServiceSpec};
use crate::target::{Halt, Revision, Target};

mod execute;
mod inputs;
mod outcome;
mod phases;
mod rest;

/// Where a service's deployment stands.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // reason: one phase per service, moved by value on purpose
pub enum Phase {
    /// Waiting for a local deploy permit before `0`.
    Admitting(Purpose),
    /// Pulling or building the target's image.
    Fetching(Arc<Target>),
    /// Waiting for a cluster rollout slot.
    AwaitingSlot(Arc<Target>),
    /// Listing containers before recovering (`None`) or rolling out the fetched target.
    Observing(Option<Arc<Target>>),
    /// Carrying out a plan.
    Executing(Box<Plan>),
    /// Waiting until `until` to retry `next` after a transient failure.
    Backoff {
        /// When to retry.
        until: Instant,
        /// What to retry.
        next: Purpose,
        /// The failure.
        reason: String,
    },
    /// Live matches the target, or there is no target.
    Idle,
    /// The current target's build failed for this service (here or on another host) and is
    /// halted for it; waits for a newer target or an operator's deploy.
    Halted {
        /// Why.
        reason: String,
    },
    /// Gave up on the current target without blaming the build (not found, not authorised,
    /// retries used up); waits for a newer target or an operator's deploy.
    Failed {
        /// Why.
        reason: String,
    },
    /// Shut down; accepts nothing more.
    Stopped,
}

/// What a busy period is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purpose {
    /// Converge on the live generation (after start, or after a failed undo).
    Recover,
    /// Roll out the desired target.
    Deploy,
}

/// A plan under way: its kind decides what a failure leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    kind: PlanKind,
    actions: VecDeque<Action>,
    probe: Option<ProbeState>,
    /// The watch of a newly serving generation, while its [`Action::Watch`] step runs.
    watching: Option<WatchState>,
    /// An abort asked for while a step that must not be dropped was running.
    abort: Option<Abort>,
}

impl Plan {
    /// What this plan does.
    pub fn kind(&self) -> &PlanKind {
        &self.kind
    }
}

/// The kinds of plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanKind {
    /// Converge on the live generation after a start or a failure.
    Recover,
    /// Roll `candidate` out for `target`; a failure rolls back.
    Rollout {
        /// The target being deployed.
        target: Arc<Target>,
        /// The new generation.
        candidate: GenerationRef,
    },
    /// Return to the live generation after `candidate` failed; a failure here is final.
    Rollback {
        /// The target that failed.
        target: Arc<Target>,
        /// The failed generation.
        candidate: GenerationRef,
        /// Why it failed.
        reason: String,
        /// What the failure means: the build's fault halts it, a transient one retries later,
        /// a permanent one gives up on the target here.
        fault: FailureKind,
    },
    /// Remove a candidate that never took traffic.
    Abort {
        /// The target abandoned.
        target: Arc<Target>,
        /// The abandoned generation.
        candidate: GenerationRef,
        /// Why.
        why: Abort,
    },
}

/// Why a rollout is abandoned before its candidate took traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Abort {
    /// A newer target arrived (hanoverd's rule: the candidate is removed).
    Superseded,
    /// Another host failed this build.
    HaltedElsewhere(Halt),
    /// The process is stopping.
    Shutdown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ProbeState {
    id: InstanceId,
    deadline: Instant,
    successes: u32,
    waiting: bool,
}

/// Watching a promoted generation: its instances are probed in turn, every health interval,
/// until `until`; it must end on a healthy answer.
#[derive(Debug, Clone, PartialEq, Eq)]
struct WatchState {
    ids: Vec<InstanceId>,
    /// When the watch period ends.
    until: Instant,
    /// When it began, for the report of a failure.
    since: Instant,
    /// The instance probed now or next.
    next: usize,
    /// Unhealthy answers in a row; a few are tolerated (a slow request, a GC pause).
    failures: u32,
    /// Waiting for the interval before the next probe.
    waiting: bool,
}

/// Unhealthy answers in a row that fail a watched generation (an exit fails it at once).
const WATCH_FAILURES: u32 = 3;

/// Bookkeeping of one deploy, for its report.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Run {
    started: Instant,
    from: Option<Digest>,
    cut: u64,
    warnings: Vec<String>,
}

/// The state of one service's deployment. See the module docs.
#[derive(Debug, Clone)]
pub struct Machine {
    spec: Arc<ServiceSpec>,
    /// Whether the journal has been read (the first observation initialises `live`).
    booted: bool,
    /// Whether a journal existed at boot; without one, recovery touches nothing.
    journaled: bool,
    /// The generation that serves, as journaled.
    live: Option<GenerationRef>,
    /// The newest target from the coordinator.
    desired: Option<Arc<Target>>,
    /// Next generation number; journaled before a container of it is started.
    next_generation: Generation,
    /// What we believe exists.
    model: Model,
    phase: Phase,
    /// The operation in flight.
    inflight: Option<(OpId, bool)>,
    next_op: u64,
    /// Holding a local deploy permit.
    admitted: bool,
    /// Holding a cluster rollout slot.
    slot: bool,
    /// Consecutive transient failures.
    attempts: u32,
    /// The target (digest, revision) this service gave up on.
    given_up: Option<(Digest, Revision)>,
    /// Shutdown asked for.
    stopping: bool,
    /// The phase a quiet resync interrupted, shown meanwhile and restored if nothing drifted.
    resync: Option<Phase>,
    /// A container could not be retired or removed; a recovery pass must clean it up.
    dirty: Option<String>,
    /// The deploy under way.
    run: Option<Run>,
    /// When a Tick is due.
    wake: Option<Instant>,
    /// Last status sent, to send only changes.
    last_status: Option<StatusUpdate>,
    /// A deploy the journal says went live but was not reported before a crash; recovery
    /// reports it when it has finished it.
    unreported: Option<Arc<Target>>,
    /// A repair under way (a look at rest found a live container dead or out of the proxy):
    /// its cause, for the report when it is done.
    repair: Option<String>,
}

impl Machine {
    /// A machine for `spec` that first recovers: it asks for a permit, observes, and converges
    /// on what the journal says is live.
    pub fn boot(spec: Arc<ServiceSpec>) -> (Self, Vec<Effect>) {
        let mut machine = Self {
            spec,
            booted: false,
            journaled: false,
            live: None,
            desired: None,
            next_generation: Generation(1),
            model: Model::default(),
            phase: Phase::Idle,
            inflight: None,
            next_op: 0,
            admitted: false,
            slot: false,
            attempts: 0,
            given_up: None,
            stopping: false,
            resync: None,
            dirty: None,
            run: None,
            wake: None,
            last_status: None,
            unreported: None,
            repair: None,
        };
        let mut fx = Vec::new();
        machine.admit(Purpose::Recover, &mut fx);
        machine.emit_status(&mut fx);
        (machine, fx)
    }

    /// Feeds one input; returns the new state and what to do.
    pub fn step(mut self, now: Instant, input: Input) -> (Self, Vec<Effect>) {
        let mut fx = Vec::new();
        match input {
            Input::Desired(target) => self.on_desired(now, target, &mut fx),
            Input::Tick => self.on_tick(now, &mut fx),
            Input::Resync => self.on_resync(&mut fx),
            Input::Shutdown => self.on_shutdown(now, &mut fx),
            Input::Done { id, result } => {
                if self.inflight.map(|(i, _)| i) == Some(id) {
                    self.inflight = None;
                    self.on_result(now, result, &mut fx);
                }
            }
        }
        self.emit_status(&mut fx);
        (self, fx)
    }

    /// The current phase.
    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    /// The generation that serves.
    pub fn live(&self) -> Option<&GenerationRef> {
        self.live.as_ref()
    }

    /// The service's spec.
    pub fn spec(&self) -> &Arc<ServiceSpec> {
        &self.spec
    }

    /// Whether the machine has stopped for good.
    pub fn is_stopped(&self) -> bool {
        self.phase == Phase::Stopped
    }

    /// The state shown to people.
    pub fn state(&self) -> ServiceState {
        let phase = match (&self.resync, &self.phase) {
            (Some(saved), Phase::Admitting(Purpose::Recover) | Phase::Observing(None)) => saved,
            (_, phase) => phase,
        };
        match phase {
            Phase::Admitting(Purpose::Recover) | Phase::Observing(None) => ServiceState::Recovering,
            Phase::Admitting(Purpose::Deploy) => ServiceState::Queued,
            Phase::Fetching(_) => ServiceState::Fetching,
            Phase::AwaitingSlot(_) => ServiceState::WaitingForSlot,
            Phase::Observing(Some(_)) => ServiceState::Starting,
            Phase::Executing(plan) => match &plan.kind {
                PlanKind::Recover if self.repair.is_some() => ServiceState::Degraded,
                PlanKind::Recover => ServiceState::Recovering,
                PlanKind::Rollback { .. } | PlanKind::Abort { .. } => ServiceState::RollingBack,
                PlanKind::Rollout { .. } => match plan.actions.front() {
                    Some(Action::Journal(entry)) if entry.rollout.is_some() => {
                        ServiceState::Starting
                    }
                    Some(Action::Start(_)) => ServiceState::Starting,
                    Some(Action::Probe(_)) => ServiceState::Probing,
                    Some(Action::Promote(_)) => ServiceState::Promoting,
                    Some(Action::Watch(_)) => ServiceState::Watching,
                    Some(Action::Halt { .. }) => ServiceState::RollingBack,
                    _ => ServiceState::Draining,
                },
            },
            Phase::Backoff { .. } => ServiceState::Backoff,
            Phase::Idle => ServiceState::Idle,
            Phase::Halted { .. } => ServiceState::Halted,
            Phase::Failed { .. } => ServiceState::Failed,
            Phase::Stopped => ServiceState::Stopped,
        }
    }

    // ---- inputs ----
}
