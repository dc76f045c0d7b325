//! Running the binary, daemons that show their log when a test fails, polling with deadlines.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

/// The binary under test.
pub const DEPLOYER: &str = env!("CARGO_BIN_EXE_deployer");

/// Bound on one CLI command.
const COMMAND_LIMIT: Duration = Duration::from_secs(60);

/// How a finished command exited and what it printed.
#[derive(Debug)]
pub struct Output {
    /// The exit code; `None` if a signal ended it.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit code {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

impl Output {
    /// Both streams, for "never printed" checks.
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// `deployer ARGS` without the caller's `DEPLOYER_*` variables, which would override the
/// flags and config files the tests give.
pub fn command(args: &[&str]) -> std::process::Command {
    let mut command = std::process::Command::new(DEPLOYER);
    command.args(args).stdin(Stdio::null());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("DEPLOYER_") {
            command.env_remove(name);
        }
    }
    // A daemon's proxy process would outlive the test: only the tests of that mode ask for
    // it (and stop it themselves).
    command.env("DEPLOYER_PROXY_MODE", "embedded");
    command
}

/// Runs `command` to its end, killed if it takes longer than a minute.
pub async fn output(command: std::process::Command) -> anyhow::Result<Output> {
    let what = format!("{command:?}");
    let mut command = tokio::process::Command::from(command);
    command.kill_on_drop(true);
    let out = tokio::time::timeout(COMMAND_LIMIT, command.output())
        .await
        .with_context(|| format!("{what} did not finish within {COMMAND_LIMIT:?}"))?
        .with_context(|| format!("running {what}"))?;
    Ok(Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Runs `deployer ARGS`.
pub async fn deployer(args: &[&str]) -> anyhow::Result<Output> {
    output(command(args)).await
}

/// The CLI pointed at the daemon through its config file.
pub struct Cli {
    /// The daemon's config file.
    pub config: PathBuf,
    /// The variable the config reads the admin token from, and its value.
    pub token: (&'static str, &'static str),
}

impl Cli {
    pub async fn run(&self, args: &[&str]) -> anyhow::Result<Output> {
        let mut cli = command(args);
        cli.arg("--config")
            .arg(&self.config)
            .env(self.token.0, self.token.1);
        output(cli).await
    }

    /// `deployer deploy SERVICE --image IMAGE EXTRA...`.
    pub async fn deploy(
        &self,
        service: &str,
        image: &str,
        extra: &[&str],
    ) -> anyhow::Result<Output> {
        let args: Vec<&str> = ["deploy", service, "--image", image]
            .into_iter()
            .chain(extra.iter().copied())
            .collect();
        self.run(&args).await
    }

    /// `deployer status --json`'s one service.
    pub async fn service(&self) -> anyhow::Result<Value> {
        let out = self.run(&["status", "--json"]).await?;
        anyhow::ensure!(out.code == Some(0), "status failed: {out}");
        let status: Value = serde_json::from_str(&out.stdout).context("status --json")?;
        Ok(status["services"][0].clone())
    }

    /// `deployer history --json`'s reports, newest first.
    pub async fn history(&self) -> anyhow::Result<Vec<Value>> {
        let out = self.run(&["history", "--json"]).await?;
        anyhow::ensure!(out.code == Some(0), "history failed: {out}");
        let history: Value = serde_json::from_str(&out.stdout).context("history --json")?;
        Ok(history["reports"].as_array().cloned().unwrap_or_default())
    }
}

/// A `deployer run` process, killed on drop. Its stderr goes to a file, printed when the
/// test ends without calling [`Daemon::passed`], so a failure shows what the daemon did.
#[derive(Debug)]
pub struct Daemon {
    /// Behind a lock so that `ensure_running` can be called from polling closures.
    child: std::sync::Mutex<tokio::process::Child>,
    log: PathBuf,
    passed: bool,
}

impl Daemon {
    /// Starts `deployer --log-format json run --config CONFIG` with `env` added.
    pub fn start(config: &Path, env: &[(&str, &str)], log: PathBuf) -> anyhow::Result<Self> {
        let command = command(&["--log-format", "json", "run", "--config"]);
        Self::start_command(command, config, env, log)
    }

    /// Like [`Daemon::start`], with the open-files limit (soft and hard) at `files`, as a
    /// host with the usual limits would start it.
    pub fn start_with_files(
        config: &Path,
        env: &[(&str, &str)],
        log: PathBuf,
        files: u32,
    ) -> anyhow::Result<Self> {
        let mut command = std::process::Command::new("sh");
        command
            .args(["-c", &format!("ulimit -n {files} && exec \"$0\" \"$@\"")])
            .arg(DEPLOYER)
            .args(["--log-format", "json", "run", "--config"])
            .stdin(Stdio::null());
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("DEPLOYER_") {
                command.env_remove(name);
            }
        }
        command.env("DEPLOYER_PROXY_MODE", "embedded");
        Self::start_command(command, config, env, log)
    }

    fn start_command(
        mut command: std::process::Command,
        config: &Path,
        env: &[(&str, &str)],
        log: PathBuf,
    ) -> anyhow::Result<Self> {
        let stderr =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        command
            .arg(config)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(stderr);
        let child = tokio::process::Command::from(command)
            .kill_on_drop(true)
            .spawn()
            .context("starting deployer run")?;
        Ok(Self {
            child: std::sync::Mutex::new(child),
            log,
            passed: false,
        })
    }

    /// What the daemon logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM (through `kill`, so the tests need no libc) and waits up to `limit`
    /// for the process to exit.
    pub async fn terminate(&mut self, limit: Duration) -> anyhow::Result<ExitStatus> {
        let child = self
            .child
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let pid = child.id().context("the daemon has already exited")?;
        let sent = tokio::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await
            .context("running kill")?;
        anyhow::ensure!(sent.success(), "kill -TERM {pid} failed: {sent}");
        tokio::time::timeout(limit, child.wait())
            .await
            .with_context(|| format!("deployer run did not exit within {limit:?} of SIGTERM"))?
            .context("waiting for deployer run")
    }

    /// Sends SIGKILL (a crash at whatever moment this is) and waits for the process to end.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        let child = self
            .child
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        child.kill().await.context("killing deployer run")
    }

    /// Sends SIGHUP: re-resolve every tracked tag now.
    pub async fn hangup(&self) -> anyhow::Result<()> {
        let pid = self
            .child
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .id()
            .context("the daemon has exited")?;
        let sent = tokio::process::Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .await
            .context("running kill")?;
        anyhow::ensure!(sent.success(), "kill -HUP {pid} failed: {sent}");
        Ok(())
    }

    /// The daemon's process id.
    pub fn pid(&self) -> anyhow::Result<u32> {
        self.child
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .id()
            .context("the daemon has exited")
    }

    /// Fails if the daemon has exited (it should run until told to stop).
    pub fn ensure_running(&self) -> anyhow::Result<()> {
        let mut child = self
            .child
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match child.try_wait()? {
            None => Ok(()),
            Some(status) => bail!("deployer run exited early: {status}"),
        }
    }

    /// The test passed: do not print the log on drop.
    pub fn passed(&mut self) {
        self.passed = true;
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if !self.passed {
            eprintln!(
                "--- deployer run's log ({}):\n{}",
                self.log.display(),
                self.log()
            );
        }
    }
}

pub use deployer_testkit::wait::{bounded, try_eventually as eventually};

/// Builds the test image of `App::http("v1")` and pushes it to `registry` as `repo:latest`;
/// returns that reference as a daemon config names it.
pub async fn push_v1(
    docker: &bollard::Docker,
    sweep: &deployer_testkit::Sweep,
    registry: &deployer_testkit::Registry,
    repo: &str,
) -> anyhow::Result<String> {
    use deployer_testkit::images::{self, App, ImageSpec};
    let local = format!(
        "deployer-test/{}-{}:latest",
        repo.replace('/', "-"),
        sweep.run()
    );
    let spec = ImageSpec {
        app: App::http("v1"),
        healthcheck: false,
        labels: sweep.labels(),
    };
    images::build(docker, &local, &spec).await?;
    registry.push(docker, &local, repo, "latest").await?;
    Ok(format!("{}/{repo}:latest", registry.host()))
}

/// The body of `GET http://ADDR/`, failing on a non-200 answer.
pub async fn get(addr: &str) -> anyhow::Result<String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .no_proxy()
        .build()?;
    let response = client.get(format!("http://{addr}/")).send().await?;
    let status = response.status();
    let body = response.text().await?;
    anyhow::ensure!(status.is_success(), "{addr} answered {status}: {body}");
    Ok(body)
}

