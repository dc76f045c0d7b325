use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// What every container of a service is created from, besides its image.
///
/// Plain data: the Docker adapter maps each field onto the Engine API. Fields left empty keep
/// the image's own defaults (its `CMD`, `ENTRYPOINT`, user and working directory).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerTemplate {
    /// Environment variables, in addition to the image's and to the `DEPLOYER_*` ones.
    pub env: BTreeMap<String, String>,
    /// Replaces the image's `CMD`.
    pub command: Option<Vec<String>>,
    /// Replaces the image's `ENTRYPOINT`.
    pub entrypoint: Option<Vec<String>>,
    /// Bind mounts and named volumes in `docker run -v` syntax (`src:dst[:ro]`).
    pub volumes: Vec<String>,
    /// Extra labels; deployer's own `deployer.*` labels are added on top.
    pub labels: BTreeMap<String, String>,
    /// Host port publications in `docker run -p` syntax, for services not behind the proxy.
    pub ports: Vec<String>,
    /// Network to attach to, instead of the default bridge.
    pub network: Option<String>,
    /// Docker restart policy name (`no`, `always`, `unless-stopped`, `on-failure`).
    pub restart: Option<String>,
    /// User to run as.
    pub user: Option<String>,
    /// Working directory.
    pub workdir: Option<String>,
    /// Memory limit in bytes.
    pub memory_bytes: Option<u64>,
    /// CPU limit in units of 1e-9 CPUs (Docker's `NanoCpus`).
    pub nano_cpus: Option<u64>,
}

/// A directory with a Dockerfile to build instead of pulling (hanoverd's mode).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildSpec {
    /// The build context.
    pub context: PathBuf,
    /// Dockerfile path inside the context; `Dockerfile` when absent.
    #[serde(default)]
    pub dockerfile: Option<String>,
    /// `--build-arg` values.
    #[serde(default)]
    pub args: BTreeMap<String, String>,
}
