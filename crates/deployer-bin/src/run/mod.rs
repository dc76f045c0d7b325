//! `deployer run`: wiring the adapters into the daemon.

use std::path::Path;

use crate::config::{LogFormat, Overrides};
use crate::exit::Exit;

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(
    _config: Option<&Path>,
    _overrides: &Overrides,
    _log: Option<LogFormat>,
) -> Result<(), Exit> {
    Err(Exit::failure(anyhow::anyhow!(
        "the daemon is wired once the adapters land"
    )))
}
