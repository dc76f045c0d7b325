//! A real etcd (Debian's `etcd-server`, v3.4 here) on free loopback ports, in a temporary data
//! directory, that a test can kill and restart in place.
//!
//! ```no_run
//! # async fn demo() {
//! use deployer_testkit::etcd::Etcd;
//! let mut etcd = Etcd::start().await;
//! let endpoint = etcd.endpoint(); // "http://127.0.0.1:<port>"
//! etcd.kill();                    // as if the machine lost power
//! etcd.restart().await;           // same data, same ports
//! # let _ = endpoint;
//! # }
//! ```

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::net::free_port;

/// Where Debian's `etcd-server` package installs etcd.
pub const ETCD_BIN: &str = "/usr/bin/etcd";

/// How long a start may take before the test fails. etcd answers in well under a second on an
/// idle machine; the margin is for machines shared with parallel builds.
const START_DEADLINE: Duration = Duration::from_secs(30);

/// How many times a start is retried with fresh ports when etcd exits at once: the ports were
/// only free "a moment ago" and another test may have taken one since.
const START_ATTEMPTS: usize = 3;

/// Extra settings for a test etcd.
#[derive(Debug, Clone, Default)]
pub struct EtcdOptions {
    /// How often etcd sends progress notifications to idle watches (etcd's default is 10 min,
    /// far too long for a test); `None` keeps etcd's default.
    pub progress_notify_interval: Option<Duration>,
    /// Serve clients over TLS (`https://` endpoint) with these files.
    pub tls: Option<EtcdTls>,
    /// More command-line flags, passed as they are.
    pub extra_args: Vec<String>,
}

/// TLS files for the client port (PEM).
#[derive(Debug, Clone)]
pub struct EtcdTls {
    /// Server certificate; must name 127.0.0.1 (IP SAN) for clients to accept it.
    pub cert_file: PathBuf,
    /// Its private key.
    pub key_file: PathBuf,
    /// When set, clients must present a certificate signed by this CA.
    pub client_ca_file: Option<PathBuf>,
}

/// A running etcd; killed on drop, its data directory removed with it.
#[derive(Debug)]
pub struct Etcd {
    /// The process while it runs; `None` after `kill` or `stop`.
    child: Option<Child>,
    client_port: u16,
    peer_port: u16,
    /// Plain-HTTP port for `/health`, so readiness checks work with TLS on the client port.
    metrics_port: u16,
    options: EtcdOptions,
    /// Data directory and log file; kept across restarts so a restart finds its data.
    dir: tempfile::TempDir,
}

impl Etcd {
    /// Starts etcd with default settings and waits until it answers.
    ///
    /// # Panics
    /// When `/usr/bin/etcd` is missing or etcd does not become healthy in time (the message
    /// carries the end of etcd's log).
    pub async fn start() -> Self {
        Self::start_with(EtcdOptions::default()).await
    }

    /// Starts etcd with `options` and waits until it answers.
    ///
    /// # Panics
    /// As [`Etcd::start`].
    pub async fn start_with(options: EtcdOptions) -> Self {
        if !Path::new(ETCD_BIN).exists() {
            panic!("etcd not found: install Debian's etcd-server (the test script does this)");
        }
        let dir = tempfile::Builder::new()
            .prefix("deployer-etcd-")
            .tempdir()
            .expect("temporary directory for etcd");
        let mut etcd = Self {
            child: None,
            client_port: 0,
            peer_port: 0,
            metrics_port: 0,
            options,
            dir,
        };
        let mut last_error = String::new();
        for _ in 0..START_ATTEMPTS {
            etcd.client_port = free_port();
            etcd.peer_port = free_port();
            etcd.metrics_port = free_port();
            // A failed attempt may have left a half-initialised member behind.
            let _ = std::fs::remove_dir_all(etcd.data_dir());
            match etcd.launch_and_wait().await {
                Ok(()) => return etcd,
                Err(e) => last_error = e,
            }
        }
        panic!("etcd did not start after {START_ATTEMPTS} attempts: {last_error}");
    }

    /// The client URL, `http://127.0.0.1:<port>` (`https://` with TLS).
    pub fn endpoint(&self) -> String {
        let scheme = if self.options.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    /// The data directory (kept across restarts).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Whether the process is (still) running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Kills etcd at once (SIGKILL), as a crash or power loss would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops etcd gracefully (SIGTERM), killing it if it has not exited after 10 s.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // std has no portable SIGTERM; procps' `kill` is on every Debian machine.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts etcd again on the same ports with the same data (stopping it first if it runs).
    ///
    /// # Panics
    /// When etcd does not come back healthy in time.
    pub async fn restart(&mut self) {
        self.stop();
        // The old process has exited, but its listening sockets may take a moment to be
        // released; etcd exits at once if a port is still bound, so retry briefly.
        let deadline = tokio::time::Instant::now() + START_DEADLINE;
        loop {
            match self.launch_and_wait().await {
                Ok(()) => return,
                Err(e) if tokio::time::Instant::now() > deadline => {
                    panic!("etcd did not restart: {e}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    /// Launches the process and waits until `/health` says so; on failure the process is
    /// killed and the error carries the end of its log.
    async fn launch_and_wait(&mut self) -> Result<(), String> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| format!("cannot open {}: {e}", self.log_path().display()))?;
        let log_err = log
            .try_clone()
            .map_err(|e| format!("cannot duplicate the log file handle: {e}"))?;
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let mut command = Command::new(ETCD_BIN);
        command
            .arg("--name=default")
            .arg(format!("--data-dir={}", self.data_dir().display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=default={peer}"))
            .arg(format!(
                "--listen-metrics-urls=http://127.0.0.1:{}",
                self.metrics_port
            ))
            .arg("--initial-cluster-state=new")
            .arg("--log-level=warn")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        if let Some(interval) = self.options.progress_notify_interval {
            command.arg(format!(
                "--experimental-watch-progress-notify-interval={}ms",
                interval.as_millis()
            ));
        }
        if let Some(tls) = &self.options.tls {
            command
                .arg(format!("--cert-file={}", tls.cert_file.display()))
                .arg(format!("--key-file={}", tls.key_file.display()));
            if let Some(ca) = &tls.client_ca_file {
                command
                    .arg("--client-cert-auth")
                    .arg(format!("--trusted-ca-file={}", ca.display()));
            }
        }
        command.args(&self.options.extra_args);
        let child = command
            .spawn()
            .map_err(|e| format!("cannot run {ETCD_BIN}: {e}"))?;
        self.child = Some(child);

        let deadline = tokio::time::Instant::now() + START_DEADLINE;
        loop {
            if !self.is_running() {
                self.child = None;
                return Err(format!(
                    "etcd exited during start; log:\n{}",
                    self.log_tail()
                ));
            }
            if self.healthy().await {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                self.kill();
                return Err(format!(
                    "etcd did not become healthy (client {}, health on port {}) within {START_DEADLINE:?}; log:\n{}",
                    self.endpoint(),
                    self.metrics_port,
                    self.log_tail()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether `GET /health` on the metrics port answers `"health":"true"` (a member with a
    /// leader).
    async fn healthy(&self) -> bool {
        let probe = async {
            let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.metrics_port))
                .await
                .ok()?;
            stream
                .write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                .await
                .ok()?;
            let mut body = Vec::new();
            stream.read_to_end(&mut body).await.ok()?;
            Some(String::from_utf8_lossy(&body).contains("\"health\":\"true\""))
        };
        tokio::time::timeout(Duration::from_secs(2), probe)
            .await
            .ok()
            .flatten()
            .unwrap_or(false)
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}
