//! Shapes shared by many endpoints, and the OpenAPI document's frame. The paths come from the
//! `#[utoipa::path]` annotations on the handlers, collected by the router itself.

use serde::Serialize;
use serde_json::Value;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// The body of every 4xx/5xx response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    #[serde(rename = "statusCode")]
    pub status_code: u16,
    /// The HTTP reason phrase of the status.
    pub error: String,
    /// A message, or several when several fields fail.
    #[schema(value_type = String)]
    pub message: Value,
    /// A stable code from docs/errors.md.
    pub code: String,
    /// Equals the response's `X-Request-Id`.
    pub request_id: String,
    /// Structured data: row errors of an upload, graph problems at activation.
    #[schema(value_type = Option<Object>)]
    pub details: Option<Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PageMeta {
    pub page: u64,
    pub limit: u64,
    pub total: u64,
    #[serde(rename = "totalPages")]
    pub total_pages: u64,
}

/// A page of a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct Paged<T: ToSchema> {
    pub data: Vec<T>,
    pub meta: PageMeta,
}

/// A bounded list (nodes, edges).
#[derive(Debug, Serialize, ToSchema)]
pub struct List<T: ToSchema> {
    pub data: Vec<T>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessageBody {
    pub message: String,
}

impl MessageBody {
    pub fn json(message: &str) -> axum::Json<Self> {
        axum::Json(Self {
            message: message.to_string(),
        })
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub status: String,
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("sbk_<key id>_<secret>")
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Switchboard API", description = "Multi-step outbound calling workflows for AI voice agents. Wire-compatible with the DialNexa Workflows API."),
    modifiers(&BearerAuth),
    security(("api_key" = [])),
    components(schemas(ErrorBody))
)]
pub struct ApiDoc;
