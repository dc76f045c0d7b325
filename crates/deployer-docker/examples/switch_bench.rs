//! Scenario benchmark: how long from "target published" to "the new version answers through
//! the proxy" (handover), beside the floor measured in the same run (creating and starting
//! the same container directly until its first 200), and the recreate strategy's gap and
//! failed requests as the baseline of a stop-and-start tool.
//!
//! ```text
//! cargo run --release -p deployer-docker --example switch_bench -- [ITERATIONS]
//! ```
//!
//! Needs the Docker engine and Debian's busybox-static (test images are built from nothing).
//! Prints a Markdown table of medians. Everything it creates carries a sweep label and is
//! removed at the end.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig, PortBinding};
use bollard::query_parameters::{
    CreateContainerOptions, RemoveContainerOptions, StartContainerOptions,
};
use deployer_core::driver::{Driver, DriverConfig, Ports};
use deployer_core::memory::MemoryCoordinator;
use deployer_core::ports::Coordinator;
use deployer_core::service::{
    ContainerTemplate, Handover, HealthCheck, Probe, ProxyProtocol, Strategy, Timeouts,
};
use deployer_core::testing::RecordingNotifier;
use deployer_core::{ImageRef, Outcome, PublishRequest, ServiceSpec, Source};
use deployer_docker::{
    Credentials, DockerImageSource, DockerSwitcher, RedbJournal, SwitcherConfig,
};
use deployer_testkit::images::{self, App, HTTP_PORT, ImageSpec};
use deployer_testkit::{Sweep, net};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Probe interval of the benchmarked services (the first probe runs at once).
const PROBE_INTERVAL: Duration = Duration::from_millis(50);

/// One GET / on a new connection: the body of a 200, or why not.
async fn get(addr: SocketAddr) -> anyhow::Result<String> {
    let attempt = async {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            .await?;
        let mut out = String::new();
        s.read_to_string(&mut out).await?;
        anyhow::Ok(out)
    };
    let out = tokio::time::timeout(Duration::from_secs(5), attempt).await??;
    if !out.starts_with("HTTP/1.1 200") && !out.starts_with("HTTP/1.0 200") {
        bail!("{}", out.lines().next().unwrap_or("no answer"));
    }
    Ok(out.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned())
}

