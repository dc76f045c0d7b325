//! Dedicated worker threads (`ProxyConfig::workers`): each runs a single-threaded Tokio
//! runtime with its own listening socket, so a client connection, its requests and the
//! backend connections serving them all stay on one thread.

use std::cell::Cell;
use std::io;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::ProxyError;
use crate::server::{self, Shared};

thread_local! {
    /// Which worker this thread is; 0 on threads that are not workers.
    static INDEX: Cell<usize> = const { Cell::new(0) };
}

/// The worker running on this thread (0 outside worker threads), used to keep each
/// worker's backend connections to itself.
pub(crate) fn current_index() -> usize {
    INDEX.with(Cell::get)
}

/// Starts worker `index` serving `listener`; resolves to its accept loop once running.
pub(crate) fn start(
    index: usize,
    shared: Arc<Shared>,
    listener: std::net::TcpListener,
    stop: CancellationToken,
) -> io::Result<oneshot::Receiver<JoinHandle<()>>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (started, on_started) = oneshot::channel();
    std::thread::Builder::new()
        .name(format!("proxy-worker-{index}"))
        .spawn(move || {
            INDEX.with(|cell| cell.set(index));
            runtime.block_on(async move {
                let listener = match TcpListener::from_std(listener) {
                    Ok(listener) => listener,
                    Err(error) => {
                        // Dropping `started` tells `bind` this worker failed.
                        tracing::error!(worker = index, %error, "registering the listener failed");
                        return;
                    }
                };
                let tasks = shared.tasks.clone();
                let accept_loop = tokio::spawn(server::accept_loop(shared, listener, stop));
                if started.send(accept_loop).is_err() {
                    return; // bind gave up
                }
                // Keep the runtime (and so every connection it serves) alive until the proxy
                // has stopped and every connection is done: shutdown bounds that wait.
                tasks.wait().await;
            });
            tracing::debug!(worker = index, "worker stopped");
        })?;
    Ok(on_started)
}

/// Starts one worker per listener and waits until each accepts; returns their accept loops.
pub(crate) async fn start_all(
    listeners: Vec<std::net::TcpListener>,
    shared: &Arc<Shared>,
    stop: &CancellationToken,
) -> Result<Vec<JoinHandle<()>>, ProxyError> {
    let mut starting = Vec::with_capacity(listeners.len());
    for (index, listener) in listeners.into_iter().enumerate() {
        let started = start(index, Arc::clone(shared), listener, stop.clone())
            .map_err(|source| ProxyError::StartWorker { index, source })?;
        starting.push(started);
    }
    let mut accept_loops = Vec::with_capacity(starting.len());
    for (index, started) in starting.into_iter().enumerate() {
        let accept_loop = started.await.map_err(|_| ProxyError::StartWorker {
            index,
            source: io::Error::other("the worker stopped before accepting"),
        })?;
        accept_loops.push(accept_loop);
    }
    Ok(accept_loops)
}
