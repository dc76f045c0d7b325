//! Groups of backends: a caller-given name per backend (e.g. the release it runs) under
//! which its counters are also summed, so they outlive the backend and its address.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use crate::stats::{Counters, GroupStats, load};

/// A backend to add: its address and, optionally, the group its counters are summed in.
///
/// A plain [`SocketAddr`] converts into one without a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub(crate) addr: SocketAddr,
    pub(crate) group: Arc<str>,
}

impl Backend {
    /// The backend at `addr`, in no group (the group named "").
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            group: Arc::from(""),
        }
    }

    /// Sums its counters in `group` too (see [`Proxy::group_stats`](crate::Proxy::group_stats)).
    /// A backend already live keeps the group it was added with.
    #[must_use]
    pub fn in_group(mut self, group: impl Into<Arc<str>>) -> Self {
        self.group = group.into();
        self
    }

    /// The backend's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl From<SocketAddr> for Backend {
    fn from(addr: SocketAddr) -> Self {
        Self::new(addr)
    }
}

/// One group's sums, shared by the trackers of its backends.
#[derive(Debug)]
pub(crate) struct Group {
    name: Arc<str>,
    pub(crate) counters: Counters,
    /// Time to response headers of the group's requests: a canary is judged against the
    /// build it shares traffic with.
    pub(crate) latency: crate::latency::Latency,
}

impl Group {
    pub(crate) fn name(&self) -> &str {
        &self.name
    }
}

/// Every group ever used, in order of first use. Kept for the proxy's lifetime: a group is
/// a handful of counters, and dropping one would make its totals go backwards if a backend
/// joined it again (a rollback to an earlier release).
#[derive(Debug, Default)]
pub(crate) struct Groups(Mutex<Vec<Arc<Group>>>);

impl Groups {
    /// The group named `name`, created on first use. Called when a backend is added, never
    /// per request.
    pub(crate) fn get(&self, name: &Arc<str>) -> Arc<Group> {
        let mut groups = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(group) = groups.iter().find(|g| g.name == *name) {
            return Arc::clone(group);
        }
        let group = Arc::new(Group {
            name: Arc::clone(name),
            counters: Counters::default(),
            latency: crate::latency::Latency::default(),
        });
        groups.push(Arc::clone(&group));
        group
    }

    /// Every group's sums; `live` tells how many live backends a group has.
    pub(crate) fn stats(&self, live: impl Fn(&Group) -> usize) -> Vec<GroupStats> {
        let groups = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        groups
            .iter()
            .map(|g| {
                let c = &g.counters;
                GroupStats {
                    group: Arc::clone(&g.name),
                    live_backends: live(g),
                    requests: load(&c.requests),
                    errors: load(&c.errors),
                    server_errors: load(&c.server_errors),
                    active: load(&c.active),
                    cut: load(&c.cut),
                    answers: c.answers(),
                    latency: g.latency.snapshot(),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends::Pool;
    use crate::stats::{ResponseClass, Totals};

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn group<'a>(stats: &'a [GroupStats], name: &str) -> &'a GroupStats {
        stats
            .iter()
            .find(|g| &*g.group == name)
            .unwrap_or_else(|| panic!("no group {name} in {stats:?}"))
    }

    #[test]
    fn a_removed_backends_counts_stay_in_its_group() {
        let pool = Pool::new(Arc::new(Totals::default()), None);
        pool.add(Backend::new(addr(1)).in_group("g1"));
        pool.add(Backend::new(addr(2)).in_group("g1"));
        for _ in 0..2 {
            let (_, guard) = pool.pick().expect("a backend");
            guard.record_answer(ResponseClass::Success);
        }
        let (_, failing) = pool.pick().expect("a backend");
        failing.record_error();
        failing.record_answer(ResponseClass::GatewayError);
        drop(failing);
        let (_, open) = pool.pick().expect("a backend");

        let (_, drain) = pool.swap(&[addr(1), addr(2)], Backend::new(addr(3)).in_group("g2"));
        let (_, new) = pool.pick().expect("a backend");
        new.record_answer(ResponseClass::ServerError);
        open.record_cut();
        drop((open, new, drain));
        assert_eq!(pool.stats().len(), 1, "the g1 backends are gone");

        let stats = pool.group_stats();
        let g1 = group(&stats, "g1");
        assert_eq!(
            (g1.live_backends, g1.requests, g1.errors, g1.active, g1.cut),
            (0, 4, 1, 0, 1)
        );
        assert_eq!(g1.answers.get(ResponseClass::Success), 2);
        assert_eq!(g1.answers.get(ResponseClass::GatewayError), 1);
        let g2 = group(&stats, "g2");
        assert_eq!((g2.live_backends, g2.requests, g2.active), (1, 1, 0));
        assert_eq!(g2.answers.get(ResponseClass::ServerError), 1);
        assert_eq!(stats.len(), 2);
    }

    #[test]
    fn a_group_joined_again_carries_on_from_its_totals() {
        let pool = Pool::new(Arc::new(Totals::default()), None);
        pool.add(Backend::new(addr(1)).in_group("g1"));
        drop(pool.pick());
        drop(pool.replace(vec![Backend::new(addr(2)).in_group("g2")]));
        // A rollback: the first release comes back on another address.
        drop(pool.replace(vec![Backend::new(addr(3)).in_group("g1")]));
        drop(pool.pick());
        let stats = pool.group_stats();
        assert_eq!(
            stats
                .iter()
                .map(|g| (&*g.group, g.live_backends, g.requests))
                .collect::<Vec<_>>(),
            [("g1", 1, 2), ("g2", 0, 0)]
        );
    }

    #[test]
    fn an_address_already_live_keeps_its_group() {
        let pool = Pool::new(Arc::new(Totals::default()), None);
        pool.add(addr(1));
        pool.add(Backend::new(addr(1)).in_group("g9"));
        drop(pool.pick());
        let stats = pool.group_stats();
        assert_eq!(stats.len(), 1);
        assert_eq!((&*stats[0].group, stats[0].requests), ("", 1));
    }

    #[test]
    fn statuses_fall_in_their_class() {
        use http::StatusCode;
        let cases = [
            (StatusCode::SWITCHING_PROTOCOLS, "1xx"),
            (StatusCode::NO_CONTENT, "2xx"),
            (StatusCode::FOUND, "3xx"),
            (StatusCode::NOT_FOUND, "4xx"),
            (StatusCode::BAD_GATEWAY, "5xx"),
        ];
        for (status, class) in cases {
            assert_eq!(ResponseClass::of(status).as_str(), class, "{status}");
        }
        let odd = StatusCode::from_u16(799).expect("a valid code");
        assert_eq!(ResponseClass::of(odd), ResponseClass::ServerError);
    }
}
