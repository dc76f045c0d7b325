//! [`EtcdConfig`]: where etcd is, how to reach it, and how the fleet shares it.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use deployer_core::Backoff;

/// etcd refuses leases shorter than about 2 s (1.5 election timeouts with default timings).
const MIN_LEASE_TTL: Duration = Duration::from_secs(2);
/// Longest service or node name segment kept in a key; longer ones are certainly a mistake.
const NODE_MAX: usize = 253;

/// How reads that do not feed a compare-and-swap are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Consistency {
    /// Through the raft leader: never stale (die-net/deployer's "strong consistency").
    #[default]
    Linearizable,
    /// By whichever member answers, from its local state: cheaper, possibly a little stale.
    /// Writes stay safe either way: every compare-and-swap re-reads linearizably.
    Serializable,
}

/// TLS files for `https://` endpoints (PEM). Paths are read at connect time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsFiles {
    /// CA bundle that signed the etcd servers' certificates; `None` trusts no extra CA
    /// (the servers' certificates must then chain to a root the TLS stack knows).
    pub ca: Option<PathBuf>,
    /// Client certificate, for etcd's `--client-cert-auth`. Needs `key` too.
    pub cert: Option<PathBuf>,
    /// Client private key. Needs `cert` too.
    pub key: Option<PathBuf>,
    /// Server name to verify, when it differs from the endpoint's host.
    pub domain: Option<String>,
}

/// Settings of an [`EtcdCoordinator`](crate::EtcdCoordinator).
///
/// Every host of a fleet must use the same `prefix` and `slots_per_service`, and a distinct
/// `node`. [`Default`] gives a local, single-endpoint setup; [`EtcdConfig::validate`] reports
/// the first field that makes no sense. The password never appears in `Debug` output.
///
/// ```
/// use std::time::Duration;
/// use deployer_etcd::EtcdConfig;
/// let config = EtcdConfig::new(["http://10.0.0.5:2379", "http://10.0.0.6:2379"])
///     .with_prefix("/prod/deployer")
///     .with_node("web-1")
///     .with_lease_ttl(Duration::from_secs(15))
///     .with_slots_per_service(2);
/// config.validate().unwrap();
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct EtcdConfig {
    /// Client URLs of the etcd members (`http://host:2379`, `https://...` with TLS).
    /// Default: `http://127.0.0.1:2379`.
    pub endpoints: Vec<String>,
    /// Key prefix of this deployment environment; one per environment (`/prod/deployer`).
    /// Default: `/deployer`.
    pub prefix: String,
    /// This host's name in keys: 1 to 253 of `[A-Za-z0-9_.-]`. Default: the kernel's host
    /// name (`localhost` if it cannot be read). Use the driver's node name.
    pub node: String,
    /// How long to wait for a TCP/TLS connection to a member. Default: 5 s.
    pub dial_timeout: Duration,
    /// How long one request may take before it counts as "etcd unavailable". Default: 5 s.
    pub request_timeout: Duration,
    /// First delay before re-establishing a watch or a lease keep-alive; doubles up to
    /// `max_retry_delay`. Default: 500 ms.
    pub retry_delay: Duration,
    /// Longest delay between reconnection attempts; a value below `retry_delay` counts as
    /// `retry_delay` (no doubling). Default: 10 s.
    pub max_retry_delay: Duration,
    /// Lifetime of this host's lease without keep-alives: how long after a crash its
    /// rollout slots and endpoints vanish. At least 2 s, rounded up to whole seconds; keep it
    /// above `request_timeout`, or a slow etcd can let the lease lapse (it is then replaced
    /// and this host's keys put back). Default: 10 s.
    pub lease_ttl: Duration,
    /// At most this many hosts switch one service at the same time (K). Default: 1.
    pub slots_per_service: usize,
    /// Reports kept per service in `history/`. Default: 100.
    pub history_kept: usize,
    /// User for etcd's authentication; needs `password`.
    pub user: Option<String>,
    /// Password of `user`. Never logged or printed.
    pub password: Option<String>,
    /// TLS client settings; `None` for plain `http://` endpoints.
    pub tls: Option<TlsFiles>,
    /// How plain reads are served. Default: linearizable.
    pub consistency: Consistency,
}

impl Default for EtcdConfig {
    fn default() -> Self {
        Self {
            endpoints: vec!["http://127.0.0.1:2379".to_owned()],
            prefix: "/deployer".to_owned(),
            node: default_node(),
            dial_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            retry_delay: Duration::from_millis(500),
            max_retry_delay: Duration::from_secs(10),
            lease_ttl: Duration::from_secs(10),
            slots_per_service: 1,
            history_kept: 100,
            user: None,
            password: None,
            tls: None,
            consistency: Consistency::Linearizable,
        }
    }
}

/// The kernel's host name, read without libc; the default node name.
fn default_node() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| node_problem(name).is_none())
        .unwrap_or_else(|| "localhost".to_owned())
}

