//! Lead enrolment (CSV and JSON), reads, removal, history and variable keys (API.md section 5).

use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, Fields, PAGE_PARAMS, QueryMap, parse_object, read_body};
use crate::{AppState, page_json};
use axum::Json;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::HashSet;
use switchboard_domain::leadfile::{self, RawLead, Rejections};
use switchboard_domain::model::{LeadState, LeadStatus};
use switchboard_domain::settings::parse_country;
use switchboard_store::LeadFilter;
use switchboard_store::records::Lead;

pub const UPLOAD_LIMIT: usize = 50 * 1024 * 1024;
const MAX_BATCH: usize = 10_000;

/// What an enrolment request carried, whatever its form.
struct Upload {
    rows: Vec<RawLead>,
    default_country: Option<String>,
    skip_invalid: bool,
    single: bool,
}

fn is_xlsx(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PK\x03\x04")
}

async fn read_multipart(req: Request, state: &AppState) -> ApiResult<Upload> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the upload exceeds the 50 MiB limit",
        )
    };
    let mut multipart = Multipart::from_request(req, state)
        .await
        .map_err(|e| ApiError::bad_request("invalid_multipart", format!("malformed multipart body: {e}")))?;
    let mut upload = Upload {
        rows: Vec::new(),
        default_country: None,
        skip_invalid: false,
        single: false,
    };
    let mut file = None;
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return Err(too_large()),
            Err(e) => {
                return Err(ApiError::bad_request(
                    "invalid_multipart",
                    format!("malformed multipart body: {e}"),
                ));
            }
        };
        let name = field.name().unwrap_or("").to_string();
        let bytes = field.bytes().await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large()
            } else {
                ApiError::bad_request("invalid_multipart", e.body_text())
            }
        })?;
        let text = || String::from_utf8_lossy(&bytes).trim().to_string();
        match name.as_str() {
            "file" => file = Some(bytes),
            "default_country" => upload.default_country = Some(text()).filter(|s| !s.is_empty()),
            "skip_invalid" => upload.skip_invalid = matches!(text().as_str(), "true" | "1"),
            other => {
                return Err(ApiError::bad_request(
                    "unknown_field",
                    format!("unknown form field {other} (allowed: file, default_country, skip_invalid)"),
                ));
            }
        }
    }
    let file = file.ok_or_else(|| ApiError::validation("the form has no file part"))?;
    upload.rows = if is_xlsx(&file) {
        leadfile::read_xlsx(&file)?
    } else {
        leadfile::read_csv(&file)?
    };
    Ok(upload)
}

fn read_json(body: serde_json::Map<String, Value>) -> ApiResult<Upload> {
    let fields = Fields(body);
    if fields.has("leads") {
        fields.only(&["leads", "default_country", "skip_invalid"])?;
        let Some(Value::Array(items)) = fields.get("leads") else {
            return Err(ApiError::validation("leads must be an array"));
        };
        if items.is_empty() || items.len() > MAX_BATCH {
            return Err(ApiError::validation(format!("leads must hold 1 to {MAX_BATCH} leads")));
        }
        let rows = items
            .iter()
            .enumerate()
            .map(|(i, v)| leadfile::from_json(i + 1, v))
            .collect::<Result<_, _>>()?;
        return Ok(Upload {
            rows,
            default_country: fields.string("default_country")?,
            skip_invalid: fields.boolean("skip_invalid")?.unwrap_or(false),
            single: false,
        });
    }
    let lead = leadfile::from_json(1, &Value::Object(fields.0))?;
    Ok(Upload {
        rows: vec![lead],
        default_country: None,
        skip_invalid: false,
        single: true,
    })
}

