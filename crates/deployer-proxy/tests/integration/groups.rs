//! Counters summed by backend group: answers by class, latency, active, cut, and totals
//! that outlive the backends of a group.

use std::time::Duration;

use deployer_proxy::{Backend as Target, GroupStats, Proxy, ProxyConfig, ResponseClass};
use http::StatusCode;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::support::*;

fn group(proxy: &Proxy, name: &str) -> GroupStats {
    proxy
        .group_stats()
        .into_iter()
        .find(|g| &*g.group == name)
        .unwrap_or_else(|| panic!("no group {name} in {:?}", proxy.group_stats()))
}

fn answers(stats: &GroupStats) -> Vec<(&'static str, u64)> {
    stats
        .answers
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(class, n)| (class.as_str(), n))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_counted_by_class_per_group_and_timed() {
    let v1 = Backend::http("v1").await;
    let config = ProxyConfig::http(localhost()).with_empty_hold(Duration::ZERO);
    let proxy = start_proxy(config).await;
    proxy.add_backend(Target::new(v1.addr).in_group("g1"));
    for (code, status) in [
        ("204", StatusCode::NO_CONTENT),
        ("302", StatusCode::FOUND),
        ("404", StatusCode::NOT_FOUND),
        ("404", StatusCode::NOT_FOUND),
        ("503", StatusCode::SERVICE_UNAVAILABLE),
    ] {
        let reply = fetch(&proxy, &format!("/status?code={code}")).await;
        assert_eq!(reply.status, status);
    }
    // The next release refuses: the proxy answers for it.
    let dead = dead_addr().await;
    let (_, drain) = proxy.swap_backends(&[v1.addr], Target::new(dead).in_group("g2"));
    drop(drain);
    assert_eq!(fetch(&proxy, "/").await.status, StatusCode::BAD_GATEWAY);

    let g1 = group(&proxy, "g1");
    assert_eq!(
        answers(&g1),
        [("2xx", 1), ("3xx", 1), ("4xx", 2), ("5xx", 1)]
    );
    assert_eq!((g1.requests, g1.server_errors, g1.live_backends), (5, 1, 0));
    // Every answered request has a latency, counted in its group (a canary is judged by it).
    assert_eq!(g1.latency.count(), 5);
    let g2 = group(&proxy, "g2");
    assert_eq!(answers(&g2), [("gateway_error", 1)]);
    assert_eq!((g2.requests, g2.errors, g2.live_backends), (1, 1, 1));

    let totals = proxy.totals();
    assert_eq!(totals.answers.get(ResponseClass::ClientError), 2);
    // Every answered request is timed once, whichever bucket it fell in.
    assert_eq!(totals.latency.count(), 6);
    assert_eq!(totals.latency.buckets().map(|(_, n)| n).sum::<u64>(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_request_is_active_in_its_group_then_cut_and_kept_in_its_totals() {
    let v1 = Backend::http("v1").await;
    let v2 = Backend::http("v2").await;
    let proxy = start_proxy(ProxyConfig::http(localhost())).await;
    proxy.add_backend(Target::new(v1.addr).in_group("g1"));
    let stuck = stuck_request(&proxy, &v1).await;
    assert_eq!(group(&proxy, "g1").active, 1);

    let (_, drain) = proxy.swap_backends(&[v1.addr], Target::new(v2.addr).in_group("g2"));
    let report = within("draining g1", drain.wait(Duration::from_millis(300))).await;
    assert_eq!(report.cut, 1);
    let reply = within("the cut request", stuck)
        .await
        .expect("task")
        .expect("an answer");
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(fetch(&proxy, "/").await.body, "v2");
    eventually("v1 leaving the stats", || proxy.stats().len() == 1).await;

    let g1 = group(&proxy, "g1");
    assert_eq!((g1.requests, g1.active, g1.cut), (1, 0, 1));
    assert_eq!(answers(&g1), [("gateway_error", 1)]);
    let g2 = group(&proxy, "g2");
    assert_eq!((g2.requests, g2.active, g2.cut), (1, 0, 0));
    assert_eq!(answers(&g2), [("2xx", 1)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_connections_count_as_connected_or_gateway_errors() {
    let v1 = Backend::tcp("v1").await;
    let proxy = start_proxy(ProxyConfig::tcp(localhost())).await;
    proxy.add_backend(Target::new(v1.addr).in_group("g1"));
    let mut client = TcpStream::connect(proxy.local_addr())
        .await
        .expect("connect");
    let mut greeting = [0; 3];
    within("the greeting", client.read_exact(&mut greeting))
        .await
        .expect("greeting");
    eventually("the connection counted", || group(&proxy, "g1").active == 1).await;
    drop(client);
    eventually("the connection closed", || group(&proxy, "g1").active == 0).await;

    let dead = dead_addr().await;
    drop(proxy.replace_backends(vec![Target::new(dead).in_group("g2")]));
    let mut refused = TcpStream::connect(proxy.local_addr())
        .await
        .expect("connect");
    let mut rest = Vec::new();
    within(
        "the refused connection closing",
        refused.read_to_end(&mut rest),
    )
    .await
    .ok();
    eventually("the refusal counted", || {
        group(&proxy, "g2").answers.get(ResponseClass::GatewayError) == 1
    })
    .await;
    assert_eq!(answers(&group(&proxy, "g1")), [("connected", 1)]);
    assert_eq!(proxy.totals().latency.count(), 0, "TCP mode is not timed");
}
