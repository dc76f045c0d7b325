//! The key layout under the prefix. See the crate README for the values.
//!
//! ```text
//! <prefix>/targets/<registry/repo:tag>          Target (JSON)                      no lease
//! <prefix>/hosts/<node>                         HostRecord (JSON)                  lease
//! <prefix>/status/<service>/<node>              ServiceStatus (JSON)               no lease
//! <prefix>/rollout/<service>/<node>             SlotRecord (JSON)                  lease
//! <prefix>/endpoints/<service>/<node>           EndpointRecord (JSON)              lease
//! <prefix>/history/<service>/<ms>-<node>-<seq>  DeployReport (JSON)                no lease
//! ```
//!
//! Service names and node names never contain `/` (both are validated), so every segment
//! above can be split on `/` without escaping. Image references do contain `/` and `:`, which
//! is why they come last in their key.

use deployer_core::{ImageRef, ServiceName, Timestamp};

/// Builds every key the coordinator reads or writes, under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    /// The prefix without its trailing slash, e.g. `/prod/deployer`.
    root: String,
}

impl Keys {
    /// Keys under `prefix` (a trailing `/` is ignored).
    pub fn new(prefix: &str) -> Self {
        Self {
            root: prefix.trim_end_matches('/').to_owned(),
        }
    }

    /// The prefix, without trailing slash.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// Prefix of every target: `<prefix>/targets/`.
    pub fn targets(&self) -> String {
        format!("{}/targets/", self.root)
    }

    /// The target of a repo:tag: `<prefix>/targets/docker.io/library/app:latest`.
    pub fn target(&self, image: &ImageRef) -> String {
        format!("{}{}", self.targets(), image.without_digest())
    }

    /// Prefix of every live host: `<prefix>/hosts/`.
    pub fn hosts(&self) -> String {
        format!("{}/hosts/", self.root)
    }

    /// One host's liveness key: `<prefix>/hosts/<node>`.
    pub fn host(&self, node: &str) -> String {
        format!("{}{node}", self.hosts())
    }

    /// Prefix of every status: `<prefix>/status/`.
    pub fn statuses(&self) -> String {
        format!("{}/status/", self.root)
    }

    /// One service's status on one host: `<prefix>/status/<service>/<node>`.
    pub fn status(&self, service: &ServiceName, node: &str) -> String {
        format!("{}{service}/{node}", self.statuses())
    }

    /// Prefix of one service's rollout slots: `<prefix>/rollout/<service>/`.
    pub fn rollout(&self, service: &ServiceName) -> String {
        format!("{}/rollout/{service}/", self.root)
    }

    /// One host's rollout slot for a service: `<prefix>/rollout/<service>/<node>`.
    pub fn slot(&self, service: &ServiceName, node: &str) -> String {
        format!("{}{node}", self.rollout(service))
    }

    /// Prefix of every endpoint: `<prefix>/endpoints/`.
    pub fn endpoints(&self) -> String {
        format!("{}/endpoints/", self.root)
    }

    /// Prefix of one service's endpoints: `<prefix>/endpoints/<service>/`.
    pub fn service_endpoints(&self, service: &ServiceName) -> String {
        format!("{}{service}/", self.endpoints())
    }

    /// Where one host publishes a service's live address: `<prefix>/endpoints/<service>/<node>`.
    pub fn endpoint(&self, service: &ServiceName, node: &str) -> String {
        format!("{}{node}", self.service_endpoints(service))
    }

    /// Prefix of all history: `<prefix>/history/`.
    pub fn history(&self) -> String {
        format!("{}/history/", self.root)
    }

    /// Prefix of one service's history: `<prefix>/history/<service>/`.
    pub fn service_history(&self, service: &ServiceName) -> String {
        format!("{}{service}/", self.history())
    }

    /// One report: `<prefix>/history/<service>/<finished_at ms, 16 digits>-<node>-<seq>`.
    ///
    /// The zero-padded time makes keys sort by time for people and templates; the node and a
    /// per-process sequence number make them unique. The coordinator itself orders history
    /// by etcd's create revision, which no clock skew between hosts can disturb.
    pub fn history_entry(
        &self,
        service: &ServiceName,
        finished_at: Timestamp,
        node: &str,
        seq: u64,
    ) -> String {
        format!(
            "{}{:016}-{node}-{seq}",
            self.service_history(service),
            finished_at.as_millis()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let keys = Keys::new("/prod/deployer/");
        let image: ImageRef = "localhost:5000/demo/app:v2".parse().unwrap();
        let web = ServiceName::new("web").unwrap();
        assert_eq!(
            keys.target(&image),
            "/prod/deployer/targets/localhost:5000/demo/app:v2"
        );
        assert_eq!(keys.host("h1"), "/prod/deployer/hosts/h1");
        assert_eq!(keys.status(&web, "h1"), "/prod/deployer/status/web/h1");
        assert_eq!(keys.slot(&web, "h1"), "/prod/deployer/rollout/web/h1");
        assert_eq!(keys.endpoint(&web, "h1"), "/prod/deployer/endpoints/web/h1");
        assert_eq!(
            keys.history_entry(&web, Timestamp::from_millis(1_700_000_000_123), "h1", 7),
            "/prod/deployer/history/web/0001700000000123-h1-7"
        );
    }
}
