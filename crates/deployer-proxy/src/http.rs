//! HTTP (L7) mode: serves client connections with hyper and forwards each request to the
//! backend picked for that request, so keep-alive clients follow a switch at their next
//! request while requests already sent finish on the backend that took them.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http::header::{CONTENT_TYPE, EXPECT, HOST, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::ProxyConfig;
use crate::backends::ActiveGuard;
use crate::body::{ProxyBody, RequestBody};
use crate::headers;
use crate::lane::Lane;
use crate::server::Shared;
use crate::stats::ResponseClass;

/// Other backends a request that could not be sent is tried on.
const MAX_OTHER_BACKENDS: u32 = 2;

/// Proxy-wide settings of the HTTP mode.
#[derive(Debug)]
pub(crate) struct HttpSettings {
    server: http1::Builder,
    /// HTTP/2 over TLS (negotiated by ALPN).
    server_h2: http2::Builder<TokioExecutor>,
    /// Bounds a TLS handshake too.
    header_timeout: Duration,
    response_timeout: Duration,
    empty_hold: Duration,
    trust_forwarded: bool,
}

impl HttpSettings {
    pub(crate) fn from_config(config: &ProxyConfig) -> Self {
        let mut server = http1::Builder::new();
        server
            .timer(TokioTimer::new())
            .header_read_timeout(config.client_header_timeout)
            .keep_alive(true);
        let mut server_h2 = http2::Builder::new(TokioExecutor::new());
        server_h2.timer(TokioTimer::new());
        Self {
            server,
            server_h2,
            header_timeout: config.client_header_timeout,
            response_timeout: config.response_timeout,
            empty_hold: config.empty_hold,
            trust_forwarded: config.trust_forwarded_headers,
        }
    }
}

/// Serves one client connection until it closes, the proxy shuts down gracefully (the
/// request in flight finishes first), or shutdown is forced.
pub(crate) async fn serve_connection<I>(
    shared: Arc<Shared>,
    stream: I,
    peer: SocketAddr,
    secure: bool,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let for_service = Arc::clone(&shared);
    let service =
        service_fn(move |request| forward(Arc::clone(&for_service), peer, secure, request));
    let mut connection = pin!(
        shared
            .http
            .server
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades()
    );
    let result = until_closed(&shared, connection.as_mut(), |c| c.graceful_shutdown()).await;
    if let Some(Err(error)) = result {
        tracing::debug!(%peer, %error, "client connection ended with an error");
    }
}

/// Runs a client connection until it ends, closing it gracefully (after the request in
/// flight) when the proxy shuts down; `None` when a forced shutdown dropped it.
async fn until_closed<C, T>(
    shared: &Shared,
    mut connection: std::pin::Pin<&mut C>,
    graceful_shutdown: impl FnOnce(std::pin::Pin<&mut C>),
) -> Option<T>
where
    C: std::future::Future<Output = T>,
{
    tokio::select! {
        result = connection.as_mut() => Some(result),
        () = shared.graceful.cancelled() => {
            graceful_shutdown(connection.as_mut());
            tokio::select! {
                result = connection.as_mut() => Some(result),
                // `graceful` is a child of `hard`, so this is reached on forced shutdown too.
                () = shared.hard.cancelled() => None,
            }
        }
    }
}

/// Completes the TLS handshake (bounded like a request head), then serves HTTP/2 or HTTP/1.1
/// as ALPN settled.
pub(crate) async fn serve_tls(
    shared: Arc<Shared>,
    acceptor: tokio_rustls::TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
) {
    let tls = match tokio::time::timeout(shared.http.header_timeout, acceptor.accept(stream)).await
    {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            tracing::debug!(%peer, %error, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake took too long");
            return;
        }
    };
    if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
        serve_h2(shared, tls, peer).await;
    } else {
        serve_connection(shared, tls, peer, true).await;
    }
}

async fn serve_h2<I>(shared: Arc<Shared>, stream: I, peer: SocketAddr)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let for_service = Arc::clone(&shared);
    let service = service_fn(move |request| forward(Arc::clone(&for_service), peer, true, request));
    let mut connection = pin!(
        shared
            .http
            .server_h2
            .serve_connection(TokioIo::new(stream), service)
    );
    let result = until_closed(&shared, connection.as_mut(), |c| c.graceful_shutdown()).await;
    if let Some(Err(error)) = result {
        tracing::debug!(%peer, %error, "HTTP/2 client connection ended with an error");
    }
}

