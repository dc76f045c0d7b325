//! The poll trigger: resolve every tracked tag now and then, and submit what it points to.
//!
//! Every poll submits the digest it found, changed or not: the coordinator answers "unchanged"
//! for free, and this way a poll also repairs what a lost webhook or a full queue left behind.
//! A poll's answer is dated when it asked the registry, so it wins over pushes announced
//! before and loses to pushes announced after; a tag moved back to an earlier build is
//! followed. An operator's rollback holds until the tag moves to another build.

use std::collections::BTreeSet;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use deployer_core::driver::{DriverHandle, EventSink, SubmitError};
use deployer_core::ports::{ImageEvent, ImageSource, Trigger, TriggerError};
use deployer_core::shutdown::Shutdown;
use deployer_core::{ImageRef, Source, Timestamp};
use tokio::time::Instant;

use crate::config::{ConfigError, PollConfig};

/// The repo:tags a driver's services track and that a registry can resolve (services built
/// from a directory are left out).
pub fn tracked_images(handle: &DriverHandle) -> Vec<ImageRef> {
    handle
        .specs()
        .into_iter()
        .filter(|spec| spec.build().is_none())
        .map(|spec| spec.image().clone())
        .collect()
}

/// One pass over every tracked tag, calls spaced by a minimum interval. Shared by the poll and
/// signal triggers.
pub(crate) struct Sweep {
    images: Arc<dyn ImageSource>,
    tracked: Tracked,
    source: Source,
    min_interval: Duration,
    resolve_timeout: Duration,
    /// When the last registry call started: the spacing holds across passes too.
    last_call: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Sweep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sweep")
            .field("tracked", &self.tracked)
            .field("source", &self.source)
            .field("min_interval", &self.min_interval)
            .finish_non_exhaustive()
    }
}

/// The tags a pass resolves.
enum Tracked {
    /// Deduplicated, without digests, in a stable order.
    Fixed(Vec<ImageRef>),
    /// Those of the driver's services at the moment of the pass: services added by a reload
    /// or adopted while running are polled too, and removed ones no more.
    OfDriver(DriverHandle),
}

impl Tracked {
    fn fixed(tracked: impl IntoIterator<Item = ImageRef>) -> Self {
        Self::Fixed(deduplicated(tracked))
    }

    fn now(&self) -> Vec<ImageRef> {
        match self {
            Self::Fixed(tracked) => tracked.clone(),
            Self::OfDriver(handle) => deduplicated(tracked_images(handle)),
        }
    }
}

/// Without digests, each once, in a stable order.
fn deduplicated(tracked: impl IntoIterator<Item = ImageRef>) -> Vec<ImageRef> {
    let tracked: BTreeSet<ImageRef> = tracked.into_iter().map(|i| i.without_digest()).collect();
    tracked.into_iter().collect()
}

impl std::fmt::Debug for Tracked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Fixed(tracked) => f.debug_tuple("Fixed").field(tracked).finish(),
            Self::OfDriver(_) => f.write_str("OfDriver"),
        }
    }
}

/// What a pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SweepCounts {
    pub(crate) submitted: usize,
    pub(crate) failed: usize,
}

impl Sweep {
    pub(crate) fn new(
        images: Arc<dyn ImageSource>,
        tracked: impl IntoIterator<Item = ImageRef>,
        source: &str,
        config: &PollConfig,
    ) -> Self {
        Self::with(images, Tracked::fixed(tracked), source, config)
    }

    /// A sweep of the tags `handle`'s services track at each pass.
    pub(crate) fn of_driver(handle: &DriverHandle, source: &str, config: &PollConfig) -> Self {
        Self::with(
            handle.images().clone(),
            Tracked::OfDriver(handle.clone()),
            source,
            config,
        )
    }

    fn with(
        images: Arc<dyn ImageSource>,
        tracked: Tracked,
        source: &str,
        config: &PollConfig,
    ) -> Self {
        Self {
            images,
            tracked,
            source: Source::new(source),
            min_interval: config.min_interval,
            resolve_timeout: config.resolve_timeout,
            last_call: Mutex::new(None),
        }
    }

