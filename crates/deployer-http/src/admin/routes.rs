//! The admin routes, in one table that both the router and the OpenAPI test read.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::handler::Handler;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use deployer_core::driver::{ControlError, ServiceView, error_chain};
use deployer_core::ports::{CoordinatorError, ImageError};
use deployer_core::{Digest, ImageRef, ServiceName};
use http::{Method, StatusCode, header};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Access, Admin, codes};
use crate::api_error::ApiError;
use crate::body::{media_type, read_body, unsupported_media_type};
use crate::metrics::{CONTENT_TYPE, ScrapeSources};

/// Default number of history entries.
pub(super) const HISTORY_DEFAULT: usize = 50;
/// Bound on receiving a deploy request's body.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// One route: method, path (axum syntax), who may call it, and its handler.
pub(crate) struct Route {
    /// Read by the OpenAPI test; the router gets it through `handler`.
    #[cfg_attr(not(test), allow(dead_code))] // reason: only the OpenAPI test reads it back
    pub(crate) method: Method,
    pub(crate) path: &'static str,
    pub(crate) access: Access,
    pub(crate) handler: MethodRouter<Arc<Admin>>,
}

fn route<H, T>(method: Method, path: &'static str, access: Access, handler: H) -> Route
where
    H: Handler<T, Arc<Admin>>,
    T: 'static,
{
    // The table only holds GET and POST, which always convert.
    let filter = MethodFilter::try_from(method.clone()).unwrap_or(MethodFilter::GET);
    Route {
        method,
        path,
        access,
        handler: on(filter, handler),
    }
}

/// Every admin route.
pub(crate) fn routes() -> Vec<Route> {
    use Access::{Open, Token};
    vec![
        route(Method::GET, "/healthz", Open, healthz),
        route(Method::GET, "/readyz", Open, readyz),
        route(Method::GET, "/metrics", Token, metrics),
        route(Method::GET, "/api/v1/openapi.json", Token, openapi),
        route(Method::GET, "/api/v1/services", Token, list_services),
        route(Method::GET, "/api/v1/services/{name}", Token, one_service),
        route(
            Method::POST,
            "/api/v1/services/{name}/deploy",
            Token,
            deploy,
        ),
        route(
            Method::POST,
            "/api/v1/services/{name}/rollback",
            Token,
            rollback,
        ),
        route(Method::POST, "/api/v1/reload", Token, super::reload::reload),
        route(
            Method::POST,
            "/api/v1/services/{name}/pause",
            Token,
            super::traffic::pause,
        ),
        route(
            Method::POST,
            "/api/v1/services/{name}/maintenance",
            Token,
            super::traffic::maintenance,
        ),
        route(
            Method::POST,
            "/api/v1/services/{name}/resume",
            Token,
            super::traffic::resume,
        ),
        route(Method::GET, "/api/v1/history", Token, history),
        route(Method::GET, "/api/v1/fleet", Token, fleet),
    ]
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(admin): State<Arc<Admin>>) -> Response {
    if admin.handle.is_ready() {
        Json(json!({ "status": "ready" })).into_response()
    } else {
        ApiError::unavailable("not ready: services are still recovering", None).into_response()
    }
}

async fn metrics(State(admin): State<Arc<Admin>>) -> Response {
    let sources = ScrapeSources {
        sink: None,
        driver: Some(admin.handle.clone()),
        proxy: match &admin.proxy {
            Some(proxy) => Some(proxy.proxy_stats().await),
            None => None,
        },
    };
    let text = admin.metrics.render(sources);
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response()
}

async fn openapi(State(admin): State<Arc<Admin>>) -> Json<Value> {
    Json(super::openapi::document(admin.max_history))
}

/// A service as the API shows it.
#[derive(Debug, Serialize)]
struct ServiceJson<'a> {
    name: &'a ServiceName,
    image: &'a ImageRef,
    strategy: &'static str,
    replicas: u32,
    /// The proxy's listen address, for handover services.
    proxy: Option<String>,
    state: deployer_core::ServiceState,
    live: Option<&'a Digest>,
    generation: Option<deployer_core::reconcile::Generation>,
    target: Option<&'a Digest>,
    message: Option<&'a str>,
    endpoint: Option<&'a str>,
    updated_at: deployer_core::Timestamp,
    last_report: Option<&'a deployer_core::DeployReport>,
}

