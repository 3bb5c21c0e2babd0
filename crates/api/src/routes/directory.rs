//! Agents, phone numbers and calls (API.md section 7).

use crate::docs::{ErrorBody, MessageBody, Paged};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, Body, PAGE_PARAMS, QueryMap, nullable, title};
use crate::{AppState, page_json};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use switchboard_domain::model::CallStatus;
use switchboard_domain::phone;
use switchboard_domain::settings::parse_country;
use switchboard_store::records::{Agent, Call, PhoneNumber};
use switchboard_store::{AgentPatch, CallFilter, NewAgent, NewPhoneNumber, PhoneNumberPatch};
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateAgent {
    name: String,
    /// `{{variable}}` names are the agent's variables.
    prompt: Option<String>,
    welcome_message: Option<String>,
    voice: Option<String>,
    language: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateAgent {
    name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    prompt: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    welcome_message: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    voice: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    language: Option<Option<String>>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreatePhoneNumber {
    /// International format (`+<country code><number>`).
    phone_number: String,
    label: Option<String>,
    nickname: Option<String>,
    /// `simulator` (the one provider of this version).
    provider: Option<String>,
    #[schema(value_type = Option<Object>)]
    provider_config: Option<Value>,
    /// ISO 3166 alpha-2 codes this number may call; default its own country.
    allowed_destination_countries: Option<Vec<String>>,
    /// Derived from the number; when sent it must agree.
    country_code: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdatePhoneNumber {
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    label: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    nickname: Option<Option<String>>,
    /// `active` or `inactive`.
    status: Option<String>,
    #[schema(value_type = Option<Object>)]
    provider_config: Option<Value>,
    allowed_destination_countries: Option<Vec<String>>,
}

/// Create an agent.
#[utoipa::path(post, path = "/agents", tag = "agents", request_body = CreateAgent,
    responses((status = 201, body = Agent), (status = "4XX", body = ErrorBody)))]
pub(super) async fn create_agent(
    State(state): State<AppState>,
    auth: Auth,
    Body(body): Body<CreateAgent>,
) -> ApiResult<(StatusCode, Json<Agent>)> {
    let agent = NewAgent {
        name: title(&body.name, "name")?,
        prompt: body.prompt,
        welcome_message: body.welcome_message,
        voice: body.voice,
        language: body.language,
    };
    Ok((
        StatusCode::CREATED,
        Json(state.store.create_agent(&auth.org, agent).await?),
    ))
}

/// List agents, newest first.
#[utoipa::path(get, path = "/agents", tag = "agents", params(("page" = Option<u64>, Query), ("limit" = Option<u64>, Query)),
    responses((status = 200, body = Paged<Agent>), (status = "4XX", body = ErrorBody)))]
pub(super) async fn list_agents(
    State(state): State<AppState>,
    auth: Auth,
    query: QueryMap,
) -> ApiResult<Json<Paged<Agent>>> {
    query.only(&PAGE_PARAMS)?;
    let page = query.page()?;
    Ok(page_json(state.store.list_agents(&auth.org, page).await?, page))
}

/// Get an agent.
#[utoipa::path(get, path = "/agents/{id}", tag = "agents", params(("id" = String, Path)),
    responses((status = 200, body = Agent), (status = "4XX", body = ErrorBody)))]
pub(super) async fn get_agent(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Agent>> {
    Ok(Json(state.store.get_agent(&auth.org, &id).await?))
}

/// Update an agent.
#[utoipa::path(patch, path = "/agents/{id}", tag = "agents", params(("id" = String, Path)), request_body = UpdateAgent,
    responses((status = 200, body = Agent), (status = "4XX", body = ErrorBody)))]
pub(super) async fn update_agent(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Body(body): Body<UpdateAgent>,
) -> ApiResult<Json<Agent>> {
    let patch = AgentPatch {
        name: body.name.map(|n| title(&n, "name")).transpose()?,
        prompt: body.prompt,
        welcome_message: body.welcome_message,
        voice: body.voice,
        language: body.language,
    };
    let empty = patch.name.is_none()
        && patch.prompt.is_none()
        && patch.welcome_message.is_none()
        && patch.voice.is_none()
        && patch.language.is_none();
    if empty {
        return Err(ApiError::validation("the body names no field to update"));
    }
    Ok(Json(state.store.update_agent(&auth.org, &id, patch).await?))
}

/// Delete an agent no live workflow uses.
#[utoipa::path(delete, path = "/agents/{id}", tag = "agents", params(("id" = String, Path)),
    responses((status = 200, body = MessageBody), (status = "4XX", body = ErrorBody)))]
