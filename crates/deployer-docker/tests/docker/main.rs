//! deployer-docker against the real engine, a real registry and real containers.
//!
//! One test binary (one link, shared helpers); every test labels what it creates with its
//! own sweep and removes it on drop, also when it fails.

mod adopt;
mod build;
mod canary;
mod crash;
mod handover;
mod image_source;
mod recreate;
mod scope;
mod states;
mod support;
