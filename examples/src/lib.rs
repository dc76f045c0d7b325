//! # deployer-examples
//!
//! Pieces that show how to extend deployer from your own code, each used by a program in
//! `examples/` (see the README there):
//!
//! - [`FileTrigger`]: a custom [`Trigger`](deployer_core::ports::Trigger) that follows a
//!   file where CI appends `repo:tag@sha256:...` lines (`file_trigger` example, with the
//!   Docker adapters).
//! - [`JsonlNotifier`]: a custom [`Notifier`](deployer_core::ports::Notifier) that appends
//!   each deploy report as one JSON line to a file, bounding its own time (`jsonl_notifier`
//!   example, with the in-memory fakes: runs without Docker).
//!
//! They live in this library, rather than inside the example programs, so that their unit
//! tests run with `cargo test`; the programs are the wiring.
#![warn(missing_docs)]

pub mod file_trigger;
pub mod jsonl_notifier;

pub use file_trigger::{FileTrigger, parse_line};
pub use jsonl_notifier::JsonlNotifier;
