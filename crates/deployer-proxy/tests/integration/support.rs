//! Test fixtures: tiny backends, clients, a switch history, and deadline helpers.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Channel, Empty, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use deployer_proxy::{Proxy, ProxyConfig};

/// Upper bound for anything that could hang; far above what a healthy run needs.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// Awaits `future`, failing the test with `what` if it takes longer than [`DEADLINE`].
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(DEADLINE, future).await {
        Ok(value) => value,
        Err(_) => panic!("deadlocked or hung for {DEADLINE:?}: {what}"),
    }
}

/// Polls `condition` until it holds, failing the test with `what` after [`DEADLINE`].
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    within(what, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

pub async fn start_proxy(config: ProxyConfig) -> Proxy {
    within("binding the proxy", Proxy::bind(config))
        .await
        .expect("proxy binds")
}

pub async fn http_proxy(backends: &[&Backend]) -> Proxy {
    start_proxy(ProxyConfig::http(localhost()).with_backends(backends.iter().map(|b| b.addr))).await
}

pub async fn tcp_proxy(backends: &[&Backend]) -> Proxy {
    start_proxy(ProxyConfig::tcp(localhost()).with_backends(backends.iter().map(|b| b.addr))).await
}

/// Sends a request `backend` never answers and waits until the proxy counts it as active.
pub async fn stuck_request(proxy: &Proxy, backend: &Backend) -> JoinHandle<Result<Reply, Error>> {
    let request = tokio::spawn(one_shot(proxy.local_addr(), get("/hang")));
    eventually("the stuck request reaching its backend", || {
        active_on(proxy, backend.addr) == 1
    })
    .await;
    request
}

pub fn localhost() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// An address nothing listens on (bound once, then released).
pub async fn dead_addr() -> SocketAddr {
    let listener = TcpListener::bind(localhost()).await.expect("bind");
    listener.local_addr().expect("addr")
}

/// Active count of the backend at `addr` as the proxy sees it (0 if unknown).
pub fn active_on(proxy: &Proxy, addr: SocketAddr) -> u64 {
    proxy
        .stats()
        .iter()
        .filter(|s| s.addr == addr)
        .map(|s| s.active)
        .sum()
}

// ---------------------------------------------------------------------------------------
// Backends

type ServerBody = BoxBody<Bytes, hyper::Error>;

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    open_connections: AtomicU64,
}

/// A backend server on 127.0.0.1:0 whose every response names it (`x-backend` header, and
/// the body of `/`). Paths: `/` name; `/slow?ms=N`; `/status?code=N` answers N; `/hang` never answers; `/headers`
/// lists request headers; `/echo` streams the request body back; `/stall` sends headers
/// and one chunk, then nothing; `/hop` answers with hop-by-hop headers; `/ws` upgrades
/// and then greets with its name and echoes. `mode_tcp` servers greet and echo instead.
pub struct Backend {
    pub addr: SocketAddr,
    pub name: &'static str,
    counters: Arc<Counters>,
    task: JoinHandle<()>,
}

impl Backend {
    pub async fn http(name: &'static str) -> Backend {
        Self::start(name, false).await
    }

    /// A raw TCP server: writes `name\n`, then echoes everything.
    pub async fn tcp(name: &'static str) -> Backend {
        Self::start(name, true).await
    }

