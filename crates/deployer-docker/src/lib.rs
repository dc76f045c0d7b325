//! # deployer-docker
//!
//! deployer's adapters for the Docker engine (through bollard, at a negotiated API version):
//!
//! - [`DockerImageSource`]: the core's `ImageSource`: resolve a tag at its registry without
//!   pulling, pull `repo@digest` only when it is not local (credentials from a Docker
//!   `config.json`), or build a directory with a Dockerfile.
//! - [`DockerSwitcher`]: the core's `Switcher`: handover (behind a `deployer_plane::DataPlane`),
//!   recreate (identical config, new image) and stop (leave the restart to a supervisor).
//! - [`discover_adopted`]: services made of existing containers labelled `deployer.enable=true`;
//!   [`follow_adoptions`] adopts and forgets them while the daemon runs.
//! - [`ImagePruner`]: opt-in cleanup of old images after successful deploys.
//! - [`RedbJournal`]: the core's `Journal`, durable in one redb file.
//! - [`RedbStore`]: the single-host coordinator's store (targets, halts, statuses, history) in
//!   the same file, for `MemoryCoordinator::with_store`.
//!
//! Entry point for the binary: [`connect::connect`], then the adapters.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use deployer_docker::connect::{ProcessEnv, connect};
//! use deployer_docker::{Credentials, DockerImageSource, RedbJournal};
//!
//! let docker = connect(None, &ProcessEnv).await?;
//! let images = DockerImageSource::new(docker.clone(), Credentials::from_env(&ProcessEnv));
//! let journal = RedbJournal::open("/var/lib/deployer/journal.redb")?;
//! let coordinator = deployer_core::memory::MemoryCoordinator::new("host-a")
//!     .with_store(std::sync::Arc::new(journal.store()))?;
//! # let _ = (images, journal, coordinator);
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

mod adopt;
pub mod connect;
pub mod credentials;
mod error;
pub mod image_source;
pub mod journal;
mod prune;
pub mod store;
pub mod switcher;

pub use adopt::{discover_adopted, follow_adoptions};
pub use connect::{DockerEndpoint, EnvSource, ProcessEnv};
pub use credentials::{Credentials, RegistryAuth};
pub use error::DockerError;
pub use image_source::DockerImageSource;
pub use journal::{DEFAULT_JOURNAL_PATH, OpenJournalError, RedbJournal};
pub use prune::ImagePruner;
pub use store::RedbStore;
pub use switcher::{DockerSwitcher, ServiceProxyStats, SwitcherConfig};
