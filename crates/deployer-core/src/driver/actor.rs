//! One task per service: runs its state machine, carrying out effects through the ports.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tracing::Instrument;

use super::error_chain;
use super::handle::Board;
use super::notify::{ReportHub, StatusPublisher};
use crate::ports::{
    Coordinator, FailureKind, FetchProgress, ImageSource, Journal, PullProgress, SlotGrant,
    SlotLease, SwitchError, Switcher,
};
use crate::reconcile::{
    Effect, Input, Machine, Op, OpId, OpResult, Report, SlotOutcome, StatusUpdate, StepError,
};
use crate::report::{DeployReport, ServiceStatus};
use crate::service::ServiceSpec;
use crate::shutdown::Shutdown;
use crate::target::{Halt, Target};
use crate::time::Timestamp;

/// What every actor shares.
pub(crate) struct Shared {
    pub(crate) node: Arc<str>,
    pub(crate) images: Arc<dyn ImageSource>,
    pub(crate) switcher: Arc<dyn Switcher>,
    pub(crate) coordinator: Arc<dyn Coordinator>,
    pub(crate) journal: Arc<dyn Journal>,
    pub(crate) permits: Arc<Semaphore>,
    pub(crate) board: Arc<Board>,
    pub(crate) reports: ReportHub,
    pub(crate) statuses: StatusPublisher,
}

/// An operation's outcome plus what it acquired.
struct Output {
    result: OpResult,
    permit: Option<OwnedSemaphorePermit>,
    slot: Option<SlotLease>,
}

type OpFuture = Pin<Box<dyn Future<Output = Output> + Send>>;

/// When a service is looked at again at rest (see [`Input::Resync`]).
pub(crate) struct Rescans {
    /// Periodically, as a safety net.
    pub(crate) every: Option<std::time::Duration>,
    /// When the engine says one of its containers changed.
    pub(crate) kick: Arc<tokio::sync::Notify>,
}