/// Forwards one request. Once the proxy retires its connections (a successor process serves
/// the listener), each answer closes its HTTP/1 connection, so a keep-alive client reconnects
/// (to the successor) after a complete response instead of racing a close of an idle one.
async fn forward(
    shared: Arc<Shared>,
    peer: SocketAddr,
    secure: bool,
    request: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let mut response = forward_request(Arc::clone(&shared), peer, secure, request).await?;
    if shared.retiring.load(Ordering::Relaxed)
        && response.status() != StatusCode::SWITCHING_PROTOCOLS
    {
        response
            .headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    Ok(response)
}

/// Forwards one request. Never fails: every problem becomes a short plain-text response.
async fn forward_request(
    shared: Arc<Shared>,
    peer: SocketAddr,
    secure: bool,
    mut request: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    // From arrival: a wait for a backend to join is part of what the client waits.
    let arrived = Instant::now();
    if request.method() == Method::CONNECT {
        // This is a reverse proxy; tunnelling to arbitrary hosts is not its job.
        return Ok(text_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "CONNECT is not supported\n",
        ));
    }
    let Some(lane) = lane_for(&shared, &request) else {
        return Ok(text_response(
            StatusCode::NOT_FOUND,
            "no route for this host and path\n",
        ));
    };
    if let Some(port) = lane.redirects_to_https() {
        return Ok(https_redirect(&request, port));
    }
    match lane.gate_ref().pass().await {
        Ok(()) => {}
        Err(crate::gate::Closed::Maintenance(message)) => {
            let mut body = message.to_string();
            if !body.ends_with('\n') {
                body.push('\n');
            }
            let body = ProxyBody::bytes(bytes::Bytes::from(body));
            return Ok(with_text(StatusCode::SERVICE_UNAVAILABLE, body));
        }
        Err(crate::gate::Closed::StillPaused) => {
            return Ok(text_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "paused; retry shortly\n",
            ));
        }
    }
    let split = lane.active_split();
    let (side, new_client_cookie) = match &split {
        Some(split) => {
            let (side, cookie) = split.decide(request.headers());
            (Some(side), cookie)
        }
        None => (None, None),
    };
    let Some((mut backend, mut guard)) = lane
        .pool()
        .pick_within(None, shared.http.empty_hold, side.as_ref())
        .await
    else {
        lane.totals_ref().no_backend.fetch_add(1, Ordering::Relaxed);
        return Ok(text_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "no backend available\n",
        ));
    };

    let upgrade = headers::upgrade_protocol(request.headers());
    let client_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut request));
    let Some(upstream) = backend.http() else {
        // Backends get a client whenever the proxy runs in HTTP mode; stay safe anyway.
        guard.record_error();
        return Ok(gateway_error(
            &guard,
            arrived,
            StatusCode::BAD_GATEWAY,
            "backend unavailable\n",
        ));
    };
    let mut outgoing = upstream_request(
        request,
        upstream.host(),
        peer,
        upgrade,
        shared.http.trust_forwarded,
        secure,
    );

    // Bounded: with several backends dead at once, a request is not passed around forever.
    let mut other_tries = MAX_OTHER_BACKENDS;
    let (response, lease) = loop {
        let Some(upstream) = backend.http() else {
            guard.record_error();
            return Ok(gateway_error(
                &guard,
                arrived,
                StatusCode::BAD_GATEWAY,
                "backend unavailable\n",
            ));
        };
        // Boxed: hyper keeps room for this whole future in every connection, idle or not, so
        // the bulky part is allocated only while a request is in flight.
        let sent = tokio::time::timeout(
            shared.http.response_timeout,
            Box::pin(upstream.send(outgoing)),
        );
        let result = tokio::select! {
            biased;
            () = guard.tracker().cut_requested() => {
                guard.record_cut();
                return Ok(gateway_error(&guard, arrived, StatusCode::GATEWAY_TIMEOUT, "backend drained before it answered\n"));
            }
            result = sent => result,
        };
        match result {
            Ok(Ok(sent)) => break sent,
            Ok(Err(failure)) => {
                guard.record_error();
                let error = failure.error;
                // Never sent, or idempotent with no body (the backend died or froze before its
                // event took it out of the routes): another live backend takes it, so the
                // client never sees the fault.
                // With no other backend live (the only one died), it waits for the next to
                // join, as a request arriving then would.
                if let Some(unsent) = failure.unsent
                    && other_tries > 0
                    && let Some((next, next_guard)) = lane
                        .pool()
                        .pick_within(Some(backend.addr()), shared.http.empty_hold, None)
                        .await
                {
                    other_tries -= 1;
                    tracing::debug!(backend = %backend.addr(), %error, other = %next.addr(), "backend unreachable; the request goes to another one");
                    outgoing = unsent;
                    (backend, guard) = (next, next_guard);
                    continue;
                }
                let (status, message) = error.response();
                if let Some(held_back) = guard.tracker().log_failure() {
                    tracing::warn!(backend = %backend.addr(), %status, %error, held_back, "backend request failed");
                }
                return Ok(gateway_error(&guard, arrived, status, message));
            }
            Err(_elapsed) => {
                guard.record_error();
                if let Some(held_back) = guard.tracker().log_failure() {
                    tracing::warn!(backend = %backend.addr(), timeout = ?shared.http.response_timeout, held_back, "backend sent no response headers in time");
                }
                return Ok(gateway_error(
                    &guard,
                    arrived,
                    StatusCode::GATEWAY_TIMEOUT,
                    "backend did not answer in time\n",
                ));
            }
        }
    };
    drop(backend);
    guard.record_answer(ResponseClass::of(response.status()));
    guard.record_latency(arrived.elapsed());

    match client_upgrade {
        // The backend connection now belongs to the tunnel; the lease is not given back.
        Some(client_upgrade) if response.status() == StatusCode::SWITCHING_PROTOCOLS => {
            Ok(tunnel(&shared, response, client_upgrade, guard))
        }
        _ => {
            if response.status().is_server_error() {
                guard.record_server_error();
            }
            let (mut parts, body) = response.into_parts();
            headers::strip_hop_by_hop(&mut parts.headers);
            if let Some(cookie) = new_client_cookie {
                parts.headers.append(http::header::SET_COOKIE, cookie);
            }
            Ok(Response::from_parts(
                parts,
                ProxyBody::upstream(body, guard, lease),
            ))
        }
    }
}

