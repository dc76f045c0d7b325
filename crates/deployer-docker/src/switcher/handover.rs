//! The handover strategy: candidates on an ephemeral loopback port beside the old ones,
//! traffic moved in deployer's proxy, old ones drained then stopped.
//!
//! Containers are named `<service>-g<gen>-s<slot>` (`<service>-<scope>-g<gen>-s<slot>` with a
//! node scope), so a repeated start finds the container a crash left and reuses it.

use std::net::SocketAddr;

use deployer_core::ServiceSpec;
use deployer_core::ports::{FailureKind, Promoted, Removed, Retired, Started, SwitchError};
use deployer_core::reconcile::{Health, InstanceId, InstanceSpec};
use deployer_core::service::Handover;

use deployer_plane::{PlaneError, RouteBackend, RouteSplit};

use super::container_config::{self, Publish};
use super::probe::{check, host_addr};
use super::{DockerSwitcher, Found, engine, failed, labels};
use crate::error::{Failure, classify};

/// Whether each found container takes traffic (its address is a live backend of the
/// proxy). Backends of no running container of the service are dropped from the proxy:
/// they are leftovers (a container removed or restarted behind our back).
pub(super) async fn serving(
    switcher: &DockerSwitcher,
    service: &ServiceSpec,
    handover: &Handover,
    found: &[Found],
) -> Result<Vec<bool>, SwitchError> {
    if !switcher.is_routed(service.name()) {
        return Ok(vec![false; found.len()]);
    }
    let name = service.name().as_str();
    let plane = switcher.plane();
    let live = plane
        .backends(name)
        .await
        .map_err(|e| SwitchError::EngineUnreachable {
            operation: "observe",
            service: name.to_owned(),
            source: Box::new(e),
        })?;
    let addrs: Vec<Option<SocketAddr>> = found
        .iter()
        .map(|f| {
            if !f.running {
                return None;
            }
            let published = published_addr(switcher, f, handover.container_port());
            // The address it was promoted with, as long as it still has it.
            switcher
                .recorded_backend(service.name(), f.instance)
                .filter(|a| Some(*a) == published)
                .or(published)
        })
        .collect();
    for backend in &live {
        if !addrs.contains(&Some(*backend)) {
            tracing::warn!(service = %service.name(), %backend, "dropping a proxy backend no running container has");
            if let Err(error) = plane.remove_backend(name, *backend).await {
                tracing::warn!(service = %service.name(), %backend, %error, "dropping the backend failed");
            }
        }
    }
    Ok(addrs
        .into_iter()
        .map(|a| a.is_some_and(|a| live.contains(&a)))
        .collect())
}

/// The host address of `container_port` in a list entry.
fn published_addr(
    switcher: &DockerSwitcher,
    found: &Found,
    container_port: u16,
) -> Option<SocketAddr> {
    found.summary.ports.iter().flatten().find_map(|p| {
        let ip = p.ip.as_deref()?.parse().ok()?;
        let port = p.public_port?;
        (p.private_port == container_port && ip == switcher.config.host_ip)
            .then(|| SocketAddr::new(ip, port))
    })
}

pub(super) async fn start(
    switcher: &DockerSwitcher,
    service: &ServiceSpec,
    handover: &Handover,
    instance: &InstanceSpec,
) -> Result<Started, SwitchError> {
    let id = instance.id;
    let err = engine("start", service, id);
    let name = switcher.handover_name(service, id);
    if let Some(existing) = switcher.inspect(&name).await.map_err(&err)? {
        return restart_existing(switcher, service, &name, &existing).await;
    }
    let image = switcher.image_for(instance).await;
    let spec = container_config::from_template(
        service.template(),
        &image,
        switcher.instance_labels(service, instance, &name),
        labels::env_for_instance(service, instance),
        Publish::Loopback {
            container_port: handover.container_port(),
            host_ip: switcher.config.host_ip,
        },
    )
    .map_err(|reason| failed("start", service, id, FailureKind::Permanent, reason))?;
    match switcher.create_and_start(&name, spec).await {
        Ok(()) => {
            tracing::info!(service = %service.name(), instance = %id, container = %name, %image, "candidate started");
            Ok(Started::Created)
        }
        // Created by an earlier attempt that did not hear back: take it as it is.
        Err(e) if classify(&e) == Failure::Conflict => {
            match switcher.inspect(&name).await.map_err(&err)? {
                Some(existing) => restart_existing(switcher, service, &name, &existing).await,
                None => Err(err(e)),
            }
        }
        Err(e) => Err(err(e)),
    }
}

