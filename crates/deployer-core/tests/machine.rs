//! Scenario tests of the state machine for paths the property tests do not reach: fleet-wide
//! halts, the stop strategy, and recovery from what a crash left.

use std::sync::Arc;
use std::time::Duration;

use deployer_core::image::ImageRef;
use deployer_core::ports::{Fetched, Promoted, Removed, Retired, Started};
use deployer_core::reconcile::{
    Effect, Generation, GenerationRef, Health, Input, InstanceId, JournalEntry, Machine, Observed,
    ObservedInstance, Op, OpId, OpResult, Phase, Report, RunState, SlotOutcome, StepError,
};
use deployer_core::service::{
    Handover, HealthCheck, Probe, ProxyProtocol, ServiceName, ServiceSpec, Strategy, Timeouts,
};
use deployer_core::target::{Halt, Target};
use deployer_core::testing::{self, digest};
use deployer_core::{Backoff, Outcome, ServiceState, Timestamp};
use tokio::time::Instant;

fn image() -> ImageRef {
    "demo/app:latest".parse().unwrap()
}

fn spec(strategy: Strategy) -> Arc<ServiceSpec> {
    Arc::new(
        ServiceSpec::builder("web", image())
            .strategy(strategy)
            .build()
            .unwrap(),
    )
}

fn handover() -> Strategy {
    Strategy::Handover(
        Handover::new(
            "127.0.0.1:8080".parse().unwrap(),
            80,
            ProxyProtocol::Http,
            1,
        )
        .unwrap(),
    )
}

fn target(n: u8, revision: u64) -> Target {
    testing::target(&image(), n, revision)
}

fn generation(id: u64, n: u8) -> GenerationRef {
    GenerationRef {
        id: Generation(id),
        image: image(),
        digest: Some(digest(n)),
    }
}

fn observed(instances: &[(u64, u32, u8, bool)]) -> Observed {
    Observed {
        instances: instances
            .iter()
            .map(|&(g, slot, n, running)| ObservedInstance {
                id: InstanceId {
                    generation: Generation(g),
                    slot,
                },
                image: image(),
                digest: Some(digest(n)),
                state: if running {
                    RunState::Running
                } else {
                    RunState::Stopped
                },
                serving: false,
            })
            .collect(),
    }
}

/// Drives one machine by hand and records what it asks for.
struct Harness {
    machine: Option<Machine>,
    now: Instant,
    op: Option<(OpId, Op)>,
    ops: Vec<Op>,
    reports: Vec<Report>,
}

impl Harness {
    fn boot(spec: Arc<ServiceSpec>) -> Self {
        let (machine, effects) = Machine::boot(spec);
        let mut h = Self {
            machine: Some(machine),
            now: Instant::now(),
            op: None,
            ops: Vec::new(),
            reports: Vec::new(),
        };
        h.apply(effects);
        h
    }

