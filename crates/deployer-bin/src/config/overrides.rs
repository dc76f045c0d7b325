//! Command-line and environment overrides of config keys: every option die-net/deployer
//! offered as a flag has one here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::raw::{CoordinatorKind, ProxyMode, RawConfig, RawEtcd, RawSlack};
use super::secret::SecretRef;

/// Values from flags or `DEPLOYER_*` environment variables; each wins over the file.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Overrides {
    /// This host's name in the fleet.
    #[arg(long, env = "DEPLOYER_NODE")]
    pub node: Option<String>,
    /// Webhook listen address.
    #[arg(long, env = "DEPLOYER_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Webhook path prefix.
    #[arg(long, env = "DEPLOYER_WEBHOOK_PATH")]
    pub webhook_path: Option<String>,
    /// Deploys at once.
    #[arg(long, env = "DEPLOYER_MAX_THREADS", alias = "max-parallel")]
    pub max_threads: Option<usize>,
    /// Docker engine endpoint (unix:///var/run/docker.sock, tcp://host:2375).
    #[arg(long, env = "DEPLOYER_DOCKER_ENDPOINT")]
    pub docker_endpoint: Option<String>,
    /// Docker config.json with registry credentials.
    #[arg(long, env = "DEPLOYER_DOCKERCFG")]
    pub dockercfg: Option<PathBuf>,
    /// Default registry for image names without one.
    #[arg(long, env = "DEPLOYER_REGISTRY")]
    pub registry: Option<String>,
    /// Grace between stop and kill, for every service without its own.
    #[arg(long, env = "DEPLOYER_KILL_TIMEOUT", value_parser = humantime::parse_duration)]
    pub kill_timeout: Option<Duration>,
    /// How often every tracked tag is re-resolved.
    #[arg(long, env = "DEPLOYER_REPULL_PERIOD", value_parser = humantime::parse_duration)]
    pub repull_period: Option<Duration>,
    /// Slack incoming webhook URL.
    #[arg(long, env = "DEPLOYER_SLACK_WEBHOOK_URL", hide_env_values = true)]
    pub slack_webhook_url: Option<String>,
    /// Slack username override.
    #[arg(long, env = "DEPLOYER_SLACK_USERNAME")]
    pub slack_username: Option<String>,
    /// etcd client URLs, comma-separated (selects the etcd coordinator).
    #[arg(long, env = "DEPLOYER_ETCD_NODES", value_delimiter = ',')]
    pub etcd_nodes: Option<Vec<String>>,
    /// etcd key prefix.
    #[arg(long, env = "DEPLOYER_ETCD_PREFIX")]
    pub etcd_prefix: Option<String>,
    /// etcd connect timeout.
    #[arg(long, env = "DEPLOYER_ETCD_DIAL_TIMEOUT", value_parser = humantime::parse_duration)]
    pub etcd_dial_timeout: Option<Duration>,
    /// Pause between etcd reconnect attempts.
    #[arg(long, env = "DEPLOYER_ETCD_RETRY_DELAY", value_parser = humantime::parse_duration)]
    pub etcd_retry_delay: Option<Duration>,
    /// Linearizable etcd reads.
    #[arg(long, env = "DEPLOYER_STRONG_CONSISTENCY")]
    pub strong_consistency: Option<bool>,
    /// Where handover services' proxies run: `process` (a process of its own that outlives
    /// the daemon) or `embedded`.
    #[arg(long, env = "DEPLOYER_PROXY_MODE", value_enum)]
    pub proxy_mode: Option<ProxyMode>,
}

impl Overrides {
    /// Applies the overrides; returns the config keys they set, for error messages.
    pub fn apply(&self, raw: &mut RawConfig) -> Vec<(&'static str, &'static str)> {
        let mut set = Vec::new();
        let mut mark = |key, flag| set.push((key, flag));
        if let Some(v) = &self.node {
            raw.node = Some(v.clone());
            mark("node", "--node");
        }
        if let Some(v) = self.listen {
            raw.webhooks.listen = Some(v);
            mark("webhooks.listen", "--listen");
        }
        if let Some(v) = &self.webhook_path {
            raw.webhooks.path = Some(v.clone());
            mark("webhooks.path", "--webhook-path");
        }
        if let Some(v) = self.max_threads {
            raw.max_parallel = Some(v);
            mark("max_parallel", "--max-threads");
        }
        if let Some(v) = &self.docker_endpoint {
            raw.docker.endpoint = Some(v.clone());
            mark("docker.endpoint", "--docker-endpoint");
        }
        if let Some(v) = &self.dockercfg {
            raw.docker.config = Some(v.clone());
            mark("docker.config", "--dockercfg");
        }
        if let Some(v) = &self.registry {
            raw.docker.registry = Some(v.clone());
            mark("docker.registry", "--registry");
        }
        if let Some(v) = self.kill_timeout {
            raw.defaults.stop = Some(v);
            mark("defaults.stop", "--kill-timeout");
        }
        if let Some(v) = self.proxy_mode {
            raw.proxy.mode = Some(v);
            mark("proxy.mode", "--proxy-mode");
        }
        if let Some(v) = self.repull_period {
            raw.poll.interval = Some(v);
            mark("poll.interval", "--repull-period");
        }
        if self.slack_webhook_url.is_some() || self.slack_username.is_some() {
            let slack = raw.notify.slack.get_or_insert(RawSlack {
                url: None,
                username: None,
                notify_started: false,
            });
            if let Some(v) = &self.slack_webhook_url {
                slack.url = Some(SecretRef::Inline(v.trim_end().to_owned()));
                mark("notify.slack.url", "--slack-webhook-url");
            }
            if let Some(v) = &self.slack_username {
                slack.username = Some(v.clone());
                mark("notify.slack.username", "--slack-username");
            }
        }
        let etcd_flags = self.etcd_nodes.is_some()
            || self.etcd_prefix.is_some()
            || self.etcd_dial_timeout.is_some()
            || self.etcd_retry_delay.is_some()
            || self.strong_consistency.is_some();
        if etcd_flags {
            let etcd = raw.etcd.get_or_insert_with(RawEtcd::default);
            if let Some(v) = &self.etcd_nodes {
                etcd.nodes = v.clone();
                raw.coordinator = Some(CoordinatorKind::Etcd);
                mark("etcd.nodes", "--etcd-nodes");
            }
            if let Some(v) = &self.etcd_prefix {
                etcd.prefix = Some(v.clone());
                mark("etcd.prefix", "--etcd-prefix");
            }
            if let Some(v) = self.etcd_dial_timeout {
                etcd.dial_timeout = Some(v);
                mark("etcd.dial_timeout", "--etcd-dial-timeout");
            }
            if let Some(v) = self.etcd_retry_delay {
                etcd.retry_delay = Some(v);
                mark("etcd.retry_delay", "--etcd-retry-delay");
            }
            if let Some(v) = self.strong_consistency {
                etcd.strong_consistency = Some(v);
                mark("etcd.strong_consistency", "--strong-consistency");
            }
        }
        set
    }
}