    async fn start(name: &'static str, tcp: bool) -> Backend {
        let listener = TcpListener::bind(localhost()).await.expect("bind backend");
        let addr = listener.local_addr().expect("backend addr");
        let counters = Arc::new(Counters::default());
        let for_task = Arc::clone(&counters);
        let task = tokio::spawn(async move {
            // Owned by this task, so aborting it closes every connection too.
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                while connections.try_join_next().is_some() {}
                let counters = Arc::clone(&for_task);
                counters.open_connections.fetch_add(1, Ordering::SeqCst);
                connections.spawn(async move {
                    if tcp {
                        greet_and_echo(name, stream).await;
                    } else {
                        serve_http(name, Arc::clone(&counters), stream).await;
                    }
                    counters.open_connections.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Backend {
            addr,
            name,
            counters,
            task,
        }
    }

    pub fn requests(&self) -> u64 {
        self.counters.requests.load(Ordering::SeqCst)
    }

    pub fn open_connections(&self) -> u64 {
        self.counters.open_connections.load(Ordering::SeqCst)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn greet_and_echo(name: &str, mut stream: TcpStream) {
    if stream
        .write_all(format!("{name}\n").as_bytes())
        .await
        .is_err()
    {
        return;
    }
    let (mut read, mut write) = stream.split();
    let _ = tokio::io::copy(&mut read, &mut write).await;
}

async fn serve_http(name: &'static str, counters: Arc<Counters>, stream: TcpStream) {
    let service = service_fn(move |request| {
        counters.requests.fetch_add(1, Ordering::SeqCst);
        respond(name, request)
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades()
        .await;
}

async fn respond(
    name: &'static str,
    mut request: Request<Incoming>,
) -> Result<Response<ServerBody>, Infallible> {
    let mut response = match request.uri().path() {
        "/slow" => {
            let ms = request
                .uri()
                .query()
                .and_then(|q| q.strip_prefix("ms="))
                .and_then(|ms| ms.parse().ok())
                .unwrap_or(1000);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Response::new(full(name))
        }
        "/hang" => std::future::pending().await,
        "/status" => {
            let mut response = Response::new(full(name));
            *response.status_mut() = request
                .uri()
                .query()
                .and_then(|q| q.strip_prefix("code="))
                .and_then(|code| StatusCode::from_bytes(code.as_bytes()).ok())
                .unwrap_or(StatusCode::OK);
            response
        }
        "/headers" => {
            let mut lines: Vec<String> = request
                .headers()
                .iter()
                .map(|(k, v)| format!("{k}: {}\n", v.to_str().unwrap_or("<binary>")))
                .collect();
            lines.sort();
            Response::new(full(lines.concat()))
        }
        "/echo" => {
            let te = request.headers().get("transfer-encoding").cloned();
            let mut response = Response::new(request.into_body().boxed());
            if let Some(te) = te {
                response
                    .headers_mut()
                    .insert("x-request-transfer-encoding", te);
            }
            response
        }
        "/stall" => {
            let (mut sender, body) = Channel::<Bytes, hyper::Error>::new(1);
            tokio::spawn(async move {
                let _ = sender.send_data(Bytes::from_static(b"first chunk\n")).await;
                // Keep the body open forever without sending more.
                std::future::pending::<()>().await;
                drop(sender);
            });
            Response::new(body.boxed())
        }
        "/hop" => {
            let mut response = Response::new(full(name));
            let headers = response.headers_mut();
            headers.insert("connection", HeaderValue::from_static("x-backend-hop"));
            headers.insert("x-backend-hop", HeaderValue::from_static("secret"));
            headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
            headers.insert("proxy-authenticate", HeaderValue::from_static("Basic"));
            headers.insert("x-end-to-end", HeaderValue::from_static("kept"));
            response
        }
        "/ws" => {
            let protocol = request.headers().get("upgrade").cloned();
            let upgrade = hyper::upgrade::on(&mut request);
            tokio::spawn(async move {
                if let Ok(upgraded) = upgrade.await {
                    let mut io = TokioIo::new(upgraded);
                    if io.write_all(format!("{name}\n").as_bytes()).await.is_ok() {
                        let mut buf = [0; 1024];
                        while let Ok(n @ 1..) = io.read(&mut buf).await {
                            if io.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            });
            let mut response = Response::new(Empty::new().map_err(|e| match e {}).boxed());
            *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            response
                .headers_mut()
                .insert("connection", HeaderValue::from_static("upgrade"));
            if let Some(protocol) = protocol {
                response.headers_mut().insert("upgrade", protocol);
            }
            response
        }
        _ => Response::new(full(name)),
    };
    response
        .headers_mut()
        .insert("x-backend", HeaderValue::from_static(name));
    Ok(response)
}

fn full(text: impl Into<Bytes>) -> ServerBody {
    Full::new(text.into()).map_err(|e| match e {}).boxed()
}

// ---------------------------------------------------------------------------------------
// Clients

pub type ClientBody = BoxBody<Bytes, Infallible>;

/// A fully read response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn backend(&self) -> Option<&str> {
        self.headers.get("x-backend").and_then(|v| v.to_str().ok())
    }
}

pub fn get(path: &str) -> Request<ClientBody> {
    request(path, Empty::new().boxed())
}

pub fn request(path: &str, body: ClientBody) -> Request<ClientBody> {
    let mut request = Request::new(body);
    *request.uri_mut() = path.parse().expect("path");
    request
        .headers_mut()
        .insert("host", HeaderValue::from_static("app.test"));
    request
}

/// One client connection to the proxy, reused for every request (keep-alive).
pub struct Conn {
    sender: SendRequest<ClientBody>,
}

impl Conn {
    pub async fn open(addr: SocketAddr) -> Result<Conn, Error> {
        let stream = TcpStream::connect(addr).await?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Conn { sender })
    }

    /// Sends and returns the response with its body still streaming.
    pub async fn start(
        &mut self,
        request: Request<ClientBody>,
    ) -> Result<Response<Incoming>, Error> {
        self.sender.ready().await?;
        Ok(self.sender.send_request(request).await?)
    }

    pub async fn send(&mut self, request: Request<ClientBody>) -> Result<Reply, Error> {
        let response = self.start(request).await?;
        read_reply(response).await
    }
}

pub async fn read_reply(response: Response<Incoming>) -> Result<Reply, Error> {
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// GETs `path` through the proxy on a fresh connection; the test fails if that errs or hangs.
pub async fn fetch(proxy: &Proxy, path: &str) -> Reply {
    within(
        &format!("GET {path} through the proxy"),
        one_shot(proxy.local_addr(), get(path)),
    )
    .await
    .unwrap_or_else(|error| panic!("GET {path} through the proxy failed: {error}"))
}

/// Sends one request on a fresh connection.
pub async fn one_shot(addr: SocketAddr, request: Request<ClientBody>) -> Result<Reply, Error> {
    Conn::open(addr).await?.send(request).await
}

// ---------------------------------------------------------------------------------------
// Switch history and client loops

/// Which backends were live, epoch by epoch. A change goes through a transition epoch in
/// which both the old and the new set count as live, so that a request picked while the
/// proxy was switching is judged fairly whichever side of the switch it fell on.
#[derive(Default)]
pub struct History {
    epochs: Mutex<Vec<BTreeSet<&'static str>>>,
    current: AtomicUsize,
}

impl History {
    pub fn new(initial: &[&'static str]) -> Arc<History> {
        Arc::new(History {
            epochs: Mutex::new(vec![initial.iter().copied().collect()]),
            current: AtomicUsize::new(0),
        })
    }

    pub fn current(&self) -> usize {
        self.current.load(Ordering::SeqCst)
    }

    /// Runs `change` (which must leave `live` as the proxy's live set) inside a
    /// transition epoch.
    pub fn record<R>(&self, live: &[&'static str], change: impl FnOnce() -> R) -> R {
        let new: BTreeSet<_> = live.iter().copied().collect();
        self.push(|last| last.union(&new).copied().collect());
        let result = change();
        self.push(|_| new.clone());
        result
    }

    fn push(&self, next: impl FnOnce(&BTreeSet<&'static str>) -> BTreeSet<&'static str>) {
        let mut epochs = self.epochs.lock().expect("history lock");
        let set = next(epochs.last().expect("at least one epoch"));
        epochs.push(set);
        // Published after the epoch exists, so readers never see an index past the end.
        self.current.store(epochs.len() - 1, Ordering::SeqCst);
    }

    /// Every backend live at some point in epochs `from..=to`.
    pub fn live_between(&self, from: usize, to: usize) -> BTreeSet<&'static str> {
        let epochs = self.epochs.lock().expect("history lock");
        epochs[from..=to].iter().flatten().copied().collect()
    }

    pub fn switches(&self) -> usize {
        (self.epochs.lock().expect("history lock").len() - 1) / 2
    }
}

/// One answered request: the epochs around it and the backend that answered.
#[derive(Debug)]
pub struct Observation {
    pub before: usize,
    pub after: usize,
    pub backend: String,
}

/// Outcome of a client loop.
#[derive(Debug, Default)]
pub struct LoopResult {
    pub observations: Vec<Observation>,
    pub failures: Vec<String>,
}

/// Two HTTP client loops against the proxy: one keep-alive connection for every request,
/// and one new connection per request. Both record which backend answered each request.
pub struct Traffic {
    stop: Arc<AtomicBool>,
    progress: Vec<Arc<AtomicU64>>,
    loops: Vec<JoinHandle<LoopResult>>,
}

impl Traffic {
    pub fn start(proxy: SocketAddr, history: &Arc<History>) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let mut progress = Vec::new();
        let mut loops = Vec::new();
        for keep_alive in [true, false] {
            let done = Arc::new(AtomicU64::new(0));
            progress.push(Arc::clone(&done));
            loops.push(tokio::spawn(client_loop(
                proxy,
                keep_alive,
                Arc::clone(history),
                Arc::clone(&stop),
                done,
            )));
        }
        Traffic {
            stop,
            progress,
            loops,
        }
    }

    /// Waits until every loop has completed a request that started after this call
    /// (two completions: the first may have been in flight already).
    pub async fn advance(&self) {
        let marks: Vec<u64> = self
            .progress
            .iter()
            .map(|p| p.load(Ordering::SeqCst))
            .collect();
        eventually("client loops making progress", || {
            self.progress
                .iter()
                .zip(&marks)
                .all(|(p, mark)| p.load(Ordering::SeqCst) > *mark + 1)
        })
        .await;
    }

    pub async fn stop(self) -> LoopResult {
        self.stop.store(true, Ordering::SeqCst);
        let mut all = LoopResult::default();
        for handle in self.loops {
            let result = within("client loop stopping", handle)
                .await
                .expect("client loop task");
            all.observations.extend(result.observations);
            all.failures.extend(result.failures);
        }
        all
    }
}

async fn client_loop(
    proxy: SocketAddr,
    keep_alive: bool,
    history: Arc<History>,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
) -> LoopResult {
    let mut result = LoopResult::default();
    let mut conn: Option<Conn> = None;
    while !stop.load(Ordering::SeqCst) {
        let before = history.current();
        let reply = if keep_alive {
            match conn.as_mut() {
                Some(conn) => conn.send(get("/")).await,
                None => match Conn::open(proxy).await {
                    Ok(opened) => conn.insert(opened).send(get("/")).await,
                    Err(e) => Err(e),
                },
            }
        } else {
            one_shot(proxy, get("/")).await
        };
        let after = history.current();
        match reply {
            Ok(reply) if reply.status == StatusCode::OK => result.observations.push(Observation {
                before,
                after,
                backend: reply.body,
            }),
            Ok(reply) => result
                .failures
                .push(format!("status {} body {:?}", reply.status, reply.body)),
            Err(error) => {
                result.failures.push(format!("request failed: {error}"));
                conn = None;
            }
        }
        done.fetch_add(1, Ordering::SeqCst);
    }
    result
}

/// Asserts no request failed and each was answered by a backend live while it was in flight.
pub fn assert_clean(result: &LoopResult, history: &History) {
    assert!(
        result.failures.is_empty(),
        "{} failed requests, first: {:?}",
        result.failures.len(),
        result.failures.first()
    );
    for observation in &result.observations {
        let live = history.live_between(observation.before, observation.after);
        assert!(
            live.contains(observation.backend.as_str()),
            "{observation:?} answered by a backend not live then ({live:?})"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Raw TCP helpers (upgrades and TCP mode)

/// Reads one `\n`-terminated line, byte by byte (fine for tests).
pub async fn read_line(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        if stream.read(&mut byte).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if byte[0] == b'\n' {
            return Ok(String::from_utf8_lossy(&line).into_owned());
        }
        line.push(byte[0]);
    }
}

/// Writes `text` and expects it echoed back.
pub async fn echo_round_trip(stream: &mut TcpStream, text: &str) -> std::io::Result<()> {
    stream.write_all(format!("{text}\n").as_bytes()).await?;
    let echoed = read_line(stream).await?;
    assert_eq!(echoed, text);
    Ok(())
}

/// True once the peer has closed (EOF or reset) the connection.
pub async fn closed_by_peer(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(stream.read(&mut buf).await, Ok(0) | Err(_))
}
