//! Nodes and edges of a workflow (API.md sections 3 and 4).

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, Fields, JsonObject, QueryMap};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};
use switchboard_domain::config::NodeConfig;
use switchboard_domain::model::NodeType;
use switchboard_store::records::{Edge, Node};
use switchboard_store::{NewEdge, NewNode, NodeLeads, NodePatch};

const MAX_LABEL_CHARS: usize = 255;

fn label(fields: &Fields) -> ApiResult<Option<String>> {
    let label = fields.string("label")?;
    if label.as_ref().is_some_and(|l| l.chars().count() > MAX_LABEL_CHARS) {
        return Err(ApiError::validation(format!(
            "label is at most {MAX_LABEL_CHARS} characters"
        )));
    }
    Ok(label)
}

fn node_type(value: &Value) -> ApiResult<NodeType> {
    value.as_str().and_then(NodeType::parse).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_node_type",
            format!("node_type must be one of: {}", NodeType::names()),
        )
    })
}

fn config(node_type: NodeType, fields: &Fields) -> ApiResult<Option<Value>> {
    match fields.get("config") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(json!({}))),
        Some(value) => {
            NodeConfig::parse(node_type, value)?;
            Ok(Some(value.clone()))
        }
    }
}

pub(super) async fn create_node(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonObject(body): JsonObject,
) -> ApiResult<(StatusCode, Json<Node>)> {
    let fields = Fields(body);
    fields.only(&["node_type", "label", "position_x", "position_y", "config"])?;
    let node_type = node_type(
        fields
            .get("node_type")
            .ok_or_else(|| ApiError::validation("node_type is required"))?,
    )?;
    let config = match config(node_type, &fields)? {
        Some(config) => config,
        None => {
            NodeConfig::parse(node_type, &json!({}))?;
            json!({})
        }
    };
    let node = NewNode {
        node_type,
        label: label(&fields)?.unwrap_or_default(),
        position_x: fields.number("position_x")?.unwrap_or(0.0),
        position_y: fields.number("position_y")?.unwrap_or(0.0),
        config,
    };
    let created = state.store.create_node(&auth.org, &id, node).await?;
    state.waker.wake();
    Ok((StatusCode::CREATED, Json(created)))
}

pub(super) async fn list_nodes(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(json!({"data": state.store.list_nodes(&auth.org, &id).await?})))
}

pub(super) async fn get_node(
    State(state): State<AppState>,
    auth: Auth,
    Path((id, node_id)): Path<(String, String)>,
) -> ApiResult<Json<Node>> {
    Ok(Json(state.store.get_node(&auth.org, &id, &node_id).await?))
}

pub(super) async fn update_node(
    State(state): State<AppState>,
    auth: Auth,
    Path((id, node_id)): Path<(String, String)>,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<Node>> {
    let fields = Fields(body);
    let current = state.store.get_node(&auth.org, &id, &node_id).await?;
    if let Some(requested) = fields.get("node_type")
        && requested.as_str() != Some(current.node_type.as_str())
    {
        return Err(ApiError::bad_request(
            "node_type_immutable",
            "node_type cannot change; delete the node and add a new one",
        ));
    }
    fields.only(&["node_type", "label", "position_x", "position_y", "config"])?;
    if fields.0.is_empty() {
        return Err(ApiError::validation("the body names no field to update"));
    }
    let patch = NodePatch {
        label: label(&fields)?,
        position_x: fields.number("position_x")?,
        position_y: fields.number("position_y")?,
        config: config(current.node_type, &fields)?,
    };
    let updated = state.store.update_node(&auth.org, &id, &node_id, patch).await?;
    state.waker.wake();
    Ok(Json(updated))
}

pub(super) async fn delete_node(
    State(state): State<AppState>,
    auth: Auth,
    Path((id, node_id)): Path<(String, String)>,
    query: QueryMap,
) -> ApiResult<Json<Value>> {
    query.only(&["reassign_to", "remove_leads"])?;
    let leads = match (query.get("reassign_to"), query.flag("remove_leads")?) {
        (Some(_), true) => {
            return Err(ApiError::validation("pass reassign_to or remove_leads, not both"));
        }
        (Some(target), false) => NodeLeads::ReassignTo(target.to_string()),
        (None, true) => NodeLeads::Remove,
        (None, false) => NodeLeads::Refuse,
    };
    state.store.delete_node(&auth.org, &id, &node_id, leads).await?;
    state.waker.wake();
    Ok(Json(json!({"message": "Node deleted."})))
}

pub(super) async fn create_edge(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonObject(body): JsonObject,
) -> ApiResult<(StatusCode, Json<Edge>)> {
    let fields = Fields(body);
    fields.only(&["from_node_id", "to_node_id", "label"])?;
    let required = |key: &str| -> ApiResult<String> {
        fields
            .string(key)?
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ApiError::validation(format!("{key} is required")))
    };
    let edge = NewEdge {
        from_node_id: required("from_node_id")?,
        to_node_id: required("to_node_id")?,
        label: label(&fields)?,
    };
    let created = state.store.create_edge(&auth.org, &id, edge).await?;
    state.waker.wake();
    Ok((StatusCode::CREATED, Json(created)))
}

pub(super) async fn list_edges(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(json!({"data": state.store.list_edges(&auth.org, &id).await?})))
}

pub(super) async fn delete_edge(
    State(state): State<AppState>,
    auth: Auth,
    Path((id, edge_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    state.store.delete_edge(&auth.org, &id, &edge_id).await?;
    Ok(Json(json!({"message": "Edge deleted."})))
}
