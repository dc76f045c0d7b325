//! One reconcile pass over 10,000 services that each got a new target (issue 2's benchmark).
//!
//! - `decide`: each machine takes its new target and answers with its first effects.
//! - `full_rollout`: each machine runs its whole rollout (fetch, slot, observe, journal, start,
//!   probe, promote, journal, retire, remove) with every operation answered at once: the
//!   engine's own cost of a complete deploy, without any I/O.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use deployer_benches::{at_rest, run_to_rest, spec, target};
use deployer_core::reconcile::{Input, Machine};
use deployer_core::target::Target;
use tokio::time::Instant;

const SERVICES: usize = 10_000;

/// Services at rest, each with the new target it is about to receive.
fn machines() -> Vec<(Machine, Target)> {
    let now = Instant::now();
    (0..SERVICES)
        .map(|n| {
            let m = at_rest(spec(n), now);
            let t = target(m.spec(), 2, n as u64 + 1);
            (m, t)
        })
        .collect()
}

fn reconcile(c: &mut Criterion) {
    let mut group = c.benchmark_group("reconcile_10k_services");
    group.sample_size(30);
    group.bench_function("decide", |b| {
        b.iter_batched(
            machines,
            |machines| {
                let now = Instant::now();
                // Returned, so that dropping the results is not timed.
                machines
                    .into_iter()
                    .map(|(m, t)| black_box(m.step(now, Input::Desired(t))))
                    .collect::<Vec<_>>()
            },
            BatchSize::PerIteration,
        );
    });
    group.bench_function("full_rollout", |b| {
        b.iter_batched(
            machines,
            |machines| {
                let now = Instant::now();
                let mut steps = 0;
                let mut done = Vec::with_capacity(SERVICES);
                for (m, t) in machines {
                    let (m, effects) = m.step(now, Input::Desired(t));
                    let (m, taken) = run_to_rest(m, now, effects);
                    steps += taken;
                    done.push(black_box(m));
                }
                // admit, fetch, slot, observe, journal, start, probe, promote, journal, retire, remove
                assert_eq!(steps, SERVICES * 11, "every service ran a whole rollout");
                done
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

criterion_group!(benches, reconcile);
criterion_main!(benches);
