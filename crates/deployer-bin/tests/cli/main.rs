//! Integration tests of the `deployer` binary, run as a user runs it: as a process, judged by
//! its exit code, stdout and stderr.
//!
//! - `config_check`: `deployer config check` and `--help` (no Docker needed).
//! - `offline`: `run` with a bad config, and the client commands with no daemon.
//! - `scripts`: what `scripts/demo.sh` installs, against what the build needs.
//! - `end_to_end`: a real daemon, Docker engine and registry driven through the CLI: deploy,
//!   status, rollback, history, a failed deploy, JSON logs, and SIGTERM during a deploy.
//! - `registry_truth`: a tag moved back converges by notification, SIGHUP and poll; a replay
//!   changes nothing; history, rollback points and halts survive SIGKILL.

#[path = "../common/mod.rs"]
mod common;
mod config_check;
mod end_to_end;
mod offline;
mod registry_truth;
mod scripts;
mod support;
