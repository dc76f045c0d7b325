//! TCP (L4) mode: switching, draining, cutting, and refusing without backends.

use std::sync::Arc;
use std::time::Duration;

use deployer_proxy::{Proxy, ProxyConfig};
use tokio::net::TcpStream;

use crate::support::*;

async fn connect_and_greet(proxy: &Proxy) -> (TcpStream, String) {
    let mut stream = within(
        "connecting through the TCP proxy",
        TcpStream::connect(proxy.local_addr()),
    )
    .await
    .expect("connect");
    let greeting = within("backend greeting", read_line(&mut stream))
        .await
        .expect("greeting");
    (stream, greeting)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_connections_follow_a_switch_and_old_ones_run_until_cut() {
    let v1 = Backend::tcp("v1").await;
    let v2 = Backend::tcp("v2").await;
    let proxy = tcp_proxy(&[&v1]).await;
    let (mut old, greeting) = connect_and_greet(&proxy).await;
    assert_eq!(greeting, "v1");

    let drain = proxy.replace_backends(vec![v2.addr]);
    let (mut new, greeting) = connect_and_greet(&proxy).await;
    assert_eq!(greeting, "v2");
    within(
        "old connection after the switch",
        echo_round_trip(&mut old, "still here"),
    )
    .await
    .expect("old connection keeps running");
    assert_eq!(active_on(&proxy, v1.addr), 1);

    let report = within("draining v1", drain.wait(Duration::from_millis(300))).await;
    assert_eq!((report.drained_cleanly, report.cut), (false, 1));
    assert!(within("old connection closing", closed_by_peer(&mut old)).await);
    eventually("v1 seeing its connection closed", || {
        v1.open_connections() == 0
    })
    .await;
    within(
        "new connection after the drain",
        echo_round_trip(&mut new, "fine"),
    )
    .await
    .expect("new connection unaffected");
    assert_eq!(proxy.totals().cut, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_ends_as_soon_as_the_last_connection_closes() {
    let v1 = Backend::tcp("v1").await;
    let proxy = tcp_proxy(&[&v1]).await;
    let (first, _) = connect_and_greet(&proxy).await;
    let (second, _) = connect_and_greet(&proxy).await;
    let drain = tokio::spawn(proxy.remove_backend(v1.addr).wait(Duration::from_secs(600)));
    drop(first);
    eventually("one connection left", || active_on(&proxy, v1.addr) == 1).await;
    assert!(!drain.is_finished());
    drop(second);
    let report = within("drain after the last close", drain)
        .await
        .expect("task");
    assert!(report.drained_cleanly);
    assert_eq!(report.cut, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_backends_connections_are_closed() {
    let proxy = start_proxy(ProxyConfig::tcp(localhost())).await;
    let mut stream = TcpStream::connect(proxy.local_addr())
        .await
        .expect("connect");
    assert!(
        within(
            "the proxy closing the connection",
            closed_by_peer(&mut stream)
        )
        .await
    );
    eventually("counted as no backend", || proxy.totals().no_backend == 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_backend_closes_the_client_and_counts_an_error() {
    let dead = dead_addr().await;
    let v1 = Backend::tcp("v1").await;
    let proxy = start_proxy(ProxyConfig::tcp(localhost()).with_backends([dead, v1.addr])).await;
    let mut refused = TcpStream::connect(proxy.local_addr())
        .await
        .expect("connect");
    assert!(within("closing after the refusal", closed_by_peer(&mut refused)).await);
    let (_, greeting) = connect_and_greet(&proxy).await;
    assert_eq!(greeting, "v1");
    eventually("the refusal counted", || proxy.totals().errors == 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_fifty_times_under_a_connection_loop_fails_nothing() {
    let v1 = Backend::tcp("v1").await;
    let v2 = Backend::tcp("v2").await;
    let proxy = tcp_proxy(&[&v1]).await;
    let history = History::new(&["v1"]);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let client = {
        let (proxy, history, stop, done) = (
            proxy.clone(),
            Arc::clone(&history),
            Arc::clone(&stop),
            Arc::clone(&done),
        );
        tokio::spawn(async move {
            let mut result = LoopResult::default();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let before = history.current();
                let outcome = async {
                    let mut stream = TcpStream::connect(proxy.local_addr()).await?;
                    let greeting = read_line(&mut stream).await?;
                    echo_round_trip(&mut stream, "ping").await?;
                    std::io::Result::Ok(greeting)
                }
                .await;
                let after = history.current();
                match outcome {
                    Ok(backend) => result.observations.push(Observation {
                        before,
                        after,
                        backend,
                    }),
                    Err(error) => result.failures.push(error.to_string()),
                }
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            result
        })
    };
    let progress = || done.load(std::sync::atomic::Ordering::SeqCst);
    for i in 0..50 {
        let next = if i % 2 == 0 { &v2 } else { &v1 };
        let drain = history.record(&[next.name], || proxy.replace_backends(vec![next.addr]));
        let mark = progress();
        eventually("the TCP client loop making progress", || {
            progress() > mark + 1
        })
        .await;
        let report = within(
            "draining after a TCP switch",
            drain.wait(Duration::from_secs(15)),
        )
        .await;
        assert!(report.drained_cleanly, "{report:?}");
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let result = within("TCP client loop stopping", client)
        .await
        .expect("task");
    assert_clean(&result, &history);
    assert_eq!(proxy.totals().errors, 0);
}
