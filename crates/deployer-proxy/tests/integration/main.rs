//! End-to-end tests of deployer-proxy over real sockets on 127.0.0.1.
//!
//! One test binary (rather than one per file) so the fixtures compile and link once.

mod gate;
mod groups;
mod handoff;
mod http_drain;
mod http_errors;
mod http_headers;
mod http_pool;
mod http_swap;
mod http_switch;
mod round_robin;
mod routes;
mod shutdown;
mod support;
mod tcp;
mod tls;
mod workers;
