//! Serving a router until shutdown, and the webhook server as a [`Trigger`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use deployer_core::driver::EventSink;
use deployer_core::ports::{Trigger, TriggerError};
use deployer_core::shutdown::Shutdown;
use http::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tower::Service;

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

/// What one listener lets its clients hold: a flood of slow or idle connections costs a
/// bounded number of descriptors and bytes, and is shed by the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeLimits {
    /// A connection must deliver a whole request head within this long of opening, and
    /// again of each response (so an idle keep-alive connection is closed after it too).
    pub header_timeout: Duration,
    /// Connections served at once; more wait in the kernel's accept queue, holding no
    /// descriptor of this process, until one closes.
    pub max_connections: usize,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            max_connections: 256,
        }
    }
}

/// The most a connection's read buffer holds (request heads must fit in it).
const READ_BUFFER: usize = 32 << 10;

/// Pause after a failed accept (out of descriptors, most likely) before the next one.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How often a listener at its connection limit says so.
const LIMIT_LOG_EVERY: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` with the default [`ServeLimits`] until `shutdown`
/// completes, then lets requests in flight finish for at most `grace` (idle keep-alive
/// connections are closed at once).
///
/// HTTP/1.1 only (no cleartext HTTP/2: webhook senders and API clients speak HTTP/1.1, and
/// h2c would multiply what one connection may hold). The peer address is available to
/// handlers as `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> Result<(), ServeError> {
    serve_with(listener, router, shutdown, grace, ServeLimits::default()).await
}

/// [`serve`] with explicit limits.
pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
    limits: ServeLimits,
) -> Result<(), ServeError> {
    let local = listener.local_addr().map_err(ServeError::Serve)?;
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut http = http1::Builder::new();
    // hyper reads ahead into a buffer of up to ~400 KB per connection by default, whatever
    // the handler takes: at the connection limit that alone was 100 MB under a flood of
    // bodies. Request heads here are small; bodies stream through in pieces this size.
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(READ_BUFFER)
        .keep_alive(true);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut limit_logged: Option<Instant> = None;
    loop {
        if permits.available_permits() == 0
            && limit_logged.is_none_or(|at| at.elapsed() >= LIMIT_LOG_EVERY)
        {
            limit_logged = Some(Instant::now());
            tracing::warn!(addr = %local, limit = limits.max_connections, "connection limit reached; new connections wait until one closes");
        }
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(addr = %local, %error, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        // Webhook senders and API clients send small requests and wait for the answer:
        // Nagle's algorithm would only add latency.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            let mut router = router.clone();
            async move { router.call(request.map(Body::new)).await }
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => Ok(()),
        () = tokio::time::sleep(grace) => {
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
