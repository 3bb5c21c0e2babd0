//! Nodes and edges of a workflow (API.md sections 3 and 4).

use crate::AppState;
use crate::docs::{ErrorBody, List, MessageBody};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, Body, QueryMap};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use switchboard_domain::config::NodeConfig;
use switchboard_domain::model::NodeType;
use switchboard_store::records::{Edge, Node};
use switchboard_store::{NewEdge, NewNode, NodeLeads, NodePatch};
use utoipa::ToSchema;

const MAX_LABEL_CHARS: usize = 255;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateNode {
    /// VOICE_CALL, TIME, CONDITIONAL, APPLICATION, CONVERTED or DROPPED.
    node_type: String,
    label: Option<String>,
    position_x: Option<f64>,
    position_y: Option<f64>,
    /// The type's config (API.md section 3); default `{}`.
    #[schema(value_type = Option<Object>)]
    config: Option<Value>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateNode {
    /// Only the node's current type is accepted.
    node_type: Option<String>,
    label: Option<String>,
    position_x: Option<f64>,
    position_y: Option<f64>,
    /// Replaces the config whole.
    #[schema(value_type = Option<Object>)]
    config: Option<Value>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateEdge {
    from_node_id: String,
    to_node_id: String,
    /// The outcome this edge takes; empty or absent is the default edge.
    label: Option<String>,
}

fn label(label: Option<String>) -> ApiResult<Option<String>> {
    if label.as_ref().is_some_and(|l| l.chars().count() > MAX_LABEL_CHARS) {
        return Err(ApiError::validation(format!(
            "label is at most {MAX_LABEL_CHARS} characters"
        )));
    }
    Ok(label)
}

fn node_type(value: &str) -> ApiResult<NodeType> {
    NodeType::parse(value).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_node_type",
            format!("node_type must be one of: {}", NodeType::names()),
        )
    })
}

/// Checks `config` against the type's schema; null reads as `{}`.
fn config(node_type: NodeType, config: Option<Value>) -> ApiResult<Option<Value>> {
    let config = config.map(|c| if c.is_null() { json!({}) } else { c });
    if let Some(config) = &config {
        NodeConfig::parse(node_type, config)?;
    }
    Ok(config)
}

/// Add a node.
#[utoipa::path(post, path = "/workflows/{id}/nodes", tag = "nodes", params(("id" = String, Path)), request_body = CreateNode,
    responses((status = 201, body = Node), (status = "4XX", body = ErrorBody)))]
pub(super) async fn create_node(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Body(body): Body<CreateNode>,
) -> ApiResult<(StatusCode, Json<Node>)> {
    let node_type = node_type(&body.node_type)?;
    let config = config(node_type, Some(body.config.unwrap_or_else(|| json!({}))))?.unwrap_or_default();
    let node = NewNode {
        node_type,
        label: label(body.label)?.unwrap_or_default(),
        position_x: body.position_x.unwrap_or(0.0),
        position_y: body.position_y.unwrap_or(0.0),
        config,
    };
    let created = state.store.create_node(&auth.org, &id, node).await?;
    state.waker.wake();
    Ok((StatusCode::CREATED, Json(created)))
}

/// List nodes in creation order.
#[utoipa::path(get, path = "/workflows/{id}/nodes", tag = "nodes", params(("id" = String, Path)),
    responses((status = 200, body = List<Node>), (status = "4XX", body = ErrorBody)))]
pub(super) async fn list_nodes(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<List<Node>>> {
    Ok(Json(List {
        data: state.store.list_nodes(&auth.org, &id).await?,
    }))
}

/// Get a node.
#[utoipa::path(get, path = "/workflows/{id}/nodes/{node_id}", tag = "nodes",
    params(("id" = String, Path), ("node_id" = String, Path)),
    responses((status = 200, body = Node), (status = "4XX", body = ErrorBody)))]
pub(super) async fn get_node(
    State(state): State<AppState>,
    auth: Auth,
    Path((id, node_id)): Path<(String, String)>,
) -> ApiResult<Json<Node>> {
    Ok(Json(state.store.get_node(&auth.org, &id, &node_id).await?))
}

/// Update a node's label, position or config (node_type is immutable).
#[utoipa::path(patch, path = "/workflows/{id}/nodes/{node_id}", tag = "nodes",
    params(("id" = String, Path), ("node_id" = String, Path)), request_body = UpdateNode,
    responses((status = 200, body = Node), (status = "4XX", body = ErrorBody)))]
