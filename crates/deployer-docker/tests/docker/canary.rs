//! The canary strategy through a real engine and the proxy: a candidate whose `/` fails one
//! request in five gets exactly its share of new clients, and is rolled back within its hold
//! (its health check passes: the proxy's counters of its requests fail it).

use std::net::SocketAddr;
use std::time::Duration;

use deployer_core::Outcome;
use deployer_core::service::{Canary, Strategy};
use deployer_testkit::Sweep;
use deployer_testkit::images::{self, App};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{Harness, bounded, build_image, fetch_body, handover_service, rebuilt};

const PERCENT: u8 = 20;
const HOLD: Duration = Duration::from_secs(30);

/// One request as a new client (no cookie): the body, and whether the split decided it (the
/// answer hands out the canary cookie).
async fn new_client(addr: SocketAddr) -> anyhow::Result<(String, bool)> {
    let mut stream = TcpStream::connect(addr).await?;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: canary.test\r\nConnection: close\r\n\r\n")
        .await?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await?;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let split = head
        .to_ascii_lowercase()
        .contains(&format!("set-cookie: {}=", deployer_proxy::CANARY_COOKIE));
    Ok((body.to_owned(), split))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_failing_a_fifth_of_its_requests_gets_its_share_and_is_rolled_back_in_its_hold()
-> anyhow::Result<()> {
    bounded(Duration::from_secs(150), "the canary scenario", async {
        let sweep = Sweep::new("canary");
        let docker = images::docker().await;
        let (v1, id1) = build_image(&docker, &sweep, "can", "v1", App::http("v1"), false).await?;
        let flaky = App::SomeServerErrors {
            version: "v2".into(),
            every: 5,
        };
        let (_, id2) = build_image(&docker, &sweep, "can", "v2", flaky, false).await?;
        let tracked = v1.with_tag("live")?;
        let spec = handover_service(&sweep, "can", &tracked, Duration::from_secs(10))?;
        let handover = spec.strategy().handover().unwrap().clone();
        let listen = handover.listen();
        let canary = Canary::new(handover, PERCENT, HOLD, Some("x-canary".into()))?;
        let spec = rebuilt(&spec, |b| b.strategy(Strategy::Canary(canary)))?;
        let harness = Harness::start(&docker, vec![spec]).await?;
        let rev = harness.publish(&tracked, &id1).await?;
        assert_eq!(
            harness.report(rev, Duration::from_secs(30)).await?.outcome,
            Outcome::Succeeded
        );

        let rev = harness.publish(&tracked, &id2).await?;
        // New clients, one after another, until the deploy is over.
        let (mut split, mut on_canary) = (0u32, 0u32);
        let report = {
            let report = harness.report(rev, Duration::from_secs(90));
            tokio::pin!(report);
            loop {
                tokio::select! {
                    report = &mut report => break report?,
                    answer = new_client(listen) => {
                        let (body, decided) = answer?;
                        if decided {
                            split += 1;
                            on_canary += u32::from(body.trim() == "v2");
                        }
                    }
                }
            }
        };
        assert_eq!(report.outcome, Outcome::RolledBack, "{report:?}");
        let reason = report.reason.clone().unwrap_or_default();
        assert!(reason.contains("the proxy saw"), "{reason}");
        assert!(
            Duration::from_millis(report.duration_ms) < HOLD,
            "rolled back after {} ms, past the {HOLD:?} hold",
            report.duration_ms
        );
        let share = f64::from(on_canary) * 100.0 / f64::from(split.max(1));
        eprintln!(
            "canary at {PERCENT}%: {on_canary} of {split} new clients got it ({share:.1}%); rolled back after {} ms",
            report.duration_ms
        );
        assert!(split >= 50, "only {split} clients went through the split");
        assert!(
            (share - f64::from(PERCENT)).abs() <= 2.0,
            "{share:.1}% of clients got the canary, not {PERCENT}%"
        );
        assert_eq!(fetch_body(listen).await?, "v1\n", "v1 serves everyone again");
        let (_, still_split) = new_client(listen).await?;
        assert!(!still_split, "the split ended with the rollback");
        harness.stop().await
    })
    .await?
}
