//! `deployer proxy run`: every handover service's proxy in a process of its own, restored from
//! its state file before anything listens, driven over its control socket.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use deployer_plane::{ControlServer, Fleet, Loaded, SocketLock, StateFile};
use tokio_util::sync::CancellationToken;

use super::ProxyPaths;
use super::upgrade::{self, ProcessUpgrader};
use crate::config::LogFormat;
use crate::exit::Exit;
use crate::run::{descriptors, logging, signals};

/// How long what the proxies serve may take to finish when the process stops.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Worker threads per listener at most, by default, however many cores the host has.
const MAX_DEFAULT_WORKERS: usize = 8;

/// How long the old process keeps serving its connections (each closed after its next
/// answer) before it closes the ones left idle.
const HANDOVER_SETTLE: Duration = Duration::from_secs(2);

/// How long a process taking over waits for the old one to release the socket's lock.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// Runs the proxy process until SIGTERM or SIGINT (or until a newer process took over).
/// `takeover`: the handoff socket of the process this one replaces (`deployer proxy upgrade`).
pub async fn serve(
    paths: &ProxyPaths,
    log: LogFormat,
    takeover: Option<&Path>,
) -> Result<(), Exit> {
    let signals = signals::Signals::install()
        .map_err(|e| Exit::failure(anyhow!("cannot listen for signals: {e}")))?;
    let termination = signals::Termination::from(&signals);
    logging::init(log);
    if let Some(files) = descriptors::raise() {
        tracing::debug!(files, "open-files limit");
    }
    let socket = paths.socket.as_path();
    if let Some(dir) = socket.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| Exit::unavailable_at("proxy.socket", socket.display(), &e))?;
    }
    // A new process takes the old one's listeners first, and its lock only once the old one
    // has let go: it serves traffic before it serves the control socket.
    let (start, inherited) = match takeover {
        Some(path) => {
            let (stream, listeners) = upgrade::receive(path)
                .map_err(|e| Exit::unavailable(anyhow!("taking the listeners over: {e}")))?;
            (Start::Takeover(stream), listeners)
        }
        None => {
            let lock = SocketLock::acquire(socket)
                .map_err(|e| Exit::unavailable(anyhow!("proxy.socket: {e}")))?;
            (Start::Fresh(lock), HashMap::new())
        }
    };
    let state = StateFile::new(&paths.state);
    // The proxy is all this process runs: one worker thread per core serves each listener
    // (a route's own `workers` wins), which measured closest to nginx.
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let (fleet, loaded) = Fleet::restore_serving(state, inherited, cores.min(MAX_DEFAULT_WORKERS))
        .await
        .map_err(|e| Exit::unavailable_at("proxy.state", paths.state.display(), &e))?;
    match &loaded {
        Loaded::Fresh => tracing::info!(state = %paths.state.display(), "no routing state yet"),
        Loaded::Restored(saved) => {
            tracing::info!(routes = saved.routes.len(), "routing state restored");
        }
        Loaded::Corrupt { kept_at, reason } => tracing::error!(
            kept_at = %kept_at.display(),
            %reason,
            "the routing state file is unreadable: kept aside, starting without routes"
        ),
    }
    let fleet = Arc::new(fleet);
    let lock = match start {
        Start::Fresh(lock) => lock,
        Start::Takeover(stream) => upgrade::finish_takeover(stream, socket, LOCK_WAIT)
            .await
            .map_err(|e| Exit::unavailable(anyhow!("taking the control socket over: {e}")))?,
    };
    let taken_over = CancellationToken::new();
    let upgrader = Arc::new(ProcessUpgrader::new(
        fleet.clone(),
        paths.clone(),
        log,
        lock,
        taken_over.clone(),
    ));
    let server = ControlServer::new(fleet.clone(), socket).with_upgrader(upgrader);
    let listener = server
        .listen()
        .map_err(|e| Exit::unavailable_at("proxy.socket", socket.display(), &e))?;
    tracing::info!(socket = %socket.display(), pid = std::process::id(), "proxy control socket listening");
    super::systemd::notify_ready();
    let stop_control = CancellationToken::new();
    let control = tokio::spawn(server.serve(listener, stop_control.clone()));
    tokio::select! {
        () = termination.terminated() => {
            stop_control.cancel();
            let _ = control.await;
            fleet.shutdown(STOP_GRACE).await;
        }
        () = taken_over.cancelled() => {
            // The upgrader already stopped accepting and released the socket; what is left
            // is to finish what this process still serves.
            stop_control.cancel();
            let _ = control.await;
            // Keep-alive clients leave after their next answer (it says `Connection: close`),
            // and a connection accepted just before the handover gets to send its request: a
            // graceful shutdown would close both while idle, racing their next request.
            tokio::time::sleep(HANDOVER_SETTLE).await;
            fleet.shutdown(upgrade::OLD_GRACE).await;
            tracing::info!("handed over to the new proxy process; exiting");
        }
    }
    Ok(())
}

/// How this process came to serve the socket.
enum Start {
    /// First on it: it holds the lock already.
    Fresh(SocketLock),
    /// Replacing a running proxy: the lock comes once the old one lets go.
    Takeover(std::os::unix::net::UnixStream),
}
