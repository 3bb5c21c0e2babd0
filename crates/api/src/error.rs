//! The one error body of the API (API.md section 1) and the mapping from lower layers.

use crate::docs::ErrorBody;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use switchboard_store::StoreError;

tokio::task_local! {
    /// The current request's id, so every error body can carry it.
    pub static REQUEST_ID: String;
}

pub fn current_request_id() -> String {
    REQUEST_ID
        .try_with(Clone::clone)
        .unwrap_or_else(|_| switchboard_domain::ids::new_id(switchboard_domain::ids::REQUEST))
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: Value,
    pub details: Option<Value>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: Value::String(message.into()),
            details: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::bad_request("validation_failed", message)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("{what} not found"))
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }
}

impl From<switchboard_domain::Invalid> for ApiError {
    fn from(e: switchboard_domain::Invalid) -> Self {
        Self::bad_request(e.code, e.message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => Self::not_found(what),
            StoreError::Conflict { code, message, details } => Self {
                status: StatusCode::CONFLICT,
                code,
                message: Value::String(message),
                details,
            },
            StoreError::Invalid { code, message, details } => Self {
                status: StatusCode::BAD_REQUEST,
                code,
                message: Value::String(message),
                details,
            },
            StoreError::Backend(cause) => {
                tracing::error!(request_id = %current_request_id(), %cause, "storage failure");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "internal server error",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        debug_assert!(
            crate::codes::lookup(self.code).is_some_and(|c| c.status == self.status.as_u16()),
            "error code {} ({}) is not in the table of codes",
            self.code,
            self.status
        );
        let request_id = current_request_id();
        let body = ErrorBody {
            status_code: self.status.as_u16(),
            error: self.status.canonical_reason().unwrap_or("Error").to_string(),
            message: self.message,
            code: self.code.to_string(),
            request_id: request_id.clone(),
            details: self.details,
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            response.headers_mut().insert("x-request-id", value);
        }
        response
    }
}
