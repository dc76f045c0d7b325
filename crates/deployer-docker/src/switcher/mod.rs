//! [`DockerSwitcher`]: the core's `Switcher` over the Docker engine, dispatching each step on
//! the service's strategy (handover, recreate, stop).
//!
//! What belongs to a service: containers labelled `deployer.service=<name>` (everything
//! deployer creates carries it), plus adopted ones: containers labelled
//! `deployer.enable=true` whose name is the service's name. Nothing else is ever touched.
//!
//! With a node scope ([`SwitcherConfig::scope`]) only containers also labelled
//! `deployer.node=<scope>` belong to it, so several deployers can share one engine; without
//! one, containers carrying any `deployer.node` label are someone else's.

mod container_config;
mod decommission;
mod events;
mod handover;
pub mod labels;
mod probe;
mod recreate;
mod routes;
mod stop;
mod traffic;

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use bollard::models::{ContainerInspectResponse, ContainerSummary, ContainerSummaryStateEnum};
use bollard::query_parameters::{
    CreateContainerOptions, KillContainerOptions, ListContainersOptions, LogsOptions,
    RemoveContainerOptions, RenameContainerOptions, StartContainerOptions, StopContainerOptions,
};
use deployer_core::ports::{
    FailureKind, Promoted, Removed, Retired, Started, SwitchError, Switcher,
};
use deployer_core::reconcile::{
    Generation, Health, InstanceId, InstanceSpec, Observed, ObservedInstance, RunState,
};
use deployer_core::service::{Ordering, Probe};
use deployer_core::{Digest, ImageRef, ServiceName, ServiceSpec};
use deployer_plane::{DataPlane, Fleet, PlaneError};
use deployer_proxy::{GroupStats, ProxyTotals};
use futures_util::StreamExt;

use crate::error::{DockerError, is_not_found, step_failed, switch_error};
use crate::image_source::has_repo_digest;
pub use labels::{ENABLE, GENERATION, MANAGED, SERVICE, SLOT};

/// Settings of a [`DockerSwitcher`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SwitcherConfig {
    /// The host address handover candidates publish their port on (an ephemeral port).
    /// Keep it on loopback: only the proxy should reach candidates.
    pub host_ip: IpAddr,
    /// Lines of a container's output quoted when it exits during probing.
    pub log_lines: usize,
    /// The proxies' bound on connecting to a backend.
    pub proxy_connect_timeout: Duration,
    /// The HTTP proxies' bound on a backend's response headers.
    pub proxy_response_timeout: Duration,
    /// The node scope, for several deployers sharing one engine (two environments on one
    /// host, a test fleet): every container this switcher creates is labelled
    /// `deployer.node=<scope>` and named `<service>-<scope>-...`, and it sees (observes,
    /// recovers, adopts, stops) only containers carrying that label. `None` (the default):
    /// names without a scope, and only containers without a `deployer.node` label. Changing
    /// it leaves the containers of the old scope running and untouched: remove them by hand.
    /// Check a value with [`labels::validate_scope`].
    pub scope: Option<String>,
}

impl Default for SwitcherConfig {
    /// Candidates on 127.0.0.1, 20 log lines, 2 s proxy connect, 60 s proxy response timeout,
    /// no node scope.
    fn default() -> Self {
        Self {
            host_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            log_lines: 20,
            proxy_connect_timeout: Duration::from_secs(2),
            proxy_response_timeout: Duration::from_secs(60),
            scope: None,
        }
    }
}

impl SwitcherConfig {
    /// The same settings within node scope `scope` (see [`Self::scope`]).
    #[must_use]
    pub fn with_scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }
}