pub(super) async fn update_node(
    State(state): State<AppState>,
    auth: Auth,
    Path((id, node_id)): Path<(String, String)>,
    Body(body): Body<UpdateNode>,
) -> ApiResult<Json<Node>> {
    let current = state.store.get_node(&auth.org, &id, &node_id).await?;
    if body
        .node_type
        .as_deref()
        .is_some_and(|t| t != current.node_type.as_str())
    {
        return Err(ApiError::bad_request(
            "node_type_immutable",
            "node_type cannot change; delete the node and add a new one",
        ));
    }
    let patch = NodePatch {
        label: label(body.label)?,
        position_x: body.position_x,
        position_y: body.position_y,
        config: config(current.node_type, body.config)?,
    };
    if patch.label.is_none() && patch.position_x.is_none() && patch.position_y.is_none() && patch.config.is_none() {
        return Err(ApiError::validation("the body names no field to update"));
    }
    let updated = state.store.update_node(&auth.org, &id, &node_id, patch).await?;
    state.waker.wake();
    Ok(Json(updated))
}

/// Delete a node and its edges; leads standing on it need `reassign_to` or `remove_leads=true`.
#[utoipa::path(delete, path = "/workflows/{id}/nodes/{node_id}", tag = "nodes",
    params(("id" = String, Path), ("node_id" = String, Path),
           ("reassign_to" = Option<String>, Query, description = "move the node's leads to this node"),
           ("remove_leads" = Option<bool>, Query, description = "remove the node's leads")),
    responses((status = 200, body = MessageBody), (status = "4XX", body = ErrorBody)))]
pub(super) async fn delete_node(
    State(state): State<AppState>,
    auth: Auth,
    Path((id, node_id)): Path<(String, String)>,
    query: QueryMap,
) -> ApiResult<Json<MessageBody>> {
    query.only(&["reassign_to", "remove_leads"])?;
    let leads = match (query.get("reassign_to"), query.flag("remove_leads")?) {
        (Some(_), true) => return Err(ApiError::validation("pass reassign_to or remove_leads, not both")),
        (Some(target), false) => NodeLeads::ReassignTo(target.to_string()),
        (None, true) => NodeLeads::Remove,
        (None, false) => NodeLeads::Refuse,
    };
    state.store.delete_node(&auth.org, &id, &node_id, leads).await?;
    state.waker.wake();
    Ok(MessageBody::json("Node deleted."))
}

/// Add an edge.
#[utoipa::path(post, path = "/workflows/{id}/edges", tag = "edges", params(("id" = String, Path)), request_body = CreateEdge,
    responses((status = 201, body = Edge), (status = "4XX", body = ErrorBody)))]
pub(super) async fn create_edge(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Body(body): Body<CreateEdge>,
) -> ApiResult<(StatusCode, Json<Edge>)> {
    let required = |key: &str, value: String| -> ApiResult<String> {
        Some(value.trim().to_string())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ApiError::validation(format!("{key} is required")))
    };
    let edge = NewEdge {
        from_node_id: required("from_node_id", body.from_node_id)?,
        to_node_id: required("to_node_id", body.to_node_id)?,
        label: label(body.label)?,
    };
    let created = state.store.create_edge(&auth.org, &id, edge).await?;
    state.waker.wake();
    Ok((StatusCode::CREATED, Json(created)))
}

/// List edges in creation order.
#[utoipa::path(get, path = "/workflows/{id}/edges", tag = "edges", params(("id" = String, Path)),
    responses((status = 200, body = List<Edge>), (status = "4XX", body = ErrorBody)))]
pub(super) async fn list_edges(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<List<Edge>>> {
    Ok(Json(List {
        data: state.store.list_edges(&auth.org, &id).await?,
    }))
}

/// Delete an edge.
#[utoipa::path(delete, path = "/workflows/{id}/edges/{edge_id}", tag = "edges",
    params(("id" = String, Path), ("edge_id" = String, Path)),
    responses((status = 200, body = MessageBody), (status = "4XX", body = ErrorBody)))]
pub(super) async fn delete_edge(
    State(state): State<AppState>,
    auth: Auth,
    Path((id, edge_id)): Path<(String, String)>,
) -> ApiResult<Json<MessageBody>> {
    state.store.delete_edge(&auth.org, &id, &edge_id).await?;
    Ok(MessageBody::json("Edge deleted."))
}
