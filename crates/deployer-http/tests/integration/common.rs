//! Shared helpers: fixtures, requests, a driver on fakes, a scriptable fake HTTP receiver.

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use deployer_core::driver::{Driver, DriverConfig, DriverHandle, Ports};
use deployer_core::memory::{MemoryCoordinator, MemoryJournal};
use deployer_core::ports::Notifier;
use deployer_core::testing::{FakeImageSource, FakeSwitcher, RecordingNotifier};
use deployer_core::{ImageRef, ServiceSpec};
use serde_json::Value;
use tokio::time::Instant;
use tower::ServiceExt;

/// Bearer token of the registry, Harbor and generic endpoints in tests.
pub const TOKEN: &str = "registry-token-0123456789";
/// Path token of Docker Hub and Quay in tests.
pub const PATH_TOKEN: &str = "path-token-0123456789abcdef";
/// GitHub's documented test secret.
pub const HMAC_SECRET: &str = "It's a Secret to Everybody";
/// The digest in most fixtures.
pub const DIGEST: &str = "sha256:74f9ca9aa780491d0401ce76b5c1c41b3109741abdbf06ccc096ebd5fbd5fa0f";

/// The bytes of `tests/fixtures/<name>`.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {path}: {e}"))
}

pub fn image(text: &str) -> ImageRef {
    text.parse().unwrap()
}

/// A POST with a body and headers.
pub fn post(uri: &str, headers: &[(&str, &str)], body: impl Into<Body>) -> Request<Body> {
    let mut builder = Request::post(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(body.into()).unwrap()
}

/// Sends `request` through `router`; returns status, headers and the JSON body (or a string).
pub async fn send(router: &Router, request: Request<Body>) -> (StatusCode, HeaderMap, Value) {
    let response = tokio::time::timeout(Duration::from_secs(10), router.clone().oneshot(request))
        .await
        .expect("the router did not answer within 10 s")
        .expect("routers are infallible");
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 4 << 20).await.unwrap();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (parts.status, parts.headers, value)
}

/// Polls `check` until it holds, failing with `what` after `limit`.
pub async fn eventually(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Awaits `future`, failing with a message naming what hung.
pub async fn within<T>(limit: Duration, what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, future)
        .await
        .unwrap_or_else(|_| panic!("deadlock? {what} did not finish within {limit:?}"))
}

/// A driver on fakes, running until `stop` is dropped or fired.
pub struct Rig {
    pub handle: DriverHandle,
    pub images: Arc<FakeImageSource>,
    pub coordinator: Arc<MemoryCoordinator>,
    pub reports: Arc<RecordingNotifier>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Rig {
    /// Services `(name, image)`, extra notifiers, extra triggers.
    pub async fn start(
        services: &[(&str, &str)],
        notifiers: Vec<Arc<dyn Notifier>>,
        triggers: Vec<Arc<dyn deployer_core::ports::Trigger>>,
    ) -> Self {
        let images = Arc::new(FakeImageSource::new());
        let switcher = Arc::new(FakeSwitcher::new());
        let coordinator = Arc::new(MemoryCoordinator::new("host-a"));
        let reports = Arc::new(RecordingNotifier::new());
        let mut all: Vec<Arc<dyn Notifier>> = vec![reports.clone()];
        all.extend(notifiers);
        let ports = Ports {
            images: images.clone(),
            switcher,
            coordinator: coordinator.clone(),
            journal: Arc::new(MemoryJournal::new()),
            notifiers: all,
        };
        let specs = services
            .iter()
            .map(|(name, img)| ServiceSpec::builder(name, image(img)).build().unwrap())
            .collect();
        let mut driver = Driver::new(DriverConfig::new("host-a"), ports, specs).unwrap();
        for trigger in triggers {
            driver = driver.with_trigger(trigger);
        }
        let handle = driver.handle();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(driver.run(async move {
            let _ = stopped.await;
        }));
        let rig = Self {
            handle,
            images,
            coordinator,
            reports,
            stop: Some(stop),
            task: Some(task),
        };
        let handle = rig.handle.clone();
        eventually("services to recover", Duration::from_secs(10), move || {
            handle.is_ready()
        })
        .await;
        rig
    }

    /// Stops the driver and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            within(Duration::from_secs(20), "driver shutdown", task)
                .await
                .unwrap();
        }
    }
}

/// One request a [`FakeReceiver`] saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A scripted answer: status, headers, body.
pub type Reply<'a> = (u16, Vec<(&'static str, String)>, &'a str);

#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

#[derive(Debug, Default)]
struct Script {
    answers: VecDeque<Answer>,
    seen: Vec<Seen>,
}

/// A local HTTP server answering POSTs from a script (then 200 `ok`), recording each request.
pub struct FakeReceiver {
    pub addr: SocketAddr,
    script: Arc<Mutex<Script>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeReceiver {
    pub async fn start(answers: Vec<Reply<'_>>) -> Self {
        let script = Arc::new(Mutex::new(Script {
            answers: answers
                .into_iter()
                .map(|(status, headers, body)| Answer {
                    status,
                    headers,
                    body: body.to_owned(),
                })
                .collect(),
            seen: Vec::new(),
        }));
        async fn answer(
            State(script): State<Arc<Mutex<Script>>>,
            headers: HeaderMap,
            body: Bytes,
        ) -> Response {
            let mut script = script.lock().unwrap();
            script.seen.push(Seen {
                at: Instant::now(),
                headers,
                body,
            });
            let Answer {
                status,
                headers,
                body,
            } = script.answers.pop_front().unwrap_or(Answer {
                status: 200,
                headers: Vec::new(),
                body: "ok".to_owned(),
            });
            let mut response = (StatusCode::from_u16(status).unwrap(), body).into_response();
            for (name, value) in headers {
                response.headers_mut().insert(name, value.parse().unwrap());
            }
            response
        }
        let router = Router::new()
            .fallback(axum::routing::post(answer))
            .with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Self { addr, script, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.script.lock().unwrap().seen.clone()
    }
}

impl Drop for FakeReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}
