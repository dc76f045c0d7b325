//! An atomic swap moves new requests from one backend to another at one instant: across 1,000
//! swaps under keep-alive and new-connection clients, no client ever gets an answer from an
//! older activation after one from a newer.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use deployer_proxy::ProxyConfig;

use crate::support::*;

/// A backend answering the number of its latest activation, which the test sets before it
/// swaps the backend in.
struct Stamped {
    addr: SocketAddr,
    stamp: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Stamped {
    async fn start() -> Self {
        let listener = TcpListener::bind(localhost()).await.expect("bind backend");
        let addr = listener.local_addr().expect("backend addr");
        let stamp = Arc::new(AtomicU64::new(0));
        let for_task = Arc::clone(&stamp);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let stamp = Arc::clone(&for_task);
                tokio::spawn(async move {
                    let service = service_fn(move |_request| {
                        let body = stamp.load(Ordering::SeqCst).to_string();
                        async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body)))) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, stamp, task }
    }
}

impl Drop for Stamped {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Requests in a loop; returns (answers, violations: an answer older than the one before).
async fn monotonic_client(
    proxy: SocketAddr,
    keep_alive: bool,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
) -> (u64, Vec<String>) {
    let mut conn: Option<Conn> = None;
    let (mut last, mut answers, mut violations) = (0u64, 0u64, Vec::new());
    while !stop.load(Ordering::SeqCst) {
        let reply = if keep_alive {
            match conn.as_mut() {
                Some(conn) => conn.send(get("/")).await,
                None => match Conn::open(proxy).await {
                    Ok(opened) => conn.insert(opened).send(get("/")).await,
                    Err(e) => Err(e),
                },
            }
        } else {
            one_shot(proxy, get("/")).await
        };
        match reply {
            Ok(reply) if reply.status == StatusCode::OK => {
                let stamp: u64 = reply.body.trim().parse().expect("a stamp");
                if stamp < last {
                    violations.push(format!("{stamp} after {last}"));
                }
                last = last.max(stamp);
                answers += 1;
            }
            Ok(reply) => violations.push(format!("status {}", reply.status)),
            Err(error) => {
                violations.push(format!("request failed: {error}"));
                conn = None;
            }
        }
        done.fetch_add(1, Ordering::SeqCst);
    }
    (answers, violations)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_swaps_never_show_an_older_backend_after_a_newer_one() {
    let backends = [Stamped::start().await, Stamped::start().await];
    let proxy = start_proxy(ProxyConfig::http(localhost()).with_backends([backends[0].addr])).await;
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = [true, true, false, false]
        .into_iter()
        .map(|keep_alive| {
            tokio::spawn(monotonic_client(
                proxy.local_addr(),
                keep_alive,
                Arc::clone(&stop),
                Arc::clone(&done),
            ))
        })
        .collect();
    for swap in 1..=1000u64 {
        let (from, to) = (
            &backends[(swap as usize + 1) % 2],
            &backends[swap as usize % 2],
        );
        to.stamp.store(swap, Ordering::SeqCst);
        let (_, drain) = proxy.swap_backends(&[from.addr], to.addr);
        drop(drain); // what is in flight on `from` finishes by itself
        // Let a few requests through between two swaps.
        let seen = done.load(Ordering::SeqCst);
        within("requests between two swaps", async {
            while done.load(Ordering::SeqCst) < seen + 2 {
                tokio::task::yield_now().await;
            }
        })
        .await;
        assert_eq!(proxy.backends(), vec![to.addr], "swap {swap}");
    }
    stop.store(true, Ordering::SeqCst);
    let mut total = 0;
    for client in clients {
        let (answers, violations) = within("a client to stop", client).await.expect("client");
        assert!(
            violations.is_empty(),
            "{} violations, first: {:?}",
            violations.len(),
            violations.first()
        );
        total += answers;
    }
    assert!(total >= 2000, "only {total} answers across the swaps");
}
