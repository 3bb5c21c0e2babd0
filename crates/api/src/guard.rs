//! What every `/v1` request passes first: authentication, the per-key rate limit and, for POSTs that carry
//! an `Idempotency-Key`, the replay of a stored response.

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, hash_secret, parse_api_key};
use crate::routes::UPLOAD_LIMIT;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use sha2::{Digest, Sha256};
use std::num::NonZeroU32;
use subtle::ConstantTimeEq;
use switchboard_store::IdempotencyBegin;

type KeyedLimiter = RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock, StateInformationMiddleware>;

/// Requests per second per API key, with bursts up to twice the rate.
pub struct RateLimit {
    per_second: u32,
    limiter: KeyedLimiter,
}

impl RateLimit {
    /// `None` when `per_second` is 0 (limits off).
    pub fn new(per_second: u32) -> Option<Self> {
        let rate = NonZeroU32::new(per_second)?;
        let burst = NonZeroU32::new(per_second.saturating_mul(2)).unwrap_or(rate);
        let limiter = RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
            .with_middleware::<StateInformationMiddleware>();
        Some(Self { per_second, limiter })
    }

    /// The `X-RateLimit-*` headers, or the 429 response.
    fn check(&self, key_id: &str) -> Result<HeaderMap, Box<Response>> {
        let mut headers = HeaderMap::new();
        headers.insert("x-ratelimit-limit", HeaderValue::from(self.per_second));
        let now_s = jiff::Timestamp::now().as_second();
        match self.limiter.check_key(&key_id.to_string()) {
            Ok(snapshot) => {
                headers.insert(
                    "x-ratelimit-remaining",
                    HeaderValue::from(snapshot.remaining_burst_capacity()),
                );
                headers.insert("x-ratelimit-reset", HeaderValue::from(now_s + 1));
                Ok(headers)
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                let retry_after = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                headers.insert("x-ratelimit-remaining", HeaderValue::from(0));
                headers.insert("x-ratelimit-reset", HeaderValue::from(now_s + retry_after as i64));
                headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after.max(1)));
                let error = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    format!(
                        "more than {} requests per second for this API key; retry after {} s",
                        self.per_second,
                        retry_after.max(1)
                    ),
                );
                let mut response = error.into_response();
                response.headers_mut().extend(headers);
                Err(Box::new(response))
            }
        }
    }
}

/// Verifies the bearer key (a constant-time comparison of the secret's hash).
async fn authenticate(state: &AppState, headers: &HeaderMap) -> ApiResult<Auth> {
    let header = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing Authorization header (expected: Bearer <api key>)"))?;
    let token = header
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
        .map(str::trim)
        .ok_or_else(|| ApiError::unauthorized("the Authorization header must be: Bearer <api key>"))?;
    let (key_id, secret) = parse_api_key(token).ok_or_else(|| ApiError::unauthorized("malformed API key"))?;
    match state.store.api_key_auth(key_id).await? {
        Some(auth) if auth.revoked => Err(ApiError::unauthorized("this API key was revoked")),
        Some(auth) if bool::from(hash_secret(secret).as_bytes().ct_eq(auth.secret_hash.as_bytes())) => Ok(Auth {
            org: auth.organization_id,
            key_id: key_id.to_string(),
        }),
        _ => Err(ApiError::unauthorized("unknown API key")),
    }
}

pub(crate) async fn v1_guard(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let auth = match authenticate(&state, request.headers()).await {
        Ok(auth) => auth,
        Err(e) => return e.into_response(),
    };
    let limit_headers = match state.rate_limit.as_deref().map(|limit| limit.check(&auth.key_id)) {
        Some(Err(limited)) => return *limited,
        Some(Ok(headers)) => Some(headers),
        None => None,
    };
    request.extensions_mut().insert(auth.clone());
    let idempotency_key = request.headers().get("idempotency-key").cloned();
    let mut response = match idempotency_key {
        Some(key) if request.method() == Method::POST => idempotent(&state, &auth, key, request, next).await,
        _ => next.run(request).await,
    };
    if let Some(headers) = limit_headers {
        response.headers_mut().extend(headers);
    }
    response
}

/// What makes two requests "the same" for an `Idempotency-Key`: method, path with query, and body.
pub fn request_fingerprint(method: &str, path_and_query: &str, body: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(method);
    hasher.update(b" ");
    hasher.update(path_and_query);
    hasher.update(b"\n");
    hasher.update(body);
    hex::encode(hasher.finalize())
}

async fn idempotent(state: &AppState, auth: &Auth, key: HeaderValue, request: Request, next: Next) -> Response {
    let key = match key.to_str().ok().filter(|k| (1..=255).contains(&k.len())) {
        Some(key) => key.to_string(),
        None => {
            return ApiError::validation("Idempotency-Key must be 1 to 255 visible ASCII characters").into_response();
        }
    };
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, UPLOAD_LIMIT).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the body exceeds the upload limit",
            )
            .into_response();
        }
    };
    // Inside the `/v1` nest the URI has lost its prefix; fingerprint the path the client sent.
    let uri = parts
        .extensions
        .get::<axum::extract::OriginalUri>()
        .map(|o| &o.0)
        .unwrap_or(&parts.uri);
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let fingerprint = request_fingerprint(parts.method.as_str(), path, &bytes);
    let now = switchboard_domain::time::now_ms();
    match state
        .store
        .idempotency_begin(&auth.key_id, &key, &fingerprint, now)
        .await
    {
        Err(e) => ApiError::from(e).into_response(),
        Ok(IdempotencyBegin::Mismatch) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "this Idempotency-Key was already used with a different request",
        )
        .into_response(),
        Ok(IdempotencyBegin::InProgress) => ApiError::conflict(
            "idempotency_key_in_use",
            "a request with this Idempotency-Key is still running; retry shortly",
        )
        .into_response(),
        Ok(IdempotencyBegin::Replay {
            status,
            content_type,
            body,
        }) => {
            let mut response = Response::new(Body::from(body));
            *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            if let Some(value) = content_type.and_then(|c| HeaderValue::from_str(&c).ok()) {
                response.headers_mut().insert(header::CONTENT_TYPE, value);
            }
            response
                .headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            response
        }
        Ok(IdempotencyBegin::Started) => {
            let response = next.run(Request::from_parts(parts, Body::from(bytes))).await;
            let (parts, body) = response.into_parts();
            let body = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
            let content_type = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
            // A server error is not a completed response: the key stays free for a retry.
            let stored = if parts.status.is_server_error() {
                state.store.idempotency_abandon(&auth.key_id, &key).await
            } else {
                state
                    .store
                    .idempotency_finish(&auth.key_id, &key, parts.status.as_u16(), content_type, &body)
                    .await
            };
            if let Err(e) = stored {
                tracing::error!(error = %e, "could not record an idempotent response");
            }
            Response::from_parts(parts, Body::from(body))
        }
    }
}
