//! [`Fleet`]: every service's proxy in this process, optionally saving its routes to a state
//! file after each change (what the standalone proxy process serves its control API from).
//!
//! Routes on one listen address share one proxy: a route with `hosts` or a `path_prefix` is a
//! virtual route on it, picked per request by Host and path.

mod entry;
mod listeners;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use deployer_proxy::{AddOutcome, Drain, DrainReport, Proxy};

use self::entry::Entry;
use crate::plane::{DataPlane, PlaneError, RouteChange, RouteSet, ServiceStats, Swapped};
use crate::route::{Gate, Route, RouteBackend, RouteInfo, RouteSplit};
use crate::state::{Loaded, SavedRoute, StateFile};

/// How long the proxy a changed route replaced may finish what it serves.
const REPLACED_GRACE: Duration = Duration::from_secs(30);

/// Every route's proxy, served on the Tokio runtime that created them (or their workers).
#[derive(Debug, Default)]
pub struct Fleet {
    routes: Mutex<BTreeMap<String, Entry>>,
    /// One proxy per listen address (as routes name it).
    listeners: Mutex<BTreeMap<SocketAddr, Proxy>>,
    /// Serialises binds, so two calls never bind one address twice.
    binding: tokio::sync::Mutex<()>,
    state: Option<StateFile>,
    /// Serialises saves, so an older snapshot never overwrites a newer one.
    saving: Mutex<()>,
    /// Set while the listeners are handed to a new process: changes would be lost.
    frozen: AtomicBool,
    /// Worker threads of a listener whose first route asks for none (0: this runtime).
    default_workers: usize,
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

    /// [`Self::restore`], serving the listen addresses found in `inherited` (keyed as
    /// [`Self::proxies`] names them) on those listening sockets, handed over by the proxy
    /// process this one replaces, instead of binding.
    pub async fn restore_with(
        state: StateFile,
        inherited: HashMap<String, Vec<std::net::TcpListener>>,
    ) -> Result<(Fleet, Loaded), std::io::Error> {
        Self::restore_serving(state, inherited, 0).await
    }