pub(super) async fn enrol(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    query: QueryMap,
    req: Request,
) -> ApiResult<Response> {
    query.only(&["skip_invalid"])?;
    let workflow = state.store.get_workflow(&auth.org, &id).await?;
    if workflow.status.is_final() {
        return Err(ApiError::conflict(
            "workflow_final",
            format!("workflow is {}; it takes no more leads", workflow.status),
        ));
    }
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let mut upload = if content_type.starts_with("multipart/form-data") {
        read_multipart(req, &state).await?
    } else if content_type.starts_with("application/json") {
        read_json(parse_object(&read_body(req, UPLOAD_LIMIT).await?)?)?
    } else {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send multipart/form-data with a file part, or application/json",
        ));
    };
    upload.skip_invalid |= query.flag("skip_invalid")?;
    let default_country = match upload.default_country.as_deref() {
        Some(code) => Some(parse_country(code).ok_or_else(|| {
            ApiError::validation(format!("default_country {code:?} is not an ISO 3166 alpha-2 code"))
        })?),
        None => workflow.settings.default_country.clone(),
    };
    let allowed: Option<HashSet<String>> = state
        .store
        .allowed_destinations(&auth.org, &id)
        .await?
        .map(|v| v.into_iter().collect());
    let mut rejections = Rejections::default();
    let mut candidates = Vec::with_capacity(upload.rows.len());
    for raw in upload.rows {
        match leadfile::check_row(raw, default_country.as_deref(), allowed.as_ref()) {
            Ok(candidate) => candidates.push(candidate),
            Err((reason, position, phone)) => rejections.add(reason, position, phone),
        }
    }
    if !rejections.is_empty() && !upload.skip_invalid {
        let groups = rejections.into_groups();
        let count: usize = groups.iter().map(|g| g.count).sum();
        return Err(ApiError::bad_request(
            "invalid_rows",
            format!("{count} rows are invalid; nothing was enrolled"),
        )
        .with_details(json!({"groups": groups})));
    }
    let outcome = state.store.enrol_leads(&auth.org, &id, candidates).await?;
    state.waker.wake();
    if upload.single {
        return match outcome.single {
            Some(lead) => Ok((StatusCode::CREATED, Json(lead)).into_response()),
            None => Err(ApiError::conflict(
                "duplicate_lead",
                "this phone number is already enrolled in the workflow",
            )),
        };
    }
    let mut body = json!({
        "workflow_id": id,
        "leads_enrolled": outcome.enrolled_count,
        "duplicates_skipped": outcome.duplicates_skipped,
        "message": format!("{} leads enrolled in the workflow.", outcome.enrolled_count),
    });
    if upload.skip_invalid {
        body["rejected"] = json!(rejections.into_groups());
    }
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

pub(super) async fn list(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    query: QueryMap,
) -> ApiResult<Json<Value>> {
    query.only(&[
        PAGE_PARAMS[0],
        PAGE_PARAMS[1],
        "status",
        "state",
        "current_node_id",
        "phone_number",
    ])?;
    let page = query.page()?;
    let filter = LeadFilter {
        status: query
            .get("status")
            .map(|s| {
                LeadStatus::parse_filter(s).ok_or_else(|| {
                    ApiError::validation(format!("status must be one of: {} (or active)", LeadStatus::names()))
                })
            })
            .transpose()?,
        state: query
            .get("state")
            .map(|s| {
                LeadState::parse(s)
                    .ok_or_else(|| ApiError::validation(format!("state must be one of: {}", LeadState::names())))
            })
            .transpose()?,
        current_node_id: query.get("current_node_id").map(String::from),
        phone_number: query.get("phone_number").map(|p| p.trim().to_string()),
    };
    Ok(page_json(
        state.store.list_leads(&auth.org, &id, &filter, page).await?,
        page,
    ))
}

pub(super) async fn get(
    State(state): State<AppState>,
    auth: Auth,
    Path((id, lead_id)): Path<(String, String)>,
) -> ApiResult<Json<Lead>> {
    Ok(Json(state.store.get_lead(&auth.org, &id, &lead_id).await?))
}

pub(super) async fn remove(
    State(state): State<AppState>,
    auth: Auth,
    Path((id, lead_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    state.store.remove_lead(&auth.org, &id, &lead_id).await?;
    state.waker.wake();
    Ok(Json(json!({"message": "Lead removed from workflow."})))
}

pub(super) async fn history(
    State(state): State<AppState>,
    auth: Auth,
    Path((id, lead_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (lead, entries) = state.store.lead_history(&auth.org, &id, &lead_id).await?;
    Ok(Json(
        json!({"id": lead.id, "workflow_id": lead.workflow_id, "lead": lead, "history": entries}),
    ))
}

pub(super) async fn variable_keys(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(json!({"keys": state.store.variable_keys(&auth.org, &id).await?})))
}