    fn apply(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Run { id, op } => {
                    self.ops.push(op.clone());
                    self.op = Some((id, op));
                }
                Effect::Cancel(id) if self.op.as_ref().is_some_and(|(i, _)| *i == id) => {
                    self.op = None
                }
                Effect::Report(report) => self.reports.push(report),
                _ => {}
            }
        }
    }

    fn input(&mut self, input: Input) {
        let machine = self.machine.take().unwrap();
        let (machine, effects) = machine.step(self.now, input);
        self.machine = Some(machine);
        self.apply(effects);
    }

    /// Answers the operation in flight, which must be of the expected kind.
    fn answer(&mut self, expected: &str, result: OpResult) {
        let (id, op) = self
            .op
            .take()
            .unwrap_or_else(|| panic!("no operation in flight, expected {expected}"));
        assert_eq!(op.name(), expected, "operation in flight: {op:?}");
        self.input(Input::Done { id, result });
    }

    fn current(&self) -> Option<&Op> {
        self.op.as_ref().map(|(_, op)| op)
    }

    fn machine(&self) -> &Machine {
        self.machine.as_ref().unwrap()
    }

    /// Boots with `observed` and `journal`, and answers the recovery steps with success.
    fn recovered(
        spec: Arc<ServiceSpec>,
        observed: Observed,
        journal: Option<JournalEntry>,
    ) -> Self {
        let mut h = Self::boot(spec);
        h.answer("admit", OpResult::Admitted);
        h.answer("observe", OpResult::Observed(Ok((observed, journal))));
        h
    }

    fn succeed_all(&mut self) {
        while let Some(op) = self.current().cloned() {
            let result = match op {
                Op::Journal(_) => OpResult::Journaled(Ok(())),
                Op::Start(_) => OpResult::Started(Ok(Started::Created)),
                Op::Probe(_) => OpResult::Probed(Ok(deployer_core::reconcile::Health::Healthy)),
                Op::Promote(_) => OpResult::Promoted(Ok(Promoted::Switched)),
                Op::Retire(_) => OpResult::Retired(Ok(Retired::Stopped { cut: 0 })),
                Op::Remove(_) => OpResult::Removed(Ok(Removed::Removed)),
                Op::Halt { .. } => OpResult::Halted(Ok(())),
                other => panic!("unexpected {other:?}"),
            };
            self.answer(op.name(), result);
        }
    }
}

fn id(g: u64, slot: u32) -> InstanceId {
    InstanceId {
        generation: Generation(g),
        slot,
    }
}

#[test]
fn a_build_halted_by_another_host_while_waiting_for_a_slot_is_skipped() {
    let mut h = Harness::recovered(spec(handover()), observed(&[]), None);
    h.input(Input::Desired(target(1, 1)));
    h.answer("admit", OpResult::Admitted);
    h.answer("fetch", OpResult::Fetched(Ok(Fetched::Pulled)));
    assert_eq!(h.current().map(Op::name), Some("acquire_slot"));
    let halt = Halt {
        service: ServiceName::new("web").unwrap(),
        node: "node-b".into(),
        reason: "g4/0 not healthy".into(),
        at: Timestamp::from_millis(0),
    };
    h.answer(
        "acquire_slot",
        OpResult::Slot(Ok(SlotOutcome::Halted(halt))),
    );
    assert_eq!(h.machine().state(), ServiceState::Halted);
    assert!(
        !h.ops.iter().any(|op| matches!(op, Op::Start(_))),
        "nothing was started"
    );
    let skipped = h.reports.last().expect("a report");
    assert_eq!(skipped.outcome, Outcome::Skipped);
    assert!(
        skipped
            .reason
            .as_deref()
            .unwrap_or_default()
            .contains("node-b")
    );
}

#[test]
fn a_halt_arriving_during_probing_removes_the_candidate() {
    let live = generation(1, 1);
    let journal = JournalEntry {
        live: Some(live),
        next_generation: Generation(2),
        rollout: None,
        target: None,
    };
    let mut h = Harness::recovered(
        spec(handover()),
        observed(&[(1, 0, 1, true)]),
        Some(journal),
    );
    h.succeed_all(); // recovery: probe and promote the live container again
    h.input(Input::Desired(target(2, 2)));
    h.answer("admit", OpResult::Admitted);
    h.answer("fetch", OpResult::Fetched(Ok(Fetched::Pulled)));
    h.answer("acquire_slot", OpResult::Slot(Ok(SlotOutcome::Granted)));
    h.answer(
        "observe",
        OpResult::Observed(Ok((observed(&[(1, 0, 1, true)]), None))),
    );
    h.answer("journal", OpResult::Journaled(Ok(())));
    h.answer("start", OpResult::Started(Ok(Started::Created)));
    assert_eq!(h.current().map(Op::name), Some("probe"));
    let mut halted = target(2, 3);
    halted.halts = vec![Halt {
        service: ServiceName::new("web").unwrap(),
        node: "node-b".into(),
        reason: "unhealthy".into(),
        at: Timestamp::from_millis(0),
    }];
    h.input(Input::Desired(halted));
    // The probe was cancelled; the candidate is removed, nothing was promoted.
    h.succeed_all();
    assert!(h.ops.contains(&Op::Remove(id(2, 0))));
    assert!(!h.ops.contains(&Op::Promote(id(2, 0))));
    assert_eq!(h.reports.last().map(|r| r.outcome), Some(Outcome::Skipped));
    assert_eq!(h.machine().live().map(|g| g.id), Some(Generation(1)));
}

