//! A cloneable shutdown signal, so triggers and the driver can stop together without pulling in
//! a cancellation crate.

use tokio::sync::watch;

/// Fires once; every clone sees it.
#[derive(Debug, Clone)]
pub struct Shutdown {
    fired: watch::Receiver<bool>,
}

/// The sending half of a [`Shutdown`].
#[derive(Debug)]
pub struct ShutdownHandle {
    fire: watch::Sender<bool>,
}

impl Shutdown {
    /// A signal and the handle that fires it.
    pub fn new() -> (ShutdownHandle, Shutdown) {
        let (fire, fired) = watch::channel(false);
        (ShutdownHandle { fire }, Shutdown { fired })
    }

    /// Whether it has fired.
    pub fn is_fired(&self) -> bool {
        *self.fired.borrow()
    }

    /// Resolves once it has fired (at once if it already has). A dropped handle counts as fired.
    pub async fn wait(&mut self) {
        let _ = self.fired.wait_for(|fired| *fired).await;
    }
}

impl ShutdownHandle {
    /// Fires the signal.
    pub fn fire(&self) {
        self.fire.send_replace(true);
    }
}
