//! What a service's route is made of, as the control API and the state file spell it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use deployer_proxy::{Backend, GateState, Lane, Mode, ProxyConfig};
use serde::{Deserialize, Serialize};

/// How one service's traffic enters: where its proxy listens and how it forwards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// The address clients connect to.
    pub listen: SocketAddr,
    /// `http` (each request routed on its own) or `tcp` (each connection).
    #[serde(default)]
    pub mode: Mode,
    /// Dedicated worker threads (0: the proxy process's shared runtime).
    #[serde(default)]
    pub workers: usize,
    /// The bound on connecting to a backend, in milliseconds.
    #[serde(default = "default_connect_ms")]
    pub connect_timeout_ms: u64,
    /// HTTP only: the bound on a backend's response headers, in milliseconds.
    #[serde(default = "default_response_ms")]
    pub response_timeout_ms: u64,
    /// HTTP only: the Host names this route takes on a listener it shares with others
    /// (exact, or `*.example.com`); empty with no `path_prefix`: the listener's own route.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// HTTP only: the paths this route takes on a shared listener (`/api` takes `/api` and
    /// `/api/...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// HTTP only: terminate TLS with this certificate for `hosts` (the listener then serves
    /// HTTPS, and HTTP/2 by ALPN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<RouteTls>,
    /// HTTP only: answer every request with a redirect to HTTPS on this port instead of
    /// forwarding it (the plain-HTTP address in front of a TLS one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_https: Option<u16>,
}

/// The PEM files of a route's certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteTls {
    /// The certificate chain, leaf first.
    pub cert: std::path::PathBuf,
    /// Its private key.
    pub key: std::path::PathBuf,
}

impl RouteTls {
    pub(crate) fn files(&self) -> deployer_proxy::CertFiles {
        deployer_proxy::CertFiles {
            cert: self.cert.clone(),
            key: self.key.clone(),
        }
    }
}

fn default_connect_ms() -> u64 {
    2_000
}

fn default_response_ms() -> u64 {
    60_000
}

impl Route {
    /// An HTTP route on `listen` with the default timeouts.
    pub fn http(listen: SocketAddr) -> Self {
        Self {
            listen,
            mode: Mode::Http,
            workers: 0,
            connect_timeout_ms: default_connect_ms(),
            response_timeout_ms: default_response_ms(),
            hosts: Vec::new(),
            path_prefix: None,
            tls: None,
            redirect_https: None,
        }
    }

    /// A virtual route (by Host or path) on a listener others may share.
    pub fn is_virtual(&self) -> bool {
        !self.hosts.is_empty() || self.path_prefix.is_some()
    }

    /// The proxy settings this route binds with.
    pub fn proxy_config(&self) -> ProxyConfig {
        let listen = self.listen;
        let mut config = match self.mode {
            Mode::Tcp => ProxyConfig::tcp(listen),
            _ => ProxyConfig::http(listen)
                .with_response_timeout(Duration::from_millis(self.response_timeout_ms)),
        }
        .with_connect_timeout(Duration::from_millis(self.connect_timeout_ms));
        config.workers = self.workers;
        if self.tls.is_some() {
            config.tls = Some(deployer_proxy::CertStore::new());
        }
        config
    }
}

/// A backend of a route: its address and the group (the generation it runs) its counters
/// are summed under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteBackend {
    /// Where the backend listens.
    pub addr: SocketAddr,
    /// The group, e.g. `g3`; empty for none.
    #[serde(default)]
    pub group: String,
}

impl RouteBackend {
    /// The backend at `addr` in `group`.
    pub fn new(addr: SocketAddr, group: impl Into<String>) -> Self {
        Self {
            addr,
            group: group.into(),
        }
    }

    pub(crate) fn to_proxy(&self) -> Backend {
        Backend::new(self.addr).in_group(Arc::<str>::from(self.group.as_str()))
    }
}

/// What new requests of a route meet: forwarded, held, or refused with a message.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case", deny_unknown_fields)]
pub enum Gate {
    /// Forwarded.
    #[default]
    Open,
    /// Held until resumed, each for at most `hold_ms`, then 503.
    Paused {
        /// How long one request may wait, in milliseconds.
        hold_ms: u64,
    },
    /// Answered 503 with `message`.
    Maintenance {
        /// The body of the 503.
        message: String,
    },
}

impl Gate {
    /// Sets `lane`'s gate to this.
    pub(crate) fn apply(&self, proxy: &Lane) {
        match self {
            Gate::Open => proxy.resume(),
            Gate::Paused { hold_ms } => proxy.pause(Duration::from_millis(*hold_ms)),
            Gate::Maintenance { message } => proxy.maintenance(message),
        }
    }

    #[cfg(test)]
    fn to_proxy(&self) -> GateState {
        match self {
            Gate::Open => GateState::Open,
            Gate::Paused { hold_ms } => GateState::Paused {
                hold: Duration::from_millis(*hold_ms),
            },
            Gate::Maintenance { message } => GateState::Maintenance {
                message: Arc::from(message.as_str()),
            },
        }
    }

    pub(crate) fn from_proxy(state: &GateState) -> Self {
        match state {
            GateState::Paused { hold } => Gate::Paused {
                hold_ms: u64::try_from(hold.as_millis()).unwrap_or(u64::MAX),
            },
            GateState::Maintenance { message } => Gate::Maintenance {
                message: message.to_string(),
            },
            _ => Gate::Open,
        }
    }
}

/// A canary split of a route: a share of clients, sticky per client, go to the backends of
/// `group`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSplit {
    /// The canary's group (its generation, e.g. `g5`).
    pub group: String,
    /// The share of clients, 0 to 100.
    pub percent: u8,
    /// A header testers pick a side with (`always` / `never`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
}

impl RouteSplit {
    pub(crate) fn to_proxy(&self) -> deployer_proxy::Split {
        deployer_proxy::Split {
            group: self.group.clone(),
            percent: self.percent.min(100),
            header: self.header.clone(),
        }
    }

    pub(crate) fn from_proxy(split: &deployer_proxy::Split) -> Self {
        Self {
            group: split.group.clone(),
            percent: split.percent,
            header: split.header.clone(),
        }
    }
}

/// A route as the data plane serves it now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteInfo {
    /// The service it belongs to.
    pub service: String,
    /// Its settings.
    pub route: Route,
    /// The address actually bound (differs from `route.listen` when that asked for port 0).
    pub bound: SocketAddr,
    /// The live backends, in round-robin order.
    pub backends: Vec<RouteBackend>,
    /// What new requests meet.
    pub gate: Gate,
    /// The canary split in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<RouteSplit>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_needs_only_its_listen_address() {
        let route: Route = serde_json::from_str(r#"{"listen":"127.0.0.1:80"}"#).expect("route");
        assert_eq!(route, Route::http("127.0.0.1:80".parse().expect("addr")));
        let error = serde_json::from_str::<Route>(r#"{"listen":"127.0.0.1:80","colour":1}"#)
            .expect_err("unknown field");
        assert!(error.to_string().contains("colour"), "{error}");
    }

    #[test]
    fn gates_round_trip_through_the_proxy_state() {
        for gate in [
            Gate::Open,
            Gate::Paused { hold_ms: 1500 },
            Gate::Maintenance {
                message: "back soon".into(),
            },
        ] {
            assert_eq!(Gate::from_proxy(&gate.to_proxy()), gate);
        }
    }
}
