//! Why a coordinator could not be built. Errors of the running coordinator are
//! [`deployer_core::ports::CoordinatorError`]s.

use std::path::PathBuf;

use deployer_core::ports::{BoxError, CoordinatorError};

use crate::config::ConfigError;

/// Why [`EtcdCoordinator::connect`](crate::EtcdCoordinator::connect) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// A setting makes no sense.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A TLS file could not be read.
    #[error("cannot read etcd.{field} ({path}): {source}")]
    TlsFile {
        /// The setting that names the file.
        field: &'static str,
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// No configured member answered (or the credentials were refused).
    #[error("cannot connect to etcd at {}", endpoints.join(", "))]
    Unreachable {
        /// The configured endpoints.
        endpoints: Vec<String>,
        /// What went wrong.
        #[source]
        source: BoxError,
    },
    /// etcd answered but this host could not register (lease grant or host key).
    #[error("cannot register this host in etcd")]
    Register(#[source] CoordinatorError),
}
