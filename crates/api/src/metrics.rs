//! `/metrics`: Prometheus text. Counters and histograms come from the `metrics` facade (engine and API);
//! lead and call gauges are read from the database at scrape time, so they are always exact.

use crate::AppState;
use crate::error::ApiResult;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::fmt::Write;
use std::sync::OnceLock;

const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Installs the process-wide recorder once and returns its handle.
pub fn recorder() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets(LATENCY_BUCKETS)
                .ok()
                .and_then(|b| b.install_recorder().ok())
        })
        .as_ref()
}

/// Prometheus metrics (no auth: bind the server privately).
#[utoipa::path(get, path = "/metrics", tag = "operations", security(()),
    responses((status = 200, content_type = "text/plain", body = String)))]
pub(crate) async fn metrics(State(state): State<AppState>) -> ApiResult<impl IntoResponse> {
    let counts = state.store.operational_counts().await?;
    let mut text = recorder().map(PrometheusHandle::render).unwrap_or_default();
    text.push_str("# HELP switchboard_leads Leads by status.\n# TYPE switchboard_leads gauge\n");
    for (status, n) in &counts.leads_by_status {
        let _ = writeln!(text, "switchboard_leads{{status=\"{status}\"}} {n}");
    }
    text.push_str("# HELP switchboard_calls_in_flight Calls placed and not yet ended.\n");
    text.push_str("# TYPE switchboard_calls_in_flight gauge\n");
    let _ = writeln!(text, "switchboard_calls_in_flight {}", counts.calls_in_flight);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text))
}
