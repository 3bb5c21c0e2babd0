//! Request extractors that answer every rejection with the API's error body.

use crate::error::{ApiError, ApiResult};
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use switchboard_domain::ids;
use switchboard_store::PageRequest;

pub const JSON_BODY_LIMIT: usize = 1024 * 1024;

/// The organization an authenticated request acts for (set by the `/v1` guard).
#[derive(Debug, Clone)]
pub struct Auth {
    pub org: String,
    pub key_id: String,
}

/// Splits `sbk_<key id>_<secret>` into its key id and secret.
pub fn parse_api_key(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix("sbk_")?;
    let id_len = ids::API_KEY.len() + 12;
    let key_id = rest.get(..id_len)?;
    let secret = rest.get(id_len..)?.strip_prefix('_')?;
    (ids::is_id(ids::API_KEY, key_id) && !secret.is_empty()).then_some((key_id, secret))
}

pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

impl<S: Send + Sync> FromRequestParts<S> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> ApiResult<Self> {
        parts
            .extensions
            .get::<Auth>()
            .cloned()
            .ok_or_else(|| ApiError::unauthorized("this route needs an API key"))
    }
}

/// A JSON object body (an empty body reads as `{}`), checked for content type and size.
pub struct JsonObject(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> ApiResult<Self> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().to_ascii_lowercase().starts_with("application/json"));
        let has_type = req.headers().contains_key(header::CONTENT_TYPE);
        let bytes = read_body(req, JSON_BODY_LIMIT).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(Map::new()));
        }
        if !is_json {
            let message = if has_type {
                "Content-Type must be application/json"
            } else {
                "missing Content-Type: application/json"
            };
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                message,
            ));
        }
        parse_object(&bytes).map(Self)
    }
}

pub fn parse_object(bytes: &[u8]) -> ApiResult<Map<String, Value>> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::bad_request("invalid_json", "the body must be a JSON object")),
        Err(e) => Err(ApiError::bad_request("invalid_json", format!("malformed JSON: {e}"))),
    }
}

pub async fn read_body(req: Request, limit: usize) -> ApiResult<axum::body::Bytes> {
    axum::body::to_bytes(req.into_body(), limit).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body exceeds the {limit}-byte limit"),
        )
    })
}

/// A JSON body parsed into `T` (an empty body reads as `{}`); errors name the failing field.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> ApiResult<Self> {
        let JsonObject(map) = JsonObject::from_request(req, state).await?;
        parse_as(map).map(Body)
    }
}

/// Deserialises a JSON object into `T`, naming the field that fails.
pub fn parse_as<T: DeserializeOwned>(map: Map<String, Value>) -> ApiResult<T> {
    serde_path_to_error::deserialize(Value::Object(map)).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        if inner.starts_with("unknown field") {
            ApiError::bad_request("unknown_field", inner)
        } else if path == "." {
            ApiError::validation(inner)
        } else {
            ApiError::validation(format!("{path}: {inner}"))
        }
    })
}

/// For `#[serde(default, deserialize_with = "nullable")]`: `None` when absent, `Some(None)` when null.
pub fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

/// Checks a title: 1–255 characters after trimming.
pub fn title(value: &str, field: &str) -> ApiResult<String> {
    let trimmed = value.trim();
    if trimmed.is_empty() || trimmed.chars().count() > 255 {
        return Err(ApiError::validation(format!("{field} must be 1 to 255 characters")));
    }
    Ok(trimmed.to_string())
}

/// Query parameters, with malformed query strings answered in the error shape.
pub struct QueryMap(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for QueryMap {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> ApiResult<Self> {
        let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
            .map_err(|_| ApiError::validation("malformed query string"))?;
        Ok(Self(pairs.into_iter().collect()))
    }
}

impl QueryMap {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// Rejects unknown query parameters, naming them.
    pub fn only(&self, allowed: &[&str]) -> ApiResult<()> {
        match self.0.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(key) => Err(ApiError::validation(format!(
                "unknown query parameter {key} (allowed: {})",
                allowed.join(", ")
            ))),
            None => Ok(()),
        }
    }

    pub fn flag(&self, key: &str) -> ApiResult<bool> {
        match self.get(key) {
            None | Some("false") | Some("0") => Ok(false),
            Some("true") | Some("1") => Ok(true),
            Some(other) => Err(ApiError::validation(format!(
                "{key} must be true or false, not {other:?}"
            ))),
        }
    }

    /// `page` (from 1) and `limit` (1–100, default 20).
    pub fn page(&self) -> ApiResult<PageRequest> {
        let number = |key: &str, default: u64, max: u64| -> ApiResult<u64> {
            match self.get(key) {
                None => Ok(default),
                Some(text) => text
                    .parse::<u64>()
                    .ok()
                    .filter(|n| (1..=max).contains(n))
                    .ok_or_else(|| ApiError::validation(format!("{key} must be an integer from 1 to {max}"))),
            }
        };
        Ok(PageRequest {
            page: number("page", 1, 1_000_000_000)?,
            limit: number("limit", 20, 100)?,
        })
    }

    /// An RFC 3339 instant as Unix milliseconds.
    pub fn instant(&self, key: &str) -> ApiResult<Option<i64>> {
        self.get(key)
            .map(|text| {
                text.parse::<jiff::Timestamp>()
                    .map(|t| t.as_millisecond())
                    .map_err(|_| ApiError::validation(format!("{key} must be an RFC 3339 date-time")))
            })
            .transpose()
    }
}

pub const PAGE_PARAMS: [&str; 2] = ["page", "limit"];
