//! Connections to one HTTP backend: connect with a timeout, keep idle keep-alive
//! connections for reuse, and resend a request that a stale pooled connection lost (any
//! request that was not written yet; an idempotent body-less one even if it was, as nginx
//! does, since the backend may close an idle connection just as we reuse it).
//!
//! Deliberately small instead of hyper-util's general-purpose client: a backend is one
//! known socket address (no DNS, no TLS, no HTTP/2), and a connection goes back to the
//! idle list right where the response body ends, without a helper task per request.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use http::header::HeaderValue;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Body;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::time::Instant;

use crate::ProxyConfig;
use crate::body::RequestBody;
use crate::worker;

/// How each backend's connections are made and kept.
#[derive(Debug, Clone)]
pub(crate) struct UpstreamSettings {
    connect_timeout: Duration,
    idle_timeout: Duration,
    max_idle: usize,
    /// One idle list per worker thread, so a worker only reuses connections whose tasks
    /// run on its own runtime (a single list when serving on the caller's runtime).
    lists: usize,
    /// Where the idle-connection reapers run (captured at bind, because backends can be
    /// added from outside the runtime).
    runtime: Handle,
}

impl UpstreamSettings {
    /// Must be called inside a Tokio runtime.
    pub(crate) fn from_config(config: &ProxyConfig) -> Self {
        Self {
            connect_timeout: config.connect_timeout,
            idle_timeout: config.pool_idle_timeout,
            max_idle: config.pool_max_idle_per_backend,
            lists: config.workers.max(1),
            runtime: Handle::current(),
        }
    }
}

/// Why a request got no response, and the request itself when another backend may take it:
/// it never left the proxy, or it is idempotent and has no body.
#[derive(Debug)]
pub(crate) struct SendFailure {
    pub(crate) error: UpstreamError,
    pub(crate) unsent: Option<Request<RequestBody>>,
}

/// Why a request could not be handed to the backend or got no response head.
#[derive(Debug)]
pub(crate) enum UpstreamError {
    Connect(io::Error),
    ConnectTimeout(Duration),
    Handshake(hyper::Error),
    Request(hyper::Error),
}

impl UpstreamError {
    /// What the client is told: short, no internals.
    pub(crate) fn response(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Connect(_) => (StatusCode::BAD_GATEWAY, "backend refused the connection\n"),
            Self::ConnectTimeout(_) => (StatusCode::GATEWAY_TIMEOUT, "backend connect timed out\n"),
            Self::Handshake(_) | Self::Request(_) => {
                (StatusCode::BAD_GATEWAY, "backend failed to answer\n")
            }
        }
    }
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect(error) => write!(f, "connecting failed: {error}"),
            Self::ConnectTimeout(after) => write!(f, "connecting timed out after {after:?}"),
            Self::Handshake(error) => write!(f, "HTTP/1 handshake failed: {error}"),
            Self::Request(error) => {
                write!(f, "request failed: {error}")?;
                let mut source = std::error::Error::source(error);
                while let Some(cause) = source {
                    write!(f, ": {cause}")?;
                    source = cause.source();
                }
                Ok(())
            }
        }
    }
}

/// One backend's HTTP/1.1 connections.
#[derive(Debug)]
pub(crate) struct HttpUpstream {
    addr: SocketAddr,
    /// `Host` for requests that came without one (HTTP/1.0 clients).
    host: HeaderValue,
    connect_timeout: Duration,
    /// Indexed by worker; see `UpstreamSettings::lists`.
    idle: Box<[Arc<IdleList>]>,
}

impl HttpUpstream {
    pub(crate) fn new(addr: SocketAddr, settings: &UpstreamSettings) -> Self {
        let idle: Box<[_]> = (0..settings.lists)
            .map(|_| {
                Arc::new(IdleList {
                    entries: Mutex::new(VecDeque::new()),
                    max: settings.max_idle,
                    timeout: settings.idle_timeout,
                })
            })
            .collect();
        let weak = idle.iter().map(Arc::downgrade).collect();
        settings
            .runtime
            .spawn(reap_idle(weak, settings.idle_timeout));
        Self {
            addr,
            host: HeaderValue::from_str(&addr.to_string())
                .expect("a socket address formats as a valid header value"),
            connect_timeout: settings.connect_timeout,
            idle,
        }
    }

    pub(crate) fn host(&self) -> &HeaderValue {
        &self.host
    }

