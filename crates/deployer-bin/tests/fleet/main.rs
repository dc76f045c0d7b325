//! Fleet tests (issue 7): three real `deployer run` processes (distinct node names, each
//! managing its own node-scoped containers on the shared Docker engine) coordinated by one
//! real etcd, fed by a real registry.
//!
//! - `rollout`: a webhook to any one agent switches all three, at most one at a time (K = 1,
//!   checked against etcd's history of slot keys and the hosts' own status times); an older
//!   digest arriving after a newer one changes nothing.
//! - `bad_image`: a build that never becomes healthy stops after the first host.
//! - `outages`: etcd killed mid-rollout and restarted; an agent killed mid-switch.
//!
//! Everything a test starts is stopped on drop (agents, etcd, registry) and every container
//! and image it made carries its sweep labels and is removed, also when it fails. A failing
//! test prints the end of every agent's log.

mod agent;
mod bad_image;
#[path = "../common/mod.rs"]
mod common;
mod fleet;
mod outages;
mod rollout;
mod timeline;
