//! Header rewriting between client and backend: hop-by-hop stripping (RFC 9110 §7.6.1),
//! upgrade detection and `X-Forwarded-*`.

use std::net::IpAddr;

use http::HeaderMap;
use http::header::{
    CONNECTION, HeaderName, HeaderValue, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE, TRAILER,
    TRANSFER_ENCODING, UPGRADE,
};

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Headers that describe one hop's connection and must not be forwarded.
const HOP_BY_HOP: [HeaderName; 8] = [
    CONNECTION,
    KEEP_ALIVE,
    TE,
    TRAILER,
    TRANSFER_ENCODING,
    UPGRADE,
    PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION,
];

/// Removes hop-by-hop headers: the fixed list, every `Proxy-*` header (e.g. the
/// non-standard `Proxy-Connection`), and whatever `Connection` names.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(CONNECTION) {
        let named: Vec<HeaderName> = connection_tokens(headers)
            .filter_map(|token| HeaderName::from_bytes(token.as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    // Collecting an empty iterator does not allocate: the common case costs one scan.
    let proxy_named: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("proxy-"))
        .cloned()
        .collect();
    for name in proxy_named {
        headers.remove(name);
    }
}

/// The protocol asked for when the message is an upgrade (`Connection: upgrade` plus an
/// `Upgrade` header), to be restored with [`set_upgrade`] after stripping.
pub(crate) fn upgrade_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    let protocol = headers.get(UPGRADE)?;
    connection_tokens(headers)
        .any(|token| token.eq_ignore_ascii_case("upgrade"))
        .then(|| protocol.clone())
}

/// Puts back the two headers that carry an upgrade across this hop.
pub(crate) fn set_upgrade(headers: &mut HeaderMap, protocol: HeaderValue) {
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, protocol);
}

/// Adds `X-Forwarded-For` (appended to any existing chain), `X-Forwarded-Proto` and
/// `X-Forwarded-Host`. With `trust` the client's own proto and host values are kept.
pub(crate) fn add_forwarded(
    headers: &mut HeaderMap,
    client: IpAddr,
    host: Option<HeaderValue>,
    trust: bool,
    secure: bool,
) {
    let client = client.to_canonical().to_string();
    let mut chain = Vec::with_capacity(client.len());
    for previous in headers.get_all(&X_FORWARDED_FOR) {
        chain.extend_from_slice(previous.as_bytes());
        chain.extend_from_slice(b", ");
    }
    chain.extend_from_slice(client.as_bytes());
    // Cannot fail (earlier values were valid and an IP is ASCII), but if it did, the
    // client's address alone is still right.
    let value = HeaderValue::from_bytes(&chain)
        .or_else(|_| HeaderValue::from_str(&client))
        .ok();
    headers.remove(&X_FORWARDED_FOR);
    if let Some(value) = value {
        headers.insert(X_FORWARDED_FOR, value);
    }

    if !(trust && headers.contains_key(&X_FORWARDED_PROTO)) {
        let proto = if secure { "https" } else { "http" };
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    }
    if !(trust && headers.contains_key(&X_FORWARDED_HOST)) {
        match host {
            Some(host) => headers.insert(X_FORWARDED_HOST, host),
            None => headers.remove(&X_FORWARDED_HOST),
        };
    }
}

fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|token| !token.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_str(value).expect("value"),
            );
        }
        headers
    }

    fn names(headers: &HeaderMap) -> Vec<&str> {
        let mut names: Vec<_> = headers.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        names
    }

    #[test]
    fn strips_fixed_listed_and_proxy_headers() {
        let mut headers = map(&[
            ("connection", "keep-alive, X-Custom-Hop"),
            ("connection", "close"),
            ("x-custom-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("trailer", "x-checksum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "secret"),
            ("proxy-connection", "keep-alive"),
            ("proxy-whatever", "1"),
            ("content-type", "text/plain"),
            ("x-end-to-end", "kept"),
        ]);
        strip_hop_by_hop(&mut headers);
        assert_eq!(names(&headers), ["content-type", "x-end-to-end"]);
    }

    #[test]
    fn upgrade_needs_both_headers() {
        let ws = map(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
        ]);
        assert_eq!(
            upgrade_protocol(&ws),
            Some(HeaderValue::from_static("websocket"))
        );
        assert_eq!(upgrade_protocol(&map(&[("upgrade", "websocket")])), None);
        assert_eq!(upgrade_protocol(&map(&[("connection", "upgrade")])), None);

        let mut stripped = ws;
        strip_hop_by_hop(&mut stripped);
        set_upgrade(&mut stripped, HeaderValue::from_static("websocket"));
        assert_eq!(stripped[CONNECTION], "upgrade");
        assert_eq!(stripped[UPGRADE], "websocket");
    }

    #[test]
    fn forwarded_for_appends_and_proto_host_are_overwritten_unless_trusted() {
        let client = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));
        let incoming = [
            ("x-forwarded-for", "192.0.2.1"),
            ("x-forwarded-for", "198.51.100.7"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "forged.example"),
        ];
        let host = Some(HeaderValue::from_static("app.example"));

        let mut untrusted = map(&incoming);
        add_forwarded(&mut untrusted, client, host.clone(), false, false);
        assert_eq!(
            untrusted["x-forwarded-for"],
            "192.0.2.1, 198.51.100.7, 10.1.2.3"
        );
        assert_eq!(untrusted["x-forwarded-proto"], "http");
        assert_eq!(untrusted["x-forwarded-host"], "app.example");

        let mut trusted = map(&incoming);
        add_forwarded(&mut trusted, client, host, true, false);
        assert_eq!(trusted["x-forwarded-proto"], "https");
        assert_eq!(trusted["x-forwarded-host"], "forged.example");
    }

    #[test]
    fn forwarded_for_uses_plain_ipv4_for_mapped_addresses_and_drops_forged_host() {
        let mapped = IpAddr::V6(Ipv4Addr::new(127, 0, 0, 1).to_ipv6_mapped());
        let mut headers = map(&[("x-forwarded-host", "forged.example")]);
        add_forwarded(&mut headers, mapped, None, false, false);
        assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
        assert!(!headers.contains_key("x-forwarded-host"));

        let mut v6 = HeaderMap::new();
        add_forwarded(&mut v6, IpAddr::V6(Ipv6Addr::LOCALHOST), None, false, true);
        assert_eq!(v6["x-forwarded-for"], "::1");
    }
}
