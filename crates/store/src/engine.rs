//! The engine's view of the store: claim due leads, commit batches of fenced transitions.

use crate::records::Call;
use serde_json::{Map, Value};
use switchboard_domain::model::{CallOutcome, CallStatus, LeadState, LeadStatus, NodeType, StepStatus, WorkflowStatus};
use switchboard_domain::settings::WorkflowSettings;

/// A lead row as the engine works on it. `seq` fences every write.
#[derive(Debug, Clone, PartialEq)]
pub struct LeadRow {
    pub id: String,
    pub organization_id: String,
    pub workflow_id: String,
    pub phone_number: String,
    pub phone_country: Option<String>,
    pub variables: Map<String, Value>,
    pub timezone: Option<String>,
    pub status: LeadStatus,
    pub state: Option<LeadState>,
    pub current_node_id: Option<String>,
    pub due_at: Option<i64>,
    /// Due time of a throttled lead, kept so woken leads start in due order.
    pub queued_at: Option<i64>,
    pub exit_reason: Option<String>,
    pub seq: i64,
    /// `seq` of the transition that started the step in flight: its idempotency key is `<id>:<step_seq>`.
    pub step_seq: Option<i64>,
    /// Attempts made at the current node in this visit.
    pub attempt: u32,
    /// Calls placed to this lead in this workflow (drives the simulator).
    pub call_count: u32,
    /// Steps since the lead last placed a call or waited (loop guard).
    pub instant_steps: u32,
    /// Index of the lead's current history entry (0 = none yet).
    pub visit: u32,
    /// What the lead learned: `{"call": {...}, "application": {...}}`.
    pub facts: Value,
    /// An outcome no edge took (a stalled lead).
    pub pending_outcome: Option<String>,
    pub current_call_id: Option<String>,
    /// Exit reason to apply once the step in flight finishes (removal, cancel).
    pub removal: Option<String>,
    pub enrol_order: i64,
    pub finished_at: Option<i64>,
}

/// A workflow as the engine needs it, cached per `revision`.
#[derive(Debug, Clone)]
pub struct WorkflowSnapshot {
    pub id: String,
    pub organization_id: String,
    pub status: WorkflowStatus,
    pub revision: i64,
    pub settings: WorkflowSettings,
    pub graph: switchboard_domain::graph::Graph,
    /// Active phone numbers of the organization, by E.164.
    pub numbers: Vec<String>,
}

/// One history entry written as an upsert on `(lead, idx)`; `entered_at` is kept from the first write.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryWrite {
    pub idx: u32,
    pub node_id: String,
    pub node_label: String,
    pub node_type: NodeType,
    pub status: StepStatus,
    pub outcome: Option<String>,
    pub edge_id: Option<String>,
    pub next_node_id: Option<String>,
    pub call_id: Option<String>,
    pub attempts: Option<u32>,
    pub detail: Option<Value>,
    pub entered_at: i64,
    pub exited_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CallFinish {
    pub id: String,
    pub status: CallStatus,
    pub outcome: CallOutcome,
    pub end_reason: String,
    pub duration_seconds: u32,
    pub transcript: Option<String>,
    pub summary: Option<String>,
    pub analysis: Option<Value>,
    pub answered_at: Option<i64>,
    pub ended_at: i64,
}

#[derive(Debug, Clone)]
pub enum CallWrite {
    Insert(Box<Call>),
    Finish(CallFinish),
}

/// A lead's committed move: the new row, its history and call writes, fenced by `expected_seq`
/// and the workflow `revision` the decision was made on.
#[derive(Debug, Clone)]
pub struct LeadChange {
    pub expected_seq: i64,
    pub workflow_revision: i64,
    pub lead: LeadRow,
    pub history: Vec<HistoryWrite>,
    pub calls: Vec<CallWrite>,
    /// Keep the lease until this instant (a step in flight in this process); `None` releases it.
    pub lease_until: Option<i64>,
    /// A call of this lead reached a final status, freeing a concurrency slot.
    pub freed_call_slot: bool,
}

#[derive(Debug, Default)]
pub struct CommitResult {
    /// Lead ids whose change was applied.
    pub applied: Vec<String>,
    /// Lead ids whose change was refused by a fence (their lease was released).
    pub rejected: Vec<String>,
}
