//! Targets: "repo:tag should run digest D", as published to a coordinator.
//!
//! The rules that decide whether a publish is accepted ([`decide`]) and how a halt applies
//! ([`apply_halt`]) live here, beside the types, so that every coordinator (in memory, the
//! durable local store, etcd) applies exactly the same ones.
//!
//! # Which publish wins
//! A target follows the registry: the build pushed *last* wins, whatever ran before. A tag
//! may move back to a digest it had earlier (a CI rollback by retagging, a reproducible
//! rebuild), and that is a new push like any other. Pushes are ordered by the time of the
//! answer that named the digest ([`PublishRequest::as_of`]): the sender's own event time where
//! it has one, or the moment the registry answered when deployer resolved the tag itself.
//! A *replay* is refused: the same event again (its sender-given id was seen before), or an
//! event dated before the current target.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::image::{Digest, ImageRef};
use crate::service::ServiceName;
use crate::time::Timestamp;

/// How many earlier digests a target keeps as rollback destinations.
pub const PREVIOUS_KEPT: usize = 10;

/// How many sender event ids a target remembers to refuse a replay of the same event. Older
/// replays are refused by their date, which is not bounded.
pub const EVENTS_KEPT: usize = 256;

/// How far into the future a sender's clock may be before its event time is not believed:
/// such a time is replaced by the arrival time, so one bad clock cannot freeze a tag.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(60);

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
    /// The sender's id of this event (a registry event's `id`, GitHub's `X-GitHub-Delivery`):
    /// the same id again is a replay.
    pub delivery_id: Option<String>,
    /// When the answer that named `digest` was given: the sender's event time, or the moment
    /// the registry answered a resolve. `None` means "now" (the coordinator's arrival time).
    pub event_time: Option<Timestamp>,
    /// URL the sender wants told how the deploy went (Docker Hub's `callback_url`).
    pub callback_url: Option<String>,
    /// An operator's explicit deploy or rollback: accepted whatever its date, and clears a halt.
    pub force: bool,
    /// With `force`: the one service the operator deploys. A forced publish of the current
    /// digest then clears that service's halt only; `None` clears every halt.
    #[serde(default)]
    pub service: Option<ServiceName>,
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
            service: None,
        }
    }

    /// The instant this request is ordered by, given the coordinator's `now`: its event time,
    /// unless that lies more than [`MAX_CLOCK_SKEW`] in the future (then `now`).
    pub fn as_of(&self, now: Timestamp) -> Timestamp {
        match self.event_time {
            Some(at) if !is_future(at, now) => at,
            _ => now,
        }
    }

    /// Whether the sender dated this request implausibly far in the future.
    pub fn is_from_the_future(&self, now: Timestamp) -> bool {
        self.event_time.is_some_and(|at| is_future(at, now))
    }

    /// The key its event is remembered by: the source and the sender's id.
    fn event_key(&self) -> Option<String> {
        self.delivery_id
            .as_ref()
            .map(|id| format!("{}/{id}", self.source))
    }
}

fn is_future(at: Timestamp, now: Timestamp) -> bool {
    let skew = u64::try_from(MAX_CLOCK_SKEW.as_millis()).unwrap_or(u64::MAX);
    at.as_millis() > now.as_millis().saturating_add(skew)
}

/// A host that failed to switch one service to a target: that service does not start the
/// build on any host any more. Other services tracking the same tag are not affected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Halt {
    /// The service whose switch failed.
    pub service: ServiceName,
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
    /// The sender's event id, if any.
    pub delivery_id: Option<String>,
    /// The instant this target is ordered by ([`PublishRequest::as_of`]); a publish dated
    /// before it is refused.
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
    /// Sender event ids already taken (`source/id`), newest first, at most [`EVENTS_KEPT`].
    #[serde(default)]
    pub seen: Vec<String>,
    /// The services whose switch to this digest failed somewhere; each is halted on every host.
    #[serde(default)]
    pub halts: Vec<Halt>,
    /// Set by an operator's deploy or rollback: the digest it moved the tag away from. Until
    /// the tag moves on to another build, polls and webhooks that still name this one are
    /// refused, so the next poll does not undo a rollback.
    #[serde(default)]
    pub held_from: Option<Digest>,
}