    /// Resolves every tracked tag and submits each digest. Returns early at shutdown or when
    /// the sink has closed.
    pub(crate) async fn run(&self, sink: &EventSink, shutdown: &mut Shutdown) -> SweepCounts {
        let mut counts = SweepCounts::default();
        for image in &self.tracked.now() {
            let slot = {
                let mut last = self
                    .last_call
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                let now = Instant::now();
                let slot = last.map_or(now, |l| {
                    deployer_core::deadline::after(l, self.min_interval).max(now)
                });
                *last = Some(slot);
                slot
            };
            // The registry's answer is at least as new as the moment we asked: a push announced
            // after that instant wins over this answer, one announced before loses to it.
            let asked_at = Timestamp::now();
            let resolved = tokio::select! {
                () = shutdown.wait() => return counts,
                r = async {
                    tokio::time::sleep_until(slot).await;
                    tokio::time::timeout(self.resolve_timeout, self.images.resolve(image)).await
                } => r,
            };
            let digest = match resolved {
                Ok(Ok(digest)) => digest,
                Ok(Err(e)) => {
                    counts.failed += 1;
                    let e = deployer_core::driver::error_chain(&e);
                    tracing::warn!(image = %image, source = %self.source, "resolving failed: {e}");
                    continue;
                }
                Err(_) => {
                    counts.failed += 1;
                    tracing::warn!(image = %image, source = %self.source, "resolving timed out");
                    continue;
                }
            };
            let mut event = ImageEvent::new(image.clone(), self.source.clone()).with_digest(digest);
            event.event_time = Some(asked_at);
            match sink.submit(event) {
                Ok(_) => counts.submitted += 1,
                Err(SubmitError::Busy) => {
                    counts.failed += 1;
                    tracing::warn!(image = %image, "event queue full; the next pass tries again");
                }
                Err(_) => return counts,
            }
        }
        tracing::debug!(source = %self.source, submitted = counts.submitted, failed = counts.failed, "pass done");
        counts
    }
}

/// Polls every tracked tag: once at startup (configurable), then every period ± jitter.
#[derive(Debug)]
pub struct PollTrigger {
    sweep: Sweep,
    config: PollConfig,
}

impl PollTrigger {
    /// A poller of `tracked` through `images`.
    pub fn new(
        images: Arc<dyn ImageSource>,
        tracked: impl IntoIterator<Item = ImageRef>,
        config: PollConfig,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            sweep: Sweep::new(images, tracked, "poll", &config),
            config,
        })
    }

    /// A poller of every tag `handle`'s services track at each pass, through its image
    /// source.
    pub fn for_driver(handle: &DriverHandle, config: PollConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            sweep: Sweep::of_driver(handle, "poll", &config),
            config,
        })
    }
}

#[async_trait]
impl Trigger for PollTrigger {
    fn name(&self) -> &str {
        "poll"
    }

    async fn run(&self, sink: EventSink, mut shutdown: Shutdown) -> Result<(), TriggerError> {
        if self.config.at_startup {
            self.sweep.run(&sink, &mut shutdown).await;
        }
        loop {
            let wait = jittered(self.config.period, self.config.jitter, random_unit());
            tokio::select! {
                () = shutdown.wait() => return Ok(()),
                () = tokio::time::sleep(wait) => {}
            }
            self.sweep.run(&sink, &mut shutdown).await;
        }
    }
}

/// `period` scaled by `1 + jitter * unit`, `unit` in [-1, 1].
fn jittered(period: Duration, jitter: f64, unit: f64) -> Duration {
    let factor = (1.0 + jitter * unit.clamp(-1.0, 1.0)).max(0.0);
    // `mul_f64` panics past `Duration::MAX`; a period that long means "never" anyway.
    Duration::try_from_secs_f64(period.as_secs_f64() * factor).unwrap_or(Duration::MAX)
}

