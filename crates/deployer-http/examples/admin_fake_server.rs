//! The admin API over a real `Driver` whose ports are the core's fakes, for checking the API
//! against its OpenAPI document without Docker (`scripts/schemathesis.sh`).
//!
//! `admin_fake_server [ADDR]` (default `127.0.0.1:0`) prints `listening on <addr>` and serves
//! until SIGINT or SIGTERM. Requests need `Authorization: Bearer $TOKEN` (default
//! `admin-token-0123456789`). Two services: `web` (handover, tag resolvable, so deploys and
//! rollbacks succeed) and `worker` (recreate, its tag missing at the fake registry).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use deployer_core::driver::{Driver, DriverConfig, Ports};
use deployer_core::driver::{DriverHandle, ReloadSummary};
use deployer_core::memory::{MemoryCoordinator, MemoryJournal};
use deployer_core::service::{Handover, ProxyProtocol, Strategy};
use deployer_core::testing::{FakeImageSource, FakeSwitcher, digest};
use deployer_core::{ImageRef, ServiceSpec};
use deployer_http::config::AdminConfig;
use deployer_http::{
    AdminPorts, Gate, GateError, Metrics, ReloadError, Reloader, TrafficControl, admin_router_with,
};
use tokio::signal::unix::{SignalKind, signal};

fn services(web: &ImageRef, worker: &ImageRef) -> anyhow::Result<Vec<ServiceSpec>> {
    let handover = Handover::new("127.0.0.1:18080".parse()?, 80, ProxyProtocol::Http, 1)?;
    Ok(vec![
        ServiceSpec::builder("web", web.clone())
            .strategy(Strategy::Handover(handover))
            .build()?,
        ServiceSpec::builder("worker", worker.clone()).build()?,
    ])
}

/// Reloads a file that did not change.
struct SameServices(DriverHandle, Vec<ServiceSpec>);

#[async_trait::async_trait]
impl Reloader for SameServices {
    async fn reload(&self) -> Result<ReloadSummary, ReloadError> {
        self.0
            .reload(self.1.clone())
            .map_err(|e| ReloadError::Refused(e.to_string()))
    }
}

/// Every service has a proxy here, and its gate is only logged.
struct EveryProxy;

#[async_trait::async_trait]
impl TrafficControl for EveryProxy {
    async fn set_gate(&self, service: &str, gate: Gate) -> Result<(), GateError> {
        eprintln!("{service}: {gate:?}");
        Ok(())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr: std::net::SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_owned())
        .parse()
        .context("ADDR must be host:port")?;
    let token = std::env::var("TOKEN").unwrap_or_else(|_| "admin-token-0123456789".to_owned());
    let web: ImageRef = "registry.example.com:5000/team/web:latest".parse()?;
    let worker: ImageRef = "registry.example.com:5000/team/worker:latest".parse()?;
    let images = Arc::new(FakeImageSource::new());
    images.set_tag(&web, digest(1));
    let ports = Ports {
        images: images.clone(),
        switcher: Arc::new(FakeSwitcher::new()),
        coordinator: Arc::new(MemoryCoordinator::new("fake-host")),
        journal: Arc::new(MemoryJournal::new()),
        notifiers: Vec::new(),
    };
    let specs = services(&web, &worker)?;
    let driver = Driver::new(DriverConfig::new("fake-host"), ports, specs.clone())?;
    let handle = driver.handle();
    // Bound first: the router must know its address to refuse requests under other names.
    let listener = deployer_http::serve::bind(addr).await?;
    let config = AdminConfig {
        token: Some(token.into()),
        listen: Some(listener.local_addr()?),
        ..AdminConfig::default()
    };
    // Reloads re-declare the same services: what a daemon does when its file is unchanged.
    let reloader = Arc::new(SameServices(handle.clone(), specs));
    let ports = AdminPorts::default()
        .with_reloader(reloader)
        .with_traffic(Arc::new(EveryProxy));
    let router = admin_router_with(&config, handle.clone(), Metrics::new(), ports)?;
    println!("listening on {}", listener.local_addr()?);

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(deployer_http::serve(
        listener,
        router,
        async move {
            let _ = stopped.await;
        },
        Duration::from_secs(1),
    ));
    // A second build of `web`, so that a rollback has somewhere to go once it deployed.
    let second = tokio::spawn({
        let (handle, images) = (handle.clone(), images.clone());
        async move {
            let _ = handle.deploy("web", None).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            images.set_tag(&web, digest(2));
            let _ = handle.deploy("web", None).await;
        }
    });
    let mut term = signal(SignalKind::terminate())?;
    driver
        .run(async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        })
        .await;
    second.abort();
    let _ = stop.send(());
    let _ = server.await;
    Ok(())
}
