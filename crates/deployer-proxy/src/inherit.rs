//! Listening sockets inherited from a previous proxy process ([`Proxy::bind_inherited`]):
//! checking what was handed over and making up the sockets workers still lack.
//!
//! [`Proxy::bind_inherited`]: crate::Proxy::bind_inherited

use std::io;
use std::net::{SocketAddr, TcpListener};

use crate::server;
use crate::{ProxyConfig, ProxyError};

/// Readies `listeners` to be served with `config`: returns the config with its worker count
/// raised to one worker per listener, the address served, and one listener per worker (or
/// the single one served on the caller's runtime).
pub(crate) fn prepare(
    mut config: ProxyConfig,
    mut listeners: Vec<TcpListener>,
) -> Result<(ProxyConfig, SocketAddr, Vec<TcpListener>), ProxyError> {
    let invalid = |reason: String| io::Error::new(io::ErrorKind::InvalidInput, reason);
    let Some(first) = listeners.first() else {
        return Err(ProxyError::Bind {
            addr: config.listen,
            source: invalid("no inherited listener to serve on".into()),
        });
    };
    let local_addr = first.local_addr().map_err(|source| ProxyError::Bind {
        addr: config.listen,
        source,
    })?;
    let bind_error = |source| ProxyError::Bind {
        addr: local_addr,
        source,
    };
    if config.workers == 0 && listeners.len() > 1 {
        // Without workers there is one accept loop; silently leaving sockets unserved would
        // strand the connections the kernel queues on them.
        return Err(bind_error(invalid(format!(
            "{} inherited listeners, but without workers (`workers: 0`) exactly one is served",
            listeners.len()
        ))));
    }
    if config.workers > 0 {
        // Every inherited socket has its own accept queue, so each needs a worker.
        config.workers = config.workers.max(listeners.len());
    }
    config.validate()?;
    for listener in &listeners {
        // Tokio requires it; the previous process most likely set it already (the flag is
        // shared by every descriptor of the socket).
        listener.set_nonblocking(true).map_err(bind_error)?;
    }
    while listeners.len() < config.workers {
        // Works when the inherited sockets were bound with SO_REUSEPORT, as a proxy with
        // workers binds them; otherwise the port is taken and this fails.
        listeners.push(server::bind_listener(local_addr, true).map_err(bind_error)?);
    }
    Ok((config, local_addr, listeners))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(workers: usize) -> ProxyConfig {
        let mut config = ProxyConfig::http(SocketAddr::from(([127, 0, 0, 1], 0)));
        config.workers = workers;
        config
    }

    fn shared_port_listener() -> TcpListener {
        server::bind_listener(SocketAddr::from(([127, 0, 0, 1], 0)), true).expect("bind")
    }

    #[tokio::test]
    async fn no_listener_is_an_error() {
        let error = prepare(config(2), Vec::new()).expect_err("empty");
        assert!(matches!(error, ProxyError::Bind { .. }), "{error}");
    }

    #[tokio::test]
    async fn two_listeners_without_workers_is_an_error() {
        let listeners = vec![shared_port_listener(), shared_port_listener()];
        let error = prepare(config(0), listeners).expect_err("two without workers");
        assert!(matches!(error, ProxyError::Bind { .. }), "{error}");
    }

    #[tokio::test]
    async fn missing_workers_sockets_are_bound_on_the_same_port() {
        let first = shared_port_listener();
        let addr = first.local_addr().expect("addr");
        let (config, local_addr, listeners) = prepare(config(3), vec![first]).expect("prepare");
        assert_eq!((config.workers, local_addr), (3, addr));
        let addrs: Vec<_> = listeners.iter().map(|l| l.local_addr().ok()).collect();
        assert_eq!(addrs, vec![Some(addr); 3]);
    }

    #[tokio::test]
    async fn extra_listeners_get_a_worker_each() {
        let first = shared_port_listener();
        let addr = first.local_addr().expect("addr");
        let second = server::bind_listener(addr, true).expect("bind");
        let (config, _, listeners) = prepare(config(1), vec![first, second]).expect("prepare");
        assert_eq!((config.workers, listeners.len()), (2, 2));
    }
}
