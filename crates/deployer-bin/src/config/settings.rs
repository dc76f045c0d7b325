//! The validated configuration: every value checked, defaults applied, secrets read.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use deployer_core::ServiceSpec;

pub use super::raw::LogFormat;
use super::secret::Secret;
pub use deployer_http::hooks::Sender;

/// Everything the daemon needs, valid as a whole.
#[derive(Debug, Clone)]
pub struct Settings {
    /// This host's name.
    pub node: String,
    /// Deploys at once.
    pub max_parallel: usize,
    /// Bound on a graceful stop.
    pub shutdown_grace: Duration,
    /// Log format.
    pub log_format: LogFormat,
    /// Webhook listener and endpoints.
    pub webhooks: WebhookSettings,
    /// Admin API.
    pub admin: AdminSettings,
    /// Docker engine and local state.
    pub docker: DockerSettings,
    /// Where the proxies run.
    pub proxy: ProxySettings,
    /// Where targets are shared.
    pub coordinator: CoordinatorSettings,
    /// Periodic re-resolution of tracked tags.
    pub poll: PollSettings,
    /// Where reports go.
    pub notify: NotifySettings,
    /// The declared services.
    pub services: Vec<ServiceSpec>,
    /// Things that work but should not be so, e.g. secrets written inline.
    pub warnings: Vec<super::ConfigError>,
}

/// Webhook listener and endpoints.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Address the webhook server binds.
    pub listen: SocketAddr,
    /// Path prefix, e.g. `/hooks`.
    pub path: String,
    /// Largest accepted body.
    pub body_limit: usize,
    /// Configured senders.
    pub hooks: Vec<HookSettings>,
}

/// One enabled webhook endpoint.
#[derive(Debug, Clone)]
pub struct HookSettings {
    /// Who sends it.
    pub sender: Sender,
    /// Token or HMAC secret; `None` only when `insecure`.
    pub secret: Option<Secret>,
    /// Open without a secret.
    pub insecure: bool,
    /// Registry host override for image names.
    pub registry: Option<String>,
    /// Registry hosts the endpoint may announce images of (empty: its default).
    pub registries: Vec<String>,
    /// Docker Hub callbacks.
    pub callback: bool,
}

/// Admin API.
#[derive(Debug, Clone)]
pub struct AdminSettings {
    /// Address the admin server binds.
    pub listen: SocketAddr,
    /// Bearer token; required unless `listen` is loopback.
    pub token: Option<Secret>,
    /// Names accepted in `Host` and `Origin` besides the listen address.
    pub hosts: Vec<String>,
}

/// Where handover services' proxies run.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// In a process of its own, or in the daemon.
    pub mode: super::raw::ProxyMode,
    /// The proxy process's control socket.
    pub socket: PathBuf,
    /// The proxy process's routing state.
    pub state: PathBuf,
}

/// Docker engine and local state.
#[derive(Debug, Clone)]
pub struct DockerSettings {
    /// Engine endpoint; `None` uses `DOCKER_HOST` or the local socket.
    pub endpoint: Option<String>,
    /// Registry credentials file.
    pub config: Option<PathBuf>,
    /// Crash-recovery journal.
    pub journal: PathBuf,
    /// Previous images kept per repository.
    pub keep_images: u32,
    /// Prune older images after successful deploys.
    pub prune_images: bool,
    /// Default registry for names without one.
    pub registry: Option<String>,
    /// Node scope of the containers this deployer manages on a shared engine.
    pub scope: Option<String>,
}

/// Where targets are shared.
#[derive(Debug, Clone)]
pub enum CoordinatorSettings {
    /// In memory.
    Memory,
    /// etcd (boxed: much larger than the in-memory variant).
    Etcd(Box<EtcdSettings>),
}

/// etcd connection and behaviour.
#[derive(Debug, Clone)]
pub struct EtcdSettings {
    /// Client URLs.
    pub nodes: Vec<String>,
    /// Key prefix.
    pub prefix: String,
    /// Connect timeout.
    pub dial_timeout: Duration,
    /// Pause between reconnect attempts.
    pub retry_delay: Duration,
    /// Host lease TTL.
    pub lease_ttl: Duration,
    /// Hosts switching one service at once.
    pub rollout_slots: usize,
    /// Reports kept per service.
    pub history: usize,
    /// Linearizable reads.
    pub strong_consistency: bool,
    /// User name.
    pub username: Option<String>,
    /// Password.
    pub password: Option<Secret>,
    /// CA certificate.
    pub tls_ca: Option<PathBuf>,
    /// Client certificate and key.
    pub tls_identity: Option<(PathBuf, PathBuf)>,
}

/// Periodic re-resolution.
#[derive(Debug, Clone)]
pub struct PollSettings {
    /// Poll at all.
    pub enabled: bool,
    /// Period.
    pub interval: Duration,
    /// Least time between registry calls.
    pub min_interval: Duration,
    /// Poll once at start.
    pub on_start: bool,
}

/// Where reports go.
#[derive(Debug, Clone, Default)]
pub struct NotifySettings {
    /// Slack incoming webhook.
    pub slack: Option<SlackSettings>,
    /// Generic JSON webhook.
    pub webhook: Option<WebhookNotifySettings>,
}

/// Slack incoming webhook.
#[derive(Debug, Clone)]
pub struct SlackSettings {
    /// The webhook URL (a secret: it allows posting).
    pub url: Secret,
    /// Username override.
    pub username: Option<String>,
    /// Also report deploys starting.
    pub notify_started: bool,
}

/// Generic JSON webhook.
#[derive(Debug, Clone)]
pub struct WebhookNotifySettings {
    /// Receiver URL.
    pub url: Secret,
    /// HMAC key for `X-Deployer-Signature-256`.
    pub secret: Option<Secret>,
}