#[test]
fn the_stop_strategy_stops_outdated_containers_and_starts_nothing() {
    let adopted = ObservedInstance {
        id: id(0, 0),
        image: image(),
        digest: Some(digest(1)),
        state: RunState::Running,
        serving: true,
    };
    let mut h = Harness::recovered(
        spec(Strategy::Stop),
        Observed {
            instances: vec![adopted.clone()],
        },
        None,
    );
    assert_eq!(
        h.machine().phase(),
        &Phase::Idle,
        "recovery leaves a supervisor's containers alone"
    );
    h.input(Input::Desired(target(2, 1)));
    h.answer("admit", OpResult::Admitted);
    h.answer("fetch", OpResult::Fetched(Ok(Fetched::Pulled)));
    h.answer("acquire_slot", OpResult::Slot(Ok(SlotOutcome::Granted)));
    h.answer(
        "observe",
        OpResult::Observed(Ok((
            Observed {
                instances: vec![adopted],
            },
            None,
        ))),
    );
    h.succeed_all();
    assert!(h.ops.contains(&Op::Retire(id(0, 0))));
    assert!(
        !h.ops
            .iter()
            .any(|op| matches!(op, Op::Start(_) | Op::Remove(_)))
    );
    assert_eq!(
        h.reports.last().map(|r| r.outcome),
        Some(Outcome::Succeeded)
    );
}

#[test]
fn without_a_journal_recovery_adopts_what_runs_and_touches_nothing() {
    let mut h = Harness::recovered(
        spec(Strategy::Recreate),
        observed(&[(0, 0, 1, true), (0, 1, 1, false)]),
        None,
    );
    assert_eq!(h.machine().phase(), &Phase::Idle);
    assert_eq!(h.machine().live().map(|g| g.id), Some(Generation(0)));
    assert_eq!(h.ops.len(), 2, "only admit and observe: {:?}", h.ops);
    h.input(Input::Desired(target(1, 1)));
    assert!(
        h.current().is_none(),
        "the adopted containers already run build 1"
    );
    h.input(Input::Desired(target(2, 2)));
    assert_eq!(
        h.current().map(Op::name),
        Some("admit"),
        "another build deploys"
    );
}

#[test]
fn without_a_journal_a_handover_services_live_containers_out_of_the_proxy_are_put_back() {
    // The journal was lost; the proxy is new: g2 and g3 run, serving nothing. On a tie the
    // older is taken for live (a candidate is always newer than what it replaces): it is
    // probed and put back; g3 is left alone, as nothing says it is a leftover.
    let mut h = Harness::recovered(
        spec(handover()),
        observed(&[(3, 0, 3, true), (2, 0, 2, true)]),
        None,
    );
    assert_eq!(h.machine().live().map(|g| g.id), Some(Generation(2)));
    h.succeed_all();
    let after_boot: Vec<_> = h.ops.iter().skip(2).collect();
    assert_eq!(
        after_boot,
        [&Op::Probe(id(2, 0)), &Op::Promote(id(2, 0))],
        "probe and promote the live one only"
    );
    assert_eq!(h.machine().phase(), &Phase::Idle);
}

