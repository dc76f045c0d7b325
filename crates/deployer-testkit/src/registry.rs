//! A real registry (Debian's `docker-registry`, distribution 2.8) on a free loopback port,
//! optionally with htpasswd auth and notifications pointed at a URL of the test's choosing.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::query_parameters::{PushImageOptionsBuilder, TagImageOptionsBuilder};
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use crate::net::free_port;

/// Where Debian's `docker-registry` package installs the registry.
pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// Settings of a test registry.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Require this user and password (htpasswd, bcrypt).
    pub credentials: Option<(String, String)>,
    /// Send notifications to this URL.
    pub notify_url: Option<String>,
    /// With this bearer token in the `Authorization` header.
    pub notify_token: Option<String>,
}

/// A running registry; killed on drop.
#[derive(Debug)]
pub struct Registry {
    port: u16,
    options: RegistryOptions,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry and waits until it answers.
    pub async fn start(options: RegistryOptions) -> anyhow::Result<Self> {
        if !std::path::Path::new(REGISTRY_BIN).exists() {
            bail!(
                "{REGISTRY_BIN} not found: install Debian's docker-registry (the test script does this)"
            );
        }
        let dir = tempfile::tempdir().context("temp dir for the registry")?;
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: deployer-test\n",
            dir.path().join("data").display()
        );
        if let Some((user, password)) = &options.credentials {
            let hash = bcrypt::hash(password, 4).context("hashing the registry password")?;
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, format!("{user}:{hash}\n")).context("writing htpasswd")?;
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: deployer-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        if let Some(url) = &options.notify_url {
            config.push_str(&format!(
                "notifications:\n  endpoints:\n    - name: deployer\n      url: {url}\n      timeout: 1s\n      threshold: 5\n      backoff: 1s\n"
            ));
            if let Some(token) = &options.notify_token {
                config.push_str(&format!(
                    "      headers:\n        Authorization: [\"Bearer {token}\"]\n"
                ));
            }
        }
        let config_path: PathBuf = dir.path().join("config.yml");
        std::fs::write(&config_path, config).context("writing the registry config")?;
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting docker-registry")?;
        let registry = Self {
            port,
            options,
            child,
            _dir: dir,
        };
        registry.wait_ready().await?;
        Ok(registry)
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(status) = self.get_status("/v2/").await
                && (status == 200 || status == 401)
            {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "docker-registry did not answer on 127.0.0.1:{} within 20 s",
                    self.port
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The status code of a GET of `path`, over a bare HTTP/1.0 request.
    async fn get_status(&self, path: &str) -> anyhow::Result<u16> {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await?;
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
            .await?;
        let mut head = vec![0; 64];
        let n = stream.read(&mut head).await?;
        let line = String::from_utf8_lossy(&head[..n]);
        line.split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("no status line")
    }

    /// `127.0.0.1:<port>`, the registry part of image references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Credentials for the engine, when the registry has auth.
    pub fn credentials(&self) -> Option<DockerCredentials> {
        self.options
            .credentials
            .as_ref()
            .map(|(user, password)| DockerCredentials {
                username: Some(user.clone()),
                password: Some(password.clone()),
                serveraddress: Some(self.host()),
                ..Default::default()
            })
    }

    /// Tags local image `source` as `<host>/<repository>:<tag>` and pushes it; returns the
    /// manifest digest the registry reports.
    pub async fn push(
        &self,
        docker: &Docker,
        source: &str,
        repository: &str,
        tag: &str,
    ) -> anyhow::Result<String> {
        let repo = format!("{}/{repository}", self.host());
        docker
            .tag_image(
                source,
                Some(TagImageOptionsBuilder::new().repo(&repo).tag(tag).build()),
            )
            .await
            .with_context(|| format!("tagging {source} as {repo}:{tag}"))?;
        let options = PushImageOptionsBuilder::new().tag(tag).build();
        let mut stream = docker.push_image(&repo, Some(options), self.credentials());
        let mut digest = None;
        while let Some(item) = stream.next().await {
            let info = item.with_context(|| format!("pushing {repo}:{tag}"))?;
            if let Some(error) = info.error {
                bail!("pushing {repo}:{tag} failed: {error}");
            }
            if let Some(status) = info.status
                && let Some(rest) = status.split("digest: ").nth(1)
            {
                digest = rest.split_whitespace().next().map(str::to_owned);
            }
        }
        digest.with_context(|| format!("push of {repo}:{tag} reported no digest"))
    }

    /// Stops the registry.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
