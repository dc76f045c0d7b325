//! Failing backends: refused, hung, none at all.

use std::net::SocketAddr;
use std::time::Duration;

use deployer_proxy::ProxyConfig;
use http::StatusCode;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_backends_requests_go_to_another_and_alone_it_gives_502() {
    let dead = dead_addr().await;
    let v1 = Backend::http("v1").await;
    // Timeouts far beyond the test deadline: a 502 here can only come from the refusal.
    let config = ProxyConfig::http(localhost())
        .with_backends([dead, v1.addr])
        .with_connect_timeout(Duration::from_secs(600))
        .with_response_timeout(Duration::from_secs(600))
        .with_empty_hold(Duration::ZERO);
    let proxy = start_proxy(config).await;

    // A killed container refuses until the engine's event takes it out of the routes: the
    // requests it refused were never sent, so the live backend answers them.
    for _ in 0..4 {
        let reply = fetch(&proxy, "/").await;
        assert_eq!((reply.status, reply.body.as_str()), (StatusCode::OK, "v1"));
    }
    let stats = proxy.stats();
    let dead_stats = stats
        .iter()
        .find(|s| s.addr == dead)
        .expect("dead backend stats");
    assert_eq!(
        (dead_stats.requests, dead_stats.errors, dead_stats.active),
        (2, 2, 0),
        "the refusals still count against the dead backend"
    );
    assert_eq!(proxy.totals().errors, 2);

    drop(proxy.remove_backend(v1.addr));
    let reply = fetch(&proxy, "/").await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert_eq!(reply.body, "backend refused the connection\n");
    assert_eq!(reply.headers["content-type"], "text/plain; charset=utf-8");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_backend_gives_504_at_the_response_timeout() {
    let v1 = Backend::http("v1").await;
    let config = ProxyConfig::http(localhost())
        .with_backends([v1.addr])
        .with_connect_timeout(Duration::from_millis(200))
        .with_response_timeout(Duration::from_millis(300));
    let proxy = start_proxy(config).await;

    let hung = fetch(&proxy, "/hang").await;
    assert_eq!(hung.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(hung.body, "backend did not answer in time\n");
    let fine = fetch(&proxy, "/").await;
    assert_eq!((fine.status, fine.body.as_str()), (StatusCode::OK, "v1"));
    let stats = proxy.stats();
    assert_eq!(
        (stats[0].requests, stats[0].errors, stats[0].active),
        (2, 1, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_backend_gives_503_once_the_hold_ends_or_at_once_without_one() {
    let proxy = start_proxy(ProxyConfig::http(localhost()).with_empty_hold(Duration::ZERO)).await;
    let reply = fetch(&proxy, "/").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.body, "no backend available\n");
    assert_eq!(proxy.totals().no_backend, 1);
    assert!(proxy.stats().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_config_is_rejected_before_binding() {
    let config = ProxyConfig::http(localhost()).with_connect_timeout(Duration::ZERO);
    let error = deployer_proxy::Proxy::bind(config)
        .await
        .expect_err("zero connect timeout");
    assert!(error.to_string().contains("connect_timeout"), "{error}");
}

/// A listener whose accept queue is full, so the kernel drops further SYNs and connecting
/// to it hangs until the connector's timeout. Dropping it frees everything.
struct Unresponsive {
    addr: SocketAddr,
    _listener: tokio::net::TcpListener,
    _queued: Vec<std::net::TcpStream>,
}

fn unresponsive() -> Unresponsive {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind(localhost()).expect("bind");
    let listener = socket.listen(1).expect("listen");
    let addr = listener.local_addr().expect("addr");
    // The queue holds backlog + 1 connections on Linux; never accept them.
    let queued = (0..2)
        .map(|_| std::net::TcpStream::connect(addr).expect("fill the accept queue"))
        .collect();
    Unresponsive {
        addr,
        _listener: listener,
        _queued: queued,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_does_not_accept_gives_504_at_the_connect_timeout() {
    let silent = unresponsive();
    let config = ProxyConfig::http(localhost())
        .with_backends([silent.addr])
        .with_connect_timeout(Duration::from_millis(200))
        .with_response_timeout(Duration::from_secs(600));
    let proxy = start_proxy(config).await;
    let reply = fetch(&proxy, "/").await;
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(reply.body, "backend connect timed out\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_a_live_backend_waits_for_the_next_one() {
    // A lone container restarting: requests arriving meanwhile are held, not refused.
    let proxy =
        start_proxy(ProxyConfig::http(localhost()).with_empty_hold(Duration::from_secs(30))).await;
    let waiting = {
        let proxy = proxy.clone();
        tokio::spawn(async move { fetch(&proxy, "/").await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "answered while no backend was live");
    let v1 = Backend::http("v1").await;
    let _ = proxy.add_backend(v1.addr);
    let reply = waiting.await.unwrap();
    assert_eq!((reply.status, reply.body.as_str()), (StatusCode::OK, "v1"));

    let short =
        start_proxy(ProxyConfig::http(localhost()).with_empty_hold(Duration::from_millis(100)))
            .await;
    let reply = fetch(&short, "/").await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "503 once the hold ends"
    );
}
