//! Turns the raw file into [`Settings`], collecting every problem with the key it concerns.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use deployer_core::service::{
    BuildSpec, Canary, ContainerTemplate, Handover, HealthCheck, Probe, ProxyProtocol, ServiceSpec,
    Strategy, Timeouts,
};
use deployer_core::{Backoff, ImageRef};

use super::bounds::{self, Count, Span};
use super::raw::{
    CoordinatorKind, ProbeKind, ProtocolKind, RawConfig, RawHook, RawService, RawTimeouts,
    StrategyKind,
};
use super::secret::{EnvSource, Secret, SecretRef};
use super::settings::*;

/// Default webhook listen address: loopback, so nothing is exposed by accident.
pub const DEFAULT_WEBHOOK_LISTEN: &str = "127.0.0.1:4500";
/// Default admin listen address.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:4501";
/// Default journal location.
pub const DEFAULT_JOURNAL: &str = "/var/lib/deployer/journal.redb";

/// Problems found, as (key path, message).
pub(crate) type Problems = Vec<(String, String)>;

pub(crate) fn validate(
    raw: &RawConfig,
    env: &dyn EnvSource,
    hostname: &str,
) -> Result<Settings, Problems> {
    let mut v = Validator {
        problems: Vec::new(),
        env,
        inline_secrets: Vec::new(),
    };
    let mut settings = v.settings(raw, hostname);
    if v.problems.is_empty() {
        // Returned rather than logged: no logger exists yet while the config is read.
        settings.warnings = v
            .inline_secrets
            .into_iter()
            .map(|key| super::ConfigError {
                file: String::new(),
                position: None,
                key,
                problem: "secret written in the config file; prefer { env = \"...\" } or { file = \"...\" }".to_owned(),
            })
            .collect();
        Ok(settings)
    } else {
        Err(v.problems)
    }
}

struct Validator<'a> {
    problems: Problems,
    env: &'a dyn EnvSource,
    inline_secrets: Vec<String>,
}

