//! Property tests of the reconcile engine's invariants (DESIGN.md), run against a simulated
//! engine under random interleavings of new targets, time, crashes and restarts:
//! - with handover, the old generation is never stopped before the new one serves;
//! - a superseded or unhealthy candidate never receives traffic;
//! - every candidate ever started is eventually promoted or removed;
//! - after recovery from a crash at any point, exactly one generation serves.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use deployer_core::Outcome;
use deployer_core::image::Digest;
use deployer_core::ports::Fetched;
use deployer_core::reconcile::{
    Effect, Generation, Input, InstanceId, JournalEntry, Machine, Op, OpId, OpResult, Report,
    SlotOutcome, StepError,
};
use deployer_core::service::{
    Handover, HealthCheck, Probe, ProxyProtocol, ServiceName, ServiceSpec, Strategy as Switch,
};
use deployer_core::target::Target;
use deployer_core::testing::{self, World, digest};
use proptest::prelude::*;
use tokio::time::Instant;

/// Builds that probe healthy, never healthy, exit at start, or boot slowly.
const GOOD: [u8; 3] = [1, 2, 3];
const UNHEALTHY: u8 = 100;
const EXITS: u8 = 200;
const SLOW: u8 = 50;

#[derive(Debug, Clone)]
enum Step {
    /// Finish the operation in flight.
    Complete,
    /// Publish a new target with build `n`.
    Publish(u8),
    /// Let time pass.
    Advance(u64),
    /// Kill the process; the step in flight may or may not have taken effect.
    Crash { side_effect: bool },
    /// Stop gracefully and start again.
    Restart,
    /// Make the next call of a step fail.
    Fail(&'static str),
    /// The driver's periodic look at what runs.
    Resync,
    /// A live container dies on its own (and the proxy loses it).
    ContainerDies,
}

/// Steps whose next call can be made to fail.
const FALLIBLE: [&str; 8] = [
    "observe", "start", "probe", "promote", "retire", "remove", "fetch", "journal",
];
/// Injected failures per run: few enough that the retry budget always outlasts them.
const MAX_FAILURES: u32 = 3;

fn failing_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => step(),
        2 => prop::sample::select(FALLIBLE.to_vec()).prop_map(Step::Fail),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => Just(Step::Complete),
        2 => prop_oneof![Just(1u8), Just(2), Just(3), Just(UNHEALTHY), Just(EXITS), Just(SLOW)].prop_map(Step::Publish),
        2 => (1u64..30).prop_map(Step::Advance),
        1 => any::<bool>().prop_map(|side_effect| Step::Crash { side_effect }),
        1 => Just(Step::Restart),
        1 => Just(Step::Resync),
        1 => Just(Step::ContainerDies),
    ]
}

fn spec(handover: bool, replicas: u32, surge: u32) -> ServiceSpec {
    let health = HealthCheck::new(
        Probe::Running,
        Duration::from_secs(1),
        Duration::from_secs(1),
        Duration::from_secs(10),
        1,
    )
    .unwrap();
    let strategy = if handover {
        Switch::Handover(
            Handover::new(
                "127.0.0.1:8080".parse().unwrap(),
                80,
                ProxyProtocol::Http,
                surge,
            )
            .unwrap(),
        )
    } else {
        Switch::Recreate
    };
    ServiceSpec::builder("web", "demo/app:latest".parse().unwrap())
        .strategy(strategy)
        .replicas(replicas)
        .health(health)
        .build()
        .unwrap()
}

struct Sim {
    spec: Arc<ServiceSpec>,
    name: ServiceName,
    handover: bool,
    machine: Option<Machine>,
    world: World,
    journal: Option<JournalEntry>,
    now: Instant,
    inflight: Option<(OpId, Op)>,
    wake: Option<Instant>,
    desired: Option<Target>,
    revision: u64,
    reports: Vec<Report>,
    violations: Vec<String>,
    /// Generations whose target was superseded before any of their containers took traffic.
    superseded: HashSet<Generation>,
    /// Generations that have taken traffic at some point (a rollout that did, finishes).
    served: HashSet<Generation>,
    /// Failures injected so far, and those still pending for fetch and journal writes.
    injected: u32,
    disturbed: bool,
    fail_fetch: bool,
    fail_journal: bool,
}

