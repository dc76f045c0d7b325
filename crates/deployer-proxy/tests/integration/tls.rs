//! TLS termination: the certificate is picked by SNI (exact names before wildcards), HTTP/2 and
//! HTTP/1.1 are offered by ALPN, backends see `X-Forwarded-Proto: https`, and a certificate
//! file replaced on disk is served from the next handshake on.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use deployer_proxy::{CertFiles, CertStore, ProxyConfig, RouteMatch};
use http::Request;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

use crate::support::*;

struct Issued {
    files: CertFiles,
    der: CertificateDer<'static>,
}

fn issue(dir: &Path, file: &str, names: &[&str]) -> Issued {
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let issued = rcgen::generate_simple_self_signed(names).expect("a certificate");
    let files = CertFiles {
        cert: dir.join(format!("{file}.crt")),
        key: dir.join(format!("{file}.key")),
    };
    std::fs::write(&files.cert, issued.cert.pem()).expect("write cert");
    std::fs::write(&files.key, issued.signing_key.serialize_pem()).expect("write key");
    Issued {
        files,
        der: issued.cert.der().clone(),
    }
}

/// What one TLS request saw: the server's certificate, the protocol ALPN settled, and what
/// answered.
struct Seen {
    cert: CertificateDer<'static>,
    h2: bool,
    /// Which backend answered.
    backend: String,
    /// The request headers as the backend got them, one `name: value` per line.
    headers: String,
}

async fn request(
    addr: std::net::SocketAddr,
    sni: &str,
    roots: &[&Issued],
    alpn: &[&[u8]],
) -> Result<Seen, Error> {
    let mut store = rustls::RootCertStore::empty();
    for issued in roots {
        store.add(issued.der.clone())?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await?;
    let tls = connector
        .connect(ServerName::try_from(sni.to_owned())?, tcp)
        .await?;
    let cert = tls.get_ref().1.peer_certificates().expect("a chain")[0].clone();
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let empty = http_body_util::Empty::<bytes::Bytes>::new();
    let response = if h2 {
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await?;
        tokio::spawn(connection);
        let request = Request::get(format!("https://{sni}/headers")).body(empty)?;
        sender.send_request(request).await?
    } else {
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(connection);
        let request = Request::get("/headers").header("host", sni).body(empty)?;
        sender.send_request(request).await?
    };
    let backend = response
        .headers()
        .get("x-backend")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let headers =
        String::from_utf8_lossy(&response.into_body().collect().await?.to_bytes()).into_owned();
    Ok(Seen {
        cert,
        h2,
        backend,
        headers,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_picks_the_certificate_and_alpn_the_protocol() {
    let dir = tempfile::tempdir().expect("temp dir");
    let shop = issue(dir.path(), "shop", &["shop.test"]);
    let wild = issue(dir.path(), "wild", &["*.apps.test"]);
    let store = CertStore::new();
    store
        .insert("shop", &["shop.test".into()], shop.files.clone())
        .expect("shop's certificate");
    store
        .insert("apps", &["*.apps.test".into()], wild.files.clone())
        .expect("the wildcard certificate");
    let (web, apps) = (Backend::http("web").await, Backend::http("apps").await);
    let mut config = ProxyConfig::http(localhost());
    config.tls = Some(store.clone());
    let proxy = start_proxy(config).await;
    let hosts = |h: &str| RouteMatch::new(&[h.to_owned()], "/").expect("route");
    proxy
        .add_route("shop", hosts("shop.test"))
        .expect("route")
        .add_backend(web.addr);
    proxy
        .add_route("apps", hosts("*.apps.test"))
        .expect("route")
        .add_backend(apps.addr);
    let addr = proxy.local_addr();
    let roots = [&shop, &wild];

    let seen = within(
        "HTTP/2 to shop",
        request(addr, "shop.test", &roots, &[b"h2", b"http/1.1"]),
    )
    .await
    .expect("the request");
    assert!(seen.h2, "HTTP/2 negotiated");
    assert_eq!(seen.cert, shop.der);
    assert_eq!(seen.backend, "web");
    assert!(
        seen.headers.contains("x-forwarded-proto: https\n"),
        "{}",
        seen.headers
    );

    let seen = within(
        "HTTP/1.1 to an app",
        request(addr, "a.apps.test", &roots, &[b"http/1.1"]),
    )
    .await
    .expect("the request");
    assert!(!seen.h2);
    assert_eq!(seen.cert, wild.der);
    assert_eq!(seen.backend, "apps");

    // The shop's certificate is renewed on disk: new handshakes get the new one.
    let renewed = issue(dir.path(), "shop", &["shop.test"]);
    let roots = [&shop, &wild, &renewed];
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let seen = request(addr, "shop.test", &roots, &[b"h2"])
            .await
            .expect("the request");
        if seen.cert == renewed.der {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the renewed certificate was not served"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn unusable_certificates_are_refused_with_the_file_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let good = issue(dir.path(), "good", &["good.test"]);
    let other = issue(dir.path(), "other", &["other.test"]);
    let mismatched = CertFiles {
        cert: good.files.cert.clone(),
        key: other.files.key,
    };
    let error = CertStore::check(&mismatched).expect_err("key of another certificate");
    assert!(error.to_string().contains("good.crt"), "{error}");
    let missing = CertFiles {
        cert: dir.path().join("nope.crt"),
        key: good.files.key.clone(),
    };
    let error = CertStore::check(&missing).expect_err("no file");
    assert!(error.to_string().contains("nope.crt"), "{error}");
    CertStore::check(&good.files).expect("a good pair");
}