/// Polls `addr` every 2 ms until it answers `body`; returns when.
async fn until_answers(addr: SocketAddr, body: &str, limit: Duration) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + limit;
    loop {
        if get(addr).await.is_ok_and(|b| b == body) {
            return Ok(Instant::now());
        }
        if Instant::now() > deadline {
            bail!("{addr} did not answer {body:?} within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Clients requesting `addr` in a loop; counts failures and the longest stretch without a
/// successful answer.
struct Load {
    stop: Arc<AtomicBool>,
    failed: Arc<AtomicU64>,
    ok: Arc<AtomicU64>,
    gap_us: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(addr: SocketAddr, clients: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (failed, ok, gap_us) = (Arc::default(), Arc::default(), Arc::default());
        let last_ok = Arc::new(std::sync::Mutex::new(Instant::now()));
        let tasks = (0..clients)
            .map(|_| {
                let (stop, failed, ok, gap_us, last_ok): (
                    Arc<AtomicBool>,
                    Arc<AtomicU64>,
                    Arc<AtomicU64>,
                    Arc<AtomicU64>,
                    _,
                ) = (
                    stop.clone(),
                    Arc::clone(&failed),
                    Arc::clone(&ok),
                    Arc::clone(&gap_us),
                    last_ok.clone(),
                );
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        match get(addr).await {
                            Ok(_) => {
                                ok.fetch_add(1, Ordering::Relaxed);
                                let now = Instant::now();
                                let mut last = last_ok.lock().unwrap();
                                let gap = u64::try_from(now.duration_since(*last).as_micros())
                                    .unwrap_or(u64::MAX);
                                gap_us.fetch_max(gap, Ordering::Relaxed);
                                *last = now;
                            }
                            Err(_) => {
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                })
            })
            .collect();
        Self {
            stop,
            failed,
            ok,
            gap_us,
            tasks,
        }
    }

    /// Resets the gap measurement (between iterations).
    fn reset_gap(&self) {
        self.gap_us.store(0, Ordering::Relaxed);
    }

    async fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The floor: create and start the container directly, until its first 200.
async fn floor(
    docker: &Docker,
    sweep: &Sweep,
    image: &str,
    iterations: usize,
) -> anyhow::Result<Vec<f64>> {
    let mut out = Vec::new();
    for n in 0..iterations {
        let port = net::free_port();
        let name = sweep.name(&format!("floor-{n}"));
        let body = ContainerCreateBody {
            image: Some(image.to_owned()),
            labels: Some(sweep.labels().into_iter().collect()),
            exposed_ports: Some(HashMap::from([(
                format!("{HTTP_PORT}/tcp"),
                HashMap::new(),
            )])),
            host_config: Some(HostConfig {
                port_bindings: Some(HashMap::from([(
                    format!("{HTTP_PORT}/tcp"),
                    Some(vec![PortBinding {
                        host_ip: Some("127.0.0.1".into()),
                        host_port: Some(port.to_string()),
                    }]),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        };
        let t0 = Instant::now();
        docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name.clone()),
                    ..Default::default()
                }),
                body,
            )
            .await?;
        docker
            .start_container(&name, None::<StartContainerOptions>)
            .await?;
        let t1 = until_answers(
            SocketAddr::from(([127, 0, 0, 1], port)),
            "v2\n",
            Duration::from_secs(20),
        )
        .await?;
        out.push(ms(t1 - t0));
        docker
            .remove_container(
                &name,
                Some(RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..Default::default()
                }),
            )
            .await?;
    }
    Ok(out)
}

struct Run {
    /// Published -> new version answering, per iteration (ms).
    switch: Vec<f64>,
    /// Longest stretch without a successful answer, per iteration (ms).
    gaps: Vec<f64>,
    ok: u64,
    failed: u64,
}

/// Deploys v1/v2 alternately `iterations` times through a driver, under load.
async fn deploys(
    docker: &Docker,
    spec: ServiceSpec,
    ids: [&str; 2],
    observe: SocketAddr,
    iterations: usize,
) -> anyhow::Result<Run> {
    let dir = tempfile::tempdir()?;
    let switcher = Arc::new(DockerSwitcher::new(
        docker.clone(),
        SwitcherConfig::default(),
    ));
    switcher.bind_proxies(std::slice::from_ref(&spec)).await?;
    let notifier = Arc::new(RecordingNotifier::new());
    let coordinator = Arc::new(MemoryCoordinator::new("bench"));
    let ports = Ports {
        images: Arc::new(DockerImageSource::new(docker.clone(), Credentials::none())),
        switcher: switcher.clone(),
        coordinator: coordinator.clone(),
        journal: Arc::new(RedbJournal::open(dir.path().join("journal.redb"))?),
        notifiers: vec![notifier.clone()],
    };
    let image = spec.image().clone();
    let driver = Driver::new(DriverConfig::new("bench"), ports, vec![spec])?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(driver.run(async move {
        let _ = stopped.await;
    }));
    let publish = |digest: &str| {
        let mut request = PublishRequest::new(
            image.clone(),
            digest.parse().expect("digest"),
            Source::new("bench"),
        );
        request.force = true;
        let coordinator = coordinator.clone();
        async move { anyhow::Ok(coordinator.publish(request).await?.target().revision) }
    };
    let wait = |revision| {
        let notifier = notifier.clone();
        async move {
            tokio::time::timeout(
                Duration::from_secs(60),
                notifier.wait_for(|r| r.revision == Some(revision) && r.outcome.is_final()),
            )
            .await
            .context("deploy did not finish within 60 s")
        }
    };
    let first = wait(publish(ids[0]).await?).await?;
    anyhow::ensure!(
        first.outcome == Outcome::Succeeded,
        "first deploy: {first:?}"
    );
    let load = Load::start(observe, 4);
    let mut switch = Vec::new();
    let mut gaps = Vec::new();
    for n in 0..iterations {
        let (id, body) = if n % 2 == 0 {
            (ids[1], "v2\n")
        } else {
            (ids[0], "v1\n")
        };
        load.reset_gap();
        let t0 = Instant::now();
        let revision = publish(id).await?;
        let t1 = until_answers(observe, body, Duration::from_secs(60)).await?;
        let report = wait(revision).await?;
        anyhow::ensure!(
            report.outcome == Outcome::Succeeded,
            "deploy {n}: {report:?}"
        );
        switch.push(ms(t1 - t0));
        gaps.push(load.gap_us.load(Ordering::Relaxed) as f64 / 1000.0);
    }
    let (ok, failed) = load.finish().await;
    let _ = stop.send(());
    let _ = task.await;
    switcher.shutdown(Duration::from_secs(1)).await;
    Ok(Run {
        switch,
        gaps,
        ok,
        failed,
    })
}

fn service(
    sweep: &Sweep,
    name: &str,
    image: &ImageRef,
    strategy: Strategy,
    ports: Vec<String>,
) -> anyhow::Result<ServiceSpec> {
    let health = HealthCheck::new(
        Probe::Http {
            path: "/health".into(),
            status: 200,
        },
        PROBE_INTERVAL,
        Duration::from_secs(1),
        Duration::from_secs(20),
        1,
    )?;
    Ok(ServiceSpec::builder(&sweep.name(name), image.clone())
        .strategy(strategy)
        .health(health)
        .timeouts(Timeouts {
            fetch: Duration::from_secs(30),
            start: Duration::from_secs(30),
            stop: Duration::from_secs(1),
            drain: Duration::from_secs(5),
        })
        .template(ContainerTemplate {
            labels: sweep.labels().into_iter().collect(),
            ports,
            ..Default::default()
        })
        .build()?)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let iterations: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(15);
    let sweep = Sweep::new("switch-bench");
    let docker = images::docker().await;
    let mut ids = Vec::new();
    for version in ["v1", "v2"] {
        let tag = format!("deployer-test/bench-{}:{version}", sweep.run());
        let spec = ImageSpec {
            app: App::http(version),
            healthcheck: false,
            labels: sweep.labels(),
        };
        ids.push(images::build(&docker, &tag, &spec).await?);
    }
    let tracked: ImageRef = format!("deployer-test/bench-{}:live", sweep.run()).parse()?;
    eprintln!("floor: create + start + first 200, {iterations} times");
    let mut floor = floor(&docker, &sweep, &ids[1], iterations).await?;

    eprintln!("handover: {iterations} deploys under load");
    let listen = net::free_addr();
    let handover = Strategy::Handover(Handover::new(listen, HTTP_PORT, ProxyProtocol::Http, 1)?);
    let spec = service(&sweep, "bench-handover", &tracked, handover, Vec::new())?;
    let mut handover = deploys(&docker, spec, [&ids[0], &ids[1]], listen, iterations).await?;

    eprintln!("recreate: {iterations} deploys under load");
    let port = net::free_port();
    let spec = service(
        &sweep,
        "bench-recreate",
        &tracked,
        Strategy::Recreate,
        vec![format!("127.0.0.1:{port}:{HTTP_PORT}")],
    )?;
    let mut recreate = deploys(
        &docker,
        spec,
        [&ids[0], &ids[1]],
        SocketAddr::from(([127, 0, 0, 1], port)),
        iterations,
    )
    .await?;

    let floor_ms = median(&mut floor);
    let handover_ms = median(&mut handover.switch);
    let recreate_ms = median(&mut recreate.switch);
    println!("| measure ({iterations} iterations, medians) | value |");
    println!("|---|---|");
    println!("| floor: create + start + first 200 | {floor_ms:.0} ms |");
    println!(
        "| handover: published -> new version answers through the proxy | {handover_ms:.0} ms |"
    );
    println!(
        "| handover overhead over the floor | {:.0} ms ({:.2}x) |",
        handover_ms - floor_ms,
        handover_ms / floor_ms
    );
    println!(
        "| handover: failed requests / total | {} / {} |",
        handover.failed,
        handover.failed + handover.ok
    );
    println!(
        "| handover: longest gap between answers | {:.0} ms |",
        median(&mut handover.gaps)
    );
    println!("| recreate: published -> new version answers | {recreate_ms:.0} ms |");
    println!(
        "| recreate: failed requests / total | {} / {} |",
        recreate.failed,
        recreate.failed + recreate.ok
    );
    println!(
        "| recreate: longest gap between answers | {:.0} ms |",
        median(&mut recreate.gaps)
    );
    Ok(())
}
