//! Agents, phone numbers and calls (API.md section 7).

use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, Fields, JsonObject, PAGE_PARAMS, QueryMap};
use crate::{AppState, page_json};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};
use switchboard_domain::model::CallStatus;
use switchboard_domain::phone;
use switchboard_domain::settings::parse_country;
use switchboard_store::records::{Agent, Call, PhoneNumber};
use switchboard_store::{AgentPatch, CallFilter, NewAgent, NewPhoneNumber, PhoneNumberPatch};

const AGENT_FIELDS: [&str; 5] = ["name", "prompt", "welcome_message", "voice", "language"];

pub(super) async fn create_agent(
    State(state): State<AppState>,
    auth: Auth,
    JsonObject(body): JsonObject,
) -> ApiResult<(StatusCode, Json<Agent>)> {
    let fields = Fields(body);
    fields.only(&AGENT_FIELDS)?;
    let name = crate::extract::title(&fields.string("name")?.unwrap_or_default(), "name")?;
    let agent = NewAgent {
        name,
        prompt: fields.string("prompt")?,
        welcome_message: fields.string("welcome_message")?,
        voice: fields.string("voice")?,
        language: fields.string("language")?,
    };
    Ok((
        StatusCode::CREATED,
        Json(state.store.create_agent(&auth.org, agent).await?),
    ))
}

pub(super) async fn list_agents(State(state): State<AppState>, auth: Auth, query: QueryMap) -> ApiResult<Json<Value>> {
    query.only(&PAGE_PARAMS)?;
    let page = query.page()?;
    Ok(page_json(state.store.list_agents(&auth.org, page).await?, page))
}

pub(super) async fn get_agent(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Agent>> {
    Ok(Json(state.store.get_agent(&auth.org, &id).await?))
}

pub(super) async fn update_agent(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<Agent>> {
    let fields = Fields(body);
    fields.only(&AGENT_FIELDS)?;
    if fields.0.is_empty() {
        return Err(ApiError::validation("the body names no field to update"));
    }
    let patch = AgentPatch {
        name: fields
            .string("name")?
            .map(|n| crate::extract::title(&n, "name"))
            .transpose()?,
        prompt: fields.nullable_string("prompt")?,
        welcome_message: fields.nullable_string("welcome_message")?,
        voice: fields.nullable_string("voice")?,
        language: fields.nullable_string("language")?,
    };
    Ok(Json(state.store.update_agent(&auth.org, &id, patch).await?))
}

pub(super) async fn delete_agent(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    state.store.delete_agent(&auth.org, &id).await?;
    Ok(Json(json!({"message": "Agent deleted."})))
}

fn countries(value: Option<&Value>) -> ApiResult<Option<Vec<String>>> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let bad = || ApiError::validation("allowed_destination_countries must be a list of ISO 3166 alpha-2 codes");
    let items = value.as_array().ok_or_else(bad)?;
    let mut out = Vec::new();
    for item in items {
        let code = item.as_str().and_then(parse_country).ok_or_else(bad)?;
        if !out.contains(&code) {
            out.push(code);
        }
    }
    Ok(Some(out))
}

pub(super) async fn create_number(
    State(state): State<AppState>,
    auth: Auth,
    JsonObject(body): JsonObject,
) -> ApiResult<(StatusCode, Json<PhoneNumber>)> {
    let fields = Fields(body);
    fields.only(&[
        "phone_number",
        "label",
        "nickname",
        "provider",
        "provider_config",
        "allowed_destination_countries",
        "country_code",
    ])?;
    let raw = fields
        .string("phone_number")?
        .ok_or_else(|| ApiError::validation("phone_number is required"))?;
    let number = phone::normalize(&raw, None).ok_or_else(|| {
        ApiError::validation("phone_number must be a valid number in international format (+<country code><number>)")
    })?;
    let provider = fields.string("provider")?.unwrap_or_else(|| "simulator".into());
    if provider != "simulator" {
        return Err(ApiError::validation(format!(
            "provider {provider:?} is not available in this version (available: simulator)"
        )));
    }
    let provider_config = provider_config(&fields)?.unwrap_or_else(|| json!({}));
    let own = number.country.clone();
    let allowed =
        countries(fields.get("allowed_destination_countries"))?.unwrap_or_else(|| own.iter().cloned().collect());
    let new = NewPhoneNumber {
        phone_number: number.number,
        label: fields.string("label")?,
        nickname: fields.string("nickname")?,
        country_code: own,
        provider,
        provider_config,
        allowed_destination_countries: allowed,
    };
    Ok((
        StatusCode::CREATED,
        Json(state.store.create_phone_number(&auth.org, new).await?),
    ))
}

fn provider_config(fields: &Fields) -> ApiResult<Option<Value>> {
    match fields.get("provider_config") {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Object(_)) => Ok(Some(v.clone())),
        Some(_) => Err(ApiError::validation("provider_config must be an object")),
    }
}

