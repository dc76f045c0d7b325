//! HTTP (L7) mode: serves client connections with hyper and forwards each request to the
//! backend picked for that request, so keep-alive clients follow a switch at their next
//! request while requests already sent finish on the backend that took them.

use std::convert::Infallible;
use std::error::Error as StdError;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, EXPECT, HOST, HeaderValue};
use http::uri::{self, Authority, PathAndQuery, Scheme};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::upgrade::OnUpgrade;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use crate::ProxyConfig;
use crate::backends::ActiveGuard;
use crate::body::ProxyBody;
use crate::headers;
use crate::server::Shared;

/// How each backend's connection pool is built.
#[derive(Debug, Clone)]
pub(crate) struct UpstreamSettings {
    connect_timeout: Duration,
    pool_idle_timeout: Duration,
    pool_max_idle: usize,
}

impl UpstreamSettings {
    pub(crate) fn from_config(config: &ProxyConfig) -> Self {
        Self {
            connect_timeout: config.connect_timeout,
            pool_idle_timeout: config.pool_idle_timeout,
            pool_max_idle: config.pool_max_idle_per_backend,
        }
    }
}

/// One backend's HTTP client: its own keep-alive pool plus the authority requests to it use.
#[derive(Debug)]
pub(crate) struct HttpUpstream {
    client: Client<HttpConnector, Incoming>,
    authority: Authority,
}

impl HttpUpstream {
    pub(crate) fn new(addr: SocketAddr, settings: &UpstreamSettings) -> Self {
        let mut connector = HttpConnector::new();
        connector.enforce_http(true);
        // Small requests and responses must not wait for Nagle.
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(settings.connect_timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(settings.pool_idle_timeout)
            .pool_max_idle_per_host(settings.pool_max_idle)
            .build(connector);
        let authority = Authority::from_maybe_shared(Bytes::from(addr.to_string()))
            .expect("a SocketAddr always formats as a valid authority (ip:port or [ip6]:port)");
        Self { client, authority }
    }
}

/// Proxy-wide settings of the HTTP mode.
#[derive(Debug)]
pub(crate) struct HttpSettings {
    server: http1::Builder,
    response_timeout: Duration,
    trust_forwarded: bool,
}

impl HttpSettings {
    pub(crate) fn from_config(config: &ProxyConfig) -> Self {
        let mut server = http1::Builder::new();
        server
            .timer(TokioTimer::new())
            .header_read_timeout(config.client_header_timeout)
            .keep_alive(true);
        Self {
            server,
            response_timeout: config.response_timeout,
            trust_forwarded: config.trust_forwarded_headers,
        }
    }
}

/// Serves one client connection until it closes, the proxy shuts down gracefully (the
/// request in flight finishes first), or shutdown is forced.
pub(crate) async fn serve_connection(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr) {
    let for_service = Arc::clone(&shared);
    let service = service_fn(move |request| forward(Arc::clone(&for_service), peer, request));
    let mut connection = pin!(
        shared
            .http
            .server
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades()
    );
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = shared.graceful.cancelled() => {
            connection.as_mut().graceful_shutdown();
            tokio::select! {
                result = connection.as_mut() => result,
                // `graceful` is a child of `hard`, so this is reached on forced shutdown too.
                () = shared.hard.cancelled() => return,
            }
        }
    };
    if let Err(error) = result {
        tracing::debug!(%peer, %error, "client connection ended with an error");
    }
}

/// Forwards one request. Never fails: every problem becomes a short plain-text response.
async fn forward(
    shared: Arc<Shared>,
    peer: SocketAddr,
    mut request: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    if request.method() == Method::CONNECT {
        // This is a reverse proxy; tunnelling to arbitrary hosts is not its job.
        return Ok(text_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "CONNECT is not supported\n",
        ));
    }
    let Some((backend, guard)) = shared.pool.pick() else {
        shared.totals.no_backend.fetch_add(1, Ordering::Relaxed);
        return Ok(text_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "no backend available\n",
        ));
    };
    let Some(upstream) = backend.http() else {
        // Backends get a client whenever the proxy runs in HTTP mode; stay safe anyway.
        guard.record_error();
        return Ok(text_response(
            StatusCode::BAD_GATEWAY,
            "backend unavailable\n",
        ));
    };

    let upgrade = headers::upgrade_protocol(request.headers());
    let client_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut request));
    let Some(outgoing) = upstream_request(
        request,
        &upstream.authority,
        peer,
        upgrade,
        shared.http.trust_forwarded,
    ) else {
        return Ok(text_response(
            StatusCode::BAD_REQUEST,
            "invalid request target\n",
        ));
    };

    let sent = tokio::time::timeout(
        shared.http.response_timeout,
        upstream.client.request(outgoing),
    );
    let result = tokio::select! {
        biased;
        () = guard.tracker().cut_requested() => {
            guard.record_cut();
            return Ok(text_response(StatusCode::GATEWAY_TIMEOUT, "backend drained before it answered\n"));
        }
        result = sent => result,
    };
    let response = match result {
        Ok(Ok(response)) => response,
        Ok(Err(error)) => {
            guard.record_error();
            let (status, message) = classify(&error);
            tracing::warn!(backend = %backend.addr(), %status, error = %ErrorChain(&error), "backend request failed");
            return Ok(text_response(status, message));
        }
        Err(_elapsed) => {
            guard.record_error();
            tracing::warn!(backend = %backend.addr(), timeout = ?shared.http.response_timeout, "backend sent no response headers in time");
            return Ok(text_response(
                StatusCode::GATEWAY_TIMEOUT,
                "backend did not answer in time\n",
            ));
        }
    };
    drop(backend);

    match client_upgrade {
        Some(client_upgrade) if response.status() == StatusCode::SWITCHING_PROTOCOLS => {
            Ok(tunnel(&shared, response, client_upgrade, guard))
        }
        _ => {
            let (mut parts, body) = response.into_parts();
            headers::strip_hop_by_hop(&mut parts.headers);
            Ok(Response::from_parts(
                parts,
                ProxyBody::upstream(body, guard),
            ))
        }
    }
}