impl Validator<'_> {
    fn problem(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.problems.push((key.into(), message.into()));
    }

    /// Refuses a duration the key does not accept (absent: the default, always in range).
    fn span(&mut self, key: &str, value: Option<Duration>, span: Span) {
        if let Some(problem) = value.and_then(|v| span.check(v).err()) {
            self.problem(key, problem);
        }
    }

    /// Refuses a count the key does not accept.
    fn count(&mut self, key: &str, value: Option<u64>, count: Count) {
        if let Some(problem) = value.and_then(|v| count.check(v).err()) {
            self.problem(key, problem);
        }
    }

    fn secret(&mut self, key: &str, r: Option<&SecretRef>) -> Option<Secret> {
        let r = r?;
        if matches!(r, SecretRef::Inline(_)) {
            self.inline_secrets.push(key.to_owned());
        }
        match r.resolve(self.env) {
            Ok(secret) => Some(secret),
            Err(problem) => {
                self.problem(key, problem);
                None
            }
        }
    }

    /// The rules the webhook endpoints enforce, checked here so errors name the key and line.
    fn check_hook_secret(&mut self, key: &str, sender: Sender, secret: &Secret) {
        let value = secret.expose();
        if value.chars().count() < deployer_http::config::MIN_SECRET_LEN {
            self.problem(
                key,
                format!(
                    "must be at least {} characters",
                    deployer_http::config::MIN_SECRET_LEN
                ),
            );
        }
        // Docker Hub and Quay send the token in the URL.
        let in_url = matches!(sender, Sender::DockerHub | Sender::Quay);
        if in_url
            && !value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '~' | '-'))
        {
            self.problem(key, "travels in a URL: use only A-Z a-z 0-9 . _ ~ -");
        }
    }

    fn settings(&mut self, raw: &RawConfig, hostname: &str) -> Settings {
        let node = raw.node.clone().unwrap_or_else(|| hostname.to_owned());
        if node.is_empty()
            || !node
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            self.problem(
                "node",
                format!("{node:?} must be letters, digits, '-', '_' or '.'"),
            );
        }
        let max_parallel = raw.max_parallel.unwrap_or(4);
        self.count(
            "max_parallel",
            Some(max_parallel as u64),
            bounds::MAX_PARALLEL,
        );
        self.span("shutdown_grace", raw.shutdown_grace, bounds::SHUTDOWN_GRACE);
        let webhooks = self.webhooks(raw);
        let admin = AdminSettings {
            listen: raw
                .admin
                .listen
                .unwrap_or_else(|| parse_addr(DEFAULT_ADMIN_LISTEN)),
            token: self.secret("admin.token", raw.admin.token.as_ref()),
            hosts: raw.admin.hosts.clone(),
        };
        if !admin.listen.ip().is_loopback() && admin.token.is_none() && raw.admin.token.is_none() {
            self.problem(
                "admin.token",
                format!(
                    "required when admin.listen ({}) is not a loopback address",
                    admin.listen
                ),
            );
        }
        let docker = DockerSettings {
            endpoint: raw.docker.endpoint.clone(),
            config: raw.docker.config.clone(),
            journal: raw
                .docker
                .journal
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_JOURNAL)),
            keep_images: raw.docker.keep_images.unwrap_or(3),
            prune_images: raw.docker.prune_images.unwrap_or(false),
            registry: raw.docker.registry.clone(),
            scope: raw.docker.scope.clone(),
        };
        if let Some(scope) = &docker.scope
            && let Err(problem) = deployer_docker::switcher::labels::validate_scope(scope)
        {
            self.problem("docker.scope", problem);
        }
        if let Some(config) = &docker.config
            && !config.is_file()
        {
            self.problem(
                "docker.config",
                format!("{} does not exist", config.display()),
            );
        }
        // At least 1: the previous image is what a rollback needs.
        self.count(
            "docker.keep_images",
            Some(u64::from(docker.keep_images)),
            bounds::KEEP_IMAGES,
        );
        let beside_journal = |name: &str| {
            docker
                .journal
                .parent()
                .map_or_else(|| PathBuf::from(name), |dir| dir.join(name))
        };
        let proxy = ProxySettings {
            mode: raw.proxy.mode.unwrap_or_default(),
            socket: raw
                .proxy
                .socket
                .clone()
                .unwrap_or_else(|| beside_journal("proxy.sock")),
            state: raw
                .proxy
                .state
                .clone()
                .unwrap_or_else(|| beside_journal("proxy-state.json")),
        };
        let coordinator = self.coordinator(raw);
        let poll = PollSettings {
            enabled: raw.poll.enabled.unwrap_or(true),
            interval: raw.poll.interval.unwrap_or(Duration::from_secs(24 * 3600)),
            min_interval: raw.poll.min_interval.unwrap_or(Duration::from_secs(1)),
            on_start: raw.poll.on_start.unwrap_or(true),
        };
        self.span(
            "poll.min_interval",
            Some(poll.min_interval),
            bounds::POLL_MIN_INTERVAL,
        );
        self.span("poll.interval", Some(poll.interval), bounds::POLL_INTERVAL);
        let defaults = &raw.defaults;
        self.span("defaults.fetch", defaults.fetch, bounds::FETCH);
        self.span("defaults.start", defaults.start, bounds::START);
        self.span("defaults.stop", defaults.stop, bounds::STOP);
        self.span("defaults.drain", defaults.drain, bounds::DRAIN);
        let notify = self.notify(raw);
        let services = self.services(raw, docker.registry.as_deref());
        self.port_clashes(raw, &webhooks, &admin);
        Settings {
            node,
            max_parallel,
            shutdown_grace: raw.shutdown_grace.unwrap_or(Duration::from_secs(60)),
            log_format: raw.log_format.unwrap_or_default(),
            webhooks,
            admin,
            docker,
            proxy,
            coordinator,
            poll,
            notify,
            services,
            warnings: Vec::new(),
        }
    }

    fn webhooks(&mut self, raw: &RawConfig) -> WebhookSettings {
        let w = &raw.webhooks;
        let path = w.path.clone().unwrap_or_else(|| "/hooks".to_owned());
        if !path.starts_with('/') || path.contains(['?', '#', ' ']) {
            self.problem(
                "webhooks.path",
                format!("{path:?} must be a path starting with '/'"),
            );
        }
        let body_limit = w.body_limit.unwrap_or(1 << 20);
        self.count(
            "webhooks.body_limit",
            Some(body_limit as u64),
            bounds::BODY_LIMIT,
        );
        let senders: [(Sender, &Option<RawHook>); 6] = [
            (Sender::DockerHub, &w.dockerhub),
            (Sender::Registry, &w.registry),
            (Sender::GitHub, &w.github),
            (Sender::Quay, &w.quay),
            (Sender::Harbor, &w.harbor),
            (Sender::Generic, &w.generic),
        ];
        let mut hooks = Vec::new();
        for (sender, hook) in senders {
            let Some(hook) = hook else { continue };
            let base = format!("webhooks.{}", sender.as_str());
            let (field, given, wrong) = match sender {
                Sender::GitHub => ("secret", &hook.secret, &hook.token),
                _ => ("token", &hook.token, &hook.secret),
            };
            if wrong.is_some() {
                let other = if field == "secret" { "token" } else { "secret" };
                self.problem(
                    format!("{base}.{other}"),
                    format!("{} signs with a {field}, not a {other}", sender.as_str()),
                );
            }
            let key = format!("{base}.{field}");
            let secret = self.secret(&key, given.as_ref());
            if let Some(secret) = &secret {
                self.check_hook_secret(&key, sender, secret);
            }
            if given.is_none() && !hook.insecure {
                self.problem(
                    format!("{base}.{field}"),
                    format!("set a {field}, or insecure = true to accept unauthenticated requests (not recommended)"),
                );
            }
            if hook.callback && sender != Sender::DockerHub {
                self.problem(
                    format!("{base}.callback"),
                    "only Docker Hub sends a callback_url",
                );
            }
            hooks.push(HookSettings {
                sender,
                secret,
                insecure: hook.insecure,
                registry: hook.registry.clone(),
                registries: hook.registries.clone(),
                callback: hook.callback,
            });
        }
        WebhookSettings {
            listen: w
                .listen
                .unwrap_or_else(|| parse_addr(DEFAULT_WEBHOOK_LISTEN)),
            path: path.trim_end_matches('/').to_owned(),
            body_limit,
            hooks,
        }
    }

    fn coordinator(&mut self, raw: &RawConfig) -> CoordinatorSettings {
        let kind = raw.coordinator.unwrap_or_default();
        let Some(etcd) = &raw.etcd else {
            if kind == CoordinatorKind::Etcd {
                self.problem(
                    "etcd.nodes",
                    "coordinator = \"etcd\" needs an [etcd] table with nodes",
                );
            }
            return CoordinatorSettings::Memory;
        };
        if kind == CoordinatorKind::Memory {
            self.problem("coordinator", "an [etcd] table is given but coordinator is \"memory\"; set coordinator = \"etcd\"");
            return CoordinatorSettings::Memory;
        }
        if etcd.nodes.is_empty() {
            self.problem(
                "etcd.nodes",
                "list at least one client URL, e.g. [\"http://127.0.0.1:2379\"]",
            );
        }
        for (n, node) in etcd.nodes.iter().enumerate() {
            let ok = ["http://", "https://"]
                .iter()
                .any(|p| node.strip_prefix(p).is_some_and(|rest| !rest.is_empty()));
            if !ok {
                self.problem(
                    format!("etcd.nodes[{n}]"),
                    format!("{node:?} must be an http:// or https:// URL"),
                );
            }
        }
        let prefix = etcd
            .prefix
            .clone()
            .unwrap_or_else(|| "/deployer".to_owned());
        if !prefix.starts_with('/') || prefix.ends_with('/') {
            self.problem(
                "etcd.prefix",
                format!("{prefix:?} must start with '/' and not end with one"),
            );
        }
        let lease_ttl = etcd.lease_ttl.unwrap_or(Duration::from_secs(10));
        self.span("etcd.lease_ttl", Some(lease_ttl), bounds::ETCD_LEASE_TTL);
        self.span(
            "etcd.dial_timeout",
            etcd.dial_timeout,
            bounds::ETCD_DIAL_TIMEOUT,
        );
        self.span(
            "etcd.retry_delay",
            etcd.retry_delay,
            bounds::ETCD_RETRY_DELAY,
        );
        let rollout_slots = etcd.rollout_slots.unwrap_or(1);
        self.count(
            "etcd.rollout_slots",
            Some(rollout_slots as u64),
            bounds::ETCD_ROLLOUT_SLOTS,
        );
        self.count(
            "etcd.history",
            etcd.history.map(|h| h as u64),
            bounds::ETCD_HISTORY,
        );
        let tls = etcd.tls.as_ref();
        let mut file = |key: &str, path: &Option<PathBuf>| {
            if let Some(p) = path
                && !p.is_file()
            {
                self.problem(key.to_owned(), format!("{} does not exist", p.display()));
            }
            path.clone()
        };
        let ca = tls.and_then(|t| file("etcd.tls.ca", &t.ca));
        let cert = tls.and_then(|t| file("etcd.tls.cert", &t.cert));
        let key = tls.and_then(|t| file("etcd.tls.key", &t.key));
        if cert.is_some() != key.is_some() {
            self.problem("etcd.tls", "give both cert and key, or neither");
        }
        if etcd.password.is_some() != etcd.username.is_some() {
            self.problem(
                "etcd.username",
                "give both username and password, or neither",
            );
        }
        CoordinatorSettings::Etcd(Box::new(EtcdSettings {
            nodes: etcd.nodes.clone(),
            prefix,
            dial_timeout: etcd.dial_timeout.unwrap_or(Duration::from_secs(5)),
            retry_delay: etcd.retry_delay.unwrap_or(Duration::from_secs(1)),
            lease_ttl,
            rollout_slots,
            history: etcd.history.unwrap_or(100),
            strong_consistency: etcd.strong_consistency.unwrap_or(true),
            username: etcd.username.clone(),
            password: self.secret("etcd.password", etcd.password.as_ref()),
            tls_ca: ca,
            tls_identity: cert.zip(key),
        }))
    }

    fn notify(&mut self, raw: &RawConfig) -> NotifySettings {
        let slack = raw.notify.slack.as_ref().and_then(|s| {
            if s.url.is_none() {
                self.problem("notify.slack.url", "the incoming webhook URL is required");
            }
            let url = self.secret("notify.slack.url", s.url.as_ref())?;
            if !url.expose().starts_with("https://") && !url.expose().starts_with("http://") {
                self.problem("notify.slack.url", "must be an http(s) URL");
            }
            Some(SlackSettings {
                url,
                username: s.username.clone(),
                notify_started: s.notify_started,
            })
        });
        let webhook = raw.notify.webhook.as_ref().and_then(|w| {
            let url = self.secret("notify.webhook.url", Some(&w.url))?;
            if !url.expose().starts_with("https://") && !url.expose().starts_with("http://") {
                self.problem("notify.webhook.url", "must be an http(s) URL");
            }
            Some(WebhookNotifySettings {
                url,
                secret: self.secret("notify.webhook.secret", w.secret.as_ref()),
            })
        });
        NotifySettings { slack, webhook }
    }

    fn services(&mut self, raw: &RawConfig, registry: Option<&str>) -> Vec<ServiceSpec> {
        let mut specs: Vec<ServiceSpec> = Vec::new();
        for (n, service) in raw.service.iter().enumerate() {
            let key = format!("service[{n}]");
            if let Some(first) = raw.service[..n].iter().position(|s| s.name == service.name) {
                self.problem(
                    format!("{key}.name"),
                    format!(
                        "{:?} is defined twice (first as service[{first}])",
                        service.name
                    ),
                );
                continue;
            }
            match self.service(service, &raw.defaults, registry) {
                Ok(spec) => specs.push(spec),
                Err((field, problem)) => self.problem(format!("{key}.{field}"), problem),
            }
        }
        specs
    }

    fn service(
        &mut self,
        s: &RawService,
        defaults: &RawTimeouts,
        registry: Option<&str>,
    ) -> Result<ServiceSpec, (String, String)> {
        let bad = |field: &str, problem: String| (field.to_owned(), problem);
        service_bounds(s)?;
        let image = match (registry, ImageRef::parse(&s.image)) {
            // die-net's --registry: a name without a registry host is looked up there.
            (Some(host), Ok(_))
                if !s
                    .image
                    .split('/')
                    .next()
                    .is_some_and(|h| h.contains(['.', ':']) || h == "localhost") =>
            {
                ImageRef::parse(&format!("{host}/{}", s.image))
                    .map_err(|e| bad("image", e.to_string()))?
            }
            (_, parsed) => parsed.map_err(|e| bad("image", e.to_string()))?,
        };
        if image.digest().is_some() {
            return Err(bad(
                "image",
                "track a tag, not a digest: a digest never gets new builds".into(),
            ));
        }
        let strategy_kind = s.strategy.unwrap_or(if s.proxy.is_some() {
            StrategyKind::Handover
        } else {
            StrategyKind::Recreate
        });
        if s.canary.is_some() && strategy_kind != StrategyKind::Canary {
            return Err(bad(
                "canary",
                "only the canary strategy uses [service.canary]; set strategy = \"canary\"".into(),
            ));
        }
        let strategy = match (strategy_kind, &s.proxy) {
            (StrategyKind::Handover | StrategyKind::Canary, Some(p)) => {
                let protocol = match p.protocol.unwrap_or(ProtocolKind::Http) {
                    ProtocolKind::Http => ProxyProtocol::Http,
                    ProtocolKind::Tcp => ProxyProtocol::Tcp,
                };
                let handover = Handover::new(
                    p.listen,
                    p.container_port,
                    protocol,
                    p.max_surge.unwrap_or(1),
                )
                .and_then(|h| h.with_workers(p.workers.unwrap_or(0)))
                .and_then(|h| h.with_routing(p.hosts.clone(), p.path_prefix.clone()))
                .and_then(|h| match &p.tls {
                    Some(tls) => h.with_tls(tls.cert.clone(), tls.key.clone()),
                    None => Ok(h),
                })
                .and_then(|h| match p.redirect_from {
                    Some(from) => h.with_redirect_from(from),
                    None => Ok(h),
                })
                .map_err(|e| (e.field.to_string(), e.problem))?;
                match (strategy_kind, &s.canary) {
                    (StrategyKind::Canary, Some(c)) => Strategy::Canary(
                        Canary::new(handover, c.percent, c.hold, c.header.clone())
                            .map_err(|e| (e.field.to_string(), e.problem))?,
                    ),
                    (StrategyKind::Canary, None) => {
                        return Err(bad(
                            "canary",
                            "the canary strategy needs a [service.canary] with percent and hold"
                                .into(),
                        ));
                    }
                    _ => Strategy::Handover(handover),
                }
            }
            (StrategyKind::Handover | StrategyKind::Canary, None) => {
                return Err(bad(
                    "proxy",
                    "the handover strategy needs a [service.proxy] with listen and container_port"
                        .into(),
                ));
            }
            (_, Some(_)) => {
                return Err(bad("proxy", "only the handover strategy uses a proxy; remove [service.proxy] or set strategy = \"handover\"".into()));
            }
            (StrategyKind::Recreate, None) => Strategy::Recreate,
            (StrategyKind::Stop, None) => Strategy::Stop,
        };
        let timeouts = {
            let pick = |own: Option<Duration>, default: Option<Duration>, fallback: Duration| {
                own.or(default).unwrap_or(fallback)
            };
            let base = Timeouts::default();
            Timeouts {
                fetch: pick(s.timeouts.fetch, defaults.fetch, base.fetch),
                start: pick(s.timeouts.start, defaults.start, base.start),
                stop: pick(s.timeouts.stop, defaults.stop, base.stop),
                drain: pick(s.timeouts.drain, defaults.drain, base.drain),
            }
        };
        let mut builder = ServiceSpec::builder(&s.name, image)
            .strategy(strategy.clone())
            .replicas(s.replicas.unwrap_or(1))
            .timeouts(timeouts)
            .template(self.template(s)?);
        if let Some(h) = &s.health {
            builder = builder.health(health(h, &strategy)?);
        }
        if let Some(r) = &s.retry {
            let base = Backoff::default();
            let retry = Backoff::new(
                r.initial.unwrap_or(base.initial()),
                r.max.unwrap_or(base.max()),
                r.retries.unwrap_or(base.retries()),
            )
            .map_err(|e| (e.field.to_string(), e.problem))?;
            builder = builder.retry(retry);
        }
        if let Some(b) = &s.build {
            if !b.context.is_dir() {
                return Err(bad(
                    "build.context",
                    format!("{} is not a directory", b.context.display()),
                ));
            }
            builder = builder.build_from(BuildSpec {
                context: b.context.clone(),
                dockerfile: b.dockerfile.clone(),
                args: b.args.clone(),
            });
        }
        builder
            .build()
            .map_err(|e| (e.field.to_string(), e.problem))
    }

    fn template(&mut self, s: &RawService) -> Result<ContainerTemplate, (String, String)> {
        for (n, volume) in s.volumes.iter().enumerate() {
            let parts: Vec<&str> = volume.split(':').collect();
            if parts.len() < 2
                || parts.len() > 3
                || parts.iter().any(|p| p.is_empty())
                || !parts[1].starts_with('/')
            {
                return Err((
                    format!("volumes[{n}]"),
                    format!("{volume:?} must be source:/container/path[:ro|rw]"),
                ));
            }
        }
        for (n, port) in s.ports.iter().enumerate() {
            if parse_port_mapping(port).is_none() {
                return Err((
                    format!("ports[{n}]"),
                    format!("{port:?} must be [ip:]host_port:container_port[/tcp|udp]"),
                ));
            }
        }
        for key in s.env.keys() {
            if key.is_empty() || key.contains('=') {
                return Err((
                    "env".into(),
                    format!("{key:?} is not a valid variable name"),
                ));
            }
        }
        let nano_cpus = match s.cpus {
            Some(c) if !(c > 0.0 && c <= 1024.0) => {
                return Err(("cpus".into(), format!("{c} must be between 0 and 1024")));
            }
            Some(c) => Some((c * 1e9) as u64),
            None => None,
        };
        Ok(ContainerTemplate {
            env: s.env.clone(),
            command: s.command.clone(),
            entrypoint: s.entrypoint.clone(),
            volumes: s.volumes.clone(),
            labels: s.labels.clone(),
            ports: s.ports.clone(),
            network: s.network.clone(),
            restart: s.restart.clone(),
            user: s.user.clone(),
            workdir: s.workdir.clone(),
            memory_bytes: s.memory_bytes,
            nano_cpus,
        })
    }

    /// Two listeners on the same port clash when their addresses overlap (equal, or either is
    /// the unspecified address).
    fn port_clashes(&mut self, raw: &RawConfig, webhooks: &WebhookSettings, admin: &AdminSettings) {
        let mut taken: Vec<(String, SocketAddr)> = vec![
            ("webhooks.listen".into(), webhooks.listen),
            ("admin.listen".into(), admin.listen),
        ];
        // Services routed by host or path share a listener with each other and with at most
        // one service that is not (it takes what no route matches): one address, one entry.
        let mut on_address: Vec<(SocketAddr, usize, &super::raw::RawProxy)> = Vec::new();
        for (n, s) in raw.service.iter().enumerate() {
            if let Some(p) = &s.proxy {
                self.shared_listener(n, p, &on_address);
                let first = !on_address.iter().any(|(listen, _, _)| *listen == p.listen);
                on_address.push((p.listen, n, p));
                if first {
                    taken.push((format!("service[{n}].proxy.listen"), p.listen));
                }
            }
            for (m, port) in s.ports.iter().enumerate() {
                if let Some(addr) = parse_port_mapping(port) {
                    taken.push((format!("service[{n}].ports[{m}]"), addr));
                }
            }
        }
        for (i, (key, addr)) in taken.iter().enumerate() {
            let overlaps = |other: &SocketAddr| {
                other.port() == addr.port()
                    && addr.port() != 0
                    && (other.ip() == addr.ip()
                        || other.ip().is_unspecified()
                        || addr.ip().is_unspecified())
            };
            if let Some((first, _)) = taken[..i].iter().find(|(_, other)| overlaps(other)) {
                self.problem(key.clone(), format!("{addr} clashes with {first}"));
            }
        }
    }
}

