//! Keeps browsers out of the admin API: a web page must not deploy through it, and must not
//! read it by DNS rebinding.
//!
//! Without a token the admin API trusts every process that can connect to loopback, and a
//! browser on the host is such a process. It can send a cross-site `text/plain` or form POST
//! without asking the server first, and a page whose name was rebound to 127.0.0.1 can read
//! the answers. So, before the token check, every guarded route:
//!
//! - refuses a `Host` (or HTTP/2 authority) that is not the admin listen address
//!   ([`AdminConfig::listen`]), a loopback name for it, or one of [`AdminConfig::hosts`]: a
//!   rebound name never passes. A request without one is refused when it changes state
//!   (browsers always send one, so a GET without one is no browser's);
//! - refuses a state-changing request (POST, PUT, PATCH, DELETE) that is not
//!   `Content-Type: application/json`, body or not: that type is the one a page cannot send
//!   cross-site without a CORS preflight, and the API answers no preflight;
//! - refuses a state-changing request whose `Origin` is not one of the admin API's own
//!   origins, with or without a token (no legitimate page posts to it cross-site).
//!
//! `/healthz` and `/readyz` are not guarded: load balancers and supervisors probe them under
//! names of their own, and they tell nothing but "up" and "ready".

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, Method, StatusCode, header};

use super::codes;
use crate::api_error::ApiError;
use crate::body::{media_type, unsupported_media_type};
use crate::config::AdminConfig;
use crate::refusals::{self, Refusals};

/// The names and origins the admin API answers to.
#[derive(Debug)]
pub(crate) struct Guard {
    listen: Option<SocketAddr>,
    /// Lowercase, each with its port when one was given.
    hosts: Vec<(String, Option<u16>)>,
    refusals: Refusals,
}

impl Guard {
    /// From a validated config.
    pub(crate) fn new(config: &AdminConfig) -> Self {
        let hosts = config
            .hosts
            .iter()
            .filter_map(|h| parse_authority(h))
            .collect();
        Self {
            listen: config.listen,
            hosts,
            refusals: Refusals::new("admin API"),
        }
    }

    /// Whether `authority` (`host[:port]`, as in `Host`) names this admin API. Without a port
    /// it is port 80, as a browser means it.
    pub(crate) fn accepts(&self, authority: &str) -> bool {
        let Some((host, port)) = parse_authority(authority) else {
            return false;
        };
        self.accepts_parts(&host, port.unwrap_or(80))
    }

    fn accepts_parts(&self, host: &str, port: u16) -> bool {
        let configured = self
            .hosts
            .iter()
            .any(|(name, wanted)| name == host && wanted.is_none_or(|w| w == port));
        if configured {
            return true;
        }
        // An IP literal cannot be rebound, and `localhost` resolves to loopback only (RFC
        // 6761); any other name could be the attacker's.
        let ip = unbracket(host).parse::<IpAddr>().ok();
        let loopback_name = host == "localhost" || ip.is_some_and(|ip| ip.is_loopback());
        match self.listen {
            // Embedded without a known address (port 0, tests): loopback on any port.
            None => loopback_name,
            Some(listen) if listen.port() != port => false,
            Some(listen) if listen.ip().is_unspecified() => ip.is_some() || loopback_name,
            Some(listen) if listen.ip().is_loopback() => loopback_name,
            Some(listen) => ip == Some(listen.ip()),
        }
    }

    /// Whether `origin` (`scheme://host[:port]`, as in `Origin`) is one of the admin API's own.
    pub(crate) fn accepts_origin(&self, origin: &str) -> bool {
        let Some((scheme, authority)) = origin.split_once("://") else {
            return false;
        };
        let default_port = match scheme.to_ascii_lowercase().as_str() {
            "http" => 80,
            "https" => 443,
            _ => return false,
        };
        let Some((host, port)) = parse_authority(authority) else {
            return false;
        };
        self.accepts_parts(&host, port.unwrap_or(default_port))
    }
}

/// The middleware (see the module docs).
pub(crate) async fn guard(
    State(guard): State<Arc<Guard>>,
    request: Request,
    next: Next,
) -> Response {
    if let Err(refusal) = check(&guard, request.method(), request.uri(), request.headers()) {
        // A flood of foreign pages or rebinding names is a rate, and its values are cut.
        guard
            .refusals
            .note("browser guard", refusal.code.unwrap_or("refused"));
        tracing::debug!(
            method = %request.method(),
            path = refusals::quoted(request.uri().path()),
            "admin API: refused a request: {}",
            refusals::quoted(&refusal.message)
        );
        return refusal.into_response();
    }
    next.run(request).await
}