    /// Sends `request` on an idle connection or a new one. The returned [`Lease`] should be
    /// released once the response body has been read to its end. When no connection could be
    /// made, the request comes back unsent, for another backend.
    pub(crate) async fn send(
        &self,
        mut request: Request<RequestBody>,
    ) -> Result<(Response<Incoming>, Lease), SendFailure> {
        let idle = &self.idle[worker::current_index() % self.idle.len()];
        loop {
            let (mut sender, reused) = match idle.checkout() {
                Some(sender) => (sender, true),
                None => match self.connect().await {
                    Ok(sender) => (sender, false),
                    Err(error) => {
                        return Err(SendFailure {
                            error,
                            unsent: Some(request),
                        });
                    }
                },
            };
            if reused && sender.ready().await.is_err() {
                continue; // closed while idle
            }
            // A reused connection may have been closed under us: the request is resent here.
            // A fresh one failing is the backend's failure (it died): an unwritten or
            // idempotent body-less request goes back to the caller, for another backend.
            let replay = replayable_copy(&request);
            match sender.try_send_request(request).await {
                Ok(response) => {
                    let lease = Lease {
                        sender,
                        idle: Arc::clone(idle),
                    };
                    return Ok((response, lease));
                }
                Err(mut error) => match (error.take_message(), replay) {
                    // Never written: safe to send anywhere, whatever the method.
                    (Some(unsent), _) if reused => request = unsent,
                    (_, Some(copy)) if reused => {
                        tracing::debug!(backend = %self.addr, error = %error.error(), "pooled connection was stale; resending");
                        request = copy;
                    }
                    (unsent, copy) => {
                        return Err(SendFailure {
                            error: UpstreamError::Request(error.into_error()),
                            unsent: unsent.or(copy),
                        });
                    }
                },
            }
        }
    }

    async fn connect(&self) -> Result<SendRequest<RequestBody>, UpstreamError> {
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect(self.addr))
            .await
            .map_err(|_| UpstreamError::ConnectTimeout(self.connect_timeout))?
            .map_err(UpstreamError::Connect)?;
        // Small requests and responses must not wait for Nagle.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(backend = %self.addr, %error, "setting TCP_NODELAY failed");
        }
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(UpstreamError::Handshake)?;
        let backend = self.addr;
        tokio::spawn(async move {
            if let Err(error) = connection.with_upgrades().await {
                tracing::debug!(%backend, %error, "backend connection ended with an error");
            }
        });
        tracing::trace!(%backend, "connected to backend");
        Ok(sender)
    }
}

/// A copy of `request` to resend if it is idempotent (RFC 9110 §9.2.2) and has no body
/// (a streamed body cannot be read twice).
fn replayable_copy(request: &Request<RequestBody>) -> Option<Request<RequestBody>> {
    let idempotent = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    );
    if !idempotent || !request.body().is_end_stream() {
        return None;
    }
    let mut copy = Request::new(RequestBody::Empty);
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    Some(copy)
}

/// A backend connection lent to one request.
#[derive(Debug)]
pub(crate) struct Lease {
    sender: SendRequest<RequestBody>,
    idle: Arc<IdleList>,
}

impl Lease {
    /// Offers the connection for reuse; call only once the response has been read to its
    /// end (dropping a lease instead closes the connection once hyper is done with it).
    pub(crate) fn release(self) {
        self.idle.checkin(self.sender);
    }
}

/// Idle keep-alive connections of one backend, oldest first.
#[derive(Debug)]
struct IdleList {
    entries: Mutex<VecDeque<(SendRequest<RequestBody>, Instant)>>,
    max: usize,
    timeout: Duration,
}

impl IdleList {
    /// The most recently used open connection: it is the likeliest to still be open and
    /// lets the oldest ones expire.
    fn checkout(&self) -> Option<SendRequest<RequestBody>> {
        let mut entries = self.lock();
        while let Some((sender, _)) = entries.pop_back() {
            if !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    fn checkin(&self, sender: SendRequest<RequestBody>) {
        if sender.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut entries = self.lock();
        // Only the oldest end, so a checkin stays cheap; the reaper does full sweeps.
        while entries
            .front()
            .is_some_and(|(_, since)| now - *since >= self.timeout)
        {
            entries.pop_front();
        }
        if entries.len() < self.max {
            entries.push_back((sender, now));
        }
    }

    fn expire(&self, entries: &mut VecDeque<(SendRequest<RequestBody>, Instant)>, now: Instant) {
        entries.retain(|(sender, since)| !sender.is_closed() && now - *since < self.timeout);
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<(SendRequest<RequestBody>, Instant)>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Closes connections idle for longer than `timeout` even when no request comes by to do
/// it; ends once the backend (and so its idle lists) is gone.
async fn reap_idle(lists: Vec<Weak<IdleList>>, timeout: Duration) {
    let period = (timeout / 2).max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(period).await;
        let now = Instant::now();
        let mut any = false;
        for idle in lists.iter().filter_map(Weak::upgrade) {
            any = true;
            let mut entries = idle.lock();
            idle.expire(&mut entries, now);
        }
        if !any {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_short_gateway_statuses() {
        let refused = UpstreamError::Connect(io::ErrorKind::ConnectionRefused.into());
        assert_eq!(refused.response().0, StatusCode::BAD_GATEWAY);
        let slow = UpstreamError::ConnectTimeout(Duration::from_secs(1));
        assert_eq!(slow.response().0, StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(slow.to_string(), "connecting timed out after 1s");
    }

    #[tokio::test]
    async fn every_socket_addr_is_a_valid_host_header() {
        let settings = UpstreamSettings::from_config(&ProxyConfig::default());
        for addr in ["127.0.0.1:8080", "[::1]:443", "[fe80::1%2]:80"] {
            let addr: SocketAddr = addr.parse().expect("addr");
            let upstream = HttpUpstream::new(addr, &settings);
            assert_eq!(
                upstream.host().to_str().ok(),
                Some(addr.to_string().as_str())
            );
        }
    }
}