impl fmt::Debug for EtcdConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdConfig")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .field("node", &self.node)
            .field("dial_timeout", &self.dial_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("retry_delay", &self.retry_delay)
            .field("max_retry_delay", &self.max_retry_delay)
            .field("lease_ttl", &self.lease_ttl)
            .field("slots_per_service", &self.slots_per_service)
            .field("history_kept", &self.history_kept)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls)
            .field("consistency", &self.consistency)
            .finish()
    }
}

/// A setting that makes no sense, named by its field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid etcd.{field}: {problem}")]
pub struct ConfigError {
    /// The offending field of [`EtcdConfig`].
    pub field: &'static str,
    /// What is wrong with its value.
    pub problem: String,
}

impl ConfigError {
    fn new(field: &'static str, problem: impl Into<String>) -> Self {
        Self {
            field,
            problem: problem.into(),
        }
    }
}

impl EtcdConfig {
    /// Defaults with these endpoints.
    pub fn new<S: Into<String>>(endpoints: impl IntoIterator<Item = S>) -> Self {
        Self {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// Sets the key prefix.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets this host's node name.
    pub fn with_node(mut self, node: impl Into<String>) -> Self {
        self.node = node.into();
        self
    }

    /// Sets the dial timeout.
    pub fn with_dial_timeout(mut self, timeout: Duration) -> Self {
        self.dial_timeout = timeout;
        self
    }

    /// Sets the per-request timeout.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets the first and the longest reconnection delay.
    pub fn with_retry_delay(mut self, first: Duration, max: Duration) -> Self {
        self.retry_delay = first;
        self.max_retry_delay = max;
        self
    }

    /// Sets the lease TTL.
    pub fn with_lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// Sets K, the hosts allowed to switch one service at once.
    pub fn with_slots_per_service(mut self, slots: usize) -> Self {
        self.slots_per_service = slots;
        self
    }

    /// Sets the reports kept per service.
    pub fn with_history_kept(mut self, kept: usize) -> Self {
        self.history_kept = kept;
        self
    }

    /// Sets user and password for etcd's authentication.
    pub fn with_user(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self.password = Some(password.into());
        self
    }

    /// Sets the TLS files.
    pub fn with_tls(mut self, tls: TlsFiles) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Sets how plain reads are served.
    pub fn with_consistency(mut self, consistency: Consistency) -> Self {
        self.consistency = consistency;
        self
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.endpoints.is_empty() {
            return Err(ConfigError::new(
                "endpoints",
                "list at least one etcd member",
            ));
        }
        for endpoint in &self.endpoints {
            let rest = endpoint
                .strip_prefix("http://")
                .or_else(|| endpoint.strip_prefix("https://"));
            match rest {
                Some(host) if !host.is_empty() && !host.contains(char::is_whitespace) => {}
                _ => {
                    return Err(ConfigError::new(
                        "endpoints",
                        format!("{endpoint:?} is not an http:// or https:// URL"),
                    ));
                }
            }
            if endpoint.starts_with("https://") != self.tls.is_some() {
                return Err(ConfigError::new(
                    "tls",
                    format!(
                        "{endpoint:?}: https:// endpoints need tls settings, http:// ones must not have them"
                    ),
                ));
            }
        }
        let prefix = self.prefix.trim_end_matches('/');
        if prefix.is_empty() || prefix.contains(char::is_whitespace) || prefix.contains("//") {
            return Err(ConfigError::new(
                "prefix",
                format!(
                    "{:?} must be a non-empty key path like /prod/deployer",
                    self.prefix
                ),
            ));
        }
        if let Some(problem) = node_problem(&self.node) {
            return Err(ConfigError::new("node", problem));
        }
        for (field, value) in [
            ("dial_timeout", self.dial_timeout),
            ("request_timeout", self.request_timeout),
            ("retry_delay", self.retry_delay),
        ] {
            if value.is_zero() {
                return Err(ConfigError::new(field, "must be greater than zero"));
            }
        }
        if self.lease_ttl < MIN_LEASE_TTL {
            return Err(ConfigError::new(
                "lease_ttl",
                format!("{:?} is below etcd's minimum of 2 s", self.lease_ttl),
            ));
        }
        if self.slots_per_service == 0 {
            return Err(ConfigError::new("slots_per_service", "must be at least 1"));
        }
        if self.history_kept == 0 {
            return Err(ConfigError::new("history_kept", "must be at least 1"));
        }
        match (&self.user, &self.password) {
            (Some(user), Some(_)) if user.is_empty() => {
                return Err(ConfigError::new("user", "must not be empty"));
            }
            (Some(_), None) => return Err(ConfigError::new("password", "user needs a password")),
            (None, Some(_)) => return Err(ConfigError::new("user", "password needs a user")),
            _ => {}
        }
        if let Some(tls) = &self.tls
            && tls.cert.is_some() != tls.key.is_some()
        {
            return Err(ConfigError::new(
                "tls",
                "a client certificate needs its key and the other way round",
            ));
        }
        Ok(())
    }

    /// The prefix without trailing slashes.
    pub(crate) fn root(&self) -> &str {
        self.prefix.trim_end_matches('/')
    }

    /// Lease TTL in whole seconds, rounded up, as etcd takes it.
    pub(crate) fn lease_ttl_secs(&self) -> i64 {
        let secs = self.lease_ttl.as_secs() + u64::from(self.lease_ttl.subsec_nanos() > 0);
        i64::try_from(secs).unwrap_or(i64::MAX)
    }

    /// Reconnection delays, from `retry_delay` doubling to `max_retry_delay`, forever.
    pub(crate) fn backoff(&self) -> Backoff {
        let max = self.max_retry_delay.max(self.retry_delay);
        Backoff::new(self.retry_delay, max, u32::MAX).unwrap_or_default()
    }

    /// Reconnection delays for keeping the lease alive: never more than a third of the TTL.
    /// After an outage etcd restores the lease with its full TTL; a keeper still waiting out a
    /// long backoff would let it expire, dropping this host's slots and endpoints (and letting
    /// another host take a slot this one still uses).
    pub(crate) fn lease_backoff(&self) -> Backoff {
        let cap = (self.lease_ttl / 3).max(Duration::from_millis(100));
        let first = self.retry_delay.min(cap);
        Backoff::new(first, cap, u32::MAX).unwrap_or_default()
    }
}

/// Why `node` cannot be a key segment, if it cannot.
fn node_problem(node: &str) -> Option<String> {
    if node.is_empty() {
        return Some("must not be empty".to_owned());
    }
    if node.len() > NODE_MAX {
        return Some(format!("{node:?} is longer than {NODE_MAX} characters"));
    }
    node.chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
        .map(|bad| format!("{node:?} contains {bad:?}; allowed are letters, digits, '_', '.', '-'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(config: &EtcdConfig) -> &'static str {
        config.validate().unwrap_err().field
    }

    #[test]
    fn defaults_are_valid() {
        EtcdConfig::default().validate().unwrap();
    }

    #[test]
    fn errors_name_the_field() {
        let base = EtcdConfig::default().with_node("a");
        assert_eq!(
            field_of(&EtcdConfig::new(Vec::<String>::new())),
            "endpoints"
        );
        assert_eq!(field_of(&EtcdConfig::new(["127.0.0.1:2379"])), "endpoints");
        assert_eq!(field_of(&base.clone().with_prefix("/")), "prefix");
        assert_eq!(field_of(&base.clone().with_node("a/b")), "node");
        assert_eq!(field_of(&base.clone().with_node("")), "node");
        assert_eq!(
            field_of(&base.clone().with_lease_ttl(Duration::from_secs(1))),
            "lease_ttl"
        );
        assert_eq!(
            field_of(&base.clone().with_slots_per_service(0)),
            "slots_per_service"
        );
        assert_eq!(field_of(&base.clone().with_history_kept(0)), "history_kept");
        assert_eq!(
            field_of(
                &base
                    .clone()
                    .with_retry_delay(Duration::ZERO, Duration::ZERO)
            ),
            "retry_delay"
        );
        let mut no_password = base;
        no_password.user = Some("root".into());
        assert_eq!(field_of(&no_password), "password");
        assert_eq!(field_of(&EtcdConfig::new(["https://10.0.0.1:2379"])), "tls");
        let half_identity = TlsFiles {
            cert: Some("client.pem".into()),
            ..TlsFiles::default()
        };
        assert_eq!(
            field_of(&EtcdConfig::new(["https://10.0.0.1:2379"]).with_tls(half_identity)),
            "tls"
        );
    }

    #[test]
    fn password_is_never_printed() {
        let config = EtcdConfig::default().with_user("root", "hunter2");
        let printed = format!("{config:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("<redacted>"), "{printed}");
    }

    #[test]
    fn a_max_retry_delay_below_the_first_means_no_doubling() {
        let config =
            EtcdConfig::default().with_retry_delay(Duration::from_secs(30), Duration::from_secs(1));
        config.validate().unwrap();
        assert_eq!(config.backoff().delay(5), Duration::from_secs(30));
    }

    #[test]
    fn the_lease_is_retried_well_within_its_ttl() {
        let config = EtcdConfig::default()
            .with_lease_ttl(Duration::from_secs(3))
            .with_retry_delay(Duration::from_millis(500), Duration::from_secs(10));
        let backoff = config.lease_backoff();
        let longest = (1..50).map(|n| backoff.delay(n)).max().unwrap();
        assert_eq!(longest, Duration::from_secs(1));
        assert_eq!(
            config.backoff().delay(10),
            Duration::from_secs(10),
            "other retries keep theirs"
        );
    }

    #[test]
    fn ttl_rounds_up_to_whole_seconds() {
        let config = EtcdConfig::default().with_lease_ttl(Duration::from_millis(2_500));
        assert_eq!(config.lease_ttl_secs(), 3);
        assert_eq!(config.root(), "/deployer");
        assert_eq!(
            config.with_prefix("/prod/deployer/").root(),
            "/prod/deployer"
        );
    }
}