pub(super) async fn update_number(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<PhoneNumber>> {
    let fields = Fields(body);
    fields.only(&[
        "label",
        "nickname",
        "status",
        "provider_config",
        "allowed_destination_countries",
    ])?;
    if fields.0.is_empty() {
        return Err(ApiError::validation("the body names no field to update"));
    }
    let status = fields.string("status")?;
    if status.as_deref().is_some_and(|s| s != "active" && s != "inactive") {
        return Err(ApiError::validation("status must be active or inactive"));
    }
    let patch = PhoneNumberPatch {
        label: fields.nullable_string("label")?,
        nickname: fields.nullable_string("nickname")?,
        status,
        provider_config: provider_config(&fields)?,
        allowed_destination_countries: countries(fields.get("allowed_destination_countries"))?,
    };
    Ok(Json(state.store.update_phone_number(&auth.org, &id, patch).await?))
}

pub(super) async fn delete_number(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    state.store.delete_phone_number(&auth.org, &id).await?;
    Ok(Json(json!({"message": "Phone number deleted."})))
}

pub(super) async fn list_numbers(State(state): State<AppState>, auth: Auth, query: QueryMap) -> ApiResult<Json<Value>> {
    query.only(&[PAGE_PARAMS[0], PAGE_PARAMS[1], "status", "country_code"])?;
    let page = query.page()?;
    let country = query.get("country_code").map(|c| c.to_ascii_uppercase());
    let numbers = state
        .store
        .list_phone_numbers(&auth.org, query.get("status"), country.as_deref(), page)
        .await?;
    Ok(page_json(numbers, page))
}

pub(super) async fn get_number(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<PhoneNumber>> {
    Ok(Json(state.store.get_phone_number(&auth.org, &id).await?))
}

pub(super) async fn list_calls(State(state): State<AppState>, auth: Auth, query: QueryMap) -> ApiResult<Json<Value>> {
    query.only(&[
        PAGE_PARAMS[0],
        PAGE_PARAMS[1],
        "workflow_id",
        "workflow_lead_id",
        "agent_id",
        "status",
        "from",
        "to",
    ])?;
    let page = query.page()?;
    let status = query
        .get("status")
        .map(|s| {
            CallStatus::parse(s)
                .map(|s| s.as_str().to_string())
                .ok_or_else(|| ApiError::validation(format!("status must be one of: {}", CallStatus::names())))
        })
        .transpose()?;
    let filter = CallFilter {
        workflow_id: query.get("workflow_id").map(String::from),
        workflow_lead_id: query.get("workflow_lead_id").map(String::from),
        agent_id: query.get("agent_id").map(String::from),
        status,
        from: query.instant("from")?,
        to: query.instant("to")?,
    };
    Ok(page_json(state.store.list_calls(&auth.org, &filter, page).await?, page))
}

pub(super) async fn get_call(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Call>> {
    Ok(Json(state.store.get_call(&auth.org, &id).await?))
}
