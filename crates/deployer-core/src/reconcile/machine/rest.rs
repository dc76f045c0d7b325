//! Backoff, halts and rest; the effects a step emits; reports and statuses.

use super::*;

impl Machine {
    pub(super) fn transient_failure(
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
            let until = crate::deadline::after(now, retry.delay(self.attempts));
            self.phase = Phase::Backoff {
                until,
                next,
                reason,
            };
            self.wake_at(until, fx);
        } else {
            let reason = format!("gave up after {} attempts: {reason}", self.attempts);
            let target = match next {
                Purpose::Deploy => self.desired.clone(),
                Purpose::Recover => None,
            };
            self.give_up(now, target, reason, fx);
        }
    }

    /// Stops trying `target` here without blaming the build: it is reported failed, and only
    /// a newer target or an operator's deploy starts it again.
    pub(super) fn give_up(
        &mut self,
        now: Instant,
        target: Option<Arc<Target>>,
        reason: String,
        fx: &mut Vec<Effect>,
    ) {
        self.attempts = 0;
        self.resync = None;
        self.end_busy(fx);
        if let Some(target) = target {
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
        self.run = None;
        self.phase = Phase::Failed { reason };
    }

    /// Whether nothing is under way: a resync or a new target may start work.
    pub(super) fn at_rest(&self) -> bool {
        matches!(
            self.phase,
            Phase::Idle | Phase::Halted { .. } | Phase::Failed { .. }
        )
    }

    /// Another host failed this build: do not start it here.
    pub(super) fn skip(
        &mut self,
        now: Instant,
        target: Arc<Target>,
        halt: &Halt,
        fx: &mut Vec<Effect>,
    ) {
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

    pub(super) fn rest(&mut self, fx: &mut Vec<Effect>) {
        self.resync = None;
        self.end_busy(fx);
        self.run = None;
        self.phase = Phase::Idle;
    }

    pub(super) fn stop(&mut self, fx: &mut Vec<Effect>) {
        self.resync = None;
        self.end_busy(fx);
        self.run = None;
        self.wake = None;
        self.phase = Phase::Stopped;
    }

    pub(super) fn end_busy(&mut self, fx: &mut Vec<Effect>) {
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
    pub(super) fn check_desired(&mut self, fx: &mut Vec<Effect>) {
        if self.stopping || !self.at_rest() {
            return;
        }
        if self.needs_deploy() {
            return self.admit(Purpose::Deploy, fx);
        }
        // Halted elsewhere before this host started it: note it, start nothing, report nothing.
        if let Some(target) = &self.desired
            && let Some(halt) = target.halt_for(self.spec.name())
            && !self.is_live(&target.digest)
        {
            self.given_up = Some((target.digest.clone(), target.revision));
            self.phase = Phase::Halted {
                reason: format!("halted by {}: {}", halt.node, halt.reason),
            };
        }
    }

    pub(super) fn needs_deploy(&self) -> bool {
        let Some(target) = &self.desired else {
            return false;
        };
        target.halt_for(self.spec.name()).is_none()
            && self.given_up.as_ref() != Some(&(target.digest.clone(), target.revision))
            && !self.is_live(&target.digest)
    }

    pub(super) fn is_live(&self, digest: &Digest) -> bool {
        self.live.as_ref().and_then(|g| g.digest.as_ref()) == Some(digest)
    }

    pub(super) fn live_digest(&self) -> Option<Digest> {
        self.live.as_ref().and_then(|g| g.digest.clone())
    }

    // ---- effects ----

    pub(super) fn run_op(&mut self, op: Op, fx: &mut Vec<Effect>) {
        debug_assert!(self.inflight.is_none(), "one operation at a time");
        let id = OpId(self.next_op);
        self.next_op += 1;
        self.inflight = Some((id, op.is_cancellable()));
        fx.push(Effect::Run { id, op });
    }

    pub(super) fn cancel_inflight(&mut self, fx: &mut Vec<Effect>) {
        if let Some((id, cancellable)) = self.inflight.take() {
            debug_assert!(cancellable, "only waits and reads are cancelled");
            fx.push(Effect::Cancel(id));
        }
    }

    pub(super) fn wake_at(&mut self, at: Instant, fx: &mut Vec<Effect>) {
        self.wake = Some(at);
        fx.push(Effect::WakeAt(at));
    }

    #[allow(clippy::too_many_arguments)] // reason: a report has that many independent facts
    pub(super) fn report(
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

    pub(super) fn emit_status(&mut self, fx: &mut Vec<Effect>) {
        let message = match &self.phase {
            Phase::Backoff { reason, .. } | Phase::Halted { reason } | Phase::Failed { reason } => {
                Some(reason.clone())
            }
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