fn check(
    guard: &Guard,
    method: &Method,
    uri: &http::Uri,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let changes_state = matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    let hosts: Vec<_> = headers.get_all(header::HOST).iter().collect();
    let host = match (uri.authority(), hosts.as_slice()) {
        // HTTP/2 carries the authority in the request line; HTTP/1.1 only in `Host`.
        (Some(authority), _) => Some(authority.as_str()),
        (None, [one]) => Some(one.to_str().map_err(|_| host_refused("is not text"))?),
        (None, []) => None,
        (None, _) => return Err(host_refused("sent more than once")),
    };
    match host {
        Some(host) if !guard.accepts(host) => {
            return Err(host_refused(format!(
                "{host:?} is not this admin API's address; add the name to admin.hosts to reach it under that name"
            )));
        }
        None if changes_state => {
            return Err(host_refused(
                "missing; a request that changes state must name the admin API's address",
            ));
        }
        _ => {}
    }
    if !changes_state {
        return Ok(());
    }
    let origins: Vec<_> = headers.get_all(header::ORIGIN).iter().collect();
    match origins.as_slice() {
        [] => {}
        [origin] => {
            let text = origin.to_str().unwrap_or("(not text)");
            if !guard.accepts_origin(text) {
                return Err(origin_refused(format!(
                    "{text:?} is not the admin API's own origin; requests from web pages are refused"
                )));
            }
        }
        _ => return Err(origin_refused("sent more than once")),
    }
    if !media_type(headers).is_some_and(|t| t.eq_ignore_ascii_case("application/json")) {
        return Err(
            unsupported_media_type(&["application/json"]).with_code(codes::UNSUPPORTED_MEDIA_TYPE)
        );
    }
    Ok(())
}

fn host_refused(problem: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, format!("host: {problem}"))
        .with_code(codes::HOST_NOT_ALLOWED)
}

fn origin_refused(problem: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, format!("origin: {problem}"))
        .with_code(codes::ORIGIN_NOT_ALLOWED)
}

/// `host[:port]` split into the lowercase host (IPv6 in brackets, a trailing dot dropped) and
/// the port; `None` when it is no authority (a path, user info, an empty host, a bad port).
pub(crate) fn parse_authority(authority: &str) -> Option<(String, Option<u16>)> {
    let authority = authority.trim();
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        inside.parse::<Ipv6Addr>().ok()?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':')?),
        };
        (format!("[{inside}]"), port)
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        let host = host.strip_suffix('.').unwrap_or(host);
        let name_like = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
        if !name_like {
            return None;
        }
        (host.to_owned(), port)
    };
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => Some(p.parse().ok()?),
        Some(_) => return None,
    };
    Some((host.to_ascii_lowercase(), port))
}

