//! The config file as written: every key, unknown ones rejected. Validation turns it into
//! [`super::Settings`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::secret::SecretRef;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// This host's name in the fleet (default: the hostname).
    pub node: Option<String>,
    /// Deploys running at once (die-net's `max_threads`).
    pub max_parallel: Option<usize>,
    /// How long a stop waits for deploys under way.
    #[serde(default, with = "humantime_serde")]
    pub shutdown_grace: Option<Duration>,
    /// `text` or `json`.
    pub log_format: Option<LogFormat>,
    /// `memory` (one host) or `etcd` (a fleet).
    pub coordinator: Option<CoordinatorKind>,
    #[serde(default)]
    pub webhooks: RawWebhooks,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub docker: RawDocker,
    #[serde(default)]
    pub proxy: RawProxyProcess,
    #[serde(default)]
    pub etcd: Option<RawEtcd>,
    #[serde(default)]
    pub poll: RawPoll,
    #[serde(default)]
    pub notify: RawNotify,
    #[serde(default)]
    pub defaults: RawTimeouts,
    #[serde(default)]
    pub service: Vec<RawService>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// For people.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Which coordinator shares targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CoordinatorKind {
    /// In memory: one host, no extra process.
    #[default]
    Memory,
    /// etcd: several hosts.
    Etcd,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhooks {
    pub listen: Option<SocketAddr>,
    /// Path prefix of the webhook endpoints (die-net's `webhook path`).
    pub path: Option<String>,
    /// Largest accepted body in bytes.
    pub body_limit: Option<usize>,
    pub dockerhub: Option<RawHook>,
    pub registry: Option<RawHook>,
    pub github: Option<RawHook>,
    pub quay: Option<RawHook>,
    pub harbor: Option<RawHook>,
    pub generic: Option<RawHook>,
}

/// One webhook endpoint.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHook {
    /// Bearer or URL token (registry, Docker Hub, Quay, Harbor, generic).
    pub token: Option<SecretRef>,
    /// HMAC secret (GitHub).
    pub secret: Option<SecretRef>,
    /// Opens the endpoint without any secret. Off by default, and rightly so.
    #[serde(default)]
    pub insecure: bool,
    /// Registry host to use in image names instead of the one the sender reports.
    pub registry: Option<String>,
    /// Registry hosts whose images the endpoint may announce.
    #[serde(default)]
    pub registries: Vec<String>,
    /// Report the result to Docker Hub's `callback_url`.
    #[serde(default)]
    pub callback: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub listen: Option<SocketAddr>,
    pub token: Option<SecretRef>,
    /// Names clients reach the admin API by, besides its listen address.
    #[serde(default)]
    pub hosts: Vec<String>,
}

/// Where handover services' proxies run.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProxyProcess {
    /// `process` (default: a standalone proxy process that outlives the daemon) or `embedded`.
    pub mode: Option<ProxyMode>,
    /// The proxy process's control socket (default: `proxy.sock` beside the journal).
    pub socket: Option<PathBuf>,
    /// The proxy process's routing state file (default: `proxy-state.json` beside the journal).
    pub state: Option<PathBuf>,
}

