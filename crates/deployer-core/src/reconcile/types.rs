//! The nouns of a deploy: generations, instances, what was observed and what was journaled.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::image::{Digest, ImageRef};
use crate::target::Target;

/// A numbered deployment of a service: every rollout creates a new one.
///
/// Numbers are never reused (the next one is journaled before its first container starts),
/// so containers labelled with a generation can always be told apart after a crash.
/// Generation 0 stands for containers deployer did not create (adopted ones).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Generation(pub u64);

impl Generation {
    /// The generation after this one.
    pub fn next(self) -> Self {
        Self(self.0 + 1)
    }
}

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "g{}", self.0)
    }
}

/// One container of a service: its generation and its replica slot (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct InstanceId {
    /// Generation the container belongs to.
    pub generation: Generation,
    /// Replica slot; a rolling deploy replaces slot by slot.
    pub slot: u32,
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.generation, self.slot)
    }
}

/// A generation and the build it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerationRef {
    /// Its number.
    pub id: Generation,
    /// The repo:tag it was deployed from.
    pub image: ImageRef,
    /// The build; `None` for adopted containers whose image has no registry digest.
    pub digest: Option<Digest>,
}

/// What a switcher needs to start one container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceSpec {
    /// Which container.
    pub id: InstanceId,
    /// The repo:tag it runs.
    pub image: ImageRef,
    /// The build it runs (see [`GenerationRef::digest`]).
    pub digest: Option<Digest>,
}

impl InstanceSpec {
    /// The spec of `generation`'s container in `slot`.
    pub fn of(generation: &GenerationRef, slot: u32) -> Self {
        Self {
            id: InstanceId {
                generation: generation.id,
                slot,
            },
            image: generation.image.clone(),
            digest: generation.digest.clone(),
        }
    }
}

/// An observed container's state, as faithfully as the engine tells it: only `Stopped` means
/// the container has ended (created or exited).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Running.
    Running,
    /// Created or exited: exists but does not run.
    Stopped,
    /// Frozen by `docker pause`: it exists and will run again when unpaused, but answers
    /// nothing meanwhile.
    Paused,
    /// Being restarted by its restart policy: it may come back (on another port).
    Restarting,
    /// Being deleted by the engine.
    Removing,
    /// Dead: the engine failed to stop or remove it; only removing it helps.
    Dead,
}

impl RunState {
    /// Whether the container exists in a state the engine can bring back to running without
    /// creating it again (running, paused or restarting).
    pub fn is_alive(self) -> bool {
        matches!(self, Self::Running | Self::Paused | Self::Restarting)
    }
}

/// One container found by a switcher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedInstance {
    /// Which container.
    pub id: InstanceId,
    /// The repo:tag it was created from.
    pub image: ImageRef,
    /// The build it runs, when known.
    pub digest: Option<Digest>,
    /// Running or not.
    pub state: RunState,
    /// Whether it takes traffic now (in our proxy; for strategies without a proxy, running).
    pub serving: bool,
}

/// Everything a switcher found for one service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observed {
    /// The service's containers, in no particular order.
    pub instances: Vec<ObservedInstance>,
}

/// The facts Docker cannot hold, written durably before each irreversible step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// The generation that serves; recovery converges on it.
    pub live: Option<GenerationRef>,
    /// The next generation number to hand out.
    pub next_generation: Generation,
    /// The generation being rolled out, if a rollout is under way.
    pub rollout: Option<GenerationRef>,
    /// The target of the deploy under way, from its first journal write until its last:
    /// when a crash interrupts it after the new generation went live, recovery finishes it and
    /// reports it once, with the trigger that asked for it.
    #[serde(default)]
    pub target: Option<Box<Target>>,
}

/// One probe's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "health", content = "detail", rename_all = "snake_case")]
pub enum Health {
    /// Ready for traffic.
    Healthy,
    /// Not ready yet (refused, wrong status, starting); probing continues until the deadline.
    Unhealthy(String),
    /// The container exited: no point probing further.
    Exited(String),
}
