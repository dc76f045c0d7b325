//! Draining a removed HTTP backend: in-flight work finishes, stuck work is cut.

use std::time::Duration;

use deployer_proxy::BackendState;
use http::StatusCode;
use http_body_util::BodyExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::support::*;

const SHORT_DEADLINE: Duration = Duration::from_millis(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_across_a_switch_completes() {
    let v1 = Backend::http("v1").await;
    let v2 = Backend::http("v2").await;
    let proxy = http_proxy(&[&v1]).await;
    let slow = tokio::spawn(one_shot(proxy.local_addr(), get("/slow?ms=2000")));
    eventually("the slow request reaching v1", || {
        active_on(&proxy, v1.addr) == 1
    })
    .await;

    let drain = proxy.replace_backends(vec![v2.addr]);
    let during = fetch(&proxy, "/").await;
    assert_eq!(during.body, "v2");
    assert_eq!(proxy.stats()[1].state, BackendState::Draining);

    let report = within("draining v1", drain.wait(Duration::from_secs(15))).await;
    assert!(report.drained_cleanly, "{report:?}");
    assert_eq!(report.cut, 0);
    let slow = within("the slow request", slow)
        .await
        .expect("task")
        .expect("slow request completes");
    assert_eq!((slow.status, slow.body.as_str()), (StatusCode::OK, "v1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_the_backend_never_answers_is_cut_at_the_deadline() {
    let v1 = Backend::http("v1").await;
    let proxy = http_proxy(&[&v1]).await;
    let stuck = stuck_request(&proxy, &v1).await;

    let report = within(
        "draining v1",
        proxy.remove_backend(v1.addr).wait(SHORT_DEADLINE),
    )
    .await;
    assert!(!report.drained_cleanly);
    assert_eq!(report.cut, 1);
    assert!(report.waited >= SHORT_DEADLINE);
    let reply = within("the cut request", stuck)
        .await
        .expect("task")
        .expect("cut request still gets an answer");
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(proxy.totals().cut, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_body_that_stalls_is_cut_at_the_deadline() {
    let v1 = Backend::http("v1").await;
    let proxy = http_proxy(&[&v1]).await;
    let mut conn = Conn::open(proxy.local_addr()).await.expect("connect");
    let response = within("stalling response headers", conn.start(get("/stall")))
        .await
        .expect("headers arrive");
    let mut body = response.into_body();
    let first = within("first chunk", body.frame())
        .await
        .expect("a frame")
        .expect("no error");
    assert_eq!(first.into_data().expect("data"), "first chunk\n");

    let report = within(
        "draining v1",
        proxy.remove_backend(v1.addr).wait(SHORT_DEADLINE),
    )
    .await;
    assert_eq!((report.drained_cleanly, report.cut), (false, 1));
    // The response cannot be completed, so the client connection is closed mid-body.
    let rest = within("the rest of the cut body", body.collect()).await;
    assert!(rest.is_err(), "body should break off, got {rest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgraded_connection_survives_a_switch_until_the_deadline() {
    let v1 = Backend::http("v1").await;
    let v2 = Backend::http("v2").await;
    let proxy = http_proxy(&[&v1]).await;
    let mut client = TcpStream::connect(proxy.local_addr())
        .await
        .expect("connect");
    client
        .write_all(
            b"GET /ws HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
        )
        .await
        .expect("write upgrade request");
    let mut head = String::new();
    loop {
        let line = within("101 response head", read_line(&mut client))
            .await
            .expect("head line");
        if line == "\r" {
            break;
        }
        head.push_str(&line.to_ascii_lowercase());
    }
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: echo"), "{head}");
    assert_eq!(
        within("greeting", read_line(&mut client))
            .await
            .expect("greeting"),
        "v1"
    );
    within(
        "echo before the switch",
        echo_round_trip(&mut client, "ping"),
    )
    .await
    .expect("echo");

    let drain = proxy.replace_backends(vec![v2.addr]);
    within(
        "echo after the switch",
        echo_round_trip(&mut client, "still v1"),
    )
    .await
    .expect("upgraded connection keeps running after the switch");
    let after = fetch(&proxy, "/").await;
    assert_eq!(after.body, "v2");

    let report = within("draining v1", drain.wait(SHORT_DEADLINE)).await;
    assert_eq!((report.drained_cleanly, report.cut), (false, 1));
    assert!(within("the cut upgrade closing", closed_by_peer(&mut client)).await);
}