async fn restart_existing(
    switcher: &DockerSwitcher,
    service: &ServiceSpec,
    name: &str,
    existing: &bollard::models::ContainerInspectResponse,
) -> Result<Started, SwitchError> {
    let labels = existing
        .config
        .as_ref()
        .and_then(|c| c.labels.clone())
        .unwrap_or_default();
    let id = super::labels::instance_of(&labels);
    let instance = InstanceId {
        generation: id.0.unwrap_or_default(),
        slot: id.1.unwrap_or_default(),
    };
    if labels.get(super::labels::SERVICE).map(String::as_str) != Some(service.name().as_str())
        || !super::labels::in_scope(&labels, switcher.scope())
    {
        return Err(failed(
            "start",
            service,
            instance,
            FailureKind::Permanent,
            format!("container {name} exists but does not belong to the service"),
        ));
    }
    if existing.state.as_ref().and_then(|s| s.running) == Some(true) {
        return Ok(Started::AlreadyRunning);
    }
    switcher
        .start_container(name)
        .await
        .map_err(engine("start", service, instance))?;
    Ok(Started::Restarted)
}

pub(super) async fn probe(
    switcher: &DockerSwitcher,
    service: &ServiceSpec,
    handover: &Handover,
    id: InstanceId,
) -> Result<Health, SwitchError> {
    let name = switcher.handover_name(service, id);
    match switcher
        .inspect(&name)
        .await
        .map_err(engine("probe", service, id))?
    {
        Some(container) => {
            let health = check(
                switcher,
                service,
                &container,
                Some(handover.container_port()),
            )
            .await;
            // Once it takes traffic, clients' requests count as much as the health check.
            Ok(
                match (health, super::traffic::problem(switcher, service, id).await) {
                    (Health::Healthy, Some(problem)) => Health::Unhealthy(problem),
                    (health, _) => health,
                },
            )
        }
        None => Ok(Health::Exited(format!("container {name} does not exist"))),
    }
}

pub(super) async fn promote(
    switcher: &DockerSwitcher,
    service: &ServiceSpec,
    id: InstanceId,
) -> Result<Promoted, SwitchError> {
    let name = switcher.handover_name(service, id);
    let Some(handover) = service.strategy().handover() else {
        return Err(failed(
            "promote",
            service,
            id,
            FailureKind::Permanent,
            "not a handover service",
        ));
    };
    let container = switcher
        .inspect(&name)
        .await
        .map_err(engine("promote", service, id))?
        .ok_or_else(|| {
            failed(
                "promote",
                service,
                id,
                FailureKind::Transient,
                format!("container {name} does not exist"),
            )
        })?;
    if container.state.as_ref().and_then(|s| s.running) != Some(true) {
        return Err(failed(
            "promote",
            service,
            id,
            FailureKind::Build,
            format!("container {name} is not running"),
        ));
    }
    let addr = host_addr(
        &container,
        Some(handover.container_port()),
        switcher.config.host_ip,
    )
    .ok_or_else(|| {
        failed(
            "promote",
            service,
            id,
            FailureKind::Permanent,
            format!("container {name} publishes no port"),
        )
    })?;
    let plane_failed =
        |reason: &str, e: Box<dyn std::error::Error + Send + Sync>| SwitchError::Failed {
            operation: "promote",
            service: service.name().to_string(),
            instance: id,
            kind: FailureKind::Transient,
            reason: reason.to_owned(),
            source: Some(e),
        };
    if !switcher
        .route_for(service, false)
        .await
        .map_err(|e| plane_failed("the service's route is not set", Box::new(e)))?
    {
        return Err(failed(
            "promote",
            service,
            id,
            FailureKind::Transient,
            "no proxy",
        ));
    }
    let previous = switcher.record_backend(service.name(), id, Some(addr));
    // Promoted again (a rollback to it): whatever drain it was under no longer applies.
    drop(switcher.take_drain(service.name(), id));
    // The slot's older instance leaves the rotation in the same step this one joins it, so
    // new requests move from old to new at one instant (adding first and removing after
    // would round-robin between the two meanwhile). A container restarted by its restart
    // policy comes back on a new ephemeral port: its old address leaves in the same step.
    let peers = switcher.slot_peers(service.name(), id);
    // A canary joins beside the old build, which keeps serving the other clients until the
    // hold ends (its retire then ends the split).
    let canary = service.strategy().canary().filter(|_| !peers.is_empty());
    let mut out: Vec<SocketAddr> = match canary {
        Some(_) => Vec::new(),
        None => peers.iter().map(|(_, a)| *a).collect(),
    };
    out.extend(previous.filter(|p| *p != addr));
    // Grouped by generation, so its metrics outlive the ephemeral address.
    let backend = RouteBackend::new(addr, id.generation.to_string());
    let swapped = switcher
        .plane()
        .swap(service.name().as_str(), &out, &backend)
        .await
        .map_err(|e| plane_failed("moving traffic in the proxy failed", Box::new(e)))?;
    if let Some(canary) = canary {
        let split = RouteSplit {
            group: id.generation.to_string(),
            percent: canary.percent(),
            header: canary.header().map(str::to_owned),
        };
        switcher
            .plane()
            .set_split(service.name().as_str(), Some(&split))
            .await
            .map_err(|e| plane_failed("splitting traffic in the proxy failed", Box::new(e)))?;
        tracing::info!(service = %service.name(), instance = %id, percent = canary.percent(), "canary serving a share of clients");
    }
    let outcome = match swapped.added {
        deployer_proxy::AddOutcome::Added => Promoted::Switched,
        _ => Promoted::AlreadyServing,
    };
    // The retire of the replaced instance waits for this drain before it stops it.
    if let Some((peer, _)) = peers.iter().find(|(_, a)| swapped.draining.contains(a)) {
        switcher.keep_drain(service.name(), *peer, swapped.draining);
    }
    tracing::info!(service = %service.name(), instance = %id, backend = %addr, "serving");
    Ok(outcome)
}

