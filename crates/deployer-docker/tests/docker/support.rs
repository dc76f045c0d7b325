//! Helpers shared by the tests: test images, service specs, an HTTP client loop, polling.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use bollard::Docker;
use deployer_core::ImageRef;
use deployer_testkit::Sweep;
use deployer_testkit::images::{self, App, ImageSpec};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

/// Builds a test image tagged `deployer-test/<repo>:<tag>` with the sweep's labels; returns
/// the tag's reference and the image ID.
pub async fn build_image(
    docker: &Docker,
    sweep: &Sweep,
    repo: &str,
    tag: &str,
    app: App,
    healthcheck: bool,
) -> anyhow::Result<(ImageRef, String)> {
    let name = format!("deployer-test/{repo}-{}:{tag}", sweep.run());
    let spec = ImageSpec {
        app,
        healthcheck,
        labels: sweep.labels(),
    };
    let id = images::build(docker, &name, &spec).await?;
    Ok((name.parse()?, id))
}

/// Points `tracked` (a repo:tag) at local image `source`, as a registry pull would.
pub async fn tag_as(docker: &Docker, source: &str, tracked: &ImageRef) -> anyhow::Result<()> {
    let options = bollard::query_parameters::TagImageOptions {
        repo: Some(tracked.name()),
        tag: tracked.tag().map(str::to_owned),
    };
    docker.tag_image(source, Some(options)).await?;
    Ok(())
}

pub use deployer_testkit::wait::{bounded, eventually};

/// One HTTP/1.1 GET of `/` on an open connection; returns (status, body).
pub async fn get(stream: &mut BufReader<TcpStream>, close: bool) -> anyhow::Result<(u16, String)> {
    let connection = if close { "close" } else { "keep-alive" };
    stream
        .get_mut()
        .write_all(
            format!("GET / HTTP/1.1\r\nHost: test\r\nConnection: {connection}\r\n\r\n").as_bytes(),
        )
        .await?;
    let mut status_line = String::new();
    if stream.read_line(&mut status_line).await? == 0 {
        bail!("connection closed before a response");
    }
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .context("no status")?
        .parse()?;
    let mut length = None;
    loop {
        let mut line = String::new();
        stream.read_line(&mut line).await?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = Some(value.trim().parse::<usize>()?);
        }
    }
    let mut body = Vec::new();
    match length {
        Some(n) => {
            body.resize(n, 0);
            stream.read_exact(&mut body).await?;
        }
        None => {
            stream.read_to_end(&mut body).await?;
        }
    }
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// A GET of `/` on a new connection: the body, or why not.
pub async fn fetch_body(addr: SocketAddr) -> anyhow::Result<String> {
    let stream = TcpStream::connect(addr).await?;
    let mut stream = BufReader::new(stream);
    let (status, body) = get(&mut stream, true).await?;
    if status != 200 {
        bail!("status {status}: {body}");
    }
    Ok(body)
}

/// Clients hammering a proxy until stopped: half on keep-alive connections, half opening a
/// new connection per request. Counts successes and failures, remembers what failed.
#[derive(Debug)]
pub struct ClientLoop {
    stop: Arc<AtomicBool>,
    pub ok: Arc<AtomicU64>,
    pub failed: Arc<AtomicU64>,
    errors: Arc<std::sync::Mutex<Vec<String>>>,
    tasks: JoinSet<()>,
}

