//! Settings to the adapters' own config structs, checked by their own validators at load
//! time, so `config check` rejects everything `run` would.

use deployer_etcd::{Consistency, EtcdConfig, TlsFiles};
use deployer_http::config::{
    AdminConfig, DockerHubCallbackConfig, EndpointConfig, PollConfig, SlackConfig, WebhookConfig,
    WebhookNotifierConfig, validate_admin_exposure,
};

use crate::config::{ConfigError, ConfigErrors, CoordinatorSettings, Sender, Settings};

/// Everything the adapters need, built from validated settings.
#[derive(Debug, Clone)]
pub struct AdapterConfigs {
    pub webhooks: WebhookConfig,
    pub admin: AdminConfig,
    pub poll: Option<PollConfig>,
    pub slack: Option<SlackConfig>,
    pub webhook_notifier: Option<WebhookNotifierConfig>,
    pub dockerhub_callback: Option<DockerHubCallbackConfig>,
    pub etcd: Option<EtcdConfig>,
}

impl AdapterConfigs {
    /// Builds and validates them; errors name `file` and the config key.
    pub fn new(settings: &Settings, file: &str) -> Result<Self, ConfigErrors> {
        let mut errors = Vec::new();
        // The adapters name their own fields; where those differ from the config's keys (a
        // token-authenticated endpoint's `secret` is the config's `token`), use the config's.
        let mut check = |key: &str, result: Result<(), deployer_http::ConfigError>| {
            if let Err(e) = result {
                let field = e.field.clone();
                let key = match field.strip_suffix(".secret") {
                    Some(endpoint)
                        if endpoint.starts_with("webhooks.") && endpoint != "webhooks.github" =>
                    {
                        format!("{endpoint}.token")
                    }
                    _ if field.is_empty() => key.to_owned(),
                    _ => field,
                };
                errors.push(ConfigError {
                    file: file.to_owned(),
                    position: None,
                    key,
                    problem: e.problem,
                });
            }
        };
        let mut webhooks = WebhookConfig {
            path_prefix: settings.webhooks.path.clone(),
            body_limit: settings.webhooks.body_limit,
            ..WebhookConfig::default()
        };
        let mut callback = None;
        // A registry or Harbor endpoint belongs to whoever runs it, so without configuration
        // it speaks for the registry of the first service that pulls an image: one host, so
        // that it cannot announce images of another registry some other service tracks.
        let first_registry = settings
            .services
            .iter()
            .find(|s| s.build().is_none())
            .map(|s| s.image().registry().to_owned());
        for hook in &settings.webhooks.hooks {
            let endpoint = webhooks.endpoint_mut(hook.sender);
            let mut registries = hook.registries.clone();
            if registries.is_empty()
                && hook.registry.is_none()
                && matches!(hook.sender, Sender::Registry | Sender::Harbor)
            {
                registries.extend(first_registry.clone());
            }
            *endpoint = EndpointConfig {
                secret: hook.secret.as_ref().map(|s| s.expose().to_owned().into()),
                insecure: hook.insecure,
                registry: hook.registry.clone(),
                registries,
            };
            if hook.callback {
                callback = Some(DockerHubCallbackConfig {
                    enabled: true,
                    ..DockerHubCallbackConfig::default()
                });
            }
        }
        check("webhooks", webhooks.validate());
        let admin = AdminConfig {
            token: settings
                .admin
                .token
                .as_ref()
                .map(|s| s.expose().to_owned().into()),
            // Port 0 is known only once bound; the guard then takes loopback names on any port.
            listen: (settings.admin.listen.port() != 0).then_some(settings.admin.listen),
            hosts: settings.admin.hosts.clone(),
            ..AdminConfig::default()
        };
        check("admin", admin.validate());
        check(
            "admin.listen",
            validate_admin_exposure(settings.admin.listen, admin.token.as_ref()),
        );
        let poll = settings.poll.enabled.then(|| PollConfig {
            period: settings.poll.interval,
            min_interval: settings.poll.min_interval,
            at_startup: settings.poll.on_start,
            ..PollConfig::default()
        });
        if let Some(poll) = &poll {
            check("poll", poll.validate());
        }
        let slack = settings.notify.slack.as_ref().map(|s| SlackConfig {
            username: s.username.clone(),
            notify_started: s.notify_started,
            ..SlackConfig::new(s.url.expose().to_owned())
        });
        if let Some(slack) = &slack {
            check("notify.slack", slack.validate());
        }
        let webhook_notifier = settings
            .notify
            .webhook
            .as_ref()
            .map(|w| WebhookNotifierConfig {
                secret: w.secret.as_ref().map(|s| s.expose().to_owned().into()),
                ..WebhookNotifierConfig::new(w.url.expose().to_owned())
            });
        if let Some(w) = &webhook_notifier {
            check("notify.webhook", w.validate());
        }
        if let Some(c) = &callback {
            check("webhooks.dockerhub.callback", c.validate());
        }
        let etcd = match &settings.coordinator {
            CoordinatorSettings::Memory => None,
            CoordinatorSettings::Etcd(e) => {
                let mut config = EtcdConfig::new(e.nodes.clone())
                    .with_prefix(e.prefix.clone())
                    .with_node(settings.node.clone())
                    .with_dial_timeout(e.dial_timeout)
                    .with_retry_delay(
                        e.retry_delay,
                        e.retry_delay.max(std::time::Duration::from_secs(10)),
                    )
                    .with_lease_ttl(e.lease_ttl)
                    .with_slots_per_service(e.rollout_slots)
                    .with_history_kept(e.history)
                    .with_consistency(if e.strong_consistency {
                        Consistency::Linearizable
                    } else {
                        Consistency::Serializable
                    });
                if let (Some(user), Some(password)) = (&e.username, &e.password) {
                    config = config.with_user(user.clone(), password.expose().to_owned());
                }
                if e.tls_ca.is_some() || e.tls_identity.is_some() {
                    let mut tls = TlsFiles::default();
                    tls.ca.clone_from(&e.tls_ca);
                    if let Some((cert, key)) = &e.tls_identity {
                        tls.cert = Some(cert.clone());
                        tls.key = Some(key.clone());
                    }
                    config = config.with_tls(tls);
                }
                check(
                    "etcd",
                    config.validate().map_err(|e| {
                        let key = match e.field {
                            "endpoints" => "nodes",
                            "slots_per_service" => "rollout_slots",
                            "history_kept" => "history",
                            "user" | "password" => "username",
                            other => other,
                        };
                        deployer_http::ConfigError::new(format!("etcd.{key}"), e.problem)
                    }),
                );
                Some(config)
            }
        };
        if errors.is_empty() {
            Ok(Self {
                webhooks,
                admin,
                poll,
                slack,
                webhook_notifier,
                dockerhub_callback: callback,
                etcd,
            })
        } else {
            Err(ConfigErrors(errors))
        }
    }
}

