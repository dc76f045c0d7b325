//! Traffic controls: a proxy can be paused (new requests wait, up to a bound each, then get
//! 503) and resumed, or put into maintenance (new requests get 503 with a message at once).
//! Requests already sent to a backend are never touched.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

/// What new requests meet.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum GateState {
    /// Forwarded as usual.
    #[default]
    Open,
    /// Held until [`Proxy::resume`](crate::Proxy::resume), each for at most `hold`, then 503.
    Paused {
        /// How long one request may wait.
        hold: Duration,
    },
    /// Answered 503 with this message.
    Maintenance {
        /// The body of the 503 (a line is added if it lacks one).
        message: Arc<str>,
    },
}

/// Why a request is not forwarded.
pub(crate) enum Closed {
    /// Paused longer than its hold.
    StillPaused,
    Maintenance(Arc<str>),
}

#[derive(Debug)]
pub(crate) struct Gate {
    state: watch::Sender<GateState>,
}

impl Gate {
    pub(crate) fn new() -> Self {
        Self {
            state: watch::Sender::new(GateState::Open),
        }
    }

    pub(crate) fn set(&self, state: GateState) {
        self.state.send_replace(state);
    }

    pub(crate) fn state(&self) -> GateState {
        self.state.borrow().clone()
    }

    /// Waits while paused (at most the hold in force when the request arrived); `Err` when
    /// the request must not be forwarded. Costs one atomic load while open.
    pub(crate) async fn pass(&self) -> Result<(), Closed> {
        let hold = match &*self.state.borrow() {
            GateState::Open => return Ok(()),
            GateState::Maintenance { message } => return Err(Closed::Maintenance(message.clone())),
            GateState::Paused { hold } => *hold,
        };
        let mut changes = self.state.subscribe();
        let waited = tokio::time::timeout(
            hold,
            changes.wait_for(|s| !matches!(s, GateState::Paused { .. })),
        )
        .await;
        match waited {
            Ok(Ok(state)) => match &*state {
                GateState::Maintenance { message } => Err(Closed::Maintenance(message.clone())),
                _ => Ok(()),
            },
            // The sender lives as long as the proxy; a timeout is the usual end.
            _ => Err(Closed::StillPaused),
        }
    }
}
