//! What happened: deploy reports (for notifiers and history) and service statuses (for `status`).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::image::{Digest, ImageRef};
use crate::reconcile::Generation;
use crate::service::ServiceName;
use crate::target::{Revision, Source};
use crate::time::Timestamp;

/// How a deploy ended (or that it began).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A rollout began. Sent to every notifier; each decides whether to show it (Slack's
    /// `notify_started`).
    Started,
    /// The new generation serves; the old one is gone.
    Succeeded,
    /// The candidate failed; the previous generation serves again.
    RolledBack,
    /// The deploy failed and so did putting things back, or it could not start at all.
    Failed,
    /// A newer target arrived before the candidate took traffic; the candidate was removed.
    Superseded,
    /// Another host failed this build first, so this host did not start it.
    Skipped,
    /// A live container that died or left the proxy was brought back (the same build).
    Repaired,
}

impl Outcome {
    /// The outcome's name, as in JSON and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::Succeeded => "succeeded",
            Self::RolledBack => "rolled_back",
            Self::Failed => "failed",
            Self::Superseded => "superseded",
            Self::Skipped => "skipped",
            Self::Repaired => "repaired",
        }
    }

    /// Whether this ends a deploy (every outcome but [`Started`](Self::Started)).
    pub fn is_final(self) -> bool {
        self != Self::Started
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One deploy's record: sent to notifiers, kept in history, counted in metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployReport {
    /// The service deployed.
    pub service: ServiceName,
    /// The host that deployed it.
    pub node: String,
    /// The tracked repo:tag.
    pub image: ImageRef,
    /// How it ended.
    pub outcome: Outcome,
    /// Build that served before.
    pub from: Option<Digest>,
    /// Build that was deployed.
    pub to: Option<Digest>,
    /// Generation created for the new build.
    pub generation: Option<Generation>,
    /// Coordinator revision of the target.
    pub revision: Option<Revision>,
    /// Who asked for the deploy.
    pub source: Option<Source>,
    /// The sender's delivery id, if any.
    pub delivery_id: Option<String>,
    /// Where the sender wants the result reported, if it asked.
    pub callback_url: Option<String>,
    /// Why it did not succeed.
    pub reason: Option<String>,
    /// Why putting things back failed too, when it did.
    pub rollback_error: Option<String>,
    /// Requests or connections cut at drain deadlines.
    pub cut: u64,
    /// Problems that did not fail the deploy (an old container that would not stop, ...).
    pub warnings: Vec<String>,
    /// When the deploy began.
    pub started_at: Timestamp,
    /// When it ended.
    pub finished_at: Timestamp,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
}

/// What a service is doing, as shown by `deployer status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ServiceState {
    /// Finding out what runs after a start or a failure.
    Recovering,
    /// Live matches the target.
    Idle,
    /// Waiting for a free local deploy slot.
    Queued,
    /// Pulling or building.
    Fetching,
    /// Waiting for a cluster rollout slot.
    WaitingForSlot,
    /// Starting candidate containers.
    Starting,
    /// Probing candidates.
    Probing,
    /// Moving traffic.
    Promoting,
    /// The new build serves; it is watched while the old one stands by.
    Watching,
    /// Draining and stopping the old generation.
    Draining,
    /// Putting the previous generation back.
    RollingBack,
    /// The live build is being repaired: one of its containers died or left the proxy.
    Degraded,
    /// Waiting to retry after a transient failure.
    Backoff,
    /// The current target's build failed for this service (here or on another host) and is
    /// halted for it.
    Halted,
    /// Gave up on the current target without blaming the build (not found, not authorised,
    /// retries used up).
    Failed,
    /// Shut down.
    Stopped,
}

impl ServiceState {
    /// The state's name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Recovering => "recovering",
            Self::Idle => "idle",
            Self::Queued => "queued",
            Self::Fetching => "fetching",
            Self::WaitingForSlot => "waiting_for_slot",
            Self::Starting => "starting",
            Self::Probing => "probing",
            Self::Promoting => "promoting",
            Self::Watching => "watching",
            Self::Draining => "draining",
            Self::RollingBack => "rolling_back",
            Self::Degraded => "degraded",
            Self::Backoff => "backoff",
            Self::Halted => "halted",
            Self::Failed => "failed",
            Self::Stopped => "stopped",
        }
    }

    /// Whether a deploy is under way (counts toward "deploys in flight").
    pub fn is_deploying(self) -> bool {
        matches!(
            self,
            Self::Fetching
                | Self::WaitingForSlot
                | Self::Starting
                | Self::Probing
                | Self::Promoting
                | Self::Watching
                | Self::Draining
                | Self::RollingBack
        )
    }
}

impl fmt::Display for ServiceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One service on one host, as reported to the coordinator and the admin API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatus {
    /// The service.
    pub service: ServiceName,
    /// The host.
    pub node: String,
    /// The tracked repo:tag.
    pub image: ImageRef,
    /// What it is doing.
    pub state: ServiceState,
    /// Build that serves now.
    pub live: Option<Digest>,
    /// Generation that serves now.
    pub generation: Option<Generation>,
    /// Build the coordinator wants.
    pub target: Option<Digest>,
    /// Where clients reach it (the proxy's address), when it serves behind deployer's proxy.
    pub endpoint: Option<String>,
    /// Last problem, if the state is a failure state.
    pub message: Option<String>,
    /// When this status was written.
    pub updated_at: Timestamp,
}
