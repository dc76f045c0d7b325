//! Command-line interface: `run` starts the daemon; the other commands talk to its admin API.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::{LogFormat, Overrides};

/// Keeps Docker hosts on the newest good build of every image, with zero downtime.
#[derive(Debug, Parser)]
#[command(name = "deployer", version, about, propagate_version = true)]
pub struct Cli {
    /// Log format: text for people, json for log shippers.
    #[arg(long, global = true, env = "DEPLOYER_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon.
    Run {
        /// The config file (without one: built-in defaults, no services).
        #[arg(long, short, env = "DEPLOYER_CONFIG")]
        config: Option<PathBuf>,
        #[command(flatten)]
        overrides: Overrides,
    },
    /// Show every service: state, live and target builds; and the fleet, with etcd.
    Status {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Deploy a service now: the tracked tag re-resolved, another tag, or a digest.
    Deploy {
        /// The service.
        service: String,
        /// Another tag or a digest of the tracked repository (`app:v2`, `app@sha256:...`).
        #[arg(long)]
        image: Option<String>,
        #[command(flatten)]
        wait: WaitArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Return a service to the build before the current one (fleet-wide).
    Rollback {
        /// The service.
        service: String,
        #[command(flatten)]
        wait: WaitArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Hold new requests to a service's proxy (each up to --hold, then 503) until `resume`.
    Pause {
        /// The service.
        service: String,
        /// How long one request may be held (1s to 5m).
        #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
        hold: std::time::Duration,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Answer new requests to a service's proxy 503 with a message until `resume`.
    Maintenance {
        /// The service.
        service: String,
        /// The body of the 503 answers.
        #[arg(long)]
        message: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Forward new requests to a service's proxy again after `pause` or `maintenance`.
    Resume {
        /// The service.
        service: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Make the daemon read its config file again and apply its services without a restart
    /// (added ones start, changed ones restart their actor, removed ones are taken down).
    Reload {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show past deploys, newest first.
    History {
        /// Only this service.
        #[arg(long)]
        service: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Work with config files.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// The proxy process that carries handover services' traffic.
    Proxy {
        #[command(subcommand)]
        command: ProxyCommand,
    },
}

/// Proxy subcommands.
#[derive(Debug, Subcommand)]
pub enum ProxyCommand {
    /// Run the proxy process (`deployer run` starts one when none serves its socket).
    Run {
        #[command(flatten)]
        paths: ProxyArgs,
        /// Internal: take the listeners over from the process serving this handoff socket.
        #[arg(long, hide = true)]
        takeover: Option<PathBuf>,
    },
    /// Send one request of the control API (a JSON object, e.g. '{"v":1,"op":"list"}') and
    /// print the answer; exits 1 when the proxy refused it.
    Call {
        /// The request.
        request: String,
        #[command(flatten)]
        paths: ProxyArgs,
    },
    /// Print the routes the proxy serves, as JSON.
    Routes {
        #[command(flatten)]
        paths: ProxyArgs,
    },
    /// Replace the running proxy process with one of this binary, without refusing a
    /// connection: the new one takes the listening sockets over, the old one drains and exits.
    Upgrade {
        #[command(flatten)]
        paths: ProxyArgs,
    },
}

/// Where the proxy process's socket and state are.
#[derive(Debug, Clone, Args)]
pub struct ProxyArgs {
    /// The control socket (default: from --config, else /var/lib/deployer/proxy.sock).
    #[arg(long, env = "DEPLOYER_PROXY_SOCKET")]
    pub socket: Option<PathBuf>,
    /// The routing state file (default: from --config, else /var/lib/deployer/proxy-state.json).
    #[arg(long, env = "DEPLOYER_PROXY_STATE")]
    pub state: Option<PathBuf>,
    /// Read the paths from this config file's `[proxy]` section.
    #[arg(long, short, env = "DEPLOYER_CONFIG")]
    pub config: Option<PathBuf>,
}

/// Config subcommands.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a config file as `run` would, without binding or connecting anything.
    Check {
        /// The file.
        file: PathBuf,
        #[command(flatten)]
        overrides: Overrides,
    },
}

/// How to reach the admin API.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Admin API address (default: from --config, else http://127.0.0.1:4501).
    #[arg(long, env = "DEPLOYER_ADMIN")]
    pub admin: Option<String>,
    /// Admin API bearer token (default: from --config).
    #[arg(long, env = "DEPLOYER_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Read the admin address and token from this config file.
    #[arg(long, short, env = "DEPLOYER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print JSON for scripts instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// Whether and how long to follow a deploy.
#[derive(Debug, Clone, Args)]
pub struct WaitArgs {
    /// Return once the target is published, without following the deploy.
    #[arg(long)]
    pub no_wait: bool,
    /// Give up following after this long.
    #[arg(long, default_value = "15m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}
