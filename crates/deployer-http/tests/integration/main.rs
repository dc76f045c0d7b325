//! Integration tests of deployer-http: routers through `tower::ServiceExt::oneshot`, notifiers
//! against local fake servers, the real server on 127.0.0.1:0, and a real registry.

mod admin;
mod admin_guard;
mod admin_reload;
mod admin_traffic;
mod bound;
mod common;
mod decoders;
mod notifiers;
mod registry_e2e;
mod serve_limits;
mod server;
mod webhooks;