impl<'a> From<&'a ServiceView> for ServiceJson<'a> {
    fn from(view: &'a ServiceView) -> Self {
        let (spec, status) = (&view.spec, &view.status);
        Self {
            name: spec.name(),
            image: spec.image(),
            strategy: spec.strategy().name(),
            replicas: spec.replicas(),
            proxy: spec.strategy().handover().map(|h| h.listen().to_string()),
            state: status.state,
            live: status.live.as_ref(),
            generation: status.generation,
            target: status.target.as_ref(),
            message: status.message.as_deref(),
            endpoint: status.endpoint.as_deref(),
            updated_at: status.updated_at,
            last_report: view.last_report.as_ref(),
        }
    }
}

async fn list_services(State(admin): State<Arc<Admin>>) -> Json<Value> {
    let views = admin.handle.services();
    let services: Vec<ServiceJson<'_>> = views.iter().map(ServiceJson::from).collect();
    Json(json!({ "services": services }))
}

async fn one_service(State(admin): State<Arc<Admin>>, Path(name): Path<String>) -> Response {
    match admin.handle.service(&name) {
        Some(view) => Json(ServiceJson::from(&view)).into_response(),
        None => unknown_service(&name).into_response(),
    }
}

pub(super) fn unknown_service(name: &str) -> ApiError {
    ApiError::not_found(format!("no service named {name:?}")).with_code(codes::UNKNOWN_SERVICE)
}

/// Query of `GET /api/v1/history`; strings so that bad values get our own 400.
#[derive(Debug, Deserialize)]
struct HistoryQuery {
    service: Option<String>,
    limit: Option<String>,
}

async fn history(
    State(admin): State<Arc<Admin>>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request("query", e.body_text()))?;
    let limit = match query.limit.as_deref() {
        None => HISTORY_DEFAULT.min(admin.max_history),
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=admin.max_history).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "limit",
                    format!("must be a whole number from 1 to {}", admin.max_history),
                )
            })?,
    };
    let service = match query.service.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(name) => {
            let name =
                ServiceName::new(name).map_err(|e| ApiError::bad_request("service", e.problem))?;
            if !admin.handle.specs().iter().any(|s| s.name() == &name) {
                return Err(unknown_service(name.as_str()));
            }
            Some(name)
        }
    };
    let reports = admin
        .handle
        .coordinator()
        .history(service.as_ref(), limit)
        .await
        .map_err(|e| coordinator_down("history", &e))?;
    Ok(Json(json!({ "reports": reports })))
}

async fn fleet(State(admin): State<Arc<Admin>>) -> Result<Json<Value>, ApiError> {
    let statuses = admin
        .handle
        .coordinator()
        .statuses()
        .await
        .map_err(|e| coordinator_down("fleet", &e))?;
    Ok(Json(json!({ "statuses": statuses })))
}

fn coordinator_down(what: &str, error: &CoordinatorError) -> ApiError {
    tracing::warn!("admin API {what}: {}", error_chain(error));
    match error {
        // A decoding problem, not an outage: retrying will not help.
        CoordinatorError::Corrupt { .. } => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{error}; the coordinator's data needs repair"),
        )
        .with_code(codes::COORDINATOR_CORRUPT),
        _ => ApiError::unavailable(format!("{error}; the deployer's log has the cause"), None)
            .with_code(codes::COORDINATOR_UNAVAILABLE),
    }
}

