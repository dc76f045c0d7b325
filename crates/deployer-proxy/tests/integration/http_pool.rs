//! Pooled keep-alive connections to backends: reuse, expiry, staleness, drains.

use std::time::Duration;

use deployer_proxy::ProxyConfig;
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_connections_to_a_drained_backend_are_closed() {
    let v1 = Backend::http("v1").await;
    let v2 = Backend::http("v2").await;
    let proxy = http_proxy(&[&v1]).await;
    let mut conn = Conn::open(proxy.local_addr()).await.expect("connect");
    for _ in 0..5 {
        let reply = within("request", conn.send(get("/"))).await.expect("reply");
        assert_eq!(reply.body, "v1");
    }
    // Sequential requests reuse one pooled backend connection.
    assert_eq!(v1.open_connections(), 1);

    let report = within(
        "draining v1",
        proxy
            .replace_backends(vec![v2.addr])
            .wait(Duration::from_secs(5)),
    )
    .await;
    assert!(report.drained_cleanly);
    eventually("the idle pooled connection to v1 closing", || {
        v1.open_connections() == 0
    })
    .await;
    let reply = within("request after the drain", conn.send(get("/")))
        .await
        .expect("reply");
    assert_eq!(reply.body, "v2");
    assert_eq!(v1.requests(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_pooled_connections_expire() {
    let v1 = Backend::http("v1").await;
    let mut config = ProxyConfig::http(localhost()).with_backends([v1.addr]);
    config.pool_idle_timeout = Duration::from_millis(200);
    let proxy = start_proxy(config).await;
    assert_eq!(fetch(&proxy, "/").await.body, "v1");
    assert_eq!(v1.open_connections(), 1);
    eventually("the idle pooled connection expiring", || {
        v1.open_connections() == 0
    })
    .await;
    assert_eq!(fetch(&proxy, "/").await.body, "v1");
}

/// A keep-alive backend that closes each connection right after its first response,
/// without saying so: the proxy's pooled connection goes stale under it.
async fn closes_after_each_response() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind(localhost()).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
                // Dropping the stream closes it, as a backend's idle timeout would.
            });
        }
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_pooled_connection_is_never_a_client_error() {
    let (flaky, server) = closes_after_each_response().await;
    let proxy = start_proxy(ProxyConfig::http(localhost()).with_backends([flaky])).await;
    let mut conn = Conn::open(proxy.local_addr()).await.expect("connect");
    // Many rounds: whether a round catches the connection closing is a race.
    for i in 0..200 {
        let reply = within("request to a backend that closes", conn.send(get("/")))
            .await
            .expect("reply");
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (StatusCode::OK, "ok"),
            "request {i}"
        );
    }
    assert_eq!(proxy.totals().errors, 0);
    server.abort();
}