#[test]
fn a_candidate_the_journal_does_not_know_is_removed_at_recovery() {
    let journal = JournalEntry {
        live: Some(generation(3, 1)),
        next_generation: Generation(4),
        rollout: None,
        target: None,
    };
    let mut h = Harness::recovered(
        spec(handover()),
        observed(&[(3, 0, 1, true), (7, 0, 2, true)]),
        Some(journal),
    );
    h.succeed_all();
    assert!(h.ops.contains(&Op::Remove(id(7, 0))));
    assert!(h.ops.contains(&Op::Promote(id(3, 0))));
    assert_eq!(h.machine().phase(), &Phase::Idle);
    // Numbers seen on containers are never handed out again.
    h.input(Input::Desired(target(5, 1)));
    h.answer("admit", OpResult::Admitted);
    h.answer("fetch", OpResult::Fetched(Ok(Fetched::Pulled)));
    h.answer("acquire_slot", OpResult::Slot(Ok(SlotOutcome::Granted)));
    h.answer(
        "observe",
        OpResult::Observed(Ok((observed(&[(3, 0, 1, true)]), None))),
    );
    h.succeed_all();
    assert!(
        h.ops
            .iter()
            .any(|op| matches!(op, Op::Start(s) if s.id == id(8, 0))),
        "{:?}",
        h.ops
    );
}

#[test]
fn two_live_generations_after_a_crash_resolve_to_the_journaled_one() {
    // Crash after the new generation was promoted but before the journal flipped: both run.
    let journal = JournalEntry {
        live: Some(generation(1, 1)),
        next_generation: Generation(3),
        rollout: Some(generation(2, 2)),
        target: None,
    };
    let both = observed(&[
        (1, 0, 1, true),
        (1, 1, 1, true),
        (2, 0, 2, true),
        (2, 1, 2, true),
    ]);
    let spec = Arc::new(
        ServiceSpec::builder("web", image())
            .strategy(handover())
            .replicas(2)
            .build()
            .unwrap(),
    );
    let mut h = Harness::recovered(spec, both, Some(journal));
    h.succeed_all();
    for slot in 0..2 {
        assert!(h.ops.contains(&Op::Promote(id(1, slot))));
        assert!(h.ops.contains(&Op::Remove(id(2, slot))));
        assert!(!h.ops.contains(&Op::Promote(id(2, slot))));
    }
}

#[test]
fn probing_waits_the_interval_and_gives_up_at_the_deadline() {
    let mut h = Harness::recovered(spec(handover()), observed(&[]), None);
    h.input(Input::Desired(target(1, 1)));
    h.answer("admit", OpResult::Admitted);
    h.answer("fetch", OpResult::Fetched(Ok(Fetched::Pulled)));
    h.answer("acquire_slot", OpResult::Slot(Ok(SlotOutcome::Granted)));
    h.answer("observe", OpResult::Observed(Ok((observed(&[]), None))));
    h.answer("journal", OpResult::Journaled(Ok(())));
    h.answer("start", OpResult::Started(Ok(Started::Created)));
    let mut probes = 0;
    let unhealthy = || {
        OpResult::Probed(Ok(deployer_core::reconcile::Health::Unhealthy(
            "refused".into(),
        )))
    };
    while h.current().map(Op::name) == Some("probe") {
        probes += 1;
        h.answer("probe", unhealthy());
        // A tick before the interval has passed does nothing.
        h.input(Input::Tick);
        assert!(h.current().is_none() || h.current().map(Op::name) != Some("probe"));
        h.now += Duration::from_secs(1);
        h.input(Input::Tick);
    }
    // Default health check: 1 s interval, 60 s deadline.
    assert_eq!(probes, 61);
    h.succeed_all();
    let report = h.reports.last().unwrap();
    assert_eq!(
        report.outcome,
        Outcome::Failed,
        "a first deploy that never went live rolled nothing back"
    );
    assert!(
        report
            .reason
            .as_deref()
            .unwrap_or_default()
            .contains("not healthy within 60s")
    );
}

