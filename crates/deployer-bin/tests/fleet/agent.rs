//! One agent of the test fleet: a real `deployer run` process with its own config, ports,
//! journal and node scope, and a small client for its admin API, webhooks and proxy.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use deployer_testkit::wait::eventually;

use crate::common::service_section;

/// The generic webhook's bearer token (given to the agents through their environment).
pub const HOOK_TOKEN: &str = "fleet-test-hook-token-0123456789";
const HOOK_TOKEN_ENV: &str = "FLEET_TEST_HOOK_TOKEN";

/// The service every agent runs, as a fleet rolls out one service everywhere.
pub const SERVICE: &str = "web";

/// What an agent's config says beyond its own node, ports and files.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    /// etcd client URL.
    pub etcd: String,
    /// Key prefix, unique to the test.
    pub prefix: String,
    /// The tracked `<registry>/demo/app:latest`.
    pub image: String,
    /// Labels put on every container (the test's sweep labels).
    pub labels: Vec<(String, String)>,
    /// How long a candidate may take to become healthy.
    pub health_deadline: Duration,
}

/// A `deployer run` child process; killed on drop.
#[derive(Debug)]
pub struct Agent {
    /// Node name, also its Docker node scope.
    pub node: String,
    pub admin: SocketAddr,
    pub webhooks: SocketAddr,
    /// The service's proxy: where its users connect.
    pub proxy: SocketAddr,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    http: reqwest::Client,
}

impl Agent {
    /// Writes the agent's config in `dir`; nothing runs yet.
    pub fn new(dir: &Path, node: &str, settings: &AgentSettings) -> anyhow::Result<Self> {
        let home = dir.join(node);
        std::fs::create_dir_all(&home)?;
        let (admin, webhooks, proxy) = (free_addr(), free_addr(), free_addr());
        let service = service_section(
            SERVICE,
            &settings.image,
            &settings.labels,
            proxy,
            settings.health_deadline,
        );
        let config = format!(
            r#"node = "{node}"
coordinator = "etcd"
shutdown_grace = "5s"

[etcd]
nodes = ["{etcd}"]
prefix = "{prefix}"
lease_ttl = "3s"
rollout_slots = 1
retry_delay = "200ms"
dial_timeout = "1s"

[webhooks]
listen = "{webhooks}"

[webhooks.generic]
token = {{ env = "{HOOK_TOKEN_ENV}" }}

[admin]
listen = "{admin}"

[docker]
journal = "{journal}"
scope = "{node}"

[poll]
# The first build deploys at start, without a webhook.
on_start = true

{service}
[service.timeouts]
drain = "2s"
stop = "1s"

[service.retry]
initial = "200ms"
max = "2s"
retries = 20
"#,
            etcd = settings.etcd,
            prefix = settings.prefix,
            journal = home.join("journal.redb").display(),
        );
        let config_path = home.join("deployer.toml");
        std::fs::write(&config_path, config)?;
        Ok(Self {
            node: node.to_owned(),
            admin,
            webhooks,
            proxy,
            config: config_path,
            log: home.join("deployer.log"),
            child: None,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
        })
    }

    /// Starts the process (its log appended to `deployer.log`) and waits until its admin API
    /// says it is ready (services recovered).
    pub async fn start(&mut self) -> anyhow::Result<()> {
        ensure!(self.child.is_none(), "{} already runs", self.node);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(env!("CARGO_BIN_EXE_deployer"))
            .arg("run")
            .arg("--config")
            .arg(&self.config)
            .env(HOOK_TOKEN_ENV, HOOK_TOKEN)
            .env("RUST_LOG", "info")
            .env_remove("DEPLOYER_LOG_FORMAT")
            // The fleet tests kill agents and want their traffic gone with them.
            .env("DEPLOYER_PROXY_MODE", "embedded")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("starting the deployer binary")?;
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!("{} exited during start ({status})", self.node);
            }
            if let Ok(ready) = self.http.get(self.url("/readyz")).send().await
                && ready.status().is_success()
            {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("{} did not answer /readyz within 30 s", self.node);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL, as a crash would: no graceful stop, no lease revoke.
    pub async fn kill9(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().await?;
        }
        Ok(())
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// `GET` of an admin API path, as JSON.
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let response = self.http.get(self.url(path)).send().await?;
        let status = response.status();
        let body: Value = response.json().await?;
        ensure!(status.is_success(), "{} {path}: {status} {body}", self.node);
        Ok(body)
    }

