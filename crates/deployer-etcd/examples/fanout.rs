//! Fan-out latency: from the start of a publish until every watcher has seen it.
//!
//! Starts a local etcd (Debian's `etcd-server`, through deployer-testkit), connects one
//! publisher and N watchers (each its own `EtcdCoordinator`, so its own gRPC connection),
//! publishes a new digest, waits until all N watchers received it, and repeats.
//!
//! ```text
//! cargo run --release -p deployer-etcd --example fanout -- [PUBLISHES] [WATCHERS,...]
//! cargo run --release -p deployer-etcd --example fanout -- 200 1,10,50
//! ```

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use deployer_core::ports::{Coordinator, WatchEvent};
use deployer_core::{Digest, ImageRef, PublishOutcome, PublishRequest, Revision, Source};
use deployer_etcd::{EtcdConfig, EtcdCoordinator};
use deployer_testkit::etcd::Etcd;
use tokio::sync::mpsc;

/// Publishes before measuring, to warm connections and etcd's caches.
const WARMUP: u32 = 10;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let publishes: u32 = match args.next() {
        Some(n) => n.parse().context("PUBLISHES must be a number")?,
        None => 200,
    };
    let counts: Vec<usize> = match args.next() {
        Some(list) => list
            .split(',')
            .map(|n| n.trim().parse().context("WATCHERS must be numbers"))
            .collect::<anyhow::Result<_>>()?,
        None => vec![1, 10, 50],
    };

    let etcd = Etcd::start().await;
    let image: ImageRef = "127.0.0.1:5000/bench/app:latest".parse()?;
    let publisher = connect(&etcd, "publisher").await?;
    println!("publishes per row: {publishes} (after {WARMUP} warm-up publishes)");
    println!("| watchers | median | p90 | max |");
    println!("|---:|---:|---:|---:|");
    let mut next_digest = 0u64;
    for &count in &counts {
        let mut watchers = Vec::with_capacity(count);
        for n in 0..count {
            watchers.push(connect(&etcd, &format!("watcher-{n}")).await?);
        }
        let (seen_tx, mut seen) = mpsc::unbounded_channel::<(Revision, Instant)>();
        let start = publisher.snapshot().await?.revision;
        for watcher in &watchers {
            let mut watch = watcher.watch(start).await?;
            let seen_tx = seen_tx.clone();
            tokio::spawn(async move {
                while let Some(event) = watch.next().await {
                    let at = Instant::now();
                    if let WatchEvent::Updated(target) = event
                        && seen_tx.send((target.revision, at)).is_err()
                    {
                        return;
                    }
                }
            });
        }
        drop(seen_tx);

        let mut latencies = Vec::with_capacity(publishes as usize);
        for round in 0..WARMUP + publishes {
            next_digest += 1;
            let request = PublishRequest::new(
                image.clone(),
                Digest::sha256(&format!("{next_digest:064x}"))?,
                Source::new("bench"),
            );
            let began = Instant::now();
            let revision = match publisher.publish(request).await? {
                PublishOutcome::Published { target } => target.revision,
                other => bail!("publish was not accepted: {other:?}"),
            };
            let mut pending = count;
            let mut last = began;
            while pending > 0 {
                let (seen_revision, at) =
                    tokio::time::timeout(Duration::from_secs(10), seen.recv())
                        .await
                        .context("a watcher did not see a publish within 10 s")?
                        .context("every watcher stopped")?;
                if seen_revision == revision {
                    pending -= 1;
                    last = last.max(at);
                }
            }
            if round >= WARMUP {
                latencies.push(last - began);
            }
        }
        latencies.sort();
        println!(
            "| {count} | {} | {} | {} |",
            ms(percentile(&latencies, 50)),
            ms(percentile(&latencies, 90)),
            ms(*latencies.last().unwrap_or(&Duration::ZERO)),
        );
        for watcher in watchers {
            watcher.close().await;
        }
    }
    publisher.close().await;
    Ok(())
}

async fn connect(etcd: &Etcd, node: &str) -> anyhow::Result<EtcdCoordinator> {
    let config = EtcdConfig::new([etcd.endpoint()])
        .with_prefix("/bench/deployer")
        .with_node(node);
    EtcdCoordinator::connect(config)
        .await
        .with_context(|| format!("connecting {node}"))
}

/// The `p`th percentile of sorted samples (nearest rank).
fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted[rank - 1]
}

fn ms(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1000.0)
}
