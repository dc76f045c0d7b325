//! The pure reconcile engine: a per-service state machine with no I/O and no clock.
//!
//! [`Machine::step`] takes the state by value with the current instant and one [`Input`], and
//! returns the new state and the [`Effect`]s to carry out. The driver ([`crate::driver`]) runs
//! effects through the ports and feeds their results back; tests feed inputs by hand.
//!
//! Every plan (rollout, rollback, abort, crash recovery) comes from one planner that converges
//! on a single generation, so the invariants hold across all of them:
//! - with the handover strategy the old generation is never stopped before the new one serves;
//! - a superseded or unhealthy candidate never takes traffic;
//! - every candidate started is eventually promoted or removed;
//! - after recovery from a crash at any point, exactly one generation serves.
//!
//! ```
//! use std::sync::Arc;
//! use deployer_core::reconcile::{Effect, Machine, Op};
//! use deployer_core::ServiceSpec;
//!
//! let spec = ServiceSpec::builder("web", "demo/app:latest".parse().unwrap()).build().unwrap();
//! let (machine, effects) = Machine::boot(Arc::new(spec));
//! // The first thing a machine does is ask for a permit to look at what runs.
//! assert!(matches!(effects[0], Effect::Run { op: Op::Admit, .. }));
//! # let _ = machine;
//! ```

mod io;
mod machine;
mod model;
mod plan;
mod types;

pub use io::{Effect, Input, Op, OpId, OpResult, Report, SlotOutcome, StatusUpdate, StepError};
pub use machine::{Abort, Machine, Phase, Plan, PlanKind, Purpose};
pub use types::{
    Generation, GenerationRef, Health, InstanceId, InstanceSpec, JournalEntry, Observed,
    ObservedInstance, RunState,
};