    /// The service as the agent sees it (`GET /api/v1/services/web`).
    pub async fn service(&self) -> anyhow::Result<Value> {
        self.get(&format!("/api/v1/services/{SERVICE}")).await
    }

    /// Every report in the fleet's history (shared through etcd), newest first.
    pub async fn history(&self) -> anyhow::Result<Vec<Value>> {
        let history = self
            .get(&format!("/api/v1/history?service={SERVICE}&limit=100"))
            .await?;
        Ok(history["reports"].as_array().cloned().unwrap_or_default())
    }

    /// The fleet's statuses (`GET /api/v1/fleet`).
    pub async fn fleet(&self) -> anyhow::Result<Vec<Value>> {
        let fleet = self.get("/api/v1/fleet").await?;
        Ok(fleet["statuses"].as_array().cloned().unwrap_or_default())
    }

    /// `deployer status --json` against this agent's admin API, as an operator runs it.
    pub async fn status_cli(&self) -> anyhow::Result<Value> {
        let output = Command::new(env!("CARGO_BIN_EXE_deployer"))
            .args(["status", "--json", "--admin"])
            .arg(self.admin.to_string())
            .env_remove("DEPLOYER_CONFIG")
            .env_remove("DEPLOYER_ADMIN")
            .env_remove("DEPLOYER_ADMIN_TOKEN")
            .output()
            .await?;
        ensure!(output.status.success(), "deployer status: {output:?}");
        serde_json::from_slice(&output.stdout).context("deployer status --json")
    }

    /// The ingest counter `deployer_ingest_events_total{result}` from `/metrics`.
    pub async fn ingested(&self, result: &str) -> anyhow::Result<u64> {
        let text = self
            .http
            .get(self.url("/metrics"))
            .send()
            .await?
            .text()
            .await?;
        let wanted = format!("deployer_ingest_events_total{{result=\"{result}\"}}");
        Ok(text
            .lines()
            .find_map(|l| l.strip_prefix(&wanted))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0))
    }

    /// Waits until the service is at rest (idle) with `digest` live.
    pub async fn wait_live(&self, digest: &str, limit: Duration) -> anyhow::Result<()> {
        let what = format!("{} to serve {}", self.node, short(digest));
        eventually(limit, &what, || async {
            let service = self.service().await.ok()?;
            (service["live"] == digest && service["state"] == "idle").then_some(())
        })
        .await
    }

    /// Waits until the service reaches `state` (`probing`, `halted`, ...).
    pub async fn wait_state(&self, state: &str, limit: Duration) -> anyhow::Result<Value> {
        let what = format!("{} to be {state}", self.node);
        eventually(limit, &what, || async {
            let service = self.service().await.ok()?;
            (service["state"] == state).then_some(service)
        })
        .await
    }

    /// Announces a build as a CI job would: `POST /hooks/generic`; returns the status code.
    pub async fn announce(&self, image: &str, digest: &str) -> anyhow::Result<u16> {
        self.post_generic(json!({ "image": image, "digest": digest }))
            .await
    }

    /// Like [`Agent::announce`], with the sender's own push time (RFC 3339).
    pub async fn announce_dated(
        &self,
        image: &str,
        digest: &str,
        time: &str,
    ) -> anyhow::Result<u16> {
        self.post_generic(json!({ "image": image, "digest": digest, "time": time }))
            .await
    }

    async fn post_generic(&self, body: serde_json::Value) -> anyhow::Result<u16> {
        let response = self
            .http
            .post(format!("http://{}/hooks/generic", self.webhooks))
            .bearer_auth(HOOK_TOKEN)
            .json(&body)
            .send()
            .await?;
        Ok(response.status().as_u16())
    }

    /// `GET /` through the service's proxy, on a new connection: the body (the version).
    pub async fn answer(&self) -> anyhow::Result<String> {
        let response = self
            .http
            .get(format!("http://{}/", self.proxy))
            .header("connection", "close")
            .send()
            .await
            .with_context(|| format!("{}'s proxy", self.node))?;
        let status = response.status();
        let body = response.text().await?;
        if !status.is_success() {
            bail!("{}'s proxy answered {status}: {body}", self.node);
        }
        Ok(body.trim().to_owned())
    }

    /// The last `lines` lines of the agent's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// `127.0.0.1:<port that was free a moment ago>`.
fn free_addr() -> SocketAddr {
    deployer_testkit::net::free_addr()
}

/// The first 12 hex digits of a digest.
pub fn short(digest: &str) -> &str {
    let hex = digest.split_once(':').map_or(digest, |(_, h)| h);
    &hex[..hex.len().min(12)]
}
