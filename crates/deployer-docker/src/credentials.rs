//! Registry credentials from a Docker `config.json` (die-net/deployer's `--dockercfg`).
//!
//! Only the `auths` section is read: `auth` (base64 `user:password`), plain `username` and
//! `password`, or `identitytoken`. Credential helpers (`credsStore`, `credHelpers`) run
//! external programs and are not supported; a config that relies on them is logged.
//! The file is read again at every registry call, so rotated credentials apply without a
//! restart. Nothing secret ever reaches a log or a `Debug` output.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine;
use bollard::auth::DockerCredentials;
use serde::Deserialize;

use crate::connect::EnvSource;
use crate::error::DockerError;

/// The key Docker uses for Docker Hub in `auths`.
pub const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// Hosts that all mean Docker Hub.
const DOCKER_HUB_HOSTS: [&str; 4] = [
    "docker.io",
    "index.docker.io",
    "registry-1.docker.io",
    "registry.hub.docker.com",
];

#[derive(Deserialize, Default)]
struct ConfigFile {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: HashMap<String, String>,
}

#[derive(Deserialize, Default, Clone)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

/// Credentials for one registry. `Debug` shows only the registry and the kind.
#[derive(Clone, PartialEq, Eq)]
pub enum RegistryAuth {
    /// User and password.
    Basic {
        /// The registry host.
        registry: String,
        /// The user.
        username: String,
        /// The password (never printed).
        password: String,
    },
    /// An OAuth identity token (`docker login` with a token).
    IdentityToken {
        /// The registry host.
        registry: String,
        /// The token (never printed).
        token: String,
    },
}

impl RegistryAuth {
    /// The form the engine wants in its `X-Registry-Auth` header.
    pub fn to_docker(&self) -> DockerCredentials {
        match self {
            Self::Basic {
                registry,
                username,
                password,
            } => DockerCredentials {
                username: Some(username.clone()),
                password: Some(password.clone()),
                serveraddress: Some(server_address(registry)),
                ..Default::default()
            },
            Self::IdentityToken { registry, token } => DockerCredentials {
                identitytoken: Some(token.clone()),
                serveraddress: Some(server_address(registry)),
                ..Default::default()
            },
        }
    }
}

impl fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Basic {
                registry, username, ..
            } => write!(f, "Basic({username}@{registry}, password: <redacted>)"),
            Self::IdentityToken { registry, .. } => {
                write!(f, "IdentityToken({registry}, <redacted>)")
            }
        }
    }
}

fn server_address(registry: &str) -> String {
    if DOCKER_HUB_HOSTS.contains(&registry) {
        DOCKER_HUB_KEY.to_owned()
    } else {
        registry.to_owned()
    }
}

/// Reduces an `auths` key (`https://host:port/v1/`, `host:port`) to `host:port`, Docker Hub's
/// many names to `docker.io`.
fn normalise_host(key: &str) -> String {
    let without_scheme = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = without_scheme
        .split('/')
        .next()
        .unwrap_or(without_scheme)
        .to_ascii_lowercase();
    if DOCKER_HUB_HOSTS.contains(&host.as_str()) {
        "docker.io".to_owned()
    } else {
        host
    }
}

/// Where registry credentials are read from: a Docker `config.json`, or nowhere.
#[derive(Clone, Default)]
pub struct Credentials {
    path: Option<PathBuf>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("path", &self.path)
            .finish()
    }
}

impl Credentials {
    /// No credentials: anonymous pulls only.
    pub fn none() -> Self {
        Self { path: None }
    }

    /// Reads the Docker config at `path` (a missing file means no credentials).
    pub fn from_file(path: impl Into<PathBuf>) -> Self {
        Self {
            path: Some(path.into()),
        }
    }

    /// `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`, as the Docker CLI does.
    pub fn from_env(env: &dyn EnvSource) -> Self {
        let path = env
            .var("DOCKER_CONFIG")
            .map(|dir| PathBuf::from(dir).join("config.json"))
            .or_else(|| {
                env.var("HOME")
                    .map(|home| PathBuf::from(home).join(".docker").join("config.json"))
            });
        Self { path }
    }

    /// The file read, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Checks that the file, if it exists, parses; for the binary's config validation.
    pub fn validate(&self) -> Result<(), DockerError> {
        self.read().map(|_| ())
    }

