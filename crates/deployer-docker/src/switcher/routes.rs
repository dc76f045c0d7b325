//! The data-plane routes of a handover service: its own, and the plain-HTTP one that redirects
//! to it when it asks for one.

use deployer_core::ServiceName;
use deployer_core::service::{Handover, ProxyProtocol};
use deployer_plane::{Route, RouteTls};
use deployer_proxy::Mode;

use super::SwitcherConfig;

/// The route name of a service's redirect: `:` is in no service name, so it cannot clash.
pub(crate) fn redirect_name(service: &ServiceName) -> String {
    format!("{service}:redirect")
}

/// The route traffic of `handover` enters by.
pub(crate) fn route_of(handover: &Handover, config: &SwitcherConfig) -> Route {
    let mut route = Route::http(handover.listen());
    route.mode = match handover.protocol() {
        ProxyProtocol::Http => Mode::Http,
        ProxyProtocol::Tcp => Mode::Tcp,
    };
    route.workers = handover.workers() as usize;
    route.connect_timeout_ms = millis(config.proxy_connect_timeout);
    route.response_timeout_ms = millis(config.proxy_response_timeout);
    route.hosts = handover.hosts().to_vec();
    route.path_prefix = handover.path_prefix().map(str::to_owned);
    route.tls = handover.tls().map(|(cert, key)| RouteTls {
        cert: cert.to_owned(),
        key: key.to_owned(),
    });
    route
}

/// The plain-HTTP route that redirects `handover`'s hosts to HTTPS, if it has one.
pub(crate) fn redirect_of(handover: &Handover, config: &SwitcherConfig) -> Option<Route> {
    let from = handover.redirect_from()?;
    let mut route = route_of(handover, config);
    route.listen = from;
    route.workers = 0;
    route.tls = None;
    route.redirect_https = Some(handover.listen().port());
    Some(route)
}

fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
