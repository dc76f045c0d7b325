//! Connecting to the Docker engine: where (`DOCKER_HOST`, an explicit endpoint, the local
//! socket) and at which API version (negotiated: the engine may be older than bollard).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use bollard::{API_DEFAULT_VERSION, Docker};

use crate::error::DockerError;

/// The local socket used when neither an endpoint nor `DOCKER_HOST` is given.
pub const DEFAULT_SOCKET: &str = "unix:///var/run/docker.sock";

/// Bound on one engine request. Pulls and builds stream for as long as they take, and the
/// engine's own steps are bounded by the service timeouts, so this only catches a stuck engine.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3600);

/// Where environment variables come from: the process in the binary, a map in tests (so
/// tests never mutate the process environment).
pub trait EnvSource: Send + Sync {
    /// The variable's value, if set and not empty.
    fn var(&self, key: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn var(&self, key: &str) -> Option<String> {
        std::env::var(key).ok().filter(|v| !v.is_empty())
    }
}

impl EnvSource for BTreeMap<String, String> {
    fn var(&self, key: &str) -> Option<String> {
        self.get(key).filter(|v| !v.is_empty()).cloned()
    }
}

/// How the engine is reached.
#[derive(Clone, PartialEq, Eq)]
pub enum DockerEndpoint {
    /// A Unix socket path.
    Unix(String),
    /// Plain HTTP to `host:port` (`tcp://` or `http://`).
    Http(String),
}

impl DockerEndpoint {
    /// Parses `unix:///path`, `/path`, `tcp://host:port` or `http://host:port`.
    pub fn parse(endpoint: &str) -> Result<Self, DockerError> {
        let invalid = |problem: &str| DockerError::InvalidEndpoint {
            endpoint: endpoint.to_owned(),
            problem: problem.to_owned(),
        };
        if let Some(path) = endpoint.strip_prefix("unix://") {
            if path.is_empty() {
                return Err(invalid("the socket path is empty"));
            }
            return Ok(Self::Unix(path.to_owned()));
        }
        if endpoint.starts_with('/') {
            return Ok(Self::Unix(endpoint.to_owned()));
        }
        for scheme in ["tcp://", "http://"] {
            if let Some(addr) = endpoint.strip_prefix(scheme) {
                if addr.is_empty() || !addr.contains(':') {
                    return Err(invalid("expected host:port"));
                }
                return Ok(Self::Http(addr.trim_end_matches('/').to_owned()));
            }
        }
        Err(invalid(
            "supported are unix:///path, /path, tcp://host:port and http://host:port (TLS and ssh are not)",
        ))
    }

    /// `explicit` if given, else `DOCKER_HOST` from `env`, else the local socket.
    pub fn resolve(explicit: Option<&str>, env: &dyn EnvSource) -> Result<Self, DockerError> {
        match explicit
            .map(str::to_owned)
            .or_else(|| env.var("DOCKER_HOST"))
        {
            Some(endpoint) => Self::parse(&endpoint),
            None => Self::parse(DEFAULT_SOCKET),
        }
    }

    /// Connects and negotiates the API version.
    pub async fn connect(&self) -> Result<Docker, DockerError> {
        let timeout = REQUEST_TIMEOUT.as_secs();
        let client = match self {
            Self::Unix(path) => Docker::connect_with_unix(path, timeout, API_DEFAULT_VERSION),
            Self::Http(addr) => {
                Docker::connect_with_http(&format!("http://{addr}"), timeout, API_DEFAULT_VERSION)
            }
        }
        .map_err(|source| self.connect_error(source))?;
        // The engine may speak an older API than bollard's default; calls at a version the
        // engine does not know fail, so settle on the lower of the two first.
        let docker = client
            .negotiate_version()
            .await
            .map_err(|source| self.connect_error(source))?;
        let version = docker.client_version();
        tracing::debug!(endpoint = %self, api = %format!("{}.{}", version.major_version, version.minor_version), "connected to the Docker engine");
        Ok(docker)
    }

    fn connect_error(&self, source: bollard::errors::Error) -> DockerError {
        DockerError::Connect {
            endpoint: self.to_string(),
            source,
        }
    }
}

impl fmt::Display for DockerEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(path) => write!(f, "unix://{path}"),
            Self::Http(addr) => write!(f, "tcp://{addr}"),
        }
    }
}

impl fmt::Debug for DockerEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DockerEndpoint({self})")
    }
}

/// Connects to `endpoint`, or to `DOCKER_HOST` from `env`, or to the local socket, and
/// negotiates the API version. The binary's one call to get a client.
///
/// ```no_run
/// # async fn demo() -> Result<(), deployer_docker::DockerError> {
/// use deployer_docker::connect::{ProcessEnv, connect};
/// let docker = connect(None, &ProcessEnv).await?;
/// # let _ = docker;
/// # Ok(())
/// # }
/// ```
pub async fn connect(endpoint: Option<&str>, env: &dyn EnvSource) -> Result<Docker, DockerError> {
    DockerEndpoint::resolve(endpoint, env)?.connect().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_and_fall_back() {
        let env: BTreeMap<String, String> =
            [("DOCKER_HOST".to_owned(), "tcp://127.0.0.1:2375".to_owned())].into();
        assert_eq!(
            DockerEndpoint::resolve(None, &env).unwrap(),
            DockerEndpoint::Http("127.0.0.1:2375".into())
        );
        assert_eq!(
            DockerEndpoint::resolve(Some("/run/docker.sock"), &env).unwrap(),
            DockerEndpoint::Unix("/run/docker.sock".into())
        );
        assert_eq!(
            DockerEndpoint::resolve(None, &BTreeMap::new()).unwrap(),
            DockerEndpoint::Unix("/var/run/docker.sock".into())
        );
        assert!(DockerEndpoint::parse("ssh://host").is_err());
        assert!(DockerEndpoint::parse("tcp://").is_err());
    }
}