impl Sim {
    fn new(spec: ServiceSpec) -> Self {
        let handover = spec.strategy().handover().is_some();
        let name = spec.name().clone();
        let mut world = World::default();
        world.unhealthy.insert(digest(UNHEALTHY));
        world.exits.insert(digest(EXITS));
        world.slow.insert(digest(SLOW), 3);
        let mut sim = Self {
            spec: Arc::new(spec),
            name,
            handover,
            machine: None,
            world,
            journal: None,
            now: Instant::now(),
            inflight: None,
            wake: None,
            desired: None,
            revision: 0,
            reports: Vec::new(),
            violations: Vec::new(),
            superseded: HashSet::new(),
            served: HashSet::new(),
            injected: 0,
            disturbed: false,
            fail_fetch: false,
            fail_journal: false,
        };
        sim.boot();
        sim
    }

    fn boot(&mut self) {
        let (machine, effects) = Machine::boot(self.spec.clone());
        self.machine = Some(machine);
        self.inflight = None;
        self.wake = None;
        self.apply(effects);
        if let Some(target) = self.desired.clone() {
            self.feed(Input::Desired(target));
        }
    }

    fn feed(&mut self, input: Input) {
        let machine = self.machine.take().expect("a machine");
        let (machine, effects) = machine.step(self.now, input);
        self.machine = Some(machine);
        self.apply(effects);
    }