/// `308` to the same host and path over HTTPS on `port` (the default port left out).
fn https_redirect(request: &Request<Incoming>, port: u16) -> Response<ProxyBody> {
    let Some(host) = request_host(request) else {
        return text_response(StatusCode::BAD_REQUEST, "a Host header is needed\n");
    };
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let location = match port {
        443 => format!("https://{host}{path}"),
        port => format!("https://{host}:{port}{path}"),
    };
    let mut response = text_response(StatusCode::PERMANENT_REDIRECT, "moved to HTTPS\n");
    if let Ok(location) = HeaderValue::from_str(&location) {
        response
            .headers_mut()
            .insert(http::header::LOCATION, location);
    }
    response
}

/// The host a request is for, without its port: an absolute-form target's, else Host's.
fn request_host(request: &Request<Incoming>) -> Option<String> {
    if let Some(authority) = request.uri().authority() {
        return Some(authority.host().to_owned());
    }
    let value = request.headers().get(HOST)?.to_str().ok()?;
    let authority: http::uri::Authority = value.parse().ok()?;
    Some(authority.host().to_owned())
}

/// The lane a request goes to: the proxy's own without virtual routes; else the best route for
/// its Host and path, or the proxy's own lane when none matches and it has live backends.
/// `None`: nothing takes it (a 404).
fn lane_for(shared: &Shared, request: &Request<Incoming>) -> Option<Lane> {
    if shared.routes.is_empty() {
        return Some(shared.main.clone());
    }
    let host = request_host(request)
        .unwrap_or_default()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    shared
        .routes
        .pick(&host, request.uri().path())
        .or_else(|| (!shared.main.backends().is_empty()).then(|| shared.main.clone()))
}

/// Rewrites a client request for the backend whose address is `backend_host`.
fn upstream_request(
    request: Request<Incoming>,
    backend_host: &HeaderValue,
    peer: SocketAddr,
    upgrade: Option<HeaderValue>,
    trust_forwarded: bool,
    secure: bool,
) -> Request<RequestBody> {
    let (mut parts, body) = request.into_parts();
    // An absolute-form target overrides Host (RFC 9112 §3.2.2).
    let host = match parts.uri.authority() {
        Some(target) => HeaderValue::from_str(target.as_str()).ok(),
        None => parts.headers.get(HOST).cloned(),
    };
    if parts.uri.authority().is_some() || parts.uri.scheme().is_some() {
        // The request line to the backend is written as the URI is: make it origin-form.
        let path = parts.uri.path_and_query().cloned();
        parts.uri = Uri::from(path.unwrap_or_else(|| PathAndQuery::from_static("/")));
    }
    // Speak HTTP/1.1 to backends whatever the client spoke, so backend connections stay
    // keep-alive; hyper answers the client in its own version.
    parts.version = Version::HTTP_11;
    headers::strip_hop_by_hop(&mut parts.headers);
    // hyper already answered `100 Continue` to the client when we started reading the body.
    parts.headers.remove(EXPECT);
    if let Some(protocol) = upgrade {
        headers::set_upgrade(&mut parts.headers, protocol);
    }
    // HTTP/1.1 requires Host; an HTTP/1.0 client may not have sent one.
    let host_to_backend = host.clone().unwrap_or_else(|| backend_host.clone());
    parts.headers.insert(HOST, host_to_backend);
    headers::add_forwarded(&mut parts.headers, peer.ip(), host, trust_forwarded, secure);
    Request::from_parts(parts, RequestBody::Client(body))
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

/// The proxy's own 502/504 for a request `guard`'s backend did not answer.
fn gateway_error(
    guard: &ActiveGuard,
    arrived: Instant,
    status: StatusCode,
    text: &'static str,
) -> Response<ProxyBody> {
    guard.record_answer(ResponseClass::GatewayError);
    guard.record_latency(arrived.elapsed());
    text_response(status, text)
}

fn text_response(status: StatusCode, text: &'static str) -> Response<ProxyBody> {
    with_text(status, ProxyBody::text(text))
}

fn with_text(status: StatusCode, body: ProxyBody) -> Response<ProxyBody> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
