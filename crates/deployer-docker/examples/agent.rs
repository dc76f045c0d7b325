//! A one-service deployer agent on the Docker adapters, for crash tests and demos.
//!
//! ```text
//! agent --spec SERVICE.json --journal FILE --target DIGEST [--fetch-delay-ms N]
//! ```
//!
//! Runs a driver with the Docker image source and switcher, a redb journal at `--journal`
//! and an in-memory coordinator; publishes `--target` for the service's image at start and
//! prints one JSON line per status change and per report on stdout. `--fetch-delay-ms`
//! makes every fetch take that long (to hold the agent in the fetching phase). Stops on
//! Ctrl-C or SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use async_trait::async_trait;
use deployer_core::driver::{Driver, DriverConfig, Ports};
use deployer_core::memory::MemoryCoordinator;
use deployer_core::ports::{
    Coordinator, FetchProgress, Fetched, ImageError, ImageSource, Notifier, NotifyError,
};
use deployer_core::service::BuildSpec;
use deployer_core::{DeployReport, Digest, ImageRef, PublishRequest, ServiceSpec, Source};
use deployer_docker::connect::{ProcessEnv, connect};
use deployer_docker::{
    Credentials, DockerImageSource, DockerSwitcher, RedbJournal, SwitcherConfig,
};

struct Args {
    spec: ServiceSpec,
    journal: String,
    target: Digest,
    fetch_delay: Duration,
}

fn args() -> anyhow::Result<Args> {
    let mut spec = None;
    let mut journal = None;
    let mut target = None;
    let mut fetch_delay = Duration::ZERO;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--spec" => {
                let path = value()?;
                let text =
                    std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
                spec =
                    Some(serde_json::from_str(&text).with_context(|| format!("parsing {path}"))?);
            }
            "--journal" => journal = Some(value()?),
            "--target" => target = Some(value()?.parse()?),
            "--fetch-delay-ms" => fetch_delay = Duration::from_millis(value()?.parse()?),
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(Args {
        spec: spec.context("--spec is required")?,
        journal: journal.context("--journal is required")?,
        target: target.context("--target is required")?,
        fetch_delay,
    })
}

/// Prints each report as a JSON line.
struct PrintReports;

#[async_trait]
impl Notifier for PrintReports {
    fn name(&self) -> &str {
        "stdout"
    }

    async fn notify(&self, report: &DeployReport) -> Result<(), NotifyError> {
        let line = serde_json::json!({
            "report": report.outcome.as_str(),
            "to": report.to.as_ref().map(ToString::to_string),
            "reason": report.reason,
        });
        println!("{line}");
        Ok(())
    }
}

/// Delays every fetch, to hold the agent in the fetching phase.
struct SlowFetch {
    inner: DockerImageSource,
    delay: Duration,
}

#[async_trait]
impl ImageSource for SlowFetch {
    async fn resolve(&self, image: &ImageRef) -> Result<Digest, ImageError> {
        self.inner.resolve(image).await
    }

    async fn fetch(
        &self,
        image: &ImageRef,
        digest: &Digest,
        progress: &dyn FetchProgress,
    ) -> Result<Fetched, ImageError> {
        tokio::time::sleep(self.delay).await;
        self.inner.fetch(image, digest, progress).await
    }

    async fn build(
        &self,
        image: &ImageRef,
        build: &BuildSpec,
        progress: &dyn FetchProgress,
    ) -> Result<Digest, ImageError> {
        self.inner.build(image, build, progress).await
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    let docker = connect(None, &ProcessEnv).await?;
    let switcher = Arc::new(DockerSwitcher::new(
        docker.clone(),
        SwitcherConfig::default(),
    ));
    switcher
        .bind_proxies(std::slice::from_ref(&args.spec))
        .await?;
    let coordinator = Arc::new(MemoryCoordinator::new("agent"));
    let ports = Ports {
        images: Arc::new(SlowFetch {
            inner: DockerImageSource::new(docker, Credentials::from_env(&ProcessEnv)),
            delay: args.fetch_delay,
        }),
        switcher: switcher.clone(),
        coordinator: coordinator.clone(),
        journal: Arc::new(RedbJournal::open(&args.journal)?),
        notifiers: vec![Arc::new(PrintReports)],
    };
    let image = args.spec.image().clone();
    let name = args.spec.name().to_string();
    let driver = Driver::new(DriverConfig::new("agent"), ports, vec![args.spec])?;
    let handle = driver.handle();
    coordinator
        .publish(PublishRequest::new(
            image,
            args.target.clone(),
            Source::new("agent"),
        ))
        .await?;
    // Status changes, as the admin API would show them.
    tokio::spawn(async move {
        let mut last = String::new();
        loop {
            if let Some(view) = handle.service(&name) {
                let live = view.status.live.as_ref().map(ToString::to_string);
                let line = serde_json::json!({
                    "state": view.status.state,
                    "live": live,
                    "generation": view.status.generation.map(|g| g.0),
                })
                .to_string();
                if line != last {
                    println!("{line}");
                    last = line;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    driver
        .run(async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        })
        .await;
    switcher.shutdown(Duration::from_secs(5)).await;
    Ok(())
}
