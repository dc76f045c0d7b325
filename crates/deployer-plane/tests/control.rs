//! The control socket end to end: a fleet served on a unix socket, driven by the client, its
//! state saved and restored, bad requests refused without changing anything.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use deployer_plane::{
    ControlClient, ControlServer, DataPlane, Fleet, Gate, Loaded, Route, RouteBackend, RouteChange,
    StateFile,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio_util::sync::CancellationToken;

/// An HTTP backend answering every request with `body`.
async fn backend(body: &'static str) -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if stream.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(addr)
}

/// One request on a new connection; the body.
async fn get(addr: SocketAddr) -> Result<String> {
    get_host(addr, "x").await
}

/// One request for `host` on a new connection; the status line's code and the body.
async fn get_host(addr: SocketAddr, host: &str) -> Result<String> {
    let mut stream = TcpStream::connect(addr).await?;
    let request = format!("GET / HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await?;
    let body = answer.split("\r\n\r\n").nth(1).context("no body")?;
    Ok(body.to_owned())
}

struct Served {
    fleet: Arc<Fleet>,
    client: ControlClient,
    stop: CancellationToken,
}

async fn serve(dir: &Path) -> Result<Served> {
    let (fleet, _) = Fleet::restore(StateFile::new(dir.join("state.json"))).await?;
    let fleet = Arc::new(fleet);
    let socket = dir.join("proxy.sock");
    let server = ControlServer::new(fleet.clone(), &socket);
    let listener = server.listen()?;
    let stop = CancellationToken::new();
    tokio::spawn(server.serve(listener, stop.clone()));
    Ok(Served {
        fleet,
        client: ControlClient::new(socket),
        stop,
    })
}

fn free_addr() -> Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

#[tokio::test]
async fn routes_switch_drain_and_survive_a_restart() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (v1, v2) = (backend("v1").await?, backend("v2").await?);
    let served = serve(dir.path()).await?;
    let client = &served.client;
    assert_eq!(client.hello().await?.routes, 0);
    let listen = free_addr()?;
    let set = client.set_route("web", &Route::http(listen)).await?;
    assert_eq!((set.change, set.bound), (RouteChange::Created, listen));
    let again = client.set_route("web", &Route::http(listen)).await?;
    assert_eq!(again.change, RouteChange::Unchanged);
    client
        .add_backend("web", &RouteBackend::new(v1, "g1"))
        .await?;
    assert_eq!(get(listen).await?, "v1");

    let swapped = client
        .swap("web", &[v1], &RouteBackend::new(v2, "g2"))
        .await?;
    assert_eq!(swapped.draining, vec![v1]);
    let report = client.drain("web", &[v1], Duration::from_secs(5)).await?;
    assert!(report.drained_cleanly && report.cut == 0, "{report:?}");
    assert_eq!(get(listen).await?, "v2");
    let stats = client.stats().await?;
    let groups: Vec<&str> = stats[0].groups.iter().map(|g| &*g.group).collect();
    assert_eq!(groups, ["g1", "g2"]);

    client
        .set_gate(
            "web",
            &Gate::Maintenance {
                message: "soon".into(),
            },
        )
        .await?;
    let routes = client.routes().await?;
    assert_eq!(routes[0].backends, vec![RouteBackend::new(v2, "g2")]);
    assert_eq!(
        routes[0].gate,
        Gate::Maintenance {
            message: "soon".into()
        }
    );
    client.set_gate("web", &Gate::Open).await?;

    // A restarted proxy serves what the old one served, before anyone tells it anything.
    served.stop.cancel();
    served.fleet.shutdown(Duration::from_secs(1)).await;
    let (restored, loaded) = Fleet::restore(StateFile::new(dir.path().join("state.json"))).await?;
    assert!(matches!(loaded, Loaded::Restored(_)));
    assert_eq!(get(listen).await?, "v2");
    let routes = restored.routes().await?;
    assert_eq!(routes[0].backends, vec![RouteBackend::new(v2, "g2")]);
    restored.shutdown(Duration::from_secs(1)).await;
    Ok(())
}

#[tokio::test]
async fn changed_settings_keep_the_listener_and_the_backends() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let v1 = backend("v1").await?;
    let served = serve(dir.path()).await?;
    let listen = free_addr()?;
    let plane = &served.client;
    plane.set_route("web", &Route::http(listen)).await?;
    plane
        .add_backend("web", &RouteBackend::new(v1, "g1"))
        .await?;
    let mut changed = Route::http(listen);
    changed.workers = 2;
    changed.response_timeout_ms = 5_000;
    let set = plane.set_route("web", &changed).await?;
    assert_eq!(set.change, RouteChange::Replaced);
    for _ in 0..20 {
        assert_eq!(get(listen).await?, "v1");
    }
    assert_eq!(plane.routes().await?[0].route, changed);
    served.fleet.shutdown(Duration::from_secs(1)).await;
    Ok(())
}

