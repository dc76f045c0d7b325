//! Shared helpers for the benchmarks: services at rest, and a driver loop that answers every
//! operation with instant success, so a benchmark measures the engine and nothing else.

use std::sync::Arc;

use deployer_core::ImageRef;
use deployer_core::ports::{Fetched, Promoted, Removed, Retired, Started};
use deployer_core::reconcile::{
    Effect, Generation, GenerationRef, Health, Input, InstanceId, JournalEntry, Machine, Observed,
    ObservedInstance, Op, OpId, OpResult, RunState, SlotOutcome,
};
use deployer_core::service::{Handover, ProxyProtocol, ServiceSpec, Strategy};
use deployer_core::target::Target;
use deployer_core::testing::digest;
use tokio::time::Instant;

/// A handover service `svc-<n>` tracking `app<n>:latest`.
pub fn spec(n: usize) -> Arc<ServiceSpec> {
    let handover = Handover::new(
        "127.0.0.1:8080".parse().expect("address"),
        80,
        ProxyProtocol::Http,
        1,
    )
    .expect("valid handover");
    let image: ImageRef = format!("app{n}:latest").parse().expect("valid image");
    Arc::new(
        ServiceSpec::builder(&format!("svc-{n}"), image)
            .strategy(Strategy::Handover(handover))
            .build()
            .expect("valid spec"),
    )
}

/// The target "build `build` of service `n`'s image", at `revision`.
pub fn target(spec: &ServiceSpec, build: u8, revision: u64) -> Target {
    deployer_core::testing::target(spec.image(), build, revision)
}

/// A machine at rest, serving generation 1 (build 1), with no operation in flight.
pub fn at_rest(spec: Arc<ServiceSpec>, now: Instant) -> Machine {
    let live = GenerationRef {
        id: Generation(1),
        image: spec.image().clone(),
        digest: Some(digest(1)),
    };
    let journal = JournalEntry {
        live: Some(live),
        next_generation: Generation(2),
        rollout: None,
        target: None,
    };
    let observed = Observed {
        instances: vec![ObservedInstance {
            id: InstanceId {
                generation: Generation(1),
                slot: 0,
            },
            image: spec.image().clone(),
            digest: Some(digest(1)),
            state: RunState::Running,
            serving: true,
        }],
    };
    let (machine, effects) = Machine::boot(spec);
    let (machine, effects) = machine.step(now, done(&effects, OpResult::Admitted));
    let (machine, _) = machine.step(
        now,
        done(&effects, OpResult::Observed(Ok((observed, Some(journal))))),
    );
    machine
}

fn done(effects: &[Effect], result: OpResult) -> Input {
    let id = effects
        .iter()
        .find_map(|e| match e {
            Effect::Run { id, .. } => Some(*id),
            _ => None,
        })
        .unwrap_or(OpId(u64::MAX));
    Input::Done { id, result }
}

/// Runs `machine` until it has nothing in flight, answering every operation with success;
/// returns the machine and the number of steps taken.
pub fn run_to_rest(
    mut machine: Machine,
    now: Instant,
    mut effects: Vec<Effect>,
) -> (Machine, usize) {
    let mut steps = 0;
    loop {
        let Some((id, op)) = effects.iter().find_map(|e| match e {
            Effect::Run { id, op } => Some((*id, op.clone())),
            _ => None,
        }) else {
            return (machine, steps);
        };
        let result = instant_success(&op, &machine);
        let (next, more) = machine.step(now, Input::Done { id, result });
        machine = next;
        effects = more;
        steps += 1;
    }
}

fn instant_success(op: &Op, machine: &Machine) -> OpResult {
    match op {
        Op::Admit => OpResult::Admitted,
        Op::Fetch { .. } => OpResult::Fetched(Ok(Fetched::Pulled)),
        Op::AcquireSlot { .. } => OpResult::Slot(Ok(SlotOutcome::Granted)),
        Op::Observe { .. } => {
            let spec = machine.spec();
            let live = machine.live().cloned();
            let instances = live
                .map(|g| ObservedInstance {
                    id: InstanceId {
                        generation: g.id,
                        slot: 0,
                    },
                    image: spec.image().clone(),
                    digest: g.digest,
                    state: RunState::Running,
                    serving: true,
                })
                .into_iter()
                .collect();
            OpResult::Observed(Ok((Observed { instances }, None)))
        }
        Op::Journal(_) => OpResult::Journaled(Ok(())),
        Op::Start(_) => OpResult::Started(Ok(Started::Created)),
        Op::Probe(_) => OpResult::Probed(Ok(Health::Healthy)),
        Op::Promote(_) => OpResult::Promoted(Ok(Promoted::Switched)),
        Op::Retire(_) => OpResult::Retired(Ok(Retired::Stopped { cut: 0 })),
        Op::Remove(_) => OpResult::Removed(Ok(Removed::Removed)),
        Op::Halt { .. } => OpResult::Halted(Ok(())),
    }
}
