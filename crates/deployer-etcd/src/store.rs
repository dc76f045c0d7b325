//! The etcd connection: request timeouts, error mapping, re-authentication, read options.

use std::future::Future;
use std::time::Duration;

use deployer_core::ports::CoordinatorError;
use etcd_client::{
    Certificate, Client, ConnectOptions, GetOptions, GetResponse, Identity, TlsOptions, Txn,
    TxnResponse,
};

use crate::config::{Consistency, EtcdConfig};
use crate::error::ConnectError;

/// A request that got no answer in time.
#[derive(Debug, thiserror::Error)]
#[error("etcd did not answer within {0:?}")]
pub(crate) struct TimedOut(pub(crate) Duration);

/// One etcd client plus what every request needs. Cheap to clone (the client is a set of
/// handles on one shared gRPC channel).
#[derive(Clone)]
pub(crate) struct Store {
    client: Client,
    request_timeout: Duration,
    consistency: Consistency,
    /// Kept to re-authenticate when etcd drops our token (tokens expire after
    /// `--auth-token-ttl` of disuse and on some leader changes; etcd-client does not renew them).
    credentials: Option<(String, String)>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("request_timeout", &self.request_timeout)
            .field("consistency", &self.consistency)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Connects to the configured endpoints. Without authentication the channel connects
    /// lazily, so this succeeds even while etcd is down; with it, etcd must answer now.
    pub(crate) async fn connect(config: &EtcdConfig) -> Result<Self, ConnectError> {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(config.dial_timeout)
            // HTTP/2 pings find a dead connection (a member that vanished without closing
            // its sockets) so watches and keep-alives fail over instead of hanging. etcd
            // answers pings more frequent than 5 s, or pings on a connection without streams,
            // with GOAWAY; the lease keep-alive stream is always open, so pings every 10 s
            // while streams exist are welcome.
            .with_keep_alive(Duration::from_secs(10), config.dial_timeout)
            .with_keep_alive_while_idle(false);
        if let Some(tls) = &config.tls {
            options = options.with_tls(tls_options(tls)?);
        }
        let credentials = config.user.clone().zip(config.password.clone());
        if let Some((user, password)) = &credentials {
            options = options.with_user(user.clone(), password.clone());
        }
        let connect = Client::connect(config.endpoints.clone(), Some(options));
        let client = tokio::time::timeout(config.dial_timeout + config.request_timeout, connect)
            .await
            .map_err(|_| ConnectError::Unreachable {
                endpoints: config.endpoints.clone(),
                source: Box::new(TimedOut(config.dial_timeout + config.request_timeout)),
            })?
            .map_err(|e| ConnectError::Unreachable {
                endpoints: config.endpoints.clone(),
                source: Box::new(e),
            })?;
        Ok(Self {
            client,
            request_timeout: config.request_timeout,
            consistency: config.consistency,
            credentials,
        })
    }

    /// A client handle for a long-lived stream (watch, keep-alive).
    pub(crate) fn client(&self) -> Client {
        self.client.clone()
    }

    /// How long one request may take.
    pub(crate) fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// Options for a plain read of a prefix, with the configured consistency.
    pub(crate) fn read_prefix(&self) -> GetOptions {
        let options = GetOptions::new().with_prefix();
        match self.consistency {
            Consistency::Linearizable => options,
            Consistency::Serializable => options.with_serializable(),
        }
    }

    /// Options for a plain read of one key, with the configured consistency.
    pub(crate) fn read_key(&self) -> Option<GetOptions> {
        match self.consistency {
            Consistency::Linearizable => None,
            Consistency::Serializable => Some(GetOptions::new().with_serializable()),
        }
    }