/// One container as `docker ps` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub name: String,
    pub running: bool,
    /// The build it runs (deployer's `deployer.digest` label).
    pub digest: String,
}

/// Every container of `service`, running or not, found by deployer's service label.
pub async fn containers_of(service: &str) -> anyhow::Result<Vec<Container>> {
    let out = tokio::process::Command::new("docker")
        .args(["ps", "-a", "--filter"])
        .arg(format!("label=deployer.service={service}"))
        .args([
            "--format",
            "{{.Names}}\t{{.State}}\t{{.Label \"deployer.digest\"}}",
        ])
        .output()
        .await
        .context("running docker ps")?;
    anyhow::ensure!(
        out.status.success(),
        "docker ps failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut containers: Vec<Container> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let mut fields = line.split('\t');
            Some(Container {
                name: fields.next()?.to_owned(),
                running: fields.next()? == "running",
                digest: fields.next().unwrap_or_default().to_owned(),
            })
        })
        .collect();
    containers.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(containers)
}

/// A one-host daemon config: webhooks on a free port, the admin API on `admin`, the journal
/// (and the proxy's socket and state) in `dir`, containers in node scope `scope`, a poll at
/// start, then `services` (`[[service]]` sections).
pub fn host_config(node: &str, dir: &Path, admin: u16, scope: &str, services: &[String]) -> String {
    format!(
        r#"node = "{node}"

[webhooks]
listen = "127.0.0.1:{webhooks}"

[admin]
listen = "127.0.0.1:{admin}"

[docker]
journal = "{journal}"
scope = "{scope}"

[poll]
on_start = true

{services}"#,
        webhooks = deployer_testkit::net::free_port(),
        journal = dir.join("journal.redb").display(),
        services = services.join("\n"),
    )
}