fn unbracket(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(listen: Option<&str>, hosts: &[&str]) -> Guard {
        Guard::new(&AdminConfig {
            listen: listen.map(|l| l.parse().expect("address")),
            hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
            ..AdminConfig::default()
        })
    }

    #[test]
    fn the_listen_address_and_its_loopback_names_are_accepted_on_its_port_only() {
        let g = guard(Some("127.0.0.1:4501"), &[]);
        for ok in [
            "127.0.0.1:4501",
            "localhost:4501",
            "LOCALHOST:4501",
            "[::1]:4501",
            "localhost.:4501",
        ] {
            assert!(g.accepts(ok), "{ok}");
        }
        for bad in [
            "attacker.example:4501",
            "127.0.0.1:4502",
            "127.0.0.1",
            "localhost",
            "evil.localhost:4501",
            "10.0.0.1:4501",
            "",
            "user@127.0.0.1:4501",
            "127.0.0.1:45x",
        ] {
            assert!(!g.accepts(bad), "{bad}");
        }
        let v6 = guard(Some("[::1]:4501"), &[]);
        assert!(v6.accepts("[::1]:4501") && v6.accepts("localhost:4501"));
        assert!(!v6.accepts("[::2]:4501"));
    }

    #[test]
    fn configured_names_match_with_or_without_their_port() {
        let g = guard(
            Some("0.0.0.0:4501"),
            &["deploy.internal", "Admin.Example.com:8443"],
        );
        for ok in [
            "deploy.internal",
            "deploy.internal:4501",
            "DEPLOY.internal:9999",
            "admin.example.com:8443",
            "10.1.2.3:4501",
            "0.0.0.0:4501",
            "localhost:4501",
        ] {
            assert!(g.accepts(ok), "{ok}");
        }
        for bad in [
            "admin.example.com",
            "admin.example.com:443",
            "other.internal:4501",
            "10.1.2.3:80",
        ] {
            assert!(!g.accepts(bad), "{bad}");
        }
        let public = guard(Some("192.0.2.7:4501"), &[]);
        assert!(public.accepts("192.0.2.7:4501"));
        assert!(!public.accepts("192.0.2.8:4501") && !public.accepts("localhost:4501"));
    }

    #[test]
    fn without_a_known_address_loopback_names_on_any_port_pass() {
        let g = guard(None, &[]);
        assert!(g.accepts("127.0.0.1:34567") && g.accepts("localhost"));
        assert!(!g.accepts("attacker.example:34567"));
    }

    #[test]
    fn origins_are_the_same_names_with_an_http_or_https_scheme() {
        let g = guard(Some("127.0.0.1:4501"), &["deploy.internal"]);
        for ok in [
            "http://127.0.0.1:4501",
            "http://localhost:4501",
            "https://deploy.internal",
            "http://deploy.internal:4501",
        ] {
            assert!(g.accepts_origin(ok), "{ok}");
        }
        for bad in [
            "null",
            "http://attacker.example",
            "http://127.0.0.1:4501/path",
            "ftp://127.0.0.1:4501",
            "http://127.0.0.1",
            "127.0.0.1:4501",
        ] {
            assert!(!g.accepts_origin(bad), "{bad}");
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                value.parse().expect("value"),
            );
        }
        map
    }

    fn refusal(method: &Method, pairs: &[(&str, &str)]) -> Option<(StatusCode, &'static str)> {
        let g = guard(Some("127.0.0.1:4501"), &[]);
        let uri = http::Uri::from_static("/api/v1/services/web/rollback");
        check(&g, method, &uri, &headers(pairs))
            .err()
            .map(|e| (e.status, e.code.unwrap_or("")))
    }

    #[test]
    fn state_changes_need_a_host_json_and_no_foreign_origin() {
        let json = ("content-type", "application/json; charset=utf-8");
        let host = ("host", "127.0.0.1:4501");
        assert_eq!(refusal(&Method::POST, &[host, json]), None);
        assert_eq!(
            refusal(&Method::POST, &[json]),
            Some((StatusCode::FORBIDDEN, codes::HOST_NOT_ALLOWED))
        );
        assert_eq!(
            refusal(&Method::POST, &[host, host, json]),
            Some((StatusCode::FORBIDDEN, codes::HOST_NOT_ALLOWED))
        );
        for other in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
        ] {
            assert_eq!(
                refusal(&Method::DELETE, &[host, ("content-type", other)]),
                Some((
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    codes::UNSUPPORTED_MEDIA_TYPE
                )),
                "{other}"
            );
        }
        assert_eq!(
            refusal(&Method::PUT, &[host]),
            Some((
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                codes::UNSUPPORTED_MEDIA_TYPE
            ))
        );
        assert_eq!(
            refusal(
                &Method::POST,
                &[host, json, ("origin", "http://attacker.example")]
            ),
            Some((StatusCode::FORBIDDEN, codes::ORIGIN_NOT_ALLOWED))
        );
        assert_eq!(
            refusal(
                &Method::POST,
                &[host, json, ("origin", "http://127.0.0.1:4501")]
            ),
            None
        );
        // Reads: no content type needed, and a client without `Host` is no browser.
        assert_eq!(refusal(&Method::GET, &[]), None);
        assert_eq!(
            refusal(&Method::GET, &[("origin", "http://attacker.example")]),
            None
        );
        assert_eq!(
            refusal(&Method::GET, &[("host", "attacker.example")]),
            Some((StatusCode::FORBIDDEN, codes::HOST_NOT_ALLOWED))
        );
    }
}
