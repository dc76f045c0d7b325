//! Virtual routes on a shared HTTP listener: which lane a request goes to, by its Host (exact,
//! or `*.example.com` for any name under it) and the longest matching path prefix.

use std::sync::{Arc, PoisonError, RwLock};

use crate::error::ProxyError;
use crate::lane::Lane;

/// What requests a virtual route takes: any of `hosts` (all hosts when empty) and paths under
/// `path_prefix` (`/` for all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch {
    hosts: Vec<HostPattern>,
    path_prefix: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Exact(String),
    /// `*.example.com`, kept as `.example.com`.
    Under(String),
}

impl RouteMatch {
    /// Checks and normalises the patterns: hosts are DNS names (lower-cased), a wildcard only
    /// as the whole first label; the prefix starts with `/`.
    pub fn new(hosts: &[String], path_prefix: &str) -> Result<Self, ProxyError> {
        let bad = |reason: String| ProxyError::Route { reason };
        let mut patterns = Vec::with_capacity(hosts.len());
        for host in hosts {
            let host = host.trim().to_ascii_lowercase();
            let (pattern, name) = match host.strip_prefix("*.") {
                Some(rest) => (HostPattern::Under(format!(".{rest}")), rest.to_owned()),
                None => (HostPattern::Exact(host.clone()), host.clone()),
            };
            let valid_label = |label: &str| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            };
            if name.is_empty() || name.len() > 253 || !name.split('.').all(valid_label) {
                return Err(bad(format!(
                    "host {host:?} is not a DNS name (a wildcard is allowed only as `*.` in front)"
                )));
            }
            patterns.push(pattern);
        }
        let prefix = if path_prefix.is_empty() {
            "/"
        } else {
            path_prefix
        };
        if !prefix.starts_with('/') || prefix.contains(['?', '#', ' ']) {
            return Err(bad(format!(
                "path prefix {prefix:?} must start with / and hold no ?, # or space"
            )));
        }
        Ok(Self {
            hosts: patterns,
            path_prefix: prefix.to_owned(),
        })
    }

    /// How well a request matches, higher is better; `None` when it does not.
    pub(crate) fn score(&self, host: &str, path: &str) -> Option<(u8, usize, usize)> {
        let host_rank = if self.hosts.is_empty() {
            Some((0, 0))
        } else {
            self.hosts
                .iter()
                .filter_map(|pattern| match pattern {
                    HostPattern::Exact(name) if name == host => Some((2, name.len())),
                    HostPattern::Under(suffix) if host.ends_with(suffix.as_str()) => {
                        Some((1, suffix.len()))
                    }
                    _ => None,
                })
                .max()
        }?;
        let prefix = self.path_prefix.as_str();
        let under = path == prefix
            || (path.starts_with(prefix)
                && (prefix.ends_with('/') || path.as_bytes().get(prefix.len()) == Some(&b'/')));
        under.then_some((host_rank.0, host_rank.1, prefix.len()))
    }

    /// The host patterns, as written (`*.` for wildcards).
    pub fn hosts(&self) -> Vec<String> {
        self.hosts
            .iter()
            .map(|p| match p {
                HostPattern::Exact(name) => name.clone(),
                HostPattern::Under(suffix) => format!("*{suffix}"),
            })
            .collect()
    }

    /// The path prefix.
    pub fn path_prefix(&self) -> &str {
        &self.path_prefix
    }

    fn overlaps(&self, other: &RouteMatch) -> bool {
        self.path_prefix == other.path_prefix
            && (self.hosts.is_empty() && other.hosts.is_empty()
                || self.hosts.iter().any(|h| other.hosts.contains(h)))
    }
}

#[derive(Debug)]
struct Entry {
    name: Arc<str>,
    matcher: RouteMatch,
    lane: Lane,
}

/// The virtual routes of one listener; read on every request, changed rarely.
#[derive(Debug, Default)]
pub(crate) struct RouteTable {
    entries: RwLock<Arc<Vec<Arc<Entry>>>>,
}

impl RouteTable {
    fn snapshot(&self) -> Arc<Vec<Arc<Entry>>> {
        Arc::clone(&self.entries.read().unwrap_or_else(PoisonError::into_inner))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.snapshot().is_empty()
    }

    /// The lane of the best-matching route for a request to `host` (lower-case, no port) and
    /// `path`.
    pub(crate) fn pick(&self, host: &str, path: &str) -> Option<Lane> {
        let entries = self.snapshot();
        entries
            .iter()
            .filter_map(|e| e.matcher.score(host, path).map(|score| (score, e)))
            .max_by(|a, b| a.0.cmp(&b.0))
            .map(|(_, e)| e.lane.clone())
    }

