//! Zero-downtime deploys of one Docker service whenever CI appends a build to a file.
//!
//! Shows how to embed the engine with your own trigger: [`FileTrigger`] (in this crate's
//! library) follows a file of `repo:tag@sha256:...` lines and hands each to the driver's
//! event sink; the driver runs on the Docker adapters (image source, switcher with its
//! in-process proxy, redb journal) and the in-memory coordinator, with one service switched
//! by handover behind the proxy. Runs until Ctrl-C.
//!
//! ```text
//! cargo run -p deployer-examples --example file_trigger -- \
//!     --builds /tmp/builds.txt --image 127.0.0.1:5000/demo/app:latest \
//!     --listen 127.0.0.1:8080 --container-port 8080
//!
//! # then, in CI, after `docker push` printed the digest:
//! echo "127.0.0.1:5000/demo/app:latest@sha256:..." >> /tmp/builds.txt
//! curl http://127.0.0.1:8080/
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use deployer_core::driver::{Driver, DriverConfig, Ports};
use deployer_core::memory::MemoryCoordinator;
use deployer_core::service::{Handover, HealthCheck, Probe, ProxyProtocol, Strategy};
use deployer_core::{ImageRef, ServiceSpec};
use deployer_docker::connect::{ProcessEnv, connect};
use deployer_docker::{
    Credentials, DockerImageSource, DockerSwitcher, RedbJournal, SwitcherConfig,
};
use deployer_examples::FileTrigger;

/// Deploys a service whenever CI appends `repo:tag@sha256:...` to a file.
#[derive(Debug, Parser)]
struct Args {
    /// The file CI appends builds to (created later is fine).
    #[arg(long)]
    builds: PathBuf,
    /// The repo:tag the service tracks.
    #[arg(long)]
    image: ImageRef,
    /// Where the service's proxy listens; clients connect here.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The port the app listens on inside its container.
    #[arg(long, default_value_t = 8080)]
    container_port: u16,
    /// HTTP path that answers 200 once the app is ready.
    #[arg(long, default_value = "/")]
    health_path: String,
    /// The service's name (its containers are `<name>-g<generation>-s<slot>`).
    #[arg(long, default_value = "web")]
    name: String,
    /// Crash-recovery journal: which generation is live survives a restart here.
    #[arg(long, default_value = "/tmp/deployer-file-trigger.redb")]
    journal: PathBuf,
    /// Docker endpoint (default: DOCKER_HOST, else the local socket).
    #[arg(long)]
    docker: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Libraries only emit tracing events; the program decides where they go.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();

    let spec = ServiceSpec::builder(&args.name, args.image.clone())
        .strategy(Strategy::Handover(Handover::new(
            args.listen,
            args.container_port,
            ProxyProtocol::Http,
            1,
        )?))
        .health(HealthCheck::new(
            Probe::Http {
                path: args.health_path.clone(),
                status: 200,
            },
            Duration::from_millis(500),
            Duration::from_secs(2),
            Duration::from_secs(60),
            1,
        )?)
        .build()?;

    let docker = connect(args.docker.as_deref(), &ProcessEnv).await?;
    let switcher = Arc::new(DockerSwitcher::new(
        docker.clone(),
        SwitcherConfig::default(),
    ));
    // Bind the proxy before the driver runs: recovery at start puts containers a previous
    // run left serving back behind it.
    switcher.bind_proxies(std::slice::from_ref(&spec)).await?;
    let ports = Ports {
        images: Arc::new(DockerImageSource::new(
            docker,
            Credentials::from_env(&ProcessEnv),
        )),
        switcher: switcher.clone(),
        // One host: targets live in memory. At a restart the trigger re-sends the file's
        // newest line, which is all the state the coordinator needs back.
        coordinator: Arc::new(MemoryCoordinator::new("file-trigger")),
        journal: Arc::new(RedbJournal::open(&args.journal)?),
        // Outcomes show up in the log ("deploy" events); see the jsonl_notifier example
        // for a notifier of your own.
        notifiers: Vec::new(),
    };
    let driver = Driver::new(DriverConfig::new("file-trigger"), ports, vec![spec])?
        .with_trigger(Arc::new(FileTrigger::new(&args.builds)));
    tracing::info!(builds = %args.builds.display(), proxy = %args.listen, "following builds");

    // Ctrl-C stops the trigger, removes a candidate that never took traffic and lets a
    // switch under way finish (bounded by the driver's shutdown grace).
    driver
        .run(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    // The proxy is in-process: close it only once the driver no longer moves traffic.
    switcher.shutdown(Duration::from_secs(10)).await;
    Ok(())
}