    /// [`Self::restore_with`], giving every listener whose first route asks for no workers
    /// `default_workers` threads of its own: the standalone proxy process does, since the
    /// proxy is all it runs and dedicated threads cut its tail latency.
    pub async fn restore_serving(
        state: StateFile,
        mut inherited: HashMap<String, Vec<std::net::TcpListener>>,
        default_workers: usize,
    ) -> Result<(Fleet, Loaded), std::io::Error> {
        let loaded = state.load()?;
        let fleet = Fleet {
            state: Some(state),
            default_workers,
            ..Fleet::default()
        };
        if let Loaded::Restored(saved) = &loaded {
            for (service, saved) in &saved.routes {
                let sockets = inherited
                    .remove(&saved.route.listen.to_string())
                    .unwrap_or_default();
                if let Err(error) = fleet.restore_route(service, saved, sockets).await {
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
        sockets: Vec<std::net::TcpListener>,
    ) -> Result<(), PlaneError> {
        let lane = self.attach(service, &saved.route, sockets).await?;
        let mut entry = Entry::new(saved.route.clone(), lane);
        entry.serve(&saved.backends);
        saved.gate.apply(&entry.lane);
        entry
            .lane
            .split_traffic(saved.split.as_ref().map(RouteSplit::to_proxy));
        tracing::info!(%service, listen = %saved.route.listen, backends = saved.backends.len(), "route restored");
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

    /// Every listener's proxy, by listen address, for handing their sockets over.
    pub fn proxies(&self) -> Vec<(String, Proxy)> {
        self.listeners_lock()
            .iter()
            .map(|(listen, proxy)| (listen.to_string(), proxy.clone()))
            .collect()
    }

    /// How many routes are served.
    pub fn route_count(&self) -> usize {
        self.lock().len()
    }

    /// Stops every proxy, letting what they serve finish within `grace`.
    pub async fn shutdown(&self, grace: Duration) {
        self.lock().clear();
        let listeners = std::mem::take(&mut *self.listeners_lock());
        for (listen, proxy) in listeners {
            let report = proxy.shutdown(grace).await;
            tracing::info!(%listen, cut = report.cut, "listener closed");
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Entry>> {
        self.routes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn listeners_lock(&self) -> MutexGuard<'_, BTreeMap<SocketAddr, Proxy>> {
        self.listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
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
                    gate: Gate::from_proxy(&entry.lane.gate()),
                    split: entry.lane.split().as_ref().map(RouteSplit::from_proxy),
                };
                (service.clone(), saved)
            })
            .collect();
        if let Err(error) = state.save(routes) {
            // Traffic goes on as changed; only a restart before the next good save loses it.
            tracing::error!(path = %state.path().display(), %error, "saving the routing state failed");
        }
    }

    fn bound(&self, listen: SocketAddr) -> SocketAddr {
        self.listeners_lock()
            .get(&listen)
            .map_or(listen, Proxy::local_addr)
    }

    /// A changed route: the same listener with new settings when the route owns it alone,
    /// otherwise a new lane (on the same or another listener) that takes the backends and the
    /// gate over before the old one is let go.
    async fn replace_route(&self, service: &str, route: &Route) -> Result<RouteSet, PlaneError> {
        let (old_route, old_lane, backends) = {
            let routes = self.lock();
            let old = routes
                .get(service)
                .ok_or_else(|| PlaneError::UnknownService(service.to_owned()))?;
            (old.route.clone(), old.lane.clone(), old.backends())
        };
        let gate = Gate::from_proxy(&old_lane.gate());
        let same_listener_alone = route.listen == old_route.listen
            && !route.is_virtual()
            && !old_route.is_virtual()
            && self.owns_listener(service, route.listen);
        if same_listener_alone {
            let (old_proxy, new_proxy) = self.rebind_listener(service, route).await?;
            new_proxy.lane().redirect_to_https(route.redirect_https);
            let mut entry = Entry::new(route.clone(), new_proxy.lane().clone());
            entry.serve(&backends);
            gate.apply(&entry.lane);
            self.lock().insert(service.to_owned(), entry);
            old_proxy.stop_accepting();
            tokio::spawn(async move {
                let report = old_proxy.shutdown(REPLACED_GRACE).await;
                tracing::debug!(cut = report.cut, "the replaced proxy finished");
            });
        } else {
            // Out of the table first, so the new lane does not clash with the old one.
            let old = self.lock().remove(service);
            if old_route.is_virtual()
                && let Some(proxy) = self.listeners_lock().get(&old_route.listen).cloned()
            {
                // What it serves finishes by itself (the drain is not waited for).
                drop(proxy.remove_route(service));
            }
            let lane = match self.attach(service, route, Vec::new()).await {
                Ok(lane) => lane,
                Err(error) => {
                    // Put the old route back as it was.
                    if let Some(old) = old {
                        if old_route.is_virtual() {
                            self.reattach(service, old).await;
                        } else {
                            self.lock().insert(service.to_owned(), old);
                        }
                    }
                    return Err(error);
                }
            };
            let mut entry = Entry::new(route.clone(), lane);
            entry.serve(&backends);
            gate.apply(&entry.lane);
            self.lock().insert(service.to_owned(), entry);
            if let Some(old) = old
                && (old_route.listen != route.listen
                    || old_route.is_virtual() != route.is_virtual())
            {
                let lane = old.lane.clone();
                let grace = REPLACED_GRACE;
                let report = self.detach(service, &old_route, &lane, grace).await;
                tracing::debug!(cut = report.cut, "the replaced route finished");
            }
        }
        tracing::info!(%service, listen = %route.listen, "route settings changed");
        Ok(RouteSet {
            change: RouteChange::Replaced,
            bound: self.bound(route.listen),
        })
    }

    /// Puts back a virtual route whose change failed.
    async fn reattach(&self, service: &str, old: Entry) {
        match self.attach(service, &old.route, Vec::new()).await {
            Ok(lane) => {
                let backends = old.backends();
                let mut entry = Entry::new(old.route.clone(), lane);
                entry.serve(&backends);
                self.lock().insert(service.to_owned(), entry);
            }
            Err(error) => {
                tracing::error!(%service, %error, "restoring a route after a failed change failed")
            }
        }
    }
}

#[async_trait]
impl DataPlane for Fleet {
    async fn set_route(&self, service: &str, route: &Route) -> Result<RouteSet, PlaneError> {
        self.check_open()?;
        let _binding = self.binding.lock().await;
        let current = self.lock().get(service).map(|e| e.route.clone());
        let set = match current {
            Some(same) if &same == route => RouteSet {
                change: RouteChange::Unchanged,
                bound: self.bound(route.listen),
            },
            Some(_) => self.replace_route(service, route).await?,
            None => {
                let lane = self.attach(service, route, Vec::new()).await?;
                self.lock()
                    .insert(service.to_owned(), Entry::new(route.clone(), lane));
                let bound = self.bound(route.listen);
                tracing::info!(%service, listen = %bound, hosts = ?route.hosts, path_prefix = ?route.path_prefix, "route created");
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
        let _binding = self.binding.lock().await;
        let removed = self.lock().remove(service);
        let Some(entry) = removed else {
            return Ok(None);
        };
        self.save();
        let report = self.detach(service, &entry.route, &entry.lane, grace).await;
        tracing::info!(%service, cut = report.cut, "route removed");
        Ok(Some(report))
    }

    async fn routes(&self) -> Result<Vec<RouteInfo>, PlaneError> {
        let listeners = self.listeners_lock().clone();
        Ok(self
            .lock()
            .iter()
            .map(|(service, entry)| RouteInfo {
                service: service.clone(),
                route: entry.route.clone(),
                bound: listeners
                    .get(&entry.route.listen)
                    .map_or(entry.route.listen, Proxy::local_addr),
                backends: entry.backends(),
                gate: Gate::from_proxy(&entry.lane.gate()),
                split: entry.lane.split().as_ref().map(RouteSplit::from_proxy),
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
            entry.lane.add_backend(backend.to_proxy())
        })
    }

    async fn remove_backend(
        &self,
        service: &str,
        addr: SocketAddr,
    ) -> Result<Vec<SocketAddr>, PlaneError> {
        self.change(service, |entry| {
            let drain = entry.lane.remove_backend(addr);
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
            let (added, drain) = entry.lane.swap_backends(out, add.to_proxy());
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
        self.change(service, |entry| gate.apply(&entry.lane))
    }

    async fn set_split(&self, service: &str, split: Option<&RouteSplit>) -> Result<(), PlaneError> {
        self.change(service, |entry| {
            entry.lane.split_traffic(split.map(RouteSplit::to_proxy));
        })
    }

    async fn stats(&self) -> Result<Vec<ServiceStats>, PlaneError> {
        Ok(self
            .lock()
            .iter()
            .map(|(service, entry)| ServiceStats {
                service: service.clone(),
                totals: entry.lane.totals(),
                groups: entry.lane.group_stats(),
                backends: entry.lane.stats(),
            })
            .collect())
    }
}
