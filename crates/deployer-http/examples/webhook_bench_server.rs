//! The webhook path of the daemon, for the benchmark (`bench/run.sh`): a real `Driver` with the
//! webhook trigger, ingest worker and in-memory coordinator; Docker is replaced by the core's
//! fakes so only the HTTP, decoding, sink and coordinator work is measured.
//!
//! The event queue holds 65,536 events instead of the daemon's 1,024: under a flood on a busy
//! 2-core machine the OS now and then preempts the thread running the single ingest task for a
//! scheduler slice while the other thread keeps accepting webhooks, and 1,024 events fill in
//! tens of milliseconds (the sender would get 503 and retry: correct backpressure, but not what
//! this benchmark measures). Whether ingest kept up is printed at exit.
//!
//! `webhook_bench_server [ADDR]` (default `127.0.0.1:0`) prints `listening on <addr>` and serves
//! until SIGINT or SIGTERM. The registry endpoint takes `Authorization: Bearer $TOKEN`
//! (default `bench-token-0123456789`); `demo/app:latest` on `127.0.0.1:5000` is tracked.

use std::sync::Arc;

use anyhow::Context;
use deployer_core::ServiceSpec;
use deployer_core::driver::{Driver, DriverConfig, Ports};
use deployer_core::memory::{MemoryCoordinator, MemoryJournal};
use deployer_core::testing::{FakeImageSource, FakeSwitcher};
use deployer_http::config::{EndpointConfig, WebhookConfig};
use deployer_http::notify::MetricsNotifier;
use deployer_http::{Metrics, WebhookTrigger};
use tokio::signal::unix::{SignalKind, signal};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_owned())
        .parse()
        .context("ADDR must be host:port")?;
    let token = std::env::var("TOKEN").unwrap_or_else(|_| "bench-token-0123456789".to_owned());
    let metrics = Metrics::new();
    let ports = Ports {
        images: Arc::new(FakeImageSource::new()),
        switcher: Arc::new(FakeSwitcher::new()),
        coordinator: Arc::new(MemoryCoordinator::new("bench")),
        journal: Arc::new(MemoryJournal::new()),
        notifiers: vec![Arc::new(MetricsNotifier::new(metrics.clone()))],
    };
    let spec = ServiceSpec::builder("web", "127.0.0.1:5000/demo/app:latest".parse()?).build()?;
    let config = WebhookConfig {
        registry: EndpointConfig::with_secret(token).registries(["127.0.0.1:5000"]),
        ..WebhookConfig::default()
    };
    let trigger = WebhookTrigger::bind(addr, config, metrics)?;
    println!("listening on {}", trigger.local_addr());
    let mut driver_config = DriverConfig::new("bench");
    driver_config.event_queue = 1 << 16;
    let driver = Driver::new(driver_config, ports, vec![spec])?;
    let handle = driver.handle();
    let driver = driver.with_trigger(Arc::new(trigger));
    let mut term = signal(SignalKind::terminate())?;
    let sink = handle.sink();
    driver
        .run(async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            // Counted before shutdown stops the ingest worker: did it keep up with the flood?
            let stats = sink.stats();
            println!(
                "queued {} ingested {} (published {}, unchanged {}) rejected {}",
                stats.queued,
                stats.published + stats.unchanged + stats.stale + stats.failed,
                stats.published,
                stats.unchanged,
                stats.rejected
            );
        })
        .await;
    Ok(())
}
