//! Who may call a webhook endpoint: a token in the path or query (senders that cannot sign),
//! a bearer token (static headers), or GitHub's HMAC signature over the raw body.
//!
//! Tokens and headers are checked before the body is read; the signature needs the body, so it
//! is checked right after reading it and before parsing it. Every comparison is constant-time.

use hmac::{Hmac, Mac};
use http::HeaderMap;
use http::request::Parts;
use sha2::Sha256;

use crate::secret::Secret;

/// GitHub's signature header.
pub(crate) const SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// How a sender proves who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthKind {
    /// The secret as the last path segment (`/hooks/dockerhub/<token>`) or `?token=`.
    Token,
    /// `Authorization: Bearer <secret>` (the bare secret is accepted too: Harbor sends its
    /// "auth header" setting verbatim).
    Bearer,
    /// `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body keyed by the secret>`.
    Signature,
}

/// The checks that need no body. For [`AuthKind::Signature`] this only checks that a
/// well-formed signature is there, so unsigned requests are refused before reading the body.
pub(crate) fn check_headers(
    kind: AuthKind,
    secret: &Secret,
    parts: &Parts,
    path_token: Option<&str>,
) -> bool {
    match kind {
        AuthKind::Token => path_token
            .or_else(|| query_token(parts.uri.query()))
            .is_some_and(|token| secret.matches(token.as_bytes())),
        AuthKind::Bearer => bearer_matches(secret, &parts.headers, true),
        AuthKind::Signature => signature_bytes(&parts.headers).is_some(),
    }
}

/// Whether `headers` carry `Authorization: Bearer <secret>`, or with `bare_too` also the bare
/// secret (what Harbor sends when its "auth header" setting holds only the token).
pub(crate) fn bearer_matches(secret: &Secret, headers: &HeaderMap, bare_too: bool) -> bool {
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| bearer_token(v.as_bytes(), bare_too))
        .is_some_and(|token| secret.matches(token))
}

/// The HMAC of a body computed as it streams in, for the signature its request carries.
pub(crate) struct SignatureCheck {
    given: Vec<u8>,
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for SignatureCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SignatureCheck")
    }
}

impl SignatureCheck {
    /// `None` when the request carries no well-formed signature.
    pub(crate) fn new(secret: &Secret, headers: &HeaderMap) -> Option<Self> {
        let given = signature_bytes(headers)?;
        let mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()).ok()?;
        Some(Self { given, mac })
    }

    pub(crate) fn update(&mut self, chunk: &[u8]) {
        self.mac.update(chunk);
    }

    /// Whether the body seen so far is the one signed.
    pub(crate) fn verify(self) -> bool {
        // `verify_slice` compares in constant time.
        self.mac.verify_slice(&self.given).is_ok()
    }
}

/// Whether the body carries a valid signature by `secret`.
#[cfg(test)]
pub(crate) fn verify_signature(secret: &Secret, headers: &HeaderMap, body: &[u8]) -> bool {
    let Some(mut check) = SignatureCheck::new(secret, headers) else {
        return false;
    };
    check.update(body);
    check.verify()
}

/// `sha256=<lowercase hex HMAC-SHA256 of body keyed by key>`: GitHub's `X-Hub-Signature-256`
/// and this crate's `X-Deployer-Signature-256`.
///
/// ```
/// let sig = deployer_http::hooks::signature(b"It's a Secret to Everybody", b"Hello, World!");
/// assert_eq!(sig, "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17");
/// ```
pub fn signature(key: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn signature_bytes(headers: &HeaderMap) -> Option<Vec<u8>> {
    let value = headers.get(SIGNATURE_HEADER)?.to_str().ok()?;
    let hex_part = value.trim().strip_prefix("sha256=")?;
    let bytes = hex::decode(hex_part).ok()?;
    (bytes.len() == 32).then_some(bytes)
}

fn bearer_token(value: &[u8], bare_too: bool) -> Option<&[u8]> {
    const PREFIX: &[u8] = b"bearer ";
    let value = value.trim_ascii();
    match value.get(..PREFIX.len()) {
        Some(p) if p.eq_ignore_ascii_case(PREFIX) => Some(value[PREFIX.len()..].trim_ascii()),
        _ => bare_too.then_some(value),
    }
}

fn query_token(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "It's a Secret to Everybody";

    fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut builder = http::Request::post(uri);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn github_test_vector() {
        let sig = signature(SECRET.as_bytes(), b"Hello, World!");
        assert_eq!(
            sig,
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
        let p = parts("/", &[(SIGNATURE_HEADER, &sig)]);
        let secret = Secret::new(SECRET);
        assert!(check_headers(AuthKind::Signature, &secret, &p, None));
        assert!(verify_signature(&secret, &p.headers, b"Hello, World!"));
        assert!(!verify_signature(&secret, &p.headers, b"Hello, World?"));
        assert!(!verify_signature(
            &Secret::new("other"),
            &p.headers,
            b"Hello, World!"
        ));
        let unsigned = parts("/", &[]);
        assert!(!check_headers(
            AuthKind::Signature,
            &secret,
            &unsigned,
            None
        ));
        let bad = parts("/", &[(SIGNATURE_HEADER, "sha1=abcd")]);
        assert!(!check_headers(AuthKind::Signature, &secret, &bad, None));
    }

    #[test]
    fn tokens_from_path_query_and_authorization() {
        let secret = Secret::new("0123456789abcdef");
        let p = parts("/hooks/dockerhub", &[]);
        assert!(check_headers(
            AuthKind::Token,
            &secret,
            &p,
            Some("0123456789abcdef")
        ));
        assert!(!check_headers(
            AuthKind::Token,
            &secret,
            &p,
            Some("0123456789abcdeF")
        ));
        assert!(!check_headers(AuthKind::Token, &secret, &p, None));
        let q = parts("/hooks/quay?x=1&token=0123456789abcdef", &[]);
        assert!(check_headers(AuthKind::Token, &secret, &q, None));
        for value in [
            "Bearer 0123456789abcdef",
            "bearer  0123456789abcdef ",
            "0123456789abcdef",
        ] {
            let b = parts("/", &[("authorization", value)]);
            assert!(
                check_headers(AuthKind::Bearer, &secret, &b, None),
                "{value}"
            );
        }
        let b = parts("/", &[("authorization", "Bearer nope")]);
        assert!(!check_headers(AuthKind::Bearer, &secret, &b, None));
        assert!(!check_headers(
            AuthKind::Bearer,
            &secret,
            &parts("/", &[]),
            None
        ));
    }
}
