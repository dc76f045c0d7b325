//! Virtual routes on a shared listener: requests go to the lane their Host and path pick, an
//! unmatched one gets 404 (or the proxy's own lane, when it has backends), and each lane keeps
//! its own backends, gate and counters.

use deployer_proxy::{ProxyConfig, RouteMatch};
use http::{HeaderValue, StatusCode};

use crate::support::*;

async fn fetch_host(proxy: &deployer_proxy::Proxy, host: &'static str, path: &str) -> Reply {
    let mut request = get(path);
    request
        .headers_mut()
        .insert("host", HeaderValue::from_static(host));
    within("a routed request", one_shot(proxy.local_addr(), request))
        .await
        .expect("the request")
}

fn matcher(hosts: &[&str], prefix: &str) -> RouteMatch {
    let hosts: Vec<String> = hosts.iter().map(|h| (*h).to_owned()).collect();
    RouteMatch::new(&hosts, prefix).expect("a valid route")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_and_paths_pick_their_lane_and_the_rest_is_404() {
    let (shop, api, blog, fallback) = (
        Backend::http("shop").await,
        Backend::http("api").await,
        Backend::http("blog").await,
        Backend::http("fallback").await,
    );
    let proxy = start_proxy(ProxyConfig::http(localhost())).await;
    let shop_lane = proxy
        .add_route("shop", matcher(&["shop.test"], "/"))
        .expect("route");
    let api_lane = proxy
        .add_route("api", matcher(&["shop.test"], "/api"))
        .expect("route");
    let blog_lane = proxy
        .add_route("blog", matcher(&["*.blog.test"], "/"))
        .expect("route");
    shop_lane.add_backend(shop.addr);
    api_lane.add_backend(api.addr);
    blog_lane.add_backend(blog.addr);

    assert_eq!(fetch_host(&proxy, "shop.test", "/").await.body, "shop");
    assert_eq!(
        fetch_host(&proxy, "SHOP.test:8080", "/api/v1").await.body,
        "api"
    );
    assert_eq!(
        fetch_host(&proxy, "me.blog.test", "/post").await.body,
        "blog"
    );
    let unmatched = fetch_host(&proxy, "other.test", "/").await;
    assert_eq!(unmatched.status, StatusCode::NOT_FOUND);
    assert_eq!(unmatched.body, "no route for this host and path\n");

    // The proxy's own lane takes what no route matches once it has a backend.
    proxy.add_backend(fallback.addr);
    assert_eq!(fetch_host(&proxy, "other.test", "/").await.body, "fallback");

    // Each lane has its own gate and counters.
    api_lane.maintenance("api upgrade");
    assert_eq!(
        fetch_host(&proxy, "shop.test", "/api").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(fetch_host(&proxy, "shop.test", "/").await.body, "shop");
    assert_eq!(shop_lane.totals().requests, 2);

    // A route taken away answers 404 again (here: the fallback).
    let drain = proxy.remove_route("blog").expect("the route");
    assert_eq!(drain.backends(), vec![blog.addr]);
    assert_eq!(
        fetch_host(&proxy, "me.blog.test", "/").await.body,
        "fallback"
    );
    assert_eq!(proxy.route_names(), ["shop", "api"]);
}

#[tokio::test]
async fn overlapping_routes_and_tcp_proxies_are_refused() {
    let proxy = start_proxy(ProxyConfig::http(localhost())).await;
    proxy
        .add_route("a", matcher(&["x.test"], "/"))
        .expect("route");
    let error = proxy
        .add_route("b", matcher(&["x.test"], "/"))
        .expect_err("same match");
    assert!(error.to_string().contains("same hosts"), "{error}");
    let tcp = start_proxy(ProxyConfig::tcp(localhost())).await;
    assert!(tcp.add_route("a", matcher(&["x.test"], "/")).is_err());
}

#[tokio::test]
async fn a_redirecting_lane_sends_clients_to_https_with_their_host_and_path() {
    let proxy = start_proxy(ProxyConfig::http(localhost())).await;
    let lane = proxy
        .add_route("shop", matcher(&["shop.test"], "/"))
        .expect("route");
    lane.redirect_to_https(Some(443));
    let reply = fetch_host(&proxy, "shop.test:80", "/cart?item=3").await;
    assert_eq!(reply.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(
        reply.headers.get("location").and_then(|v| v.to_str().ok()),
        Some("https://shop.test/cart?item=3")
    );
    lane.redirect_to_https(Some(8443));
    let reply = fetch_host(&proxy, "shop.test", "/").await;
    assert_eq!(
        reply.headers.get("location").and_then(|v| v.to_str().ok()),
        Some("https://shop.test:8443/")
    );
    lane.redirect_to_https(None);
    assert_eq!(lane.redirects_to_https(), None);
}
