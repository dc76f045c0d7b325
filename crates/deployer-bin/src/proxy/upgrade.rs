//! `deployer proxy upgrade`, the process side: the running proxy starts a new process of the
//! binary, hands it its listening sockets over a unix socket, and once the new one serves
//! stops accepting, lets go of the control socket, finishes what it serves and exits.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use deployer_plane::{Fleet, SocketLock, Upgrader, handoff};
use tokio_util::sync::CancellationToken;

use super::ProxyPaths;
use crate::config::LogFormat;

/// How long the old process may take to finish what it serves once the new one took over.
pub const OLD_GRACE: Duration = Duration::from_secs(30);

/// How long the new process may take to start, restore its routes and say it serves.
const READY_WAIT: Duration = Duration::from_secs(30);

/// What the new process says once its proxies accept on the handed-over sockets.
const READY: &str = "ready";
/// What the old process says once it stopped accepting and let go of the control socket.
const RELEASED: &str = "released";

/// Upgrades the proxy process it runs in.
pub struct ProcessUpgrader {
    fleet: Arc<Fleet>,
    paths: ProxyPaths,
    log: LogFormat,
    lock: Mutex<Option<SocketLock>>,
    under_way: AtomicBool,
    /// Cancelled once the upgrade's answer is sent: this process then winds down.
    taken_over: CancellationToken,
    done: AtomicBool,
}

impl ProcessUpgrader {
    /// An upgrader of the process serving `fleet`, which holds `lock`.
    pub fn new(
        fleet: Arc<Fleet>,
        paths: ProxyPaths,
        log: LogFormat,
        lock: SocketLock,
        taken_over: CancellationToken,
    ) -> Self {
        Self {
            fleet,
            paths,
            log,
            lock: Mutex::new(Some(lock)),
            under_way: AtomicBool::new(false),
            taken_over,
            done: AtomicBool::new(false),
        }
    }

