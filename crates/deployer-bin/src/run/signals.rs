//! SIGTERM and SIGINT start a graceful stop; SIGHUP re-resolves every tracked tag.
//!
//! Until a handler exists, each of these signals ends the process, so all three are
//! registered first thing in `run`, before the config is read. A SIGTERM or SIGINT that
//! arrives before the driver runs ends the process at once, as it always did (nothing has
//! started that needs stopping); a SIGHUP waits for the signal trigger.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::watch;

/// The registered signals: SIGHUP for the signal trigger, and the stop request.
#[derive(Debug)]
pub struct Signals {
    /// SIGHUP, registered; hand it to the signal trigger.
    pub hangup: Signal,
    /// Whether the driver runs yet (then a stop signal stops it instead of the process).
    starting: Arc<AtomicBool>,
    stop: watch::Receiver<bool>,
}

impl Signals {
    /// Registers SIGHUP, SIGTERM and SIGINT. Must be called inside the runtime.
    pub fn install() -> std::io::Result<Self> {
        let hangup = signal(SignalKind::hangup())?;
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        let starting = Arc::new(AtomicBool::new(true));
        let (tx, stop) = watch::channel(false);
        let flag = starting.clone();
        tokio::spawn(async move {
            let name = tokio::select! {
                _ = terminate.recv() => "SIGTERM",
                _ = interrupt.recv() => "SIGINT",
            };
            if flag.load(Ordering::SeqCst) {
                eprintln!("deployer: {name} received while starting; stopped");
                std::process::exit(0);
            }
            tracing::info!("{name} received");
            let _ = tx.send(true);
        });
        Ok(Self {
            hangup,
            starting,
            stop,
        })
    }
}

/// The stop request, once the driver runs: resolves at the first SIGTERM or SIGINT.
#[derive(Debug)]
pub struct Termination {
    starting: Arc<AtomicBool>,
    stop: watch::Receiver<bool>,
}

impl Termination {
    /// Takes the stop request out of `signals`, leaving SIGHUP to be handed on.
    pub fn from(signals: &Signals) -> Self {
        Self {
            starting: signals.starting.clone(),
            stop: signals.stop.clone(),
        }
    }

    /// From now on a stop signal stops the driver; resolves when one came.
    pub async fn terminated(mut self) {
        self.starting.store(false, Ordering::SeqCst);
        let _ = self.stop.wait_for(|stop| *stop).await;
    }
}
