use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{HealthCheck, SpecError};

/// How a service moves from one generation to the next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Strategy {
    /// Start the candidate beside the old one, probe it, switch our proxy to it, drain, stop the
    /// old one. Zero downtime; needs the service to sit behind deployer's proxy.
    Handover(Handover),
    /// Handover in two steps: the candidate first takes a share of clients (sticky per client)
    /// beside the old build for a hold period, judged by its health and the proxy's counters
    /// of its requests; then it takes all traffic, or is rolled back.
    Canary(Canary),
    /// Stop the old container, start the new one with the identical config; if it is unhealthy,
    /// start the old one again. A gap in service, but works for anything.
    Recreate,
    /// Stop containers that run an outdated image and leave the restart to a supervisor
    /// (systemd, a restart policy): die-net/deployer's way.
    Stop,
}

impl Strategy {
    /// The proxy settings, for the strategies behind deployer's proxy (handover, canary).
    pub fn handover(&self) -> Option<&Handover> {
        match self {
            Self::Handover(h) => Some(h),
            Self::Canary(c) => Some(&c.handover),
            _ => None,
        }
    }

    /// The canary settings, for the canary strategy.
    pub fn canary(&self) -> Option<&Canary> {
        match self {
            Self::Canary(c) => Some(c),
            _ => None,
        }
    }

    /// Short name for logs and status output.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Handover(_) => "handover",
            Self::Canary(_) => "canary",
            Self::Recreate => "recreate",
            Self::Stop => "stop",
        }
    }

    /// The order the planner replaces a slot's container in.
    pub fn ordering(&self) -> Ordering {
        match self {
            Self::Handover(_) | Self::Canary(_) => Ordering::StartFirst,
            Self::Recreate => Ordering::StopFirst,
            Self::Stop => Ordering::StopOutdated,
        }
    }

    /// How long a new generation is watched once it serves, while the old one is kept to go
    /// back to: the health check's watch for handover, the hold for a canary, none otherwise.
    pub fn watch_period(&self, health: &HealthCheck) -> Duration {
        match self {
            Self::Handover(_) => health.watch(),
            Self::Canary(c) => c.hold,
            Self::Recreate | Self::Stop => Duration::ZERO,
        }
    }

    /// Whether the watch needs an old build beside the new one: a canary shares traffic with
    /// it (a first deploy has nothing to share with, so it is not held), while a handover's
    /// watch judges the new build alone.
    pub fn watch_needs_old_build(&self) -> bool {
        matches!(self, Self::Canary(_))
    }

    /// Whether promoting a new container takes its slot's traffic from the old one at once
    /// (handover), rather than beside it (a canary shares it until the hold ends).
    pub fn promote_takes_traffic(&self) -> bool {
        matches!(self, Self::Handover(_))
    }
}

/// How the planner replaces a slot's container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ordering {
    /// Start, probe and promote the new one, then retire the old one (zero downtime).
    StartFirst,
    /// Stop the old one first (it keeps its container to go back to), then start the new one.
    StopFirst,
    /// Only stop containers of outdated builds; a supervisor starts the new ones.
    StopOutdated,
}

/// The canary strategy's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Canary {
    handover: Handover,
    percent: u8,
    hold: Duration,
    header: Option<String>,
}

impl Canary {
    /// `percent` of clients (1 to 99) go to the candidate for `hold` (more than zero), behind
    /// the proxy of `handover` (HTTP); `header` lets testers pick a side (`always`/`never`).
    pub fn new(
        handover: Handover,
        percent: u8,
        hold: Duration,
        header: Option<String>,
    ) -> Result<Self, SpecError> {
        if handover.protocol() != ProxyProtocol::Http {
            return Err(SpecError::invalid(
                "strategy",
                "a canary splits HTTP requests: it needs proxy.protocol = \"http\"",
            ));
        }
        if !(1..=99).contains(&percent) {
            return Err(SpecError::invalid("canary.percent", "must be from 1 to 99"));
        }
        if hold.is_zero() {
            return Err(SpecError::invalid("canary.hold", "must be more than 0s"));
        }
        Ok(Self {
            handover,
            percent,
            hold,
            header,
        })
    }

    /// The proxy settings.
    pub fn handover(&self) -> &Handover {
        &self.handover
    }

    /// The share of clients sent to the candidate.
    pub fn percent(&self) -> u8 {
        self.percent
    }

    /// How long the candidate shares traffic before it takes it all.
    pub fn hold(&self) -> Duration {
        self.hold
    }

    /// The header testers pick a side with.
    pub fn header(&self) -> Option<&str> {
        self.header.as_deref()
    }
}

/// Protocol the proxy speaks for a handover service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProxyProtocol {
    /// L7: per-request balancing; keep-alive clients move at their next request.
    Http,
    /// L4: per-connection balancing; open connections drain.
    Tcp,
}

/// Where the proxy of a handover service listens and what it forwards to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handover {
    listen: SocketAddr,
    container_port: u16,
    protocol: ProxyProtocol,
    max_surge: u32,
    /// Threads of the proxy's own; 0 shares the daemon's runtime.
    #[serde(default)]
    workers: u32,
    /// HTTP only: the Host names it takes on a listener shared with other services.
    #[serde(default)]
    hosts: Vec<String>,
    /// HTTP only: the paths it takes on a shared listener.
    #[serde(default)]
    path_prefix: Option<String>,
    /// HTTP only: the PEM certificate and key its listener terminates TLS with.
    #[serde(default)]
    tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// With TLS: a plain-HTTP address whose requests for `hosts` are redirected to HTTPS.
    #[serde(default)]
    redirect_from: Option<SocketAddr>,
}

