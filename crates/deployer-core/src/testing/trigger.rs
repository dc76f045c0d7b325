use async_trait::async_trait;

use crate::driver::EventSink;
use crate::ports::{ImageEvent, Trigger, TriggerError};
use crate::shutdown::Shutdown;

/// A trigger that submits a fixed list of events at start, then waits for shutdown.
#[derive(Debug, Default)]
pub struct ScriptedTrigger {
    events: Vec<ImageEvent>,
}

impl ScriptedTrigger {
    /// A trigger that will send `events`.
    pub fn new(events: Vec<ImageEvent>) -> Self {
        Self { events }
    }
}

#[async_trait]
impl Trigger for ScriptedTrigger {
    fn name(&self) -> &str {
        "scripted"
    }

    async fn run(&self, sink: EventSink, mut shutdown: Shutdown) -> Result<(), TriggerError> {
        for event in &self.events {
            let _ = sink.submit(event.clone());
        }
        shutdown.wait().await;
        Ok(())
    }
}
