//! Settings for everything in this crate, with defaults and validation.
//!
//! The binary maps its TOML onto these structs (secrets already read from wherever they live)
//! and calls `validate` before binding a port. Every [`ConfigError`] names the offending field
//! by the dotted path the README documents (`webhooks.github.secret`, `poll.period`, ...).

use std::net::SocketAddr;
use std::time::Duration;

use deployer_core::ImageRef;

use crate::hooks::Sender;
use crate::secret::Secret;

/// Shortest accepted webhook secret or admin token: anything shorter can be guessed online.
pub const MIN_SECRET_LEN: usize = 16;
/// Floor on the poll period, so a typo cannot hammer a registry.
pub const MIN_POLL_PERIOD: Duration = Duration::from_secs(60);

/// A setting that makes no sense, named by its field path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {problem}")]
pub struct ConfigError {
    /// Dotted path of the field, for example `webhooks.github.secret`.
    pub field: String,
    /// What is wrong with its value (never the value of a secret).
    pub problem: String,
}

impl ConfigError {
    /// A rejection of `field` for `problem`.
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

/// How one webhook endpoint authenticates its sender.
///
/// An endpoint is served only when it has a secret, or when `insecure` says explicitly that
/// anyone may call it. Otherwise it answers 404, exactly like a path that does not exist.
#[derive(Debug, Clone, Default)]
pub struct EndpointConfig {
    /// The shared secret: the path/query token (Docker Hub, Quay), the bearer token
    /// (registry, Harbor, generic) or the HMAC key (GitHub).
    pub secret: Option<Secret>,
    /// Serve this endpoint without authentication. Only for trusted networks.
    pub insecure: bool,
    /// The registry host services track, overriding the one the sender reports (registry:
    /// `request.host`; Harbor: `resource_url`; Quay: `docker_url`). Pushers may reach a
    /// registry under another name than the one the deployer pulls from.
    pub registry: Option<String>,
    /// The registry hosts whose images this endpoint may announce; a request naming another
    /// is refused (403 `foreign_registry`). Empty: `registry` when set, else the sender's own
    /// (GitHub `ghcr.io`, Quay `quay.io`, Docker Hub `docker.io`); the registry and Harbor
    /// endpoints then speak for none, and the generic one for any.
    pub registries: Vec<String>,
}

impl EndpointConfig {
    /// An endpoint that requires `secret`.
    pub fn with_secret(secret: impl Into<Secret>) -> Self {
        Self {
            secret: Some(secret.into()),
            ..Self::default()
        }
    }

    /// An endpoint open to anyone.
    pub fn insecure() -> Self {
        Self {
            insecure: true,
            ..Self::default()
        }
    }

    /// The same endpoint with a registry name override.
    pub fn registry(mut self, registry: impl Into<String>) -> Self {
        self.registry = Some(registry.into());
        self
    }

    /// The same endpoint bound to `registries` (see [`registries`](Self::registries)).
    pub fn registries<S: Into<String>>(mut self, registries: impl IntoIterator<Item = S>) -> Self {
        self.registries = registries.into_iter().map(Into::into).collect();
        self
    }

    /// Whether the endpoint is served.
    pub fn is_enabled(&self) -> bool {
        self.secret.is_some() || self.insecure
    }

