//! Workflows: CRUD, duplicate, validate and the lifecycle actions (API.md section 2).

use crate::docs::{ErrorBody, MessageBody, Paged};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, Body, PAGE_PARAMS, QueryMap, nullable};
use crate::{AppState, page_json};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::Value;
use switchboard_domain::graph::Report;
use switchboard_domain::model::WorkflowStatus;
use switchboard_domain::settings::WorkflowSettings;
use switchboard_store::activation::activation_report;
use switchboard_store::records::Workflow;
use switchboard_store::{Lifecycle, NewWorkflow, WorkflowFilter, WorkflowPatch};
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateWorkflow {
    /// 1–255 characters. `name` is the same field: send either (or both, equal).
    title: Option<String>,
    name: Option<String>,
    description: Option<String>,
    /// Any keys of the workflow settings; the others take their defaults.
    #[schema(value_type = Option<Object>)]
    settings: Option<Value>,
    /// Only `draft`: activation is a separate call.
    status: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateWorkflow {
    title: Option<String>,
    name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    description: Option<Option<String>>,
    /// Settings keys to change; the others keep their values.
    #[schema(value_type = Option<Object>)]
    settings: Option<Value>,
    /// A node of this workflow, or null for "the one node without incoming edges".
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    entry_node_id: Option<Option<String>>,
    /// Refused (409 `status_not_patchable`): use the lifecycle actions.
    #[schema(value_type = Option<String>)]
    status: Option<Value>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DuplicateWorkflow {
    /// Title of the copy (default: the original's plus " (Copy)").
    title: Option<String>,
    name: Option<String>,
}

/// `title` and `name` are one value; either may be sent, both only when equal.
fn title_of(title: Option<String>, name: Option<String>) -> ApiResult<Option<String>> {
    match (title, name) {
        (Some(t), Some(n)) if t.trim() != n.trim() => Err(ApiError::validation(
            "title and name are the same field; send one, or both equal",
        )),
        (Some(t), _) | (None, Some(t)) => Ok(Some(crate::extract::title(&t, "title")?)),
        (None, None) => Ok(None),
    }
}

/// Create a draft workflow.
#[utoipa::path(post, path = "/workflows", tag = "workflows", request_body = CreateWorkflow,
    responses((status = 201, body = Workflow), (status = "4XX", body = ErrorBody)))]
pub(super) async fn create(
    State(state): State<AppState>,
    auth: Auth,
    Body(body): Body<CreateWorkflow>,
) -> ApiResult<(StatusCode, Json<Workflow>)> {
    if body.status.as_deref().is_some_and(|s| s != "draft") {
        return Err(ApiError::bad_request(
            "activate_separately",
            "workflows are created as draft; activate with POST /v1/workflows/{id}/activate",
        ));
    }
    let title = title_of(body.title, body.name)?.ok_or_else(|| ApiError::validation("title (or name) is required"))?;
    let settings = match &body.settings {
        None | Some(Value::Null) => WorkflowSettings::default(),
        Some(patch) => WorkflowSettings::default().merged(patch)?,
    };
    let new = NewWorkflow {
        title,
        description: body.description,
        settings,
    };
    Ok((
        StatusCode::CREATED,
        Json(state.store.create_workflow(&auth.org, new).await?),
    ))
}

/// List workflows, newest first.
#[utoipa::path(get, path = "/workflows", tag = "workflows",
    params(("page" = Option<u64>, Query), ("limit" = Option<u64>, Query),
           ("status" = Option<String>, Query, description = "draft, active (or running), paused, completed, cancelled"),
           ("search" = Option<String>, Query, description = "case-insensitive substring of the title")),
    responses((status = 200, body = Paged<Workflow>), (status = "4XX", body = ErrorBody)))]
pub(super) async fn list(
    State(state): State<AppState>,
    auth: Auth,
    query: QueryMap,
) -> ApiResult<Json<Paged<Workflow>>> {
    query.only(&[PAGE_PARAMS[0], PAGE_PARAMS[1], "status", "search"])?;
    let page = query.page()?;
    let status = query
        .get("status")
        .map(|s| {
            WorkflowStatus::parse_filter(s).ok_or_else(|| {
                ApiError::validation(format!(
                    "status must be one of: {} (or running)",
                    WorkflowStatus::names()
                ))
            })
        })
        .transpose()?;
    let filter = WorkflowFilter {
        status,
        search: query.get("search").map(String::from),
    };
    Ok(page_json(
        state.store.list_workflows(&auth.org, &filter, page).await?,
        page,
    ))
}

/// Get a workflow with its counts.
#[utoipa::path(get, path = "/workflows/{id}", tag = "workflows", params(("id" = String, Path)),
    responses((status = 200, body = Workflow), (status = "4XX", body = ErrorBody)))]
