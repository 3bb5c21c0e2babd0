//! `/v1` routes, one module per resource.

mod directory;
mod graph;
mod leads;

pub(crate) use leads::UPLOAD_LIMIT;
mod workflows;

use crate::AppState;
use axum::Router;
use axum::routing::{get, post};

pub(crate) fn v1() -> Router<AppState> {
    Router::new()
        .route("/workflows", get(workflows::list).post(workflows::create))
        .route(
            "/workflows/{id}",
            get(workflows::get).patch(workflows::update).delete(workflows::delete),
        )
        .route("/workflows/{id}/duplicate", post(workflows::duplicate))
        .route("/workflows/{id}/validate", post(workflows::validate))
        .route("/workflows/{id}/activate", post(workflows::activate))
        .route("/workflows/{id}/pause", post(workflows::pause))
        .route("/workflows/{id}/resume", post(workflows::resume))
        .route("/workflows/{id}/cancel", post(workflows::cancel))
        .route("/workflows/{id}/nodes", get(graph::list_nodes).post(graph::create_node))
        .route(
            "/workflows/{id}/nodes/{node_id}",
            get(graph::get_node)
                .patch(graph::update_node)
                .delete(graph::delete_node),
        )
        .route("/workflows/{id}/edges", get(graph::list_edges).post(graph::create_edge))
        .route(
            "/workflows/{id}/edges/{edge_id}",
            axum::routing::delete(graph::delete_edge),
        )
        .route(
            "/workflows/{id}/leads",
            get(leads::list)
                .post(leads::enrol)
                .layer(axum::extract::DefaultBodyLimit::max(leads::UPLOAD_LIMIT)),
        )
        .route("/workflows/{id}/leads/variable-keys", get(leads::variable_keys))
        .route("/workflows/{id}/leads/{lead_id}", get(leads::get).delete(leads::remove))
        .route("/workflows/{id}/leads/{lead_id}/history", get(leads::history))
        .route("/agents", get(directory::list_agents).post(directory::create_agent))
        .route(
            "/agents/{id}",
            get(directory::get_agent)
                .patch(directory::update_agent)
                .delete(directory::delete_agent),
        )
        .route(
            "/phone-numbers",
            get(directory::list_numbers).post(directory::create_number),
        )
        .route(
            "/phone-numbers/{id}",
            get(directory::get_number)
                .patch(directory::update_number)
                .delete(directory::delete_number),
        )
        .route("/organization-phone-numbers", get(directory::list_numbers))
        .route("/calls", get(directory::list_calls))
        .route("/calls/{id}", get(directory::get_call))
        .route("/call-logs", get(directory::list_calls))
        .route("/call-logs/{id}", get(directory::get_call))
}
