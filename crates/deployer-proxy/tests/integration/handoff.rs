//! Handing the listening sockets to a successor proxy (an upgrade of the proxy itself):
//! the successor serves new connections at once, the old proxy finishes what it has, and
//! no connection is refused or lost on the way. The successor runs in this process, on
//! descriptors duplicated as the other process would receive them.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use deployer_proxy::{Proxy, ProxyConfig, ProxyError};
use http::StatusCode;

use crate::support::*;

fn config(backend: &Backend, workers: usize) -> ProxyConfig {
    let mut config = ProxyConfig::http(localhost()).with_backends([backend.addr]);
    config.workers = workers;
    config
}

/// What the new process does with the descriptors it is handed.
fn adopt(fds: Vec<OwnedFd>) -> Vec<std::net::TcpListener> {
    fds.into_iter().map(std::net::TcpListener::from).collect()
}

/// Starts a proxy with `config` on the listening sockets of `old`.
async fn successor(old: &Proxy, config: ProxyConfig) -> Proxy {
    let listeners = adopt(old.listener_fds().expect("listener fds"));
    within(
        "binding the successor",
        Proxy::bind_inherited(config, listeners),
    )
    .await
    .expect("successor binds")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_connections_go_to_the_successor_while_open_ones_finish_on_the_old_proxy() {
    let (x, y) = (Backend::http("x").await, Backend::http("y").await);
    let old = start_proxy(config(&x, 0)).await;
    let addr = old.local_addr();
    let mut kept = Conn::open(addr).await.expect("connect");
    assert_eq!(
        within("first request", kept.send(get("/")))
            .await
            .expect("reply")
            .body,
        "x"
    );
    let slow = tokio::spawn(one_shot(addr, get("/slow?ms=300")));
    eventually("the slow request reaching x", || {
        active_on(&old, x.addr) == 1
    })
    .await;

    let new = successor(&old, config(&y, 0)).await;
    assert_eq!(new.local_addr(), addr);
    old.stop_accepting();
    old.stop_accepting(); // idempotent

    for _ in 0..10 {
        assert_eq!(fetch(&new, "/").await.body, "y");
    }
    let again = within("keep-alive request on the old proxy", kept.send(get("/"))).await;
    assert_eq!(again.expect("reply").body, "x");
    let slow = within("the slow request", slow).await.expect("task");
    assert_eq!(slow.expect("reply").body, "x");
    assert_eq!(
        old.totals().connections_accepted,
        2,
        "the old proxy accepted more"
    );

    let report = within("old proxy shutdown", old.shutdown(Duration::from_secs(5))).await;
    assert!(report.drained_cleanly);
    assert!(
        kept.send(get("/")).await.is_err(),
        "old connection still open"
    );
    // The successor's descriptors keep the port open after the old proxy released its own.
    assert_eq!(fetch(&new, "/").await.body, "y");
}

#[tokio::test]
async fn connections_queued_once_the_old_proxy_stopped_wait_for_the_successor() {
    let (x, y) = (Backend::http("x").await, Backend::http("y").await);
    let old = start_proxy(config(&x, 0)).await;
    old.stop_accepting();
    let queued = tokio::spawn(one_shot(old.local_addr(), get("/")));
    // Long enough for the old accept loop to end and drop its listener, on this runtime's
    // only thread, and for the request to be answered if anything accepted it.
    tokio::time::sleep(Duration::from_millis(50)).await;
    if queued.is_finished() {
        panic!(
            "answered or refused before the successor: {:?}",
            queued.await
        );
    }
    assert_eq!(old.totals().connections_accepted, 0);

    // Descriptors taken after the accept loop ended still name the open socket.
    let new = successor(&old, config(&y, 0)).await;
    let reply = within("the queued request", queued).await.expect("task");
    assert_eq!(reply.expect("reply").body, "y");
    assert_eq!(new.totals().connections_accepted, 1);
}

/// Handover in the middle of 300 requests, each on a new connection from one of three
/// clients: every request must be answered, first by x and in the end by y.
async fn handover_under_load(old_workers: usize, new_workers: usize) {
    const CLIENTS: usize = 3;
    const PER_CLIENT: usize = 100;
    let (x, y) = (Backend::http("x").await, Backend::http("y").await);
    let old = start_proxy(config(&x, old_workers)).await;
    let addr = old.local_addr();
    let done = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let done = Arc::clone(&done);
            tokio::spawn(async move {
                let mut answers = Vec::with_capacity(PER_CLIENT);
                for _ in 0..PER_CLIENT {
                    answers.push(match one_shot(addr, get("/")).await {
                        Ok(reply) if reply.status == StatusCode::OK => Ok(reply.body),
                        Ok(reply) => Err(format!("status {}", reply.status)),
                        Err(error) => Err(error.to_string()),
                    });
                    done.fetch_add(1, Ordering::SeqCst);
                }
                answers
            })
        })
        .collect();
    let total = CLIENTS * PER_CLIENT;
    eventually("a third of the requests", || {
        done.load(Ordering::SeqCst) >= total / 3
    })
    .await;
    let new = successor(&old, config(&y, new_workers)).await;
    old.stop_accepting();
    eventually("two thirds of the requests", || {
        done.load(Ordering::SeqCst) >= 2 * total / 3
    })
    .await;
    let accepted_by_old = old.totals().connections_accepted;
    let report = within("old proxy shutdown", old.shutdown(Duration::from_secs(5))).await;
    assert!(report.drained_cleanly);

    for client in clients {
        let answers = within("a client finishing", client)
            .await
            .expect("client task");
        let failures: Vec<_> = answers.iter().filter_map(|a| a.as_ref().err()).collect();
        assert!(
            failures.is_empty(),
            "{} failed, first: {:?}",
            failures.len(),
            failures[0]
        );
        assert_eq!(answers.first().and_then(|a| a.as_deref().ok()), Some("x"));
        assert_eq!(answers.last().and_then(|a| a.as_deref().ok()), Some("y"));
    }
    let accepted = accepted_by_old + new.totals().connections_accepted;
    assert_eq!(
        accepted, total as u64,
        "connections accepted by either proxy"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_connection_is_lost_while_the_listener_is_handed_over() {
    handover_under_load(0, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_hand_over_every_listener_without_losing_a_connection() {
    handover_under_load(2, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successor_with_more_workers_binds_the_missing_sockets() {
    let (x, y) = (Backend::http("x").await, Backend::http("y").await);
    let old = start_proxy(config(&x, 1)).await;
    let new = successor(&old, config(&y, 3)).await;
    old.stop_accepting();
    assert_eq!(new.listener_fds().expect("fds").len(), 3);
    for _ in 0..30 {
        assert_eq!(fetch(&new, "/").await.body, "y");
    }
}

#[tokio::test]
async fn inheriting_no_listener_is_an_error() {
    let x = Backend::http("x").await;
    let error = Proxy::bind_inherited(config(&x, 0), Vec::new())
        .await
        .expect_err("no listener");
    assert!(matches!(error, ProxyError::Bind { .. }), "{error}");
}

#[tokio::test]
async fn after_shutdown_there_is_nothing_to_hand_over() {
    let x = Backend::http("x").await;
    let proxy = start_proxy(config(&x, 0)).await;
    let clone = proxy.clone();
    assert_eq!(proxy.listener_fds().expect("fds").len(), 1);
    within("shutdown", proxy.shutdown(Duration::from_secs(5))).await;
    assert!(clone.listener_fds().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retiring_proxy_closes_each_keep_alive_connection_after_its_next_answer() {
    let backend = Backend::http("x").await;
    let proxy = start_proxy(ProxyConfig::http(localhost()).with_backends([backend.addr])).await;
    let mut conn = within("connect", Conn::open(proxy.local_addr()))
        .await
        .expect("a connection");
    let first = within("a request", conn.send(get("/")))
        .await
        .expect("an answer");
    assert_eq!(first.headers.get("connection"), None, "kept alive");
    proxy.retire_connections();
    let last = within("a request", conn.send(get("/")))
        .await
        .expect("an answer");
    assert_eq!(last.body, "x", "the answer is complete");
    assert_eq!(
        last.headers.get("connection").and_then(|v| v.to_str().ok()),
        Some("close"),
        "and tells the client to reconnect"
    );
    let after = within("a closed connection", conn.send(get("/"))).await;
    assert!(
        after.is_err(),
        "the connection was closed after that answer"
    );
}