    /// Runs one request with the request timeout, mapping failures to
    /// [`CoordinatorError::Unavailable`]. When etcd says our token is no longer valid, logs in
    /// again once and repeats the request.
    pub(crate) async fn call<T, F, Fut>(
        &self,
        operation: &'static str,
        request: F,
    ) -> Result<T, CoordinatorError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let mut reauthenticated = false;
        loop {
            let answer = tokio::time::timeout(self.request_timeout, request(self.client.clone()))
                .await
                .map_err(|_| unavailable(operation, TimedOut(self.request_timeout)))?;
            match answer {
                Ok(value) => return Ok(value),
                Err(e) if !reauthenticated && is_token_invalid(&e) => {
                    reauthenticated = true;
                    self.reauthenticate(operation).await?;
                }
                Err(e) => return Err(unavailable(operation, e)),
            }
        }
    }

    /// After a stream (watch, keep-alive) failed to open: logs in again if etcd rejected our
    /// token, so the next attempt can succeed. Unary requests do this inside [`Store::call`].
    pub(crate) async fn recover(&self, error: &etcd_client::Error) {
        if is_token_invalid(error)
            && let Err(e) = self.reauthenticate("log in again").await
        {
            tracing::warn!(error = %e, "cannot log in to etcd again yet");
        }
    }

    async fn reauthenticate(&self, operation: &'static str) -> Result<(), CoordinatorError> {
        let Some((user, password)) = self.credentials.clone() else {
            return Ok(());
        };
        tracing::info!("etcd rejected our token; logging in again");
        let mut client = self.client.clone();
        // The token lives behind a lock shared by every clone of the client. etcd rejects
        // even the login request while it carries the stale token, so drop it first.
        client.remove_client_auth();
        tokio::time::timeout(self.request_timeout, client.set_client_auth(user, password))
            .await
            .map_err(|_| unavailable(operation, TimedOut(self.request_timeout)))?
            .map_err(|e| unavailable(operation, e))
    }

    /// A range read of `key` with `options`.
    pub(crate) async fn get(
        &self,
        operation: &'static str,
        key: &str,
        options: Option<GetOptions>,
    ) -> Result<GetResponse, CoordinatorError> {
        self.call(operation, |mut client| {
            let options = options.clone();
            async move { client.get(key, options).await }
        })
        .await
    }

    /// Every key under `prefix`, read with the configured consistency.
    pub(crate) async fn list(
        &self,
        operation: &'static str,
        prefix: &str,
    ) -> Result<GetResponse, CoordinatorError> {
        self.get(operation, prefix, Some(self.read_prefix())).await
    }

    /// A transaction.
    pub(crate) async fn txn(
        &self,
        operation: &'static str,
        txn: Txn,
    ) -> Result<TxnResponse, CoordinatorError> {
        self.call(operation, |mut client| {
            let txn = txn.clone();
            async move { client.txn(txn).await }
        })
        .await
    }
}

/// The error for a request that failed underneath.
pub(crate) fn unavailable(
    operation: &'static str,
    source: impl std::error::Error + Send + Sync + 'static,
) -> CoordinatorError {
    CoordinatorError::Unavailable {
        operation,
        source: Box::new(source),
    }
}

/// Whether etcd rejected the request's auth token (expired, or made stale by a change to
/// the auth store). etcd-client does not re-export tonic's status codes, and etcd's messages
/// for these two cases are stable (`rpctypes.ErrInvalidAuthToken`, `ErrAuthOldRevision`).
fn is_token_invalid(error: &etcd_client::Error) -> bool {
    matches!(error, etcd_client::Error::GRpcStatus(status)
        if status.message().contains("invalid auth token")
            || status.message().contains("revision of auth store is old"))
}

/// The header revision of a response (0 if etcd sent none, which it always does).
pub(crate) fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> i64 {
    header.map_or(0, etcd_client::ResponseHeader::revision)
}

fn tls_options(files: &crate::config::TlsFiles) -> Result<TlsOptions, ConnectError> {
    let read = |field: &'static str, path: &std::path::Path| {
        std::fs::read(path).map_err(|source| ConnectError::TlsFile {
            field,
            path: path.to_owned(),
            source,
        })
    };
    let mut tls = TlsOptions::new();
    if let Some(ca) = &files.ca {
        tls = tls.ca_certificate(Certificate::from_pem(read("tls.ca", ca)?));
    }
    if let (Some(cert), Some(key)) = (&files.cert, &files.key) {
        tls = tls.identity(Identity::from_pem(
            read("tls.cert", cert)?,
            read("tls.key", key)?,
        ));
    }
    if let Some(domain) = &files.domain {
        tls = tls.domain_name(domain.clone());
    }
    Ok(tls)
}
