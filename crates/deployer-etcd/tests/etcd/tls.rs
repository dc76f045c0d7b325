//! etcd over TLS with client certificates (rustls through etcd-client's `tls` feature).

use std::path::{Path, PathBuf};

use deployer_core::ports::Coordinator;
use deployer_etcd::{ConnectError, TlsFiles};
use deployer_testkit::etcd::{Etcd, EtcdOptions, EtcdTls};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

use crate::support::*;

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files.
struct Pki {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    server: (PathBuf, PathBuf),
    client: (PathBuf, PathBuf),
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, pem: String| -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, pem).unwrap();
        path
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf = |names: Vec<String>, stem: &str| -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        (
            write(&format!("{stem}.pem"), cert.pem()),
            write(&format!("{stem}-key.pem"), key.serialize_pem()),
        )
    };
    let server = leaf(vec!["127.0.0.1".into(), "localhost".into()], "server");
    let client = leaf(vec!["deployer".into()], "client");
    let ca = write("ca.pem", ca.as_ref().pem());
    Pki {
        _dir: dir,
        ca,
        server,
        client,
    }
}

fn files(ca: &Path, client: Option<&(PathBuf, PathBuf)>) -> TlsFiles {
    let mut tls = TlsFiles::default();
    tls.ca = Some(ca.to_owned());
    tls.cert = client.map(|c| c.0.clone());
    tls.key = client.map(|c| c.1.clone());
    tls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_over_tls_with_a_client_certificate() {
    let pki = pki();
    let etcd = Etcd::start_with(EtcdOptions {
        tls: Some(EtcdTls {
            cert_file: pki.server.0.clone(),
            key_file: pki.server.1.clone(),
            client_ca_file: Some(pki.ca.clone()),
        }),
        ..EtcdOptions::default()
    })
    .await;
    assert!(etcd.endpoint().starts_with("https://"));

    let host = connect(config(&etcd, "a").with_tls(files(&pki.ca, Some(&pki.client)))).await;
    let first = publish(&host, 1).await;
    let mut watch = host.watch(first.revision).await.unwrap();
    let second = publish(&host, 2).await;
    assert_eq!(next_update(&mut watch, "a target over TLS").await, second);
    host.close().await;

    let anonymous = within(
        "a connection without a client certificate",
        20,
        deployer_etcd::EtcdCoordinator::connect(config(&etcd, "b").with_tls(files(&pki.ca, None))),
    )
    .await;
    assert!(
        matches!(
            anonymous,
            Err(ConnectError::Register(_) | ConnectError::Unreachable { .. })
        ),
        "etcd requires a client certificate: {anonymous:?}"
    );

    let missing = deployer_etcd::EtcdCoordinator::connect(
        config(&etcd, "c").with_tls(files(Path::new("/nonexistent/ca.pem"), None)),
    )
    .await;
    match missing {
        Err(ConnectError::TlsFile { field, .. }) => assert_eq!(field, "tls.ca"),
        other => panic!("expected an unreadable CA file error, got {other:?}"),
    }
}
