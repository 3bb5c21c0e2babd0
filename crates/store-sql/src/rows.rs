//! Row → record mapping and small SQL helpers.

use serde_json::{Map, Value};
use sqlx::Row;
use sqlx::any::AnyRow;
use switchboard_domain::model::{CallOutcome, CallStatus, LeadState, LeadStatus, NodeType, StepStatus, WorkflowStatus};
use switchboard_domain::settings::WorkflowSettings;
use switchboard_store::engine::LeadRow;
use switchboard_store::records::*;
use switchboard_store::{StoreError, StoreResult};

pub(crate) trait Db<T> {
    fn db(self) -> StoreResult<T>;
}

impl<T> Db<T> for Result<T, sqlx::Error> {
    fn db(self) -> StoreResult<T> {
        self.map_err(|e| StoreError::Backend(e.to_string()))
    }
}

pub(crate) fn json_text(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

fn json_col(row: &AnyRow, col: &str) -> StoreResult<Value> {
    let text: Option<String> = row.try_get(col).db()?;
    Ok(text.and_then(|t| serde_json::from_str(&t).ok()).unwrap_or(Value::Null))
}

fn object_col(row: &AnyRow, col: &str) -> StoreResult<Map<String, Value>> {
    Ok(match json_col(row, col)? {
        Value::Object(map) => map,
        _ => Map::new(),
    })
}

fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Backend(format!("unexpected {what} {value:?} in the database"))
}

pub(crate) fn parse_enum<T>(what: &str, text: &str, parse: fn(&str) -> Option<T>) -> StoreResult<T> {
    parse(text).ok_or_else(|| corrupt(what, text))
}

fn opt_enum<T>(row: &AnyRow, col: &str, parse: fn(&str) -> Option<T>) -> StoreResult<Option<T>> {
    let text: Option<String> = row.try_get(col).db()?;
    text.map(|t| parse_enum(col, &t, parse)).transpose()
}

fn get<'r, T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>>(row: &'r AnyRow, col: &str) -> StoreResult<T> {
    row.try_get(col).db()
}

pub(crate) fn agent(row: &AnyRow) -> StoreResult<Agent> {
    Ok(Agent {
        id: get(row, "id")?,
        organization_id: get(row, "organization_id")?,
        name: get(row, "name")?,
        prompt: get(row, "prompt")?,
        welcome_message: get(row, "welcome_message")?,
        voice: get(row, "voice")?,
        language: get(row, "language")?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
    })
}

/// Secrets inside `provider_config` are write-only.
fn redact(config: Value) -> Value {
    match config {
        Value::Object(mut map) => {
            if map.contains_key("secret") {
                map.insert("secret".into(), Value::String("********".into()));
            }
            Value::Object(map)
        }
        other => other,
    }
}

pub(crate) fn phone_number(row: &AnyRow) -> StoreResult<PhoneNumber> {
    Ok(PhoneNumber {
        id: get(row, "id")?,
        organization_id: get(row, "organization_id")?,
        phone_number: get(row, "phone_number")?,
        label: get(row, "label")?,
        nickname: get(row, "nickname")?,
        country_code: get(row, "country_code")?,
        status: get(row, "status")?,
        provider: get(row, "provider")?,
        provider_config: redact(json_col(row, "provider_config")?),
        allowed_destination_countries: serde_json::from_value(json_col(row, "allowed_destination_countries")?)
            .unwrap_or_default(),
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
    })
}

pub(crate) fn settings(row: &AnyRow) -> StoreResult<WorkflowSettings> {
    let text: String = get(row, "settings")?;
    serde_json::from_str(&text).map_err(|_| corrupt("settings", &text))
}

/// A workflow row; counts are filled in by the caller.
pub(crate) fn workflow(row: &AnyRow) -> StoreResult<Workflow> {
    let title: String = get(row, "title")?;
    let status: String = get(row, "status")?;
    Ok(Workflow {
        id: get(row, "id")?,
        organization_id: get(row, "organization_id")?,
        name: title.clone(),
        title,
        description: get(row, "description")?,
        status: parse_enum("workflow status", &status, WorkflowStatus::parse)?,
        entry_node_id: get(row, "entry_node_id")?,
        settings: settings(row)?,
        node_count: get::<i64>(row, "node_count")? as u64,
        edge_count: get::<i64>(row, "edge_count")? as u64,
        enrolled_leads: 0,
        lead_counts: LeadCounts::default(),
        last_triggered_at: get(row, "last_triggered_at")?,
        activated_at: get(row, "activated_at")?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
        revision: get(row, "revision")?,
    })
}

pub(crate) fn node(row: &AnyRow) -> StoreResult<Node> {
    let node_type: String = get(row, "node_type")?;
    Ok(Node {
        id: get(row, "id")?,
        workflow_id: get(row, "workflow_id")?,
        node_type: parse_enum("node type", &node_type, NodeType::parse)?,
        label: get(row, "label")?,
        position_x: get(row, "position_x")?,
        position_y: get(row, "position_y")?,
        config: json_col(row, "config")?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
    })
}

pub(crate) fn edge(row: &AnyRow) -> StoreResult<Edge> {
    Ok(Edge {
        id: get(row, "id")?,
        workflow_id: get(row, "workflow_id")?,
        from_node_id: get(row, "from_node_id")?,
        to_node_id: get(row, "to_node_id")?,
        label: get(row, "label")?,
        created_at: get(row, "created_at")?,
    })
}

