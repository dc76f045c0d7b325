//! The phases before a plan: admission, fetching, the rollout slot, observation, and the
//! first look at what runs after a start.

use super::*;

impl Machine {
    pub(super) fn admit(&mut self, purpose: Purpose, fx: &mut Vec<Effect>) {
        self.phase = Phase::Admitting(purpose);
        self.run_op(Op::Admit, fx);
    }

    pub(super) fn observe(&mut self, fetched: Option<Arc<Target>>, fx: &mut Vec<Effect>) {
        self.phase = Phase::Observing(fetched);
        self.run_op(
            Op::Observe {
                journal: !self.booted,
            },
            fx,
        );
    }

    /// With a permit held: start deploying the newest target, or go back to rest.
    pub(super) fn begin_deploy(&mut self, now: Instant, fx: &mut Vec<Effect>) {
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
        if let Some(halt) = target.halt_for(self.spec.name()).cloned()
            && !self.is_live(&target.digest)
        {
            return self.skip(now, target, &halt, fx);
        }
        if !self.needs_deploy() {
            return self.rest(fx);
        }
        self.repair = None;
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

    pub(super) fn on_observed(
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
        let flip = |live: Option<GenerationRef>, next: Generation, target| JournalEntry {
            live,
            next_generation: next,
            rollout: None,
            target,
        };
        let Some(fetched) = fetched else {
            let actions = if self.spec.strategy().ordering() == Ordering::StopOutdated {
                VecDeque::new()
            } else if !self.journaled {
                self.reattach_live()
            } else {
                self.converge_on_live()
            };
            // A plan of only the journal write means everything already is as journaled (unless
            // the write is needed to forget a deploy recovery is about to report).
            if self.unreported.is_none() && actions.iter().all(|a| matches!(a, Action::Journal(_)))
            {
                self.attempts = 0;
                let saved = self.resync.take();
                self.rest(fx);
                if let Some(saved) = saved {
                    self.phase = saved;
                }
                return self.check_desired(fx);
            }
            // Found at rest (not at start): the live build is degraded until the plan is done.
            // (A repair that looks again describes what it does this time.)
            if self.resync.is_some() || self.repair.is_some() {
                self.repair = Some(plan::describe_repair(&actions));
            }
            self.resync = None;
            return self.execute(now, PlanKind::Recover, actions, fx);
        };
        // The target may have moved on while we fetched and waited: only roll out what was
        // fetched, and only while it is still wanted.
        let Some(target) = self.desired.clone().filter(|t| t.digest == fetched.digest) else {
            return self.begin_deploy(now, fx);
        };
        if !self.needs_deploy() || target.halt_for(self.spec.name()).is_some() {
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
            target: Some(Box::new((*target).clone())),
        })]);
        let done = flip(
            Some(candidate.clone()),
            next,
            Some(Box::new((*target).clone())),
        );
        actions.extend(match self.spec.strategy().ordering() {
            Ordering::StopOutdated => plan::stop_outdated(&self.model, &target.digest, done),
            _ => plan::converge(&self.model, Some(&candidate), &self.spec, done, true),
        });
        // The deploy is over once the old generation is gone: forget it, then report it.
        actions.push_back(Action::Journal(flip(Some(candidate.clone()), next, None)));
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
    pub(super) fn init_from(&mut self, observed: &Observed, journal: Option<JournalEntry>) {
        self.booted = true;
        let after_observed = self
            .model
            .max_generation()
            .map_or(Generation(1), Generation::next);
        self.journaled = journal.is_some();
        match journal {
            Some(entry) => {
                // Journaled with its target but no rollout: the new generation went live and
                // the crash came before the old one was gone and the deploy reported.
                let went_live = entry.rollout.is_none()
                    && entry.target.as_ref().is_some_and(|t| {
                        entry.live.as_ref().and_then(|g| g.digest.as_ref()) == Some(&t.digest)
                    });
                if went_live {
                    self.unreported = entry.target.map(|t| Arc::new(*t));
                }
                self.live = entry.live;
                self.next_generation = entry.next_generation.max(after_observed);
            }
            None => {
                let mut counts: Vec<(usize, Generation)> = Vec::new();
                for o in observed.instances.iter().filter(|o| o.state.is_alive()) {
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
}
