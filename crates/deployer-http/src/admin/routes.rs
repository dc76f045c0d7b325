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
use deployer_core::{Digest, ImageRef, ServiceName};
use http::{Method, StatusCode, header};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Access, Admin};
use crate::api_error::ApiError;
use crate::body::{media_type, read_body, unsupported_media_type};
use crate::metrics::{CONTENT_TYPE, ScrapeSources};

/// Default number of history entries.
const HISTORY_DEFAULT: usize = 50;
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
        proxy: admin.proxy.clone(),
    };
    let text = admin.metrics.render(sources);
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response()
}

async fn openapi() -> Json<Value> {
    Json(super::openapi_document())
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

fn unknown_service(name: &str) -> ApiError {
    ApiError::not_found(format!("no service named {name:?}"))
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
            if !admin.handle.specs().any(|s| s.name() == &name) {
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

fn coordinator_down(what: &str, error: &dyn std::error::Error) -> ApiError {
    tracing::warn!("admin API {what}: {}", error_chain(error));
    ApiError::unavailable(
        "the coordinator is unavailable; see the deployer's log",
        None,
    )
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
        .find(|s| s.name().as_str() == name)
        .cloned()
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

/// The image a deploy body asks for: `{"image": "repo:tag"}`, `{"digest": "sha256:..."}` or `{}`.
fn deploy_image(body: &[u8], tracked: &ImageRef) -> Result<Option<ImageRef>, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("body", format!("invalid JSON: {e}")))?;
    let Some(object) = value.as_object() else {
        return Err(ApiError::bad_request("body", "expected a JSON object"));
    };
    let text = |field: &str| -> Result<Option<&str>, ApiError> {
        match object.get(field) {
            None | Some(Value::Null) => Ok(None),
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
) -> Result<Response, ApiError> {
    let outcome = admin
        .handle
        .rollback(&name)
        .await
        .map_err(|e| control_error(&e))?;
    Ok((StatusCode::ACCEPTED, Json(outcome)).into_response())
}

/// Operator errors to answers: precise for the caller's mistakes, opaque for failures behind us.
fn control_error(error: &ControlError) -> ApiError {
    match error {
        ControlError::UnknownService(name) => unknown_service(name),
        ControlError::WrongRepository { .. } => ApiError::bad_request("image", error),
        ControlError::NothingToRollBack(_) => {
            ApiError::new(StatusCode::CONFLICT, error.to_string())
        }
        ControlError::Image(e) => {
            tracing::warn!("admin API deploy: {}", error_chain(e));
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "resolving or building the image failed; see the deployer's log",
            )
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