async fn deploy(
    State(admin): State<Arc<Admin>>,
    Path(name): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    // The spec, not the live view: a service still recovering can be deployed.
    let Some(spec) = admin
        .handle
        .specs()
        .into_iter()
        .find(|s| s.name().as_str() == name)
    else {
        return Err(unknown_service(&name));
    };
    let (parts, body) = request.into_parts();
    let body = read_body(body, &parts.headers, admin.body_limit, BODY_TIMEOUT)
        .await
        .map_err(|e| e.into_api_error())?;
    let image = if body.trim_ascii().is_empty() {
        None
    } else {
        if !media_type(&parts.headers).is_some_and(|t| t.eq_ignore_ascii_case("application/json")) {
            return Err(unsupported_media_type(&["application/json"]));
        }
        deploy_image(&body, spec.image())?
    };
    let outcome = admin
        .handle
        .deploy(&name, image)
        .await
        .map_err(|e| control_error(&e))?;
    Ok((StatusCode::ACCEPTED, Json(outcome)).into_response())
}

/// The fields a deploy body may have.
pub(super) const DEPLOY_FIELDS: &[&str] = &["image", "digest"];

/// The image a deploy body asks for: `{"image": "repo:tag"}`, `{"digest": "sha256:..."}` or `{}`.
fn deploy_image(body: &[u8], tracked: &ImageRef) -> Result<Option<ImageRef>, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("body", format!("invalid JSON: {e}")))?;
    let Some(object) = value.as_object() else {
        return Err(ApiError::bad_request("body", "expected a JSON object"));
    };
    // A misspelt field must not silently turn a deploy of another build into a redeploy of
    // the tracked tag.
    if let Some(unknown) = object.keys().find(|k| !DEPLOY_FIELDS.contains(&k.as_str())) {
        return Err(ApiError::bad_request(
            unknown,
            "unknown field; a deploy body takes image or digest",
        ));
    }
    let text = |field: &str| -> Result<Option<&str>, ApiError> {
        match object.get(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(ApiError::bad_request(field, "expected a string")),
        }
    };
    match (text("image")?, text("digest")?) {
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "body",
            "give image or digest, not both",
        )),
        (Some(image), None) => ImageRef::parse(image)
            .map(Some)
            .map_err(|e| ApiError::bad_request("image", e)),
        (None, Some(digest)) => Digest::parse(digest)
            .map(|d| Some(tracked.with_digest(d)))
            .map_err(|e| ApiError::bad_request("digest", e)),
        (None, None) => Ok(None),
    }
}

async fn rollback(
    State(admin): State<Arc<Admin>>,
    Path(name): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    empty_body(&admin, request, "a rollback takes none").await?;
    let outcome = admin
        .handle
        .rollback(&name)
        .await
        .map_err(|e| control_error(&e))?;
    Ok((StatusCode::ACCEPTED, Json(outcome)).into_response())
}

/// Operator errors to answers. Each names the cause and the image, so that the CLI can say
/// what went wrong without sending its user to the log; the underlying error's text (which
/// may hold a registry URL with credentials) only goes to the log.
/// Reads a body that is empty or a JSON object with only the `allowed` fields.
pub(super) async fn read_object(
    admin: &Admin,
    request: Request,
    allowed: &[&str],
) -> Result<serde_json::Map<String, Value>, ApiError> {
    let (parts, body) = request.into_parts();
    let body = read_body(body, &parts.headers, admin.body_limit, BODY_TIMEOUT)
        .await
        .map_err(|e| e.into_api_error())?;
    if body.trim_ascii().is_empty() {
        return Ok(serde_json::Map::new());
    }
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("body", format!("invalid JSON: {e}")))?;
    let Value::Object(object) = value else {
        return Err(ApiError::bad_request("body", "expected a JSON object"));
    };
    if let Some(field) = object.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ApiError::bad_request(
            field,
            format!("unknown field; this takes {}", allowed.join(", ")),
        ));
    }
    Ok(object)
}

/// Reads a body that must ask for nothing: empty or `{}`. Clients must send JSON (the guard
/// sees to it); a field would be a request for something the route cannot do, so it is
/// refused rather than ignored.
pub(super) async fn empty_body(admin: &Admin, request: Request, why: &str) -> Result<(), ApiError> {
    let (parts, body) = request.into_parts();
    let body = read_body(body, &parts.headers, admin.body_limit, BODY_TIMEOUT)
        .await
        .map_err(|e| e.into_api_error())?;
    if body.trim_ascii().is_empty() {
        return Ok(());
    }
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("body", format!("invalid JSON: {e}")))?;
    match value.as_object() {
        None => Err(ApiError::bad_request("body", "expected a JSON object")),
        Some(object) => match object.keys().next() {
            Some(field) => Err(ApiError::bad_request(
                field,
                format!("unknown field; {why}"),
            )),
            None => Ok(()),
        },
    }
}

