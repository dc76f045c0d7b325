//! `deployer reload` / `POST /api/v1/reload`: the config file read again, with the same
//! checks as `config check`, and its services applied to the running daemon. A file that
//! fails them changes nothing.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deployer_core::driver::{DriverHandle, ReloadSummary, error_chain};
use deployer_docker::DockerSwitcher;
use deployer_http::{ReloadError, Reloader};

use crate::config::{self, Overrides, ProcessEnv};

/// How long a removed service's actor may take to stop before its containers go anyway.
const STOP_WAIT: Duration = Duration::from_secs(60);

/// How long requests through a removed service's proxy may finish.
const PROXY_GRACE: Duration = Duration::from_secs(10);

pub struct ConfigReloader {
    pub path: PathBuf,
    pub overrides: Overrides,
    pub handle: DriverHandle,
    pub switcher: Arc<DockerSwitcher>,
}

#[async_trait]
impl Reloader for ConfigReloader {
    async fn reload(&self) -> Result<ReloadSummary, ReloadError> {
        let settings =
            config::load(&self.path, &self.overrides, &ProcessEnv).map_err(|errors| {
                ReloadError::Invalid(errors.0.iter().map(ToString::to_string).collect())
            })?;
        let running = self.handle.specs();
        for (n, spec) in settings.services.iter().enumerate() {
            let old = running.iter().find(|s| s.name() == spec.name());
            let listen =
                |s: &deployer_core::ServiceSpec| s.strategy().handover().map(|h| h.listen());
            match old {
                // A listener that moves would drop what it serves: that takes a restart.
                Some(old) if listen(old) != listen(spec) => {
                    return Err(ReloadError::Refused(format!(
                        "service[{n}] {}: its proxy would move from {} to {}; a reload keeps listeners where they are, restart deployer to move it",
                        spec.name(),
                        describe(listen(old)),
                        describe(listen(spec)),
                    )));
                }
                Some(_) => {}
                // Bound before anything changes: a port in use refuses the reload whole.
                None => {
                    if let Err(e) = self.switcher.bind_proxies(std::slice::from_ref(spec)).await {
                        return Err(ReloadError::Refused(format!(
                            "service[{n}].proxy.listen = {}: {}",
                            describe(listen(spec)),
                            error_chain(&e)
                        )));
                    }
                }
            }
        }
        let summary = self
            .handle
            .reload(settings.services)
            .map_err(|e| ReloadError::Refused(e.to_string()))?;
        for name in &summary.removed {
            let Some(spec) = running.iter().find(|s| s.name() == name).cloned() else {
                continue;
            };
            let (handle, switcher) = (self.handle.clone(), self.switcher.clone());
            tokio::spawn(async move {
                let deadline = tokio::time::Instant::now() + STOP_WAIT;
                while handle.service(spec.name().as_str()).is_some()
                    && tokio::time::Instant::now() < deadline
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                if let Err(e) = switcher.decommission(&spec, PROXY_GRACE).await {
                    tracing::warn!(service = %spec.name(), "removing a removed service's containers failed: {}", error_chain(&e));
                }
            });
        }
        Ok(summary)
    }
}

fn describe(listen: Option<std::net::SocketAddr>) -> String {
    listen.map_or_else(|| "(no proxy)".to_owned(), |a| a.to_string())
}
