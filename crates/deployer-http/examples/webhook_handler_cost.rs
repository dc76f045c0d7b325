//! CPU cost of one registry webhook in the router, without sockets: authentication, content
//! type, body, JSON decoding, validation, sink submission, metrics and the JSON answer.
//! Complements `bench/run.sh`, whose numbers include the kernel's loopback TCP path and
//! whatever else the machine runs.
//!
//! `cargo run --release -p deployer-http --example webhook_handler_cost [REQUESTS]`

use std::time::Instant;

use axum::body::Body;
use deployer_core::driver::EventSink;
use deployer_http::config::{EndpointConfig, WebhookConfig};
use deployer_http::{Metrics, webhook_router};
use tower::ServiceExt;

const BODY: &[u8] = include_bytes!("../tests/fixtures/registry_push_reference.json");
const TOKEN: &str = "bench-token-0123456789";

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let requests: u32 = std::env::args().nth(1).map_or(Ok(100_000), |n| n.parse())?;
    let tracked = "127.0.0.1:5000/demo/app:latest".parse()?;
    let (sink, mut events) = EventSink::new([tracked], 1024);
    let config = WebhookConfig {
        registry: EndpointConfig::with_secret(TOKEN).registries(["127.0.0.1:5000"]),
        ..WebhookConfig::default()
    };
    let router = webhook_router(&config, sink, Metrics::new())?;
    for round in 1..=3 {
        let start = Instant::now();
        for _ in 0..requests {
            let request = http::Request::post("/hooks/registry")
                .header(
                    "content-type",
                    "application/vnd.docker.distribution.events.v1+json",
                )
                .header("authorization", format!("Bearer {TOKEN}"))
                .header("content-length", BODY.len())
                .body(Body::from(BODY))?;
            let response = router.clone().oneshot(request).await?;
            anyhow::ensure!(response.status() == 202, "unexpected {}", response.status());
            axum::body::to_bytes(response.into_body(), 1 << 16).await?;
            // Stands in for the ingest worker, so the queue never fills.
            while events.try_recv().is_ok() {}
        }
        let per_request = start.elapsed().as_secs_f64() * 1e6 / f64::from(requests);
        println!("round {round}: {per_request:.2} µs per request ({requests} requests)");
    }
    Ok(())
}