/// Runs `spec`'s machine until it stops.
pub(crate) async fn run(
    shared: Arc<Shared>,
    spec: Arc<ServiceSpec>,
    mut desired: watch::Receiver<Option<Target>>,
    mut shutdown: Shutdown,
    rescans: Rescans,
) {
    let resync = rescans.every;
    let span = tracing::info_span!("service", service = %spec.name(), image = %spec.image());
    async move {
        let mut actor = Actor {
            shared,
            spec: spec.clone(),
            inflight: None,
            timer: None,
            permit: None,
            slot: None,
            deploy: None,
        };
        let (mut machine, effects) = Machine::boot(spec);
        actor.apply(effects);
        let mut told_to_stop = false;
        let mut desired_open = true;
        let mut resync = resync.map(|every| {
            let mut ticks = tokio::time::interval_at(crate::deadline::after(Instant::now(), every), every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks
        });
        while !machine.is_stopped() {
            let input = tokio::select! {
                biased;
                () = shutdown.wait(), if !told_to_stop => {
                    told_to_stop = true;
                    Input::Shutdown
                }
                (id, output) = Actor::wait_inflight(&mut actor.inflight), if actor.inflight.is_some() => {
                    actor.inflight = None;
                    actor.permit = actor.permit.take().or(output.permit);
                    if output.slot.is_some() {
                        actor.slot = output.slot;
                    }
                    Input::Done { id, result: output.result }
                }
                () = sleep_until(actor.timer), if actor.timer.is_some() => {
                    actor.timer = None;
                    Input::Tick
                }
                () = tick(&mut resync), if resync.is_some() => Input::Resync,
                () = rescans.kick.notified() => Input::Resync,
                changed = desired.changed(), if desired_open => {
                    if changed.is_err() {
                        desired_open = false;
                        continue;
                    }
                    match desired.borrow_and_update().clone() {
                        Some(target) => Input::Desired(target),
                        None => continue,
                    }
                }
            };
            let (next, effects) = machine.step(Instant::now(), input);
            machine = next;
            actor.apply(effects);
        }
        if let Some(slot) = actor.slot.take() {
            let _ = actor.shared.coordinator.release_slot(slot).await;
        }
    }
    .instrument(span)
    .await;
}

async fn tick(resync: &mut Option<tokio::time::Interval>) {
    match resync {
        Some(ticks) => {
            ticks.tick().await;
        }
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
    }
}

struct Actor {
    shared: Arc<Shared>,
    spec: Arc<ServiceSpec>,
    inflight: Option<(OpId, OpFuture)>,
    timer: Option<Instant>,
    permit: Option<OwnedSemaphorePermit>,
    slot: Option<SlotLease>,
    /// The span of the deploy under way: from its fetch until the service is at rest again,
    /// every step and report of one deploy is logged in it, with the digest.
    deploy: Option<tracing::Span>,
}

impl Actor {
    async fn wait_inflight(inflight: &mut Option<(OpId, OpFuture)>) -> (OpId, Output) {
        match inflight {
            Some((id, future)) => (*id, future.await),
            None => std::future::pending().await,
        }
    }

    fn apply(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Run { id, op } => {
                    if let Op::Fetch { digest, .. } = &op {
                        self.deploy = Some(tracing::info_span!("deploy", digest = %digest));
                    }
                    let span = self.deploy.clone().unwrap_or_else(tracing::Span::current);
                    span.in_scope(|| tracing::debug!(op = op.name(), "starting"));
                    self.inflight = Some((id, Box::pin(self.start(op).instrument(span))));
                }
                Effect::Cancel(id) => {
                    if self.inflight.as_ref().is_some_and(|(i, _)| *i == id) {
                        self.inflight = None;
                    }
                }
                Effect::WakeAt(at) => self.timer = Some(at),
                Effect::Report(report) => {
                    let span = self.deploy.clone().unwrap_or_else(tracing::Span::current);
                    span.in_scope(|| self.report(report));
                }
                Effect::Status(status) => self.status(status),
                Effect::ReleaseSlot => {
                    if let Some(slot) = self.slot.take() {
                        let coordinator = self.shared.coordinator.clone();
                        tokio::spawn(async move {
                            if let Err(e) = coordinator.release_slot(slot).await {
                                tracing::warn!(
                                    "could not release the rollout slot: {}",
                                    error_chain(&e)
                                );
                            }
                        });
                    }
                }
                Effect::Release => {
                    self.permit = None;
                    self.deploy = None;
                }
            }
        }
    }

    fn start(&self, op: Op) -> OpFuture {
        let timeout = op.timeout(&self.spec);
        let name = op.name();
        let future = execute(self.shared.clone(), self.spec.clone(), op.clone());
        Box::pin(async move {
            match timeout {
                None => future.await,
                Some(limit) => match tokio::time::timeout(limit, future).await {
                    Ok(output) => output,
                    Err(_) => Output {
                        result: failed(&op, format!("{name} timed out after {limit:?}")),
                        permit: None,
                        slot: None,
                    },
                },
            }
        })
    }

    fn report(&self, report: Report) {
        let finished_at = Timestamp::now();
        let started_at = Timestamp::from_millis(
            finished_at
                .as_millis()
                .saturating_sub(u64::try_from(report.duration.as_millis()).unwrap_or(u64::MAX)),
        );
        let target = report.target.as_ref();
        let report = DeployReport {
            service: self.spec.name().clone(),
            node: self.shared.node.to_string(),
            image: self.spec.image().clone(),
            outcome: report.outcome,
            from: report.from,
            to: target
                .map(|t| t.digest.clone())
                .or_else(|| report.generation.as_ref().and_then(|g| g.digest.clone())),
            generation: report.generation.as_ref().map(|g| g.id),
            revision: target.map(|t| t.revision),
            source: target.map(|t| t.source.clone()),
            delivery_id: target.and_then(|t| t.delivery_id.clone()),
            callback_url: target.and_then(|t| t.callback_url.clone()),
            reason: report.reason,
            rollback_error: report.rollback_error,
            cut: report.cut,
            warnings: report.warnings,
            started_at,
            finished_at,
            duration_ms: u64::try_from(report.duration.as_millis()).unwrap_or(u64::MAX),
        };
        match report.outcome {
            crate::report::Outcome::Succeeded | crate::report::Outcome::Started => tracing::info!(
                outcome = %report.outcome,
                digest = report.to.as_ref().map(|d| d.short().to_owned()),
                duration_ms = report.duration_ms,
                "deploy"
            ),
            _ => tracing::warn!(
                outcome = %report.outcome,
                digest = report.to.as_ref().map(|d| d.short().to_owned()),
                reason = report.reason.as_deref(),
                rollback_error = report.rollback_error.as_deref(),
                "deploy"
            ),
        }
        if report.outcome.is_final() {
            self.shared.board.set_report(&report);
        }
        self.shared.reports.publish(report);
    }

    fn status(&self, update: StatusUpdate) {
        let endpoint = match self.spec.strategy() {
            s if update.live.is_some() => s.handover().map(|h| h.listen().to_string()),
            _ => None,
        };
        let status = ServiceStatus {
            service: self.spec.name().clone(),
            node: self.shared.node.to_string(),
            image: self.spec.image().clone(),
            state: update.state,
            live: update.live.as_ref().and_then(|g| g.digest.clone()),
            generation: update.live.as_ref().map(|g| g.id),
            target: update.target,
            endpoint,
            message: update.message,
            updated_at: Timestamp::now(),
        };
        tracing::debug!(state = %status.state, "status");
        self.shared.board.set_status(status.clone());
        self.shared.statuses.publish(status);
    }
}

