//! Lead enrolment (CSV, XLSX and JSON), reads, removal, history and variable keys (API.md section 5).

use crate::docs::{ErrorBody, MessageBody, Paged};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, PAGE_PARAMS, QueryMap, parse_as, parse_object, read_body};
use crate::{AppState, page_json};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{StatusCode, header};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::HashSet;
use switchboard_domain::leadfile::{self, RawLead, Rejections, RowGroup};
use switchboard_domain::model::{LeadState, LeadStatus};
use switchboard_domain::settings::parse_country;
use switchboard_store::LeadFilter;
use switchboard_store::records::{HistoryEntry, Lead};
use utoipa::ToSchema;

pub const UPLOAD_LIMIT: usize = 50 * 1024 * 1024;
const MAX_BATCH: usize = 10_000;

/// One lead sent as JSON.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LeadInput {
    /// E.164, or national format read in `default_country`.
    #[schema(value_type = String)]
    phone_number: Option<Value>,
    /// The lead's variables (`variables` is accepted as a synonym).
    #[serde(alias = "variables")]
    #[schema(value_type = Option<Object>)]
    metadata: Option<Map<String, Value>>,
    /// IANA zone for calling hours.
    timezone: Option<String>,
}

/// Up to 10,000 leads in one request.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LeadBatch {
    leads: Vec<LeadInput>,
    default_country: Option<String>,
    skip_invalid: Option<bool>,
}

/// A JSON enrolment: a batch (`leads`) or one lead.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum EnrolJson {
    Batch(LeadBatch),
    Single(LeadInput),
}

/// What enrolment answers: the counts for a batch or file, the lead for a single JSON lead.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum Enrolled {
    Batch(EnrolResult),
    Single(Box<Lead>),
}

/// A CSV or XLSX file of leads.
#[derive(ToSchema)]
pub(crate) struct LeadUpload {
    #[schema(value_type = String, format = Binary)]
    file: Bytes,
    default_country: Option<String>,
    skip_invalid: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct EnrolResult {
    workflow_id: String,
    leads_enrolled: u64,
    duplicates_skipped: u64,
    message: String,
    /// Rows left out, by reason (only with `skip_invalid`).
    #[serde(skip_serializing_if = "Option::is_none")]
    rejected: Option<Vec<RowGroup>>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct LeadHistory {
    id: String,
    workflow_id: String,
    lead: Lead,
    history: Vec<HistoryEntry>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct VariableKeys {
    keys: Vec<String>,
}

/// Rows checked and inserted per batch of an upload.
const ENROL_BATCH: usize = 5_000;

/// What a JSON enrolment carried.
struct JsonLeads {
    rows: Vec<RawLead>,
    default_country: Option<String>,
    skip_invalid: bool,
    single: bool,
}

fn is_xlsx(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PK\x03\x04")
}

fn raw_lead(position: usize, input: LeadInput) -> ApiResult<RawLead> {
    let phone_number = match input.phone_number {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.trim().to_string()).filter(|s| !s.is_empty()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(_) => {
            return Err(ApiError::validation(format!(
                "lead {position}: phone_number must be a string"
            )));
        }
    };
    Ok(RawLead {
        position,
        phone_number,
        variables: leadfile::variables_from_json(position, input.metadata.unwrap_or_default())?,
        timezone: input.timezone.map(|t| t.trim().to_string()).filter(|t| !t.is_empty()),
    })
}

async fn read_multipart(req: Request, state: &AppState) -> ApiResult<LeadUpload> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the upload exceeds the 50 MiB limit",
        )
    };
    let malformed = |e: String| ApiError::bad_request("invalid_multipart", format!("malformed multipart body: {e}"));
    let mut multipart = Multipart::from_request(req, state)
        .await
        .map_err(|e| malformed(e.body_text()))?;
    let (mut file, mut default_country, mut skip_invalid) = (None, None, None);
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return Err(too_large()),
            Err(e) => return Err(malformed(e.body_text())),
        };
        let name = field.name().unwrap_or("").to_string();
        let bytes = field.bytes().await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large()
            } else {
                malformed(e.body_text())
            }
        })?;
        let text = || String::from_utf8_lossy(&bytes).trim().to_string();
        match name.as_str() {
            "file" => file = Some(bytes.clone()),
            "default_country" => default_country = Some(text()).filter(|s| !s.is_empty()),
            "skip_invalid" => skip_invalid = Some(matches!(text().as_str(), "true" | "1")),
            other => {
                return Err(ApiError::bad_request(
                    "unknown_field",
                    format!("unknown form field {other} (allowed: file, default_country, skip_invalid)"),
                ));
            }
        }
    }
    let file = file.ok_or_else(|| ApiError::validation("the form has no file part"))?;
    Ok(LeadUpload {
        file,
        default_country,
        skip_invalid,
    })
}

