//! The part of a daemon's config the client commands read: where the admin API listens and
//! where its token comes from. The rest of the file is the daemon's business; in particular
//! its secrets (webhook tokens, Slack URLs, the etcd password) are not in an operator's shell,
//! and must not be needed to run `deployer status --config FILE`.

use std::net::SocketAddr;

use serde::Deserialize;

use super::error::{ConfigError, ConfigErrors};
use super::locate;
use super::raw::RawAdmin;
use super::secret::{EnvSource, Secret, SecretRef};
use super::validate::DEFAULT_ADMIN_LISTEN;

/// The file with every section but `[admin]` ignored; `[admin]` is still checked strictly.
#[derive(Debug, Default, Deserialize)]
struct AdminOnly {
    #[serde(default)]
    admin: RawAdmin,
}

/// How a client reaches the daemon a config file describes.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    file: String,
    /// Where the admin API listens.
    pub admin_listen: SocketAddr,
    token: Option<(SecretRef, Option<(usize, usize)>)>,
}

impl ClientConfig {
    /// Reads `[admin]` from the config file at `path`.
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigErrors> {
        let (file, text) = super::read(path)?;
        Self::parse(&file, &text)
    }

    /// Reads `[admin]` from config text; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Self, ConfigErrors> {
        let source = locate::Source::new(text);
        let error = |key: String, position, problem: String| {
            ConfigErrors(vec![ConfigError {
                file: file.to_owned(),
                position,
                key,
                problem,
            }])
        };
        let deserializer = toml::Deserializer::parse(text).map_err(|e| {
            let position = e.span().map(|s| source.position(s.start));
            error(String::new(), position, e.message().to_owned())
        })?;
        let raw: AdminOnly = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let position = e.inner().span().map(|s| source.position(s.start));
            let key = e.path().to_string();
            let key = if key == "." { String::new() } else { key };
            error(key, position, e.inner().message().to_owned())
        })?;
        let admin_listen = match raw.admin.listen {
            Some(listen) => listen,
            None => DEFAULT_ADMIN_LISTEN
                .parse()
                .map_err(|e| error("admin.listen".into(), None, format!("{e}")))?,
        };
        Ok(Self {
            file: file.to_owned(),
            admin_listen,
            token: raw
                .admin
                .token
                .map(|token| (token, source.locate("admin.token"))),
        })
    }

    /// The admin token, read only when asked for: a `--token` given on the command line makes
    /// the file's reference irrelevant, even when it cannot be resolved here.
    pub fn admin_token(&self, env: &dyn EnvSource) -> Result<Option<Secret>, ConfigErrors> {
        let Some((token, position)) = &self.token else {
            return Ok(None);
        };
        token.resolve(env).map(Some).map_err(|problem| {
            ConfigErrors(vec![ConfigError {
                file: self.file.clone(),
                position: *position,
                key: "admin.token".to_owned(),
                problem,
            }])
        })
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::config::{MapEnv, Overrides};

    /// A daemon config whose every secret but the admin token is unresolvable here.
    const DAEMON: &str = r#"node = "host-a"

[webhooks.registry]
token = { env = "SOME_UNSET_VAR" }

[admin]
listen = "127.0.0.1:24601"
token = { env = "ADMIN_TOKEN" }

[notify.slack]
url = { file = "/nonexistent/slack.url" }

[[service]]
name = "web"
image = "127.0.0.1:5000/demo/app:latest"
"#;

    fn env(vars: &[(&str, &str)]) -> MapEnv {
        MapEnv::of(vars)
    }

    #[test]
    fn reads_the_admin_section_without_resolving_the_daemons_secrets() {
        let env = env(&[("ADMIN_TOKEN", "admin-token-0123456789")]);
        // The daemon's own validation still refuses the file, naming both secrets...
        let errors = crate::config::parse("d.toml", DAEMON, &Overrides::default(), &env)
            .expect_err("the daemon needs its secrets")
            .to_string();
        assert!(errors.contains("SOME_UNSET_VAR is not set"), "{errors}");
        assert!(errors.contains("notify.slack.url"), "{errors}");
        // ...while a client reads what it needs.
        let client = ClientConfig::parse("d.toml", DAEMON).expect("client view");
        assert_eq!(client.admin_listen, "127.0.0.1:24601".parse().unwrap());
        let token = client.admin_token(&env).expect("resolved").expect("set");
        assert_eq!(token.expose(), "admin-token-0123456789");
    }

    #[test]
    fn an_unresolvable_admin_token_is_an_error_naming_the_key_only_when_read() {
        let client = ClientConfig::parse("d.toml", DAEMON).expect("client view");
        let error = client
            .admin_token(&env(&[]))
            .expect_err("ADMIN_TOKEN is not set")
            .to_string();
        assert_eq!(
            error,
            "d.toml:8:9: admin.token: environment variable ADMIN_TOKEN is not set"
        );
    }

    #[test]
    fn defaults_and_errors_in_the_admin_section() {
        let client = ClientConfig::parse("d.toml", "node = \"a\"\n").expect("no [admin]");
        assert_eq!(client.admin_listen.to_string(), DEFAULT_ADMIN_LISTEN);
        assert!(client.admin_token(&env(&[])).expect("no token").is_none());

        let error = ClientConfig::parse("d.toml", "[admin]\nlisten = \"nowhere\"\n")
            .expect_err("bad address")
            .to_string();
        assert!(error.starts_with("d.toml:2:10: admin.listen: "), "{error}");
        let error = ClientConfig::parse("d.toml", "[admin]\nlistn = \"127.0.0.1:1\"\n")
            .expect_err("typo")
            .to_string();
        assert!(error.contains("unknown field `listn`"), "{error}");
    }
}