/// A number in [-1, 1], different each call and on each host. Not for cryptography: it only
/// spreads a fleet's polls.
fn random_unit() -> f64 {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let bits = RandomState::new().hash_one(CALLS.fetch_add(1, Ordering::Relaxed));
    #[allow(clippy::cast_precision_loss)] // reason: 53 random bits are exactly representable
    let fraction = (bits >> 11) as f64 / (1u64 << 53) as f64;
    fraction * 2.0 - 1.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use deployer_core::testing::{FakeImageSource, digest};

    fn image(s: &str) -> ImageRef {
        s.parse().unwrap()
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let day = Duration::from_secs(86_400);
        assert_eq!(jittered(day, 0.1, -1.0), day.mul_f64(0.9));
        assert_eq!(jittered(day, 0.1, 1.0), day.mul_f64(1.1));
        for _ in 0..1000 {
            let u = random_unit();
            assert!((-1.0..=1.0).contains(&u));
        }
        assert_ne!(random_unit(), random_unit());
    }

    #[tokio::test(start_paused = true)]
    async fn periods_and_spacings_up_to_duration_max_never_panic() {
        assert_eq!(jittered(Duration::MAX, 0.1, 1.0), Duration::MAX);
        assert_eq!(
            jittered(Duration::MAX, 0.1, -1.0),
            Duration::MAX.mul_f64(0.9)
        );
        let a = image("demo/a:latest");
        let b = image("demo/b:latest");
        let images = Arc::new(FakeImageSource::new());
        images.set_tag(&a, digest(1));
        images.set_tag(&b, digest(2));
        let (sink, mut events) = EventSink::new([a.clone(), b.clone()], 16);
        let config = PollConfig {
            period: Duration::MAX,
            min_interval: Duration::MAX,
            ..PollConfig::default()
        };
        let trigger = PollTrigger::new(images.clone(), [a.clone(), b], config).unwrap();
        let (fire, shutdown) = Shutdown::new();
        let task = tokio::spawn(async move { trigger.run(sink, shutdown).await });
        assert_eq!(events.recv().await.unwrap().image, a);
        // The second call waits "forever" for its slot; the trigger still stops at shutdown.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert!(events.try_recv().is_err());
        fire.fire();
        tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .expect("poll trigger did not stop at shutdown")
            .unwrap()
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn polls_at_startup_spaced_then_every_period_and_stops_at_shutdown() {
        let (a, b) = (image("demo/a:latest"), image("demo/b:latest"));
        let images = Arc::new(FakeImageSource::new());
        images.set_tag(&a, digest(1));
        images.set_tag(&b, digest(2));
        let (sink, mut events) = EventSink::new([a.clone(), b.clone()], 16);
        let trigger = PollTrigger::new(
            images.clone(),
            [a.clone(), b.clone(), a.clone()],
            PollConfig::default(),
        )
        .unwrap();
        let (fire, shutdown) = Shutdown::new();
        let start = Instant::now();
        let task = tokio::spawn(async move { trigger.run(sink, shutdown).await });

        let first = events.recv().await.unwrap();
        let second = events.recv().await.unwrap();
        assert_eq!(
            (first.image.clone(), first.digest.clone()),
            (a.clone(), Some(digest(1)))
        );
        assert_eq!(second.source.as_str(), "poll");
        assert_eq!(
            Instant::now() - start,
            Duration::from_secs(1),
            "min interval between resolves"
        );

        images.set_tag(&a, digest(3));
        let third = events.recv().await.unwrap();
        let elapsed = Instant::now() - start;
        assert_eq!(third.digest, Some(digest(3)));
        let day = Duration::from_secs(86_400);
        assert!(
            elapsed >= day.mul_f64(0.9) && elapsed <= day.mul_f64(1.1) + Duration::from_secs(2),
            "{elapsed:?}"
        );
        // Unchanged digests are submitted too; the coordinator answers "unchanged".
        assert_eq!(events.recv().await.unwrap().digest, Some(digest(2)));
        assert_eq!(images.resolves(), 4);

        fire.fire();
        tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .expect("poll trigger did not stop at shutdown")
            .unwrap()
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_drivers_poller_polls_the_services_it_has_at_each_pass() {
        use deployer_core::driver::{Driver, DriverConfig, Ports};
        let (a, b) = (image("demo/a:latest"), image("demo/b:latest"));
        let images = Arc::new(FakeImageSource::new());
        images.set_tag(&a, digest(1));
        images.set_tag(&b, digest(2));
        let ports = Ports {
            images: images.clone(),
            switcher: Arc::new(deployer_core::testing::FakeSwitcher::new()),
            coordinator: Arc::new(deployer_core::memory::MemoryCoordinator::new("n")),
            journal: Arc::new(deployer_core::memory::MemoryJournal::new()),
            notifiers: Vec::new(),
        };
        let spec = |name: &str, image: &ImageRef| {
            deployer_core::ServiceSpec::builder(name, image.clone())
                .build()
                .unwrap()
        };
        let driver = Driver::new(DriverConfig::new("n"), ports, vec![spec("a", &a)]).unwrap();
        let handle = driver.handle();
        let trigger = PollTrigger::for_driver(&handle, PollConfig::default()).unwrap();
        // Adopted (or added by a reload) after the poller was made: polled all the same.
        handle.adopt(spec("b", &b)).unwrap();
        let (sink, mut events) = EventSink::new([a.clone(), b.clone()], 16);
        let (fire, shutdown) = Shutdown::new();
        let task = tokio::spawn(async move { trigger.run(sink, shutdown).await });
        let mut polled = vec![
            events.recv().await.unwrap().image,
            events.recv().await.unwrap().image,
        ];
        polled.sort();
        assert_eq!(polled, [a, b]);
        fire.fire();
        task.await.unwrap().unwrap();
        drop(driver);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_are_logged_and_skipped_and_startup_poll_is_optional() {
        let a = image("demo/a:latest");
        let images = Arc::new(FakeImageSource::new());
        images.set_tag(&a, digest(1));
        images.fail_next("resolve", 1);
        let (sink, mut events) = EventSink::new([a.clone()], 16);
        let config = PollConfig {
            at_startup: false,
            ..PollConfig::default()
        };
        let trigger = PollTrigger::new(images.clone(), [a.clone()], config).unwrap();
        let (_fire, mut shutdown) = Shutdown::new();
        let counts = trigger.sweep.run(&sink, &mut shutdown).await;
        assert_eq!(
            counts,
            SweepCounts {
                submitted: 0,
                failed: 1
            }
        );
        assert!(events.try_recv().is_err());

        let start = Instant::now();
        let task = tokio::spawn(async move { trigger.run(sink, shutdown).await });
        events.recv().await.unwrap();
        assert!(Instant::now() - start >= Duration::from_secs(86_400).mul_f64(0.9));
        task.abort();
    }
}
