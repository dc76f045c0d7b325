//! [`Fleet`]: every service's proxy in this process, optionally saving its routes to a state
//! file after each change (what the standalone proxy process serves its control API from).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use deployer_proxy::{AddOutcome, Drain, DrainReport, Proxy};

use crate::plane::{DataPlane, PlaneError, RouteChange, RouteSet, ServiceStats, Swapped};
use crate::route::{Gate, Route, RouteBackend, RouteInfo};
use crate::state::{Loaded, SavedRoute, StateFile};

/// How long the proxy a changed route replaced may finish what it serves.
const REPLACED_GRACE: Duration = Duration::from_secs(30);

/// Every route's proxy, served on the Tokio runtime that created them (or their workers).
#[derive(Debug, Default)]
pub struct Fleet {
    routes: Mutex<BTreeMap<String, Entry>>,
    /// Serialises binds, so two calls never bind one route twice.
    binding: tokio::sync::Mutex<()>,
    state: Option<StateFile>,
    /// Serialises saves, so an older snapshot never overwrites a newer one.
    saving: Mutex<()>,
    /// Set while the listeners are handed to a new process: changes would be lost.
    frozen: AtomicBool,
}

#[derive(Debug)]
struct Entry {
    route: Route,
    proxy: Proxy,
    /// The group each backend was added in (the proxy keeps it, but does not list it).
    groups: HashMap<SocketAddr, String>,
    /// Backends taken out whose drain nobody waited for yet.
    drains: HashMap<SocketAddr, Drain>,
}

impl Entry {
    fn backends(&self) -> Vec<RouteBackend> {
        self.proxy
            .backends()
            .into_iter()
            .map(|addr| {
                let group = self.groups.get(&addr).cloned().unwrap_or_default();
                RouteBackend::new(addr, group)
            })
            .collect()
    }

    fn keep_drain(&mut self, drain: Drain) -> Vec<SocketAddr> {
        let mut draining = Vec::new();
        for part in drain.split() {
            // One backend per part.
            let Some(addr) = part.backends().first().copied() else {
                continue;
            };
            draining.push(addr);
            self.groups.remove(&addr);
            let merged = match self.drains.remove(&addr) {
                Some(earlier) => Drain::merge([earlier, part]),
                None => part,
            };
            self.drains.insert(addr, merged);
        }
        draining
    }

    fn note_added(&mut self, backend: &RouteBackend) {
        // Back in rotation (a rollback to it): its old drain no longer applies.
        drop(self.drains.remove(&backend.addr));
        self.groups
            .entry(backend.addr)
            .or_insert_with(|| backend.group.clone());
    }
}

impl Fleet {
    /// A fleet that keeps its routes in memory only (embedders, tests, the daemon's
    /// in-process mode).
    pub fn new() -> Self {
        Self::default()
    }

    /// A fleet restored from `state` (every saved route bound again with its backends and
    /// gate, before anything else can change it), saving to it after every change. A route
    /// that cannot be bound again is logged and dropped.
    pub async fn restore(state: StateFile) -> Result<(Fleet, Loaded), std::io::Error> {
        Self::restore_with(state, HashMap::new()).await
    }

    /// [`Self::restore`], serving the routes found in `inherited` on those listening sockets
    /// (handed over by the proxy process this one replaces) instead of binding.
    pub async fn restore_with(
        state: StateFile,
        mut inherited: HashMap<String, Vec<std::net::TcpListener>>,
    ) -> Result<(Fleet, Loaded), std::io::Error> {
        let loaded = state.load()?;
        let fleet = Fleet {
            state: Some(state),
            ..Fleet::default()
        };
        if let Loaded::Restored(saved) = &loaded {
            for (service, saved) in &saved.routes {
                let listeners = inherited.remove(service).unwrap_or_default();
                if let Err(error) = fleet.restore_route(service, saved, listeners).await {
                    tracing::error!(%service, %error, "a saved route could not be restored");
                }
            }
        }
        Ok((fleet, loaded))
    }

    async fn restore_route(
        &self,
        service: &str,
        saved: &SavedRoute,
        listeners: Vec<std::net::TcpListener>,
    ) -> Result<(), PlaneError> {
        let proxy = if listeners.is_empty() {
            bind(service, &saved.route).await?
        } else {
            Proxy::bind_inherited(saved.route.proxy_config(), listeners)
                .await
                .map_err(|e| PlaneError::Bind {
                    service: service.to_owned(),
                    listen: saved.route.listen,
                    reason: e.to_string(),
                })?
        };
        let mut entry = Entry {
            route: saved.route.clone(),
            proxy,
            groups: HashMap::new(),
            drains: HashMap::new(),
        };
        for backend in &saved.backends {
            entry.note_added(backend);
        }
        drop(
            entry
                .proxy
                .replace_backends(saved.backends.iter().map(RouteBackend::to_proxy).collect()),
        );
        saved.gate.apply(&entry.proxy);
        tracing::info!(%service, listen = %entry.proxy.local_addr(), backends = saved.backends.len(), "route restored");
        self.lock().insert(service.to_owned(), entry);
        Ok(())
    }