/// Rewrites a client request for the backend at `authority`; `None` if its target cannot
/// be expressed as an origin-form request.
fn upstream_request(
    request: Request<Incoming>,
    authority: &Authority,
    peer: SocketAddr,
    upgrade: Option<HeaderValue>,
    trust_forwarded: bool,
) -> Option<Request<Incoming>> {
    let (mut parts, body) = request.into_parts();
    // An absolute-form target overrides Host (RFC 9112 §3.2.2).
    let host = match parts.uri.authority() {
        Some(target) => HeaderValue::from_str(target.as_str()).ok(),
        None => parts.headers.get(HOST).cloned(),
    };
    let mut target = uri::Parts::default();
    target.scheme = Some(Scheme::HTTP);
    target.authority = Some(authority.clone());
    target.path_and_query = Some(
        parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/")),
    );
    parts.uri = Uri::from_parts(target).ok()?;
    // Speak HTTP/1.1 to backends whatever the client spoke, so backend connections stay
    // keep-alive; hyper answers the client in its own version.
    parts.version = Version::HTTP_11;
    headers::strip_hop_by_hop(&mut parts.headers);
    // hyper already answered `100 Continue` to the client when we started reading the body.
    parts.headers.remove(EXPECT);
    if let Some(protocol) = upgrade {
        headers::set_upgrade(&mut parts.headers, protocol);
    }
    if let Some(host) = &host {
        parts.headers.insert(HOST, host.clone());
    }
    headers::add_forwarded(&mut parts.headers, peer.ip(), host, trust_forwarded);
    Some(Request::from_parts(parts, body))
}

/// Answers the client's upgrade with the backend's `101` and, once hyper hands over both
/// connections, copies bytes both ways until either side closes or the backend is cut.
fn tunnel(
    shared: &Shared,
    mut response: Response<Incoming>,
    client_upgrade: OnUpgrade,
    guard: ActiveGuard,
) -> Response<ProxyBody> {
    let backend_upgrade = hyper::upgrade::on(&mut response);
    let (mut parts, _empty) = response.into_parts();
    let protocol = headers::upgrade_protocol(&parts.headers);
    headers::strip_hop_by_hop(&mut parts.headers);
    if let Some(protocol) = protocol {
        headers::set_upgrade(&mut parts.headers, protocol);
    }
    shared.tasks.spawn(async move {
        let backend = guard.tracker().addr();
        let copy = async {
            let (client, upstream) = tokio::try_join!(client_upgrade, backend_upgrade)
                .map_err(|e| io::Error::other(e.to_string()))?;
            let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
            tokio::io::copy_bidirectional(&mut client, &mut upstream).await
        };
        tokio::select! {
            result = copy => match result {
                Ok((to_backend, to_client)) => tracing::debug!(%backend, to_backend, to_client, "upgraded connection closed"),
                Err(error) => tracing::debug!(%backend, %error, "upgraded connection failed"),
            },
            () = guard.tracker().cut_requested() => {
                guard.record_cut();
                tracing::info!(%backend, "upgraded connection cut");
            }
        }
    });
    Response::from_parts(parts, ProxyBody::empty())
}

/// Maps a failed backend request to the status the client gets.
fn classify(error: &hyper_util::client::legacy::Error) -> (StatusCode, &'static str) {
    if !error.is_connect() {
        return (StatusCode::BAD_GATEWAY, "backend failed to answer\n");
    }
    if caused_by_timeout(error) {
        (StatusCode::GATEWAY_TIMEOUT, "backend connect timed out\n")
    } else {
        (StatusCode::BAD_GATEWAY, "backend refused the connection\n")
    }
}

fn caused_by_timeout(error: &(dyn StdError + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(io) = error.downcast_ref::<io::Error>()
            && io.kind() == io::ErrorKind::TimedOut
        {
            return true;
        }
        current = error.source();
    }
    false
}

fn text_response(status: StatusCode, text: &'static str) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::text(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Displays an error with its sources, since hyper's top-level messages are vague.
struct ErrorChain<'a>(&'a (dyn StdError + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(error) = source {
            write!(f, ": {error}")?;
            source = error.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_socket_addr_formats_as_an_authority() {
        for addr in ["127.0.0.1:8080", "[::1]:443", "[fe80::1%2]:80"] {
            let addr: SocketAddr = addr.parse().expect("addr");
            let settings = UpstreamSettings::from_config(&ProxyConfig::default());
            // Building needs a runtime only for the pool's timer at first use, not here.
            let upstream = HttpUpstream::new(addr, &settings);
            assert_eq!(upstream.authority.port_u16(), Some(addr.port()));
        }
    }

    /// Stands in for hyper-util's private `ConnectError`, which exposes its cause as source.
    #[derive(Debug)]
    struct Wrapper(io::Error);

    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("tcp connect error")
        }
    }

    impl StdError for Wrapper {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn connect_timeouts_are_found_in_the_source_chain() {
        let timed_out = Wrapper(io::Error::new(io::ErrorKind::TimedOut, "slow"));
        assert!(caused_by_timeout(&timed_out));
        let refused = Wrapper(io::Error::from(io::ErrorKind::ConnectionRefused));
        assert!(!caused_by_timeout(&refused));
        assert_eq!(
            ErrorChain(&timed_out).to_string(),
            "tcp connect error: slow"
        );
    }
}