    fn validate(&self, sender: Sender) -> Result<(), ConfigError> {
        let field = |name: &str| format!("webhooks.{}.{name}", sender.as_str());
        if let Some(secret) = &self.secret {
            if self.insecure {
                return Err(ConfigError::new(
                    field("insecure"),
                    "set together with a secret; choose one",
                ));
            }
            check_secret(&field("secret"), secret)?;
            if sender.auth() == crate::hooks::AuthKind::Token
                && !secret.expose().bytes().all(is_url_safe)
            {
                return Err(ConfigError::new(
                    field("secret"),
                    "is sent in a URL, so it may only hold A-Z a-z 0-9 . _ ~ -",
                ));
            }
        }
        if let Some(registry) = &self.registry {
            if !matches!(sender, Sender::Registry | Sender::Harbor | Sender::Quay) {
                return Err(ConfigError::new(
                    field("registry"),
                    "only the registry, harbor and quay endpoints report a registry host",
                ));
            }
            check_registry_host(&field("registry"), registry)?;
            if !self.registries.is_empty() {
                return Err(ConfigError::new(
                    field("registries"),
                    "set together with registry, which already names the one host of every image this endpoint announces; choose one",
                ));
            }
        }
        for (i, registry) in self.registries.iter().enumerate() {
            check_registry_host(&format!("{}[{i}]", field("registries")), registry)?;
        }
        Ok(())
    }
}

fn check_registry_host(field: &str, registry: &str) -> Result<(), ConfigError> {
    let probe = ImageRef::parse(&format!("{registry}/probe:latest"));
    if probe.map(|i| i.registry() != registry).unwrap_or(true) {
        return Err(ConfigError::new(
            field,
            format!("{registry:?} is not a registry host[:port]"),
        ));
    }
    Ok(())
}

fn is_url_safe(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-')
}

fn check_secret(field: &str, secret: &Secret) -> Result<(), ConfigError> {
    if secret.is_empty() || secret.expose().len() < MIN_SECRET_LEN {
        return Err(ConfigError::new(
            field,
            format!("must be at least {MIN_SECRET_LEN} characters"),
        ));
    }
    Ok(())
}

/// Settings of the webhook endpoints.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Where the endpoints live (die-net/deployer's `webhook path`); default `/hooks`, so
    /// Docker Hub posts to `/hooks/dockerhub/<token>`. `/` puts them at the root.
    pub path_prefix: String,
    /// Largest accepted body; default 1 MiB. Larger bodies get 413.
    pub body_limit: usize,
    /// How long a sender may take to send its body; default 10 s. Slower ones get 408.
    pub body_timeout: Duration,
    /// `Retry-After` sent with 503 when the event queue is full; default 5 s.
    pub retry_after: Duration,
    /// Docker Hub repository webhooks: token in the path or `?token=`.
    pub dockerhub: EndpointConfig,
    /// Docker Registry (distribution) notifications: `Authorization: Bearer`.
    pub registry: EndpointConfig,
    /// GitHub `package` / `registry_package` events: `X-Hub-Signature-256`.
    pub github: EndpointConfig,
    /// Quay `repo_push` notifications: token in the path or `?token=`.
    pub quay: EndpointConfig,
    /// Harbor `PUSH_ARTIFACT` webhooks: `Authorization: Bearer`.
    pub harbor: EndpointConfig,
    /// `{"image": ..., "digest": ...}` from CI or curl: `Authorization: Bearer`.
    pub generic: EndpointConfig,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            path_prefix: "/hooks".to_owned(),
            body_limit: 1024 * 1024,
            body_timeout: Duration::from_secs(10),
            retry_after: Duration::from_secs(5),
            dockerhub: EndpointConfig::default(),
            registry: EndpointConfig::default(),
            github: EndpointConfig::default(),
            quay: EndpointConfig::default(),
            harbor: EndpointConfig::default(),
            generic: EndpointConfig::default(),
        }
    }
}

impl WebhookConfig {
    /// The settings of one endpoint.
    pub fn endpoint(&self, sender: Sender) -> &EndpointConfig {
        match sender {
            Sender::DockerHub => &self.dockerhub,
            Sender::Registry => &self.registry,
            Sender::GitHub => &self.github,
            Sender::Quay => &self.quay,
            Sender::Harbor => &self.harbor,
            Sender::Generic => &self.generic,
        }
    }

    /// The settings of one endpoint, to change.
    pub fn endpoint_mut(&mut self, sender: Sender) -> &mut EndpointConfig {
        match sender {
            Sender::DockerHub => &mut self.dockerhub,
            Sender::Registry => &mut self.registry,
            Sender::GitHub => &mut self.github,
            Sender::Quay => &mut self.quay,
            Sender::Harbor => &mut self.harbor,
            Sender::Generic => &mut self.generic,
        }
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let prefix = &self.path_prefix;
        if !prefix.starts_with('/')
            || prefix.contains(['{', '}', '?', '#', '*'])
            || prefix.contains("//")
        {
            return Err(ConfigError::new(
                "webhooks.path_prefix",
                format!("{prefix:?} must be an absolute path like /hooks"),
            ));
        }
        if self.body_limit == 0 {
            return Err(ConfigError::new(
                "webhooks.body_limit",
                "must be greater than zero",
            ));
        }
        if self.body_timeout.is_zero() {
            return Err(ConfigError::new(
                "webhooks.body_timeout",
                "must be greater than zero",
            ));
        }
        for sender in Sender::ALL {
            self.endpoint(sender).validate(sender)?;
        }
        Ok(())
    }

    /// The prefix without a trailing slash (`/` becomes empty).
    pub(crate) fn prefix(&self) -> &str {
        self.path_prefix.trim_end_matches('/')
    }
}