/// A lead as the API shows it; `workflow_status` turns waiting states into `paused`.
pub(crate) fn lead(row: &AnyRow) -> StoreResult<Lead> {
    let status: String = get(row, "status")?;
    let status = parse_enum("lead status", &status, LeadStatus::parse)?;
    let mut state = opt_enum(row, "state", LeadState::parse)?;
    let workflow_status: Option<String> = get(row, "workflow_status")?;
    if workflow_status.as_deref() == Some("paused") && state.is_some_and(shows_paused) {
        state = Some(LeadState::Paused);
    }
    let due_at: Option<i64> = get(row, "due_at")?;
    Ok(Lead {
        id: get(row, "id")?,
        workflow_id: get(row, "workflow_id")?,
        phone_number: get(row, "phone_number")?,
        metadata: object_col(row, "metadata")?,
        timezone: get(row, "timezone")?,
        status,
        state: if status == LeadStatus::InProgress { state } else { None },
        current_node_id: get(row, "current_node_id")?,
        next_action_at: if status == LeadStatus::InProgress { due_at } else { None },
        exit_reason: get(row, "exit_reason")?,
        enrolled_at: get(row, "enrolled_at")?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
        finished_at: get(row, "finished_at")?,
    })
}

/// States that a paused workflow shows as `paused` (a step in flight or a stall is still shown as it is).
pub(crate) fn shows_paused(state: LeadState) -> bool {
    matches!(
        state,
        LeadState::Ready | LeadState::Waiting | LeadState::OutsideHours | LeadState::Throttled
    )
}

pub(crate) fn lead_row(row: &AnyRow) -> StoreResult<LeadRow> {
    let status: String = get(row, "status")?;
    Ok(LeadRow {
        id: get(row, "id")?,
        organization_id: get(row, "organization_id")?,
        workflow_id: get(row, "workflow_id")?,
        phone_number: get(row, "phone_number")?,
        phone_country: get(row, "phone_country")?,
        variables: object_col(row, "metadata")?,
        timezone: get(row, "timezone")?,
        status: parse_enum("lead status", &status, LeadStatus::parse)?,
        state: opt_enum(row, "state", LeadState::parse)?,
        current_node_id: get(row, "current_node_id")?,
        due_at: get(row, "due_at")?,
        queued_at: get(row, "queued_at")?,
        exit_reason: get(row, "exit_reason")?,
        seq: get(row, "seq")?,
        step_seq: get(row, "step_seq")?,
        attempt: get::<i64>(row, "attempt")? as u32,
        call_count: get::<i64>(row, "call_count")? as u32,
        instant_steps: get::<i64>(row, "instant_steps")? as u32,
        visit: get::<i64>(row, "visit")? as u32,
        facts: match json_col(row, "facts")? {
            Value::Null => Value::Object(Map::new()),
            v => v,
        },
        pending_outcome: get(row, "pending_outcome")?,
        current_call_id: get(row, "current_call_id")?,
        removal: get(row, "removal")?,
        enrol_order: get(row, "enrol_order")?,
        finished_at: get(row, "finished_at")?,
    })
}

pub(crate) fn history_entry(row: &AnyRow) -> StoreResult<HistoryEntry> {
    let node_type: String = get(row, "node_type")?;
    let status: String = get(row, "status")?;
    Ok(HistoryEntry {
        node_id: get(row, "node_id")?,
        node_label: get(row, "node_label")?,
        node_type: parse_enum("node type", &node_type, NodeType::parse)?,
        status: parse_enum("step status", &status, StepStatus::parse)?,
        outcome: get(row, "outcome")?,
        edge_id: get(row, "edge_id")?,
        next_node_id: get(row, "next_node_id")?,
        call_id: get(row, "call_id")?,
        attempts: get::<Option<i64>>(row, "attempts")?.map(|n| n as u32),
        detail: Some(json_col(row, "detail")?).filter(|v| !v.is_null()),
        entered_at: get(row, "entered_at")?,
        exited_at: get(row, "exited_at")?,
    })
}

pub(crate) fn call(row: &AnyRow) -> StoreResult<Call> {
    let status: String = get(row, "status")?;
    Ok(Call {
        id: get(row, "id")?,
        organization_id: get(row, "organization_id")?,
        workflow_id: get(row, "workflow_id")?,
        workflow_lead_id: get(row, "workflow_lead_id")?,
        node_id: get(row, "node_id")?,
        agent_id: get(row, "agent_id")?,
        from_phone_number: get(row, "from_phone_number")?,
        to_phone_number: get(row, "to_phone_number")?,
        attempt: get::<i64>(row, "attempt")? as u32,
        status: parse_enum("call status", &status, CallStatus::parse)?,
        outcome: opt_enum(row, "outcome", CallOutcome::parse)?,
        end_reason: get(row, "end_reason")?,
        duration_seconds: get::<Option<i64>>(row, "duration_seconds")?.map(|n| n as u32),
        transcript: get(row, "transcript")?,
        summary: get(row, "summary")?,
        analysis: Some(json_col(row, "analysis")?).filter(|v| !v.is_null()),
        recording_url: get(row, "recording_url")?,
        provider: get(row, "provider")?,
        provider_call_id: get(row, "provider_call_id")?,
        idempotency_key: get(row, "idempotency_key")?,
        created_at: get(row, "created_at")?,
        answered_at: get(row, "answered_at")?,
        ended_at: get(row, "ended_at")?,
    })
}
