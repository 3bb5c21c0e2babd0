//! Workflows: CRUD, duplicate, validate and the lifecycle actions (API.md section 2).

use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, Fields, JsonObject, PAGE_PARAMS, QueryMap};
use crate::{AppState, page_json};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};
use switchboard_domain::model::WorkflowStatus;
use switchboard_domain::settings::WorkflowSettings;
use switchboard_store::activation::activation_report;
use switchboard_store::records::Workflow;
use switchboard_store::{Lifecycle, NewWorkflow, WorkflowFilter, WorkflowPatch};

/// `title` and `name` are one value; either may be sent, both only when equal.
fn title_of(fields: &Fields) -> ApiResult<Option<String>> {
    let title = fields.string("title")?;
    let name = fields.string("name")?;
    match (title, name) {
        (Some(t), Some(n)) if t.trim() != n.trim() => Err(ApiError::validation(
            "title and name are the same field; send one, or both equal",
        )),
        (Some(t), _) | (None, Some(t)) => Ok(Some(crate::extract::title(&t, "title")?)),
        (None, None) => Ok(None),
    }
}

pub(super) async fn create(
    State(state): State<AppState>,
    auth: Auth,
    JsonObject(body): JsonObject,
) -> ApiResult<(StatusCode, Json<Workflow>)> {
    let fields = Fields(body);
    fields.only(&["title", "name", "description", "settings", "status"])?;
    if let Some(status) = fields.get("status")
        && status.as_str() != Some("draft")
    {
        return Err(ApiError::bad_request(
            "activate_separately",
            "workflows are created as draft; activate with POST /v1/workflows/{id}/activate",
        ));
    }
    let title = title_of(&fields)?.ok_or_else(|| ApiError::validation("title (or name) is required"))?;
    let settings = match fields.get("settings") {
        None | Some(Value::Null) => WorkflowSettings::default(),
        Some(patch) => WorkflowSettings::default().merged(patch)?,
    };
    let workflow = state
        .store
        .create_workflow(
            &auth.org,
            NewWorkflow {
                title,
                description: fields.string("description")?,
                settings,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(workflow)))
}

pub(super) async fn list(State(state): State<AppState>, auth: Auth, query: QueryMap) -> ApiResult<Json<Value>> {
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

pub(super) async fn get(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Workflow>> {
    Ok(Json(state.store.get_workflow(&auth.org, &id).await?))
}

pub(super) async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<Workflow>> {
    let fields = Fields(body);
    if fields.has("status") {
        return Err(ApiError::conflict(
            "status_not_patchable",
            "status changes only through activate, pause, resume and cancel",
        ));
    }
    fields.only(&["title", "name", "description", "settings", "entry_node_id"])?;
    if fields.0.is_empty() {
        return Err(ApiError::validation("the body names no field to update"));
    }
    let settings = match fields.get("settings") {
        None => None,
        Some(v @ Value::Object(_)) => Some(v.clone()),
        Some(_) => return Err(ApiError::validation("settings must be an object")),
    };
    let patch = WorkflowPatch {
        title: title_of(&fields)?,
        description: fields.nullable_string("description")?,
        settings,
        entry_node_id: fields.nullable_string("entry_node_id")?,
    };
    let workflow = state.store.update_workflow(&auth.org, &id, patch).await?;
    state.waker.wake();
    Ok(Json(workflow))
}

pub(super) async fn delete(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    state.store.delete_workflow(&auth.org, &id).await?;
    Ok(Json(json!({"message": "Workflow deleted."})))
}

pub(super) async fn duplicate(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonObject(body): JsonObject,
) -> ApiResult<(StatusCode, Json<Workflow>)> {
    let fields = Fields(body);
    fields.only(&["title", "name"])?;
    let copy = state
        .store
        .duplicate_workflow(&auth.org, &id, title_of(&fields)?)
        .await?;
    Ok((StatusCode::CREATED, Json(copy)))
}

pub(super) async fn validate(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let (snapshot, agents, keys) = state.store.workflow_snapshot(&auth.org, &id).await?;
    let has_leads = state.store.get_workflow(&auth.org, &id).await?.enrolled_leads > 0;
    let report = activation_report(&snapshot, &agents, &keys, has_leads);
    Ok(Json(
        json!({"valid": report.valid, "errors": report.errors, "warnings": report.warnings}),
    ))
}

async fn lifecycle(state: AppState, auth: Auth, id: String, action: Lifecycle) -> ApiResult<Json<Workflow>> {
    let workflow = state.store.transition_workflow(&auth.org, &id, action).await?;
    state.waker.wake();
    Ok(Json(workflow))
}

pub(super) async fn activate(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Workflow>> {
    lifecycle(state, auth, id, Lifecycle::Activate).await
}

pub(super) async fn pause(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Workflow>> {
    lifecycle(state, auth, id, Lifecycle::Pause).await
}

pub(super) async fn resume(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Workflow>> {
    lifecycle(state, auth, id, Lifecycle::Resume).await
}

pub(super) async fn cancel(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Workflow>> {
    lifecycle(state, auth, id, Lifecycle::Cancel).await
}