    /// Refuses changes from now on (a new process is taking the listeners over); reads keep
    /// working.
    pub fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }

    /// Takes changes again (a handover that failed).
    pub fn thaw(&self) {
        self.frozen.store(false, Ordering::SeqCst);
    }

    /// Every route's proxy, for handing their listeners over or shutting them down.
    pub fn proxies(&self) -> Vec<(String, Proxy)> {
        self.lock()
            .iter()
            .map(|(service, entry)| (service.clone(), entry.proxy.clone()))
            .collect()
    }

    /// Stops every proxy, letting what they serve finish within `grace`.
    pub async fn shutdown(&self, grace: Duration) {
        let entries = std::mem::take(&mut *self.lock());
        for (service, entry) in entries {
            let report = entry.proxy.shutdown(grace).await;
            tracing::info!(%service, cut = report.cut, "route closed");
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Entry>> {
        self.routes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn check_open(&self) -> Result<(), PlaneError> {
        if self.frozen.load(Ordering::SeqCst) {
            return Err(PlaneError::Upgrading);
        }
        Ok(())
    }

    /// Runs `change` on `service`'s entry, then saves.
    fn change<T>(
        &self,
        service: &str,
        change: impl FnOnce(&mut Entry) -> T,
    ) -> Result<T, PlaneError> {
        self.check_open()?;
        let out = {
            let mut routes = self.lock();
            let entry = routes
                .get_mut(service)
                .ok_or_else(|| PlaneError::UnknownService(service.to_owned()))?;
            change(entry)
        };
        self.save();
        Ok(out)
    }

    fn save(&self) {
        let Some(state) = &self.state else { return };
        let _saving = self.saving.lock().unwrap_or_else(PoisonError::into_inner);
        let routes = self
            .lock()
            .iter()
            .map(|(service, entry)| {
                let saved = SavedRoute {
                    route: entry.route.clone(),
                    backends: entry.backends(),
                    gate: Gate::from_proxy(&entry.proxy.gate()),
                };
                (service.clone(), saved)
            })
            .collect();
        if let Err(error) = state.save(routes) {
            // Traffic goes on as changed; only a restart before the next good save loses it.
            tracing::error!(path = %state.path().display(), %error, "saving the routing state failed");
        }
    }
}

async fn bind(service: &str, route: &Route) -> Result<Proxy, PlaneError> {
    Proxy::bind(route.proxy_config())
        .await
        .map_err(|error| PlaneError::Bind {
            service: service.to_owned(),
            listen: route.listen,
            reason: error.to_string(),
        })
}

/// A proxy for `route` taking over from `old`: the same listening sockets when the address
/// did not change (no connection is refused meanwhile), a new bind otherwise.
async fn rebind(
    service: &str,
    route: &Route,
    old_route: &Route,
    old: &Proxy,
) -> Result<Proxy, PlaneError> {
    if route.listen != old_route.listen {
        return bind(service, route).await;
    }
    let bind_error = |reason: String| PlaneError::Bind {
        service: service.to_owned(),
        listen: route.listen,
        reason,
    };
    let listeners = old
        .listener_fds()
        .map_err(|e| bind_error(e.to_string()))?
        .into_iter()
        .map(std::net::TcpListener::from)
        .collect();
    Proxy::bind_inherited(route.proxy_config(), listeners)
        .await
        .map_err(|e| bind_error(e.to_string()))
}

#[async_trait]
impl DataPlane for Fleet {
    async fn set_route(&self, service: &str, route: &Route) -> Result<RouteSet, PlaneError> {
        self.check_open()?;
        let _binding = self.binding.lock().await;
        let current = self
            .lock()
            .get(service)
            .map(|e| (e.route.clone(), e.proxy.local_addr()));
        let set = match current {
            Some((same, bound)) if &same == route => RouteSet {
                change: RouteChange::Unchanged,
                bound,
            },
            Some(_) => self.replace_route(service, route).await?,
            None => {
                let proxy = bind(service, route).await?;
                let bound = proxy.local_addr();
                let entry = Entry {
                    route: route.clone(),
                    proxy,
                    groups: HashMap::new(),
                    drains: HashMap::new(),
                };
                self.lock().insert(service.to_owned(), entry);
                tracing::info!(%service, listen = %bound, "route created");
                RouteSet {
                    change: RouteChange::Created,
                    bound,
                }
            }
        };
        if set.change != RouteChange::Unchanged {
            self.save();
        }
        Ok(set)
    }

    async fn remove_route(
        &self,
        service: &str,
        grace: Duration,
    ) -> Result<Option<DrainReport>, PlaneError> {
        self.check_open()?;
        let removed = self.lock().remove(service);
        let Some(entry) = removed else {
            return Ok(None);
        };
        self.save();
        let report = entry.proxy.shutdown(grace).await;
        tracing::info!(%service, cut = report.cut, "route removed");
        Ok(Some(report))
    }

    async fn routes(&self) -> Result<Vec<RouteInfo>, PlaneError> {
        Ok(self
            .lock()
            .iter()
            .map(|(service, entry)| RouteInfo {
                service: service.clone(),
                route: entry.route.clone(),
                bound: entry.proxy.local_addr(),
                backends: entry.backends(),
                gate: Gate::from_proxy(&entry.proxy.gate()),
            })
            .collect())
    }

    async fn add_backend(
        &self,
        service: &str,
        backend: &RouteBackend,
    ) -> Result<AddOutcome, PlaneError> {
        self.change(service, |entry| {
            entry.note_added(backend);
            entry.proxy.add_backend(backend.to_proxy())
        })
    }

    async fn remove_backend(
        &self,
        service: &str,
        addr: SocketAddr,
    ) -> Result<Vec<SocketAddr>, PlaneError> {
        self.change(service, |entry| {
            let drain = entry.proxy.remove_backend(addr);
            entry.keep_drain(drain)
        })
    }

    async fn swap(
        &self,
        service: &str,
        out: &[SocketAddr],
        add: &RouteBackend,
    ) -> Result<Swapped, PlaneError> {
        self.change(service, |entry| {
            let (added, drain) = entry.proxy.swap_backends(out, add.to_proxy());
            entry.note_added(add);
            let draining = entry.keep_drain(drain);
            Swapped { added, draining }
        })
    }

    async fn drain(
        &self,
        service: &str,
        backends: &[SocketAddr],
        deadline: Duration,
    ) -> Result<DrainReport, PlaneError> {
        let drains: Vec<Drain> = {
            let mut routes = self.lock();
            let entry = routes
                .get_mut(service)
                .ok_or_else(|| PlaneError::UnknownService(service.to_owned()))?;
            backends
                .iter()
                .filter_map(|addr| entry.drains.remove(addr))
                .collect()
        };
        Ok(Drain::merge(drains).wait(deadline).await)
    }

    async fn set_gate(&self, service: &str, gate: &Gate) -> Result<(), PlaneError> {
        self.change(service, |entry| gate.apply(&entry.proxy))
    }

    async fn stats(&self) -> Result<Vec<ServiceStats>, PlaneError> {
        Ok(self
            .lock()
            .iter()
            .map(|(service, entry)| ServiceStats {
                service: service.clone(),
                totals: entry.proxy.totals(),
                groups: entry.proxy.group_stats(),
                backends: entry.proxy.stats(),
            })
            .collect())
    }
}

impl Fleet {
    async fn replace_route(&self, service: &str, route: &Route) -> Result<RouteSet, PlaneError> {
        let (old_route, old_proxy, backends) = {
            let routes = self.lock();
            let old = routes
                .get(service)
                .ok_or_else(|| PlaneError::UnknownService(service.to_owned()))?;
            (old.route.clone(), old.proxy.clone(), old.backends())
        };
        let proxy = rebind(service, route, &old_route, &old_proxy).await?;
        drop(proxy.replace_backends(backends.iter().map(RouteBackend::to_proxy).collect()));
        Gate::from_proxy(&old_proxy.gate()).apply(&proxy);
        let bound = proxy.local_addr();
        if let Some(entry) = self.lock().get_mut(service) {
            entry.route = route.clone();
            entry.proxy = proxy;
        }
        old_proxy.stop_accepting();
        tokio::spawn(async move {
            let report = old_proxy.shutdown(REPLACED_GRACE).await;
            tracing::debug!(cut = report.cut, "the replaced proxy finished");
        });
        tracing::info!(%service, listen = %bound, "route settings changed");
        Ok(RouteSet {
            change: RouteChange::Replaced,
            bound,
        })
    }
}