impl ClientLoop {
    /// Starts `keep_alive` keep-alive clients and `fresh` new-connection clients.
    pub fn start(addr: SocketAddr, keep_alive: usize, fresh: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = JoinSet::new();
        for n in 0..keep_alive + fresh {
            let reuse = n < keep_alive;
            let (stop, ok, failed, errors) =
                (stop.clone(), ok.clone(), failed.clone(), errors.clone());
            tasks.spawn(async move {
                let mut conn: Option<BufReader<TcpStream>> = None;
                while !stop.load(Ordering::Relaxed) {
                    let result = async {
                        if conn.is_none() {
                            conn = Some(BufReader::new(TcpStream::connect(addr).await?));
                        }
                        let stream = conn.as_mut().context("connection")?;
                        let r = tokio::time::timeout(Duration::from_secs(10), get(stream, !reuse))
                            .await??;
                        anyhow::Ok(r)
                    }
                    .await;
                    if !reuse {
                        conn = None;
                    }
                    match result {
                        Ok((200, _)) => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok((status, body)) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            errors
                                .lock()
                                .unwrap()
                                .push(format!("status {status}: {}", body.trim()));
                        }
                        Err(e) => {
                            conn = None;
                            failed.fetch_add(1, Ordering::Relaxed);
                            errors.lock().unwrap().push(format!("{e:#}"));
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            });
        }
        Self {
            stop,
            ok,
            failed,
            errors,
            tasks,
        }
    }

    /// Stops the clients; returns (ok, failed, first errors).
    pub async fn finish(mut self) -> (u64, u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        while self.tasks.join_next().await.is_some() {}
        let errors = self
            .errors
            .lock()
            .unwrap()
            .iter()
            .take(10)
            .cloned()
            .collect();
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            errors,
        )
    }
}

/// A driver running real adapters: the Docker image source and switcher, a redb journal in
/// a temporary directory, the in-memory coordinator and a recording notifier.
pub struct Harness {
    pub switcher: Arc<deployer_docker::DockerSwitcher>,
    pub notifier: Arc<deployer_core::testing::RecordingNotifier>,
    pub coordinator: Arc<deployer_core::memory::MemoryCoordinator>,
    pub handle: deployer_core::driver::DriverHandle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Harness {
    /// Binds the proxies of `specs` and runs a driver for them.
    pub async fn start(
        docker: &Docker,
        specs: Vec<deployer_core::ServiceSpec>,
    ) -> anyhow::Result<Self> {
        Self::start_with(docker, specs, |_| {}).await
    }

    /// Like [`Harness::start`], with the driver's config adjusted by `configure`.
    pub async fn start_with(
        docker: &Docker,
        specs: Vec<deployer_core::ServiceSpec>,
        configure: impl FnOnce(&mut deployer_core::driver::DriverConfig),
    ) -> anyhow::Result<Self> {
        Self::start_in(
            docker,
            deployer_docker::SwitcherConfig::default(),
            specs,
            configure,
        )
        .await
    }

    /// Like [`Harness::start_with`], with a switcher of its own config (a node scope).
    pub async fn start_in(
        docker: &Docker,
        switcher_config: deployer_docker::SwitcherConfig,
        specs: Vec<deployer_core::ServiceSpec>,
        configure: impl FnOnce(&mut deployer_core::driver::DriverConfig),
    ) -> anyhow::Result<Self> {
        use deployer_core::driver::{Driver, DriverConfig, Ports};
        let dir = tempfile::tempdir()?;
        let journal_path = dir.path().join("journal.redb");
        let switcher = Arc::new(deployer_docker::DockerSwitcher::new(
            docker.clone(),
            switcher_config,
        ));
        switcher.bind_proxies(&specs).await?;
        let notifier = Arc::new(deployer_core::testing::RecordingNotifier::new());
        let coordinator = Arc::new(deployer_core::memory::MemoryCoordinator::new("test"));
        let ports = Ports {
            images: Arc::new(deployer_docker::DockerImageSource::new(
                docker.clone(),
                deployer_docker::Credentials::none(),
            )),
            switcher: switcher.clone(),
            coordinator: coordinator.clone(),
            journal: Arc::new(deployer_docker::RedbJournal::open(&journal_path)?),
            notifiers: vec![notifier.clone()],
        };
        let mut config = DriverConfig::new("test");
        configure(&mut config);
        let driver = Driver::new(config, ports, specs)?;
        let handle = driver.handle();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(driver.run(async move {
            let _ = stopped.await;
        }));
        Ok(Self {
            switcher,
            notifier,
            coordinator,
            handle,
            stop: Some(stop),
            task,
            _dir: dir,
        })
    }

    /// Publishes `digest` for `image` as an operator would (forced), returns its revision.
    pub async fn publish(
        &self,
        image: &ImageRef,
        digest: &str,
    ) -> anyhow::Result<deployer_core::Revision> {
        use deployer_core::ports::Coordinator;
        let mut request = deployer_core::PublishRequest::new(
            image.clone(),
            digest.parse()?,
            deployer_core::Source::new("test"),
        );
        request.force = true;
        Ok(self.coordinator.publish(request).await?.target().revision)
    }

    /// Waits for the final report of the deploy of `revision`.
    pub async fn report(
        &self,
        revision: deployer_core::Revision,
        limit: Duration,
    ) -> anyhow::Result<deployer_core::DeployReport> {
        bounded(
            limit,
            "waiting for a deploy report",
            self.notifier
                .wait_for(|r| r.revision == Some(revision) && r.outcome.is_final()),
        )
        .await
    }

    /// Stops the driver and the proxies.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        bounded(Duration::from_secs(30), "driver shutdown", &mut self.task).await??;
        self.switcher.shutdown(Duration::from_secs(1)).await;
        Ok(())
    }
}

/// A handover service on a free loopback port, probed over HTTP, with short timeouts.
pub fn handover_service(
    sweep: &Sweep,
    name: &str,
    image: &ImageRef,
    deadline: Duration,
) -> anyhow::Result<deployer_core::ServiceSpec> {
    use deployer_core::service::{
        ContainerTemplate, Handover, HealthCheck, Probe, ProxyProtocol, Strategy, Timeouts,
    };
    let handover = Handover::new(
        deployer_testkit::net::free_addr(),
        images::HTTP_PORT,
        ProxyProtocol::Http,
        1,
    )?;
    let health = HealthCheck::new(
        Probe::Http {
            path: "/health".into(),
            status: 200,
        },
        Duration::from_millis(100),
        Duration::from_secs(1),
        deadline,
        1,
    )?
    // Most tests deploy many times: no watch unless a test asks for one.
    .with_watch(Duration::ZERO);
    Ok(
        deployer_core::ServiceSpec::builder(&sweep.name(name), image.clone())
            .strategy(Strategy::Handover(handover))
            .health(health)
            .timeouts(Timeouts {
                fetch: Duration::from_secs(30),
                start: Duration::from_secs(20),
                stop: Duration::ZERO,
                drain: Duration::from_secs(2),
            })
            .template(ContainerTemplate {
                labels: sweep.labels().into_iter().collect(),
                ..Default::default()
            })
            .build()?,
    )
}

/// `spec` built again with `change` applied to a builder that keeps its strategy, health,
/// timeouts and template.
pub fn rebuilt(
    spec: &deployer_core::ServiceSpec,
    change: impl FnOnce(
        deployer_core::service::ServiceSpecBuilder,
    ) -> deployer_core::service::ServiceSpecBuilder,
) -> anyhow::Result<deployer_core::ServiceSpec> {
    let builder = deployer_core::ServiceSpec::builder(spec.name().as_str(), spec.image().clone())
        .strategy(spec.strategy().clone())
        .health(spec.health().clone())
        .timeouts(*spec.timeouts())
        .template(spec.template().clone());
    Ok(change(builder).build()?)
}

/// The service's containers: (name, running), from the engine.
pub async fn containers_of(docker: &Docker, service: &str) -> anyhow::Result<Vec<(String, bool)>> {
    let options = bollard::query_parameters::ListContainersOptions {
        all: true,
        filters: Some(std::collections::HashMap::from([(
            "label".to_owned(),
            vec![format!("deployer.service={service}")],
        )])),
        ..Default::default()
    };
    let mut out: Vec<(String, bool)> = docker
        .list_containers(Some(options))
        .await?
        .into_iter()
        .map(|c| {
            (
                c.names
                    .unwrap_or_default()
                    .first()
                    .cloned()
                    .unwrap_or_default()
                    .trim_start_matches('/')
                    .to_owned(),
                c.state == Some(bollard::models::ContainerSummaryStateEnum::RUNNING),
            )
        })
        .collect();
    out.sort();
    Ok(out)
}

/// Removes a Docker network or volume on drop (the sweep handles containers and images):
/// first the run's containers that may still use it, then the network or volume.
#[derive(Debug)]
pub struct Leftover {
    kind: &'static str,
    name: String,
    run: String,
}

impl Leftover {
    /// A network to remove on drop.
    pub fn network(sweep: &Sweep, name: &str) -> Self {
        Self {
            kind: "network",
            name: name.to_owned(),
            run: sweep.run().to_owned(),
        }
    }