impl Validator<'_> {
    /// Checks service `n`'s proxy against the ones before it on the same address.
    fn shared_listener(
        &mut self,
        n: usize,
        p: &super::raw::RawProxy,
        before: &[(SocketAddr, usize, &super::raw::RawProxy)],
    ) {
        let routed = |q: &super::raw::RawProxy| !q.hosts.is_empty() || q.path_prefix.is_some();
        if let Some(tls) = &p.tls {
            let files = deployer_proxy::CertFiles {
                cert: tls.cert.clone(),
                key: tls.key.clone(),
            };
            if let Err(e) = deployer_proxy::CertStore::check(&files) {
                self.problem(format!("service[{n}].proxy.tls"), e.to_string());
            }
        }
        if routed(p)
            && let Err(e) =
                deployer_proxy::RouteMatch::new(&p.hosts, p.path_prefix.as_deref().unwrap_or("/"))
        {
            self.problem(format!("service[{n}].proxy.hosts"), e.to_string());
        }
        for (_, m, q) in before.iter().filter(|(listen, _, _)| *listen == p.listen) {
            let same_hosts = q.hosts.is_empty() && p.hosts.is_empty()
                || q.hosts
                    .iter()
                    .any(|h| p.hosts.iter().any(|k| k.eq_ignore_ascii_case(h)));
            let clash = match (routed(p), routed(q)) {
                (false, false) => Some(format!(
                    "{} is also service[{m}]'s; services share a listener only with proxy.hosts or proxy.path_prefix",
                    p.listen
                )),
                (true, true) if q.path_prefix == p.path_prefix && same_hosts => Some(format!(
                    "takes the same hosts and path on {} as service[{m}]",
                    p.listen
                )),
                _ => None,
            };
            if let Some(problem) = clash {
                let key = if routed(p) { "hosts" } else { "listen" };
                self.problem(format!("service[{n}].proxy.{key}"), problem);
                return;
            }
        }
    }
}