#[test]
fn a_resync_at_rest_is_quiet_when_nothing_drifted_and_repairs_when_something_did() {
    let live = generation(1, 1);
    let journal = JournalEntry {
        live: Some(live.clone()),
        next_generation: Generation(2),
        rollout: None,
        target: None,
    };
    let serving = || Observed {
        instances: vec![ObservedInstance {
            id: id(1, 0),
            image: image(),
            digest: Some(digest(1)),
            state: RunState::Running,
            serving: true,
        }],
    };
    let mut h = Harness::recovered(spec(handover()), serving(), Some(journal));
    assert_eq!(h.machine().phase(), &Phase::Idle);
    let before = h.ops.len();

    h.input(Input::Resync);
    assert_eq!(
        h.machine().state(),
        ServiceState::Idle,
        "a resync does not show as recovering"
    );
    h.answer("admit", OpResult::Admitted);
    h.answer("observe", OpResult::Observed(Ok((serving(), None))));
    assert_eq!(h.machine().phase(), &Phase::Idle);
    assert_eq!(h.ops.len(), before + 2, "only admit and observe");

    // The live container came back on another port: the proxy no longer has it.
    h.input(Input::Resync);
    h.answer("admit", OpResult::Admitted);
    h.answer(
        "observe",
        OpResult::Observed(Ok((observed(&[(1, 0, 1, true)]), None))),
    );
    assert_eq!(
        h.machine().state(),
        ServiceState::Degraded,
        "the live build is being repaired"
    );
    h.succeed_all();
    let repaired = h.reports.last().expect("the repair is reported");
    assert_eq!(repaired.outcome, Outcome::Repaired);
    assert!(
        repaired
            .reason
            .as_deref()
            .unwrap_or_default()
            .contains("put back"),
        "{repaired:?}"
    );
    assert!(
        h.ops.ends_with(&[
            Op::Probe(id(1, 0)),
            Op::Promote(id(1, 0)),
            Op::Journal(JournalEntry {
                live: Some(live),
                next_generation: Generation(2),
                rollout: None,
                target: None,
            })
        ]),
        "{:?}",
        &h.ops[before..]
    );
    assert_eq!(h.machine().phase(), &Phase::Idle);
}

#[test]
fn a_resync_keeps_a_halted_service_halted() {
    let mut h = Harness::recovered(spec(handover()), observed(&[]), None);
    h.input(Input::Desired(target(1, 1)));
    h.answer("admit", OpResult::Admitted);
    h.answer("fetch", OpResult::Fetched(Ok(Fetched::Pulled)));
    let halt = Halt {
        service: ServiceName::new("web").unwrap(),
        node: "node-b".into(),
        reason: "unhealthy".into(),
        at: Timestamp::from_millis(0),
    };
    h.answer(
        "acquire_slot",
        OpResult::Slot(Ok(SlotOutcome::Halted(halt))),
    );
    assert_eq!(h.machine().state(), ServiceState::Halted);
    h.input(Input::Resync);
    assert_eq!(h.machine().state(), ServiceState::Halted);
    h.answer("admit", OpResult::Admitted);
    h.answer("observe", OpResult::Observed(Ok((observed(&[]), None))));
    assert!(
        matches!(h.machine().phase(), Phase::Halted { .. }),
        "{:?}",
        h.machine().phase()
    );
}

