//! Proxy settings, their defaults and their validation.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::ProxyError;

/// More dedicated threads than this is a configuration mistake, not a tuning choice.
const MAX_WORKERS: usize = 256;

/// What the proxy forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// L7: HTTP/1.1 requests, each routed to a backend on its own, so keep-alive clients
    /// follow a switch at their next request.
    #[default]
    Http,
    /// L4: whole TCP connections, each routed to a backend when it is accepted.
    Tcp,
}

/// How long a request waits for a backend when none is live, by default.
pub const DEFAULT_EMPTY_HOLD: Duration = Duration::from_secs(5);

/// Settings of a [`Proxy`](crate::Proxy).
///
/// Build one with [`ProxyConfig::http`] or [`ProxyConfig::tcp`] and adjust the public
/// fields or use the `with_*` helpers; [`Proxy::bind`](crate::Proxy::bind) validates it
/// before it binds anything.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProxyConfig {
    /// L7 (HTTP) or L4 (TCP) forwarding.
    pub mode: Mode,
    /// Where to listen; port 0 picks a free port (see [`Proxy::local_addr`](crate::Proxy::local_addr)).
    pub listen: SocketAddr,
    /// Backends routed to from the start (more can be added at run time).
    pub backends: Vec<SocketAddr>,
    /// How long connecting to a backend may take before the client gets a 504 (HTTP) or
    /// is disconnected (TCP).
    pub connect_timeout: Duration,
    /// HTTP only: how long a backend may take to send response headers, counted from when
    /// the request is handed to the backend connection pool (so it includes the connect).
    /// Past it the client gets a 504. Streaming bodies are not bounded by it.
    pub response_timeout: Duration,
    /// HTTP only: how long a request waits for a backend when none is live (the only
    /// container restarting, a first deploy still starting) before it gets a 503; it goes to
    /// the first backend added meanwhile. Zero answers 503 at once.
    pub empty_hold: Duration,
    /// HTTP only: how long a client connection may take to send a request head, idle time
    /// between keep-alive requests included; protects against slow or abandoned clients.
    pub client_header_timeout: Duration,
    /// HTTP only: how long an idle pooled connection to a backend is kept for reuse.
    pub pool_idle_timeout: Duration,
    /// HTTP only: at most this many idle pooled connections are kept per backend.
    pub pool_max_idle_per_backend: usize,
    /// HTTP only: keep `X-Forwarded-Proto` and `X-Forwarded-Host` sent by the client
    /// instead of overwriting them. Enable only behind a trusted front proxy (e.g. a TLS
    /// terminator). `X-Forwarded-For` is always appended to.
    pub trust_forwarded_headers: bool,
    /// Where connections are served. `0` (the default): on the Tokio runtime that called
    /// [`Proxy::bind`](crate::Proxy::bind). `N`: on `N` dedicated threads, each a
    /// single-threaded runtime with its own listening socket (`SO_REUSEPORT`, so the kernel
    /// spreads connections) and its own backend connection pools, like nginx workers: no
    /// request is handed between threads, which costs less CPU and holds up better on a
    /// busy machine. Use it when the proxy carries real traffic; one per core is typical.
    pub workers: usize,
    /// HTTP only: terminate TLS with these certificates (picked by SNI), offering HTTP/2 and
    /// HTTP/1.1 by ALPN. `None`: plain HTTP.
    pub tls: Option<crate::tls::CertStore>,
}

impl ProxyConfig {
    /// An HTTP (L7) proxy listening on `listen`, with default timeouts and no backends.
    pub fn http(listen: SocketAddr) -> Self {
        Self {
            mode: Mode::Http,
            listen,
            ..Self::default()
        }
    }

    /// A TCP (L4) proxy listening on `listen`, with default timeouts and no backends.
    pub fn tcp(listen: SocketAddr) -> Self {
        Self {
            mode: Mode::Tcp,
            listen,
            ..Self::default()
        }
    }

    /// Sets the backends routed to from the start.
    #[must_use]
    pub fn with_backends(mut self, backends: impl IntoIterator<Item = SocketAddr>) -> Self {
        self.backends = backends.into_iter().collect();
        self
    }

    /// Sets [`connect_timeout`](Self::connect_timeout).
    #[must_use]
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets [`empty_hold`](Self::empty_hold).
    #[must_use]
    pub fn with_empty_hold(mut self, hold: Duration) -> Self {
        self.empty_hold = hold;
        self
    }

