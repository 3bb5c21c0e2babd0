//! The HTTP API (API.md sections 1–5, 7 and 10): axum routers per resource over the storage trait.

pub mod codes;
pub mod error;
pub mod extract;
mod guard;
mod routes;

pub use guard::RateLimit;

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use error::{ApiError, REQUEST_ID};
use serde::Serialize;
use serde_json::json;
use std::sync::Arc;
use switchboard_domain::ids;
use switchboard_engine::Waker;
use switchboard_store::{Page, PageRequest, Store};

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub waker: Waker,
    /// Per-key request limit (`None`: off).
    pub rate_limit: Option<Arc<RateLimit>>,
}

/// The whole service: `/v1` API plus health probes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .nest(
            "/v1",
            routes::v1().layer(axum::middleware::from_fn_with_state(state.clone(), guard::v1_guard)),
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

async fn readyz(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => Json(json!({"status": "ready"})).into_response(),
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
    let mut response = REQUEST_ID.scope(id.clone(), next.run(request)).await;
    tracing::debug!(request_id = %id, %method, %path, status = response.status().as_u16(), "request");
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// The list envelope: `{"data": [...], "meta": {"page", "limit", "total", "totalPages"}}`.
pub(crate) fn page_json<T: Serialize>(page: Page<T>, request: PageRequest) -> Json<serde_json::Value> {
    let total_pages = page.total.div_ceil(request.limit);
    Json(json!({
        "data": page.data,
        "meta": {"page": request.page, "limit": request.limit, "total": page.total, "totalPages": total_pages},
    }))
}