/// Settings of the admin API (`/api/v1/*`, `/metrics`, `/healthz`, `/readyz`).
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Bearer token for `/api/v1/*` and `/metrics`. Without one the admin API must only be
    /// bound to loopback: see [`validate_admin_exposure`].
    pub token: Option<Secret>,
    /// Largest accepted request body (deploy requests); default 64 KiB.
    pub body_limit: usize,
    /// Most history entries one request returns; default 1,000.
    pub max_history: usize,
    /// The address the admin listener binds. Requests to `/api/v1/*` and `/metrics` must name
    /// it in `Host` (a loopback address also as `localhost:<port>`; `0.0.0.0` as any IP
    /// address on its port), so that a web page cannot read the API by DNS rebinding. `None`
    /// (the default, for routers served on a port chosen later): loopback names on any port.
    pub listen: Option<SocketAddr>,
    /// Further names clients reach the admin API by (`deploy.internal`, or
    /// `deploy.internal:8443` for that port only), accepted in `Host` and `Origin`.
    pub hosts: Vec<String>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            token: None,
            body_limit: 64 * 1024,
            max_history: 1000,
            listen: None,
            hosts: Vec::new(),
        }
    }
}

impl AdminConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(token) = &self.token {
            check_secret("admin.token", token)?;
        }
        if self.body_limit == 0 {
            return Err(ConfigError::new(
                "admin.body_limit",
                "must be greater than zero",
            ));
        }
        if self.max_history == 0 {
            return Err(ConfigError::new(
                "admin.max_history",
                "must be greater than zero",
            ));
        }
        for (i, host) in self.hosts.iter().enumerate() {
            if crate::admin::parse_authority(host).is_none() {
                return Err(ConfigError::new(
                    format!("admin.hosts[{i}]"),
                    format!("{host:?} is not a host name or host:port"),
                ));
            }
        }
        Ok(())
    }
}

/// Refuses to expose the admin API beyond loopback without a token.
///
/// The admin API can deploy and roll back: without a token, only processes on this host may
/// reach it. Call this with the address the admin listener will bind before binding it.
pub fn validate_admin_exposure(
    addr: SocketAddr,
    token: Option<&Secret>,
) -> Result<(), ConfigError> {
    if token.is_none() && !addr.ip().is_loopback() {
        return Err(ConfigError::new(
            "admin.listen",
            format!(
                "{addr} is not a loopback address; set admin.token to expose the admin API beyond this host"
            ),
        ));
    }
    Ok(())
}

/// Bounded retries with exponential backoff, for every notifier.
///
/// A notifier never delays a deploy (the engine queues reports per notifier), but its queue
/// is bounded, so each delivery must end: `attempts` tries within `total` at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries per report, the first included; default 3.
    pub attempts: u32,
    /// Wait after the first failure; doubles after each one; default 1 s.
    pub initial_backoff: Duration,
    /// Longest wait between two tries; default 20 s.
    pub max_backoff: Duration,
    /// Bound on one HTTP request; default 10 s.
    pub request_timeout: Duration,
    /// Bound on a whole delivery, waits included; default 60 s (the engine's own bound per
    /// delivery is 120 s).
    pub total: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 3,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(20),
            request_timeout: Duration::from_secs(10),
            total: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed try number `attempt` (1-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }

    fn validate(&self, prefix: &str) -> Result<(), ConfigError> {
        let field = |name: &str| format!("{prefix}.retry.{name}");
        if self.attempts == 0 {
            return Err(ConfigError::new(field("attempts"), "must be at least 1"));
        }
        if self.request_timeout.is_zero() {
            return Err(ConfigError::new(
                field("request_timeout"),
                "must be greater than zero",
            ));
        }
        if self.total < self.request_timeout || self.total > Duration::from_secs(110) {
            return Err(ConfigError::new(
                field("total"),
                "must be at least request_timeout and at most 110 s (the engine gives a delivery 120 s)",
            ));
        }
        Ok(())
    }
}

/// Settings of the Slack notifier.
#[derive(Debug, Clone)]
pub struct SlackConfig {
    /// The incoming-webhook URL (it embeds a token: never logged).
    pub url: Secret,
    /// Overrides the sender name (die-net/deployer's `--slack_username`); honoured by legacy
    /// incoming webhooks, ignored by app-scoped ones.
    pub username: Option<String>,
    /// Also post when a rollout starts; default off.
    pub notify_started: bool,
    /// Least time between two messages; default 1 s (Slack's documented rate).
    pub pace: Duration,
    /// Retries.
    pub retry: RetryPolicy,
}

