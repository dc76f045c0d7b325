//! etcd with authentication: login at connect, and again when the token expires.

use std::time::Duration;

use deployer_core::ports::Coordinator;
use deployer_testkit::etcd::{Etcd, EtcdOptions};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_in_and_logs_in_again_when_the_token_expires() {
    // Simple tokens that expire after 2 s without use.
    let etcd = Etcd::start_with(EtcdOptions {
        extra_args: vec!["--auth-token=simple".into(), "--auth-token-ttl=2".into()],
        ..EtcdOptions::default()
    })
    .await;
    let mut admin = raw(&etcd).await;
    admin.user_add("root", "s3cret", None).await.unwrap();
    admin.user_grant_role("root", "root").await.unwrap();
    admin.auth_enable().await.unwrap();

    let wrong =
        deployer_etcd::EtcdCoordinator::connect(config(&etcd, "a").with_user("root", "wrong"))
            .await;
    assert!(wrong.is_err(), "a wrong password is refused at connect");

    let host = connect(config(&etcd, "a").with_user("root", "s3cret")).await;
    let first = publish(&host, 1).await;
    let mut watch = host.watch(first.revision).await.unwrap();
    // Idle longer than the token TTL: the next request carries an expired token.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let second = within(
        "a publish after the token expired",
        20,
        host.publish(request(2)),
    )
    .await
    .expect("the coordinator logs in again by itself");
    assert_eq!(
        &next_update(&mut watch, "the publish after re-login").await,
        second.target()
    );
    host.close().await;
}
