//! Canary traffic splits: a share of clients goes to the backends of one group (the candidate
//! build), the rest to the others. A client keeps its side: the proxy gives it a cookie holding
//! its bucket (0 to 99), handed out in an order that puts exactly `percent` of every 100 new
//! clients on the canary. Testers pick a side with a header.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use http::HeaderMap;
use http::header::{COOKIE, HeaderValue};

use crate::backends::Side;

/// The cookie that keeps a client on its side.
pub const CANARY_COOKIE: &str = "deployer_canary";

/// How long a client keeps its side (a week; a canary's hold is far shorter).
const COOKIE_MAX_AGE: u32 = 7 * 24 * 3600;

/// Buckets are handed out in steps of this (coprime with 100), so every 100 consecutive new
/// clients take each bucket once and neighbours land far apart.
const STRIDE: u64 = 37;

/// A share of clients sent to the backends of `group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// The group (e.g. `g5`) whose backends are the canary.
    pub group: String,
    /// The share of clients that go to it, 0 to 100.
    pub percent: u8,
    /// A request header that picks the side whatever the cookie says: `always` (or `1`,
    /// `true`) for the canary, `never` (or `0`, `false`) for the others.
    pub header: Option<String>,
}

/// A split in force on a lane.
#[derive(Debug)]
pub(crate) struct ActiveSplit {
    split: Split,
    group: Arc<str>,
    header: Option<http::HeaderName>,
    new_clients: AtomicU64,
}

impl ActiveSplit {
    pub(crate) fn new(split: Split) -> Self {
        let header = split
            .header
            .as_deref()
            .and_then(|h| http::HeaderName::from_bytes(h.as_bytes()).ok());
        Self {
            group: Arc::from(split.group.as_str()),
            header,
            new_clients: AtomicU64::new(0),
            split,
        }
    }

    pub(crate) fn split(&self) -> &Split {
        &self.split
    }

    /// The side a request goes to, and the cookie to give a client that had none.
    pub(crate) fn decide(&self, headers: &HeaderMap) -> (Side, Option<HeaderValue>) {
        let side = |canary| Side {
            group: Arc::clone(&self.group),
            canary,
        };
        if let Some(forced) = self.header.as_ref().and_then(|h| headers.get(h)) {
            match forced.to_str().map(str::to_ascii_lowercase).as_deref() {
                Ok("always" | "1" | "true") => return (side(true), None),
                Ok("never" | "0" | "false") => return (side(false), None),
                _ => {}
            }
        }
        if let Some(bucket) = bucket_of(headers) {
            return (side(bucket < self.split.percent), None);
        }
        let n = self.new_clients.fetch_add(1, Ordering::Relaxed);
        let bucket = u8::try_from(n.wrapping_mul(STRIDE) % 100).unwrap_or(0);
        let cookie = format!(
            "{CANARY_COOKIE}={bucket:02}.{n:x}; Path=/; Max-Age={COOKIE_MAX_AGE}; HttpOnly; SameSite=Lax"
        );
        (
            side(bucket < self.split.percent),
            HeaderValue::from_str(&cookie).ok(),
        )
    }
}

/// The bucket in a request's canary cookie (`NN.anything`), if it has a valid one.
fn bucket_of(headers: &HeaderMap) -> Option<u8> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().strip_prefix(CANARY_COOKIE)?.strip_prefix('='))
        .find_map(|value| {
            let digits = value.split('.').next()?;
            let bucket: u8 = digits.parse().ok()?;
            (bucket < 100).then_some(bucket)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(percent: u8) -> ActiveSplit {
        ActiveSplit::new(Split {
            group: "g2".into(),
            percent,
            header: Some("x-canary".into()),
        })
    }

    #[test]
    fn exactly_the_share_of_new_clients_goes_to_the_canary() {
        let split = split(20);
        let on_canary = (0..1000)
            .filter(|_| split.decide(&HeaderMap::new()).0.canary)
            .count();
        assert_eq!(on_canary, 200);
    }

    #[test]
    fn a_client_keeps_its_side_and_testers_choose_theirs() {
        let split = split(20);
        let mut seen = [0u32; 2];
        for _ in 0..100 {
            let (first, cookie) = split.decide(&HeaderMap::new());
            let cookie = cookie.expect("a new client gets a cookie");
            let value = cookie
                .to_str()
                .expect("ascii")
                .split(';')
                .next()
                .expect("pair")
                .to_owned();
            let mut again = HeaderMap::new();
            again.insert(
                COOKIE,
                HeaderValue::from_str(&format!("a=b; {value}")).expect("cookie"),
            );
            let (second, none) = split.decide(&again);
            assert_eq!(first.canary, second.canary, "{value}");
            assert!(none.is_none(), "no new cookie for a known client");
            seen[usize::from(first.canary)] += 1;
        }
        assert_eq!(seen, [80, 20]);
        let mut tester = HeaderMap::new();
        tester.insert("x-canary", HeaderValue::from_static("always"));
        assert!(split.decide(&tester).0.canary);
        tester.insert("x-canary", HeaderValue::from_static("never"));
        tester.insert(COOKIE, HeaderValue::from_static("deployer_canary=03.1"));
        assert!(
            !split.decide(&tester).0.canary,
            "the header wins over the cookie"
        );
        let mut forged = HeaderMap::new();
        forged.insert(COOKIE, HeaderValue::from_static("deployer_canary=250.x"));
        assert!(
            split.decide(&forged).1.is_some(),
            "an invalid bucket is a new client"
        );
    }
}