/// Runs services' containers on a Docker engine and moves handover services' traffic through
/// a data plane.
///
/// The data plane is either in this process ([`Self::new`]: while the process is down no
/// traffic reaches handover services) or a standalone proxy process driven over its control
/// socket ([`Self::with_plane`]), which keeps serving while the daemon restarts.
pub struct DockerSwitcher {
    docker: Docker,
    config: SwitcherConfig,
    plane: Arc<dyn DataPlane>,
    /// The in-process fleet when this switcher owns its proxies (closed by [`Self::shutdown`]).
    own_fleet: Option<Arc<Fleet>>,
    /// Handover services whose route this switcher has set, by [`Self::bind_proxies`] or lazily.
    routed: Arc<RwLock<BTreeSet<ServiceName>>>,
    /// Serialises lazy route setting, so two steps never set one route twice.
    bind_lock: tokio::sync::Mutex<()>,
    /// The backend address each promoted instance was added to its proxy with (a restarted
    /// container gets a new ephemeral port, so the address cannot be re-read later).
    backends: Arc<Mutex<HashMap<(ServiceName, InstanceId), SocketAddr>>>,
    /// Instances whose traffic a newer instance of their slot took over at its promote: the
    /// backends still draining, waited for when they are retired.
    drains: Mutex<HashMap<(ServiceName, InstanceId), Vec<SocketAddr>>>,
    /// Handover services whose health is the image's own `HEALTHCHECK`: for them, the
    /// engine's "unhealthy" means out of the proxy.
    docker_probed: Arc<RwLock<std::collections::HashSet<ServiceName>>>,
}

impl std::fmt::Debug for DockerSwitcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let routed: Vec<String> = self
            .routed_services()
            .iter()
            .map(ToString::to_string)
            .collect();
        f.debug_struct("DockerSwitcher")
            .field("config", &self.config)
            .field("plane", &self.plane)
            .field("routed", &routed)
            .finish_non_exhaustive()
    }
}

/// The counters of one handover service's proxy, from [`DockerSwitcher::proxy_stats`].
#[derive(Debug, Clone)]
pub struct ServiceProxyStats {
    /// The service.
    pub service: ServiceName,
    /// The proxy's totals (its latency histogram included).
    pub totals: ProxyTotals,
    /// Sums by generation (`g3`: the group is the generation of the container behind each
    /// backend), every generation that served since the proxy was bound.
    pub generations: Vec<GroupStats>,
}

/// A container of a service, as listed.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    /// The container ID.
    pub(crate) id: String,
    /// Its name, without the leading `/`.
    pub(crate) name: String,
    pub(crate) labels: HashMap<String, String>,
    pub(crate) running: bool,
    /// The engine's state, as the engine says it.
    pub(crate) state: RunState,
    pub(crate) instance: InstanceId,
    pub(crate) image: ImageRef,
    pub(crate) digest: Option<Digest>,
    pub(crate) summary: ContainerSummary,
}

impl Found {
    /// The name the recreate strategy keeps stable for this container.
    pub(crate) fn base_name(&self) -> String {
        self.labels
            .get(labels::NAME)
            .cloned()
            .unwrap_or_else(|| labels::base_name(&self.name).to_owned())
    }
}

impl DockerSwitcher {
    /// A switcher on `docker` (see [`crate::connect`]) serving its proxies in this process.
    pub fn new(docker: Docker, config: SwitcherConfig) -> Self {
        let fleet = Arc::new(Fleet::new());
        let mut switcher = Self::with_plane(docker, config, fleet.clone());
        switcher.own_fleet = Some(fleet);
        switcher
    }

    /// A switcher on `docker` moving traffic through `plane` (e.g. a
    /// [`deployer_plane::ControlClient`] of a standalone proxy process), which it does not own:
    /// [`Self::shutdown`] leaves it serving.
    pub fn with_plane(docker: Docker, config: SwitcherConfig, plane: Arc<dyn DataPlane>) -> Self {
        Self {
            docker,
            config,
            plane,
            own_fleet: None,
            routed: Arc::default(),
            bind_lock: tokio::sync::Mutex::new(()),
            backends: Arc::default(),
            drains: Mutex::default(),
            docker_probed: Arc::default(),
        }
    }

    /// The engine client.
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// The node scope, if any.
    pub fn scope(&self) -> Option<&str> {
        self.config.scope.as_deref()
    }

    /// The handover container name of `id` (scoped).
    pub(crate) fn handover_name(&self, service: &ServiceSpec, id: InstanceId) -> String {
        labels::handover_name(service.name(), self.scope(), id)
    }

    /// Deployer's labels for a container of `instance` (scoped).
    pub(crate) fn instance_labels(
        &self,
        service: &ServiceSpec,
        instance: &InstanceSpec,
        base_name: &str,
    ) -> HashMap<String, String> {
        labels::for_instance(service, instance, base_name, self.scope())
    }