    async fn hand_over(&self, binary: Option<PathBuf>) -> Result<u32, String> {
        let path = handoff_path(&self.paths.socket);
        let _ = std::fs::remove_file(&path);
        let listener = tokio::net::UnixListener::bind(&path)
            .map_err(|e| format!("binding {}: {e}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("restricting {}: {e}", path.display()))?;
        let result = self.start_and_hand_over(&listener, &path, binary).await;
        let _ = std::fs::remove_file(&path);
        result
    }

    async fn start_and_hand_over(
        &self,
        listener: &tokio::net::UnixListener,
        path: &Path,
        binary: Option<PathBuf>,
    ) -> Result<u32, String> {
        let exe = match binary {
            Some(binary) => binary,
            None => std::env::current_exe().map_err(|e| format!("finding this binary: {e}"))?,
        };
        let mut child = Command::new(exe)
            .arg("--log-format")
            .arg(super::log_flag(self.log))
            .args(["proxy", "run", "--socket"])
            .arg(&self.paths.socket)
            .arg("--state")
            .arg(&self.paths.state)
            .arg("--takeover")
            .arg(path)
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting the new proxy process: {e}"))?;
        let pid = child.id();
        let outcome = self.talk_to(listener, pid).await;
        match outcome {
            Ok(stream) => {
                // Reaped here, so it never lingers as a zombie of this process.
                std::thread::spawn(move || child.wait());
                self.release(stream)?;
                Ok(pid)
            }
            Err(error) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(error)
            }
        }
    }

    /// Hands the sockets to process `pid` and waits until it serves on them.
    async fn talk_to(
        &self,
        listener: &tokio::net::UnixListener,
        pid: u32,
    ) -> Result<UnixStream, String> {
        let (stream, _) = tokio::time::timeout(READY_WAIT, listener.accept())
            .await
            .map_err(|_| {
                format!("the new proxy process (pid {pid}) did not connect within {READY_WAIT:?}")
            })?
            .map_err(|e| format!("accepting the new proxy process: {e}"))?;
        let stream = stream
            .into_std()
            .map_err(|e| format!("the handoff socket: {e}"))?;
        let mut listeners = Vec::new();
        for (service, proxy) in self.fleet.proxies() {
            let fds = proxy
                .listener_fds()
                .map_err(|e| format!("duplicating the listener of {service}: {e}"))?;
            listeners.push((service, fds));
        }
        tokio::task::spawn_blocking(move || -> Result<UnixStream, String> {
            stream
                .set_nonblocking(false)
                .and_then(|()| stream.set_read_timeout(Some(READY_WAIT)))
                .map_err(|e| format!("the handoff socket: {e}"))?;
            handoff::send_listeners(&stream, &listeners)
                .map_err(|e| format!("sending the listeners: {e}"))?;
            expect_line(&stream, READY).map_err(|e| format!("the new proxy process: {e}"))?;
            Ok(stream)
        })
        .await
        .map_err(|e| format!("the handoff task: {e}"))?
    }

    /// The new process serves: stop accepting, let go of the control socket, tell it so.
    fn release(&self, mut stream: UnixStream) -> Result<(), String> {
        for (_, proxy) in self.fleet.proxies() {
            proxy.retire_connections();
        }
        drop(
            self.lock
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        writeln!(stream, "{RELEASED}").map_err(|e| format!("telling the new process: {e}"))?;
        self.done.store(true, Ordering::SeqCst);
        Ok(())
    }
}

#[async_trait::async_trait]
impl Upgrader for ProcessUpgrader {
    async fn upgrade(&self, binary: Option<PathBuf>) -> Result<u32, String> {
        if self.under_way.swap(true, Ordering::SeqCst) {
            return Err("an upgrade is already under way".to_owned());
        }
        self.fleet.freeze();
        tracing::info!("upgrading: starting a new proxy process");
        let result = self.hand_over(binary).await;
        match &result {
            Ok(pid) => tracing::info!(new_pid = pid, "the new proxy process serves; draining"),
            Err(error) => {
                tracing::error!(%error, "the upgrade failed; this process keeps serving");
                self.fleet.thaw();
                self.under_way.store(false, Ordering::SeqCst);
            }
        }
        result
    }

    fn answered(&self) {
        if self.done.load(Ordering::SeqCst) {
            self.taken_over.cancel();
        }
    }
}

/// The handoff socket beside the control socket.
fn handoff_path(socket: &Path) -> PathBuf {
    let mut path = socket.as_os_str().to_owned();
    path.push(".handoff");
    PathBuf::from(path)
}

fn expect_line(stream: &UnixStream, expected: &str) -> Result<(), String> {
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    if line.trim() == expected {
        Ok(())
    } else if line.is_empty() {
        Err("closed the handoff socket (its log says why)".to_owned())
    } else {
        Err(format!("said {:?} instead of {expected:?}", line.trim()))
    }
}

/// The new process: takes the listeners from the old one at `path`.
pub fn receive(path: &Path) -> Result<(UnixStream, HashMap<String, Vec<TcpListener>>), String> {
    let stream = UnixStream::connect(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let listeners = handoff::recv_listeners(&stream).map_err(|e| e.to_string())?;
    for listeners in listeners.values() {
        for listener in listeners {
            listener
                .set_nonblocking(true)
                .map_err(|e| format!("a handed-over socket: {e}"))?;
        }
    }
    Ok((stream, listeners))
}

/// The new process, serving: tells the old one, waits for it to let go of the control
/// socket, and takes the socket's lock.
pub async fn finish_takeover(
    stream: UnixStream,
    socket: &Path,
    wait: Duration,
) -> Result<SocketLock, String> {
    let released = tokio::task::spawn_blocking(move || -> Result<(), String> {
        let mut writer = &stream;
        writeln!(writer, "{READY}").map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(READY_WAIT))
            .map_err(|e| e.to_string())?;
        expect_line(&stream, RELEASED)
    })
    .await
    .map_err(|e| e.to_string())?;
    if let Err(error) = released {
        // The old process may have died mid-way; its lock then went with it.
        tracing::warn!(%error, "the old proxy process did not confirm the handover");
    }
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match SocketLock::acquire(socket) {
            Ok(lock) => return Ok(lock),
            Err(error) if tokio::time::Instant::now() >= deadline => {
                return Err(error.to_string());
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}
