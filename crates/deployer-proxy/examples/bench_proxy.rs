//! Runs deployer-proxy standalone for benchmarks (see `bench/run.sh`).
//!
//! ```text
//! bench_proxy --listen 127.0.0.1:8080 --backend 127.0.0.1:8001 [--alt 127.0.0.1:8002]
//!             [--switches 50] [--interval-ms 150] [--mode http|tcp] [--max-idle N]
//!             [--workers N] [--threads N]
//! ```
//!
//! `--workers N` serves on N dedicated proxy threads (`ProxyConfig::workers`); otherwise
//! connections are served on this program's runtime, a multi-threaded one with
//! `--threads` workers (default: one per core; 0 for a single-threaded runtime).
//!
//! Prints `listening ADDR` once bound. On SIGUSR1 it switches `--switches` times between
//! `--backend` and `--alt` (one `replace_backends` every `--interval-ms`, each drain
//! waited with a 5 s deadline) and prints a summary line. On SIGTERM or SIGINT it shuts
//! down and prints the proxy's totals.

use std::net::SocketAddr;
use std::time::Duration;

use deployer_proxy::{Mode, Proxy, ProxyConfig};
use tokio::signal::unix::{SignalKind, signal};

const DRAIN_DEADLINE: Duration = Duration::from_secs(5);

struct Args {
    listen: SocketAddr,
    backend: SocketAddr,
    alt: Option<SocketAddr>,
    switches: u32,
    interval: Duration,
    threads: usize,
    mode: Mode,
    max_idle: Option<usize>,
    workers: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        backend: SocketAddr::from(([127, 0, 0, 1], 0)),
        alt: None,
        switches: 50,
        interval: Duration::from_millis(150),
        threads: std::thread::available_parallelism().map_or(2, usize::from),
        mode: Mode::Http,
        max_idle: None,
        workers: 0,
    };
    let mut backend = None;
    let mut argv = std::env::args().skip(1);
    while let Some(flag) = argv.next() {
        let value = argv.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--listen" => args.listen = value.parse().map_err(|e| bad(&e))?,
            "--backend" => backend = Some(value.parse().map_err(|e| bad(&e))?),
            "--alt" => args.alt = Some(value.parse().map_err(|e| bad(&e))?),
            "--switches" => args.switches = value.parse().map_err(|e| bad(&e))?,
            "--interval-ms" => {
                args.interval = Duration::from_millis(value.parse().map_err(|e| bad(&e))?);
            }
            "--threads" => args.threads = value.parse().map_err(|e| bad(&e))?,
            "--workers" => args.workers = value.parse().map_err(|e| bad(&e))?,
            "--max-idle" => args.max_idle = Some(value.parse().map_err(|e| bad(&e))?),
            "--mode" => {
                args.mode = match value.as_str() {
                    "http" => Mode::Http,
                    "tcp" => Mode::Tcp,
                    _ => return Err(bad(&"expected http or tcp")),
                };
            }
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    args.backend = backend.ok_or("--backend is required")?;
    Ok(args)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = match parse_args() {
        Ok(args) => args,
        Err(error) => {
            eprintln!("bench_proxy: {error}");
            std::process::exit(64);
        }
    };
    let mut runtime = if args.threads == 0 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(args.threads);
        builder
    };
    runtime.enable_all().build()?.block_on(run(args))
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut config = ProxyConfig::http(args.listen).with_backends([args.backend]);
    config.mode = args.mode;
    config.workers = args.workers;
    if let Some(max_idle) = args.max_idle {
        config.pool_max_idle_per_backend = max_idle;
    }
    let proxy = Proxy::bind(config).await?;
    println!("listening {}", proxy.local_addr());

    let mut usr1 = signal(SignalKind::user_defined1())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            _ = usr1.recv() => match args.alt {
                Some(alt) => {
                    let proxy = proxy.clone();
                    let (backend, switches, interval) = (args.backend, args.switches, args.interval);
                    tokio::spawn(switch_back_and_forth(proxy, [backend, alt], switches, interval));
                }
                None => eprintln!("bench_proxy: SIGUSR1 ignored, no --alt backend"),
            },
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    let report = proxy.clone().shutdown(Duration::from_secs(1)).await;
    let totals = proxy.totals();
    println!(
        "totals requests={} errors={} cut={} no_backend={} connections={} shutdown_cut={}",
        totals.requests,
        totals.errors,
        totals.cut,
        totals.no_backend,
        totals.connections_accepted,
        report.cut
    );
    Ok(())
}

async fn switch_back_and_forth(
    proxy: Proxy,
    pair: [SocketAddr; 2],
    switches: u32,
    interval: Duration,
) {
    let mut drains = Vec::new();
    for i in 0..switches {
        tokio::time::sleep(interval).await;
        let next = pair[usize::from(i % 2 == 0)];
        let drain = proxy.replace_backends(vec![next]);
        drains.push(tokio::spawn(drain.wait(DRAIN_DEADLINE)));
    }
    let (mut clean, mut cut) = (0, 0);
    for drain in drains {
        if let Ok(report) = drain.await {
            clean += u32::from(report.drained_cleanly);
            cut += report.cut;
        }
    }
    println!("switches={switches} drained_cleanly={clean} cut={cut}");
}
