//! How a plan ends: success, failure (and what a failure leads to), and abandoning a rollout.

use super::*;

impl Machine {
    pub(super) fn plan_failed(
        &mut self,
        now: Instant,
        plan: Box<Plan>,
        error: StepError,
        fx: &mut Vec<Effect>,
    ) {
        let StepError {
            kind: fault,
            message: reason,
        } = error;
        match plan.kind {
            PlanKind::Rollout { target, candidate } => {
                let mut actions = self.converge_on_live();
                if fault == FailureKind::Build {
                    actions.push_back(Action::Halt {
                        target: target.clone(),
                        reason: reason.clone(),
                    });
                }
                let kind = PlanKind::Rollback {
                    target,
                    candidate,
                    reason,
                    fault,
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
                // What runs changed under the repair (a container the engine had not finished
                // stopping when it was observed, as right after its die event): look again at
                // once, before backing off.
                if self.attempts == 0 && !self.stopping {
                    self.attempts = 1;
                    return self.observe(None, fx);
                }
                self.transient_failure(
                    now,
                    Purpose::Recover,
                    format!("recovery failed: {reason}"),
                    fx,
                );
            }
        }
    }

    pub(super) fn finish_plan(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        let Phase::Executing(plan) = std::mem::replace(&mut self.phase, Phase::Idle) else {
            return;
        };
        let clean = self.dirty.is_none();
        match plan.kind {
            PlanKind::Recover => {
                if clean {
                    self.attempts = 0;
                }
                // A deploy a crash interrupted after its new generation went live: recovery
                // just finished it, and it is reported now (once: the plan's journal write
                // has forgotten it).
                if let Some(target) = self.unreported.take() {
                    self.run = Some(Run {
                        started: now,
                        from: None,
                        cut: 0,
                        warnings: vec!["finished by crash recovery".to_owned()],
                    });
                    let live = self.live.clone();
                    self.report(now, Outcome::Succeeded, Some(target), live, None, None, fx);
                } else if let Some(cause) = self.repair.take() {
                    let live = self.live.clone();
                    let target = self.desired.clone();
                    self.report(now, Outcome::Repaired, target, live, Some(cause), None, fx);
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
                reason,
                fault: FailureKind::Transient,
                ..
            } => {
                // The build is not at fault: retry it later like any transient failure.
                return self.transient_failure(now, Purpose::Deploy, reason, fx);
            }
            PlanKind::Rollback {
                target,
                candidate,
                reason,
                fault,
            } => {
                self.given_up = Some((target.digest.clone(), target.revision));
                // Without an earlier generation nothing was rolled back to: the deploy failed.
                let outcome = match self.live {
                    Some(_) => Outcome::RolledBack,
                    None => Outcome::Failed,
                };
                self.report(
                    now,
                    outcome,
                    Some(target),
                    Some(candidate),
                    Some(reason.clone()),
                    None,
                    fx,
                );
                self.end_busy(fx);
                self.phase = match fault {
                    FailureKind::Build => Phase::Halted { reason },
                    _ => Phase::Failed { reason },
                };
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
    pub(super) fn request_abort(&mut self, now: Instant, why: Abort, fx: &mut Vec<Effect>) -> bool {
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

    pub(super) fn converge_on_live(&self) -> VecDeque<Action> {
        plan::converge(
            &self.model,
            self.live.as_ref(),
            &self.spec,
            JournalEntry {
                live: self.live.clone(),
                next_generation: self.next_generation,
                rollout: None,
                target: None,
            },
            false,
        )
    }

    /// Without a journal nothing says which containers are leftovers, so none is touched;
    /// but the adopted live generation must take traffic: those of its containers that run
    /// out of the proxy (a fresh proxy after the journal was lost) are probed and put in.
    pub(super) fn reattach_live(&self) -> VecDeque<Action> {
        let (Some(live), Some(_)) = (&self.live, self.spec.strategy().handover()) else {
            return VecDeque::new();
        };
        self.model
            .iter()
            .filter(|i| i.spec.id.generation == live.id && i.spec.id.slot < self.spec.replicas())
            .filter(|i| matches!(i.status, Status::Running | Status::Healthy))
            .flat_map(|i| [Action::Probe(i.spec.id), Action::Promote(i.spec.id)])
            .collect()
    }
}