/// The ranges of a service's own durations and counts, checked before the core types see them.
fn service_bounds(s: &RawService) -> Result<(), (String, String)> {
    let span = |field: &str, value: Option<Duration>, span: Span| match value {
        Some(v) => span.check(v).map_err(|p| (field.to_owned(), p)),
        None => Ok(()),
    };
    let count = |field: &str, value: Option<u64>, count: Count| match value {
        Some(v) => count.check(v).map_err(|p| (field.to_owned(), p)),
        None => Ok(()),
    };
    count("replicas", s.replicas.map(u64::from), bounds::REPLICAS)?;
    span("timeouts.fetch", s.timeouts.fetch, bounds::FETCH)?;
    span("timeouts.start", s.timeouts.start, bounds::START)?;
    span("timeouts.stop", s.timeouts.stop, bounds::STOP)?;
    span("timeouts.drain", s.timeouts.drain, bounds::DRAIN)?;
    if let Some(p) = &s.proxy {
        count(
            "proxy.max_surge",
            p.max_surge.map(u64::from),
            bounds::MAX_SURGE,
        )?;
        count("proxy.workers", p.workers.map(u64::from), bounds::WORKERS)?;
    }
    if let Some(h) = &s.health {
        span("health.interval", h.interval, bounds::HEALTH_INTERVAL)?;
        span("health.timeout", h.timeout, bounds::HEALTH_TIMEOUT)?;
        span("health.deadline", h.deadline, bounds::HEALTH_DEADLINE)?;
        span("health.watch", h.watch, bounds::HEALTH_WATCH)?;
        count(
            "health.max_error_percent",
            h.max_error_percent.map(u64::from),
            bounds::MAX_ERROR_PERCENT,
        )?;
        count(
            "health.healthy_threshold",
            h.healthy_threshold.map(u64::from),
            bounds::HEALTHY_THRESHOLD,
        )?;
        count(
            "health.status",
            h.status.map(u64::from),
            bounds::HEALTH_STATUS,
        )?;
    }
    if let Some(r) = &s.retry {
        span("retry.initial", r.initial, bounds::RETRY_INITIAL)?;
        span("retry.max", r.max, bounds::RETRY_MAX)?;
        count("retry.retries", r.retries.map(u64::from), bounds::RETRIES)?;
    }
    count("memory_bytes", s.memory_bytes, bounds::MEMORY_BYTES)
}