impl Target {
    /// The newest earlier build that did not fail: where a rollback returns to.
    pub fn rollback_digest(&self) -> Option<&Digest> {
        self.previous.iter().find(|d| !self.failed.contains(d))
    }

    /// The halt of `service` for this build, if it failed somewhere.
    pub fn halt_for(&self, service: &ServiceName) -> Option<&Halt> {
        self.halts.iter().find(|h| &h.service == service)
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
    /// Refused: the request is a replay, or older than what the target has.
    Stale {
        /// The current value, which stays.
        current: Target,
        /// Why the request was refused.
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

/// The "the last push wins, replays do not" rule shared by every coordinator (see the module
/// docs). An operator's `force` skips the date and replay checks: that is how rollbacks and
/// retries of a halted build are published.
pub fn decide(current: Option<&Target>, request: &PublishRequest, now: Timestamp) -> Decision {
    let as_of = request.as_of(now);
    let key = request.event_key();
    let write = |current: Option<&Target>, halts: Vec<Halt>| {
        let remember = |list: &[Digest], extra: Option<&Digest>, cap: usize| -> Vec<Digest> {
            extra
                .into_iter()
                .chain(list.iter())
                .filter(|d| **d != request.digest)
                .take(cap)
                .cloned()
                .collect()
        };
        let held_from = match (current, request.force) {
            (Some(c), true) if c.digest != request.digest => Some(c.digest.clone()),
            (Some(c), true) => c.held_from.clone(),
            _ => None,
        };
        let (previous, failed, seen) = match current {
            None => (Vec::new(), Vec::new(), Vec::new()),
            Some(c) => {
                let moved = c.digest != request.digest;
                // A build that was halted stays known as failed while it is remembered, unless
                // it is deployed again on purpose.
                let newly_failed = (!c.halts.is_empty()).then_some(&c.digest);
                (
                    remember(&c.previous, moved.then_some(&c.digest), PREVIOUS_KEPT),
                    remember(&c.failed, newly_failed, PREVIOUS_KEPT),
                    c.seen.clone(),
                )
            }
        };
        let seen = key
            .iter()
            .cloned()
            .chain(seen.into_iter().filter(|k| Some(k) != key.as_ref()))
            .take(EVENTS_KEPT)
            .collect();
        Decision::Write(Target {
            image: request.image.without_digest(),
            digest: request.digest.clone(),
            revision: Revision::default(),
            source: request.source.clone(),
            received_at: now,
            delivery_id: request.delivery_id.clone(),
            event_time: Some(as_of),
            callback_url: request.callback_url.clone(),
            previous,
            failed,
            seen,
            halts,
            held_from,
        })
    };
    let Some(current) = current else {
        return write(None, Vec::new());
    };
    let stale = |reason: String| {
        Decision::Keep(PublishOutcome::Stale {
            current: current.clone(),
            reason,
        })
    };
    // The build it names is already the target: nothing to refuse or change, whether this is
    // a redelivery (a registry retrying after a slow answer) or not.
    if current.digest == request.digest {
        if !request.force {
            return Decision::Keep(PublishOutcome::Unchanged {
                target: current.clone(),
            });
        }
        let halts = match &request.service {
            Some(service) => current
                .halts
                .iter()
                .filter(|h| &h.service != service)
                .cloned()
                .collect(),
            None => Vec::new(),
        };
        return write(Some(current), halts);
    }
    if !request.force
        && let Some(key) = &key
        && current.seen.contains(key)
    {
        return stale(format!("event {key} was taken before (a replay)"));
    }
    if !request.force && current.held_from.as_ref() == Some(&request.digest) {
        return stale(format!(
            "an operator moved {} from {} to {}; a push of another build moves it on",
            current.image,
            request.digest.short(),
            current.digest.short()
        ));
    }
    if !request.force
        && let Some(have) = current.event_time
        && as_of < have
    {
        return stale(format!(
            "{} is dated {as_of}, before the current build {} ({have})",
            request.digest.short(),
            current.digest.short()
        ));
    }
    write(Some(current), Vec::new())
}

/// The target after `halt` is applied, or `None` when it does not apply: the target has moved
/// on from `digest`, or the service is already halted for it.
pub fn apply_halt(current: &Target, digest: &Digest, halt: Halt) -> Option<Target> {
    if &current.digest != digest || current.halt_for(&halt.service).is_some() {
        return None;
    }
    let mut halted = current.clone();
    halted.halts.push(halt);
    Some(halted)
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

    /// A push of build `n` announced by event `id`, dated `secs` seconds.
    fn push(n: u8, id: &str, secs: u64) -> PublishRequest {
        let mut r = request(n);
        r.source = Source::new("registry");
        r.delivery_id = Some(id.to_owned());
        r.event_time = Some(Timestamp::from_millis(secs * 1000));
        r
    }

    const NOW: Timestamp = Timestamp::from_millis(1_000_000);

    fn apply(
        current: Option<&Target>,
        request: &PublishRequest,
    ) -> Result<Target, Box<PublishOutcome>> {
        match decide(current, request, NOW) {
            Decision::Write(t) => Ok(t),
            Decision::Keep(outcome) => Err(Box::new(outcome)),
        }
    }

    fn is_stale(r: &Result<Target, Box<PublishOutcome>>) -> bool {
        matches!(r, Err(b) if matches!(**b, PublishOutcome::Stale { .. }))
    }

    fn halt(service: &str) -> Halt {
        Halt {
            service: ServiceName::new(service).unwrap(),
            node: "a".into(),
            reason: "unhealthy".into(),
            at: Timestamp::from_millis(0),
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
    fn a_later_push_of_an_earlier_build_wins() {
        // The CI rollback by retagging: v1, v2, then v1 again, each a genuine push.
        let v1 = apply(None, &push(1, "e1", 10)).unwrap();
        let v2 = apply(Some(&v1), &push(2, "e2", 20)).unwrap();
        let again = apply(Some(&v2), &push(1, "e3", 30)).expect("a re-push is not a replay");
        assert_eq!(again.digest, digest(1));
        assert_eq!(again.previous, vec![digest(2)], "v1 is not listed twice");
        // A burst of re-pushes settles on the last one.
        let mut current = again;
        for (n, secs) in (2..=7).zip(31..) {
            current = apply(Some(&current), &push(n, &format!("r{n}"), secs)).unwrap();
        }
        assert_eq!(current.digest, digest(7));
    }

    #[test]
    fn a_resolve_without_sender_time_is_the_registry_now() {
        let v1 = apply(None, &push(1, "e1", 10)).unwrap();
        let v2 = apply(Some(&v1), &push(2, "e2", 20)).unwrap();
        // A poll or SIGHUP resolution: dated when the registry answered (here: now).
        let mut poll = request(1);
        poll.source = Source::new("poll");
        let polled = apply(Some(&v2), &poll).expect("what the registry says now wins");
        assert_eq!(polled.digest, digest(1));
        assert_eq!(polled.event_time, Some(NOW));
    }

    #[test]
    fn a_replayed_event_is_refused_however_many_builds_came_since() {
        let first = apply(None, &push(1, "e1", 10)).unwrap();
        let mut current = first;
        for n in 2..40u8 {
            current = apply(
                Some(&current),
                &push(n, &format!("e{n}"), 10 + u64::from(n)),
            )
            .unwrap();
        }
        assert!(
            is_stale(&apply(Some(&current), &push(1, "e1", 10))),
            "dated before"
        );
        // The same event id again, even if someone re-dated it: still a replay.
        assert!(is_stale(&apply(Some(&current), &push(3, "e39", 999))));
        let mut rollback = request(1);
        rollback.force = true;
        assert_eq!(apply(Some(&current), &rollback).unwrap().digest, digest(1));
    }

    #[test]
    fn a_redelivery_of_the_current_build_is_unchanged_not_refused() {
        let v1 = apply(None, &push(1, "e1", 10)).unwrap();
        assert!(matches!(
            apply(Some(&v1), &push(1, "e1", 10)),
            Err(b) if matches!(*b, PublishOutcome::Unchanged { .. })
        ));
    }

    #[test]
    fn a_push_dated_before_the_current_one_is_stale() {
        let current = apply(None, &push(1, "e1", 2)).unwrap();
        assert!(is_stale(&apply(Some(&current), &push(2, "e2", 1))));
    }

    #[test]
    fn an_event_from_the_future_is_dated_on_arrival_and_does_not_freeze_the_tag() {
        let year_4000 = push(1, "e1", 64_060_588_800);
        assert!(year_4000.is_from_the_future(NOW));
        let v1 = apply(None, &year_4000).unwrap();
        assert_eq!(v1.event_time, Some(NOW));
        let later = push(2, "e2", NOW.as_millis() / 1000 + 1);
        assert_eq!(apply(Some(&v1), &later).unwrap().digest, digest(2));
    }

    #[test]
    fn event_memory_is_bounded() {
        let mut current = apply(None, &push(0, "e0", 1)).unwrap();
        for n in 1..=(EVENTS_KEPT + 5) {
            let n8 = u8::try_from(n % 2).unwrap();
            current = apply(Some(&current), &push(n8, &format!("e{n}"), 1 + n as u64)).unwrap();
        }
        assert_eq!(current.seen.len(), EVENTS_KEPT);
        assert_eq!(current.seen[0], format!("registry/e{}", EVENTS_KEPT + 5));
    }

    #[test]
    fn a_rollback_never_returns_to_a_build_that_failed() {
        let v1 = apply(None, &request(1)).unwrap();
        let bad = apply(Some(&v1), &request(9)).unwrap();
        let bad = apply_halt(&bad, &digest(9), halt("web")).unwrap();
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
    fn halts_belong_to_a_service_and_a_forced_deploy_clears_only_its_own() {
        let v1 = apply(None, &request(1)).unwrap();
        let web = apply_halt(&v1, &digest(1), halt("web")).unwrap();
        assert!(apply_halt(&web, &digest(1), halt("web")).is_none(), "once");
        assert!(
            apply_halt(&web, &digest(2), halt("worker")).is_none(),
            "other build"
        );
        let both = apply_halt(&web, &digest(1), halt("worker")).unwrap();
        assert!(both.halt_for(&ServiceName::new("web").unwrap()).is_some());
        let mut retry = request(1);
        retry.force = true;
        retry.service = Some(ServiceName::new("worker").unwrap());
        let retried = apply(Some(&both), &retry).unwrap();
        assert_eq!(retried.halts, vec![halt("web")]);
        retry.service = None;
        assert!(apply(Some(&both), &retry).unwrap().halts.is_empty());
    }

    #[test]
    fn an_operator_rollback_holds_until_the_tag_moves_on() {
        let v1 = apply(None, &push(1, "e1", 10)).unwrap();
        let v2 = apply(Some(&v1), &push(2, "e2", 20)).unwrap();
        let mut rollback = request(1);
        rollback.force = true;
        let rolled = apply(Some(&v2), &rollback).unwrap();
        assert_eq!(rolled.held_from, Some(digest(2)));
        // The registry still says v2: the next poll does not undo the rollback.
        assert!(is_stale(&apply(Some(&rolled), &request(2))));
        let v3 = apply(Some(&rolled), &push(3, "e3", NOW.as_millis() / 1000)).unwrap();
        assert_eq!((v3.digest.clone(), v3.held_from), (digest(3), None));
    }

    #[test]
    fn history_is_bounded() {
        let mut current = apply(None, &request(0)).unwrap();
        for n in 1..30 {
            current = apply(Some(&current), &request(n)).unwrap();
        }
        assert_eq!(current.previous.len(), PREVIOUS_KEPT);
        assert_eq!(current.previous[0], digest(28));
    }
}