    fn apply(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Run { id, op } => {
                    if self.inflight.is_some() {
                        self.violations
                            .push(format!("{op:?} started while another op runs"));
                    }
                    // Judged when the machine decides to promote, not when the step lands.
                    if let Op::Promote(instance) = op {
                        self.check_promote(instance);
                    }
                    self.inflight = Some((id, op));
                }
                Effect::Cancel(id) => {
                    if self.inflight.as_ref().is_some_and(|(i, _)| *i == id) {
                        self.inflight = None;
                    }
                }
                Effect::WakeAt(at) => self.wake = Some(at),
                Effect::Report(report) => self.reports.push(report),
                Effect::Status(_) | Effect::ReleaseSlot | Effect::Release => {}
            }
        }
    }

    fn publish(&mut self, n: u8) {
        self.revision += 1;
        // A rollout of another build that has not taken traffic yet is superseded by this one.
        if let Some(rollout) = self.journal.as_ref().and_then(|j| j.rollout.clone())
            && rollout.digest != Some(digest(n))
            && !self.served.contains(&rollout.id)
        {
            self.superseded.insert(rollout.id);
        }
        let target = testing::target(self.spec.image(), n, self.revision);
        self.desired = Some(target.clone());
        self.feed(Input::Desired(target));
    }

    /// Carries out `op` against the world and returns its result.
    fn execute(&mut self, op: &Op) -> OpResult {
        let name = self.name.clone();
        let w = &mut self.world;
        match op {
            Op::Admit => OpResult::Admitted,
            Op::Fetch { .. } if std::mem::take(&mut self.fail_fetch) => {
                OpResult::Fetched(Err(StepError::transient("injected fetch failure")))
            }
            Op::Fetch { .. } => OpResult::Fetched(Ok(Fetched::Pulled)),
            Op::AcquireSlot { .. } => OpResult::Slot(Ok(SlotOutcome::Granted)),
            Op::Observe { journal } => {
                let entry = if *journal { self.journal.clone() } else { None };
                OpResult::Observed(
                    w.observe(&name)
                        .map(|o| (o, entry))
                        .map_err(StepError::transient),
                )
            }
            Op::Journal(_) if std::mem::take(&mut self.fail_journal) => {
                OpResult::Journaled(Err(StepError::transient("injected journal failure")))
            }
            Op::Journal(entry) => {
                self.journal = Some(entry.clone());
                OpResult::Journaled(Ok(()))
            }
            Op::Start(spec) => {
                if let Some(existing) = w.instances.get(&(name.clone(), spec.id))
                    && existing.digest != spec.digest
                {
                    self.violations
                        .push(format!("generation {} reused for another build", spec.id));
                }
                OpResult::Started(w.start(&name, spec).map_err(StepError::build))
            }
            Op::Probe(id) => OpResult::Probed(w.probe(&name, *id).map_err(StepError::transient)),
            Op::Promote(id) => {
                let promoted = w.promote(&name, *id).map_err(StepError::transient);
                if promoted.is_ok() {
                    self.served.insert(id.generation);
                }
                OpResult::Promoted(promoted)
            }
            Op::Retire(id) => {
                self.check_retire(*id);
                OpResult::Retired(self.world.retire(&name, *id).map_err(StepError::transient))
            }
            Op::Remove(id) => OpResult::Removed(w.remove(&name, *id).map_err(StepError::transient)),
            Op::Halt { .. } => OpResult::Halted(Ok(())),
        }
    }

    fn check_promote(&mut self, id: InstanceId) {
        let Some(instance) = self.world.instances.get(&(self.name.clone(), id)) else {
            return;
        };
        if !instance.healthy {
            self.violations
                .push(format!("{id} got traffic without a healthy probe"));
        }
        let bad = [digest(UNHEALTHY), digest(EXITS)];
        if instance.digest.as_ref().is_some_and(|d| bad.contains(d)) {
            self.violations
                .push(format!("{id} runs a broken build and got traffic"));
        }
        let live = self
            .journal
            .as_ref()
            .and_then(|j| j.live.as_ref())
            .map(|g| g.id);
        let serves_already = self.served.contains(&id.generation);
        if self.superseded.contains(&id.generation)
            && live != Some(id.generation)
            && !serves_already
        {
            self.violations
                .push(format!("superseded candidate {id} got traffic"));
        }
    }

    fn check_retire(&mut self, id: InstanceId) {
        if !self.handover {
            return;
        }
        let serving = self.world.serving(&self.name);
        let live = self.journal.as_ref().and_then(|j| j.live.as_ref());
        if serving.contains(&id) && serving.len() == 1 && live.is_some() {
            self.violations
                .push(format!("retired {id}, the last serving container"));
        }
    }

    fn complete(&mut self, side_effect_only: bool) {
        let Some((id, op)) = self.inflight.take() else {
            return;
        };
        let result = self.execute(&op);
        if !side_effect_only {
            self.feed(Input::Done { id, result });
        }
    }

    fn advance(&mut self, secs: u64) {
        self.now += Duration::from_secs(secs);
        if self.wake.is_some_and(|at| at <= self.now) {
            self.wake = None;
            self.feed(Input::Tick);
        }
    }

    fn crash(&mut self, side_effect: bool) {
        if side_effect {
            self.complete(true);
        }
        if self.handover {
            self.world.crash();
        }
        self.machine = None;
        self.boot();
    }

    /// Stops the first running container, as if it crashed. A candidate that dies while it
    /// is probed is rightly given up on, so this counts as a disturbance for liveness.
    fn kill_one(&mut self) {
        if let Some(instance) = self.world.instances.values_mut().find(|i| i.running) {
            instance.running = false;
            instance.serving = false;
            self.disturbed = true;
        }
    }

    fn fail(&mut self, op: &'static str) {
        if self.injected >= MAX_FAILURES {
            return;
        }
        self.injected += 1;
        match op {
            "fetch" => self.fail_fetch = true,
            "journal" => self.fail_journal = true,
            other => self.world.fail_next(other, 1),
        }
    }

    fn restart(&mut self) {
        self.feed(Input::Shutdown);
        self.settle();
        if !self.machine.as_ref().is_some_and(Machine::is_stopped) {
            let phase = self.machine.as_ref().map(|m| format!("{:?}", m.phase()));
            self.violations
                .push(format!("shutdown did not stop the machine: {phase:?}"));
        }
        if self.handover {
            self.world.crash();
        }
        self.boot();
    }

    /// Runs until nothing is in flight and no timer is pending.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            if self.inflight.is_some() {
                self.complete(false);
            } else if let Some(at) = self.wake {
                self.now = self.now.max(at);
                self.wake = None;
                self.feed(Input::Tick);
            } else {
                return;
            }
        }
        self.violations
            .push("did not settle within 10,000 steps".into());
    }

    /// Exactly one generation's containers exist, all serving, in the replica slots.
    fn check_converged(&mut self) {
        let instances: Vec<_> = self.world.instances.iter().collect();
        let live = self.journal.as_ref().and_then(|j| j.live.clone());
        match live {
            None if !instances.is_empty() => self.violations.push(format!(
                "nothing is live but containers remain: {:?}",
                self.world.all(&self.name)
            )),
            None => {}
            Some(live) => {
                for ((_, id), i) in &instances {
                    if id.generation != live.id || id.slot >= self.spec.replicas() {
                        self.violations
                            .push(format!("leftover container {id} besides live {}", live.id));
                    } else if !(i.running && i.serving) {
                        self.violations
                            .push(format!("live container {id} does not serve"));
                    }
                }
                if instances.len() != self.spec.replicas() as usize {
                    self.violations.push(format!(
                        "{} containers serve, {} replicas wanted",
                        instances.len(),
                        self.spec.replicas()
                    ));
                }
                let bad = [digest(UNHEALTHY), digest(EXITS)];
                if live.digest.as_ref().is_some_and(|d| bad.contains(d)) {
                    self.violations.push("a broken build is live".into());
                }
            }
        }
    }
}