pub(super) async fn retire(
    switcher: &DockerSwitcher,
    service: &ServiceSpec,
    handover: &Handover,
    id: InstanceId,
) -> Result<Retired, SwitchError> {
    let name = switcher.handover_name(service, id);
    let container = switcher
        .inspect(&name)
        .await
        .map_err(engine("retire", service, id))?;
    let recorded = switcher.record_backend(service.name(), id, None);
    let published = container
        .as_ref()
        .and_then(|c| host_addr(c, Some(handover.container_port()), switcher.config.host_ip));
    // Taken out of rotation when its successor was promoted: wait for what it still serves.
    let mut draining = switcher.take_drain(service.name(), id).unwrap_or_default();
    let name_str = service.name().as_str();
    let plane = switcher.plane();
    let plane_err = |e: deployer_plane::PlaneError| SwitchError::Failed {
        operation: "retire",
        service: name_str.to_owned(),
        instance: id,
        kind: FailureKind::Transient,
        reason: "draining it in the proxy failed".to_owned(),
        source: Some(Box::new(e)),
    };
    if switcher.is_routed(service.name()) {
        for addr in [recorded, published].into_iter().flatten() {
            draining.extend(
                plane
                    .remove_backend(name_str, addr)
                    .await
                    .map_err(plane_err)?,
            );
        }
    }
    let cut = if draining.is_empty() {
        0
    } else {
        plane
            .drain(name_str, &draining, service.timeouts().drain)
            .await
            .map_err(plane_err)?
            .cut
    };
    if service.strategy().canary().is_some() {
        end_settled_split(switcher, service)
            .await
            .map_err(plane_err)?;
    }
    let running = container
        .as_ref()
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.running)
        == Some(true);
    if !running {
        return Ok(if cut > 0 {
            Retired::Stopped { cut }
        } else {
            Retired::AlreadyStopped
        });
    }
    switcher
        .stop_container(&name, service.timeouts().stop)
        .await
        .map_err(engine("retire", service, id))?;
    tracing::info!(service = %service.name(), instance = %id, cut, "retired");
    Ok(Retired::Stopped { cut })
}

pub(super) async fn remove(
    switcher: &DockerSwitcher,
    service: &ServiceSpec,
    id: InstanceId,
) -> Result<Removed, SwitchError> {
    let name = switcher.handover_name(service, id);
    // Never leave a backend pointing at a deleted container; its drain is not awaited, as
    // the engine only removes what no longer takes traffic.
    if let Some(addr) = switcher.record_backend(service.name(), id, None)
        && switcher.is_routed(service.name())
        && let Err(error) = switcher
            .plane()
            .remove_backend(service.name().as_str(), addr)
            .await
    {
        tracing::warn!(service = %service.name(), instance = %id, %error, "taking a removed container out of the proxy failed");
    }
    drop(switcher.take_drain(service.name(), id));
    let removed = switcher
        .remove_container(&name, true)
        .await
        .map_err(engine("remove", service, id))?;
    tracing::debug!(service = %service.name(), instance = %id, ?removed, "removed");
    Ok(removed)
}

/// Ends a canary's split once one build is left in the proxy: the old one (rolled back) or the
/// candidate (promoted).
async fn end_settled_split(
    switcher: &DockerSwitcher,
    service: &ServiceSpec,
) -> Result<(), PlaneError> {
    let name = service.name().as_str();
    let plane = switcher.plane();
    let Some(route) = plane
        .routes()
        .await?
        .into_iter()
        .find(|r| r.service == name)
    else {
        return Ok(());
    };
    let mut groups: Vec<&str> = route.backends.iter().map(|b| b.group.as_str()).collect();
    groups.sort_unstable();
    groups.dedup();
    if route.split.is_some() && groups.len() <= 1 {
        plane.set_split(name, None).await?;
        tracing::info!(service = %name, serving = ?groups, "canary split ended");
    }
    Ok(())
}