#[test]
fn a_deploy_a_crash_interrupted_after_going_live_is_finished_and_reported_once() {
    // Crash after the flip (the new generation serves) but before the old one was gone.
    let mut wanted = target(2, 7);
    wanted.source = deployer_core::Source::new("registry");
    wanted.delivery_id = Some("event-7".into());
    let journal = JournalEntry {
        live: Some(generation(2, 2)),
        next_generation: Generation(3),
        rollout: None,
        target: Some(Box::new(wanted)),
    };
    let mut both = observed(&[(1, 0, 1, true), (2, 0, 2, true)]);
    both.instances[1].serving = true;
    let mut h = Harness::recovered(spec(handover()), both, Some(journal));
    h.succeed_all();
    assert!(
        h.ops.contains(&Op::Remove(id(1, 0))),
        "the old generation is removed"
    );
    let forgotten = h.ops.iter().rev().find_map(|op| match op {
        Op::Journal(entry) => Some(entry.clone()),
        _ => None,
    });
    assert_eq!(
        forgotten.and_then(|e| e.target),
        None,
        "the journal forgets the deploy"
    );
    let reports: Vec<_> = h
        .reports
        .iter()
        .filter(|r| r.outcome == Outcome::Succeeded)
        .collect();
    assert_eq!(reports.len(), 1, "{:?}", h.reports);
    let report = reports[0];
    let target = report.target.as_ref().expect("the deploy's target");
    assert_eq!(
        target.source.as_str(),
        "registry",
        "the trigger that asked for it"
    );
    assert_eq!(target.delivery_id.as_deref(), Some("event-7"));
    assert_eq!(
        report.warnings,
        vec!["finished by crash recovery".to_owned()]
    );
}

#[test]
fn durations_up_to_duration_max_never_overflow_an_instant() {
    // A library user may build or deserialize a spec with absurd durations; every deadline
    // the machine computes from them saturates instead of panicking.
    let max = Duration::MAX;
    let spec = |threshold: u32| {
        let health = HealthCheck::new(Probe::Tcp, max, max, max, threshold)
            .unwrap()
            .with_watch(max);
        let timeouts = Timeouts {
            fetch: max,
            start: max,
            stop: max,
            drain: max,
        };
        Arc::new(
            ServiceSpec::builder("web", image())
                .strategy(handover())
                .health(health)
                .timeouts(timeouts)
                .retry(Backoff::new(max, max, 3).unwrap())
                .build()
                .unwrap(),
        )
    };
    assert_eq!(Op::Retire(id(1, 0)).timeout(&spec(1)), Some(max));
    assert_eq!(Op::Remove(id(1, 0)).timeout(&spec(1)), Some(max));

    // A transient failure backs off for `retry.initial`.
    let mut h = Harness::recovered(spec(1), observed(&[]), None);
    h.input(Input::Desired(target(1, 1)));
    h.answer("admit", OpResult::Admitted);
    h.answer(
        "fetch",
        OpResult::Fetched(Err(StepError::transient("registry down"))),
    );
    assert!(matches!(h.machine().phase(), Phase::Backoff { .. }));

    let until_probe = |h: &mut Harness| {
        h.input(Input::Desired(target(1, 1)));
        h.answer("admit", OpResult::Admitted);
        h.answer("fetch", OpResult::Fetched(Ok(Fetched::Pulled)));
        h.answer("acquire_slot", OpResult::Slot(Ok(SlotOutcome::Granted)));
        while let Some(op) = h.current().cloned().filter(|op| op.name() != "probe") {
            let result = match op {
                Op::Observe { .. } => OpResult::Observed(Ok((observed(&[]), None))),
                Op::Journal(_) => OpResult::Journaled(Ok(())),
                Op::Start(_) => OpResult::Started(Ok(Started::Created)),
                other => panic!("unexpected {other:?}"),
            };
            h.answer(op.name(), result);
        }
    };
    // Probing waits `health.interval` between successes ("forever": nothing more runs)...
    let mut h = Harness::recovered(spec(2), observed(&[]), None);
    until_probe(&mut h);
    h.answer("probe", OpResult::Probed(Ok(Health::Healthy)));
    assert_eq!(h.current(), None);

    // ... and a promoted build is watched for `health.watch`, probed every interval.
    let mut h = Harness::recovered(spec(1), observed(&[]), None);
    until_probe(&mut h);
    h.answer("probe", OpResult::Probed(Ok(Health::Healthy)));
    h.answer("promote", OpResult::Promoted(Ok(Promoted::Switched)));
    h.answer("probe", OpResult::Probed(Ok(Health::Healthy)));
    assert_eq!(h.machine().state(), ServiceState::Watching);
    assert_eq!(h.current(), None);
}
