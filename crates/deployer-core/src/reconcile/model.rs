//! The machine's belief about a service's containers, kept true by applying each step's result.

use std::collections::BTreeMap;

use super::types::{Generation, InstanceId, InstanceSpec, Observed, RunState};

/// Where one container stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Status {
    /// Exists, does not run.
    Stopped,
    /// Runs, not yet proven healthy.
    Running,
    /// Runs and passed its probe; no traffic yet.
    Healthy,
    /// Takes traffic.
    Serving,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Instance {
    pub(crate) spec: InstanceSpec,
    pub(crate) status: Status,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Model {
    instances: BTreeMap<InstanceId, Instance>,
}

impl Model {
    pub(crate) fn from_observed(observed: &Observed) -> Self {
        let instances = observed
            .instances
            .iter()
            .map(|o| {
                // A paused or restarting container exists but must prove itself again (probe,
                // promote) before it counts as serving; a removing or dead one is only removed.
                let status = match (o.state, o.serving) {
                    (RunState::Running, true) => Status::Serving,
                    (RunState::Running | RunState::Paused | RunState::Restarting, _) => {
                        Status::Running
                    }
                    (RunState::Stopped | RunState::Removing | RunState::Dead, _) => Status::Stopped,
                };
                let spec = InstanceSpec {
                    id: o.id,
                    image: o.image.clone(),
                    digest: o.digest.clone(),
                };
                (o.id, Instance { spec, status })
            })
            .collect();
        Self { instances }
    }

    pub(crate) fn get(&self, id: InstanceId) -> Option<&Instance> {
        self.instances.get(&id)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Instance> {
        self.instances.values()
    }

    /// Records a status, inserting the instance if it was not known.
    pub(crate) fn set(&mut self, spec: &InstanceSpec, status: Status) {
        self.instances
            .entry(spec.id)
            .and_modify(|i| i.status = status)
            .or_insert_with(|| Instance {
                spec: spec.clone(),
                status,
            });
    }

    /// Records a status of a known instance; unknown ids are ignored.
    pub(crate) fn update(&mut self, id: InstanceId, status: Status) {
        if let Some(i) = self.instances.get_mut(&id) {
            i.status = status;
        }
    }

    /// Instances of `id`'s slot in other generations stop serving (they keep running).
    pub(crate) fn demote_slot_peers(&mut self, id: InstanceId) {
        for (other, i) in &mut self.instances {
            if other.slot == id.slot
                && other.generation != id.generation
                && i.status == Status::Serving
            {
                i.status = Status::Running;
            }
        }
    }

    pub(crate) fn remove(&mut self, id: InstanceId) {
        self.instances.remove(&id);
    }

    /// Whether any container of `generation` takes traffic.
    pub(crate) fn serves(&self, generation: Generation) -> bool {
        self.instances
            .values()
            .any(|i| i.spec.id.generation == generation && i.status == Status::Serving)
    }

    /// The highest generation number present.
    pub(crate) fn max_generation(&self) -> Option<Generation> {
        self.instances.keys().map(|id| id.generation).max()
    }
}
