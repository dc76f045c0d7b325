//! The `deployer` binary: the daemon and its CLI.

mod config;

fn main() {}