fn read_json(body: Map<String, Value>) -> ApiResult<JsonLeads> {
    // Dispatch on `leads` rather than trying both shapes, so errors name the failing field.
    let request = if body.contains_key("leads") {
        EnrolJson::Batch(parse_as(body)?)
    } else {
        EnrolJson::Single(parse_as(body)?)
    };
    match request {
        EnrolJson::Batch(batch) => {
            if batch.leads.is_empty() || batch.leads.len() > MAX_BATCH {
                return Err(ApiError::validation(format!("leads must hold 1 to {MAX_BATCH} leads")));
            }
            let rows = batch
                .leads
                .into_iter()
                .enumerate()
                .map(|(i, lead)| raw_lead(i + 1, lead))
                .collect::<ApiResult<_>>()?;
            Ok(JsonLeads {
                rows,
                default_country: batch.default_country,
                skip_invalid: batch.skip_invalid.unwrap_or(false),
                single: false,
            })
        }
        EnrolJson::Single(lead) => Ok(JsonLeads {
            rows: vec![raw_lead(1, lead)?],
            default_country: None,
            skip_invalid: false,
            single: true,
        }),
    }
}

/// Enrol leads: a file (multipart `file` part, CSV or XLSX), one lead, or a batch (JSON).
#[utoipa::path(post, path = "/workflows/{id}/leads", tag = "leads",
    params(("id" = String, Path), ("skip_invalid" = Option<bool>, Query, description = "enrol the valid rows, report the others")),
    request_body(content((LeadUpload = "multipart/form-data"), (EnrolJson = "application/json"))),
    responses((status = 201, description = "a batch or file: the counts; a single lead: the lead", body = Enrolled),
              (status = "4XX", body = ErrorBody)))]
pub(super) async fn enrol(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    query: QueryMap,
    req: Request,
) -> ApiResult<(StatusCode, Json<Enrolled>)> {
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
    let (form, json) = if content_type.starts_with("multipart/form-data") {
        (Some(read_multipart(req, &state).await?), None)
    } else if content_type.starts_with("application/json") {
        (
            None,
            Some(read_json(parse_object(&read_body(req, UPLOAD_LIMIT).await?)?)?),
        )
    } else {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send multipart/form-data with a file part, or application/json",
        ));
    };
    type Rows<'a> = Box<dyn Iterator<Item = Result<RawLead, switchboard_domain::Invalid>> + Send + 'a>;
    let (rows, default_country, skip_invalid, single): (Rows<'_>, _, _, _) = match (&form, json) {
        (Some(form), _) if is_xlsx(&form.file) => {
            let rows = leadfile::read_xlsx(&form.file)?;
            (
                Box::new(rows.into_iter().map(Ok)),
                form.default_country.clone(),
                form.skip_invalid,
                false,
            )
        }
        (Some(form), _) => (
            Box::new(leadfile::csv_rows(&form.file)?),
            form.default_country.clone(),
            form.skip_invalid,
            false,
        ),
        (None, Some(json)) => (
            Box::new(json.rows.into_iter().map(Ok)),
            json.default_country,
            Some(json.skip_invalid),
            json.single,
        ),
        (None, None) => unreachable!("one of the two forms was read"),
    };
    let skip_invalid = skip_invalid.unwrap_or(false) || query.flag("skip_invalid")?;
    let default_country = match default_country.as_deref() {
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
    // Rows are checked and inserted batch by batch in one transaction; an error drops it, leaving nothing.
    let mut enrolment = state.store.begin_enrolment(&auth.org, &id).await?;
    let mut rejections = Rejections::default();
    let mut batch = Vec::with_capacity(ENROL_BATCH);
    let mut rows = rows.peekable();
    while let Some(row) = rows.next() {
        match leadfile::check_row(row?, default_country.as_deref(), allowed.as_ref()) {
            Ok(candidate) => batch.push(candidate),
            Err((reason, position, phone)) => rejections.add(reason, position, phone),
        }
        if batch.len() == ENROL_BATCH || rows.peek().is_none() {
            // Once a row failed without skip_invalid nothing will be kept: only the checks go on.
            if rejections.is_empty() || skip_invalid {
                enrolment.add(std::mem::take(&mut batch)).await?;
            } else {
                batch.clear();
            }
        }
    }
    if !rejections.is_empty() && !skip_invalid {
        let groups = rejections.into_groups();
        let count: usize = groups.iter().map(|g| g.count).sum();
        return Err(ApiError::bad_request(
            "invalid_rows",
            format!("{count} rows are invalid; nothing was enrolled"),
        )
        .with_details(serde_json::json!({"groups": groups})));
    }
    let outcome = enrolment.commit().await?;
    state.waker.wake();
    if single {
        return match outcome.single {
            Some(lead) => Ok((StatusCode::CREATED, Json(Enrolled::Single(Box::new(lead))))),
            None => Err(ApiError::conflict(
                "duplicate_lead",
                "this phone number is already enrolled in the workflow",
            )),
        };
    }
    let result = EnrolResult {
        workflow_id: id,
        leads_enrolled: outcome.enrolled_count,
        duplicates_skipped: outcome.duplicates_skipped,
        message: format!("{} leads enrolled in the workflow.", outcome.enrolled_count),
        rejected: skip_invalid.then(|| rejections.into_groups()),
    };
    Ok((StatusCode::CREATED, Json(Enrolled::Batch(result))))
}

