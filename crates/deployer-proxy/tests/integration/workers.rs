//! Serving on dedicated worker threads (`ProxyConfig::workers`).

use std::time::Duration;

use deployer_proxy::ProxyConfig;
use http::StatusCode;
use tokio::net::TcpStream;

use crate::support::*;

fn on_workers(mut config: ProxyConfig) -> ProxyConfig {
    config.workers = 2;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_share_one_port_and_all_serve() {
    let v1 = Backend::http("v1").await;
    let proxy = start_proxy(on_workers(
        ProxyConfig::http(localhost()).with_backends([v1.addr]),
    ))
    .await;
    for _ in 0..40 {
        assert_eq!(fetch(&proxy, "/").await.body, "v1");
    }
    assert_eq!(proxy.totals().connections_accepted, 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_request_on_a_worker_is_cut_at_the_drain_deadline() {
    let v1 = Backend::http("v1").await;
    let proxy = start_proxy(on_workers(
        ProxyConfig::http(localhost()).with_backends([v1.addr]),
    ))
    .await;
    let stuck = stuck_request(&proxy, &v1).await;
    let report = within(
        "draining v1",
        proxy
            .remove_backend(v1.addr)
            .wait(Duration::from_millis(300)),
    )
    .await;
    assert_eq!((report.drained_cleanly, report.cut), (false, 1));
    let reply = within("the cut request", stuck)
        .await
        .expect("task")
        .expect("reply");
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_connections_on_workers_are_cut_at_shutdown_and_the_port_released() {
    let v1 = Backend::tcp("v1").await;
    let proxy = start_proxy(on_workers(
        ProxyConfig::tcp(localhost()).with_backends([v1.addr]),
    ))
    .await;
    let addr = proxy.local_addr();
    let mut client = TcpStream::connect(addr).await.expect("connect");
    assert_eq!(
        within("greeting", read_line(&mut client))
            .await
            .expect("line"),
        "v1"
    );

    let report = within("shutdown", proxy.shutdown(Duration::from_millis(300))).await;
    assert_eq!((report.drained_cleanly, report.cut), (false, 1));
    assert!(within("the cut connection closing", closed_by_peer(&mut client)).await);
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "port still accepting"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_workers_is_a_config_error() {
    let mut config = ProxyConfig::http(localhost());
    config.workers = 100_000;
    let error = deployer_proxy::Proxy::bind(config)
        .await
        .expect_err("absurd worker count");
    assert!(error.to_string().contains("workers"), "{error}");
}
