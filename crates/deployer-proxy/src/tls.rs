//! TLS termination: a certificate per set of host names, picked by the client's SNI (exact
//! names before wildcards), read from PEM files and read again when the files change, so a
//! renewed certificate is served without a restart. ALPN offers HTTP/2 and HTTP/1.1.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::error::ProxyError;
use crate::routes::RouteMatch;

/// How often, at most, the files are looked at again (at a handshake, so an idle proxy does no
/// work).
const RECHECK: Duration = Duration::from_secs(1);

/// The PEM files of one certificate: the chain (leaf first) and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// The certificates a TLS listener serves, by host name; cheap to clone, every clone is the
/// same store. Give one to [`ProxyConfig::tls`](crate::ProxyConfig::tls).
#[derive(Clone, Default)]
pub struct CertStore {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    certs: RwLock<Vec<Arc<Entry>>>,
    last_check: Mutex<Option<Instant>>,
}

struct Entry {
    name: String,
    hosts: RouteMatch,
    files: CertFiles,
    key: RwLock<Arc<CertifiedKey>>,
    stamp: Mutex<Stamp>,
}

type Stamp = (Option<SystemTime>, Option<SystemTime>);

impl CertStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads `files` and serves them for `hosts` (exact names or `*.example.com`; none: for
    /// every name no other certificate has) under `name`, replacing what `name` had.
    pub fn insert(&self, name: &str, hosts: &[String], files: CertFiles) -> Result<(), ProxyError> {
        let matcher = RouteMatch::new(hosts, "/")?;
        let key = load(&files).map_err(|reason| ProxyError::Tls { reason })?;
        let entry = Arc::new(Entry {
            name: name.to_owned(),
            hosts: matcher,
            stamp: Mutex::new(stamp(&files)),
            files,
            key: RwLock::new(Arc::new(key)),
        });
        let mut certs = self
            .inner
            .certs
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        certs.retain(|e| e.name != name);
        certs.push(entry);
        Ok(())
    }

    /// Stops serving the certificate of `name`.
    pub fn remove(&self, name: &str) {
        self.inner
            .certs
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|e| e.name != name);
    }

    /// Checks that `files` hold a usable certificate and key, without serving them.
    pub fn check(files: &CertFiles) -> Result<(), ProxyError> {
        load(files)
            .map(drop)
            .map_err(|reason| ProxyError::Tls { reason })
    }

    /// The TLS settings of a listener serving this store.
    pub(crate) fn server_config(&self) -> Result<Arc<ServerConfig>, ProxyError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ProxyError::Tls {
                reason: e.to_string(),
            })?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(self.clone()));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// Reads again the files that changed since they were read (at most every [`RECHECK`]).
    /// A file that fails to load leaves the previous certificate in service.
    fn refresh(&self) {
        {
            let mut last = self
                .inner
                .last_check
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if last.is_some_and(|at| at.elapsed() < RECHECK) {
                return;
            }
            *last = Some(Instant::now());
        }
        let certs = self
            .inner
            .certs
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for entry in certs {
            let now = stamp(&entry.files);
            let mut seen = entry.stamp.lock().unwrap_or_else(PoisonError::into_inner);
            if *seen == now {
                continue;
            }
            *seen = now;
            match load(&entry.files) {
                Ok(key) => {
                    *entry.key.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(key);
                    tracing::info!(name = %entry.name, cert = %entry.files.cert.display(), "certificate reloaded");
                }
                Err(reason) => {
                    tracing::warn!(name = %entry.name, %reason, "a changed certificate could not be loaded; the previous one stays");
                }
            }
        }
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.refresh();
        let certs = self
            .inner
            .certs
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let entry = match hello.server_name() {
            Some(name) => {
                let name = name.to_ascii_lowercase();
                certs
                    .iter()
                    .filter_map(|e| e.hosts.score(&name, "/").map(|s| (s, e)))
                    .max_by(|a, b| a.0.cmp(&b.0))
                    .map(|(_, e)| e)
            }
            // No SNI (a client connecting by IP): the first certificate.
            None => certs.first(),
        }?;
        Some(Arc::clone(
            &entry.key.read().unwrap_or_else(PoisonError::into_inner),
        ))
    }
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let certs = self
            .inner
            .certs
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        f.debug_list()
            .entries(
                certs
                    .iter()
                    .map(|e| (&e.name, e.hosts.hosts(), &e.files.cert)),
            )
            .finish()
    }
}

impl PartialEq for CertStore {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Eq for CertStore {}

/// The handshake side of a TLS listener.
#[derive(Clone)]
pub(crate) struct Acceptor(pub(crate) tokio_rustls::TlsAcceptor);

impl fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Acceptor")
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn stamp(files: &CertFiles) -> Stamp {
    (modified(&files.cert), modified(&files.key))
}

fn load(files: &CertFiles) -> Result<CertifiedKey, String> {
    let cert_path = files.cert.display();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| format!("{cert_path}: {e}"))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{cert_path}: {e}"))?;
    if chain.is_empty() {
        return Err(format!("{cert_path}: no certificate in it"));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| format!("{}: {e}", files.key.display()))?;
    let provider = rustls::crypto::ring::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("{}: {e}", files.key.display()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|e| format!("{cert_path} and {}: {e}", files.key.display()))?;
    Ok(certified)
}
