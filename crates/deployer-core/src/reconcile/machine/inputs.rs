//! How each input is taken: a new target, a timer, a resync, shutdown, a step's result.

use super::*;

impl Machine {
    pub(super) fn on_desired(&mut self, now: Instant, target: Target, fx: &mut Vec<Effect>) {
        if let Some(current) = &self.desired
            && (target.revision < current.revision || **current == target)
        {
            return;
        }
        let target = &**self.desired.insert(Arc::new(target));
        let (digest, halted) = (
            target.digest.clone(),
            target.halt_for(self.spec.name()).cloned(),
        );
        match &mut self.phase {
            Phase::Idle | Phase::Halted { .. } | Phase::Failed { .. } => self.check_desired(fx),
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

    pub(super) fn on_tick(&mut self, now: Instant, fx: &mut Vec<Effect>) {
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
                } else if let Some(watch) = plan.watching.as_mut().filter(|w| w.waiting) {
                    watch.waiting = false;
                    let id = watch.ids[watch.next];
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

    pub(super) fn on_resync(&mut self, fx: &mut Vec<Effect>) {
        let at_rest = self.at_rest();
        if !at_rest || !self.booted || self.stopping || self.inflight.is_some() {
            return;
        }
        self.resync = Some(self.phase.clone());
        self.admit(Purpose::Recover, fx);
    }

    pub(super) fn on_shutdown(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        match &self.phase {
            Phase::Idle
            | Phase::Halted { .. }
            | Phase::Failed { .. }
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

    pub(super) fn on_result(&mut self, now: Instant, result: OpResult, fx: &mut Vec<Effect>) {
        let phase = std::mem::replace(&mut self.phase, Phase::Idle);
        match (phase, result) {
            (Phase::Admitting(purpose), OpResult::Admitted) => {
                self.admitted = true;
                match purpose {
                    Purpose::Recover => self.observe(None, fx),
                    Purpose::Deploy => self.begin_deploy(now, fx),
                }
            }
            (Phase::Fetching(target), OpResult::Fetched(Ok(_))) => {
                self.phase = Phase::AwaitingSlot(target.clone());
                self.run_op(Op::AcquireSlot { target }, fx);
            }
            (Phase::Fetching(target), OpResult::Fetched(Err(e))) => {
                let e = e.context(format_args!(
                    "fetch of {}@{} failed",
                    target.image,
                    target.digest.short()
                ));
                match e.kind {
                    FailureKind::Transient => {
                        self.transient_failure(now, Purpose::Deploy, e.message, fx);
                    }
                    // No candidate exists yet: nothing to roll back, and a fetch that cannot
                    // succeed here says nothing about the build elsewhere.
                    FailureKind::Permanent | FailureKind::Build => {
                        self.give_up(now, Some(target), e.message, fx);
                    }
                }
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
                    format!("rollout slot unavailable: {}", e.message),
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
                self.transient_failure(
                    now,
                    next,
                    format!("observing containers failed: {}", e.message),
                    fx,
                );
            }
            (Phase::Executing(plan), result) => self.on_step_result(now, plan, result, fx),
            (phase, _) => self.phase = phase,
        }
    }

    // ---- phases ----
}