fn health(h: &super::raw::RawHealth, strategy: &Strategy) -> Result<HealthCheck, (String, String)> {
    let base = HealthCheck::default();
    let kind = h.kind.unwrap_or(if strategy.handover().is_some() {
        ProbeKind::Tcp
    } else {
        ProbeKind::Running
    });
    if kind != ProbeKind::Http && (h.path.is_some() || h.status.is_some()) {
        return Err((
            "health.path".into(),
            "path and status only apply to kind = \"http\"".into(),
        ));
    }
    let probe = match kind {
        ProbeKind::Http => Probe::Http {
            path: h.path.clone().unwrap_or_else(|| "/".to_owned()),
            status: h.status.unwrap_or(200),
        },
        ProbeKind::Tcp => Probe::Tcp,
        ProbeKind::Docker => Probe::Docker,
        ProbeKind::Running => Probe::Running,
    };
    HealthCheck::new(
        probe,
        h.interval.unwrap_or(base.interval()),
        h.timeout.unwrap_or(base.timeout()),
        h.deadline.unwrap_or(base.deadline()),
        h.healthy_threshold.unwrap_or(base.healthy_threshold()),
    )
    .map(|check| {
        check
            .with_watch(h.watch.unwrap_or(base.watch()))
            .with_max_error_percent(h.max_error_percent.unwrap_or(base.max_error_percent()))
    })
    .map_err(|e| (e.field.to_string(), e.problem))
}

