//! The storage seam: one trait every backend implements, the records it returns and its errors.

pub mod activation;
pub mod engine;
pub mod records;

use async_trait::async_trait;
use engine::{CommitResult, LeadChange, LeadRow, WorkflowSnapshot};
use records::*;
use serde_json::Value;
use switchboard_domain::leadfile::LeadCandidate;
use switchboard_domain::model::{LeadState, LeadStatus, NodeType, WorkflowStatus};
use switchboard_domain::settings::WorkflowSettings;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A state conflict with a stable code (409).
    #[error("{message}")]
    Conflict {
        code: &'static str,
        message: String,
        details: Option<Value>,
    },
    /// Input that only the store can find wrong (400).
    #[error("{message}")]
    Invalid {
        code: &'static str,
        message: String,
        details: Option<Value>,
    },
    #[error("storage failure: {0}")]
    Backend(String),
}

impl StoreError {
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::Conflict {
            code,
            message: message.into(),
            details: None,
        }
    }

    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            code,
            message: message.into(),
            details: None,
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    pub page: u64,
    pub limit: u64,
}

impl PageRequest {
    pub fn offset(&self) -> u64 {
        (self.page - 1) * self.limit
    }
}

#[derive(Debug, Clone)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub total: u64,
}

#[derive(Debug, Default, Clone)]
pub struct WorkflowFilter {
    pub status: Option<WorkflowStatus>,
    pub search: Option<String>,
}

#[derive(Debug, Default, Clone)]
pub struct WorkflowPatch {
    pub title: Option<String>,
    pub description: Option<Option<String>>,
    pub settings: Option<Value>,
    pub entry_node_id: Option<Option<String>>,
}

#[derive(Debug, Clone)]
pub struct NewWorkflow {
    pub title: String,
    pub description: Option<String>,
    pub settings: WorkflowSettings,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    Activate,
    Pause,
    Resume,
    Cancel,
}

#[derive(Debug, Clone)]
pub struct NewNode {
    pub node_type: NodeType,
    pub label: String,
    pub position_x: f64,
    pub position_y: f64,
    pub config: Value,
}

#[derive(Debug, Clone, Default)]
pub struct NodePatch {
    pub label: Option<String>,
    pub position_x: Option<f64>,
    pub position_y: Option<f64>,
    pub config: Option<Value>,
}

/// What happens to leads standing on a node being deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeLeads {
    Refuse,
    ReassignTo(String),
    Remove,
}

#[derive(Debug, Clone)]
pub struct NewEdge {
    pub from_node_id: String,
    pub to_node_id: String,
    pub label: Option<String>,
}

#[derive(Debug, Default, Clone)]
pub struct LeadFilter {
    pub status: Option<LeadStatus>,
    pub state: Option<LeadState>,
    pub current_node_id: Option<String>,
    pub phone_number: Option<String>,
}

#[derive(Debug, Default, Clone)]
pub struct CallFilter {
    pub workflow_id: Option<String>,
    pub workflow_lead_id: Option<String>,
    pub agent_id: Option<String>,
    pub status: Option<String>,
    pub from: Option<i64>,
    pub to: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct EnrolOutcome {
    pub enrolled_count: u64,
    /// The lead created, when exactly one was.
    pub single: Option<Lead>,
    pub duplicates_skipped: u64,
}

#[derive(Debug, Clone)]
pub struct NewAgent {
    pub name: String,
    pub prompt: Option<String>,
    pub welcome_message: Option<String>,
    pub voice: Option<String>,
    pub language: Option<String>,
}

/// Fields to change; `None` keeps the current value, `Some(None)` clears a nullable one.
#[derive(Debug, Clone, Default)]
pub struct AgentPatch {
    pub name: Option<String>,
    pub prompt: Option<Option<String>>,
    pub welcome_message: Option<Option<String>>,
    pub voice: Option<Option<String>>,
    pub language: Option<Option<String>>,
}

#[derive(Debug, Clone, Default)]
pub struct PhoneNumberPatch {
    pub label: Option<Option<String>>,
    pub nickname: Option<Option<String>>,
    pub status: Option<String>,
    pub provider_config: Option<Value>,
    pub allowed_destination_countries: Option<Vec<String>>,
}

#[derive(Debug, Clone)]
pub struct NewPhoneNumber {
    pub phone_number: String,
    pub label: Option<String>,
    pub nickname: Option<String>,
    pub country_code: Option<String>,
    pub provider: String,
    pub provider_config: Value,
    pub allowed_destination_countries: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct CallsInFlight {
    pub by_workflow: std::collections::HashMap<String, u32>,
    pub by_organization: std::collections::HashMap<String, u32>,
}

#[derive(Debug, Clone, Default)]
pub struct OperationalCounts {
    pub leads_by_status: Vec<(LeadStatus, u64)>,
    pub calls_in_flight: u64,
}

/// What a POST with an `Idempotency-Key` should do.
#[derive(Debug, Clone, PartialEq)]
pub enum IdempotencyBegin {
    /// First use: run the request, then `idempotency_finish` (or `idempotency_abandon`).
    Started,
    /// The first request with this key is still running.
    InProgress,
    /// The key was used with a different request.
    Mismatch,
    /// The stored response of the first request.
    Replay {
        status: u16,
        content_type: Option<String>,
        body: Vec<u8>,
    },
}

/// Stored idempotent responses live this long.
pub const IDEMPOTENCY_TTL_MS: i64 = 24 * 3600 * 1000;
/// A first request still marked running after this long is taken to have died with its process.
pub const IDEMPOTENCY_STALE_MS: i64 = 120_000;

/// An enrolment in progress (see `Store::begin_enrolment`).
#[async_trait]
pub trait Enrolment: Send {
    /// Inserts checked leads, skipping numbers already enrolled (by the reenrollment rule) or repeated.
    async fn add(&mut self, leads: Vec<LeadCandidate>) -> StoreResult<()>;
    async fn commit(self: Box<Self>) -> StoreResult<EnrolOutcome>;
}

#[async_trait]
pub trait Store: Send + Sync {
    async fn ping(&self) -> StoreResult<()>;
    /// Leads by status and calls in flight, across all organizations (for `/metrics`).
    async fn operational_counts(&self) -> StoreResult<OperationalCounts>;

