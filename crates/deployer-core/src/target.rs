//! Targets: "repo:tag should run digest D", as published to a coordinator.
//!
//! The rule that decides whether a publish is accepted ([`decide`]) lives here, beside the
//! types, so that every coordinator (in memory, etcd) applies exactly the same one.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::image::{Digest, ImageRef};
use crate::time::Timestamp;

/// How many superseded digests a target remembers, to refuse replays of old builds.
pub const PREVIOUS_KEPT: usize = 10;

/// A coordinator's logical clock: every accepted change to any target gets a higher revision.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Revision(pub u64);

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{}", self.0)
    }
}

/// Who asked for a target: `dockerhub`, `registry`, `github`, `poll`, `cli`, or a custom trigger.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Source(Arc<str>);

impl Source {
    /// A source called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self(name.into().into())
    }

    /// The source's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A request to make `image` (a repo:tag) run `digest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishRequest {
    /// The tracked repo:tag (a digest in it is ignored).
    pub image: ImageRef,
    /// The build to run.
    pub digest: Digest,
    /// Who asked.
    pub source: Source,
    /// The sender's delivery id, when it has one (GitHub's `X-GitHub-Delivery`).
    pub delivery_id: Option<String>,
    /// When the sender says the build was pushed; older pushes never replace newer ones.
    pub event_time: Option<Timestamp>,
    /// URL the sender wants told how the deploy went (Docker Hub's `callback_url`).
    pub callback_url: Option<String>,
    /// An operator's explicit deploy or rollback: accepted even for an old digest, and clears a halt.
    pub force: bool,
}

impl PublishRequest {
    /// A plain request from `source`, with no delivery id, event time or callback.
    pub fn new(image: ImageRef, digest: Digest, source: Source) -> Self {
        let image = match image.digest() {
            Some(_) => image.without_digest(),
            None => image,
        };
        Self {
            image,
            digest,
            source,
            delivery_id: None,
            event_time: None,
            callback_url: None,
            force: false,
        }
    }
}

/// A host that failed to switch to a target, which halts its rollout on every host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Halt {
    /// The node whose switch failed.
    pub node: String,
    /// Why it failed.
    pub reason: String,
    /// When.
    pub at: Timestamp,
}

/// The current desired build of one repo:tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// The tracked repo:tag, without digest.
    pub image: ImageRef,
    /// The build every service tracking `image` should run.
    pub digest: Digest,
    /// The coordinator revision at which this value was written.
    pub revision: Revision,
    /// Who asked.
    pub source: Source,
    /// When the coordinator accepted it.
    pub received_at: Timestamp,
    /// The sender's delivery id, if any.
    pub delivery_id: Option<String>,
    /// When the sender says the build was pushed, if it said.
    pub event_time: Option<Timestamp>,
    /// Where to report the result, if the sender asked.
    pub callback_url: Option<String>,
    /// Digests this target had before, newest first, at most [`PREVIOUS_KEPT`].
    #[serde(default)]
    pub previous: Vec<Digest>,
    /// Of those, the ones that failed (were halted) while they were the target: never a
    /// rollback destination.
    #[serde(default)]
    pub failed: Vec<Digest>,
    /// Set when a host failed to switch to this digest: no host starts it any more.
    #[serde(default)]
    pub halted: Option<Halt>,
}

impl Target {
    /// The newest earlier build that did not fail: where a rollback returns to.
    pub fn rollback_digest(&self) -> Option<&Digest> {
        self.previous.iter().find(|d| !self.failed.contains(d))
    }
}

/// What became of a publish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum PublishOutcome {
    /// Accepted: the target now has this value.
    Published {
        /// The new value.
        target: Target,
    },
    /// The target already had this digest; nothing changed.
    Unchanged {
        /// The current value.
        target: Target,
    },
    /// Refused: the request is older than what the target has.
    Stale {
        /// The current value, which stays.
        current: Target,
        /// Why the request counts as older.
        reason: String,
    },
}

impl PublishOutcome {
    /// The target as it stands after the publish.
    pub fn target(&self) -> &Target {
        match self {
            Self::Published { target } | Self::Unchanged { target } => target,
            Self::Stale { current, .. } => current,
        }
    }

    /// Short word for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Published { .. } => "published",
            Self::Unchanged { .. } => "unchanged",
            Self::Stale { .. } => "stale",
        }
    }
}

/// What a coordinator must do with a publish request, given the current value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Write this value (its revision is filled in by the coordinator when it commits).
    Write(Target),
    /// Leave the target alone and answer with this outcome.
    Keep(PublishOutcome),
}

