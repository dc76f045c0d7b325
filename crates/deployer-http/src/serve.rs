//! Serving a router until shutdown, and the webhook server as a [`Trigger`].

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::serve::ListenerExt;
use deployer_core::driver::EventSink;
use deployer_core::ports::{Trigger, TriggerError};
use deployer_core::shutdown::Shutdown;
use tokio::net::TcpListener;

use crate::config::{ConfigError, WebhookConfig};
use crate::hooks::webhook_router;
use crate::metrics::Metrics;

/// How long in-flight requests may finish after shutdown before connections are cut.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// Why serving failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The address could not be bound (in use, no permission).
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// Accepting or serving failed.
    #[error("serving failed")]
    Serve(#[source] std::io::Error),
    /// The router could not be built.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Binds `addr`.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })
}

/// Serves `router` on `listener` until `shutdown` completes, then lets requests in flight
/// finish for at most `grace` (idle keep-alive connections are closed at once).
///
/// The peer address is available to handlers as `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> Result<(), ServeError> {
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        let _ = stopping_tx.send(());
    };
    // Webhook senders and API clients send small requests and wait for the answer: Nagle's
    // algorithm would only add latency.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
    });
    let server = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(signal)
    .into_future();
    let bounded = async move {
        // Only starts counting once shutdown began (a dropped sender means it never will).
        if stopping_rx.await.is_ok() {
            tokio::time::sleep(grace).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        served = server => served.map_err(ServeError::Serve),
        () = bounded => {
            tracing::warn!("requests still running {grace:?} after shutdown; closing their connections");
            Ok(())
        }
    }
}

/// The webhook endpoints as a [`Trigger`]: serves [`webhook_router`] on its listener until the
/// driver shuts down.
#[derive(Debug)]
pub struct WebhookTrigger {
    config: WebhookConfig,
    metrics: Arc<Metrics>,
    /// Bound at construction so that a taken port fails startup, not a background task.
    listener: Mutex<Option<std::net::TcpListener>>,
    local_addr: SocketAddr,
    grace: Duration,
}

impl WebhookTrigger {
    /// Validates `config` and binds `addr`.
    pub fn bind(
        addr: SocketAddr,
        config: WebhookConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Self, ServeError> {
        config.validate()?;
        let listener = std::net::TcpListener::bind(addr)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|source| ServeError::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| ServeError::Bind { addr, source })?;
        Ok(Self {
            config,
            metrics,
            listener: Mutex::new(Some(listener)),
            local_addr,
            grace: DEFAULT_GRACE,
        })
    }

    /// The same trigger with another shutdown grace.
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// The address it listens on (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

#[async_trait]
impl Trigger for WebhookTrigger {
    fn name(&self) -> &str {
        "webhooks"
    }

    async fn run(&self, sink: EventSink, mut shutdown: Shutdown) -> Result<(), TriggerError> {
        let fail = |source: Box<dyn std::error::Error + Send + Sync>| TriggerError {
            trigger: "webhooks".to_owned(),
            source,
        };
        let taken = self
            .listener
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let listener = taken.ok_or_else(|| fail("already running".into()))?;
        let listener = TcpListener::from_std(listener).map_err(|e| fail(e.into()))?;
        let router =
            webhook_router(&self.config, sink, self.metrics.clone()).map_err(|e| fail(e.into()))?;
        tracing::info!(addr = %self.local_addr, "webhooks listening");
        serve(
            listener,
            router,
            async move { shutdown.wait().await },
            self.grace,
        )
        .await
        .map_err(|e| fail(e.into()))
    }
}