    /// Sets [`response_timeout`](Self::response_timeout).
    #[must_use]
    pub fn with_response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ProxyError> {
        non_zero("connect_timeout", self.connect_timeout)?;
        non_zero("response_timeout", self.response_timeout)?;
        non_zero("client_header_timeout", self.client_header_timeout)?;
        non_zero("pool_idle_timeout", self.pool_idle_timeout)?;
        if self.mode == Mode::Http && self.response_timeout < self.connect_timeout {
            // The response timer starts before the connect, so a shorter one would make
            // connect_timeout unreachable and turn every slow connect into a vague 504.
            return Err(ProxyError::invalid(
                "response_timeout",
                format!(
                    "({:?}) must be at least connect_timeout ({:?}) because it includes the connect",
                    self.response_timeout, self.connect_timeout
                ),
            ));
        }
        if self.mode == Mode::Tcp && self.tls.is_some() {
            return Err(ProxyError::invalid("tls", "terminates HTTP only, not TCP"));
        }
        if self.workers > MAX_WORKERS {
            return Err(ProxyError::invalid(
                "workers",
                format!("({}) must be at most {MAX_WORKERS}", self.workers),
            ));
        }
        let mut seen = HashSet::new();
        for addr in &self.backends {
            if addr.port() == 0 || addr.ip().is_unspecified() {
                return Err(ProxyError::invalid(
                    "backends",
                    format!("contains {addr}, which cannot be connected to"),
                ));
            }
            if !seen.insert(addr) {
                return Err(ProxyError::invalid(
                    "backends",
                    format!("lists {addr} twice"),
                ));
            }
        }
        Ok(())
    }
}

impl Default for ProxyConfig {
    /// HTTP on `127.0.0.1:0`, no backends, 5 s connect, 30 s response, 5 s hold while no
    /// backend is live, 60 s client header,
    /// 90 s pool idle timeout, 1024 idle connections per backend, forwarded headers not
    /// trusted, served on the caller's runtime.
    fn default() -> Self {
        Self {
            mode: Mode::Http,
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            backends: Vec::new(),
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(30),
            empty_hold: DEFAULT_EMPTY_HOLD,
            client_header_timeout: Duration::from_secs(60),
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_backend: 1024,
            trust_forwarded_headers: false,
            workers: 0,
            tls: None,
        }
    }
}

fn non_zero(field: &'static str, value: Duration) -> Result<(), ProxyError> {
    if value.is_zero() {
        return Err(ProxyError::invalid(field, "must be greater than zero"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(config: &ProxyConfig) -> &'static str {
        match config.validate() {
            Err(ProxyError::InvalidConfig { field, .. }) => field,
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_valid() {
        ProxyConfig::default()
            .validate()
            .expect("defaults validate");
        ProxyConfig::tcp(SocketAddr::from(([127, 0, 0, 1], 0)))
            .validate()
            .expect("tcp defaults validate");
    }

    #[test]
    fn bad_values_name_their_field() {
        let base = ProxyConfig::default();
        assert_eq!(
            field_of(&base.clone().with_connect_timeout(Duration::ZERO)),
            "connect_timeout"
        );
        assert_eq!(
            field_of(&base.clone().with_response_timeout(Duration::ZERO)),
            "response_timeout"
        );
        let mut c = base.clone();
        c.client_header_timeout = Duration::ZERO;
        assert_eq!(field_of(&c), "client_header_timeout");
        let mut c = base.clone();
        c.pool_idle_timeout = Duration::ZERO;
        assert_eq!(field_of(&c), "pool_idle_timeout");
        let mut c = base;
        c.workers = 100_000;
        assert_eq!(field_of(&c), "workers");
    }

    #[test]
    fn response_timeout_must_cover_connect_in_http_mode_only() {
        let http = ProxyConfig::default()
            .with_connect_timeout(Duration::from_secs(10))
            .with_response_timeout(Duration::from_secs(1));
        assert_eq!(field_of(&http), "response_timeout");
        let mut tcp = http;
        tcp.mode = Mode::Tcp;
        tcp.validate()
            .expect("tcp ignores response_timeout ordering");
    }

    #[test]
    fn backends_must_be_connectable_and_unique() {
        let ok = SocketAddr::from(([127, 0, 0, 1], 8080));
        for bad in [
            SocketAddr::from(([127, 0, 0, 1], 0)),
            SocketAddr::from(([0, 0, 0, 0], 8080)),
        ] {
            let c = ProxyConfig::default().with_backends([ok, bad]);
            assert_eq!(field_of(&c), "backends");
        }
        let dup = ProxyConfig::default().with_backends([ok, ok]);
        assert_eq!(field_of(&dup), "backends");
        let msg = dup.validate().expect_err("duplicate").to_string();
        assert!(
            msg.contains("backends") && msg.contains("127.0.0.1:8080"),
            "{msg}"
        );
    }
}
