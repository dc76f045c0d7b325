//! The planner: the steps that take a service from what runs now to exactly one generation.
//!
//! One function serves rollout, rollback, abort and crash recovery alike: each is "converge
//! on generation G" from the current model; they differ only in G, the journal entries around
//! the steps, and what a failure leads to. That is why a rollback after a crash and a rollback
//! after a failed probe cannot disagree.

use std::collections::VecDeque;
use std::sync::Arc;

use super::model::{Model, Status};
use super::types::{GenerationRef, InstanceId, InstanceSpec, JournalEntry};
use crate::service::{Ordering, ServiceSpec};
use crate::target::Target;

/// One step of a plan; each maps to one [`super::Op`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    Journal(JournalEntry),
    Start(InstanceSpec),
    Probe(InstanceId),
    Promote(InstanceId),
    Retire(InstanceId),
    Remove(InstanceId),
    Halt {
        target: Arc<Target>,
        reason: String,
    },
    /// Keep probing these (newly serving) instances for the service's watch period while the
    /// old generation stands by; a failure rolls back.
    Watch(Vec<InstanceId>),
}

/// Steps that leave exactly the containers of `to` serving, in slots `0..replicas`, and no
/// others; `to == None` removes everything. `flip` is journaled once every slot of `to` serves
/// and before anything irreversible is done to the rest. With `watch` (a rollout of a handover
/// service with a watch period), the new generation is watched once it serves, before the
/// flip, and the old one is only torn down after: until then it stands by, running and out of
/// traffic, so a failure moves traffic straight back.
///
/// Ordering per strategy:
/// - handover, per batch of `surge` slots: start, probe, promote the new containers, then retire
///   and remove the old ones of those slots. The old never stops before the new serves.
/// - recreate, per batch: stop the old (keeping its container: it holds the config to go back
///   to), start, probe and confirm the new; only after `flip`, delete the old containers.
/// - stop: see [`stop_outdated`].
pub(crate) fn converge(
    model: &Model,
    to: Option<&GenerationRef>,
    spec: &ServiceSpec,
    flip: JournalEntry,
    watch: bool,
) -> VecDeque<Action> {
    let mut plan = VecDeque::new();
    let keep =
        |id: InstanceId| to.is_some_and(|g| g.id == id.generation && id.slot < spec.replicas());
    let others_in = |slots: &[u32]| -> Vec<(InstanceId, Status)> {
        model
            .iter()
            .filter(|i| slots.contains(&i.spec.id.slot) && !keep(i.spec.id))
            .map(|i| (i.spec.id, i.status))
            .collect()
    };
    let recreate = spec.strategy().ordering() != Ordering::StartFirst;
    let mut stopped_early = Vec::new();
    let has_old_build = model
        .iter()
        .any(|i| to.is_some_and(|g| g.id != i.spec.id.generation) && i.status == Status::Serving);
    let watched = watch
        && !recreate
        && !spec.strategy().watch_period(spec.health()).is_zero()
        && (has_old_build || !spec.strategy().watch_needs_old_build());
    if let Some(to) = to {
        let slots: Vec<u32> = (0..spec.replicas()).collect();
        let batches: Vec<&[u32]> = slots.chunks(spec.surge() as usize).collect();
        for (n, batch) in batches.iter().enumerate() {
            if recreate {
                for (id, status) in others_in(batch) {
                    if status != Status::Stopped {
                        plan.push_back(Action::Retire(id));
                        stopped_early.push(id);
                    }
                }
            }
            bring_up(&mut plan, model, to, batch);
            if n + 1 == batches.len() {
                if watched {
                    let ids = slots.iter().map(|&slot| InstanceId {
                        generation: to.id,
                        slot,
                    });
                    plan.push_back(Action::Watch(ids.collect()));
                }
                plan.push_back(Action::Journal(flip.clone()));
            }
            if !recreate && !watched {
                for (id, status) in others_in(batch) {
                    tear_down(&mut plan, id, status);
                }
            }
        }
        if watched {
            for (id, status) in others_in(&slots) {
                tear_down(&mut plan, id, status);
            }
        }
    } else {
        plan.push_back(Action::Journal(flip));
    }
    // Whatever is left: containers of other generations (recreate's kept ones, leftovers of a
    // crash) and slots beyond the replica count.
    let in_batches: Vec<u32> = if to.is_some() && !recreate {
        (0..spec.replicas()).collect()
    } else {
        Vec::new()
    };
    for i in model.iter() {
        let id = i.spec.id;
        if !keep(id) && !in_batches.contains(&id.slot) {
            let status = if stopped_early.contains(&id) {
                Status::Stopped
            } else {
                i.status
            };
            tear_down(&mut plan, id, status);
        }
    }
    plan
}

/// What a repair plan mends, for its report: the first container it restarts, puts back into
/// traffic, or removes.
pub(crate) fn describe_repair(actions: &VecDeque<Action>) -> String {
    let first = |want: fn(&Action) -> Option<InstanceId>| actions.iter().find_map(want);
    if let Some(id) = first(|a| match a {
        Action::Start(spec) => Some(spec.id),
        _ => None,
    }) {
        return format!("{id} had stopped: started again");
    }
    if let Some(id) = first(|a| match a {
        Action::Promote(id) => Some(*id),
        _ => None,
    }) {
        return format!("{id} was out of traffic: probed and put back");
    }
    if let Some(id) = first(|a| match a {
        Action::Remove(id) => Some(*id),
        _ => None,
    }) {
        return format!("{id} did not belong: removed");
    }
    "what runs differed from the journal: converged".to_owned()
}

fn bring_up(plan: &mut VecDeque<Action>, model: &Model, to: &GenerationRef, batch: &[u32]) {
    let status = |slot: u32| {
        model
            .get(InstanceId {
                generation: to.id,
                slot,
            })
            .map(|i| i.status)
    };
    for &slot in batch {
        if matches!(status(slot), None | Some(Status::Stopped)) {
            plan.push_back(Action::Start(InstanceSpec::of(to, slot)));
        }
    }
    for &slot in batch {
        if matches!(status(slot), None | Some(Status::Stopped | Status::Running)) {
            plan.push_back(Action::Probe(InstanceId {
                generation: to.id,
                slot,
            }));
        }
    }
    for &slot in batch {
        if status(slot) != Some(Status::Serving) {
            plan.push_back(Action::Promote(InstanceId {
                generation: to.id,
                slot,
            }));
        }
    }
}

fn tear_down(plan: &mut VecDeque<Action>, id: InstanceId, status: Status) {
    if status == Status::Serving {
        plan.push_back(Action::Retire(id));
    }
    plan.push_back(Action::Remove(id));
}

/// The stop strategy: stop every running container whose build is not `digest` and leave the
/// restart to a supervisor. Nothing is started or removed.
pub(crate) fn stop_outdated(
    model: &Model,
    digest: &crate::image::Digest,
    flip: JournalEntry,
) -> VecDeque<Action> {
    let mut plan: VecDeque<Action> = model
        .iter()
        .filter(|i| i.status != Status::Stopped && i.spec.digest.as_ref() != Some(digest))
        .map(|i| Action::Retire(i.spec.id))
        .collect();
    plan.push_back(Action::Journal(flip));
    plan
}