/// Sends raw lines and reads the answers.
async fn raw(socket: &Path, lines: &[&[u8]]) -> Result<Vec<serde_json::Value>> {
    let stream = UnixStream::connect(socket).await?;
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut answers = Vec::new();
    for line in lines {
        write.write_all(line).await?;
        write.write_all(b"\n").await?;
        let mut answer = String::new();
        if reader.read_line(&mut answer).await? == 0 {
            break;
        }
        answers.push(serde_json::from_str(&answer)?);
    }
    Ok(answers)
}

#[tokio::test]
async fn bad_requests_are_refused_and_change_nothing() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let served = serve(dir.path()).await?;
    let socket = dir.path().join("proxy.sock");
    let mode = std::fs::metadata(&socket)?.permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the control socket is its owner's only");
    let listen = free_addr()?;
    served.client.set_route("web", &Route::http(listen)).await?;

    let unreachable = free_addr()?;
    let switch = format!(
        r#"{{"v":1,"op":"switch","service":"web","out":[],"add":{{"addr":"{unreachable}"}},"deadline_ms":10}}"#
    );
    let answers = raw(
        &socket,
        &[
            b"{not json",
            br#"{"v":1,"op":"launch"}"#,
            br#"{"v":7,"op":"list"}"#,
            br#"{"v":1,"op":"add_backend","service":"nope","backend":{"addr":"127.0.0.1:1"}}"#,
            switch.as_bytes(),
            br#"{"v":1,"op":"list"}"#,
        ],
    )
    .await?;
    let kinds: Vec<&str> = answers
        .iter()
        .map(|a| a["error"]["kind"].as_str().unwrap_or("ok"))
        .collect();
    assert_eq!(
        kinds,
        [
            "bad_request",
            "bad_request",
            "unsupported_version",
            "unknown_service",
            "backend_unreachable",
            "ok"
        ]
    );
    assert_eq!(answers[5]["result"][0]["backends"], serde_json::json!([]));

    let huge = vec![b'x'; 70 * 1024];
    let answers = raw(&socket, &[&huge]).await?;
    assert_eq!(answers[0]["error"]["kind"], "too_large");
    assert!(served.client.hello().await.is_ok(), "still serving");
    served.fleet.shutdown(Duration::from_secs(1)).await;
    Ok(())
}

fn routed(listen: SocketAddr, host: &str) -> Route {
    let mut route = Route::http(listen);
    route.hosts = vec![host.to_owned()];
    route
}

#[tokio::test]
async fn services_share_a_listener_by_host_and_come_back_together() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (shop, blog) = (backend("shop").await?, backend("blog").await?);
    let served = serve(dir.path()).await?;
    let plane = &served.client;
    let listen = free_addr()?;
    plane
        .set_route("shop", &routed(listen, "shop.test"))
        .await?;
    plane
        .set_route("blog", &routed(listen, "*.blog.test"))
        .await?;
    plane
        .add_backend("shop", &RouteBackend::new(shop, "g1"))
        .await?;
    plane
        .add_backend("blog", &RouteBackend::new(blog, "g4"))
        .await?;
    assert_eq!(get_host(listen, "shop.test").await?, "shop");
    assert_eq!(get_host(listen, "me.blog.test").await?, "blog");
    assert_eq!(
        get_host(listen, "nobody.test").await?,
        "no route for this host and path\n"
    );
    // A clash is refused and changes nothing.
    let clash = plane.set_route("copy", &routed(listen, "shop.test")).await;
    assert!(clash.is_err(), "{clash:?}");
    let owner = plane.set_route("catch-all", &Route::http(listen)).await?;
    assert_eq!(
        owner.bound, listen,
        "the listener's own lane joins the shared listener"
    );

    // Restored together on one listener.
    served.stop.cancel();
    served.fleet.shutdown(Duration::from_secs(1)).await;
    let (restored, _) = Fleet::restore(StateFile::new(dir.path().join("state.json"))).await?;
    assert_eq!(get_host(listen, "shop.test").await?, "shop");
    assert_eq!(get_host(listen, "x.blog.test").await?, "blog");
    assert_eq!(
        restored.proxies().len(),
        1,
        "one listener for the three routes"
    );

    // Taking one route away leaves the others serving.
    restored
        .remove_route("shop", Duration::from_secs(1))
        .await?;
    assert_eq!(get_host(listen, "x.blog.test").await?, "blog");
    restored.shutdown(Duration::from_secs(1)).await;
    Ok(())
}

#[tokio::test]
async fn a_redirect_route_answers_308_to_https() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let served = serve(dir.path()).await?;
    let listen = free_addr()?;
    let mut route = routed(listen, "shop.test");
    route.redirect_https = Some(8443);
    served.client.set_route("shop:redirect", &route).await?;
    let mut stream = TcpStream::connect(listen).await?;
    stream
        .write_all(b"GET /cart HTTP/1.1\r\nhost: shop.test\r\nconnection: close\r\n\r\n")
        .await?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await?;
    assert!(answer.starts_with("HTTP/1.1 308"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("location: https://shop.test:8443/cart"),
        "{answer}"
    );
    served.fleet.shutdown(Duration::from_secs(1)).await;
    Ok(())
}