/// The failure result of `op`, for a timeout: transient, since a slow engine is no verdict on
/// the build (a probe's own deadline is what judges health).
fn failed(op: &Op, message: String) -> OpResult {
    let message = StepError::transient(message);
    match op {
        Op::Admit => OpResult::Admitted,
        Op::Fetch { .. } => OpResult::Fetched(Err(message)),
        Op::AcquireSlot { .. } => OpResult::Slot(Err(message)),
        Op::Observe { .. } => OpResult::Observed(Err(message)),
        Op::Journal(_) => OpResult::Journaled(Err(message)),
        Op::Start(_) => OpResult::Started(Err(message)),
        // A probe that does not answer in time is an unhealthy answer, not an engine fault.
        Op::Probe(_) => OpResult::Probed(Ok(crate::reconcile::Health::Unhealthy(message.message))),
        Op::Promote(_) => OpResult::Promoted(Err(message)),
        Op::Retire(_) => OpResult::Retired(Err(message)),
        Op::Remove(_) => OpResult::Removed(Err(message)),
        Op::Halt { .. } => OpResult::Halted(Err(message)),
    }
}

/// Logs pull progress at most every 10 % so a big pull does not flood the log.
struct LogProgress {
    last: std::sync::atomic::AtomicU64,
}

impl FetchProgress for LogProgress {
    fn update(&self, p: &PullProgress) {
        let percent = (p.bytes_done * 100).checked_div(p.bytes_total).unwrap_or(0);
        let bucket = percent / 10;
        if self.last.swap(bucket, std::sync::atomic::Ordering::Relaxed) != bucket {
            tracing::info!(
                layers = format!("{}/{}", p.layers_done, p.layers_total),
                bytes = p.bytes_done,
                total = p.bytes_total,
                "pulling {percent}%"
            );
        }
    }
}

/// A port error as the machine sees it: its kind, and its message with every cause.
fn step_error<E: std::error::Error>(kind: FailureKind, error: &E) -> StepError {
    StepError::new(kind, error_chain(error))
}

async fn execute(shared: Arc<Shared>, spec: Arc<ServiceSpec>, op: Op) -> Output {
    let plain = |result| Output {
        result,
        permit: None,
        slot: None,
    };
    let s = &*spec;
    let sw = &shared.switcher;
    let switch = |e: SwitchError| step_error(e.kind(), &e);
    match op {
        Op::Admit => {
            // The semaphore is never closed, so acquisition only waits.
            let permit = shared.permits.clone().acquire_owned().await.ok();
            Output {
                result: OpResult::Admitted,
                permit,
                slot: None,
            }
        }
        Op::Fetch { image, digest } => {
            let progress = LogProgress {
                last: std::sync::atomic::AtomicU64::new(u64::MAX),
            };
            let r = shared.images.fetch(&image, &digest, &progress).await;
            plain(OpResult::Fetched(r.map_err(|e| step_error(e.kind(), &e))))
        }
        Op::AcquireSlot { target } => {
            match shared.coordinator.acquire_slot(s.name(), &target).await {
                Ok(SlotGrant::Granted(lease)) => Output {
                    result: OpResult::Slot(Ok(SlotOutcome::Granted)),
                    permit: None,
                    slot: Some(lease),
                },
                Ok(SlotGrant::Halted(halt)) => plain(OpResult::Slot(Ok(SlotOutcome::Halted(halt)))),
                Err(e) => plain(OpResult::Slot(Err(step_error(e.kind(), &e)))),
            }
        }
        Op::Observe { journal } => {
            let load = async {
                match journal {
                    true => shared
                        .journal
                        .load(s.name())
                        .await
                        .map_err(|e| step_error(e.kind(), &e)),
                    false => Ok(None),
                }
            };
            let (observed, journal) = tokio::join!(sw.observe(s), load);
            let result = match (observed, journal) {
                (Ok(o), Ok(j)) => Ok((o, j)),
                (Err(e), _) => Err(switch(e)),
                (_, Err(e)) => Err(e),
            };
            plain(OpResult::Observed(result))
        }
        Op::Journal(entry) => plain(OpResult::Journaled(
            shared
                .journal
                .save(s.name(), &entry)
                .await
                .map_err(|e| step_error(e.kind(), &e)),
        )),
        Op::Start(instance) => plain(OpResult::Started(
            sw.start(s, &instance).await.map_err(switch),
        )),
        Op::Probe(id) => plain(OpResult::Probed(sw.probe(s, id).await.map_err(switch))),
        Op::Promote(id) => plain(OpResult::Promoted(sw.promote(s, id).await.map_err(switch))),
        Op::Retire(id) => plain(OpResult::Retired(sw.retire(s, id).await.map_err(switch))),
        Op::Remove(id) => plain(OpResult::Removed(sw.remove(s, id).await.map_err(switch))),
        Op::Halt { target, reason } => {
            let halt = Halt {
                service: s.name().clone(),
                node: shared.node.to_string(),
                reason,
                at: Timestamp::now(),
            };
            let r = shared
                .coordinator
                .halt(&target.image, &target.digest, halt)
                .await;
            plain(OpResult::Halted(r.map_err(|e| step_error(e.kind(), &e))))
        }
    }
}