    // Organizations and API keys.
    async fn organization_count(&self) -> StoreResult<u64>;
    async fn ensure_organization(&self, name: &str) -> StoreResult<Organization>;
    async fn create_api_key(
        &self,
        organization_id: &str,
        name: Option<&str>,
        key_id: &str,
        secret_hash: &str,
    ) -> StoreResult<ApiKeyRecord>;
    async fn list_api_keys(&self) -> StoreResult<Vec<ApiKeyRecord>>;
    async fn revoke_api_key(&self, key_id: &str) -> StoreResult<bool>;
    async fn api_key_auth(&self, key_id: &str) -> StoreResult<Option<KeyAuth>>;

    // Idempotency keys.
    async fn idempotency_begin(
        &self,
        api_key_id: &str,
        key: &str,
        fingerprint: &str,
        now: i64,
    ) -> StoreResult<IdempotencyBegin>;
    async fn idempotency_finish(
        &self,
        api_key_id: &str,
        key: &str,
        status: u16,
        content_type: Option<&str>,
        body: &[u8],
    ) -> StoreResult<()>;
    async fn idempotency_abandon(&self, api_key_id: &str, key: &str) -> StoreResult<()>;

    // Agents and phone numbers.
    async fn create_agent(&self, org: &str, agent: NewAgent) -> StoreResult<Agent>;
    async fn list_agents(&self, org: &str, page: PageRequest) -> StoreResult<Page<Agent>>;
    async fn get_agent(&self, org: &str, id: &str) -> StoreResult<Agent>;
    async fn update_agent(&self, org: &str, id: &str, patch: AgentPatch) -> StoreResult<Agent>;
    /// Refused with `agent_in_use` while a VOICE_CALL node of a non-final workflow names the agent.
    async fn delete_agent(&self, org: &str, id: &str) -> StoreResult<()>;
    async fn create_phone_number(&self, org: &str, number: NewPhoneNumber) -> StoreResult<PhoneNumber>;
    async fn list_phone_numbers(
        &self,
        org: &str,
        status: Option<&str>,
        country: Option<&str>,
        page: PageRequest,
    ) -> StoreResult<Page<PhoneNumber>>;
    async fn get_phone_number(&self, org: &str, id: &str) -> StoreResult<PhoneNumber>;
    async fn update_phone_number(&self, org: &str, id: &str, patch: PhoneNumberPatch) -> StoreResult<PhoneNumber>;
    /// Refused with `phone_number_in_use` while a VOICE_CALL node of a non-final workflow calls from it.
    async fn delete_phone_number(&self, org: &str, id: &str) -> StoreResult<()>;

    // Workflows.
    async fn create_workflow(&self, org: &str, workflow: NewWorkflow) -> StoreResult<Workflow>;
    async fn list_workflows(
        &self,
        org: &str,
        filter: &WorkflowFilter,
        page: PageRequest,
    ) -> StoreResult<Page<Workflow>>;
    async fn get_workflow(&self, org: &str, id: &str) -> StoreResult<Workflow>;
    async fn update_workflow(&self, org: &str, id: &str, patch: WorkflowPatch) -> StoreResult<Workflow>;
    async fn delete_workflow(&self, org: &str, id: &str) -> StoreResult<()>;
    async fn duplicate_workflow(&self, org: &str, id: &str, title: Option<String>) -> StoreResult<Workflow>;
    /// Applies a lifecycle action; `Activate` runs the activation checks inside the transaction.
    async fn transition_workflow(&self, org: &str, id: &str, action: Lifecycle) -> StoreResult<Workflow>;
    /// The workflow with its graph and the organization's agents and numbers (for the activation checks).
    async fn workflow_snapshot(&self, org: &str, id: &str) -> StoreResult<(WorkflowSnapshot, Vec<Agent>, Vec<String>)>;