pub(super) async fn delete_agent(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<MessageBody>> {
    state.store.delete_agent(&auth.org, &id).await?;
    Ok(MessageBody::json("Agent deleted."))
}

fn countries(codes: Option<Vec<String>>) -> ApiResult<Option<Vec<String>>> {
    let Some(codes) = codes else { return Ok(None) };
    let mut out = Vec::new();
    for code in codes {
        let code = parse_country(&code).ok_or_else(|| {
            ApiError::validation(format!(
                "allowed_destination_countries: {code:?} is not an ISO 3166 alpha-2 code"
            ))
        })?;
        if !out.contains(&code) {
            out.push(code);
        }
    }
    Ok(Some(out))
}

fn provider_config(config: Option<Value>) -> ApiResult<Option<Value>> {
    match config {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Object(_)) => Ok(Some(v)),
        Some(_) => Err(ApiError::validation("provider_config must be an object")),
    }
}

/// Add a phone number (caller ID).
#[utoipa::path(post, path = "/phone-numbers", tag = "phone numbers", request_body = CreatePhoneNumber,
    responses((status = 201, body = PhoneNumber), (status = "4XX", body = ErrorBody)))]
pub(super) async fn create_number(
    State(state): State<AppState>,
    auth: Auth,
    Body(body): Body<CreatePhoneNumber>,
) -> ApiResult<(StatusCode, Json<PhoneNumber>)> {
    let number = phone::normalize(&body.phone_number, None).ok_or_else(|| {
        ApiError::validation("phone_number must be a valid number in international format (+<country code><number>)")
    })?;
    if let Some(sent) = &body.country_code
        && number.country.as_deref() != Some(sent.trim().to_ascii_uppercase().as_str())
    {
        return Err(ApiError::validation(format!(
            "country_code {sent:?} does not match the number's country"
        )));
    }
    let provider = body.provider.unwrap_or_else(|| "simulator".into());
    if provider != "simulator" {
        return Err(ApiError::validation(format!(
            "provider {provider:?} is not available in this version (available: simulator)"
        )));
    }
    let own = number.country.clone();
    let new = NewPhoneNumber {
        phone_number: number.number,
        label: body.label,
        nickname: body.nickname,
        allowed_destination_countries: countries(body.allowed_destination_countries)?
            .unwrap_or_else(|| own.iter().cloned().collect()),
        country_code: own,
        provider,
        provider_config: provider_config(body.provider_config)?.unwrap_or_else(|| json!({})),
    };
    Ok((
        StatusCode::CREATED,
        Json(state.store.create_phone_number(&auth.org, new).await?),
    ))
}

/// Update a phone number.
#[utoipa::path(patch, path = "/phone-numbers/{id}", tag = "phone numbers", params(("id" = String, Path)),
    request_body = UpdatePhoneNumber, responses((status = 200, body = PhoneNumber), (status = "4XX", body = ErrorBody)))]
pub(super) async fn update_number(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Body(body): Body<UpdatePhoneNumber>,
) -> ApiResult<Json<PhoneNumber>> {
    if body.status.as_deref().is_some_and(|s| s != "active" && s != "inactive") {
        return Err(ApiError::validation("status must be active or inactive"));
    }
    let patch = PhoneNumberPatch {
        label: body.label,
        nickname: body.nickname,
        status: body.status,
        provider_config: provider_config(body.provider_config)?,
        allowed_destination_countries: countries(body.allowed_destination_countries)?,
    };
    let empty = patch.label.is_none()
        && patch.nickname.is_none()
        && patch.status.is_none()
        && patch.provider_config.is_none()
        && patch.allowed_destination_countries.is_none();
    if empty {
        return Err(ApiError::validation("the body names no field to update"));
    }
    Ok(Json(state.store.update_phone_number(&auth.org, &id, patch).await?))
}

/// Delete a phone number no live workflow calls from.
#[utoipa::path(delete, path = "/phone-numbers/{id}", tag = "phone numbers", params(("id" = String, Path)),
    responses((status = 200, body = MessageBody), (status = "4XX", body = ErrorBody)))]