pub(super) async fn get(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Workflow>> {
    Ok(Json(state.store.get_workflow(&auth.org, &id).await?))
}

/// Update title, description, settings (merged key by key) or entry node.
#[utoipa::path(patch, path = "/workflows/{id}", tag = "workflows", params(("id" = String, Path)), request_body = UpdateWorkflow,
    responses((status = 200, body = Workflow), (status = "4XX", body = ErrorBody)))]
pub(super) async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Body(body): Body<UpdateWorkflow>,
) -> ApiResult<Json<Workflow>> {
    if body.status.is_some() {
        return Err(ApiError::conflict(
            "status_not_patchable",
            "status changes only through activate, pause, resume and cancel",
        ));
    }
    let settings = match body.settings {
        None => None,
        Some(v @ Value::Object(_)) => Some(v),
        Some(_) => return Err(ApiError::validation("settings must be an object")),
    };
    let patch = WorkflowPatch {
        title: title_of(body.title, body.name)?,
        description: body.description,
        settings,
        entry_node_id: body.entry_node_id,
    };
    if patch.title.is_none() && patch.description.is_none() && patch.settings.is_none() && patch.entry_node_id.is_none()
    {
        return Err(ApiError::validation("the body names no field to update"));
    }
    let workflow = state.store.update_workflow(&auth.org, &id, patch).await?;
    state.waker.wake();
    Ok(Json(workflow))
}

/// Delete a workflow that is not active or paused, with its leads and history (call logs stay).
#[utoipa::path(delete, path = "/workflows/{id}", tag = "workflows", params(("id" = String, Path)),
    responses((status = 200, body = MessageBody), (status = "4XX", body = ErrorBody)))]
pub(super) async fn delete(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<MessageBody>> {
    state.store.delete_workflow(&auth.org, &id).await?;
    Ok(MessageBody::json("Workflow deleted."))
}

/// Copy a workflow's definition as a new draft.
#[utoipa::path(post, path = "/workflows/{id}/duplicate", tag = "workflows", params(("id" = String, Path)),
    request_body(content = Option<DuplicateWorkflow>),
    responses((status = 201, body = Workflow), (status = "4XX", body = ErrorBody)))]
pub(super) async fn duplicate(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Body(body): Body<DuplicateWorkflow>,
) -> ApiResult<(StatusCode, Json<Workflow>)> {
    let copy = state
        .store
        .duplicate_workflow(&auth.org, &id, title_of(body.title, body.name)?)
        .await?;
    Ok((StatusCode::CREATED, Json(copy)))
}

/// Run the activation checks without changing anything.
#[utoipa::path(post, path = "/workflows/{id}/validate", tag = "workflows", params(("id" = String, Path)),
    responses((status = 200, body = Report), (status = "4XX", body = ErrorBody)))]
pub(super) async fn validate(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Report>> {
    let (snapshot, agents, keys) = state.store.workflow_snapshot(&auth.org, &id).await?;
    let has_leads = state.store.get_workflow(&auth.org, &id).await?.enrolled_leads > 0;
    Ok(Json(activation_report(&snapshot, &agents, &keys, has_leads)))
}

async fn lifecycle(state: AppState, auth: Auth, id: String, action: Lifecycle) -> ApiResult<Json<Workflow>> {
    let workflow = state.store.transition_workflow(&auth.org, &id, action).await?;
    state.waker.wake();
    Ok(Json(workflow))
}

/// draft → active, after the activation checks; pending leads start at the entry node.
#[utoipa::path(post, path = "/workflows/{id}/activate", tag = "workflows", params(("id" = String, Path)),
    responses((status = 200, body = Workflow), (status = "4XX", body = ErrorBody)))]
pub(super) async fn activate(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Workflow>> {
    lifecycle(state, auth, id, Lifecycle::Activate).await
}

/// active → paused: no new step starts; running steps finish.
#[utoipa::path(post, path = "/workflows/{id}/pause", tag = "workflows", params(("id" = String, Path)),
    responses((status = 200, body = Workflow), (status = "4XX", body = ErrorBody)))]
pub(super) async fn pause(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Workflow>> {
    lifecycle(state, auth, id, Lifecycle::Pause).await
}

/// paused → active.
#[utoipa::path(post, path = "/workflows/{id}/resume", tag = "workflows", params(("id" = String, Path)),
    responses((status = 200, body = Workflow), (status = "4XX", body = ErrorBody)))]
pub(super) async fn resume(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Workflow>> {
    lifecycle(state, auth, id, Lifecycle::Resume).await
}

/// draft, active or paused → cancelled (final); leads not final become removed.
#[utoipa::path(post, path = "/workflows/{id}/cancel", tag = "workflows", params(("id" = String, Path)),
    responses((status = 200, body = Workflow), (status = "4XX", body = ErrorBody)))]
pub(super) async fn cancel(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Workflow>> {
    lifecycle(state, auth, id, Lifecycle::Cancel).await
}
