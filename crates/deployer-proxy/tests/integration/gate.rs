//! Traffic controls: a paused proxy holds new requests until resumed (or their hold ends, then
//! 503); in maintenance it answers 503 with the message; resumed, it forwards again.

use std::time::Duration;

use deployer_proxy::{GateState, ProxyConfig};
use http::StatusCode;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_holds_requests_until_resume_and_maintenance_answers_503() {
    let v1 = Backend::http("v1").await;
    let proxy = start_proxy(ProxyConfig::http(localhost()).with_backends([v1.addr])).await;

    proxy.pause(Duration::from_secs(30));
    assert!(matches!(proxy.gate(), GateState::Paused { .. }));
    let held = {
        let proxy = proxy.clone();
        tokio::spawn(async move { fetch(&proxy, "/").await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!held.is_finished(), "answered while paused");
    proxy.resume();
    let reply = held.await.unwrap();
    assert_eq!((reply.status, reply.body.as_str()), (StatusCode::OK, "v1"));

    proxy.pause(Duration::from_millis(100));
    let reply = fetch(&proxy, "/").await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "503 once its hold ends"
    );
    assert_eq!(reply.body, "paused; retry shortly\n");

    proxy.maintenance("back at 14:00 UTC");
    let reply = fetch(&proxy, "/").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.body, "back at 14:00 UTC\n");

    proxy.resume();
    assert_eq!(proxy.gate(), GateState::Open);
    let reply = fetch(&proxy, "/").await;
    assert_eq!((reply.status, reply.body.as_str()), (StatusCode::OK, "v1"));
}