    /// An image to remove on drop (before the sweep, which cannot remove a parent image
    /// while a child built from it exists).
    pub fn image(sweep: &Sweep, name: &str) -> Self {
        Self {
            kind: "image",
            name: name.to_owned(),
            run: sweep.run().to_owned(),
        }
    }

    /// A volume to remove on drop.
    pub fn volume(sweep: &Sweep, name: &str) -> Self {
        Self {
            kind: "volume",
            name: name.to_owned(),
            run: sweep.run().to_owned(),
        }
    }
}

impl Drop for Leftover {
    fn drop(&mut self) {
        let docker = |args: &[&str]| {
            std::process::Command::new("docker")
                .args(args)
                .output()
                .ok()
        };
        let filter = format!("label=deployer.test.run={}", self.run);
        if let Some(out) = docker(&["ps", "-aq", "--filter", &filter]) {
            let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(str::to_owned)
                .collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f", "-v"];
                args.extend(ids.iter().map(String::as_str));
                docker(&args);
            }
        }
        docker(&[self.kind, "rm", "-f", &self.name]);
    }
}

/// Creates and starts a container by hand (as a user would with `docker run`).
pub async fn run_container(
    docker: &Docker,
    name: &str,
    body: bollard::models::ContainerCreateBody,
) -> anyhow::Result<String> {
    let options = bollard::query_parameters::CreateContainerOptions {
        name: Some(name.to_owned()),
        ..Default::default()
    };
    let created = docker.create_container(Some(options), body).await?;
    docker
        .start_container(
            &created.id,
            None::<bollard::query_parameters::StartContainerOptions>,
        )
        .await?;
    Ok(created.id)
}

/// Inspects a container by name or ID.
pub async fn inspect(
    docker: &Docker,
    name: &str,
) -> anyhow::Result<bollard::models::ContainerInspectResponse> {
    Ok(docker
        .inspect_container(
            name,
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await?)
}