    pub(crate) fn add(
        &self,
        name: &str,
        matcher: RouteMatch,
        lane: Lane,
    ) -> Result<(), ProxyError> {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(taken) = entries
            .iter()
            .find(|e| &*e.name == name || e.matcher.overlaps(&matcher))
        {
            return Err(ProxyError::Route {
                reason: if &*taken.name == name {
                    format!("a route named {name:?} exists")
                } else {
                    format!(
                        "route {name:?} would take the same hosts and path as {:?}",
                        taken.name
                    )
                },
            });
        }
        let mut next = Vec::clone(&entries);
        next.push(Arc::new(Entry {
            name: Arc::from(name),
            matcher,
            lane,
        }));
        *entries = Arc::new(next);
        Ok(())
    }

    pub(crate) fn remove(&self, name: &str) -> Option<Lane> {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        let found = entries.iter().find(|e| &*e.name == name)?.lane.clone();
        let next = entries
            .iter()
            .filter(|e| &*e.name != name)
            .cloned()
            .collect();
        *entries = Arc::new(next);
        Some(found)
    }

    pub(crate) fn get(&self, name: &str) -> Option<(RouteMatch, Lane)> {
        self.snapshot()
            .iter()
            .find(|e| &*e.name == name)
            .map(|e| (e.matcher.clone(), e.lane.clone()))
    }

    pub(crate) fn lanes(&self) -> Vec<Lane> {
        self.snapshot().iter().map(|e| e.lane.clone()).collect()
    }

    pub(crate) fn names(&self) -> Vec<String> {
        self.snapshot().iter().map(|e| e.name.to_string()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(hosts: &[&str], prefix: &str) -> RouteMatch {
        let hosts: Vec<String> = hosts.iter().map(|h| (*h).to_owned()).collect();
        RouteMatch::new(&hosts, prefix).expect("valid route")
    }

    #[test]
    fn exact_hosts_beat_wildcards_and_longer_prefixes_win() {
        let table = RouteTable::default();
        let lanes: Vec<Lane> = (0..4).map(|_| Lane::new(None)).collect();
        table
            .add("wild", route(&["*.example.com"], "/"), lanes[0].clone())
            .expect("add");
        table
            .add("www", route(&["www.example.com"], "/"), lanes[1].clone())
            .expect("add");
        table
            .add("api", route(&["www.example.com"], "/api"), lanes[2].clone())
            .expect("add");
        table
            .add("any", route(&[], "/static/"), lanes[3].clone())
            .expect("add");
        let picked = |host: &str, path: &str| {
            let lane = table.pick(host, path)?;
            lanes
                .iter()
                .position(|l| Arc::ptr_eq(&l.inner, &lane.inner))
        };
        assert_eq!(picked("www.example.com", "/"), Some(1));
        assert_eq!(picked("www.example.com", "/api/users"), Some(2));
        assert_eq!(
            picked("www.example.com", "/apiary"),
            Some(1),
            "a prefix ends at a /"
        );
        assert_eq!(picked("shop.example.com", "/api"), Some(0));
        assert_eq!(picked("a.b.example.com", "/"), Some(0));
        assert_eq!(
            picked("example.com", "/"),
            None,
            "*. needs a label in front"
        );
        assert_eq!(picked("other.org", "/static/x.css"), Some(3));
        assert_eq!(picked("other.org", "/"), None);
    }

    #[test]
    fn bad_patterns_and_taken_routes_are_refused() {
        for (hosts, prefix) in [
            (vec!["exa mple.com"], "/"),
            (vec!["a.*.com"], "/"),
            (vec!["*."], "/"),
            (vec!["ok.com"], "api"),
        ] {
            let hosts: Vec<String> = hosts.into_iter().map(str::to_owned).collect();
            assert!(
                RouteMatch::new(&hosts, prefix).is_err(),
                "{hosts:?} {prefix}"
            );
        }
        let table = RouteTable::default();
        table
            .add("a", route(&["x.com"], "/"), Lane::new(None))
            .expect("add");
        let taken = table.add("b", route(&["X.com"], "/"), Lane::new(None));
        assert!(
            taken
                .expect_err("overlap")
                .to_string()
                .contains("same hosts")
        );
        assert!(
            table
                .add("a", route(&["y.com"], "/"), Lane::new(None))
                .is_err()
        );
        assert!(table.remove("a").is_some());
        table
            .add("b", route(&["x.com"], "/"), Lane::new(None))
            .expect("free again");
    }
}
