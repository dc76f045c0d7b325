//! A notifier of your own: every deploy report appended to a JSON-lines file. Runs anywhere,
//! no Docker needed.
//!
//! Shows how to plug a custom [`Notifier`](deployer_core::ports::Notifier)
//! ([`JsonlNotifier`], in this crate's library) into a [`Driver`], here running on the
//! library's in-memory fakes (`deployer_core::testing`, feature `test-util`): a fake image
//! source and a fake switcher that simulates containers. Two builds are published one after
//! the other; each deploy ends in a report, which the engine hands to the notifier from a
//! queue of its own, off the deploy path. Then the lines this run added are printed.
//!
//! ```text
//! cargo run -p deployer-examples --example jsonl_notifier [-- /tmp/deploys.jsonl]
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use deployer_core::driver::{Driver, DriverConfig, DriverHandle, Ports};
use deployer_core::memory::{MemoryCoordinator, MemoryJournal};
use deployer_core::ports::Coordinator;
use deployer_core::testing::{FakeImageSource, FakeSwitcher, digest};
use deployer_core::{Digest, ImageRef, PublishRequest, ServiceSpec, Source};
use deployer_examples::JsonlNotifier;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let path = std::env::args_os().nth(1).map_or_else(
        || std::env::temp_dir().join("deployer-deploys.jsonl"),
        PathBuf::from,
    );
    // The notifier appends; show only what this run adds.
    let before = std::fs::metadata(&path).map_or(0, |m| m.len() as usize);
    deploy_twice(&path).await?;
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    println!("appended to {}:", path.display());
    print!("{}", &text[before.min(text.len())..]);
    Ok(())
}

/// Runs a driver on fakes with a [`JsonlNotifier`] writing to `path`, deploys build 1, then
/// build 2, and stops it once both are done.
pub async fn deploy_twice(path: &Path) -> anyhow::Result<()> {
    let image: ImageRef = "registry.example/shop/web:latest".parse()?;
    let coordinator = Arc::new(MemoryCoordinator::new("example-host"));
    let ports = Ports {
        images: Arc::new(FakeImageSource::new()),
        switcher: Arc::new(FakeSwitcher::new()),
        coordinator: coordinator.clone(),
        journal: Arc::new(MemoryJournal::new()),
        notifiers: vec![Arc::new(JsonlNotifier::new(path))],
    };
    // The default strategy (recreate) and probe (the container runs): all the fake needs.
    let spec = ServiceSpec::builder("web", image.clone()).build()?;
    let driver = Driver::new(DriverConfig::new("example-host"), ports, vec![spec])?;
    let handle = driver.handle();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(driver.run(async move {
        let _ = stopped.await;
    }));

    for n in 1..=2 {
        let build = digest(n);
        // What a trigger's event becomes once resolved: a target for the tracked tag.
        let request = PublishRequest::new(image.clone(), build.clone(), Source::new("example"));
        coordinator.publish(request).await?;
        // One build at a time: published back to back, build 2 would supersede build 1
        // before it started (the engine only ever chases the newest target).
        finished(&handle, &build).await?;
    }

    // A graceful stop delivers the reports still queued for notifiers before returning.
    let _ = stop.send(());
    running.await?;
    Ok(())
}

/// Waits until the service's last finished deploy is the one of `build`.
async fn finished(handle: &DriverHandle, build: &Digest) -> anyhow::Result<()> {
    let done = async {
        loop {
            let report = handle.service("web").and_then(|view| view.last_report);
            if report.is_some_and(|r| r.to.as_ref() == Some(build)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), done)
        .await
        .with_context(|| format!("the deploy of {} did not finish within 10 s", build.short()))
}