/// List a workflow's leads, newest first.
#[utoipa::path(get, path = "/workflows/{id}/leads", tag = "leads",
    params(("id" = String, Path), ("page" = Option<u64>, Query), ("limit" = Option<u64>, Query),
           ("status" = Option<String>, Query, description = "pending, in_progress (or active), completed, dropped, removed, failed"),
           ("state" = Option<String>, Query), ("current_node_id" = Option<String>, Query), ("phone_number" = Option<String>, Query)),
    responses((status = 200, body = Paged<Lead>), (status = "4XX", body = ErrorBody)))]
pub(super) async fn list(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    query: QueryMap,
) -> ApiResult<Json<Paged<Lead>>> {
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

/// Get a lead.
#[utoipa::path(get, path = "/workflows/{id}/leads/{lead_id}", tag = "leads",
    params(("id" = String, Path), ("lead_id" = String, Path)),
    responses((status = 200, body = Lead), (status = "4XX", body = ErrorBody)))]
pub(super) async fn get(
    State(state): State<AppState>,
    auth: Auth,
    Path((id, lead_id)): Path<(String, String)>,
) -> ApiResult<Json<Lead>> {
    Ok(Json(state.store.get_lead(&auth.org, &id, &lead_id).await?))
}

/// Remove a lead: no further step; a running step finishes first.
#[utoipa::path(delete, path = "/workflows/{id}/leads/{lead_id}", tag = "leads",
    params(("id" = String, Path), ("lead_id" = String, Path)),
    responses((status = 200, body = MessageBody), (status = "4XX", body = ErrorBody)))]
pub(super) async fn remove(
    State(state): State<AppState>,
    auth: Auth,
    Path((id, lead_id)): Path<(String, String)>,
) -> ApiResult<Json<MessageBody>> {
    state.store.remove_lead(&auth.org, &id, &lead_id).await?;
    state.waker.wake();
    Ok(MessageBody::json("Lead removed from workflow."))
}

/// The lead's path: one entry per node visit, in order.
#[utoipa::path(get, path = "/workflows/{id}/leads/{lead_id}/history", tag = "leads",
    params(("id" = String, Path), ("lead_id" = String, Path)),
    responses((status = 200, body = LeadHistory), (status = "4XX", body = ErrorBody)))]
pub(super) async fn history(
    State(state): State<AppState>,
    auth: Auth,
    Path((id, lead_id)): Path<(String, String)>,
) -> ApiResult<Json<LeadHistory>> {
    let (lead, history) = state.store.lead_history(&auth.org, &id, &lead_id).await?;
    Ok(Json(LeadHistory {
        id: lead.id.clone(),
        workflow_id: lead.workflow_id.clone(),
        lead,
        history,
    }))
}

/// Every variable key enrolled so far, sorted.
#[utoipa::path(get, path = "/workflows/{id}/leads/variable-keys", tag = "leads", params(("id" = String, Path)),
    responses((status = 200, body = VariableKeys), (status = "4XX", body = ErrorBody)))]
pub(super) async fn variable_keys(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<VariableKeys>> {
    Ok(Json(VariableKeys {
        keys: state.store.variable_keys(&auth.org, &id).await?,
    }))
}
