//! `deployer proxy ...`: the standalone proxy process (`run`), and what the daemon and the CLI
//! do with it (find or start it, list its routes, upgrade it).

mod serve;
pub mod spawn;
mod systemd;
mod upgrade;

use std::path::{Path, PathBuf};

use anyhow::anyhow;
use deployer_plane::{ControlClient, DataPlane};

pub use serve::serve;

use crate::config::LogFormat;
use crate::exit::Exit;

/// Where the proxy's socket and state file are, from the flags or the config file.
#[derive(Debug, Clone)]
pub struct ProxyPaths {
    /// The control socket.
    pub socket: PathBuf,
    /// The routing state file.
    pub state: PathBuf,
}

impl ProxyPaths {
    /// `--socket` and `--state` win; then the config file's `[proxy]`; then the defaults
    /// beside the default journal.
    pub fn resolve(
        socket: Option<PathBuf>,
        state: Option<PathBuf>,
        config: Option<&Path>,
    ) -> Result<Self, Exit> {
        let from_config = match config {
            Some(path) => Some(
                crate::run::load(Some(path), &crate::config::Overrides::default())?
                    .0
                    .proxy,
            ),
            None => None,
        };
        let fallback = |name: &str| {
            Path::new(crate::config::DEFAULT_JOURNAL)
                .parent()
                .map_or_else(|| PathBuf::from(name), |dir| dir.join(name))
        };
        Ok(Self {
            socket: socket
                .or_else(|| from_config.as_ref().map(|p| p.socket.clone()))
                .unwrap_or_else(|| fallback("proxy.sock")),
            state: state
                .or_else(|| from_config.as_ref().map(|p| p.state.clone()))
                .unwrap_or_else(|| fallback("proxy-state.json")),
        })
    }
}

/// `deployer proxy routes`: what the proxy serves, as JSON.
pub async fn routes(paths: &ProxyPaths) -> Result<(), Exit> {
    let client = ControlClient::new(&paths.socket);
    let routes = client
        .routes()
        .await
        .map_err(|e| Exit::unavailable(anyhow!("{e}")))?;
    let text = serde_json::to_string_pretty(&routes).map_err(|e| Exit::failure(e.into()))?;
    println!("{text}");
    Ok(())
}

/// `deployer proxy call`: one raw request of the control API, its answer printed as it came.
pub async fn call(paths: &ProxyPaths, request: &str) -> Result<(), Exit> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let unavailable = |e: std::io::Error| {
        Exit::unavailable(anyhow!(
            "the proxy's control socket {}: {e}",
            paths.socket.display()
        ))
    };
    if request.contains('\n') {
        return Err(Exit::usage(anyhow!("a request is one line of JSON")));
    }
    let stream = tokio::net::UnixStream::connect(&paths.socket)
        .await
        .map_err(unavailable)?;
    let (read, mut write) = stream.into_split();
    write
        .write_all(format!("{request}\n").as_bytes())
        .await
        .map_err(unavailable)?;
    let mut answer = String::new();
    BufReader::new(read)
        .read_line(&mut answer)
        .await
        .map_err(unavailable)?;
    print!("{answer}");
    let ok = serde_json::from_str::<serde_json::Value>(&answer)
        .ok()
        .and_then(|v| v["ok"].as_bool())
        .unwrap_or(false);
    if ok {
        Ok(())
    } else {
        Err(Exit::failure(anyhow!("the proxy refused the request")))
    }
}

/// `deployer proxy upgrade`: a new proxy process takes the listeners over without a gap.
pub async fn upgrade(paths: &ProxyPaths) -> Result<(), Exit> {
    let client = ControlClient::new(&paths.socket);
    let old = client
        .hello()
        .await
        .map_err(|e| Exit::unavailable(anyhow!("{e}")))?;
    // This binary: an upgrade usually comes with a new one (the running proxy's may be gone).
    let binary = std::env::current_exe().ok();
    let pid = client
        .upgrade(binary)
        .await
        .map_err(|e| Exit::failure(anyhow!("the upgrade failed: {e}")))?;
    println!(
        "proxy upgraded: pid {} serves {} route(s); pid {} drains and exits",
        pid, old.routes, old.pid
    );
    Ok(())
}

/// The log format a proxy started by the daemon uses (the daemon's own).
pub(crate) fn log_flag(format: LogFormat) -> &'static str {
    match format {
        LogFormat::Json => "json",
        _ => "text",
    }
}