pub(super) fn control_error(error: &ControlError) -> ApiError {
    match error {
        ControlError::UnknownService(name) => unknown_service(name),
        ControlError::WrongRepository { .. } => {
            ApiError::bad_request("image", error).with_code(codes::WRONG_REPOSITORY)
        }
        ControlError::NothingToRollBack(_) => {
            ApiError::new(StatusCode::CONFLICT, error.to_string())
                .with_code(codes::NOTHING_TO_ROLL_BACK)
        }
        ControlError::Image(e) => {
            tracing::warn!("admin API deploy: {}", error_chain(e));
            image_error(e)
        }
        ControlError::Coordinator(e) => coordinator_down("deploy", e),
        _ => {
            tracing::error!("admin API: {}", error_chain(error));
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error; see the deployer's log",
            )
        }
    }
}

/// `ImageError`'s own message names the image and the cause and stops there; its sources
/// are left out on purpose.
fn image_error(error: &ImageError) -> ApiError {
    let (status, code, message) = match error {
        ImageError::NotFound { image } => (
            StatusCode::NOT_FOUND,
            codes::IMAGE_NOT_FOUND,
            format!("image {image} not found: the registry has no such repository, tag or digest"),
        ),
        // 403, not 401: the caller's token was fine; the registry refused deployer.
        ImageError::Unauthorized { image } => (
            StatusCode::FORBIDDEN,
            codes::IMAGE_UNAUTHORIZED,
            format!(
                "the registry refused to let deployer pull {image}: check the registry credentials deployer uses"
            ),
        ),
        ImageError::RegistryUnreachable { image, .. } => (
            StatusCode::SERVICE_UNAVAILABLE,
            codes::REGISTRY_UNREACHABLE,
            format!("the registry for {image} cannot be reached; the deployer's log has the cause"),
        ),
        ImageError::EngineUnreachable { image, .. } => (
            StatusCode::SERVICE_UNAVAILABLE,
            codes::ENGINE_UNREACHABLE,
            format!(
                "the container engine cannot be reached while handling {image}; the deployer's log has the cause"
            ),
        ),
        // Build output can echo build arguments, which may be secrets.
        ImageError::BuildFailed { image, .. } => (
            StatusCode::BAD_GATEWAY,
            codes::BUILD_FAILED,
            format!("the build of {image} failed; its output is in the deployer's log"),
        ),
        other => (
            StatusCode::BAD_GATEWAY,
            codes::IMAGE_FAILED,
            format!("{other}; the deployer's log has the cause"),
        ),
    };
    ApiError::new(status, message).with_code(code)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use axum::Router;
    use axum::body::Body;
    use deployer_core::driver::{Driver, DriverConfig, Ports};
    use deployer_core::memory::MemoryJournal;
    use deployer_core::testing::{FakeCoordinator, FakeImageSource, FakeSwitcher, digest};
    use deployer_core::{ImageRef, ServiceSpec};
    use http::{Request, StatusCode};
    use serde_json::Value;
    use tower::ServiceExt;

    use super::*;
    use crate::admin::admin_router;
    use crate::config::AdminConfig;
    use crate::metrics::Metrics;

    const IMAGE: &str = "registry.example.com:5000/team/web:latest";
    /// What a registry error's source could hold, and no answer may.
    const CREDENTIALS: &str = "https://deployer:hunter2@registry.example.com:5000/v2/";

    fn image() -> ImageRef {
        IMAGE.parse().expect("image")
    }

    /// An admin router over fakes: `web` tracks [`IMAGE`], which resolves only if `tagged`.
    fn router(tagged: bool) -> (Router, Arc<FakeImageSource>, Arc<FakeCoordinator>) {
        let images = Arc::new(FakeImageSource::new());
        if tagged {
            images.set_tag(&image(), digest(2));
        }
        let coordinator = Arc::new(FakeCoordinator::new("host-a"));
        let ports = Ports {
            images: images.clone(),
            switcher: Arc::new(FakeSwitcher::new()),
            coordinator: coordinator.clone(),
            journal: Arc::new(MemoryJournal::new()),
            notifiers: Vec::new(),
        };
        let spec = ServiceSpec::builder("web", image()).build().expect("spec");
        let driver = Driver::new(DriverConfig::new("host-a"), ports, vec![spec]).expect("driver");
        let router = admin_router(
            &AdminConfig::default(),
            driver.handle(),
            Metrics::new(),
            None,
        )
        .expect("router");
        (router, images, coordinator)
    }

    async fn call(router: &Router, method: &str, uri: &str) -> (StatusCode, Value) {
        // As the CLI sends them: JSON, to the loopback address.
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", "127.0.0.1:4501")
            .header("content-type", "application/json")
            .body(Body::empty())
            .expect("request");
        let response = router.clone().oneshot(request).await.expect("answer");
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        (status, serde_json::from_slice(&body).expect("JSON body"))
    }

    #[tokio::test]
    async fn a_deploy_body_with_an_unknown_or_null_field_is_400_and_deploys_nothing() {
        let (router, images, _) = router(true);
        for (body, error) in [
            (
                r#"{"foo":1}"#,
                "foo: unknown field; a deploy body takes image or digest",
            ),
            (
                r#"{"digest":"sha256:00","imagee":"x"}"#,
                "imagee: unknown field; a deploy body takes image or digest",
            ),
            (r#"{"image":null}"#, "image: expected a string"),
            (r#"{"digest":null}"#, "digest: expected a string"),
        ] {
            let request = Request::post("/api/v1/services/web/deploy")
                .header("host", "localhost:4501")
                .header("content-type", "application/json")
                .body(Body::from(body))
                .expect("request");
            let response = router.clone().oneshot(request).await.expect("answer");
            let status = response.status();
            let answer = axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .expect("body");
            let answer: Value = serde_json::from_slice(&answer).expect("JSON");
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
            assert_eq!(answer["error"], error, "{body}");
        }
        assert_eq!(
            images.resolves(),
            0,
            "nothing was resolved, so nothing deployed"
        );
    }

    #[tokio::test]
    async fn a_missing_image_is_404_naming_the_image_not_the_log() {
        let (router, _, _) = router(false);
        let (status, body) = call(&router, "POST", "/api/v1/services/web/deploy").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert_eq!(body["code"], codes::IMAGE_NOT_FOUND);
        let message = body["error"].as_str().expect("message");
        assert!(message.contains(IMAGE), "{message}");
        assert!(message.contains("not found"), "{message}");
        assert!(!message.contains("log"), "{message}");
    }

    #[tokio::test]
    async fn an_unknown_service_is_404_with_its_own_code() {
        let (router, _, _) = router(true);
        for (method, uri) in [
            ("POST", "/api/v1/services/nope/deploy"),
            ("POST", "/api/v1/services/nope/rollback"),
            ("GET", "/api/v1/services/nope"),
            ("GET", "/api/v1/history?service=nope"),
        ] {
            let (status, body) = call(&router, method, uri).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{uri}: {body}");
            assert_eq!(body["code"], codes::UNKNOWN_SERVICE, "{uri}: {body}");
            assert_eq!(body["error"], "no service named \"nope\"", "{uri}");
        }
    }

    #[tokio::test]
    async fn a_registry_that_is_down_is_503_without_the_underlying_error() {
        let (router, images, _) = router(true);
        images.fail_next("resolve", 1);
        let (status, body) = call(&router, "POST", "/api/v1/services/web/deploy").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["code"], codes::REGISTRY_UNREACHABLE);
        let message = body["error"].as_str().expect("message");
        assert!(message.contains(IMAGE), "{message}");
        assert!(!message.contains("injected failure"), "{message}");
    }

    #[tokio::test]
    async fn a_coordinator_that_is_down_is_503_on_every_route_that_needs_it() {
        let (router, _, coordinator) = router(true);
        coordinator.set_down(true);
        for (method, uri) in [
            ("POST", "/api/v1/services/web/deploy"),
            ("POST", "/api/v1/services/web/rollback"),
            ("GET", "/api/v1/history"),
            ("GET", "/api/v1/fleet"),
        ] {
            let (status, body) = call(&router, method, uri).await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{uri}: {body}");
            assert_eq!(body["code"], codes::COORDINATOR_UNAVAILABLE, "{uri}");
            let message = body["error"].as_str().expect("message");
            assert!(
                message.contains("coordinator unavailable"),
                "{uri}: {message}"
            );
            assert!(!message.contains("injected failure"), "{uri}: {message}");
        }
    }

    /// One of every control error, with sources holding credentials.
    pub(crate) fn every_control_error() -> Vec<ControlError> {
        let image = IMAGE.to_owned();
        let source = || CREDENTIALS.into();
        vec![
            ControlError::UnknownService("web".into()),
            ControlError::WrongRepository {
                service: "web".into(),
                tracked: IMAGE.into(),
                asked: "other/app:v2".into(),
            },
            ControlError::NothingToRollBack("web".into()),
            ImageError::NotFound {
                image: image.clone(),
            }
            .into(),
            ImageError::Unauthorized {
                image: image.clone(),
            }
            .into(),
            ImageError::RegistryUnreachable {
                image: image.clone(),
                source: source(),
            }
            .into(),
            ImageError::EngineUnreachable {
                image: image.clone(),
                source: source(),
            }
            .into(),
            ImageError::BuildFailed {
                image: image.clone(),
                last_lines: vec![format!("curl {CREDENTIALS}")],
            }
            .into(),
            ImageError::Other {
                operation: "fetch",
                image,
                source: source(),
            }
            .into(),
            CoordinatorError::Unavailable {
                operation: "publish",
                source: source(),
            }
            .into(),
            CoordinatorError::Closed.into(),
            CoordinatorError::Corrupt {
                key: "/deployer/targets/web".into(),
                problem: "expected a JSON object".into(),
            }
            .into(),
        ]
    }

    #[test]
    fn each_failure_gets_the_status_of_its_cause_and_never_its_source() {
        let answers: Vec<(StatusCode, Option<&str>)> = every_control_error()
            .iter()
            .map(|e| {
                let answer = control_error(e);
                assert!(
                    !answer.message.contains("hunter2"),
                    "{e:?}: {}",
                    answer.message
                );
                // Everything about an image names it.
                if matches!(e, ControlError::Image(_)) {
                    assert!(answer.message.contains(IMAGE), "{}", answer.message);
                }
                (answer.status, answer.code)
            })
            .collect();
        use StatusCode as S;
        assert_eq!(
            answers,
            [
                (S::NOT_FOUND, Some(codes::UNKNOWN_SERVICE)),
                (S::BAD_REQUEST, Some(codes::WRONG_REPOSITORY)),
                (S::CONFLICT, Some(codes::NOTHING_TO_ROLL_BACK)),
                (S::NOT_FOUND, Some(codes::IMAGE_NOT_FOUND)),
                (S::FORBIDDEN, Some(codes::IMAGE_UNAUTHORIZED)),
                (S::SERVICE_UNAVAILABLE, Some(codes::REGISTRY_UNREACHABLE)),
                (S::SERVICE_UNAVAILABLE, Some(codes::ENGINE_UNREACHABLE)),
                (S::BAD_GATEWAY, Some(codes::BUILD_FAILED)),
                (S::BAD_GATEWAY, Some(codes::IMAGE_FAILED)),
                (S::SERVICE_UNAVAILABLE, Some(codes::COORDINATOR_UNAVAILABLE)),
                (S::SERVICE_UNAVAILABLE, Some(codes::COORDINATOR_UNAVAILABLE)),
                (S::INTERNAL_SERVER_ERROR, Some(codes::COORDINATOR_CORRUPT)),
            ]
        );
    }
}