/// The "publish only if newer" rule shared by every coordinator.
///
/// A request is stale when its digest was superseded earlier (a replayed webhook) or when the
/// sender dates it before the current target's push. An operator's `force` skips both checks,
/// which is how rollbacks and retries of a halted build are published.
pub fn decide(current: Option<&Target>, request: &PublishRequest, now: Timestamp) -> Decision {
    // A build that was halted stays known as failed while it is remembered, unless it is
    // deployed again on purpose.
    let failed = |current: &Target| -> Vec<Digest> {
        let newly = current.halted.as_ref().map(|_| current.digest.clone());
        newly
            .into_iter()
            .chain(current.failed.iter().cloned())
            .filter(|d| *d != request.digest)
            .take(PREVIOUS_KEPT)
            .collect()
    };
    let write = |previous: Vec<Digest>, failed: Vec<Digest>| {
        Decision::Write(Target {
            image: request.image.without_digest(),
            digest: request.digest.clone(),
            revision: Revision::default(),
            source: request.source.clone(),
            received_at: now,
            delivery_id: request.delivery_id.clone(),
            event_time: request.event_time,
            callback_url: request.callback_url.clone(),
            previous,
            failed,
            halted: None,
        })
    };
    let Some(current) = current else {
        return write(Vec::new(), Vec::new());
    };
    if current.digest == request.digest {
        return if request.force {
            write(current.previous.clone(), failed(current))
        } else {
            Decision::Keep(PublishOutcome::Unchanged {
                target: current.clone(),
            })
        };
    }
    if !request.force {
        let stale = |reason: String| {
            Decision::Keep(PublishOutcome::Stale {
                current: current.clone(),
                reason,
            })
        };
        if current.previous.contains(&request.digest) {
            return stale(format!(
                "{} was already replaced by {}",
                request.digest.short(),
                current.digest.short()
            ));
        }
        if let (Some(asked), Some(have)) = (request.event_time, current.event_time)
            && asked < have
        {
            return stale(format!(
                "pushed at {asked}, before the current build ({have})"
            ));
        }
    }
    let mut previous = Vec::with_capacity(PREVIOUS_KEPT);
    previous.push(current.digest.clone());
    previous.extend(
        current
            .previous
            .iter()
            .filter(|d| **d != request.digest)
            .take(PREVIOUS_KEPT - 1)
            .cloned(),
    );
    write(previous, failed(current))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: u8) -> Digest {
        Digest::sha256(&format!("{n:02x}").repeat(32)).unwrap()
    }

    fn request(n: u8) -> PublishRequest {
        PublishRequest::new(
            "app:latest".parse().unwrap(),
            digest(n),
            Source::new("test"),
        )
    }

    fn apply(
        current: Option<&Target>,
        request: &PublishRequest,
    ) -> Result<Target, Box<PublishOutcome>> {
        match decide(current, request, Timestamp::from_millis(1)) {
            Decision::Write(t) => Ok(t),
            Decision::Keep(outcome) => Err(Box::new(outcome)),
        }
    }

    #[test]
    fn newer_digest_replaces_and_remembers_the_old_one() {
        let first = apply(None, &request(1)).unwrap();
        let second = apply(Some(&first), &request(2)).unwrap();
        assert_eq!(second.digest, digest(2));
        assert_eq!(second.previous, vec![digest(1)]);
    }

    #[test]
    fn same_digest_is_unchanged() {
        let first = apply(None, &request(1)).unwrap();
        assert!(matches!(
            apply(Some(&first), &request(1)),
            Err(b) if matches!(*b, PublishOutcome::Unchanged { .. })
        ));
    }

    #[test]
    fn replayed_old_digest_is_stale_unless_forced() {
        let first = apply(None, &request(1)).unwrap();
        let second = apply(Some(&first), &request(2)).unwrap();
        let replay = apply(Some(&second), &request(1)).unwrap_err();
        assert!(
            matches!(*replay, PublishOutcome::Stale { .. }),
            "{replay:?}"
        );
        let mut rollback = request(1);
        rollback.force = true;
        let rolled = apply(Some(&second), &rollback).unwrap();
        assert_eq!(rolled.digest, digest(1));
        assert_eq!(rolled.previous, vec![digest(2)]);
    }

    #[test]
    fn a_push_dated_before_the_current_one_is_stale() {
        let mut newer = request(1);
        newer.event_time = Some(Timestamp::from_millis(2_000));
        let current = apply(None, &newer).unwrap();
        let mut older = request(2);
        older.event_time = Some(Timestamp::from_millis(1_000));
        assert!(matches!(
            apply(Some(&current), &older),
            Err(b) if matches!(*b, PublishOutcome::Stale { .. })
        ));
    }

    #[test]
    fn a_rollback_never_returns_to_a_build_that_failed() {
        let v1 = apply(None, &request(1)).unwrap();
        let mut bad = apply(Some(&v1), &request(9)).unwrap();
        bad.halted = Some(Halt {
            node: "a".into(),
            reason: "unhealthy".into(),
            at: Timestamp::from_millis(0),
        });
        let v2 = apply(Some(&bad), &request(2)).unwrap();
        assert_eq!(v2.previous, vec![digest(9), digest(1)]);
        assert_eq!(v2.failed, vec![digest(9)]);
        assert_eq!(v2.rollback_digest(), Some(&digest(1)));
        let mut retry = request(9);
        retry.force = true;
        let retried = apply(Some(&v2), &retry).unwrap();
        assert!(
            retried.failed.is_empty(),
            "deployed again on purpose: no longer known as failed"
        );
    }

    #[test]
    fn history_is_bounded_and_forced_same_digest_clears_a_halt() {
        let mut current = apply(None, &request(0)).unwrap();
        for n in 1..30 {
            current = apply(Some(&current), &request(n)).unwrap();
        }
        assert_eq!(current.previous.len(), PREVIOUS_KEPT);
        assert_eq!(current.previous[0], digest(28));
        current.halted = Some(Halt {
            node: "a".into(),
            reason: "unhealthy".into(),
            at: Timestamp::from_millis(0),
        });
        let mut retry = request(29);
        retry.force = true;
        let retried = apply(Some(&current), &retry).unwrap();
        assert_eq!(retried.halted, None);
    }
}
