//! The per-service deployment state machine: `step(state, now, input) -> (state, effects)`.
//!
//! No I/O and no clock: time comes in as `now`, work goes out as [`Effect`]s, and results come
//! back as [`Input::Done`]. At most one operation is in flight; a result whose id does not match
//! the operation in flight is stale and ignored.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::io::{Effect, Input, Op, OpId, OpResult, Report, SlotOutcome, StatusUpdate};
use super::model::{Model, Status};
use super::plan::{self, Action};
use super::types::{
    Generation, GenerationRef, Health, InstanceId, JournalEntry, Observed, RunState,
};
use crate::image::Digest;
use crate::report::{Outcome, ServiceState};
use crate::service::{ServiceSpec, Strategy};
use crate::target::{Halt, Revision, Target};

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
    /// Gave up on the current target; waits for a newer one.
    Halted {
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
        /// Whether the build itself failed (halt it) or the machinery did (retry later).
        blame_build: bool,
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
                PlanKind::Recover => ServiceState::Recovering,
                PlanKind::Rollback { .. } | PlanKind::Abort { .. } => ServiceState::RollingBack,
                PlanKind::Rollout { .. } => match plan.actions.front() {
                    Some(Action::Journal(entry)) if entry.rollout.is_some() => {
                        ServiceState::Starting
                    }
                    Some(Action::Start(_)) => ServiceState::Starting,
                    Some(Action::Probe(_)) => ServiceState::Probing,
                    Some(Action::Promote(_)) => ServiceState::Promoting,
                    Some(Action::Halt { .. }) => ServiceState::RollingBack,
                    _ => ServiceState::Draining,
                },
            },
            Phase::Backoff { .. } => ServiceState::Backoff,
            Phase::Idle => ServiceState::Idle,
            Phase::Halted { .. } => ServiceState::Halted,
            Phase::Stopped => ServiceState::Stopped,
        }
    }

    // ---- inputs ----

    fn on_desired(&mut self, now: Instant, target: Target, fx: &mut Vec<Effect>) {
        if let Some(current) = &self.desired
            && (target.revision < current.revision || **current == target)
        {
            return;
        }
        let target = &**self.desired.insert(Arc::new(target));
        let (digest, halted) = (target.digest.clone(), target.halted.clone());
        match &mut self.phase {
            Phase::Idle | Phase::Halted { .. } => self.check_desired(fx),
            Phase::Backoff {
                next: Purpose::Deploy,
                ..
            } => {
                self.attempts = 0;
                self.wake = None;
                self.admit(Purpose::Deploy, fx);
            }
            Phase::Fetching(current) | Phase::AwaitingSlot(current) => {
                if current.digest != digest || halted.is_some() {
                    self.cancel_inflight(fx);
                    self.begin_deploy(now, fx);
                }
            }
            Phase::Executing(plan) => {
                if let PlanKind::Rollout { candidate, .. } = &plan.kind {
                    let why = match halted {
                        Some(halt) if candidate.digest.as_ref() == Some(&digest) => {
                            Some(Abort::HaltedElsewhere(halt))
                        }
                        _ if candidate.digest.as_ref() != Some(&digest) => Some(Abort::Superseded),
                        _ => None,
                    };
                    if let Some(why) = why {
                        self.request_abort(now, why, fx);
                    }
                }
            }
            // Recovery, admission and observation pick the newest target up when they finish.
            Phase::Admitting(_) | Phase::Observing(_) | Phase::Backoff { .. } | Phase::Stopped => {}
        }
    }

    fn on_tick(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        match self.wake {
            Some(at) if now >= at => self.wake = None,
            _ => return,
        }
        match &mut self.phase {
            Phase::Executing(plan) => {
                if let Some(probe) = plan.probe.as_mut().filter(|p| p.waiting) {
                    probe.waiting = false;
                    let id = probe.id;
                    self.run_op(Op::Probe(id), fx);
                }
            }
            Phase::Backoff { next, .. } => {
                let next = next.clone();
                self.admit(next, fx);
            }
            _ => {}
        }
    }

    fn on_resync(&mut self, fx: &mut Vec<Effect>) {
        let at_rest = matches!(self.phase, Phase::Idle | Phase::Halted { .. });
        if !at_rest || !self.booted || self.stopping || self.inflight.is_some() {
            return;
        }
        self.resync = Some(self.phase.clone());
        self.admit(Purpose::Recover, fx);
    }

    fn on_shutdown(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        match &self.phase {
            Phase::Idle
            | Phase::Halted { .. }
            | Phase::Backoff { .. }
            | Phase::Admitting(_)
            | Phase::Fetching(_)
            | Phase::AwaitingSlot(_) => {
                self.cancel_inflight(fx);
                self.wake = None;
                self.stop(fx);
            }
            Phase::Executing(plan) => {
                if matches!(plan.kind, PlanKind::Rollout { .. }) {
                    self.request_abort(now, Abort::Shutdown, fx);
                }
            }
            // An observation finishes quickly; its result sees `stopping`.
            Phase::Observing(_) | Phase::Stopped => {}
        }
    }

    fn on_result(&mut self, now: Instant, result: OpResult, fx: &mut Vec<Effect>) {
        let phase = std::mem::replace(&mut self.phase, Phase::Idle);
        match (phase, result) {
            (Phase::Admitting(purpose), OpResult::Admitted) => {
                self.admitted = true;
                match purpose {
                    Purpose::Recover => self.observe(None, fx),
                    Purpose::Deploy => self.begin_deploy(now, fx),
                }
            }
            (Phase::Fetching(target), OpResult::Fetched(Ok(()))) => {
                self.phase = Phase::AwaitingSlot(target.clone());
                self.run_op(Op::AcquireSlot { target }, fx);
            }
            (Phase::Fetching(target), OpResult::Fetched(Err(e))) => {
                self.transient_failure(
                    now,
                    Purpose::Deploy,
                    format!(
                        "fetch of {}@{} failed: {e}",
                        target.image,
                        target.digest.short()
                    ),
                    fx,
                );
            }
            (Phase::AwaitingSlot(target), OpResult::Slot(Ok(SlotOutcome::Granted))) => {
                self.slot = true;
                self.observe(Some(target), fx);
            }
            (Phase::AwaitingSlot(target), OpResult::Slot(Ok(SlotOutcome::Halted(halt)))) => {
                self.skip(now, target, &halt, fx);
            }
            (Phase::AwaitingSlot(_), OpResult::Slot(Err(e))) => {
                self.transient_failure(
                    now,
                    Purpose::Deploy,
                    format!("rollout slot unavailable: {e}"),
                    fx,
                );
            }
            (Phase::Observing(fetched), OpResult::Observed(Ok((observed, journal)))) => {
                self.on_observed(now, fetched, &observed, journal, fx);
            }
            (Phase::Observing(fetched), OpResult::Observed(Err(e))) => {
                let next = if fetched.is_some() {
                    Purpose::Deploy
                } else {
                    Purpose::Recover
                };
                self.transient_failure(now, next, format!("observing containers failed: {e}"), fx);
            }
            (Phase::Executing(plan), result) => self.on_step_result(now, plan, result, fx),
            (phase, _) => self.phase = phase,
        }
    }

    // ---- phases ----

    fn admit(&mut self, purpose: Purpose, fx: &mut Vec<Effect>) {
        self.phase = Phase::Admitting(purpose);
        self.run_op(Op::Admit, fx);
    }

    fn observe(&mut self, fetched: Option<Arc<Target>>, fx: &mut Vec<Effect>) {
        self.phase = Phase::Observing(fetched);
        self.run_op(
            Op::Observe {
                journal: !self.booted,
            },
            fx,
        );
    }

    /// With a permit held: start deploying the newest target, or go back to rest.
    fn begin_deploy(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        if self.stopping {
            return self.stop(fx);
        }
        if self.slot {
            self.slot = false;
            fx.push(Effect::ReleaseSlot);
        }
        let Some(target) = self.desired.clone() else {
            return self.rest(fx);
        };
        if let Some(halt) = target.halted.clone()
            && !self.is_live(&target.digest)
        {
            return self.skip(now, target, &halt, fx);
        }
        if !self.needs_deploy() {
            return self.rest(fx);
        }
        if self.run.is_none() {
            self.run = Some(Run {
                started: now,
                from: self.live_digest(),
                cut: 0,
                warnings: Vec::new(),
            });
        }
        self.phase = Phase::Fetching(target.clone());
        self.run_op(
            Op::Fetch {
                image: target.image.clone(),
                digest: target.digest.clone(),
            },
            fx,
        );
    }

    fn on_observed(
        &mut self,
        now: Instant,
        fetched: Option<Arc<Target>>,
        observed: &Observed,
        journal: Option<JournalEntry>,
        fx: &mut Vec<Effect>,
    ) {
        self.model = Model::from_observed(observed);
        if !self.booted {
            self.init_from(observed, journal);
        }
        if self.stopping {
            return self.stop(fx);
        }
        let flip = |live: Option<GenerationRef>, next: Generation| JournalEntry {
            live,
            next_generation: next,
            rollout: None,
        };
        let Some(fetched) = fetched else {
            // Without a journal nothing says which containers are leftovers: touch nothing.
            let actions = if matches!(self.spec.strategy(), Strategy::Stop) || !self.journaled {
                VecDeque::new()
            } else {
                self.converge_on_live()
            };
            // A plan of only the journal write means everything already is as journaled.
            if actions.iter().all(|a| matches!(a, Action::Journal(_))) {
                self.attempts = 0;
                let saved = self.resync.take();
                self.rest(fx);
                if let Some(saved) = saved {
                    self.phase = saved;
                }
                return self.check_desired(fx);
            }
            self.resync = None;
            return self.execute(now, PlanKind::Recover, actions, fx);
        };
        // The target may have moved on while we fetched and waited: only roll out what was
        // fetched, and only while it is still wanted.
        let Some(target) = self.desired.clone().filter(|t| t.digest == fetched.digest) else {
            return self.begin_deploy(now, fx);
        };
        if !self.needs_deploy() || target.halted.is_some() {
            return self.begin_deploy(now, fx);
        }
        let candidate = GenerationRef {
            id: self.next_generation,
            image: self.spec.image().clone(),
            digest: Some(target.digest.clone()),
        };
        let next = candidate.id.next();
        let mut actions = VecDeque::from([Action::Journal(JournalEntry {
            live: self.live.clone(),
            next_generation: next,
            rollout: Some(candidate.clone()),
        })]);
        let done = flip(Some(candidate.clone()), next);
        actions.extend(match self.spec.strategy() {
            Strategy::Stop => plan::stop_outdated(&self.model, &target.digest, done),
            _ => plan::converge(&self.model, Some(&candidate), &self.spec, done),
        });
        self.report(
            now,
            Outcome::Started,
            Some(target.clone()),
            Some(candidate.clone()),
            None,
            None,
            fx,
        );
        self.execute(now, PlanKind::Rollout { target, candidate }, actions, fx);
    }

    /// First observation: take the journal's word for what is live, or, without a journal,
    /// adopt the generation that runs the most containers (the oldest on a tie: a candidate is
    /// always newer than what it was meant to replace).
    fn init_from(&mut self, observed: &Observed, journal: Option<JournalEntry>) {
        self.booted = true;
        let after_observed = self
            .model
            .max_generation()
            .map_or(Generation(1), Generation::next);
        self.journaled = journal.is_some();
        match journal {
            Some(entry) => {
                self.live = entry.live;
                self.next_generation = entry.next_generation.max(after_observed);
            }
            None => {
                let mut counts: Vec<(usize, Generation)> = Vec::new();
                for o in observed
                    .instances
                    .iter()
                    .filter(|o| o.state == RunState::Running)
                {
                    match counts.iter_mut().find(|(_, g)| *g == o.id.generation) {
                        Some((n, _)) => *n += 1,
                        None => counts.push((1, o.id.generation)),
                    }
                }
                let chosen = counts
                    .iter()
                    .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)))
                    .map(|(_, g)| *g);
                self.live = chosen.and_then(|g| {
                    let first = observed.instances.iter().find(|o| o.id.generation == g)?;
                    Some(GenerationRef {
                        id: g,
                        image: first.image.clone(),
                        digest: first.digest.clone(),
                    })
                });
                self.next_generation = after_observed;
            }
        }
    }

    fn execute(
        &mut self,
        now: Instant,
        kind: PlanKind,
        actions: VecDeque<Action>,
        fx: &mut Vec<Effect>,
    ) {
        self.phase = Phase::Executing(Box::new(Plan {
            kind,
            actions,
            probe: None,
            abort: None,
        }));
        self.advance(now, fx);
    }

    /// Starts the next step of the plan, or finishes it.
    fn advance(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        let Phase::Executing(plan) = &mut self.phase else {
            return;
        };
        // An abort asked for while a step ran still applies, unless the candidate has meanwhile
        // taken traffic: then the rollout finishes.
        if let Some(why) = plan.abort.take()
            && self.request_abort(now, why, fx)
        {
            return;
        }
        let Phase::Executing(plan) = &mut self.phase else {
            return;
        };
        let op = match plan.actions.front() {
            None => return self.finish_plan(now, fx),
            Some(Action::Journal(entry)) => Op::Journal(entry.clone()),
            Some(Action::Start(spec)) => Op::Start(spec.clone()),
            Some(Action::Probe(id)) => {
                plan.probe = Some(ProbeState {
                    id: *id,
                    deadline: now + self.spec.health().deadline(),
                    successes: 0,
                    waiting: false,
                });
                Op::Probe(*id)
            }
            Some(Action::Promote(id)) => Op::Promote(*id),
            Some(Action::Retire(id)) => Op::Retire(*id),
            Some(Action::Remove(id)) => Op::Remove(*id),
            Some(Action::Halt { target, reason }) => Op::Halt {
                target: target.clone(),
                reason: reason.clone(),
            },
        };
        self.run_op(op, fx);
    }

    fn on_step_result(
        &mut self,
        now: Instant,
        mut plan: Box<Plan>,
        result: OpResult,
        fx: &mut Vec<Effect>,
    ) {
        let Some(action) = plan.actions.front().cloned() else {
            self.phase = Phase::Executing(plan);
            return;
        };
        let mut warning = None;
        // (reason, whether the build itself is to blame)
        let failure: Option<(String, bool)> = match (&action, result) {
            (Action::Journal(entry), OpResult::Journaled(Ok(()))) => {
                self.journaled = true;
                self.live = entry.live.clone();
                self.next_generation = self.next_generation.max(entry.next_generation);
                None
            }
            (Action::Start(spec), OpResult::Started(Ok(()))) => {
                self.model.set(spec, Status::Running);
                None
            }
            (Action::Start(spec), OpResult::Started(Err(e))) => {
                // A container may exist half-made; keep it in the model so undoing removes it.
                self.model.set(spec, Status::Stopped);
                Some((format!("starting {} failed: {e}", spec.id), true))
            }
            (Action::Probe(id), OpResult::Probed(health)) => {
                let id = *id;
                let Some(probe) = plan.probe.as_mut() else {
                    self.phase = Phase::Executing(plan);
                    return;
                };
                match health {
                    Ok(Health::Healthy) => {
                        probe.successes += 1;
                        if probe.successes < self.spec.health().healthy_threshold() {
                            let at = now + self.spec.health().interval();
                            probe.waiting = true;
                            self.phase = Phase::Executing(plan);
                            return self.wake_at(at, fx);
                        }
                        plan.probe = None;
                        self.model.update(id, Status::Healthy);
                        None
                    }
                    Ok(Health::Exited(e)) => {
                        plan.probe = None;
                        self.model.update(id, Status::Stopped);
                        Some((format!("{id} exited: {e}"), true))
                    }
                    Ok(Health::Unhealthy(e)) | Err(e) => {
                        probe.successes = 0;
                        if now >= probe.deadline {
                            plan.probe = None;
                            Some((
                                format!(
                                    "{id} not healthy within {:?}: {e}",
                                    self.spec.health().deadline()
                                ),
                                true,
                            ))
                        } else {
                            let at = (now + self.spec.health().interval()).min(probe.deadline);
                            probe.waiting = true;
                            self.phase = Phase::Executing(plan);
                            return self.wake_at(at, fx);
                        }
                    }
                }
            }
            (Action::Promote(id), OpResult::Promoted(Ok(()))) => {
                self.model.update(*id, Status::Serving);
                None
            }
            (Action::Promote(id), OpResult::Promoted(Err(e))) => {
                Some((format!("promoting {id} failed: {e}"), false))
            }
            (Action::Retire(id), OpResult::Retired(Ok(cut))) => {
                self.model.update(*id, Status::Stopped);
                if let Some(run) = &mut self.run {
                    run.cut += cut;
                }
                None
            }
            (Action::Retire(id), OpResult::Retired(Err(e))) => {
                // Out of traffic or not, the following remove stops it; a stuck old container
                // must not fail a deploy whose new generation already serves.
                self.model.update(*id, Status::Running);
                let w = format!("retiring {id} failed: {e}");
                self.dirty = Some(w.clone());
                warning = Some(w);
                None
            }
            (Action::Remove(id), OpResult::Removed(Ok(()))) => {
                self.model.remove(*id);
                None
            }
            (Action::Remove(id), OpResult::Removed(Err(e))) => {
                let w = format!("removing {id} failed: {e}");
                self.dirty = Some(w.clone());
                warning = Some(w);
                None
            }
            (Action::Halt { .. }, OpResult::Halted(r)) => {
                warning = r
                    .err()
                    .map(|e| format!("could not halt the rollout cluster-wide: {e}"));
                None
            }
            (Action::Journal(_), OpResult::Journaled(Err(e))) => {
                Some((format!("journal write failed: {e}"), false))
            }
            // A result that does not belong to the step: keep waiting for the right one.
            _ => {
                self.phase = Phase::Executing(plan);
                return;
            }
        };
        if let (Some(w), Some(run)) = (warning, &mut self.run) {
            run.warnings.push(w);
        }
        match failure {
            None => {
                plan.actions.pop_front();
                self.phase = Phase::Executing(plan);
                self.advance(now, fx);
            }
            Some((reason, blame_build)) => self.plan_failed(now, plan, reason, blame_build, fx),
        }
    }

    fn plan_failed(
        &mut self,
        now: Instant,
        plan: Box<Plan>,
        reason: String,
        blame_build: bool,
        fx: &mut Vec<Effect>,
    ) {
        match plan.kind {
            PlanKind::Rollout { target, candidate } => {
                let mut actions = self.converge_on_live();
                if blame_build {
                    actions.push_back(Action::Halt {
                        target: target.clone(),
                        reason: reason.clone(),
                    });
                }
                let kind = PlanKind::Rollback {
                    target,
                    candidate,
                    reason,
                    blame_build,
                };
                self.execute(now, kind, actions, fx);
            }
            PlanKind::Rollback {
                target,
                candidate,
                reason: first,
                ..
            } => {
                self.given_up = Some((target.digest.clone(), target.revision));
                let rollback_error = Some(reason.clone());
                self.report(
                    now,
                    Outcome::Failed,
                    Some(target),
                    Some(candidate),
                    Some(first),
                    rollback_error,
                    fx,
                );
                self.transient_failure(now, Purpose::Recover, reason, fx);
            }
            PlanKind::Abort {
                target, candidate, ..
            } => {
                let why = Some("removing an abandoned candidate failed".to_owned());
                self.report(
                    now,
                    Outcome::Failed,
                    Some(target),
                    Some(candidate),
                    why,
                    Some(reason.clone()),
                    fx,
                );
                self.transient_failure(now, Purpose::Recover, reason, fx);
            }
            PlanKind::Recover => {
                self.transient_failure(
                    now,
                    Purpose::Recover,
                    format!("recovery failed: {reason}"),
                    fx,
                );
            }
        }
    }

    fn finish_plan(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        let Phase::Executing(plan) = std::mem::replace(&mut self.phase, Phase::Idle) else {
            return;
        };
        let clean = self.dirty.is_none();
        match plan.kind {
            PlanKind::Recover => {
                if clean {
                    self.attempts = 0;
                }
                self.rest(fx);
            }
            PlanKind::Rollout { target, candidate } => {
                self.attempts = 0;
                self.report(
                    now,
                    Outcome::Succeeded,
                    Some(target),
                    Some(candidate),
                    None,
                    None,
                    fx,
                );
                self.rest(fx);
            }
            PlanKind::Rollback {
                target,
                candidate,
                reason,
                blame_build: true,
            } => {
                self.given_up = Some((target.digest.clone(), target.revision));
                self.report(
                    now,
                    Outcome::RolledBack,
                    Some(target),
                    Some(candidate),
                    Some(reason.clone()),
                    None,
                    fx,
                );
                self.end_busy(fx);
                self.phase = Phase::Halted { reason };
            }
            PlanKind::Rollback {
                reason,
                blame_build: false,
                ..
            } => {
                // The build is not at fault: retry it later like any transient failure.
                return self.transient_failure(now, Purpose::Deploy, reason, fx);
            }
            PlanKind::Abort {
                target,
                candidate,
                why,
            } => {
                let (outcome, reason) = match why {
                    Abort::Superseded => (
                        Outcome::Superseded,
                        "a newer target arrived before the candidate took traffic".to_owned(),
                    ),
                    Abort::Shutdown => (
                        Outcome::Superseded,
                        "shutting down before the candidate took traffic".to_owned(),
                    ),
                    Abort::HaltedElsewhere(halt) => (
                        Outcome::Skipped,
                        format!("halted by {}: {}", halt.node, halt.reason),
                    ),
                };
                self.report(
                    now,
                    outcome,
                    Some(target),
                    Some(candidate),
                    Some(reason),
                    None,
                    fx,
                );
                self.rest(fx);
            }
        }
        if self.stopping {
            self.stop(fx);
        } else if let Some(problem) = self.dirty.take() {
            // Something was left behind: converge again after a pause, within the retry budget.
            let reason = format!("cleanup incomplete: {problem}");
            self.transient_failure(now, Purpose::Recover, reason, fx);
        } else {
            self.check_desired(fx);
        }
    }

    /// Abandons a rollout whose candidate has not taken traffic; one that has finishes first.
    /// Returns whether the abort plan replaced the rollout.
    fn request_abort(&mut self, now: Instant, why: Abort, fx: &mut Vec<Effect>) -> bool {
        let Phase::Executing(plan) = &mut self.phase else {
            return false;
        };
        let PlanKind::Rollout { target, candidate } = &plan.kind else {
            return false;
        };
        if self.model.serves(candidate.id) {
            return false;
        }
        let cancellable = self.inflight.is_none_or(|(_, c)| c);
        if !cancellable {
            plan.abort = Some(why);
            return false;
        }
        let (target, candidate) = (target.clone(), candidate.clone());
        self.cancel_inflight(fx);
        self.wake = None;
        let actions = self.converge_on_live();
        let kind = PlanKind::Abort {
            target,
            candidate,
            why,
        };
        self.execute(now, kind, actions, fx);
        true
    }

    fn converge_on_live(&self) -> VecDeque<Action> {
        plan::converge(
            &self.model,
            self.live.as_ref(),
            &self.spec,
            JournalEntry {
                live: self.live.clone(),
                next_generation: self.next_generation,
                rollout: None,
            },
        )
    }

    fn transient_failure(
        &mut self,
        now: Instant,
        next: Purpose,
        reason: String,
        fx: &mut Vec<Effect>,
    ) {
        self.resync = None;
        self.end_busy(fx);
        if self.stopping {
            return self.stop(fx);
        }
        self.attempts += 1;
        let retry = self.spec.retry();
        if retry.allows(self.attempts) {
            let until = now + retry.delay(self.attempts);
            self.phase = Phase::Backoff {
                until,
                next,
                reason,
            };
            self.wake_at(until, fx);
        } else {
            let reason = format!("gave up after {} attempts: {reason}", self.attempts);
            self.attempts = 0;
            if next == Purpose::Deploy
                && let Some(target) = self.desired.clone()
            {
                self.given_up = Some((target.digest.clone(), target.revision));
                self.report(
                    now,
                    Outcome::Failed,
                    Some(target),
                    None,
                    Some(reason.clone()),
                    None,
                    fx,
                );
            }
            self.phase = Phase::Halted { reason };
        }
    }

    /// Another host failed this build: do not start it here.
    fn skip(&mut self, now: Instant, target: Arc<Target>, halt: &Halt, fx: &mut Vec<Effect>) {
        let key = (target.digest.clone(), target.revision);
        let reason = format!("halted by {}: {}", halt.node, halt.reason);
        if self.given_up.as_ref() != Some(&key) && self.run.is_some() {
            self.report(
                now,
                Outcome::Skipped,
                Some(target),
                None,
                Some(reason.clone()),
                None,
                fx,
            );
        }
        self.given_up = Some(key);
        self.end_busy(fx);
        self.run = None;
        self.phase = Phase::Halted { reason };
    }

    fn rest(&mut self, fx: &mut Vec<Effect>) {
        self.resync = None;
        self.end_busy(fx);
        self.run = None;
        self.phase = Phase::Idle;
    }

    fn stop(&mut self, fx: &mut Vec<Effect>) {
        self.resync = None;
        self.end_busy(fx);
        self.run = None;
        self.wake = None;
        self.phase = Phase::Stopped;
    }

    fn end_busy(&mut self, fx: &mut Vec<Effect>) {
        if self.slot {
            self.slot = false;
            fx.push(Effect::ReleaseSlot);
        }
        if self.admitted {
            self.admitted = false;
            fx.push(Effect::Release);
        }
    }

    /// At rest: start a deploy if the newest target asks for one.
    fn check_desired(&mut self, fx: &mut Vec<Effect>) {
        if self.stopping || !matches!(self.phase, Phase::Idle | Phase::Halted { .. }) {
            return;
        }
        if self.needs_deploy() {
            return self.admit(Purpose::Deploy, fx);
        }
        // Halted elsewhere before this host started it: note it, start nothing, report nothing.
        if let Some(target) = &self.desired
            && let Some(halt) = &target.halted
            && !self.is_live(&target.digest)
        {
            self.given_up = Some((target.digest.clone(), target.revision));
            self.phase = Phase::Halted {
                reason: format!("halted by {}: {}", halt.node, halt.reason),
            };
        }
    }

    fn needs_deploy(&self) -> bool {
        let Some(target) = &self.desired else {
            return false;
        };
        target.halted.is_none()
            && self.given_up.as_ref() != Some(&(target.digest.clone(), target.revision))
            && !self.is_live(&target.digest)
    }

    fn is_live(&self, digest: &Digest) -> bool {
        self.live.as_ref().and_then(|g| g.digest.as_ref()) == Some(digest)
    }

    fn live_digest(&self) -> Option<Digest> {
        self.live.as_ref().and_then(|g| g.digest.clone())
    }

    // ---- effects ----

    fn run_op(&mut self, op: Op, fx: &mut Vec<Effect>) {
        debug_assert!(self.inflight.is_none(), "one operation at a time");
        let id = OpId(self.next_op);
        self.next_op += 1;
        self.inflight = Some((id, op.is_cancellable()));
        fx.push(Effect::Run { id, op });
    }

    fn cancel_inflight(&mut self, fx: &mut Vec<Effect>) {
        if let Some((id, cancellable)) = self.inflight.take() {
            debug_assert!(cancellable, "only waits and reads are cancelled");
            fx.push(Effect::Cancel(id));
        }
    }

    fn wake_at(&mut self, at: Instant, fx: &mut Vec<Effect>) {
        self.wake = Some(at);
        fx.push(Effect::WakeAt(at));
    }

    #[allow(clippy::too_many_arguments)] // reason: a report has that many independent facts
    fn report(
        &mut self,
        now: Instant,
        outcome: Outcome,
        target: Option<Arc<Target>>,
        generation: Option<GenerationRef>,
        reason: Option<String>,
        rollback_error: Option<String>,
        fx: &mut Vec<Effect>,
    ) {
        let (duration, from, cut, warnings) = match &mut self.run {
            Some(run) => (
                now.saturating_duration_since(run.started),
                run.from.clone(),
                run.cut,
                if outcome.is_final() {
                    std::mem::take(&mut run.warnings)
                } else {
                    Vec::new()
                },
            ),
            None => (Duration::ZERO, self.live_digest(), 0, Vec::new()),
        };
        fx.push(Effect::Report(Report {
            outcome,
            target,
            from,
            generation,
            reason,
            rollback_error,
            cut,
            warnings,
            duration,
        }));
        if outcome.is_final() {
            self.run = None;
        }
    }

    fn emit_status(&mut self, fx: &mut Vec<Effect>) {
        let message = match &self.phase {
            Phase::Backoff { reason, .. } | Phase::Halted { reason } => Some(reason.clone()),
            _ => None,
        };
        let status = StatusUpdate {
            state: self.state(),
            live: self.live.clone(),
            target: self.desired.as_ref().map(|t| t.digest.clone()),
            message,
        };
        if self.last_status.as_ref() != Some(&status) {
            self.last_status = Some(status.clone());
            fx.push(Effect::Status(status));
        }
    }
}
