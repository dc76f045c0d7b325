//! The crate's error type.

use std::io;
use std::net::SocketAddr;

/// Why setting up a [`Proxy`](crate::Proxy) failed.
///
/// Failures while forwarding traffic are not errors of the API: they become responses
/// (502/503/504), closed connections and counters in [`stats`](crate::Proxy::stats).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// [`ProxyConfig::validate`](crate::ProxyConfig::validate) rejected a field.
    #[error("invalid proxy config: `{field}` {reason}")]
    InvalidConfig {
        /// The name of the offending field of [`ProxyConfig`](crate::ProxyConfig).
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Creating, binding or listening on the listener socket failed.
    #[error("binding the proxy listener on {addr} failed")]
    Bind {
        /// The configured listen address.
        addr: SocketAddr,
        /// The underlying socket error.
        #[source]
        source: io::Error,
    },
    /// Starting a dedicated worker thread (see `ProxyConfig::workers`) failed.
    #[error("starting proxy worker {index} failed")]
    StartWorker {
        /// Which worker (0-based).
        index: usize,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A certificate or key could not be read, or TLS could not be set up.
    #[error("TLS: {reason}")]
    Tls {
        /// What is wrong.
        reason: String,
    },
    /// A virtual route could not be added (a bad host or path pattern, a taken name or
    /// match, or a TCP proxy, which cannot see hosts).
    #[error("{reason}")]
    Route {
        /// What is wrong.
        reason: String,
    },
}

impl ProxyError {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidConfig {
            field,
            reason: reason.into(),
        }
    }
}
