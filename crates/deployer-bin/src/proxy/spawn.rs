//! How `deployer run` reaches its proxy process: the one serving the control socket, or a new
//! one it starts in a session of its own, so that it outlives the daemon.

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::anyhow;
use deployer_plane::ControlClient;
use deployer_plane::control::protocol::VERSION;

use super::ProxyPaths;
use crate::config::LogFormat;
use crate::exit::Exit;

/// How long a started proxy may take to answer on its socket.
const START_WAIT: Duration = Duration::from_secs(10);

/// A client of the proxy process on `paths.socket`, started now if none answers there.
pub async fn connect_or_start(paths: &ProxyPaths, log: LogFormat) -> Result<ControlClient, Exit> {
    let client = ControlClient::new(&paths.socket);
    if let Ok(hello) = client.hello().await {
        check_version(paths, hello.version)?;
        tracing::info!(socket = %paths.socket.display(), pid = hello.pid, routes = hello.routes, "using the running proxy process");
        return Ok(client);
    }
    let unavailable = |what: String| {
        Exit::unavailable(anyhow!("proxy.socket = {}: {what}", paths.socket.display()))
    };
    let dir = paths
        .socket
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    if !dir.as_os_str().is_empty() {
        std::fs::create_dir_all(&dir)
            .map_err(|e| unavailable(format!("creating {}: {e}", dir.display())))?;
    }
    let log_path = dir.join("proxy.log");
    let log_file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| unavailable(format!("opening {}: {e}", log_path.display())))?;
    let stderr = log_file
        .try_clone()
        .map_err(|e| unavailable(format!("{}: {e}", log_path.display())))?;
    let exe =
        std::env::current_exe().map_err(|e| unavailable(format!("finding this binary: {e}")))?;
    let mut child = Command::new(exe)
        .arg("--log-format")
        .arg(super::log_flag(log))
        .args(["proxy", "run", "--socket"])
        .arg(&paths.socket)
        .arg("--state")
        .arg(&paths.state)
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(stderr)
        // Its own process group: a Ctrl-C or a group kill aimed at the daemon leaves it serving.
        .process_group(0)
        .spawn()
        .map_err(|e| unavailable(format!("starting the proxy process: {e}")))?;
    let deadline = tokio::time::Instant::now() + START_WAIT;
    loop {
        if let Ok(hello) = client.hello().await {
            check_version(paths, hello.version)?;
            tracing::info!(socket = %paths.socket.display(), pid = hello.pid, log = %log_path.display(), "started the proxy process");
            // Reaped here while the daemon runs; once the daemon is gone, init reaps it.
            std::thread::spawn(move || child.wait());
            return Ok(client);
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(unavailable(format!(
                "the proxy process exited ({status}); {} says why",
                log_path.display()
            )));
        }
        if tokio::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(unavailable(format!(
                "the proxy process did not answer within {START_WAIT:?}; see {}",
                log_path.display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn check_version(paths: &ProxyPaths, version: u32) -> Result<(), Exit> {
    if version == VERSION {
        return Ok(());
    }
    Err(Exit::unavailable(anyhow!(
        "proxy.socket = {}: the proxy there speaks control API version {version}, this deployer {VERSION}: upgrade it with `deployer proxy upgrade` from the new binary",
        paths.socket.display()
    )))
}
