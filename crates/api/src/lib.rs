//! The HTTP API (API.md sections 1–5, 7 and 10): axum routers per resource over the storage trait.

pub mod codes;
pub mod docs;
pub mod error;
pub mod extract;
mod guard;
mod metrics;
mod routes;

pub use guard::{RateLimit, request_fingerprint};

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use error::{ApiError, REQUEST_ID};
use serde::Serialize;
use std::sync::Arc;
use switchboard_domain::ids;
use switchboard_engine::Waker;
use switchboard_store::{Page, PageRequest, Store};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub waker: Waker,
    /// Per-key request limit (`None`: off).
    pub rate_limit: Option<Arc<RateLimit>>,
}

/// The whole service: `/v1` API, health probes and the OpenAPI document built from the same routes.
pub fn router(state: AppState) -> Router {
    metrics::recorder();
    let guard = axum::middleware::from_fn_with_state(state.clone(), guard::v1_guard);
    let (router, openapi) = api_routes(|v1| v1.layer(guard)).split_for_parts();
    let document = openapi_json(openapi);
    router
        .route(
            "/openapi.json",
            get(move || async move { ([(header::CONTENT_TYPE, "application/json")], document) }),
        )
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "route_not_found", "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this method is not allowed on this route",
            )
        })
        .layer(axum::middleware::from_fn(request_id))
        .with_state(state)
}

/// Every documented route; `wrap_v1` adds the layers of `/v1` (they do not change the document).
fn api_routes(wrap_v1: impl FnOnce(OpenApiRouter<AppState>) -> OpenApiRouter<AppState>) -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(docs::ApiDoc::openapi())
        .routes(utoipa_axum::routes!(healthz))
        .routes(utoipa_axum::routes!(readyz))
        .routes(utoipa_axum::routes!(metrics::metrics))
        .nest("/v1", wrap_v1(routes::v1()))
}

fn openapi_json(openapi: utoipa::openapi::OpenApi) -> String {
    let mut text = openapi.to_pretty_json().unwrap_or_else(|_| "{}".into());
    text.push('\n');
    text
}

/// The OpenAPI document the server serves at `/openapi.json` (committed as `openapi.json`).
pub fn openapi_document() -> String {
    openapi_json(api_routes(|v1| v1).split_for_parts().1)
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", security(()), responses((status = 200, body = docs::Health)))]
async fn healthz() -> Json<docs::Health> {
    Json(docs::Health { status: "ok".into() })
}

/// The database is reachable and migrated.
#[utoipa::path(get, path = "/readyz", tag = "operations", security(()),
    responses((status = 200, body = docs::Health), (status = 503, body = docs::ErrorBody)))]
async fn readyz(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => Json(docs::Health { status: "ready".into() }).into_response(),
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "the database is not reachable",
        )
        .into_response(),
    }
}

fn valid_request_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Takes the caller's `X-Request-Id` when it is well-formed, else makes one; echoes it on the response.
async fn request_id(request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| valid_request_id(v))
        .map(String::from)
        .unwrap_or_else(|| ids::new_id(ids::REQUEST));
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let started = std::time::Instant::now();
    let mut response = REQUEST_ID.scope(id.clone(), next.run(request)).await;
    let status = response.status().as_u16();
    ::metrics::histogram!("switchboard_http_request_duration_seconds", "method" => method.to_string())
        .record(started.elapsed().as_secs_f64());
    ::metrics::counter!("switchboard_http_requests_total", "method" => method.to_string(), "status" => status.to_string())
        .increment(1);
    tracing::debug!(request_id = %id, %method, %path, status, "request");
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// The list envelope: `{"data": [...], "meta": {"page", "limit", "total", "totalPages"}}`.
pub(crate) fn page_json<T: Serialize + utoipa::ToSchema>(page: Page<T>, request: PageRequest) -> Json<docs::Paged<T>> {
    let meta = docs::PageMeta {
        page: request.page,
        limit: request.limit,
        total: page.total,
        total_pages: page.total.div_ceil(request.limit),
    };
    Json(docs::Paged { data: page.data, meta })
}