pub(super) async fn delete_number(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<MessageBody>> {
    state.store.delete_phone_number(&auth.org, &id).await?;
    Ok(MessageBody::json("Phone number deleted."))
}

async fn numbers_page(state: AppState, auth: Auth, query: QueryMap) -> ApiResult<Json<Paged<PhoneNumber>>> {
    query.only(&[PAGE_PARAMS[0], PAGE_PARAMS[1], "status", "country_code"])?;
    let page = query.page()?;
    let country = query.get("country_code").map(|c| c.to_ascii_uppercase());
    let numbers = state
        .store
        .list_phone_numbers(&auth.org, query.get("status"), country.as_deref(), page)
        .await?;
    Ok(page_json(numbers, page))
}

/// List phone numbers, newest first.
#[utoipa::path(get, path = "/phone-numbers", tag = "phone numbers",
    params(("page" = Option<u64>, Query), ("limit" = Option<u64>, Query), ("status" = Option<String>, Query), ("country_code" = Option<String>, Query)),
    responses((status = 200, body = Paged<PhoneNumber>), (status = "4XX", body = ErrorBody)))]
pub(super) async fn list_numbers(
    State(state): State<AppState>,
    auth: Auth,
    query: QueryMap,
) -> ApiResult<Json<Paged<PhoneNumber>>> {
    numbers_page(state, auth, query).await
}

/// The reference's name for the phone number list.
#[utoipa::path(get, path = "/organization-phone-numbers", tag = "phone numbers",
    params(("page" = Option<u64>, Query), ("limit" = Option<u64>, Query), ("status" = Option<String>, Query), ("country_code" = Option<String>, Query)),
    responses((status = 200, body = Paged<PhoneNumber>), (status = "4XX", body = ErrorBody)))]
pub(super) async fn list_organization_numbers(
    State(state): State<AppState>,
    auth: Auth,
    query: QueryMap,
) -> ApiResult<Json<Paged<PhoneNumber>>> {
    numbers_page(state, auth, query).await
}

/// Get a phone number (secrets in `provider_config` are never shown).
#[utoipa::path(get, path = "/phone-numbers/{id}", tag = "phone numbers", params(("id" = String, Path)),
    responses((status = 200, body = PhoneNumber), (status = "4XX", body = ErrorBody)))]
pub(super) async fn get_number(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<PhoneNumber>> {
    Ok(Json(state.store.get_phone_number(&auth.org, &id).await?))
}

async fn calls_page(state: AppState, auth: Auth, query: QueryMap) -> ApiResult<Json<Paged<Call>>> {
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

/// List calls, newest first.
#[utoipa::path(get, path = "/calls", tag = "calls",
    params(("page" = Option<u64>, Query), ("limit" = Option<u64>, Query), ("workflow_id" = Option<String>, Query),
           ("workflow_lead_id" = Option<String>, Query), ("agent_id" = Option<String>, Query), ("status" = Option<String>, Query),
           ("from" = Option<String>, Query, description = "created at or after (RFC 3339)"),
           ("to" = Option<String>, Query, description = "created at or before (RFC 3339)")),
    responses((status = 200, body = Paged<Call>), (status = "4XX", body = ErrorBody)))]
pub(super) async fn list_calls(
    State(state): State<AppState>,
    auth: Auth,
    query: QueryMap,
) -> ApiResult<Json<Paged<Call>>> {
    calls_page(state, auth, query).await
}

/// The reference's name for the call list.
#[utoipa::path(get, path = "/call-logs", tag = "calls",
    params(("page" = Option<u64>, Query), ("limit" = Option<u64>, Query), ("workflow_id" = Option<String>, Query),
           ("workflow_lead_id" = Option<String>, Query), ("agent_id" = Option<String>, Query), ("status" = Option<String>, Query),
           ("from" = Option<String>, Query), ("to" = Option<String>, Query)),
    responses((status = 200, body = Paged<Call>), (status = "4XX", body = ErrorBody)))]
pub(super) async fn list_call_logs(
    State(state): State<AppState>,
    auth: Auth,
    query: QueryMap,
) -> ApiResult<Json<Paged<Call>>> {
    calls_page(state, auth, query).await
}

/// Get a call.
#[utoipa::path(get, path = "/calls/{id}", tag = "calls", params(("id" = String, Path)),
    responses((status = 200, body = Call), (status = "4XX", body = ErrorBody)))]
pub(super) async fn get_call(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Call>> {
    Ok(Json(state.store.get_call(&auth.org, &id).await?))
}

/// Get a call (the reference's path).
#[utoipa::path(get, path = "/call-logs/{id}", tag = "calls", params(("id" = String, Path)),
    responses((status = 200, body = Call), (status = "4XX", body = ErrorBody)))]
pub(super) async fn get_call_log(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Call>> {
    Ok(Json(state.store.get_call(&auth.org, &id).await?))
}
