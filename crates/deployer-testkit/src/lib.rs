//! Test support shared by deployer's crates: real etcd and registry processes on free loopback
//! ports, test images built from nothing (`FROM scratch` plus Debian's static busybox), and a
//! label-based sweep that removes what a test created even when it fails.
//!
//! Every helper fails with a message naming the missing piece (a binary, a package, the Docker
//! engine) rather than letting a test pass silently.

pub mod etcd;
pub mod images;
pub mod net;
pub mod registry;
pub mod sweep;
pub mod wait;

pub use images::{App, ImageSpec, docker};
pub use registry::{Registry, RegistryOptions};
pub use sweep::{Sweep, sweep_all};
