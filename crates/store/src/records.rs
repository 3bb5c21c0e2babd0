//! What the store reads and writes. Read records serialise to the API's JSON shapes directly.

use serde::Serialize;
use serde_json::{Map, Value};
use switchboard_domain::model::{CallOutcome, CallStatus, LeadState, LeadStatus, NodeType, StepStatus, WorkflowStatus};
use switchboard_domain::settings::WorkflowSettings;
use switchboard_domain::time::rfc3339;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Organization {
    pub id: String,
    pub name: String,
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ApiKeyRecord {
    pub id: String,
    pub organization_id: String,
    pub organization_name: String,
    pub name: Option<String>,
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    #[serde(serialize_with = "rfc3339::option::serialize")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<i64>,
}

/// What authentication needs to know about a key.
#[derive(Debug, Clone)]
pub struct KeyAuth {
    pub organization_id: String,
    pub secret_hash: String,
    pub revoked: bool,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Agent {
    pub id: String,
    pub organization_id: String,
    pub name: String,
    pub prompt: Option<String>,
    pub welcome_message: Option<String>,
    pub voice: Option<String>,
    pub language: Option<String>,
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PhoneNumber {
    pub id: String,
    pub organization_id: String,
    pub phone_number: String,
    pub label: Option<String>,
    pub nickname: Option<String>,
    pub country_code: Option<String>,
    pub status: String,
    pub provider: String,
    #[schema(value_type = Object)]
    pub provider_config: Value,
    pub allowed_destination_countries: Vec<String>,
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: i64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct LeadCounts {
    pub pending: u64,
    pub in_progress: u64,
    pub completed: u64,
    pub dropped: u64,
    pub removed: u64,
    pub failed: u64,
}

impl LeadCounts {
    pub fn add(&mut self, status: LeadStatus, n: u64) {
        let slot = match status {
            LeadStatus::Pending => &mut self.pending,
            LeadStatus::InProgress => &mut self.in_progress,
            LeadStatus::Completed => &mut self.completed,
            LeadStatus::Dropped => &mut self.dropped,
            LeadStatus::Removed => &mut self.removed,
            LeadStatus::Failed => &mut self.failed,
        };
        *slot += n;
    }

    pub fn total(&self) -> u64 {
        self.pending + self.in_progress + self.completed + self.dropped + self.removed + self.failed
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Workflow {
    pub id: String,
    pub organization_id: String,
    pub title: String,
    pub name: String,
    pub description: Option<String>,
    pub status: WorkflowStatus,
    pub entry_node_id: Option<String>,
    pub settings: WorkflowSettings,
    pub node_count: u64,
    pub edge_count: u64,
    pub enrolled_leads: u64,
    pub lead_counts: LeadCounts,
    #[serde(serialize_with = "rfc3339::option::serialize")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_triggered_at: Option<i64>,
    #[serde(serialize_with = "rfc3339::option::serialize")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub activated_at: Option<i64>,
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: i64,
    /// Bumped on every change of graph, settings or status; fences the engine's commits.
    #[serde(skip)]
    pub revision: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Node {
    pub id: String,
    pub workflow_id: String,
    pub node_type: NodeType,
    pub label: String,
    pub position_x: f64,
    pub position_y: f64,
    #[schema(value_type = Object)]
    pub config: Value,
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Edge {
    pub id: String,
    pub workflow_id: String,
    pub from_node_id: String,
    pub to_node_id: String,
    pub label: Option<String>,
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Lead {
    pub id: String,
    pub workflow_id: String,
    pub phone_number: String,
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
    pub timezone: Option<String>,
    pub status: LeadStatus,
    pub state: Option<LeadState>,
    pub current_node_id: Option<String>,
    #[serde(serialize_with = "rfc3339::option::serialize")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_action_at: Option<i64>,
    pub exit_reason: Option<String>,
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub enrolled_at: i64,
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: i64,
    #[serde(serialize_with = "rfc3339::option::serialize")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub finished_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HistoryEntry {
    pub node_id: String,
    pub node_label: String,
    pub node_type: NodeType,
    pub status: StepStatus,
    pub outcome: Option<String>,
    pub edge_id: Option<String>,
    pub next_node_id: Option<String>,
    pub call_id: Option<String>,
    pub attempts: Option<u32>,
    #[schema(value_type = Option<Object>)]
    pub detail: Option<Value>,
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub entered_at: i64,
    #[serde(serialize_with = "rfc3339::option::serialize")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub exited_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Call {
    pub id: String,
    pub workflow_id: Option<String>,
    pub workflow_lead_id: Option<String>,
    pub node_id: Option<String>,
    pub agent_id: Option<String>,
    pub from_phone_number: String,
    pub to_phone_number: String,
    pub attempt: u32,
    pub status: CallStatus,
    pub outcome: Option<CallOutcome>,
    pub end_reason: Option<String>,
    pub duration_seconds: Option<u32>,
    pub transcript: Option<String>,
    pub summary: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub analysis: Option<Value>,
    pub recording_url: Option<String>,
    pub provider: String,
    pub provider_call_id: Option<String>,
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    #[serde(serialize_with = "rfc3339::option::serialize")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub answered_at: Option<i64>,
    #[serde(serialize_with = "rfc3339::option::serialize")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ended_at: Option<i64>,
    #[serde(skip)]
    pub organization_id: String,
    #[serde(skip)]
    pub idempotency_key: String,
}