    fn read(&self) -> Result<Option<ConfigFile>, DockerError> {
        let Some(path) = &self.path else {
            return Ok(None);
        };
        let problem = |problem: String| DockerError::Credentials {
            path: path.display().to_string(),
            problem,
        };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(problem(format!("cannot be read: {e}"))),
        };
        // serde_json's messages quote at most a token, never a whole value, but they can
        // quote a token of a secret: say only where the error is.
        serde_json::from_str(&text).map(Some).map_err(|e| {
            problem(format!(
                "is not valid JSON (line {}, column {})",
                e.line(),
                e.column()
            ))
        })
    }

    /// Credentials for `registry` (a `host[:port]`; `docker.io` for Docker Hub), if the
    /// config has any.
    pub fn for_registry(&self, registry: &str) -> Result<Option<RegistryAuth>, DockerError> {
        let Some(config) = self.read()? else {
            return Ok(None);
        };
        let wanted = normalise_host(registry);
        let entry = config
            .auths
            .iter()
            .find(|(key, _)| normalise_host(key) == wanted)
            .map(|(_, entry)| entry.clone());
        let Some(entry) = entry else {
            if config.creds_store.is_some() || config.cred_helpers.contains_key(registry) {
                tracing::warn!(
                    registry,
                    "the Docker config delegates credentials to a helper, which deployer does not run; pulling anonymously"
                );
            }
            return Ok(None);
        };
        self.decode(&wanted, entry).map(Some)
    }

    fn decode(&self, registry: &str, entry: AuthEntry) -> Result<RegistryAuth, DockerError> {
        let problem = |problem: &str| DockerError::Credentials {
            path: self
                .path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            problem: format!("auths entry for {registry}: {problem}"),
        };
        if let Some(token) = entry.identitytoken.filter(|t| !t.is_empty()) {
            return Ok(RegistryAuth::IdentityToken {
                registry: registry.to_owned(),
                token,
            });
        }
        if let Some(auth) = entry.auth.filter(|a| !a.is_empty()) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|_| problem("`auth` is not base64"))?;
            let decoded =
                String::from_utf8(decoded).map_err(|_| problem("`auth` is not UTF-8 text"))?;
            let (username, password) = decoded
                .split_once(':')
                .ok_or_else(|| problem("`auth` does not decode to user:password"))?;
            return Ok(RegistryAuth::Basic {
                registry: registry.to_owned(),
                username: username.to_owned(),
                password: password.to_owned(),
            });
        }
        match (entry.username, entry.password) {
            (Some(username), Some(password)) => Ok(RegistryAuth::Basic {
                registry: registry.to_owned(),
                username,
                password,
            }),
            _ => Err(problem(
                "has neither `auth`, `username`+`password` nor `identitytoken`",
            )),
        }
    }

    /// Every registry's credentials, keyed as the engine's build endpoint wants them (for
    /// `FROM` images of a build).
    pub fn all(&self) -> Result<HashMap<String, DockerCredentials>, DockerError> {
        let Some(config) = self.read()? else {
            return Ok(HashMap::new());
        };
        let mut out = HashMap::new();
        let entries: BTreeMap<String, AuthEntry> = config.auths.into_iter().collect();
        for (key, entry) in entries {
            let host = normalise_host(&key);
            let auth = self.decode(&host, entry)?;
            out.insert(server_address(&host), auth.to_docker());
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, json: &str) -> Credentials {
        let path = dir.join("config.json");
        std::fs::write(&path, json).unwrap();
        Credentials::from_file(path)
    }

    #[test]
    fn reads_auth_identity_tokens_and_docker_hub_keys() {
        let dir = tempfile::tempdir().unwrap();
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cret:with:colons");
        let creds = write(
            dir.path(),
            &format!(
                r#"{{"auths": {{
                    "https://index.docker.io/v1/": {{"auth": "{auth}"}},
                    "http://127.0.0.1:5000/v2/": {{"identitytoken": "tok"}},
                    "plain.example:443": {{"username": "bob", "password": "pw"}}
                }}}}"#
            ),
        );
        let hub = creds.for_registry("docker.io").unwrap().unwrap();
        assert_eq!(
            hub,
            RegistryAuth::Basic {
                registry: "docker.io".into(),
                username: "alice".into(),
                password: "s3cret:with:colons".into()
            }
        );
        assert_eq!(
            hub.to_docker().serveraddress.as_deref(),
            Some(DOCKER_HUB_KEY)
        );
        let debug = format!("{hub:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
        assert!(matches!(
            creds.for_registry("127.0.0.1:5000").unwrap(),
            Some(RegistryAuth::IdentityToken { .. })
        ));
        assert!(creds.for_registry("plain.example:443").unwrap().is_some());
        assert!(creds.for_registry("elsewhere:5000").unwrap().is_none());
        assert_eq!(creds.all().unwrap().len(), 3);
    }

    #[test]
    fn missing_file_is_anonymous_and_bad_files_name_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let missing = Credentials::from_file(dir.path().join("nope.json"));
        assert!(missing.for_registry("docker.io").unwrap().is_none());
        let broken = write(dir.path(), r#"{"auths": {"docker.io": {"auth": "!!"}}}"#);
        let err = broken.for_registry("docker.io").unwrap_err().to_string();
        assert!(err.contains("not base64"), "{err}");
        let garbage = write(dir.path(), "{ nope");
        assert!(garbage.validate().is_err());
    }

    #[test]
    fn the_default_path_follows_docker_config_then_home() {
        let env: BTreeMap<String, String> = [
            ("DOCKER_CONFIG".to_owned(), "/etc/dockercfg".to_owned()),
            ("HOME".to_owned(), "/home/u".to_owned()),
        ]
        .into();
        assert_eq!(
            Credentials::from_env(&env).path(),
            Some(Path::new("/etc/dockercfg/config.json"))
        );
        let env: BTreeMap<String, String> = [("HOME".to_owned(), "/home/u".to_owned())].into();
        assert_eq!(
            Credentials::from_env(&env).path(),
            Some(Path::new("/home/u/.docker/config.json"))
        );
    }
}