mod switcher_gates;
mod switcher_stats;
pub use switcher_gates::SwitcherGates;
pub use switcher_stats::SwitcherStats;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{MapEnv, Overrides, parse};

    fn adapters(text: &str) -> AdapterConfigs {
        let env = MapEnv::of(&[("TOKEN", "s3cret-s3cret-s3cret")]);
        let settings = parse("deployer.toml", text, &Overrides::default(), &env).expect("valid");
        AdapterConfigs::new(&settings, "deployer.toml").expect("adapters")
    }

    #[test]
    fn self_hosted_endpoints_speak_for_the_first_pulled_services_registry_only() {
        let services = r#"
[[service]]
name = "built"
image = "local/built:latest"
[service.build]
context = "/tmp"

[[service]]
name = "web"
image = "registry.example.com:5000/team/web:latest"

[[service]]
name = "api"
image = "ghcr.io/team/api:latest"
"#;
        let a = adapters(&format!(
            "[webhooks.registry]\ntoken = {{ env = \"TOKEN\" }}\n[webhooks.harbor]\ntoken = {{ env = \"TOKEN\" }}\nregistry = \"harbor.internal\"\n[webhooks.github]\nsecret = {{ env = \"TOKEN\" }}\n{services}"
        ));
        assert_eq!(
            a.webhooks.registry.registries,
            ["registry.example.com:5000"]
        );
        // An override already names the one host; the hosted senders keep their own.
        assert!(a.webhooks.harbor.registries.is_empty());
        assert!(a.webhooks.github.registries.is_empty());

        let a = adapters(&format!(
            "[webhooks.registry]\ntoken = {{ env = \"TOKEN\" }}\nregistries = [\"a.example.com\", \"b.example.com\"]\n{services}"
        ));
        assert_eq!(
            a.webhooks.registry.registries,
            ["a.example.com", "b.example.com"]
        );
    }
}
