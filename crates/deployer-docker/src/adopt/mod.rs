//! Adoption: containers deployer did not create, opted in with `deployer.enable=true`, are
//! tracked as services of their own (recreate strategy by default).
//!
//! Labels read on such a container (all optional but the first):
//!
//! | label | meaning | default |
//! |---|---|---|
//! | `deployer.enable=true` | opt in | (required) |
//! | `deployer.service` | service name | the container's name |
//! | `deployer.image` | repo:tag to track | the image the container was created from |
//! | `deployer.strategy` | `recreate` or `stop` | `recreate` |
//! | `deployer.health.kind` | `http`, `tcp`, `docker`, `running` | `docker` with a HEALTHCHECK, else `running` |
//! | `deployer.health.path`, `.status` | HTTP probe | `/`, `200` |
//! | `deployer.health.interval`, `.timeout`, `.deadline` | durations (`500ms`, `2s`, `1m`) | 1 s, 2 s, 60 s |
//! | `deployer.health.threshold` | consecutive successes | 1 |
//!
//! Containers without the opt-in label are never touched, whatever image they run. Under a
//! node scope (see [`crate::SwitcherConfig::scope`]) only containers also labelled
//! `deployer.node=<scope>` are adopted; without one, containers carrying a `deployer.node`
//! label belong to a scoped deployer and are left alone.

mod follow;

pub use follow::follow_adoptions;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bollard::Docker;
use bollard::models::ContainerSummaryStateEnum;
use deployer_core::service::{ContainerTemplate, HealthCheck, Probe, Strategy};
use deployer_core::{ImageRef, ServiceName, ServiceSpec};

use crate::error::DockerError;
use crate::switcher::{labels, list_in_scope};

