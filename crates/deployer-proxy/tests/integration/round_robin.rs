//! Several backends: rotation, and rolling one at a time under load.

use std::time::Duration;

use deployer_proxy::{AddOutcome, ProxyConfig};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_rotate_over_every_backend() {
    let backends = [
        Backend::http("a").await,
        Backend::http("b").await,
        Backend::http("c").await,
    ];
    let proxy = http_proxy(&backends.iter().collect::<Vec<_>>()).await;
    let mut conn = Conn::open(proxy.local_addr()).await.expect("connect");
    let mut answers = Vec::new();
    for _ in 0..9 {
        let reply = within("request", conn.send(get("/"))).await.expect("reply");
        // End-to-end response headers pass through unchanged.
        assert_eq!(reply.backend(), Some(reply.body.as_str()));
        answers.push(reply.body);
    }
    assert_eq!(answers, ["a", "b", "c", "a", "b", "c", "a", "b", "c"]);
    assert!(proxy.stats().iter().all(|s| s.requests == 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_one_backend_at_a_time_under_load_fails_no_request() {
    let backends = [
        Backend::http("r1").await,
        Backend::http("r2").await,
        Backend::http("r3").await,
        Backend::http("r4").await,
    ];
    let proxy = http_proxy(&[&backends[0], &backends[1]]).await;
    let history = History::new(&["r1", "r2"]);
    let traffic = Traffic::start(proxy.local_addr(), &history);
    traffic.advance().await;

    // Replace r1, r2 with r3, r4 and back, surge of one: add a new one, then remove an old one.
    let rounds = [(0, 2), (1, 3), (2, 0), (3, 1), (0, 2), (1, 3)];
    let mut live = vec![backends[0].name, backends[1].name];
    for (old, new) in rounds {
        live.push(backends[new].name);
        let outcome = history.record(&live, || proxy.add_backend(backends[new].addr));
        assert_eq!(outcome, AddOutcome::Added);
        assert_eq!(
            proxy.add_backend(backends[new].addr),
            AddOutcome::AlreadyPresent
        );
        traffic.advance().await;

        live.retain(|name| *name != backends[old].name);
        let drain = history.record(&live, || proxy.remove_backend(backends[old].addr));
        assert_eq!(drain.backends(), [backends[old].addr]);
        let report = within("draining a replica", drain.wait(Duration::from_secs(15))).await;
        assert!(report.drained_cleanly, "{report:?}");
        traffic.advance().await;
    }
    let result = traffic.stop().await;
    assert_clean(&result, &history);
    assert_eq!(proxy.backends(), [backends[2].addr, backends[3].addr]);
    assert_eq!(proxy.totals().errors, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_an_unknown_backend_gives_an_empty_drain() {
    let proxy = start_proxy(ProxyConfig::http(localhost())).await;
    let drain = proxy.remove_backend(dead_addr().await);
    assert!(drain.is_empty());
    let report = within("empty drain", drain.wait(Duration::from_secs(600))).await;
    assert!(report.drained_cleanly);
    assert_eq!(report.cut, 0);
}