    /// The data plane the handover services' traffic goes through.
    pub fn plane(&self) -> &Arc<dyn DataPlane> {
        &self.plane
    }

    fn routed_services(&self) -> BTreeSet<ServiceName> {
        self.routed
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn is_routed(&self, service: &ServiceName) -> bool {
        self.routed
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(service)
    }

    /// Sets the route of every handover service among `services` (HTTP or TCP at its listen
    /// address), so a bad or taken address fails at startup. A route the data plane already
    /// serves with the same settings is left as it is: its backends keep their traffic.
    /// Call before running the driver.
    pub async fn bind_proxies(&self, services: &[ServiceSpec]) -> Result<(), DockerError> {
        for service in services {
            self.route_for(service, true).await?;
        }
        Ok(())
    }

    /// Makes sure a handover service's route is set (once per switcher unless `again`);
    /// false for other strategies.
    async fn route_for(&self, service: &ServiceSpec, again: bool) -> Result<bool, DockerError> {
        let Some(handover) = service.strategy().handover() else {
            return Ok(false);
        };
        if !again && self.is_routed(service.name()) {
            return Ok(true);
        }
        let _binding = self.bind_lock.lock().await;
        if !again && self.is_routed(service.name()) {
            return Ok(true);
        }
        let route = routes::route_of(handover, &self.config);
        let set = self
            .plane
            .set_route(service.name().as_str(), &route)
            .await
            .map_err(|source| DockerError::Plane {
                service: service.name().to_string(),
                source,
            })?;
        tracing::info!(service = %service.name(), listen = %set.bound, change = ?set.change, "route set");
        if let Some(redirect) = routes::redirect_of(handover, &self.config) {
            let name = routes::redirect_name(service.name());
            self.plane
                .set_route(&name, &redirect)
                .await
                .map_err(|source| DockerError::Plane {
                    service: name.clone(),
                    source,
                })?;
            tracing::info!(service = %service.name(), from = %redirect.listen, "plain HTTP redirected to HTTPS");
        }
        if service.health().probe() == &Probe::Docker {
            self.docker_probed
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(service.name().clone());
        }
        self.routed
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(service.name().clone());
        Ok(true)
    }

    /// The live backends of `service`'s route (none without one).
    pub async fn backends(&self, service: &ServiceName) -> Result<Vec<SocketAddr>, PlaneError> {
        self.plane.backends(service.as_str()).await
    }

    /// The counters of every route this switcher set, for metrics; none while the data plane
    /// cannot be reached (logged).
    pub async fn proxy_stats(&self) -> Vec<ServiceProxyStats> {
        let stats = match self.plane.stats().await {
            Ok(stats) => stats,
            Err(error) => {
                tracing::warn!(%error, "reading the proxies' counters failed");
                return Vec::new();
            }
        };
        let routed = self.routed_services();
        stats
            .into_iter()
            .filter_map(|s| {
                let service: ServiceName = s.service.parse().ok()?;
                routed.contains(&service).then_some(ServiceProxyStats {
                    service,
                    totals: s.totals,
                    generations: s.groups,
                })
            })
            .collect()
    }

    /// Closes the proxies this switcher owns (in-process mode), letting open requests finish
    /// within `grace`; a standalone proxy process keeps serving. Call after the driver has
    /// finished: the containers keep running, and the next start re-attaches them.
    pub async fn shutdown(&self, grace: Duration) {
        match &self.own_fleet {
            Some(fleet) => fleet.shutdown(grace).await,
            None => tracing::info!("the proxy process keeps serving"),
        }
    }

    fn record_backend(
        &self,
        service: &ServiceName,
        id: InstanceId,
        addr: Option<SocketAddr>,
    ) -> Option<SocketAddr> {
        let mut map = self.backends.lock().unwrap_or_else(PoisonError::into_inner);
        match addr {
            Some(addr) => map.insert((service.clone(), id), addr),
            None => map.remove(&(service.clone(), id)),
        }
    }

    /// The recorded backends of `id`'s slot in other generations: what `id` replaces.
    fn slot_peers(&self, service: &ServiceName, id: InstanceId) -> Vec<(InstanceId, SocketAddr)> {
        self.backends
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|((s, other), _)| {
                s == service && other.slot == id.slot && other.generation != id.generation
            })
            .map(|((_, other), addr)| (*other, *addr))
            .collect()
    }

