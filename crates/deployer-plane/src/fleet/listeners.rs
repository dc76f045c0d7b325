//! The fleet's listeners: one proxy per listen address, shared by every route on it. A route
//! with hosts or a path prefix is a virtual route of that proxy; a route without them takes
//! the proxy's own lane, and only one route can.

use std::net::SocketAddr;
use std::time::Duration;

use deployer_proxy::{Lane, Proxy, RouteMatch};

use super::Fleet;
use crate::plane::PlaneError;
use crate::route::Route;

impl Fleet {
    /// The lane `service`'s `route` gets, binding its listener if none serves the address yet
    /// (on `inherited` sockets when a predecessor handed them over). The caller holds
    /// `binding`.
    pub(super) async fn attach(
        &self,
        service: &str,
        route: &Route,
        inherited: Vec<std::net::TcpListener>,
    ) -> Result<Lane, PlaneError> {
        let lane = self.attach_lane(service, route, inherited).await?;
        lane.redirect_to_https(route.redirect_https);
        Ok(lane)
    }

    async fn attach_lane(
        &self,
        service: &str,
        route: &Route,
        inherited: Vec<std::net::TcpListener>,
    ) -> Result<Lane, PlaneError> {
        let proxy = match self.listener(route.listen) {
            Some(proxy) => proxy,
            None => {
                let proxy = bind(service, route, inherited, self.default_workers).await?;
                self.listeners_lock().insert(route.listen, proxy.clone());
                proxy
            }
        };
        let refused = |reason: String| PlaneError::Refused(reason);
        install_cert(service, route, &proxy)?;
        if route.is_virtual() {
            let matcher =
                RouteMatch::new(&route.hosts, route.path_prefix.as_deref().unwrap_or("/"))
                    .map_err(|e| refused(format!("service {service}: {e}")))?;
            return proxy
                .add_route(service, matcher)
                .map_err(|e| refused(format!("service {service} on {}: {e}", route.listen)));
        }
        let owner = self
            .lock()
            .iter()
            .find(|(other, e)| {
                other.as_str() != service && e.route.listen == route.listen && !e.route.is_virtual()
            })
            .map(|(other, _)| other.clone());
        if let Some(owner) = owner {
            return Err(refused(format!(
                "service {service}: {} already serves {owner} without hosts or a path prefix; give one of them `hosts` or `path_prefix` to share it",
                route.listen
            )));
        }
        Ok(proxy.lane().clone())
    }

    /// Takes `service`'s lane off its listener, letting what it serves finish within `grace`;
    /// closes the listener when no route is left on it.
    pub(super) async fn detach(
        &self,
        service: &str,
        route: &Route,
        lane: &Lane,
        grace: Duration,
    ) -> deployer_proxy::DrainReport {
        let Some(proxy) = self.listener(route.listen) else {
            return lane
                .replace_backends(Vec::<SocketAddr>::new())
                .wait(grace)
                .await;
        };
        let still_used = self.lock().values().any(|e| e.route.listen == route.listen);
        if !still_used {
            self.listeners_lock().remove(&route.listen);
            return proxy.shutdown(grace).await;
        }
        if let Some(certs) = proxy.certs() {
            certs.remove(service);
        }
        let drain = match route.is_virtual() {
            true => proxy.remove_route(service),
            false => Some(lane.replace_backends(Vec::<SocketAddr>::new())),
        };
        match drain {
            Some(drain) => drain.wait(grace).await,
            None => {
                lane.replace_backends(Vec::<SocketAddr>::new())
                    .wait(grace)
                    .await
            }
        }
    }

    fn listener(&self, listen: SocketAddr) -> Option<Proxy> {
        self.listeners_lock().get(&listen).cloned()
    }

    /// Whether `service` alone uses its listener (its settings are then the listener's).
    pub(super) fn owns_listener(&self, service: &str, listen: SocketAddr) -> bool {
        self.lock()
            .iter()
            .all(|(other, e)| other == service || e.route.listen != listen)
    }

    /// A new proxy for `route` on the sockets of the one serving its address, which stops
    /// accepting and finishes what it serves: a change of workers or timeouts refuses no
    /// connection.
    pub(super) async fn rebind_listener(
        &self,
        service: &str,
        route: &Route,
    ) -> Result<(Proxy, Proxy), PlaneError> {
        let old = self
            .listener(route.listen)
            .ok_or_else(|| PlaneError::UnknownService(service.to_owned()))?;
        let inherited = old
            .listener_fds()
            .map_err(|e| bind_error(service, route, e.to_string()))?
            .into_iter()
            .map(std::net::TcpListener::from)
            .collect();
        let new = bind(service, route, inherited, self.default_workers).await?;
        install_cert(service, route, &new)?;
        self.listeners_lock().insert(route.listen, new.clone());
        Ok((old, new))
    }
}

/// Serves `route`'s certificate on `proxy`, which must terminate TLS if the route has one.
fn install_cert(service: &str, route: &Route, proxy: &Proxy) -> Result<(), PlaneError> {
    let Some(tls) = &route.tls else {
        return Ok(());
    };
    let Some(certs) = proxy.certs() else {
        return Err(PlaneError::Refused(format!(
            "service {service}: {} serves plain HTTP, so it cannot take a certificate (its first route had none)",
            route.listen
        )));
    };
    certs
        .insert(service, &route.hosts, tls.files())
        .map_err(|e| PlaneError::Refused(format!("service {service}: {e}")))
}

fn bind_error(service: &str, route: &Route, reason: String) -> PlaneError {
    PlaneError::Bind {
        service: service.to_owned(),
        listen: route.listen,
        reason,
    }
}

async fn bind(
    service: &str,
    route: &Route,
    inherited: Vec<std::net::TcpListener>,
    default_workers: usize,
) -> Result<Proxy, PlaneError> {
    let mut config = route.proxy_config();
    if config.workers == 0 {
        config.workers = default_workers;
    }
    let bound = if inherited.is_empty() {
        Proxy::bind(config).await
    } else {
        Proxy::bind_inherited(config, inherited).await
    };
    bound.map_err(|e| bind_error(service, route, chain(&e)))
}

/// An error with its causes, as one line: "binding ... failed: Address in use".
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