impl SlackConfig {
    /// Defaults for posting to `url`.
    pub fn new(url: impl Into<Secret>) -> Self {
        Self {
            url: url.into(),
            username: None,
            notify_started: false,
            pace: Duration::from_secs(1),
            retry: RetryPolicy::default(),
        }
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_url("notify.slack.url", self.url.expose())?;
        self.retry.validate("notify.slack")
    }
}

/// Settings of the generic webhook notifier.
#[derive(Debug, Clone)]
pub struct WebhookNotifierConfig {
    /// Where reports are posted (may embed a token: never logged).
    pub url: Secret,
    /// Key for `X-Deployer-Signature-256: sha256=<hex HMAC-SHA256 of the body>`; unsigned
    /// when absent.
    pub secret: Option<Secret>,
    /// Also post when a rollout starts; default off.
    pub notify_started: bool,
    /// Retries.
    pub retry: RetryPolicy,
}

impl WebhookNotifierConfig {
    /// Defaults for posting to `url`.
    pub fn new(url: impl Into<Secret>) -> Self {
        Self {
            url: url.into(),
            secret: None,
            notify_started: false,
            retry: RetryPolicy::default(),
        }
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_url("notify.webhook.url", self.url.expose())?;
        if let Some(secret) = &self.secret {
            check_secret("notify.webhook.secret", secret)?;
        }
        self.retry.validate("notify.webhook")
    }
}

/// Settings of the Docker Hub `callback_url` notifier.
#[derive(Debug, Clone)]
pub struct DockerHubCallbackConfig {
    /// Whether the binary should add the notifier; default off.
    pub enabled: bool,
    /// Origins (`scheme://host[:port]`) a callback may go to. Anything else is refused,
    /// because the URL comes from an unauthenticated-by-signature request body: without this
    /// list a token holder could make the deployer POST to internal addresses (SSRF).
    /// Default: `https://registry.hub.docker.com`, `https://hub.docker.com`.
    pub allowed_origins: Vec<String>,
    /// The `context` field (at most 100 characters); default `deployer`.
    pub context: String,
    /// The `target_url` field (a dashboard, the history API, ...); omitted when absent.
    pub target_url: Option<String>,
    /// Retries.
    pub retry: RetryPolicy,
}

impl Default for DockerHubCallbackConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            allowed_origins: vec![
                "https://registry.hub.docker.com".to_owned(),
                "https://hub.docker.com".to_owned(),
            ],
            context: "deployer".to_owned(),
            target_url: None,
            retry: RetryPolicy::default(),
        }
    }
}

impl DockerHubCallbackConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (i, origin) in self.allowed_origins.iter().enumerate() {
            let field = format!("notify.dockerhub_callback.allowed_origins[{i}]");
            let url = check_url(&field, origin)?;
            if url.path() != "/" || url.query().is_some() {
                return Err(ConfigError::new(
                    field,
                    "must be an origin (scheme://host[:port]) without a path",
                ));
            }
        }
        if self.context.chars().count() > 100 {
            return Err(ConfigError::new(
                "notify.dockerhub_callback.context",
                "must be at most 100 characters",
            ));
        }
        self.retry.validate("notify.dockerhub_callback")
    }
}