/// Where the proxies run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ProxyMode {
    /// A process of its own, found on its socket or started by `deployer run`; it keeps
    /// serving while the daemon restarts.
    #[default]
    Process,
    /// Inside the daemon: traffic stops while the daemon is down.
    Embedded,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDocker {
    /// `unix:///var/run/docker.sock`, `tcp://host:2375`, ... (default: `DOCKER_HOST` or the socket).
    pub endpoint: Option<String>,
    /// Docker `config.json` with registry credentials (die-net's `--dockercfg`).
    pub config: Option<PathBuf>,
    /// Where the crash-recovery journal lives.
    pub journal: Option<PathBuf>,
    /// Previous images kept per repository for rollbacks.
    pub keep_images: Option<u32>,
    /// Remove images older than `keep_images` after a successful deploy.
    pub prune_images: Option<bool>,
    /// Default registry host for image names without one (die-net's `--registry`).
    pub registry: Option<String>,
    /// Node scope, for several deployers sharing one Docker engine (two environments on one
    /// host, a test fleet): the containers this deployer creates are labelled
    /// `deployer.node=<scope>` and named `<service>-<scope>-g<gen>-s<slot>`, and it sees
    /// (recovers, adopts, stops) only containers with that label. Letters, digits, `_`, `.`,
    /// `-`; the node name is a good choice. Unset: no label, and containers carrying one are
    /// left alone. Changing it orphans the old scope's containers (remove them by hand).
    pub scope: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEtcd {
    #[serde(default)]
    pub nodes: Vec<String>,
    pub prefix: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub dial_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub retry_delay: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub lease_ttl: Option<Duration>,
    /// Hosts that may switch one service at once.
    pub rollout_slots: Option<usize>,
    /// Reports kept per service.
    pub history: Option<usize>,
    /// Linearizable reads (die-net's `strong consistency`); serializable otherwise.
    pub strong_consistency: Option<bool>,
    pub username: Option<String>,
    pub password: Option<SecretRef>,
    pub tls: Option<RawTls>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPoll {
    pub enabled: Option<bool>,
    /// How often every tracked tag is re-resolved (die-net's repull period).
    #[serde(default, with = "humantime_serde")]
    pub interval: Option<Duration>,
    /// Least time between two registry calls.
    #[serde(default, with = "humantime_serde")]
    pub min_interval: Option<Duration>,
    /// Poll once at start.
    pub on_start: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotify {
    pub slack: Option<RawSlack>,
    pub webhook: Option<RawWebhookNotify>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSlack {
    pub url: Option<SecretRef>,
    pub username: Option<String>,
    #[serde(default)]
    pub notify_started: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhookNotify {
    pub url: SecretRef,
    pub secret: Option<SecretRef>,
}

/// Step timeouts; `[defaults]` sets them for every service.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    #[serde(default, with = "humantime_serde")]
    pub fetch: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub start: Option<Duration>,
    /// Grace between the stop signal and the kill (die-net's kill timeout).
    #[serde(default, with = "humantime_serde")]
    pub stop: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub drain: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    pub name: String,
    pub image: String,
    pub strategy: Option<StrategyKind>,
    pub replicas: Option<u32>,
    pub proxy: Option<RawProxy>,
    /// The canary strategy's share, hold and tester header.
    pub canary: Option<RawCanary>,
    pub health: Option<RawHealth>,
    #[serde(default)]
    pub timeouts: RawTimeouts,
    pub retry: Option<RawRetry>,
    pub build: Option<RawBuild>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub volumes: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub ports: Vec<String>,
    pub network: Option<String>,
    pub restart: Option<String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub memory_bytes: Option<u64>,
    pub cpus: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StrategyKind {
    Handover,
    Canary,
    Recreate,
    Stop,
}

/// `[service.canary]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCanary {
    /// The share of clients sent to the candidate, 1 to 99.
    pub percent: u8,
    /// How long it shares traffic before it takes all of it.
    #[serde(with = "humantime_serde")]
    pub hold: Duration,
    /// The header testers pick a side with (`always` / `never`).
    pub header: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProxy {
    pub listen: SocketAddr,
    pub container_port: u16,
    pub protocol: Option<ProtocolKind>,
    pub max_surge: Option<u32>,
    /// Threads of the proxy's own (0, the default: the daemon's runtime).
    pub workers: Option<u32>,
    /// Host names this service takes on a listener shared with others.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Paths this service takes on a shared listener.
    pub path_prefix: Option<String>,
    /// The certificate its listener terminates TLS with.
    pub tls: Option<RawCertFiles>,
    /// A plain-HTTP address redirected to HTTPS (with `tls`).
    pub redirect_from: Option<SocketAddr>,
}

/// PEM files of a certificate.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProtocolKind {
    Http,
    Tcp,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    pub kind: Option<ProbeKind>,
    pub path: Option<String>,
    pub status: Option<u16>,
    #[serde(default, with = "humantime_serde")]
    pub interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub deadline: Option<Duration>,
    pub healthy_threshold: Option<u32>,
    /// How long a promoted build is watched before the old generation is stopped.
    #[serde(default, with = "humantime_serde")]
    pub watch: Option<Duration>,
    /// During the watch, the percentage of proxied requests that may fail.
    pub max_error_percent: Option<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeKind {
    Http,
    Tcp,
    Docker,
    Running,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    #[serde(default, with = "humantime_serde")]
    pub initial: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub max: Option<Duration>,
    pub retries: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBuild {
    pub context: PathBuf,
    pub dockerfile: Option<String>,
    #[serde(default)]
    pub args: BTreeMap<String, String>,
}