    // Nodes and edges.
    async fn create_node(&self, org: &str, workflow_id: &str, node: NewNode) -> StoreResult<Node>;
    async fn list_nodes(&self, org: &str, workflow_id: &str) -> StoreResult<Vec<Node>>;
    async fn get_node(&self, org: &str, workflow_id: &str, node_id: &str) -> StoreResult<Node>;
    async fn update_node(&self, org: &str, workflow_id: &str, node_id: &str, patch: NodePatch) -> StoreResult<Node>;
    async fn delete_node(&self, org: &str, workflow_id: &str, node_id: &str, leads: NodeLeads) -> StoreResult<()>;
    async fn create_edge(&self, org: &str, workflow_id: &str, edge: NewEdge) -> StoreResult<Edge>;
    async fn list_edges(&self, org: &str, workflow_id: &str) -> StoreResult<Vec<Edge>>;
    async fn delete_edge(&self, org: &str, workflow_id: &str, edge_id: &str) -> StoreResult<()>;

    // Leads.
    /// Starts an enrolment: leads are added in batches inside one transaction, visible only at `commit`
    /// (dropping it rolls everything back), so an upload is all or nothing however large it is.
    async fn begin_enrolment(&self, org: &str, workflow_id: &str) -> StoreResult<Box<dyn Enrolment>>;
    async fn list_leads(
        &self,
        org: &str,
        workflow_id: &str,
        filter: &LeadFilter,
        page: PageRequest,
    ) -> StoreResult<Page<Lead>>;
    async fn get_lead(&self, org: &str, workflow_id: &str, lead_id: &str) -> StoreResult<Lead>;
    async fn remove_lead(&self, org: &str, workflow_id: &str, lead_id: &str) -> StoreResult<()>;
    async fn lead_history(&self, org: &str, workflow_id: &str, lead_id: &str)
    -> StoreResult<(Lead, Vec<HistoryEntry>)>;
    async fn variable_keys(&self, org: &str, workflow_id: &str) -> StoreResult<Vec<String>>;
    /// Countries the workflow's VOICE_CALL numbers may call (`None`: no number configured, no check).
    async fn allowed_destinations(&self, org: &str, workflow_id: &str) -> StoreResult<Option<Vec<String>>>;

    // Calls.
    async fn list_calls(&self, org: &str, filter: &CallFilter, page: PageRequest) -> StoreResult<Page<Call>>;
    async fn get_call(&self, org: &str, id: &str) -> StoreResult<Call>;

    // Engine.
    /// Leases up to `limit` due leads to `owner` until `lease_until`, oldest due first.
    async fn claim_due(&self, owner: &str, now: i64, lease_until: i64, limit: u32) -> StoreResult<Vec<LeadRow>>;
    /// The engine's rows of the listed leads (those that exist).
    async fn load_lead_rows(&self, lead_ids: &[String]) -> StoreResult<Vec<LeadRow>>;
    async fn engine_snapshot(&self, workflow_id: &str) -> StoreResult<Option<WorkflowSnapshot>>;
    /// Current `revision` of each listed workflow that exists.
    async fn workflow_revisions(&self, workflow_ids: &[String]) -> StoreResult<std::collections::HashMap<String, i64>>;
    /// Calls in flight per listed workflow and per listed organization.
    async fn calls_in_flight(&self, workflow_ids: &[String], organization_ids: &[String])
    -> StoreResult<CallsInFlight>;
    /// Commits a batch of changes in one transaction; each is fenced by its lead's `seq` and workflow revision,
    /// and a change that dials is refused when its workflow's or organization's calls in flight are at their cap.
    async fn commit_changes(
        &self,
        owner: &str,
        now: i64,
        changes: Vec<LeadChange>,
        org_max_concurrent_calls: u32,
    ) -> StoreResult<CommitResult>;
    /// Completes when another process sharing the database signals new work (never, for one-process backends).
    async fn work_elsewhere(&self);
    /// The earliest due time of any claimable lead.
    async fn next_due_at(&self) -> StoreResult<Option<i64>>;
    /// Called when an engine starts: a single-process backend takes every lease back at once and re-drives
    /// steps in flight; a shared one leaves live leases of other processes alone.
    async fn recover_after_restart(&self) -> StoreResult<()>;
}