/// Finds the adopted services: containers labelled `deployer.enable=true` in node `scope`
/// (the switcher's [`crate::SwitcherConfig::scope`]), grouped by service, minus services
/// declared in `declared` (the config wins). Containers whose labels make no sense are
/// skipped with a warning, never guessed at.
pub async fn discover_adopted(
    docker: &Docker,
    declared: &[ServiceSpec],
    scope: Option<&str>,
) -> Result<Vec<ServiceSpec>, DockerError> {
    let containers = list_in_scope(docker, format!("{}=true", labels::ENABLE), scope)
        .await
        .map_err(|source| DockerError::Engine {
            operation: "listing adoptable containers",
            subject: labels::ENABLE.to_owned(),
            source,
        })?;
    let mut groups: BTreeMap<ServiceName, Vec<_>> = BTreeMap::new();
    for container in containers {
        let name = container
            .names
            .iter()
            .flatten()
            .next()
            .cloned()
            .unwrap_or_default();
        let container_labels = container.labels.clone().unwrap_or_default();
        match labels::adopted_service(&container_labels, &name) {
            Some(service) => groups.entry(service).or_default().push(container),
            None => tracing::warn!(
                container = %name,
                "deployer.enable is set but neither deployer.service nor the container name is a valid service name; not adopted"
            ),
        }
    }
    let mut specs = Vec::new();
    for (service, members) in groups {
        if declared.iter().any(|d| d.name() == &service) {
            tracing::debug!(service = %service, "declared in the config; its labels are ignored");
            continue;
        }
        // The running container speaks for the service; a stopped one only if none runs.
        let running = members
            .iter()
            .filter(|c| c.state == Some(ContainerSummaryStateEnum::RUNNING))
            .count();
        let representative = members
            .iter()
            .max_by_key(|c| {
                (
                    c.state == Some(ContainerSummaryStateEnum::RUNNING),
                    c.created,
                )
            })
            .and_then(|c| c.id.clone())
            .unwrap_or_default();
        let inspect = docker
            .inspect_container(
                &representative,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            .map_err(|source| DockerError::Engine {
                operation: "inspecting an adoptable container",
                subject: representative.clone(),
                source,
            })?;
        match adopted_spec(
            &service,
            &inspect,
            u32::try_from(running.max(1)).unwrap_or(1),
        ) {
            Ok(spec) => {
                tracing::info!(service = %service, image = %spec.image(), strategy = spec.strategy().name(), "adopted");
                specs.push(spec);
            }
            Err(problem) => {
                tracing::warn!(service = %service, container = %representative, "not adopted: {problem}")
            }
        }
    }
    Ok(specs)
}

fn adopted_spec(
    service: &ServiceName,
    inspect: &bollard::models::ContainerInspectResponse,
    replicas: u32,
) -> Result<ServiceSpec, String> {
    let config = inspect.config.clone().unwrap_or_default();
    let container_labels = config.labels.clone().unwrap_or_default();
    let image = match container_labels.get(labels::IMAGE) {
        Some(image) => image.clone(),
        None => config.image.clone().unwrap_or_default(),
    };
    if image.starts_with("sha256:") {
        return Err(format!(
            "it was created from image ID {image}, not a repo:tag: set deployer.image"
        ));
    }
    let image = ImageRef::parse(&image).map_err(|e| e.to_string())?;
    if image.digest().is_some() && image.tag().is_none() {
        return Err(format!(
            "it runs {image}, pinned by digest: set deployer.image to the repo:tag to track"
        ));
    }
    let strategy = match container_labels.get(labels::STRATEGY).map(String::as_str) {
        None | Some("recreate") => Strategy::Recreate,
        Some("stop") => Strategy::Stop,
        Some(other) => {
            return Err(format!(
                "deployer.strategy={other}: adopted containers use recreate or stop (handover needs a proxy address: declare the service)"
            ));
        }
    };
    let has_healthcheck = config
        .healthcheck
        .as_ref()
        .and_then(|h| h.test.as_ref())
        .is_some_and(|t| t.first().is_some_and(|k| k != "NONE"));
    let health = health_from_labels(&container_labels, has_healthcheck)?;
    // The probe's port check needs the published ports the container already has.
    let ports: Vec<String> = inspect
        .host_config
        .as_ref()
        .and_then(|h| h.port_bindings.clone())
        .unwrap_or_default()
        .into_iter()
        .flat_map(|(port, bindings)| {
            bindings.unwrap_or_default().into_iter().map(move |b| {
                format!(
                    "{}:{}:{port}",
                    b.host_ip.unwrap_or_default(),
                    b.host_port.unwrap_or_default()
                )
            })
        })
        .collect();
    ServiceSpec::builder(service.as_str(), image)
        .strategy(strategy)
        .health(health)
        .replicas(replicas)
        .template(ContainerTemplate {
            ports,
            ..Default::default()
        })
        .build()
        .map_err(|e| e.to_string())
}

fn health_from_labels(
    container_labels: &HashMap<String, String>,
    has_healthcheck: bool,
) -> Result<HealthCheck, String> {
    let get = |key: &str| container_labels.get(&format!("{}{key}", labels::HEALTH_PREFIX));
    let duration = |key: &str, default: Duration| -> Result<Duration, String> {
        match get(key) {
            Some(text) => parse_duration(text).ok_or_else(|| {
                format!(
                    "{}{key}={text:?} is not a duration like 500ms, 2s or 1m",
                    labels::HEALTH_PREFIX
                )
            }),
            None => Ok(default),
        }
    };
    let probe = match get("kind").map(String::as_str) {
        Some("http") => Probe::Http {
            path: get("path").cloned().unwrap_or_else(|| "/".to_owned()),
            status: match get("status") {
                Some(s) => s
                    .parse()
                    .map_err(|_| format!("deployer.health.status={s:?} is not a status code"))?,
                None => 200,
            },
        },
        Some("tcp") => Probe::Tcp,
        Some("docker") => Probe::Docker,
        Some("running") => Probe::Running,
        None if has_healthcheck => Probe::Docker,
        None => Probe::Running,
        Some(other) => {
            return Err(format!(
                "deployer.health.kind={other:?}: expected http, tcp, docker or running"
            ));
        }
    };
    let defaults = HealthCheck::default();
    let threshold = match get("threshold") {
        Some(t) => t
            .parse()
            .map_err(|_| format!("deployer.health.threshold={t:?} is not a number"))?,
        None => defaults.healthy_threshold(),
    };
    HealthCheck::new(
        probe,
        duration("interval", defaults.interval())?,
        duration("timeout", defaults.timeout())?,
        duration("deadline", defaults.deadline())?,
        threshold,
    )
    .map_err(|e| e.to_string())
}

/// `500ms`, `2s`, `1m`, or a bare number of seconds.
fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => (&text[..i], &text[i..]),
        None => (text, "s"),
    };
    let value: f64 = number.parse().ok()?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(seconds).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_labels_refine_the_probe() {
        let l = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let h = health_from_labels(
            &l(&[
                ("deployer.health.kind", "http"),
                ("deployer.health.path", "/ready"),
                ("deployer.health.interval", "250ms"),
                ("deployer.health.deadline", "1m"),
            ]),
            false,
        )
        .unwrap();
        assert_eq!(
            h.probe(),
            &Probe::Http {
                path: "/ready".into(),
                status: 200
            }
        );
        assert_eq!(h.interval(), Duration::from_millis(250));
        assert_eq!(h.deadline(), Duration::from_secs(60));
        assert_eq!(
            health_from_labels(&l(&[]), true).unwrap().probe(),
            &Probe::Docker
        );
        assert_eq!(
            health_from_labels(&l(&[]), false).unwrap().probe(),
            &Probe::Running
        );
        assert!(health_from_labels(&l(&[("deployer.health.kind", "ping")]), false).is_err());
        assert!(health_from_labels(&l(&[("deployer.health.interval", "soon")]), false).is_err());
    }
}
