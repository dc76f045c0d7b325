//! `deployer run`: validates the config, wires the adapters into a driver, serves webhooks and
//! the admin API, and stops gracefully on SIGTERM or SIGINT.

mod adapters;
pub(crate) mod descriptors;
pub(crate) mod logging;
mod reload;
pub(crate) mod signals;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use deployer_core::driver::{Driver, DriverConfig, Ports, error_chain};
use deployer_core::memory::MemoryCoordinator;
use deployer_core::ports::{Coordinator, Notifier};
use deployer_docker::{
    Credentials, DockerImageSource, DockerSwitcher, ImagePruner, RedbJournal, SwitcherConfig,
};
use deployer_etcd::EtcdCoordinator;
use deployer_http::notify::{DockerHubCallback, MetricsNotifier, SlackNotifier, WebhookNotifier};
use deployer_http::{Metrics, PollTrigger, SignalTrigger, WebhookTrigger};

pub use adapters::AdapterConfigs;

use crate::config::{self, LogFormat, Overrides, ProcessEnv, Settings};
use crate::exit::Exit;

/// Loads and validates everything `run` needs, without binding or connecting anything:
/// the config, the adapters' own checks, and the registry credentials file.
pub fn load(
    path: Option<&Path>,
    overrides: &Overrides,
) -> Result<(Settings, AdapterConfigs, Credentials), Exit> {
    let (file, settings) = match path {
        Some(path) => (
            path.display().to_string(),
            config::load(path, overrides, &ProcessEnv),
        ),
        None => (
            "(no config file)".to_owned(),
            config::parse("(no config file)", "", overrides, &ProcessEnv),
        ),
    };
    let settings = settings.map_err(Exit::config)?;
    let adapters = AdapterConfigs::new(&settings, &file).map_err(Exit::config)?;
    let credentials = match &settings.docker.config {
        Some(path) => Credentials::from_file(path.clone()),
        None => Credentials::from_env(&deployer_docker::ProcessEnv),
    };
    credentials.validate().map_err(|e| {
        Exit::config(config::ConfigErrors(vec![config::ConfigError {
            file,
            position: None,
            key: "docker.config".to_owned(),
            problem: error_chain(&e),
        }]))
    })?;
    Ok((settings, adapters, credentials))
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(
    path: Option<&Path>,
    overrides: &Overrides,
    log: Option<LogFormat>,
) -> Result<(), Exit> {
    // Before anything else: until then SIGHUP, SIGTERM and SIGINT would end the process.
    let signals = signals::Signals::install()
        .map_err(|e| Exit::failure(anyhow!("cannot listen for signals: {e}")))?;
    let termination = signals::Termination::from(&signals);
    let (settings, adapters, credentials) = load(path, overrides)?;
    logging::init(log.unwrap_or(settings.log_format));
    for warning in &settings.warnings {
        tracing::warn!("{warning}");
    }
    tracing::info!(node = %settings.node, services = settings.services.len(), "starting deployer {}", env!("CARGO_PKG_VERSION"));
    if let Some(files) = descriptors::raise() {
        tracing::debug!(files, "open-files limit");
    }

    let unavailable = |what: &str, e: &dyn std::error::Error| {
        Exit::unavailable(anyhow!("{what}: {}", error_chain(e)))
    };
    let docker = deployer_docker::connect::connect(
        settings.docker.endpoint.as_deref(),
        &deployer_docker::ProcessEnv,
    )
    .await
    .map_err(|e| unavailable("Docker engine", &e))?;
    let images = Arc::new(DockerImageSource::new(docker.clone(), credentials));
    let mut switcher_config = SwitcherConfig::default();
    if let Some(scope) = &settings.docker.scope {
        switcher_config = switcher_config.with_scope(scope.clone());
    }
    let switcher = Arc::new(match settings.proxy.mode {
        config::ProxyMode::Embedded => DockerSwitcher::new(docker.clone(), switcher_config),
        config::ProxyMode::Process => {
            let paths = crate::proxy::ProxyPaths {
                socket: settings.proxy.socket.clone(),
                state: settings.proxy.state.clone(),
            };
            let log = log.unwrap_or(settings.log_format);
            let client = crate::proxy::spawn::connect_or_start(&paths, log).await?;
            DockerSwitcher::with_plane(docker.clone(), switcher_config, Arc::new(client))
        }
    });

    let services = settings.services.clone();
    let adopted = deployer_docker::discover_adopted(&docker, &services, switcher.scope())
        .await
        .map_err(|e| unavailable("listing containers to adopt", &e))?;
    // One by one, so an address in use is blamed on its key.
    for (n, spec) in services.iter().enumerate() {
        if let Err(e) = switcher.bind_proxies(std::slice::from_ref(spec)).await {
            let listen = spec.strategy().handover().map(|h| h.listen().to_string());
            return Err(Exit::unavailable_at(
                &format!("service[{n}].proxy.listen"),
                listen.unwrap_or_default(),
                &e,
            ));
        }
    }

    let journal_path = &settings.docker.journal;
    let journal_error = |e: &dyn std::error::Error| {
        Exit::unavailable_at("docker.journal", journal_path.display(), e)
    };
    if let Some(dir) = journal_path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| journal_error(&e))?;
    }
    let journal = Arc::new(RedbJournal::open(journal_path).map_err(|e| journal_error(&e))?);

    let etcd = match &adapters.etcd {
        Some(config) => Some(
            EtcdCoordinator::connect(config.clone())
                .await
                .map_err(|e| unavailable("etcd", &e))?,
        ),
        None => None,
    };
    let coordinator: Arc<dyn Coordinator> = match &etcd {
        Some(etcd) => Arc::new(etcd.clone()),
        // One host: targets, halts, rollback points, statuses and history live in the
        // journal's file, so a restart forgets nothing.
        None => Arc::new(
            MemoryCoordinator::new(settings.node.clone())
                .with_store(Arc::new(journal.store()))
                .map_err(|e| unavailable("reading the local store", &e))?,
        ),
    };

    let metrics = Metrics::new();
    let mut notifiers: Vec<Arc<dyn Notifier>> =
        vec![Arc::new(MetricsNotifier::new(metrics.clone()))];
    let bad_config = |e: &dyn std::error::Error| Exit::usage(anyhow!("{e}"));
    if let Some(slack) = &adapters.slack {
        notifiers.push(Arc::new(
            SlackNotifier::new(slack).map_err(|e| bad_config(&e))?,
        ));
    }
    if let Some(webhook) = &adapters.webhook_notifier {
        notifiers.push(Arc::new(
            WebhookNotifier::new(webhook).map_err(|e| bad_config(&e))?,
        ));
    }
    if let Some(callback) = &adapters.dockerhub_callback {
        notifiers.push(Arc::new(
            DockerHubCallback::new(callback).map_err(|e| bad_config(&e))?,
        ));
    }
    if settings.docker.prune_images {
        notifiers.push(Arc::new(ImagePruner::new(
            docker.clone(),
            settings.docker.keep_images as usize,
        )));
    }

    let mut driver_config = DriverConfig::new(settings.node.clone());
    driver_config.max_parallel = settings.max_parallel;
    driver_config.shutdown_grace = settings.shutdown_grace;
    let ports = Ports {
        images: images.clone(),
        switcher: switcher.clone(),
        coordinator,
        journal,
        notifiers,
    };
    let mut driver =
        Driver::new(driver_config, ports, services).map_err(|e| Exit::usage(anyhow!("{e}")))?;
    let handle = driver.handle();
    for spec in adopted {
        tracing::info!(service = %spec.name(), image = %spec.image(), "adopted labelled containers");
        handle
            .adopt(spec)
            .map_err(|e| Exit::usage(anyhow!("{e}")))?;
    }

    let webhooks = WebhookTrigger::bind(
        settings.webhooks.listen,
        adapters.webhooks.clone(),
        metrics.clone(),
    )
    .map_err(|e| Exit::unavailable_at("webhooks.listen", settings.webhooks.listen, &e))?;
    driver = driver.with_trigger(Arc::new(webhooks));
    let poll_config = adapters.poll.unwrap_or_default();
    if let Some(poll) = &adapters.poll {
        driver = driver.with_trigger(Arc::new(
            PollTrigger::for_driver(&handle, *poll).map_err(|e| bad_config(&e))?,
        ));
    }
    let hangup = SignalTrigger::hangup_stream_for_driver(&handle, &poll_config, signals.hangup)
        .map_err(|e| bad_config(&e))?;
    driver = driver.with_trigger(Arc::new(hangup));

    let mut ports = deployer_http::AdminPorts::default()
        .with_proxy(Arc::new(adapters::SwitcherStats(switcher.clone())))
        .with_traffic(Arc::new(adapters::SwitcherGates(switcher.clone())));
    if let Some(path) = path {
        ports = ports.with_reloader(Arc::new(reload::ConfigReloader {
            path: path.to_owned(),
            overrides: overrides.clone(),
            handle: handle.clone(),
            switcher: switcher.clone(),
        }));
    }
    let admin = deployer_http::admin_router_with(&adapters.admin, handle.clone(), metrics, ports)
        .map_err(|e| bad_config(&e))?;
    let listener = deployer_http::serve::bind(settings.admin.listen)
        .await
        .map_err(|e| Exit::unavailable_at("admin.listen", settings.admin.listen, &e))?;
    tracing::info!(addr = %settings.admin.listen, "admin API listening");
    let (stop_admin, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    let admin_task = tokio::spawn(deployer_http::serve(
        listener,
        admin,
        async move {
            let _ = admin_stopped.await;
        },
        Duration::from_secs(5),
    ));

    let (stop_adoptions, adoptions_stopped) = deployer_core::shutdown::Shutdown::new();
    let adoptions = tokio::spawn(deployer_docker::follow_adoptions(
        docker.clone(),
        handle.clone(),
        switcher.scope().map(str::to_owned),
        adoptions_stopped,
    ));

    driver.run(termination.terminated()).await;
    stop_adoptions.fire();
    let _ = adoptions.await;

    tracing::info!("deploys finished; stopping the admin API and proxies");
    let _ = stop_admin.send(());
    let _ = admin_task.await;
    switcher.shutdown(Duration::from_secs(10)).await;
    if let Some(etcd) = etcd {
        etcd.close().await;
    }
    tracing::info!("stopped");
    Ok(())
}
