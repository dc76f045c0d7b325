//! Shutting the proxy down: graceful first, then bounded.

use std::time::Duration;

use http::StatusCode;
use tokio::net::TcpStream;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_idle_connections_and_releases_the_port() {
    let v1 = Backend::http("v1").await;
    let proxy = http_proxy(&[&v1]).await;
    let addr = proxy.local_addr();
    let mut idle = Conn::open(addr).await.expect("connect");
    within("request", idle.send(get("/"))).await.expect("reply");

    let report = within(
        "graceful shutdown",
        proxy.shutdown(Duration::from_secs(600)),
    )
    .await;
    assert!(report.drained_cleanly);
    assert_eq!(report.cut, 0);
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "port still accepting"
    );
    assert!(
        idle.send(get("/")).await.is_err(),
        "idle keep-alive connection still open"
    );
    eventually("pooled backend connections closing", || {
        v1.open_connections() == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_cuts_what_outlives_the_grace_period() {
    let v1 = Backend::http("v1").await;
    let proxy = http_proxy(&[&v1]).await;
    let stuck = stuck_request(&proxy, &v1).await;

    let report = within(
        "bounded shutdown",
        proxy.shutdown(Duration::from_millis(300)),
    )
    .await;
    assert!(!report.drained_cleanly);
    assert_eq!(report.cut, 1);
    let reply = within("the cut request", stuck)
        .await
        .expect("task")
        .expect("reply");
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
}
