//! Integration tests of the `deployer` binary, run as a user runs it: as a process, judged by
//! its exit code, stdout and stderr.
//!
//! - `config_check`: `deployer config check` and `--help` (no Docker needed).
//! - `offline`: `run` with a bad config, and the client commands with no daemon.
//! - `scripts`: what `scripts/demo.sh` installs, against what the build needs.
//! - `end_to_end`: a real daemon, Docker engine and registry driven through the CLI: deploy,
//!   status, rollback, history, a failed deploy, JSON logs, and SIGTERM during a deploy.
//! - `flood`: idle and stalled-body floods on the webhook port of a daemon limited to 1,024
//!   open files: the proxy keeps serving, memory stays bounded.
//! - `reload`: `deployer reload` adds a service, refuses an invalid file, removes a service.
//! - `proxy_process`: the proxy as a process of its own survives a killed daemon and upgrades
//!   itself without a failed request.
//! - `registry_truth`: a tag moved back converges by notification, SIGHUP and poll; a replay
//!   changes nothing; history, rollback points and halts survive SIGKILL.

#[path = "../common/mod.rs"]
mod common;
mod config_check;
mod end_to_end;
mod flood;
mod offline;
mod proxy_process;
mod registry_truth;
mod reload;
mod scripts;
mod support;