impl Handover {
    /// The proxy listens on `listen` and forwards to `container_port` of the live containers;
    /// a rolling deploy runs at most `max_surge` extra containers at a time.
    pub fn new(
        listen: SocketAddr,
        container_port: u16,
        protocol: ProxyProtocol,
        max_surge: u32,
    ) -> Result<Self, SpecError> {
        if container_port == 0 {
            return Err(SpecError::invalid(
                "proxy.container_port",
                "must be a port number from 1 to 65535",
            ));
        }
        if max_surge == 0 {
            return Err(SpecError::invalid("proxy.max_surge", "must be at least 1"));
        }
        Ok(Self {
            listen,
            container_port,
            protocol,
            max_surge,
            workers: 0,
            hosts: Vec::new(),
            path_prefix: None,
            tls: None,
            redirect_from: None,
        })
    }

    /// Redirects plain-HTTP requests for its hosts on `from` (e.g. `0.0.0.0:80`) to HTTPS on
    /// its listener. Needs TLS (see [`Self::with_tls`], called first).
    pub fn with_redirect_from(mut self, from: SocketAddr) -> Result<Self, SpecError> {
        if self.tls.is_none() {
            return Err(SpecError::invalid(
                "proxy.redirect_from",
                "redirects to HTTPS, so it needs proxy.tls",
            ));
        }
        if from == self.listen {
            return Err(SpecError::invalid(
                "proxy.redirect_from",
                "must be another address than proxy.listen",
            ));
        }
        self.redirect_from = Some(from);
        Ok(self)
    }

    /// The plain-HTTP address redirected to HTTPS, if any.
    pub fn redirect_from(&self) -> Option<SocketAddr> {
        self.redirect_from
    }

    /// Terminates TLS with the PEM files `cert` and `key` (for its `hosts`, picked by SNI).
    /// HTTP only. (The proxy reads and checks the files.)
    pub fn with_tls(
        mut self,
        cert: std::path::PathBuf,
        key: std::path::PathBuf,
    ) -> Result<Self, SpecError> {
        if self.protocol != ProxyProtocol::Http {
            return Err(SpecError::invalid(
                "proxy.tls",
                "TLS termination needs protocol = \"http\"",
            ));
        }
        self.tls = Some((cert, key));
        Ok(self)
    }

    /// The certificate and key files, when it terminates TLS.
    pub fn tls(&self) -> Option<(&std::path::Path, &std::path::Path)> {
        self.tls.as_ref().map(|(c, k)| (c.as_path(), k.as_path()))
    }

    /// Shares the listener with other services: this one takes requests for `hosts` (exact,
    /// or `*.example.com`) and paths under `path_prefix`. HTTP only. (The proxy checks the
    /// patterns themselves.)
    pub fn with_routing(
        mut self,
        hosts: Vec<String>,
        path_prefix: Option<String>,
    ) -> Result<Self, SpecError> {
        if (!hosts.is_empty() || path_prefix.is_some()) && self.protocol != ProxyProtocol::Http {
            return Err(SpecError::invalid(
                "proxy.hosts",
                "routing by host or path needs protocol = \"http\"",
            ));
        }
        if path_prefix.as_deref().is_some_and(|p| !p.starts_with('/')) {
            return Err(SpecError::invalid("proxy.path_prefix", "must start with /"));
        }
        self.hosts = hosts;
        self.path_prefix = path_prefix;
        Ok(self)
    }

    /// The Host names it takes on a shared listener (none: every host).
    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }

    /// The paths it takes on a shared listener.
    pub fn path_prefix(&self) -> Option<&str> {
        self.path_prefix.as_deref()
    }

    /// Whether it routes by host or path, and so may share its listener.
    pub fn is_routed(&self) -> bool {
        !self.hosts.is_empty() || self.path_prefix.is_some()
    }

    /// Gives the proxy `workers` threads of its own (each with its own listening socket and
    /// backend connections), instead of sharing the daemon's runtime: for busy services, where
    /// it measures closer to nginx in tail latency. 0 shares the runtime.
    pub fn with_workers(mut self, workers: u32) -> Result<Self, SpecError> {
        if workers > 64 {
            return Err(SpecError::invalid("proxy.workers", "must be at most 64"));
        }
        self.workers = workers;
        Ok(self)
    }

    /// Threads of the proxy's own (0: the daemon's runtime).
    pub fn workers(&self) -> u32 {
        self.workers
    }

    /// The proxy's listen address.
    pub fn listen(&self) -> SocketAddr {
        self.listen
    }

    /// The port the app listens on inside its container.
    pub fn container_port(&self) -> u16 {
        self.container_port
    }

    /// HTTP or TCP.
    pub fn protocol(&self) -> ProxyProtocol {
        self.protocol
    }

    /// Extra containers allowed during a rolling deploy.
    pub fn max_surge(&self) -> u32 {
        self.max_surge
    }
}
