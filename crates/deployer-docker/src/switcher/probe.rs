//! One probe of one container: its state first (an exited container is not probed further),
//! then the service's check over the container's published port on the host.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use bollard::models::{
    ContainerInspectResponse, ContainerState, ContainerStateStatusEnum, HealthStatusEnum,
};
use deployer_core::ServiceSpec;
use deployer_core::reconcile::Health;
use deployer_core::service::Probe;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::DockerSwitcher;

/// How long a TCP probe watches a fresh connection for an immediate close. Docker's
/// userland proxy accepts on the published port even when nothing listens in the
/// container, and closes the connection a moment later: that close is the "refused".
const TCP_SETTLE: Duration = Duration::from_millis(100);

/// What a container's state alone says about its health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StateVerdict {
    /// It runs: probe it.
    Probe,
    /// Not answering now, but it may (created, paused, restarting): unhealthy until the
    /// deadline, with the reason.
    NotYet(String),
    /// It ended (exited, dead, being removed): no point probing further.
    Ended,
}

/// The verdict of the engine's state. A paused container is not an exited one: it fails its
/// probe by the deadline, saying it is paused, instead of at once with a made-up exit code.
pub(crate) fn verdict_of_state(state: &ContainerState) -> StateVerdict {
    use ContainerStateStatusEnum as S;
    match state.status {
        Some(S::RUNNING) if state.restarting != Some(true) => StateVerdict::Probe,
        Some(S::RUNNING | S::RESTARTING) => StateVerdict::NotYet(format!(
            "restarting after exit code {}",
            state.exit_code.unwrap_or_default()
        )),
        Some(S::CREATED) => StateVerdict::NotYet("created but not started".to_owned()),
        Some(S::PAUSED) => StateVerdict::NotYet("paused".to_owned()),
        Some(S::EXITED | S::DEAD | S::REMOVING | S::EMPTY) | None => StateVerdict::Ended,
    }
}

/// How an ended container ended, for people.
fn ended(state: &ContainerState) -> String {
    use ContainerStateStatusEnum as S;
    let how = match state.status {
        Some(S::DEAD) => "dead, ",
        Some(S::REMOVING) => "being removed, ",
        _ => "",
    };
    let code = state.exit_code.unwrap_or_default();
    let oom = if state.oom_killed == Some(true) {
        " (out of memory)"
    } else {
        ""
    };
    let error = state
        .error
        .as_ref()
        .filter(|e| !e.is_empty())
        .map(|e| format!("; {e}"))
        .unwrap_or_default();
    format!("{how}exit code {code}{oom}{error}")
}

/// Probes the inspected container: `container_port` is the port the check goes to (its
/// published host port); `None` means the first published port.
pub(crate) async fn check(
    switcher: &DockerSwitcher,
    service: &ServiceSpec,
    container: &ContainerInspectResponse,
    container_port: Option<u16>,
) -> Health {
    let state = container.state.clone().unwrap_or_default();
    let id = container.id.clone().unwrap_or_default();
    match verdict_of_state(&state) {
        StateVerdict::Probe => {}
        StateVerdict::NotYet(why) => return Health::Unhealthy(why),
        StateVerdict::Ended => {
            let lines = switcher.last_lines(&id).await;
            return Health::Exited(format!("{}; last output: {lines}", ended(&state)));
        }
    }
    let health = service.health();
    let target = || {
        host_addr(container, container_port, switcher.config.host_ip)
            .ok_or_else(|| "the container publishes no port to probe".to_owned())
    };
    match health.probe() {
        Probe::Running => Health::Healthy,
        Probe::Docker => match state.health.and_then(|h| h.status) {
            Some(HealthStatusEnum::HEALTHY) => Health::Healthy,
            Some(HealthStatusEnum::STARTING) => {
                Health::Unhealthy("docker health: starting".to_owned())
            }
            Some(HealthStatusEnum::UNHEALTHY) => {
                Health::Unhealthy("docker health: unhealthy".to_owned())
            }
            _ => Health::Unhealthy("the image has no HEALTHCHECK to wait for".to_owned()),
        },
        Probe::Http { path, status } => match target() {
            Ok(addr) => http(addr, path, *status, health.timeout()).await,
            Err(e) => Health::Unhealthy(e),
        },
        Probe::Tcp => match target() {
            Ok(addr) => tcp(addr, health.timeout()).await,
            Err(e) => Health::Unhealthy(e),
        },
        other => Health::Unhealthy(format!("probe {other:?} is not supported")),
    }
}

