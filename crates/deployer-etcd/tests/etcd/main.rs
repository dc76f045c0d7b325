//! The etcd coordinator against a real etcd (Debian's `etcd-server`), one per test.
//!
//! One test binary (rather than one per file) so the fixtures compile and link once.

mod auth;
mod leases;
mod publish;
mod records;
mod slots;
mod support;
mod tls;
mod watch;
