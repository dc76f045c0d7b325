//! Header rewriting, streaming bodies and keep-alive behaviour.

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Channel};

use crate::support::*;

fn header_lines(body: &str) -> Vec<&str> {
    body.lines().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_are_added_and_hop_by_hop_headers_stripped() {
    let v1 = Backend::http("v1").await;
    let proxy = http_proxy(&[&v1]).await;
    let mut request = get("/headers");
    for (name, value) in [
        ("x-forwarded-for", "203.0.113.9"),
        ("x-forwarded-proto", "https"),
        ("connection", "keep-alive, x-hop"),
        ("x-hop", "secret"),
        ("keep-alive", "timeout=5"),
        ("proxy-authorization", "Basic eA=="),
        ("te", "trailers"),
        ("x-end-to-end", "kept"),
    ] {
        request
            .headers_mut()
            .append(name, value.parse().expect("value"));
    }
    let reply = within("headers request", one_shot(proxy.local_addr(), request))
        .await
        .expect("reply");
    let lines = header_lines(&reply.body);
    for expected in [
        "host: app.test",
        "x-forwarded-for: 203.0.113.9, 127.0.0.1",
        "x-forwarded-proto: http",
        "x-forwarded-host: app.test",
        "x-end-to-end: kept",
    ] {
        assert!(
            lines.contains(&expected),
            "missing {expected:?} in {lines:?}"
        );
    }
    for stripped in [
        "x-hop",
        "keep-alive",
        "proxy-authorization",
        "te",
        "connection",
    ] {
        assert!(
            !lines.iter().any(|l| l.starts_with(&format!("{stripped}:"))),
            "{stripped} should be stripped: {lines:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_response_headers_are_stripped() {
    let v1 = Backend::http("v1").await;
    let proxy = http_proxy(&[&v1]).await;
    let reply = fetch(&proxy, "/hop").await;
    assert_eq!(reply.headers["x-end-to-end"], "kept");
    for stripped in ["x-backend-hop", "keep-alive", "proxy-authenticate"] {
        assert!(
            !reply.headers.contains_key(stripped),
            "{stripped}: {:?}",
            reply.headers
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_bodies_stream_through_both_ways() {
    let v1 = Backend::http("v1").await;
    let proxy = http_proxy(&[&v1]).await;
    let mut conn = Conn::open(proxy.local_addr()).await.expect("connect");
    let (mut sender, body) = Channel::<Bytes>::new(1);
    let mut request = request("/echo", body.boxed());
    *request.method_mut() = http::Method::POST;
    let response = within("echo response headers", conn.start(request))
        .await
        .expect("headers");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-request-transfer-encoding"], "chunked");
    assert_eq!(response.headers()["transfer-encoding"], "chunked");
    let mut body = response.into_body();
    // Each chunk must come back before the next is sent: a proxy that buffered either
    // body would deadlock here.
    for chunk in ["one\n", "two\n", "three\n"] {
        within(
            "sending a request chunk",
            sender.send_data(Bytes::from(chunk)),
        )
        .await
        .expect("send chunk");
        let frame = within("the echoed chunk", body.frame())
            .await
            .expect("frame")
            .expect("no error");
        assert_eq!(frame.into_data().expect("data"), chunk);
    }
    drop(sender);
    assert!(within("end of the echo body", body.frame()).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keep_alive_connection_moves_to_the_new_backend_at_its_next_request() {
    let v1 = Backend::http("v1").await;
    let v2 = Backend::http("v2").await;
    let proxy = http_proxy(&[&v1]).await;
    let mut conn = Conn::open(proxy.local_addr()).await.expect("connect");
    let first = within("first request", conn.send(get("/")))
        .await
        .expect("reply");
    assert_eq!(first.body, "v1");
    drop(proxy.replace_backends(vec![v2.addr]));
    let second = within("second request", conn.send(get("/")))
        .await
        .expect("reply");
    assert_eq!(second.body, "v2");
    assert_eq!(proxy.totals().connections_accepted, 1);
}
