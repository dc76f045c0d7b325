//! The admin API's OpenAPI 3 document, written by hand (a test checks it lists exactly the
//! routes the router serves).

use serde_json::{Value, json};

use super::codes;
use super::routes::HISTORY_DEFAULT;
use super::traffic::{MAX_HOLD, MAX_MESSAGE};

/// The OpenAPI 3.0 document served at `/api/v1/openapi.json`, for the default
/// [`AdminConfig`](crate::config::AdminConfig).
pub fn openapi_document() -> Value {
    document(crate::config::AdminConfig::default().max_history)
}

/// A service name as `ServiceName` accepts it.
const NAME_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$";
/// A digest as `Digest::parse` accepts it.
const DIGEST_PATTERN: &str = "^(sha256:[0-9a-f]{64}|sha384:[0-9a-f]{96}|sha512:[0-9a-f]{128})$";

/// The document, with every bound the server enforces: `max_history` is the `limit` maximum.
pub(super) fn document(max_history: usize) -> Value {
    let error = |description: &str| {
        json!({"description": description,
               "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
    };
    let ok = |description: &str, schema: Value| json!({"description": description, "content": {"application/json": {"schema": schema}}});
    let name = json!({"name": "name", "in": "path", "required": true,
                      "description": "A service name; any other string is 404",
                      "schema": {"type": "string", "minLength": 1}});
    let unauthorized = error("Missing or wrong bearer token");
    let foreign = error(
        "Host is not the admin API's address nor one of admin.hosts (code host_not_allowed), \
        or a state-changing request came from another Origin (origin_not_allowed)",
    );
    let not_json = error(
        "The request changes state but is not Content-Type: application/json (code unsupported_media_type), \
        body or not",
    );
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "deployer admin API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Services, history, fleet status, deploys and rollbacks of one deployer host. \
                Every /api/v1 route and /metrics require `Authorization: Bearer <token>` when a token is configured. \
                They answer only requests whose Host is the admin API's address (or one of admin.hosts); POSTs must be \
                `Content-Type: application/json` even without a body, and must not come from another Origin. \
                Timestamps are milliseconds since the Unix epoch."
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"],
                          "properties": {"error": {"type": "string", "example": "limit: must be a whole number from 1 to 1000"},
                                         "code": {"type": "string", "description": "The cause, where one status has several",
                                                  "enum": [codes::UNKNOWN_SERVICE, codes::WRONG_REPOSITORY, codes::NOTHING_TO_ROLL_BACK,
                                                           codes::IMAGE_NOT_FOUND, codes::IMAGE_UNAUTHORIZED, codes::REGISTRY_UNREACHABLE,
                                                           codes::ENGINE_UNREACHABLE, codes::BUILD_FAILED, codes::IMAGE_FAILED,
                                                           codes::COORDINATOR_UNAVAILABLE, codes::COORDINATOR_CORRUPT,
                                                           codes::HOST_NOT_ALLOWED, codes::ORIGIN_NOT_ALLOWED,
                                                           codes::UNSUPPORTED_MEDIA_TYPE, codes::INVALID_CONFIG, codes::RELOAD_REFUSED, codes::RELOAD_UNAVAILABLE, codes::NO_PROXY, codes::TRAFFIC_UNAVAILABLE]}}},
                "Service": {"type": "object",
                    "required": ["name", "image", "strategy", "replicas", "proxy", "state", "live", "generation",
                                 "target", "message", "endpoint", "updated_at", "last_report"],
                    "properties": {
                    "name": {"type": "string"}, "image": {"type": "string"},
                    "strategy": {"type": "string", "enum": ["handover", "recreate", "stop"]},
                    "replicas": {"type": "integer", "minimum": 1, "maximum": deployer_core::service::MAX_REPLICAS},
                    "proxy": {"type": "string", "nullable": true},
                    "state": {"$ref": "#/components/schemas/State"}, "live": {"type": "string", "nullable": true},
                    "generation": {"type": "integer", "nullable": true},
                    "target": {"type": "string", "nullable": true},
                    "message": {"type": "string", "nullable": true},
                    "endpoint": {"type": "string", "nullable": true},
                    "updated_at": {"type": "integer"},
                    "last_report": {"allOf": [{"$ref": "#/components/schemas/DeployReport"}], "nullable": true}}},
                "State": {"type": "string", "enum": ["recovering", "idle", "queued", "fetching", "waiting_for_slot",
                    "starting", "probing", "promoting", "watching", "draining", "rolling_back", "degraded", "backoff",
                    "halted", "failed", "stopped"]},
                "ServiceStatus": {"type": "object", "required": ["service", "node", "image", "state", "updated_at"],
                    "properties": {
                    "service": {"type": "string"}, "node": {"type": "string"}, "image": {"type": "string"},
                    "state": {"$ref": "#/components/schemas/State"}, "live": {"type": "string", "nullable": true},
                    "generation": {"type": "integer", "nullable": true}, "target": {"type": "string", "nullable": true},
                    "endpoint": {"type": "string", "nullable": true}, "message": {"type": "string", "nullable": true},
                    "updated_at": {"type": "integer"}}},
                "DeployReport": {"type": "object",
                    "required": ["service", "node", "image", "outcome", "started_at", "finished_at", "duration_ms"],
                    "properties": {
                    "service": {"type": "string"}, "node": {"type": "string"}, "image": {"type": "string"},
                    "outcome": {"type": "string", "enum": ["started", "succeeded", "rolled_back", "failed", "superseded", "skipped"]},
                    "from": {"type": "string", "nullable": true}, "to": {"type": "string", "nullable": true},
                    "reason": {"type": "string", "nullable": true},
                    "rollback_error": {"type": "string", "nullable": true, "description": "Why putting the previous build back failed too"},
                    "duration_ms": {"type": "integer"},
                    "started_at": {"type": "integer"}, "finished_at": {"type": "integer"}}},
                "PauseRequest": {"type": "object", "additionalProperties": false, "properties": {
                    "hold_seconds": {"type": "integer", "minimum": 1, "maximum": MAX_HOLD.as_secs(),
                                     "description": "How long one request may be held (default 30)"}}},
                "MaintenanceRequest": {"type": "object", "additionalProperties": false, "required": ["message"], "properties": {
                    "message": {"type": "string", "minLength": 1, "maxLength": MAX_MESSAGE, "pattern": "\\S",
                                "description": "The body of the 503 answers"}}},
                "GateAnswer": {"type": "object", "required": ["service", "gate"], "properties": {
                    "service": {"type": "string"},
                    "gate": {"type": "string", "enum": ["open", "paused", "maintenance"]}}},
                "ReloadSummary": {"type": "object", "required": ["added", "changed", "removed", "unchanged"], "properties": {
                    "added": {"type": "array", "items": {"type": "string"}, "description": "Services declared now and not before: they start"},
                    "changed": {"type": "array", "items": {"type": "string"}, "description": "Services declared with another spec: restarted with it"},
                    "removed": {"type": "array", "items": {"type": "string"}, "description": "Services no longer declared: their proxy closes and their containers are removed"},
                    "unchanged": {"type": "integer", "minimum": 0}}},
                "PublishOutcome": {"type": "object", "required": ["outcome"], "properties": {
                    "outcome": {"type": "string", "enum": ["published", "unchanged", "stale"]},
                    "target": {"type": "object", "description": "With published and unchanged"},
                    "current": {"type": "object", "description": "With stale"},
                    "reason": {"type": "string", "description": "With stale"}}},
                "RollbackRequest": {"type": "object", "additionalProperties": false, "properties": {},
                    "description": "No fields: an empty object (or an empty body, still sent as application/json)"},
                "DeployRequest": {"type": "object", "additionalProperties": false,
                    "description": "Give image or digest, not both; an empty object or an empty body (still sent as application/json) re-resolves the tracked tag",
                    "not": {"required": ["image", "digest"]},
                    "properties": {
                    "image": {"type": "string", "minLength": 1,
                              "description": "Another tag or a digest reference of the tracked repository"},
                    "digest": {"type": "string", "pattern": DIGEST_PATTERN,
                               "description": "A digest of the tracked repository (sha256:...)"}}}
            }
        },
        "security": [{"bearer": []}],
        "paths": {
            "/healthz": {"get": {"summary": "Liveness", "security": [],
                "responses": {"200": ok("Alive", json!({"type": "object"}))}}},
            "/readyz": {"get": {"summary": "Readiness: every service has recovered", "security": [],
                "responses": {"200": ok("Ready", json!({"type": "object"})), "503": error("Still recovering")}}},
            "/metrics": {"get": {"summary": "Prometheus metrics (OpenMetrics text)",
                "responses": {"200": {"description": "Metrics",
                                      "content": {"application/openmetrics-text": {"schema": {"type": "string"}}}},
                              "401": unauthorized, "403": foreign}}},
            "/api/v1/openapi.json": {"get": {"summary": "This document",
                "responses": {"200": ok("OpenAPI document", json!({"type": "object"})), "401": unauthorized, "403": foreign}}},
            "/api/v1/services": {"get": {"summary": "Every service on this host",
                "responses": {"200": ok("Services", json!({"type": "object", "properties": {
                    "services": {"type": "array", "items": {"$ref": "#/components/schemas/Service"}}}})),
                              "401": unauthorized, "403": foreign}}},
            "/api/v1/services/{name}": {"get": {"summary": "One service", "parameters": [name],
                "responses": {"200": ok("The service", json!({"$ref": "#/components/schemas/Service"})),
                              "401": unauthorized, "403": foreign, "404": error("No such service")}}},
            "/api/v1/services/{name}/deploy": {"post": {
                "summary": "Deploy the tracked tag now (re-resolved), another tag or a digest; accepted even for an older build",
                "parameters": [name],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/DeployRequest"}}}},
                "responses": {"202": ok("Target published; the deploy follows", json!({"$ref": "#/components/schemas/PublishOutcome"})),
                              "400": error("Bad image or digest, or another repository"), "401": unauthorized,
                              "403": error("The registry refused deployer's credentials for the image (code image_unauthorized), \
                                  Host is not the admin API's address (host_not_allowed), or another Origin (origin_not_allowed)"),
                              "404": error("No such service (code unknown_service), or no such image, tag or digest at the registry (image_not_found)"),
                              "413": error("Body too large"), "415": not_json,
                              "500": error("A coordinator record cannot be decoded"),
                              "502": error("The image build or another image step failed"),
                              "503": error("The registry, the container engine or the coordinator cannot be reached")}}},
            "/api/v1/services/{name}/rollback": {"post": {"summary": "Return to the build before the current target",
                "parameters": [name],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RollbackRequest"}}}},
                "responses": {"202": ok("Target published; the rollback follows", json!({"$ref": "#/components/schemas/PublishOutcome"})),
                              "400": error("A body that is not an empty JSON object"),
                              "401": unauthorized, "403": foreign, "404": error("No such service"),
                              "413": error("Body too large"), "415": not_json,
                              "409": error("No earlier build to roll back to"),
                              "500": error("A coordinator record cannot be decoded"),
                              "503": error("Coordinator unavailable")}}},
            "/api/v1/services/{name}/pause": {"post": {"summary": "Hold new requests to the service's proxy until resumed (each up to its hold, then 503)",
                "parameters": [name],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PauseRequest"}}}},
                "responses": {"200": ok("The proxy's gate is set", json!({"$ref": "#/components/schemas/GateAnswer"})),
                              "400": error("A field that is out of range or unknown"),
                              "401": unauthorized, "403": foreign, "404": error("No such service"),
                              "409": error("The service has no proxy of deployer's (no_proxy)"),
                              "413": error("Body too large"), "415": not_json,
                              "503": error("This daemon has no proxies to control (traffic_unavailable)")}}},
            "/api/v1/services/{name}/maintenance": {"post": {"summary": "Answer new requests to the service's proxy 503 with a message until resumed",
                "parameters": [name],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/MaintenanceRequest"}}}},
                "responses": {"200": ok("The proxy's gate is set", json!({"$ref": "#/components/schemas/GateAnswer"})),
                              "400": error("A missing or too long message, or an unknown field"),
                              "401": unauthorized, "403": foreign, "404": error("No such service"),
                              "409": error("The service has no proxy of deployer's (no_proxy)"),
                              "413": error("Body too large"), "415": not_json,
                              "503": error("This daemon has no proxies to control (traffic_unavailable)")}}},
            "/api/v1/services/{name}/resume": {"post": {"summary": "Forward new requests again after a pause or maintenance",
                "parameters": [name],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RollbackRequest"}}}},
                "responses": {"200": ok("The proxy's gate is open", json!({"$ref": "#/components/schemas/GateAnswer"})),
                              "400": error("A body that is not an empty JSON object"),
                              "401": unauthorized, "403": foreign, "404": error("No such service"),
                              "409": error("The service has no proxy of deployer's (no_proxy)"),
                              "413": error("Body too large"), "415": not_json,
                              "503": error("This daemon has no proxies to control (traffic_unavailable)")}}},
            "/api/v1/reload": {"post": {"summary": "Read the config file again and apply its services without a restart",
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RollbackRequest"}}}},
                "responses": {"200": ok("Applied: what changed", json!({"$ref": "#/components/schemas/ReloadSummary"})),
                              "400": error("A body that is not an empty JSON object, or a config file that does not pass config check (invalid_config)"),
                              "401": unauthorized, "403": foreign,
                              "409": error("Valid but not applicable while running, e.g. a proxy listener that would move (reload_refused)"),
                              "413": error("Body too large"), "415": not_json,
                              "503": error("Started without a config file (reload_unavailable)")}}},
            "/api/v1/history": {"get": {"summary": "Deploy reports, newest first",
                "parameters": [
                    {"name": "service", "in": "query", "required": false,
                     "description": "Only this service's reports (empty: every service)",
                     "schema": {"type": "string", "maxLength": 63, "pattern": format!("^$|{NAME_PATTERN}")}},
                    {"name": "limit", "in": "query", "required": false,
                     "schema": {"type": "integer", "minimum": 1, "maximum": max_history, "default": HISTORY_DEFAULT.min(max_history)}}],
                "responses": {"200": ok("Reports", json!({"type": "object", "properties": {
                    "reports": {"type": "array", "items": {"$ref": "#/components/schemas/DeployReport"}}}})),
                              "400": error("Bad limit or service name"), "401": unauthorized, "403": foreign,
                              "404": error("No such service"), "503": error("Coordinator unavailable")}}},
            "/api/v1/fleet": {"get": {"summary": "Every service on every host, as the coordinator knows them",
                "responses": {"200": ok("Statuses", json!({"type": "object", "properties": {
                    "statuses": {"type": "array", "items": {"$ref": "#/components/schemas/ServiceStatus"}}}})),
                              "401": unauthorized, "403": foreign, "503": error("Coordinator unavailable")}}}
        }
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use axum::body::Body;
    use deployer_core::ServiceSpec;
    use deployer_core::driver::{Driver, DriverConfig, Ports};
    use deployer_core::memory::{MemoryCoordinator, MemoryJournal};
    use deployer_core::testing::{FakeImageSource, FakeSwitcher};
    use http::{Method, Request, StatusCode};
    use tower::ServiceExt;

    use super::*;
    use crate::admin::{admin_router, routes::routes};
    use crate::config::AdminConfig;
    use crate::metrics::Metrics;

    const TOKEN: &str = "admin-token-0123456789";

    fn documented() -> BTreeSet<(String, String)> {
        let doc = openapi_document();
        let paths = doc["paths"].as_object().expect("paths");
        paths
            .iter()
            .flat_map(|(path, item)| {
                let methods = item.as_object().expect("path item");
                methods
                    .keys()
                    .map(move |m| (m.to_ascii_uppercase(), path.clone()))
            })
            .collect()
    }

    fn served() -> BTreeSet<(String, String)> {
        routes()
            .into_iter()
            .map(|r| (r.method.to_string(), r.path.to_owned()))
            .collect()
    }

    #[test]
    fn the_document_carries_the_bounds_the_server_enforces() {
        let doc = document(7);
        let history = &doc["paths"]["/api/v1/history"]["get"]["parameters"];
        assert_eq!(history[1]["schema"]["maximum"], 7, "limit: 1..=max_history");
        assert_eq!(history[0]["schema"]["maxLength"], 63);
        let deploy = &doc["components"]["schemas"]["DeployRequest"];
        assert_eq!(
            deploy["additionalProperties"], false,
            "unknown fields are 400"
        );
        assert_eq!(deploy["properties"]["image"]["minLength"], 1);
        assert_eq!(deploy["properties"]["image"].get("nullable"), None);
        assert_eq!(deploy["properties"]["digest"]["pattern"], DIGEST_PATTERN);
        assert_eq!(
            openapi_document()["paths"]["/api/v1/history"]["get"]["parameters"][1]["schema"]["maximum"],
            1000
        );
    }

    #[test]
    fn the_document_lists_exactly_the_routes() {
        let (documented, served) = (documented(), served());
        assert_eq!(
            documented.difference(&served).collect::<Vec<_>>(),
            Vec::<&(String, String)>::new(),
            "documented but not served"
        );
        assert_eq!(
            served.difference(&documented).collect::<Vec<_>>(),
            Vec::<&(String, String)>::new(),
            "served but not documented"
        );
    }

    #[test]
    fn every_status_a_deploy_can_fail_with_is_documented() {
        let doc = openapi_document();
        let responses = |path: &str| -> BTreeSet<String> {
            doc["paths"][path]["post"]["responses"]
                .as_object()
                .expect("responses")
                .keys()
                .cloned()
                .collect()
        };
        let deploy = responses("/api/v1/services/{name}/deploy");
        let rollback = responses("/api/v1/services/{name}/rollback");
        let codes: BTreeSet<&str> =
            doc["components"]["schemas"]["Error"]["properties"]["code"]["enum"]
                .as_array()
                .expect("codes")
                .iter()
                .filter_map(Value::as_str)
                .collect();
        for error in crate::admin::routes::tests::every_control_error() {
            let answer = crate::admin::routes::control_error(&error);
            let status = answer.status.as_str().to_owned();
            use deployer_core::driver::ControlError as E;
            // A deploy has nothing to roll back; a rollback resolves nothing at a registry.
            let (in_deploy, in_rollback) = match error {
                E::NothingToRollBack(_) => (false, true),
                E::UnknownService(_) | E::Coordinator(_) => (true, true),
                _ => (true, false),
            };
            if in_deploy {
                assert!(
                    deploy.contains(&status),
                    "deploy: {error:?}: {status} not documented"
                );
            }
            if in_rollback {
                assert!(
                    rollback.contains(&status),
                    "rollback: {error:?}: {status} not documented"
                );
            }
            if let Some(code) = answer.code {
                assert!(codes.contains(code), "{code} not documented");
            }
        }
    }

    #[tokio::test]
    async fn the_router_serves_every_route_in_the_table() {
        let ports = Ports {
            images: Arc::new(FakeImageSource::new()),
            switcher: Arc::new(FakeSwitcher::new()),
            coordinator: Arc::new(MemoryCoordinator::new("host-a")),
            journal: Arc::new(MemoryJournal::new()),
            notifiers: Vec::new(),
        };
        let spec = ServiceSpec::builder("web", "demo/app".parse().unwrap())
            .build()
            .unwrap();
        let driver = Driver::new(DriverConfig::new("host-a"), ports, vec![spec]).unwrap();
        let config = AdminConfig {
            token: Some(TOKEN.into()),
            ..AdminConfig::default()
        };
        let router = admin_router(&config, driver.handle(), Metrics::new(), None).unwrap();
        for (method, path) in served() {
            let uri = path.replace("{name}", "web");
            let request = Request::builder()
                .method(Method::from_bytes(method.as_bytes()).unwrap())
                .uri(&uri)
                .header("authorization", format!("Bearer {TOKEN}"))
                .header("host", "127.0.0.1:4501")
                .header("content-type", "application/json")
                .body(Body::empty())
                .unwrap();
            let response = router.clone().oneshot(request).await.unwrap();
            let status = response.status();
            let body = axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .unwrap();
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
            assert_ne!(
                &body[..],
                br#"{"error":"not found"}"#,
                "{method} {uri} hit the fallback"
            );
        }
        let wrong_method = Request::delete("/api/v1/services")
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(Body::empty())
            .unwrap();
        let response = router.clone().oneshot(wrong_method).await.unwrap();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    }
}