    fn keep_drain(&self, service: &ServiceName, id: InstanceId, drain: Vec<SocketAddr>) {
        self.drains
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((service.clone(), id), drain);
    }

    fn take_drain(&self, service: &ServiceName, id: InstanceId) -> Option<Vec<SocketAddr>> {
        self.drains
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(service.clone(), id))
    }

    fn recorded_backend(&self, service: &ServiceName, id: InstanceId) -> Option<SocketAddr> {
        self.backends
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(service.clone(), id))
            .copied()
    }

    // ---- engine helpers shared by the strategies ----

    async fn list_filtered(
        &self,
        label: String,
    ) -> Result<Vec<ContainerSummary>, bollard::errors::Error> {
        list_in_scope(&self.docker, label, self.scope()).await
    }

    /// Every container of `service`, in any state, with its instance id.
    pub(crate) async fn list(
        &self,
        service: &ServiceSpec,
    ) -> Result<Vec<Found>, bollard::errors::Error> {
        let name = service.name();
        let mut summaries = self
            .list_filtered(format!("{}={name}", labels::SERVICE))
            .await?;
        let adopted = self
            .list_filtered(format!("{}=true", labels::ENABLE))
            .await?;
        summaries.extend(adopted.into_iter().filter(|s| {
            let l = s.labels.clone().unwrap_or_default();
            !l.contains_key(labels::SERVICE)
                && labels::adopted_service(&l, &summary_name(s)).as_ref() == Some(name)
        }));
        let mut found = Vec::with_capacity(summaries.len());
        let mut unplaced = Vec::new();
        let mut digests: HashMap<String, Option<Digest>> = HashMap::new();
        for summary in summaries {
            let labels = summary.labels.clone().unwrap_or_default();
            let (generation, slot) = labels::instance_of(&labels);
            let image = labels::image_of(&labels).unwrap_or_else(|| service.image().clone());
            let digest = match labels::digest_of(&labels) {
                Some(d) => Some(d),
                None => {
                    let image_id = summary.image_id.clone().unwrap_or_default();
                    match digests.get(&image_id) {
                        Some(d) => d.clone(),
                        None => {
                            let d = self.registry_digest(&image_id, service.image()).await;
                            digests.insert(image_id, d.clone());
                            d
                        }
                    }
                }
            };
            let entry = Found {
                id: summary.id.clone().unwrap_or_default(),
                name: summary_name(&summary),
                running: matches!(
                    summary.state,
                    Some(ContainerSummaryStateEnum::RUNNING | ContainerSummaryStateEnum::PAUSED)
                ),
                state: run_state(summary.state),
                instance: InstanceId {
                    generation: generation.unwrap_or(Generation(0)),
                    slot: slot.unwrap_or(0),
                },
                image,
                digest,
                labels,
                summary,
            };
            if slot.is_some() {
                found.push(entry);
            } else {
                unplaced.push(entry);
            }
        }
        // Adopted containers carry no slot: number them in name order, after the labelled
        // ones, so every container has its own instance id.
        unplaced.sort_by(|a, b| a.name.cmp(&b.name));
        for mut entry in unplaced {
            let taken = |slot: u32| {
                found.iter().any(|f: &Found| {
                    f.instance.generation == entry.instance.generation && f.instance.slot == slot
                })
            };
            entry.instance.slot = (0..).find(|s| !taken(*s)).unwrap_or(0);
            found.push(entry);
        }
        Ok(found)
    }

    /// The registry digest of local image `image_id` for `image`'s repository, if any.
    async fn registry_digest(&self, image_id: &str, image: &ImageRef) -> Option<Digest> {
        let inspect = self.docker.inspect_image(image_id).await.ok()?;
        inspect.repo_digests.iter().flatten().find_map(|rd| {
            let r = ImageRef::parse(rd).ok()?;
            let digest = r.digest()?.clone();
            (r.same_repository(image) && has_repo_digest(&inspect, image, &digest))
                .then_some(digest)
        })
    }

    /// The container of `instance`, if it exists.
    pub(crate) async fn find(
        &self,
        service: &ServiceSpec,
        id: InstanceId,
    ) -> Result<Option<Found>, SwitchError> {
        let found = self
            .list(service)
            .await
            .map_err(|e| switch_error("list", service.name().as_str(), id, e))?;
        Ok(found.into_iter().find(|f| f.instance == id))
    }

    pub(crate) async fn inspect(
        &self,
        container: &str,
    ) -> Result<Option<ContainerInspectResponse>, bollard::errors::Error> {
        match self
            .docker
            .inspect_container(
                container,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
        {
            Ok(c) => Ok(Some(c)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// What a container of `instance` runs: the built image's ID, or `repo@digest`, so a
    /// moved tag can never change what a generation runs.
    pub(crate) async fn image_for(&self, instance: &InstanceSpec) -> String {
        match &instance.digest {
            Some(digest) => {
                let is_local_id = self
                    .docker
                    .inspect_image(digest.as_str())
                    .await
                    .is_ok_and(|i| i.id.as_deref() == Some(digest.as_str()));
                if is_local_id {
                    digest.to_string()
                } else {
                    format!("{}@{digest}", instance.image.name())
                }
            }
            None => instance.image.to_string(),
        }
    }

    /// Creates `name` from `spec`, connects its extra networks, and starts it.
    pub(crate) async fn create_and_start(
        &self,
        name: &str,
        spec: container_config::CreateSpec,
    ) -> Result<(), bollard::errors::Error> {
        let options = CreateContainerOptions {
            name: Some(name.to_owned()),
            ..Default::default()
        };
        self.docker
            .create_container(Some(options), spec.body)
            .await?;
        for (network, endpoint) in spec.extra_networks {
            let request = bollard::models::NetworkConnectRequest {
                container: Some(name.to_owned()),
                endpoint_config: Some(endpoint),
            };
            self.docker.connect_network(&network, request).await?;
        }
        self.start_container(name).await
    }

    pub(crate) async fn start_container(
        &self,
        container: &str,
    ) -> Result<(), bollard::errors::Error> {
        self.docker
            .start_container(container, None::<StartContainerOptions>)
            .await
    }

    pub(crate) async fn rename(
        &self,
        container: &str,
        to: &str,
    ) -> Result<(), bollard::errors::Error> {
        tracing::debug!(container, to, "renaming");
        self.docker
            .rename_container(
                container,
                RenameContainerOptions {
                    name: to.to_owned(),
                },
            )
            .await
    }

    /// Stops a container: SIGTERM (or its stop signal), `grace`, then SIGKILL.
    pub(crate) async fn stop_container(
        &self,
        container: &str,
        grace: Duration,
    ) -> Result<(), bollard::errors::Error> {
        let t = i32::try_from(
            grace
                .as_secs()
                .saturating_add(u64::from(grace.subsec_nanos() > 0)),
        )
        .unwrap_or(i32::MAX);
        let options = StopContainerOptions {
            t: Some(t),
            ..Default::default()
        };
        match self.docker.stop_container(container, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => {
                tracing::warn!(container, "stop failed, killing: {e}");
                match self
                    .docker
                    .kill_container(container, None::<KillContainerOptions>)
                    .await
                {
                    Ok(()) => Ok(()),
                    Err(k)
                        if is_not_found(&k)
                            || crate::error::engine_message(&k).contains("is not running") =>
                    {
                        Ok(())
                    }
                    Err(_) => Err(e),
                }
            }
        }
    }

    /// Force-removes a container (`volumes`: its anonymous volumes too).
    pub(crate) async fn remove_container(
        &self,
        container: &str,
        volumes: bool,
    ) -> Result<Removed, bollard::errors::Error> {
        let options = RemoveContainerOptions {
            force: true,
            v: volumes,
            ..Default::default()
        };
        match self.docker.remove_container(container, Some(options)).await {
            Ok(()) => Ok(Removed::Removed),
            Err(e) if is_not_found(&e) => Ok(Removed::AlreadyGone),
            // A removal the previous process started before it crashed: the same outcome is
            // under way, so wait for it instead of failing and backing off.
            Err(e) if is_removal_in_progress(&e) => self.await_removal(container, e).await,
            Err(e) => Err(e),
        }
    }

    /// Waits (bounded) until a container the engine is already removing is gone.
    async fn await_removal(
        &self,
        container: &str,
        first: bollard::errors::Error,
    ) -> Result<Removed, bollard::errors::Error> {
        tracing::info!(container, "removal already in progress; waiting for it");
        let deadline = tokio::time::Instant::now() + REMOVAL_WAIT;
        while tokio::time::Instant::now() < deadline {
            let options: Option<bollard::query_parameters::InspectContainerOptions> = None;
            match self.docker.inspect_container(container, options).await {
                Err(e) if is_not_found(&e) => return Ok(Removed::Removed),
                Err(e) => return Err(e),
                Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        Err(first)
    }

    /// The container's last lines of output, joined for a one-line message.
    pub(crate) async fn last_lines(&self, container: &str) -> String {
        let options = LogsOptions {
            stdout: true,
            stderr: true,
            tail: self.config.log_lines.to_string(),
            ..Default::default()
        };
        let collect = async {
            let mut lines = Vec::new();
            let mut stream = self.docker.logs(container, Some(options));
            while let Some(Ok(chunk)) = stream.next().await {
                let text = chunk.to_string();
                lines.extend(
                    text.lines()
                        .map(str::trim_end)
                        .filter(|l| !l.is_empty())
                        .map(str::to_owned),
                );
            }
            lines
        };
        match tokio::time::timeout(Duration::from_secs(2), collect).await {
            Ok(lines) if lines.is_empty() => "(no output)".to_owned(),
            Ok(lines) => lines.join(" | "),
            Err(_) => "(logs unavailable)".to_owned(),
        }
    }
}

/// Containers carrying `label` (`key=value`) in node `scope`, in any state.
pub(crate) async fn list_in_scope(
    docker: &Docker,
    label: String,
    scope: Option<&str>,
) -> Result<Vec<ContainerSummary>, bollard::errors::Error> {
    let mut wanted = vec![label];
    // The engine ANDs label filters; "no deployer.node label" has no filter, so the unscoped
    // case is checked below.
    if let Some(scope) = scope {
        wanted.push(format!("{}={scope}", labels::NODE));
    }
    let options = ListContainersOptions {
        all: true,
        filters: Some(HashMap::from([("label".to_owned(), wanted)])),
        ..Default::default()
    };
    let mut found = docker.list_containers(Some(options)).await?;
    found.retain(|s| match &s.labels {
        Some(l) => labels::in_scope(l, scope),
        None => scope.is_none(),
    });
    Ok(found)
}

/// A container's name from a list entry, without the leading `/`.
fn summary_name(summary: &ContainerSummary) -> String {
    summary
        .names
        .iter()
        .flatten()
        .next()
        .map(|n| n.trim_start_matches('/').to_owned())
        .unwrap_or_default()
}

/// Maps a plain engine error of step `op` on `instance`.
pub(crate) fn engine<'a>(
    op: &'static str,
    service: &'a ServiceSpec,
    id: InstanceId,
) -> impl Fn(bollard::errors::Error) -> SwitchError + 'a {
    move |e| switch_error(op, service.name().as_str(), id, e)
}

/// How long a removal the engine already has under way is waited for.
const REMOVAL_WAIT: Duration = Duration::from_secs(30);

/// Whether the engine refused a removal because one is already under way (409 "removal of
/// container ... is already in progress").
pub(crate) fn is_removal_in_progress(error: &bollard::errors::Error) -> bool {
    match error {
        bollard::errors::Error::DockerResponseServerError {
            status_code: 409,
            message,
        } => message.contains("already in progress"),
        _ => false,
    }
}

/// The engine's container state, without folding paused, restarting, removing or dead into
/// "exited".
pub(crate) fn run_state(state: Option<ContainerSummaryStateEnum>) -> RunState {
    use ContainerSummaryStateEnum as S;
    match state {
        Some(S::RUNNING) => RunState::Running,
        Some(S::PAUSED) => RunState::Paused,
        Some(S::RESTARTING) => RunState::Restarting,
        Some(S::REMOVING) => RunState::Removing,
        Some(S::DEAD) => RunState::Dead,
        Some(S::CREATED | S::EXITED | S::EMPTY) | None => RunState::Stopped,
    }
}

/// A step failing for a reason of ours, with what it means for the build.
pub(crate) fn failed(
    op: &'static str,
    service: &ServiceSpec,
    id: InstanceId,
    kind: FailureKind,
    reason: impl Into<String>,
) -> SwitchError {
    step_failed(op, service.name().as_str(), id, kind, reason, None)
}

#[async_trait]
impl Switcher for DockerSwitcher {
    fn subscribe(&self) -> Option<tokio::sync::mpsc::Receiver<deployer_core::ports::EngineEvent>> {
        let watcher = events::EventWatcher {
            docker: self.docker.clone(),
            scope: self.config.scope.clone(),
            plane: self.plane.clone(),
            routed: self.routed.clone(),
            backends: self.backends.clone(),
            docker_probed: self.docker_probed.clone(),
        };
        Some(watcher.spawn())
    }

    async fn observe(&self, service: &ServiceSpec) -> Result<Observed, SwitchError> {
        let found = self
            .list(service)
            .await
            .map_err(|e| SwitchError::EngineUnreachable {
                operation: "observe",
                service: service.name().to_string(),
                source: Box::new(e),
            })?;
        let serving: Vec<bool> = match service.strategy().handover() {
            Some(h) => handover::serving(self, service, h, &found).await?,
            None => found.iter().map(|f| f.running).collect(),
        };
        let instances = found
            .iter()
            .zip(serving)
            .map(|(f, serving)| ObservedInstance {
                id: f.instance,
                image: f.image.clone(),
                digest: f.digest.clone(),
                state: f.state,
                serving,
            })
            .collect();
        Ok(Observed { instances })
    }

    async fn start(
        &self,
        service: &ServiceSpec,
        instance: &InstanceSpec,
    ) -> Result<Started, SwitchError> {
        match service.strategy().handover() {
            Some(h) => handover::start(self, service, h, instance).await,
            None => recreate::start(self, service, instance).await,
        }
    }

    async fn probe(&self, service: &ServiceSpec, id: InstanceId) -> Result<Health, SwitchError> {
        match service.strategy().handover() {
            Some(h) => handover::probe(self, service, h, id).await,
            None => recreate::probe(self, service, id).await,
        }
    }

    async fn promote(
        &self,
        service: &ServiceSpec,
        id: InstanceId,
    ) -> Result<Promoted, SwitchError> {
        match service.strategy().handover() {
            Some(_) => handover::promote(self, service, id).await,
            None => recreate::promote(self, service, id).await,
        }
    }

    async fn retire(&self, service: &ServiceSpec, id: InstanceId) -> Result<Retired, SwitchError> {
        match (service.strategy().handover(), service.strategy().ordering()) {
            (Some(h), _) => handover::retire(self, service, h, id).await,
            (None, Ordering::StopOutdated) => stop::retire(self, service, id).await,
            (None, _) => recreate::retire(self, service, id).await,
        }
    }

    async fn remove(&self, service: &ServiceSpec, id: InstanceId) -> Result<Removed, SwitchError> {
        match service.strategy().handover() {
            Some(_) => handover::remove(self, service, id).await,
            None => recreate::remove(self, service, id).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_removal_under_way_is_told_apart_from_other_conflicts() {
        let error =
            |status_code: u16, message: &str| bollard::errors::Error::DockerResponseServerError {
                status_code,
                message: message.to_owned(),
            };
        assert!(is_removal_in_progress(&error(
            409,
            "removal of container web-g2-s0 is already in progress"
        )));
        assert!(!is_removal_in_progress(&error(
            409,
            "Conflict. The container name \"/web-g2-s0\" is already in use"
        )));
        assert!(!is_removal_in_progress(&error(500, "already in progress")));
    }

    #[test]
    fn engine_states_are_not_folded_into_exited() {
        use ContainerSummaryStateEnum as S;
        assert_eq!(run_state(Some(S::PAUSED)), RunState::Paused);
        assert_eq!(run_state(Some(S::RESTARTING)), RunState::Restarting);
        assert_eq!(run_state(Some(S::REMOVING)), RunState::Removing);
        assert_eq!(run_state(Some(S::DEAD)), RunState::Dead);
        assert_eq!(run_state(Some(S::EXITED)), RunState::Stopped);
        assert_eq!(run_state(Some(S::RUNNING)), RunState::Running);
    }
}
