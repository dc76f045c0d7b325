//! Switching HTTP backends under live traffic.

use std::time::Duration;

use deployer_proxy::{DrainReport, ProxyConfig};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_a_hundred_times_under_load_fails_no_request() {
    switch_a_hundred_times(0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_a_hundred_times_on_worker_threads_fails_no_request() {
    switch_a_hundred_times(2).await;
}

async fn switch_a_hundred_times(workers: usize) {
    let v1 = Backend::http("v1").await;
    let v2 = Backend::http("v2").await;
    let mut config = ProxyConfig::http(localhost()).with_backends([v1.addr]);
    config.workers = workers;
    let proxy = start_proxy(config).await;
    let history = History::new(&["v1"]);
    let traffic = Traffic::start(proxy.local_addr(), &history);
    traffic.advance().await;

    let mut drains = Vec::new();
    for i in 0..100 {
        let next = if i % 2 == 0 { &v2 } else { &v1 };
        let drain = history.record(&[next.name], || proxy.replace_backends(vec![next.addr]));
        drains.push(tokio::spawn(drain.wait(Duration::from_secs(15))));
        traffic.advance().await;
    }
    let result = traffic.stop().await;

    assert_eq!(history.switches(), 100);
    assert_clean(&result, &history);
    for drain in drains {
        let report: DrainReport = within("drain after a switch", drain)
            .await
            .expect("drain task");
        assert!(report.drained_cleanly, "{report:?}");
        assert_eq!(report.cut, 0);
    }
    // Both backends served; the keep-alive loop would have recorded a failure had its
    // connection broken at a switch.
    let answered: Vec<_> = result
        .observations
        .iter()
        .map(|o| o.backend.as_str())
        .collect();
    assert!(answered.contains(&"v1") && answered.contains(&"v2"));
    let totals = proxy.totals();
    assert_eq!(totals.errors, 0);
    assert_eq!(totals.requests, v1.requests() + v2.requests());
}