/// The host address `container_port` (or the first published port) is reachable at.
/// Wildcard host addresses become loopback: probes never leave the host.
pub(crate) fn host_addr(
    container: &ContainerInspectResponse,
    container_port: Option<u16>,
    default_ip: IpAddr,
) -> Option<SocketAddr> {
    let ports = container.network_settings.as_ref()?.ports.as_ref()?;
    let mut keys: Vec<&String> = ports.keys().filter(|k| k.ends_with("/tcp")).collect();
    keys.sort_by_key(|k| k.split('/').next().and_then(|p| p.parse::<u16>().ok()));
    let key = match container_port {
        Some(port) => keys.into_iter().find(|k| **k == format!("{port}/tcp"))?,
        None => keys.into_iter().find(|k| {
            ports
                .get(*k)
                .is_some_and(|b| b.as_ref().is_some_and(|b| !b.is_empty()))
        })?,
    };
    let binding = ports.get(key)?.as_ref()?.iter().find(|b| {
        b.host_ip
            .as_deref()
            .is_none_or(|ip| ip.parse::<IpAddr>().is_ok_and(|ip| ip.is_ipv4()) || ip.is_empty())
    })?;
    let port: u16 = binding.host_port.as_deref()?.parse().ok()?;
    let ip = match binding
        .host_ip
        .as_deref()
        .and_then(|ip| ip.parse::<IpAddr>().ok())
    {
        Some(ip) if !ip.is_unspecified() => ip,
        Some(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        None => default_ip,
    };
    Some(SocketAddr::new(ip, port))
}

/// `GET path` answers `expected`?
async fn http(addr: SocketAddr, path: &str, expected: u16, timeout: Duration) -> Health {
    let attempt = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: deployer-probe\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut head = Vec::with_capacity(128);
        let mut buf = [0u8; 128];
        while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 1024 {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        std::io::Result::Ok(head)
    };
    match tokio::time::timeout(timeout, attempt).await {
        Err(_) => Health::Unhealthy(format!(
            "GET {path} on {addr}: no answer within {timeout:?}"
        )),
        Ok(Err(e)) => Health::Unhealthy(format!("GET {path} on {addr}: {e}")),
        Ok(Ok(head)) if head.is_empty() => Health::Unhealthy(format!(
            "GET {path} on {addr}: connection closed without an answer"
        )),
        Ok(Ok(head)) => {
            let line = String::from_utf8_lossy(&head);
            let status = line
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse::<u16>().ok());
            match status {
                Some(s) if s == expected => Health::Healthy,
                Some(s) => {
                    Health::Unhealthy(format!("GET {path} answered {s}, expected {expected}"))
                }
                None => Health::Unhealthy(format!("GET {path} on {addr}: not an HTTP answer")),
            }
        }
    }
}

/// A TCP connection is accepted and not closed at once.
async fn tcp(addr: SocketAddr, timeout: Duration) -> Health {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => {
            return Health::Unhealthy(format!(
                "connecting to {addr}: no answer within {timeout:?}"
            ));
        }
        Ok(Err(e)) => return Health::Unhealthy(format!("connecting to {addr}: {e}")),
        Ok(Ok(stream)) => stream,
    };
    let mut stream = stream;
    let mut buf = [0u8; 64];
    match tokio::time::timeout(TCP_SETTLE.min(timeout), stream.read(&mut buf)).await {
        Ok(Ok(0)) => Health::Unhealthy(format!(
            "{addr} closed the connection at once: nothing listens behind it"
        )),
        Ok(Err(e)) => Health::Unhealthy(format!("{addr}: {e}")),
        // Data (a greeting) or silence on an open connection: something listens.
        Ok(Ok(_)) | Err(_) => Health::Healthy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(status: ContainerStateStatusEnum, restarting: bool) -> ContainerState {
        ContainerState {
            status: Some(status),
            restarting: Some(restarting),
            exit_code: Some(0),
            ..Default::default()
        }
    }

    #[test]
    fn only_ended_containers_end_the_probe_and_a_paused_one_says_so() {
        use ContainerStateStatusEnum as S;
        assert_eq!(
            verdict_of_state(&state(S::RUNNING, false)),
            StateVerdict::Probe
        );
        assert_eq!(
            verdict_of_state(&state(S::PAUSED, false)),
            StateVerdict::NotYet("paused".to_owned())
        );
        assert!(matches!(
            verdict_of_state(&state(S::RUNNING, true)),
            StateVerdict::NotYet(why) if why.starts_with("restarting")
        ));
        assert!(matches!(
            verdict_of_state(&state(S::RESTARTING, true)),
            StateVerdict::NotYet(_)
        ));
        for ended in [S::EXITED, S::DEAD, S::REMOVING] {
            assert_eq!(
                verdict_of_state(&state(ended, false)),
                StateVerdict::Ended,
                "{ended:?}"
            );
        }
        assert_eq!(ended(&state(S::DEAD, false)), "dead, exit code 0");
    }
}
