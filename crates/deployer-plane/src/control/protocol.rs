//! The control API, version 1: one JSON object per line each way on a unix socket.
//!
//! A request is `{"v":1,"op":"<operation>", ...fields}`; its answer is
//! `{"v":1,"ok":true,"result":...}` or `{"v":1,"ok":false,"error":{"kind":...,"message":...}}`.
//! A request that does not parse, names an unknown operation or field, or another version,
//! is answered with an error and changes nothing.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::route::{Gate, Route, RouteBackend, RouteSplit};

/// The version this build speaks.
pub const VERSION: u32 = 1;

/// The longest request line accepted; a route or a swap is a few hundred bytes.
pub const MAX_LINE: usize = 64 * 1024;

/// One control request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Request {
    /// Who is there: answers [`Hello`]. (Variants without fields are written `{}` so that
    /// unknown fields are refused for them too.)
    Hello {},
    /// Creates or changes a route (see `DataPlane::set_route`).
    SetRoute {
        /// The service.
        service: String,
        /// Its settings.
        route: Route,
    },
    /// Closes a route; what it serves gets `grace_ms` to finish.
    RemoveRoute {
        /// The service.
        service: String,
        /// How long open requests may take, in milliseconds.
        #[serde(default)]
        grace_ms: u64,
    },
    /// Every route with its backends and gate.
    List {},
    /// Adds a backend.
    AddBackend {
        /// The service.
        service: String,
        /// The backend.
        backend: RouteBackend,
    },
    /// Takes a backend out of rotation (it drains).
    RemoveBackend {
        /// The service.
        service: String,
        /// Its address.
        addr: SocketAddr,
    },
    /// `add` joins and `out` leave in one step.
    Swap {
        /// The service.
        service: String,
        /// Backends that leave.
        out: Vec<SocketAddr>,
        /// The backend that joins.
        add: RouteBackend,
    },
    /// Waits for removed backends to finish, cutting what is left at the deadline.
    Drain {
        /// The service.
        service: String,
        /// The backends to wait for.
        backends: Vec<SocketAddr>,
        /// The bound, in milliseconds.
        deadline_ms: u64,
    },
    /// A health-gated switch: `add` must accept a connection, then joins as `out` leave,
    /// and the answer comes once `out` have drained, with what was cut.
    Switch {
        /// The service.
        service: String,
        /// Backends that leave.
        out: Vec<SocketAddr>,
        /// The backend that joins.
        add: RouteBackend,
        /// The drain bound, in milliseconds.
        deadline_ms: u64,
    },
    /// Sets what new requests meet (pause, maintenance, resume).
    SetGate {
        /// The service.
        service: String,
        /// The gate.
        gate: Gate,
    },
    /// Sends a share of clients to one group of backends (a canary), or ends the split.
    SetSplit {
        /// The service.
        service: String,
        /// The split; absent or null ends it.
        #[serde(default)]
        split: Option<RouteSplit>,
    },
    /// Every route's counters.
    Stats {},
    /// Starts a new proxy process (of `binary`, by default the running one's), hands it the
    /// listeners, then drains and exits.
    Upgrade {
        /// The new binary (an upgrade usually brings one).
        #[serde(default)]
        binary: Option<std::path::PathBuf>,
    },
}

/// The answer to [`Request::Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The control API version.
    pub version: u32,
    /// The proxy process's id.
    pub pid: u32,
    /// How many routes it serves.
    pub routes: usize,
}

/// An error as the wire carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireError {
    /// Machine-readable: `bad_request`, `unsupported_version`, `unknown_service`,
    /// `bind_failed`, `backend_unreachable`, `upgrading`, `too_large`.
    pub kind: String,
    /// For people.
    pub message: String,
}

impl WireError {
    /// An error of `kind`.
    pub fn new(kind: &str, message: impl Into<String>) -> Self {
        Self {
            kind: kind.to_owned(),
            message: message.into(),
        }
    }
}

/// One answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// The version.
    pub v: u32,
    /// Whether the request was carried out.
    pub ok: bool,
    /// What it returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// Why it was not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<WireError>,
}

impl Response {
    /// A success carrying `result`.
    pub fn ok(result: Value) -> Self {
        Self {
            v: VERSION,
            ok: true,
            result: Some(result),
            error: None,
        }
    }

    /// A refusal.
    pub fn err(error: WireError) -> Self {
        Self {
            v: VERSION,
            ok: false,
            result: None,
            error: Some(error),
        }
    }
}

/// Reads one request line.
pub fn parse_request(line: &[u8]) -> Result<Request, WireError> {
    let mut value: Value = serde_json::from_slice(line)
        .map_err(|e| WireError::new("bad_request", format!("not JSON: {e}")))?;
    let object = value
        .as_object_mut()
        .ok_or_else(|| WireError::new("bad_request", "a request is a JSON object"))?;
    match object.remove("v") {
        Some(Value::Number(n)) if n.as_u64() == Some(u64::from(VERSION)) => {}
        Some(other) => {
            return Err(WireError::new(
                "unsupported_version",
                format!("this proxy speaks version {VERSION}, not {other}"),
            ));
        }
        None => {
            return Err(WireError::new(
                "bad_request",
                format!("missing \"v\" (the API version, {VERSION})"),
            ));
        }
    }
    serde_json::from_value(value).map_err(|e| WireError::new("bad_request", e.to_string()))
}

/// Writes one request line (with its version, without the newline).
pub fn encode_request(request: &Request) -> Result<Vec<u8>, serde_json::Error> {
    let mut value = serde_json::to_value(request)?;
    if let Some(object) = value.as_object_mut() {
        object.insert("v".to_owned(), Value::from(VERSION));
    }
    serde_json::to_vec(&value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_with_their_version() {
        let request = Request::Swap {
            service: "web".into(),
            out: vec!["127.0.0.1:9000".parse().expect("addr")],
            add: RouteBackend::new("127.0.0.1:9001".parse().expect("addr"), "g2"),
        };
        let line = encode_request(&request).expect("encode");
        assert!(String::from_utf8_lossy(&line).contains("\"v\":1"));
        assert_eq!(parse_request(&line).expect("parse"), request);
    }

    #[test]
    fn bad_requests_name_their_problem() {
        let cases: [(&str, &str, &str); 6] = [
            ("{", "bad_request", "not JSON"),
            ("[1]", "bad_request", "JSON object"),
            (r#"{"op":"list"}"#, "bad_request", "missing \"v\""),
            (r#"{"v":2,"op":"list"}"#, "unsupported_version", "version 1"),
            (r#"{"v":1,"op":"explode"}"#, "bad_request", "explode"),
            (
                r#"{"v":1,"op":"remove_backend","service":"web","addr":"nowhere"}"#,
                "bad_request",
                "invalid socket address",
            ),
        ];
        for (line, kind, needle) in cases {
            let error = parse_request(line.as_bytes()).expect_err(line);
            assert_eq!(error.kind, kind, "{line}");
            assert!(error.message.contains(needle), "{line}: {}", error.message);
        }
        let unknown = r#"{"v":1,"op":"list","colour":"red"}"#;
        assert!(parse_request(unknown.as_bytes()).is_err(), "unknown field");
    }
}