fn check_url(field: &str, text: &str) -> Result<reqwest::Url, ConfigError> {
    // The message never quotes the URL: it may embed a token.
    let url = reqwest::Url::parse(text)
        .map_err(|e| ConfigError::new(field, format!("is not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(ConfigError::new(field, "must be an http or https URL"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ConfigError::new(field, "must not carry user:password"));
    }
    Ok(url)
}

/// Settings of the poll trigger (and the minimum interval of the signal trigger).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PollConfig {
    /// Time between two polls of every tracked tag; default 24 h (die-net/deployer's repull
    /// period), at least [`MIN_POLL_PERIOD`].
    pub period: Duration,
    /// Random spread of each period, as a fraction: 0.1 means ±10 %; default 0.1, at most 0.5.
    /// Keeps a fleet of hosts from polling a registry in lockstep.
    pub jitter: f64,
    /// Least time between two registry calls, to stay under registries' rate limits
    /// (Docker Hub's); default 1 s.
    pub min_interval: Duration,
    /// Poll once right at startup; default on.
    pub at_startup: bool,
    /// Bound on one resolve; default 30 s.
    pub resolve_timeout: Duration,
}

impl Default for PollConfig {
    fn default() -> Self {
        Self {
            period: Duration::from_secs(24 * 3600),
            jitter: 0.1,
            min_interval: Duration::from_secs(1),
            at_startup: true,
            resolve_timeout: Duration::from_secs(30),
        }
    }
}

impl PollConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.period < MIN_POLL_PERIOD {
            return Err(ConfigError::new(
                "poll.period",
                format!("must be at least {MIN_POLL_PERIOD:?}"),
            ));
        }
        if !(0.0..=0.5).contains(&self.jitter) {
            return Err(ConfigError::new(
                "poll.jitter",
                "must be a fraction from 0 to 0.5",
            ));
        }
        if self.min_interval > self.period {
            return Err(ConfigError::new(
                "poll.min_interval",
                "must not exceed poll.period",
            ));
        }
        if self.resolve_timeout.is_zero() {
            return Err(ConfigError::new(
                "poll.resolve_timeout",
                "must be greater than zero",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef0123";

    #[test]
    fn defaults_are_valid_and_endpoints_start_off() {
        let config = WebhookConfig::default();
        config.validate().unwrap();
        assert!(
            Sender::ALL
                .iter()
                .all(|s| !config.endpoint(*s).is_enabled())
        );
        AdminConfig::default().validate().unwrap();
        PollConfig::default().validate().unwrap();
        DockerHubCallbackConfig::default().validate().unwrap();
        SlackConfig::new("https://hooks.slack.com/services/T/B/X")
            .validate()
            .unwrap();
    }

    fn refusal(sender: Sender, endpoint: EndpointConfig) -> ConfigError {
        let mut config = WebhookConfig::default();
        *config.endpoint_mut(sender) = endpoint;
        config.validate().unwrap_err()
    }

    #[test]
    fn errors_name_the_field_and_never_the_secret() {
        let err = refusal(Sender::GitHub, EndpointConfig::with_secret("short"));
        assert_eq!(err.field, "webhooks.github.secret");
        assert!(!err.to_string().contains("short"));
        let err = refusal(
            Sender::DockerHub,
            EndpointConfig::with_secret("has a space in it!!"),
        );
        assert_eq!(err.field, "webhooks.dockerhub.secret");
        let err = refusal(
            Sender::Registry,
            EndpointConfig::with_secret(TOKEN).registry("not a host"),
        );
        assert_eq!(err.field, "webhooks.registry.registry");
        let err = refusal(
            Sender::GitHub,
            EndpointConfig::with_secret(TOKEN).registry("ghcr.io"),
        );
        assert_eq!(err.field, "webhooks.github.registry");
        let err = refusal(
            Sender::GitHub,
            EndpointConfig::with_secret(TOKEN).registries(["ghcr.io", "https://ghcr.example.com"]),
        );
        assert_eq!(err.field, "webhooks.github.registries[1]");
        let err = refusal(
            Sender::Harbor,
            EndpointConfig::with_secret(TOKEN)
                .registry("harbor.internal")
                .registries(["harbor.internal"]),
        );
        assert_eq!(err.field, "webhooks.harbor.registries");
        let both = EndpointConfig {
            insecure: true,
            ..EndpointConfig::with_secret(TOKEN)
        };
        assert_eq!(refusal(Sender::Quay, both).field, "webhooks.quay.insecure");

        let config = WebhookConfig {
            path_prefix: "hooks".into(),
            ..WebhookConfig::default()
        };
        assert_eq!(config.validate().unwrap_err().field, "webhooks.path_prefix");

        let poll = PollConfig {
            period: Duration::from_secs(5),
            ..PollConfig::default()
        };
        assert_eq!(poll.validate().unwrap_err().field, "poll.period");

        let slack = SlackConfig::new("https://user:pw@hooks.slack.com/services/T/B/X");
        let err = slack.validate().unwrap_err();
        assert_eq!(err.field, "notify.slack.url");
        assert!(!err.to_string().contains("pw"));
    }

    #[test]
    fn admin_without_token_stays_on_loopback() {
        let token = Secret::new(TOKEN);
        assert!(validate_admin_exposure("127.0.0.1:9000".parse().unwrap(), None).is_ok());
        assert!(validate_admin_exposure("[::1]:9000".parse().unwrap(), None).is_ok());
        assert!(validate_admin_exposure("0.0.0.0:9000".parse().unwrap(), None).is_err());
        assert!(validate_admin_exposure("0.0.0.0:9000".parse().unwrap(), Some(&token)).is_ok());
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.backoff(1), Duration::from_secs(1));
        assert_eq!(policy.backoff(2), Duration::from_secs(2));
        assert_eq!(policy.backoff(40), Duration::from_secs(20));
    }
}
