//! The signal trigger: SIGHUP re-resolves every tracked tag now (hanoverd redeploys on a
//! signal). The tick source is injectable so tests never signal the test process.

use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use deployer_core::ImageRef;
use deployer_core::driver::{DriverHandle, EventSink};
use deployer_core::ports::{ImageSource, Trigger, TriggerError};
use deployer_core::shutdown::Shutdown;
use tokio::sync::mpsc;

use crate::config::{ConfigError, PollConfig};
use crate::poll::Sweep;

/// Where "resolve now" ticks come from.
#[derive(Debug)]
enum Ticks {
    /// SIGHUP, registered when the trigger was built.
    #[cfg(unix)]
    Hangup(tokio::signal::unix::Signal),
    /// Anything else (tests, an embedder's own control channel).
    Channel(mpsc::Receiver<()>),
}

impl Ticks {
    async fn next(&mut self) -> Option<()> {
        match self {
            #[cfg(unix)]
            Self::Hangup(signal) => signal.recv().await,
            Self::Channel(rx) => rx.recv().await,
        }
    }

    /// Swallows ticks already queued: one pass answers them all.
    fn drain(&mut self) {
        if let Self::Channel(rx) = self {
            while rx.try_recv().is_ok() {}
        }
    }
}

/// Re-resolves every tracked tag on each tick, spacing registry calls like the poller.
#[derive(Debug)]
pub struct SignalTrigger {
    sweep: Sweep,
    /// Taken by `run`; a trigger runs once.
    ticks: Mutex<Option<Ticks>>,
}

impl SignalTrigger {
    /// A trigger on SIGHUP. Registers the handler now, so a SIGHUP that arrives before the
    /// driver runs no longer ends the process. Must be called inside a tokio runtime.
    #[cfg(unix)]
    pub fn hangup(
        images: Arc<dyn ImageSource>,
        tracked: impl IntoIterator<Item = ImageRef>,
        config: &PollConfig,
    ) -> Result<Self, ConfigError> {
        use tokio::signal::unix::{SignalKind, signal};
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(ConfigError::new(
                "signal",
                "must be set up inside a tokio runtime",
            ));
        }
        let hangup = signal(SignalKind::hangup())
            .map_err(|e| ConfigError::new("signal", format!("cannot listen for SIGHUP: {e}")))?;
        Self::build(images, tracked, config, Ticks::Hangup(hangup))
    }

    /// A SIGHUP trigger for every tag `handle`'s services track, on a SIGHUP stream the caller
    /// registered earlier (at process start, so that no SIGHUP ends the process meanwhile; one
    /// that came in between is answered once the trigger runs).
    #[cfg(unix)]
    pub fn hangup_stream_for_driver(
        handle: &DriverHandle,
        config: &PollConfig,
        hangup: tokio::signal::unix::Signal,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self::with_sweep(
            Sweep::of_driver(handle, "signal", config),
            Ticks::Hangup(hangup),
        ))
    }

    /// A SIGHUP trigger for every tag `handle`'s services track.
    #[cfg(unix)]
    pub fn hangup_for_driver(
        handle: &DriverHandle,
        config: &PollConfig,
    ) -> Result<Self, ConfigError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(ConfigError::new(
                "signal",
                "must be set up inside a tokio runtime",
            ));
        }
        let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(|e| ConfigError::new("signal", format!("cannot listen for SIGHUP: {e}")))?;
        Self::hangup_stream_for_driver(handle, config, hangup)
    }

    /// A trigger on the messages of `ticks`.
    pub fn with_ticks(
        images: Arc<dyn ImageSource>,
        tracked: impl IntoIterator<Item = ImageRef>,
        config: &PollConfig,
        ticks: mpsc::Receiver<()>,
    ) -> Result<Self, ConfigError> {
        Self::build(images, tracked, config, Ticks::Channel(ticks))
    }

    fn build(
        images: Arc<dyn ImageSource>,
        tracked: impl IntoIterator<Item = ImageRef>,
        config: &PollConfig,
        ticks: Ticks,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self::with_sweep(
            Sweep::new(images, tracked, "signal", config),
            ticks,
        ))
    }

    fn with_sweep(sweep: Sweep, ticks: Ticks) -> Self {
        Self {
            sweep,
            ticks: Mutex::new(Some(ticks)),
        }
    }
}

#[async_trait]
impl Trigger for SignalTrigger {
    fn name(&self) -> &str {
        "signal"
    }

    async fn run(&self, sink: EventSink, mut shutdown: Shutdown) -> Result<(), TriggerError> {
        let taken = self
            .ticks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(mut ticks) = taken else {
            return Err(TriggerError {
                trigger: "signal".to_owned(),
                source: "already running".into(),
            });
        };
        loop {
            let tick = tokio::select! {
                () = shutdown.wait() => return Ok(()),
                tick = ticks.next() => tick,
            };
            if tick.is_none() {
                // The source is gone: nothing more will come, but stay until shutdown like
                // every other trigger.
                shutdown.wait().await;
                return Ok(());
            }
            // Ticks queued before this pass are answered by it; ticks that arrive during it
            // get a pass of their own, since a tag resolved early in this one may have moved.
            ticks.drain();
            tracing::info!("re-resolving every tracked tag on request");
            self.sweep.run(&sink, &mut shutdown).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use deployer_core::testing::{FakeImageSource, digest};
    use tokio::time::Instant;

    #[tokio::test(start_paused = true)]
    async fn each_tick_resolves_every_tag_and_bursts_coalesce() {
        let (a, b): (ImageRef, ImageRef) = ("demo/a".parse().unwrap(), "demo/b".parse().unwrap());
        let images = Arc::new(FakeImageSource::new());
        images.set_tag(&a, digest(1));
        images.set_tag(&b, digest(2));
        let (sink, mut events) = EventSink::new([a.clone(), b.clone()], 16);
        let (tx, rx) = mpsc::channel(8);
        let trigger = SignalTrigger::with_ticks(
            images.clone(),
            [a.clone(), b.clone()],
            &PollConfig::default(),
            rx,
        )
        .unwrap();
        let trigger = Arc::new(trigger);
        let (fire, shutdown) = Shutdown::new();
        let running = trigger.clone();
        let task = tokio::spawn(async move { running.run(sink, shutdown).await });

        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert!(events.try_recv().is_err(), "no pass without a tick");

        let start = Instant::now();
        for _ in 0..3 {
            tx.send(()).await.unwrap();
        }
        let first = events.recv().await.unwrap();
        assert_eq!(first.source.as_str(), "signal");
        assert_eq!(first.digest, Some(digest(1)));
        assert_eq!(events.recv().await.unwrap().digest, Some(digest(2)));
        assert_eq!(Instant::now() - start, Duration::from_secs(1));
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(images.resolves(), 2, "three queued ticks make one pass");

        let (_keep, never) = Shutdown::new();
        let again = trigger.run(EventSink::new([], 1).0, never).await;
        assert!(again.is_err(), "a trigger runs once");

        fire.fire();
        tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .expect("signal trigger did not stop at shutdown")
            .unwrap()
            .unwrap();
    }
}
