//! # deployer-http
//!
//! How the outside world reaches the deployer, and how the deployer reports back:
//!
//! - [`hooks`]: webhook endpoints for Docker Hub, Docker Registry notifications, GitHub
//!   (GHCR), Quay, Harbor and a generic JSON sender, each authenticated its own way, all
//!   feeding the driver's [`EventSink`](deployer_core::driver::EventSink). Entry point:
//!   [`webhook_router`], or [`WebhookTrigger`] to run them as a trigger of the driver.
//! - [`PollTrigger`], [`SignalTrigger`]: resolve every tracked tag periodically, or on SIGHUP.
//! - [`notify`]: Slack, generic webhook and Docker Hub callback notifiers, and
//!   [`MetricsNotifier`](notify::MetricsNotifier).
//! - [`admin`]: the admin API (services, history, fleet, deploy, rollback, health, metrics,
//!   OpenAPI). Entry point: [`admin_router`].
//! - [`serve()`]: serves a router until shutdown with a bounded grace.
//!
//! Settings live in [`config`]; every secret is a [`Secret`], which never prints.
//!
//! ```no_run
//! use std::sync::Arc;
//! use deployer_core::driver::{Driver, DriverConfig, Ports};
//! use deployer_http::config::{AdminConfig, EndpointConfig, PollConfig, WebhookConfig};
//! use deployer_http::{Metrics, PollTrigger, WebhookTrigger, admin_router, serve};
//!
//! # async fn demo(ports: Ports, services: Vec<deployer_core::ServiceSpec>) -> anyhow::Result<()> {
//! let metrics = Metrics::new();
//! let mut ports = ports;
//! ports.notifiers.push(Arc::new(deployer_http::notify::MetricsNotifier::new(metrics.clone())));
//! let driver = Driver::new(DriverConfig::new("host-a"), ports, services)?;
//! let handle = driver.handle();
//!
//! let mut hooks = WebhookConfig::default();
//! hooks.registry = EndpointConfig::with_secret("a-long-random-registry-token")
//!     .registries(["registry.example.com:5000"]);
//! let webhooks = WebhookTrigger::bind("0.0.0.0:4500".parse()?, hooks, metrics.clone())?;
//! let poll = PollTrigger::for_driver(&handle, PollConfig::default())?;
//! let driver = driver.with_trigger(Arc::new(webhooks)).with_trigger(Arc::new(poll));
//!
//! let admin = admin_router(&AdminConfig::default(), handle, metrics, None)?;
//! let listener = deployer_http::serve::bind("127.0.0.1:4501".parse()?).await?;
//! let (stop, stopped) = tokio::sync::watch::channel(false);
//! tokio::spawn(serve(listener, admin, async move {
//!     let mut stopped = stopped;
//!     let _ = stopped.wait_for(|s| *s).await;
//! }, deployer_http::serve::DEFAULT_GRACE));
//! driver.run(async { let _ = tokio::signal::ctrl_c().await; }).await;
//! let _ = stop.send(true);
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod admin;
mod api_error;
mod body;
pub mod config;
pub mod hooks;
pub mod metrics;
pub mod notify;
mod poll;
mod refusals;
mod secret;
pub mod serve;
mod signal;

pub use admin::{
    AdminPorts, Gate, GateError, ReloadError, Reloader, TrafficControl, admin_router,
    admin_router_with,
};
pub use config::ConfigError;
pub use hooks::webhook_router;
pub use metrics::{Metrics, ProxyGenerationStats, ProxyLatency, ProxyServiceStats, ProxyStats};
pub use poll::{PollTrigger, tracked_images};
pub use secret::Secret;
pub use serve::{WebhookTrigger, serve};
pub use signal::SignalTrigger;
