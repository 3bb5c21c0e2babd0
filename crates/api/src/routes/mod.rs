//! `/v1` routes, one module per resource. Each handler's `#[utoipa::path]` is both its route and its
//! entry in the OpenAPI document, so the two cannot drift.

mod directory;
mod graph;
mod leads;
mod workflows;

pub(crate) use leads::UPLOAD_LIMIT;

use crate::AppState;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::router::UtoipaMethodRouterExt;
use utoipa_axum::routes;

pub(crate) fn v1() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(workflows::list, workflows::create))
        .routes(routes!(workflows::get, workflows::update, workflows::delete))
        .routes(routes!(workflows::duplicate))
        .routes(routes!(workflows::validate))
        .routes(routes!(workflows::activate))
        .routes(routes!(workflows::pause))
        .routes(routes!(workflows::resume))
        .routes(routes!(workflows::cancel))
        .routes(routes!(graph::list_nodes, graph::create_node))
        .routes(routes!(graph::get_node, graph::update_node, graph::delete_node))
        .routes(routes!(graph::list_edges, graph::create_edge))
        .routes(routes!(graph::delete_edge))
        .routes(routes!(leads::list, leads::enrol).layer(axum::extract::DefaultBodyLimit::max(UPLOAD_LIMIT)))
        .routes(routes!(leads::variable_keys))
        .routes(routes!(leads::get, leads::remove))
        .routes(routes!(leads::history))
        .routes(routes!(directory::list_agents, directory::create_agent))
        .routes(routes!(
            directory::get_agent,
            directory::update_agent,
            directory::delete_agent
        ))
        .routes(routes!(directory::list_numbers, directory::create_number))
        .routes(routes!(
            directory::get_number,
            directory::update_number,
            directory::delete_number
        ))
        .routes(routes!(directory::list_organization_numbers))
        .routes(routes!(directory::list_calls))
        .routes(routes!(directory::get_call))
        .routes(routes!(directory::list_call_logs))
        .routes(routes!(directory::get_call_log))
}
