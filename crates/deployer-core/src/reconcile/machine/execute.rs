//! Carrying out a plan step by step, and taking each step's result (probing included).

use super::*;
use crate::ports::Retired;

impl Machine {
    pub(super) fn execute(
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
            watching: None,
            abort: None,
        }));
        self.advance(now, fx);
    }

    /// Starts the next step of the plan, or finishes it.
    pub(super) fn advance(&mut self, now: Instant, fx: &mut Vec<Effect>) {
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
                    deadline: crate::deadline::after(now, self.spec.health().deadline()),
                    successes: 0,
                    waiting: false,
                });
                Op::Probe(*id)
            }
            Some(Action::Promote(id)) => Op::Promote(*id),
            Some(Action::Watch(ids)) => {
                let Some(&first) = ids.first() else {
                    plan.actions.pop_front();
                    return self.advance(now, fx);
                };
                plan.watching = Some(WatchState {
                    ids: ids.clone(),
                    until: crate::deadline::after(
                        now,
                        self.spec.strategy().watch_period(self.spec.health()),
                    ),
                    since: now,
                    next: 0,
                    failures: 0,
                    waiting: false,
                });
                Op::Probe(first)
            }
            Some(Action::Retire(id)) => Op::Retire(*id),
            Some(Action::Remove(id)) => Op::Remove(*id),
            Some(Action::Halt { target, reason }) => Op::Halt {
                target: target.clone(),
                reason: reason.clone(),
            },
        };
        self.run_op(op, fx);
    }

    pub(super) fn on_step_result(
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
        let failure: Option<StepError> = match (&action, result) {
            (Action::Journal(entry), OpResult::Journaled(Ok(()))) => {
                self.journaled = true;
                self.live = entry.live.clone();
                self.next_generation = self.next_generation.max(entry.next_generation);
                None
            }
            (Action::Start(spec), OpResult::Started(Ok(_))) => {
                self.model.set(spec, Status::Running);
                None
            }
            (Action::Start(spec), OpResult::Started(Err(e))) => {
                // A container may exist half-made; keep it in the model so undoing removes it.
                self.model.set(spec, Status::Stopped);
                Some(e.context(format_args!("starting {} failed", spec.id)))
            }
            (Action::Probe(id), OpResult::Probed(health)) => {
                let id = *id;
                let Some(probe) = plan.probe.as_mut() else {
                    self.phase = Phase::Executing(plan);
                    return;
                };
                let (health, probe_kind) = match health {
                    Ok(health) => (health, FailureKind::Build),
                    Err(e) => (Health::Unhealthy(e.message), e.kind),
                };
                match health {
                    Health::Healthy => {
                        probe.successes += 1;
                        if probe.successes < self.spec.health().healthy_threshold() {
                            let at = crate::deadline::after(now, self.spec.health().interval());
                            probe.waiting = true;
                            self.phase = Phase::Executing(plan);
                            return self.wake_at(at, fx);
                        }
                        plan.probe = None;
                        self.model.update(id, Status::Healthy);
                        None
                    }
                    Health::Exited(e) => {
                        plan.probe = None;
                        self.model.update(id, Status::Stopped);
                        Some(StepError::build(format!("{id} exited: {e}")))
                    }
                    Health::Unhealthy(e) => {
                        probe.successes = 0;
                        if now >= probe.deadline {
                            plan.probe = None;
                            // A probe that could not even run (the engine was unreachable) does
                            // not blame the build when it is the last word at the deadline.
                            let kind = match probe_kind {
                                FailureKind::Transient => FailureKind::Transient,
                                _ => FailureKind::Build,
                            };
                            Some(StepError::new(
                                kind,
                                format!(
                                    "{id} not healthy within {:?}: {e}",
                                    self.spec.health().deadline()
                                ),
                            ))
                        } else {
                            let at = crate::deadline::after(now, self.spec.health().interval())
                                .min(probe.deadline);
                            probe.waiting = true;
                            self.phase = Phase::Executing(plan);
                            return self.wake_at(at, fx);
                        }
                    }
                }
            }
            (Action::Watch(_), OpResult::Probed(health)) => {
                let Some(watch) = plan.watching.as_mut() else {
                    self.phase = Phase::Executing(plan);
                    return;
                };
                let id = watch.ids[watch.next];
                let after = now.saturating_duration_since(watch.since);
                let verdict = match health {
                    Ok(Health::Healthy) => None,
                    Ok(Health::Exited(e)) => Some((true, e)),
                    Ok(Health::Unhealthy(e)) => Some((false, e)),
                    Err(e) => Some((false, e.message)),
                };
                match verdict {
                    None if now >= watch.until => {
                        plan.watching = None;
                        None
                    }
                    None => {
                        watch.failures = 0;
                        watch.next = (watch.next + 1) % watch.ids.len();
                        let at = crate::deadline::after(now, self.spec.health().interval())
                            .min(watch.until);
                        watch.waiting = true;
                        self.phase = Phase::Executing(plan);
                        return self.wake_at(at, fx);
                    }
                    Some((exited, e)) => {
                        watch.failures += 1;
                        if exited || watch.failures >= WATCH_FAILURES {
                            plan.watching = None;
                            let how = if exited { "exited" } else { "became unhealthy" };
                            Some(StepError::build(format!(
                                "{id} {how} {after:?} after taking traffic: {e}"
                            )))
                        } else {
                            // Retried at the interval, even past the period's end: the watch
                            // ends on a healthy answer.
                            let at = crate::deadline::after(now, self.spec.health().interval());
                            watch.waiting = true;
                            self.phase = Phase::Executing(plan);
                            return self.wake_at(at, fx);
                        }
                    }
                }
            }
            (Action::Promote(id), OpResult::Promoted(Ok(_))) => {
                self.model.update(*id, Status::Serving);
                // A handover promote moves the slot's traffic: its older instance no longer
                // serves, so undoing the rollout must promote that one again.
                if self.spec.strategy().promote_takes_traffic() {
                    self.model.demote_slot_peers(*id);
                }
                None
            }
            (Action::Promote(id), OpResult::Promoted(Err(e))) => {
                Some(e.context(format_args!("promoting {id} failed")))
            }
            (Action::Retire(id), OpResult::Retired(Ok(retired))) => {
                self.model.update(*id, Status::Stopped);
                if let (Some(run), Retired::Stopped { cut }) = (&mut self.run, retired) {
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
            (Action::Remove(id), OpResult::Removed(Ok(_))) => {
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
                Some(e.context("journal write failed"))
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
            Some(error) => self.plan_failed(now, plan, error, fx),
        }
    }
}
