//! One route's place in the fleet: its settings, its lane, and what the lane does not keep.

use std::collections::HashMap;
use std::net::SocketAddr;

use deployer_proxy::{Drain, Lane};

use crate::route::{Route, RouteBackend};

#[derive(Debug)]
pub(super) struct Entry {
    pub(super) route: Route,
    /// Where its traffic goes: its listener's own lane, or a virtual route on a shared one.
    pub(super) lane: Lane,
    /// The group each backend was added in (the proxy keeps it, but does not list it).
    pub(super) groups: HashMap<SocketAddr, String>,
    /// Backends taken out whose drain nobody waited for yet.
    pub(super) drains: HashMap<SocketAddr, Drain>,
}

impl Entry {
    pub(super) fn new(route: Route, lane: Lane) -> Self {
        Self {
            route,
            lane,
            groups: HashMap::new(),
            drains: HashMap::new(),
        }
    }

    pub(super) fn backends(&self) -> Vec<RouteBackend> {
        self.lane
            .backends()
            .into_iter()
            .map(|addr| {
                let group = self.groups.get(&addr).cloned().unwrap_or_default();
                RouteBackend::new(addr, group)
            })
            .collect()
    }

    /// Makes `backends` the lane's live set (a restore, a route moved to a new lane).
    pub(super) fn serve(&mut self, backends: &[RouteBackend]) {
        for backend in backends {
            self.note_added(backend);
        }
        drop(
            self.lane
                .replace_backends(backends.iter().map(RouteBackend::to_proxy).collect()),
        );
    }

    pub(super) fn keep_drain(&mut self, drain: Drain) -> Vec<SocketAddr> {
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

    pub(super) fn note_added(&mut self, backend: &RouteBackend) {
        // Back in rotation (a rollback to it): its old drain no longer applies.
        drop(self.drains.remove(&backend.addr));
        self.groups
            .entry(backend.addr)
            .or_insert_with(|| backend.group.clone());
    }
}