fn run(spec: ServiceSpec, steps: Vec<Step>) -> Result<(), TestCaseError> {
    let mut sim = Sim::new(spec);
    for step in steps {
        match step {
            Step::Complete => sim.complete(false),
            Step::Publish(n) => sim.publish(n),
            Step::Advance(s) => sim.advance(s),
            Step::Crash { side_effect } => sim.crash(side_effect),
            Step::Restart => sim.restart(),
            Step::Fail(op) => sim.fail(op),
            Step::Resync => sim.feed(Input::Resync),
            Step::ContainerDies => sim.kill_one(),
        }
        prop_assert!(sim.violations.is_empty(), "{:?}", sim.violations);
    }
    sim.settle();
    // A container may have died at rest; the periodic resync repairs it.
    sim.feed(Input::Resync);
    sim.settle();
    sim.check_converged();
    prop_assert!(sim.violations.is_empty(), "{:?}", sim.violations);
    // Liveness: a good newest target ends up live (an injected failure may rightly halt it).
    if let Some(target) = sim
        .desired
        .as_ref()
        .filter(|_| sim.injected == 0 && !sim.disturbed)
    {
        // A slow build may miss its probe deadline when time jumps, so only the fast ones count.
        let good = GOOD.iter().any(|n| digest(*n) == target.digest);
        let broken = [digest(UNHEALTHY), digest(EXITS)].contains(&target.digest);
        let live = sim
            .journal
            .as_ref()
            .and_then(|j| j.live.as_ref())
            .and_then(|g| g.digest.clone());
        if good {
            prop_assert_eq!(
                live.as_ref(),
                Some(&target.digest),
                "reports: {:?}",
                sim.reports
            );
        } else if broken {
            prop_assert_ne!(live.as_ref(), Some(&target.digest));
        }
    }
    // Every rollout that began ended with exactly one final report (crashes excepted: a crash
    // loses the report of the deploy it interrupted).
    let started = sim
        .reports
        .iter()
        .filter(|r| r.outcome == Outcome::Started)
        .count();
    let finished = sim.reports.iter().filter(|r| r.outcome.is_final()).count();
    prop_assert!(
        finished <= started + 1,
        "{started} started, {finished} finished"
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn handover_invariants(replicas in 1u32..=3, surge in 1u32..=2, steps in prop::collection::vec(step(), 1..80)) {
        run(spec(true, replicas, surge), steps)?;
    }

    #[test]
    fn handover_invariants_when_steps_fail(replicas in 1u32..=3, steps in prop::collection::vec(failing_step(), 1..80)) {
        run(spec(true, replicas, 1), steps)?;
    }

    #[test]
    fn recreate_invariants_when_steps_fail(replicas in 1u32..=2, steps in prop::collection::vec(failing_step(), 1..80)) {
        run(spec(false, replicas, 1), steps)?;
    }

    #[test]
    fn recreate_invariants(replicas in 1u32..=2, steps in prop::collection::vec(step(), 1..80)) {
        run(spec(false, replicas, 1), steps)?;
    }
}

#[test]
fn digest_helper_is_distinct() {
    let all: HashSet<Digest> = [1, 2, 3, UNHEALTHY, EXITS, SLOW]
        .into_iter()
        .map(digest)
        .collect();
    assert_eq!(all.len(), 6);
}
