//! Recording fakes for every port, for tests here and in crates that embed deployer
//! (feature `test-util`). Each records its calls and can be told to fail the next N times.
//!
//! The fake switcher keeps a small simulated world of containers so that tests can assert on
//! outcomes (what runs, what serves) and not only on calls.

mod coordinator;
mod image_source;
mod notifier;
mod switcher;
mod trigger;

pub use coordinator::FakeCoordinator;
pub use image_source::FakeImageSource;
pub use notifier::RecordingNotifier;
pub use switcher::{Call, FakeInstance, FakeSwitcher, World};
pub use trigger::ScriptedTrigger;

use crate::image::{Digest, ImageRef};
use crate::target::{Revision, Source, Target};
use crate::time::Timestamp;

/// A valid sha256 digest made from `n` (for readable tests).
pub fn digest(n: u8) -> Digest {
    Digest::sha256(&format!("{n:02x}").repeat(32)).unwrap_or_else(|_| unreachable!("64 hex digits"))
}

/// The target "`image` should run [`digest`]`(n)`" at `revision`, from source `test`, with
/// nothing else set.
pub fn target(image: &ImageRef, n: u8, revision: u64) -> Target {
    Target {
        image: image.without_digest(),
        digest: digest(n),
        revision: Revision(revision),
        source: Source::new("test"),
        received_at: Timestamp::from_millis(0),
        delivery_id: None,
        event_time: None,
        callback_url: None,
        previous: Vec::new(),
        failed: Vec::new(),
        seen: Vec::new(),
        halts: Vec::new(),
        held_from: None,
    }
}

/// Counts down injected failures per operation name.
#[derive(Debug, Default)]
pub(crate) struct Failures {
    remaining: std::collections::HashMap<&'static str, u32>,
}

impl Failures {
    pub(crate) fn set(&mut self, op: &'static str, times: u32) {
        self.remaining.insert(op, times);
    }

    /// Whether this call of `op` should fail (and counts it).
    pub(crate) fn take(&mut self, op: &'static str) -> bool {
        match self.remaining.get_mut(op) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        }
    }
}
