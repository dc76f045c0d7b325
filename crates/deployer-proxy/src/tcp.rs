//! TCP (L4) mode: each accepted connection is bound to the backend picked when it arrives
//! and copied both ways until either side closes or that backend is cut.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::net::TcpStream;

use crate::server::Shared;
use crate::stats::ResponseClass;

pub(crate) async fn serve_connection(shared: Arc<Shared>, mut client: TcpStream, peer: SocketAddr) {
    let Some((backend, guard)) = shared.main.pool().pick() else {
        shared
            .main
            .totals_ref()
            .no_backend
            .fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%peer, "no backend live, closing the connection");
        return; // dropping `client` closes it
    };
    let addr = backend.addr();
    // The routing entry is not needed past the pick; the guard keeps the accounting.
    drop(backend);

    let forwarding = async {
        let mut upstream = match tokio::time::timeout(
            shared.connect_timeout,
            TcpStream::connect(addr),
        )
        .await
        {
            Ok(Ok(upstream)) => upstream,
            Ok(Err(error)) => {
                guard.record_error();
                guard.record_answer(ResponseClass::GatewayError);
                if let Some(held_back) = guard.tracker().log_failure() {
                    tracing::warn!(backend = %addr, %peer, %error, held_back, "connecting to backend failed");
                }
                return;
            }
            Err(_elapsed) => {
                guard.record_error();
                guard.record_answer(ResponseClass::GatewayError);
                if let Some(held_back) = guard.tracker().log_failure() {
                    tracing::warn!(backend = %addr, %peer, timeout = ?shared.connect_timeout, held_back, "connecting to backend timed out");
                }
                return;
            }
        };
        guard.record_answer(ResponseClass::Connected);
        if let Err(error) = upstream.set_nodelay(true) {
            tracing::debug!(backend = %addr, %error, "setting TCP_NODELAY failed");
        }
        match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            Ok((to_backend, to_client)) => {
                tracing::debug!(backend = %addr, %peer, to_backend, to_client, "connection closed");
            }
            // Usually a reset by either peer: not something to count against the backend.
            Err(error) => tracing::debug!(backend = %addr, %peer, %error, "connection ended"),
        }
    };
    tokio::select! {
        () = forwarding => {}
        () = guard.tracker().cut_requested() => {
            guard.record_cut();
            tracing::info!(backend = %addr, %peer, "connection cut");
        }
    }
}