/// `[ip:]host_port:container_port[/proto]` to the host side's address.
fn parse_port_mapping(mapping: &str) -> Option<SocketAddr> {
    let spec = mapping.split('/').next()?;
    let parts: Vec<&str> = spec.rsplitn(3, ':').collect();
    let (host_port, ip) = match parts.as_slice() {
        [_container, host] => (*host, IpAddr::from([0, 0, 0, 0])),
        [_container, host, ip] => (*host, ip.trim_matches(['[', ']']).parse().ok()?),
        _ => return None,
    };
    parts.first()?.parse::<u16>().ok().filter(|p| *p > 0)?;
    Some(SocketAddr::new(ip, host_port.parse().ok()?))
}

fn parse_addr(addr: &str) -> SocketAddr {
    addr.parse()
        .unwrap_or_else(|_| unreachable!("constant address {addr}"))
}

#[cfg(test)]
mod scope_tests {
    use crate::config::{MapEnv, Overrides, parse};

    fn scope_of(text: &str) -> Result<Option<String>, Vec<String>> {
        parse(
            "deployer.toml",
            text,
            &Overrides::default(),
            &MapEnv(Default::default()),
        )
        .map(|s| s.docker.scope)
        .map_err(|e| e.0.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn the_docker_scope_is_optional_and_checked() {
        assert_eq!(scope_of(""), Ok(None));
        assert_eq!(
            scope_of("[docker]\nscope = \"web-1.prod\"\n"),
            Ok(Some("web-1.prod".to_owned()))
        );
        let e = scope_of("[docker]\nscope = \"web 1\"\n").unwrap_err();
        assert_eq!(
            e,
            [
                "deployer.toml:2:9: docker.scope: \"web 1\" must be letters, digits, '_', '.' or '-': it becomes part of container names"
            ]
        );
    }
}
