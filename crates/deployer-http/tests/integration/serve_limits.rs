//! What a slow or idle client can hold on a real listener: a connection that sends no
//! request head in time is closed, keep-alive idleness included; past the connection limit,
//! new connections wait until one closes; cleartext HTTP/2 is not spoken.

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use deployer_http::serve::{ServeLimits, serve_with};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::common::within;

async fn start(limits: ServeLimits) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = Router::new().route("/", get(|| async { "ok" }));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve_with(
        listener,
        router,
        async move {
            let _ = stopped.await;
        },
        Duration::from_secs(1),
        limits,
    ));
    (addr, stop)
}

/// Reads until the server closes the connection; what it sent.
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut seen = Vec::new();
    let _ = stream.read_to_end(&mut seen).await;
    String::from_utf8_lossy(&seen).into_owned()
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_trickling_and_idle_connections_are_closed_at_the_header_timeout() {
    let timeout = Duration::from_millis(300);
    let (addr, _stop) = start(ServeLimits {
        header_timeout: timeout,
        max_connections: 16,
    })
    .await;

    let mut silent = TcpStream::connect(addr).await.unwrap();
    within(
        Duration::from_secs(10),
        "the silent connection to close",
        read_to_close(&mut silent),
    )
    .await;

    // A head trickled a byte at a time never completes in time.
    let mut trickle = TcpStream::connect(addr).await.unwrap();
    within(
        Duration::from_secs(10),
        "the trickling connection to close",
        async {
            for byte in GET.iter().take(GET.len() - 1) {
                if trickle.write_all(&[*byte]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        },
    )
    .await;
    let answer = read_to_close(&mut trickle).await;
    assert!(!answer.contains("200 OK"), "{answer}");

    // Keep-alive: answered once, then closed while idle.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(GET).await.unwrap();
    let answer = within(
        Duration::from_secs(10),
        "the idle connection to close",
        read_to_close(&mut idle),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_connection_limit_new_connections_wait_for_a_free_one() {
    let (addr, _stop) = start(ServeLimits {
        header_timeout: Duration::from_secs(60),
        max_connections: 2,
    })
    .await;
    let held: Vec<TcpStream> = vec![
        TcpStream::connect(addr).await.unwrap(),
        TcpStream::connect(addr).await.unwrap(),
    ];
    // The kernel completes the handshake; the server does not take the connection yet.
    let mut third = TcpStream::connect(addr).await.unwrap();
    third.write_all(GET).await.unwrap();
    let mut buf = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_millis(500), third.read(&mut buf)).await;
    assert!(
        early.is_err(),
        "answered while two connections held the limit"
    );
    drop(held);
    let n = within(
        Duration::from_secs(10),
        "the waiting connection's answer",
        third.read(&mut buf),
    )
    .await
    .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200 OK"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleartext_http2_is_not_spoken() {
    let (addr, _stop) = start(ServeLimits::default()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    let answer = within(
        Duration::from_secs(10),
        "the h2c preface to be refused",
        read_to_close(&mut stream),
    )
    .await;
    assert!(!answer.contains("200"), "{answer}");
}
