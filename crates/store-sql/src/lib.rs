//! The SQL backends, SQLite and PostgreSQL, as one implementation over sqlx's `Any` driver. The queries are
//! written once in the SQL both understand (`$n` parameters, numbered in order of first use, which SQLite binds
//! by position); each backend has its own migrations, connection set-up and claim statement.
//!
//! SQLite: WAL, one writer connection (transactions never contend) and a pool of read-only connections; for one
//! process. PostgreSQL: one pool; any number of processes share the database, claiming with
//! `FOR UPDATE SKIP LOCKED` under leases.

mod engine;
mod leads;
mod rows;
mod workflows;

use rows::Db;
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyConnection, AnyPool};
use std::time::Duration;
use switchboard_store::{StoreError, StoreResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct SqlStore {
    writer: AnyPool,
    reader: AnyPool,
    backend: Backend,
    /// PostgreSQL: a connection LISTENing for other processes' news of work.
    listener: Option<tokio::sync::Mutex<sqlx::postgres::PgListener>>,
}

/// The channel processes sharing a PostgreSQL database signal new work on.
const WORK_CHANNEL: &str = "switchboard_work";

/// On PostgreSQL, tells the other processes (when the transaction commits) that leads became due.
async fn notify_work(conn: &mut AnyConnection, backend: Backend) -> StoreResult<()> {
    if backend == Backend::Postgres {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(WORK_CHANNEL)
            .execute(conn)
            .await
            .db()?;
    }
    Ok(())
}

/// Adds a query parameter to a database URL.
fn with_param(url: &str, param: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{param}")
}

async fn sqlite_pool(url: &str, connections: u32) -> StoreResult<AnyPool> {
    AnyPoolOptions::new()
        .max_connections(connections)
        .acquire_timeout(Duration::from_secs(120))
        .after_connect(|conn, _| {
            Box::pin(async move {
                // NORMAL survives process crashes (kill -9); FULL would also survive power loss.
                for pragma in [
                    "PRAGMA busy_timeout = 10000",
                    "PRAGMA foreign_keys = ON",
                    "PRAGMA synchronous = NORMAL",
                ] {
                    sqlx::query(pragma).execute(&mut *conn).await?;
                }
                Ok(())
            })
        })
        .connect(url)
        .await
        .db()
}

impl SqlStore {
    /// Opens the database named by `url` (`sqlite://path` — created if missing — or `postgres://...`) and
    /// applies its backend's migrations.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        sqlx::any::install_default_drivers();
        let migrated = |e: sqlx::migrate::MigrateError| StoreError::Backend(format!("migrations failed: {e}"));
        if url.starts_with("sqlite:") {
            let writer = sqlite_pool(&with_param(url, "mode=rwc"), 1).await?;
            sqlx::query("PRAGMA journal_mode = WAL").execute(&writer).await.db()?;
            sqlx::migrate!("./migrations/sqlite")
                .run(&writer)
                .await
                .map_err(migrated)?;
            let reader = sqlite_pool(&with_param(url, "mode=ro"), 4).await?;
            Ok(Self {
                writer,
                reader,
                backend: Backend::Sqlite,
                listener: None,
            })
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let pool = AnyPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(60))
                .connect(url)
                .await
                .db()?;
            sqlx::migrate!("./migrations/postgres")
                .run(&pool)
                .await
                .map_err(migrated)?;
            let mut listener = sqlx::postgres::PgListener::connect(url).await.db()?;
            listener.listen(WORK_CHANNEL).await.db()?;
            Ok(Self {
                writer: pool.clone(),
                reader: pool,
                backend: Backend::Postgres,
                listener: Some(tokio::sync::Mutex::new(listener)),
            })
        } else {
            Err(StoreError::Backend(format!(
                "unsupported database URL {url:?}: use sqlite://PATH or postgres://..."
            )))
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    async fn read(&self) -> StoreResult<sqlx::pool::PoolConnection<sqlx::Any>> {
        self.reader.acquire().await.db()
    }
}

/// Runs `UPDATE workflows` bookkeeping shared by every graph or status change.
async fn bump_revision(conn: &mut AnyConnection, workflow_id: &str, now: i64) -> StoreResult<()> {
    sqlx::query("UPDATE workflows SET revision = revision + 1, updated_at = $1 WHERE id = $2")
        .bind(now)
        .bind(workflow_id)
        .execute(conn)
        .await
        .db()?;
    Ok(())
}

/// Marks an active workflow `completed` when `auto_complete` is on and every one of its leads is final.
async fn maybe_complete(conn: &mut AnyConnection, workflow_id: &str, now: i64) -> StoreResult<bool> {
    let settings: Option<String> =
        sqlx::query_scalar("SELECT settings FROM workflows WHERE id = $1 AND status = 'active'")
            .bind(workflow_id)
            .fetch_optional(&mut *conn)
            .await
            .db()?;
    let auto_complete = settings
        .and_then(|text| serde_json::from_str::<switchboard_domain::settings::WorkflowSettings>(&text).ok())
        .is_some_and(|s| s.auto_complete);
    if !auto_complete {
        return Ok(false);
    }
    let done = sqlx::query(
        "UPDATE workflows SET status = 'completed', revision = revision + 1, updated_at = $1
         WHERE id = $2 AND status = 'active'
           AND EXISTS (SELECT 1 FROM leads WHERE workflow_id = $2)
           AND NOT EXISTS (SELECT 1 FROM leads WHERE workflow_id = $2 AND status IN ('pending', 'in_progress'))",
    )
    .bind(now)
    .bind(workflow_id)
    .execute(conn)
    .await
    .db()?;
    Ok(done.rows_affected() > 0)
}

/// Closes the open history entry of each listed lead as `skipped`.
async fn skip_open_entries(conn: &mut AnyConnection, lead_ids: &[String], reason: &str, now: i64) -> StoreResult<()> {
    let detail = rows::json_text(&serde_json::json!({"reason": reason}));
    for id in lead_ids {
        sqlx::query(
            "UPDATE lead_history SET status = 'skipped', exited_at = $1, detail = COALESCE(detail, $2)
             WHERE lead_id = $3 AND exited_at IS NULL",
        )
        .bind(now)
        .bind(&detail)
        .bind(id)
        .execute(&mut *conn)
        .await
        .db()?;
    }
    Ok(())
}

/// Ends leads now (`removed` with `reason`) unless a step is in flight; those get `removal` set and end
/// when the step finishes. Every touched lead's `seq` moves, fencing out stale engine work.
async fn remove_leads_where(
    conn: &mut AnyConnection,
    condition: &str,
    bind: &str,
    reason: &str,
    now: i64,
) -> StoreResult<u64> {
    let ended: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "UPDATE leads SET status = 'removed', state = NULL, due_at = NULL, queued_at = NULL, exit_reason = $1,
             finished_at = $2, updated_at = $2, seq = seq + 1, lease_owner = NULL, lease_until = NULL
         WHERE {condition} AND status IN ('pending', 'in_progress') AND COALESCE(state, '') NOT IN ('calling', 'running')
         RETURNING id"
    )))
    .bind(reason)
    .bind(now)
    .bind(bind)
    .fetch_all(&mut *conn)
    .await
    .db()?;
    skip_open_entries(conn, &ended, reason, now).await?;
    let deferred = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE leads SET removal = $1, seq = seq + 1, updated_at = $2
         WHERE {condition} AND status = 'in_progress' AND state IN ('calling', 'running')"
    )))
    .bind(reason)
    .bind(now)
    .bind(bind)
    .execute(&mut *conn)
    .await
    .db()?;
    Ok(ended.len() as u64 + deferred.rows_affected())
}

fn not_found(what: &'static str) -> StoreError {
    StoreError::NotFound(what)
}

use std::collections::HashMap;
use switchboard_domain::model::LeadStatus;
use switchboard_store::engine::{CommitResult, LeadChange, LeadRow, WorkflowSnapshot};
use switchboard_store::records::*;
use switchboard_store::*;

#[async_trait::async_trait]
impl Store for SqlStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await.db().map(|_| ())
    }

    async fn operational_counts(&self) -> StoreResult<OperationalCounts> {
        let mut conn = self.read().await?;
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT status, count(*) FROM leads GROUP BY status ORDER BY status")
                .fetch_all(&mut *conn)
                .await
                .db()?;
        let calls: i64 = sqlx::query_scalar("SELECT count(*) FROM leads WHERE state = 'calling'")
            .fetch_one(&mut *conn)
            .await
            .db()?;
        let leads_by_status = rows
            .into_iter()
            .map(|(status, n)| rows::parse_enum("lead status", &status, LeadStatus::parse).map(|s| (s, n as u64)))
            .collect::<StoreResult<_>>()?;
        Ok(OperationalCounts {
            leads_by_status,
            calls_in_flight: calls as u64,
        })
    }

    async fn organization_count(&self) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM organizations")
            .fetch_one(&self.reader)
            .await
            .db()?;
        Ok(n as u64)
    }

    async fn ensure_organization(&self, name: &str) -> StoreResult<Organization> {
        workflows::ensure_organization(self, name).await
    }

    async fn create_api_key(
        &self,
        org: &str,
        name: Option<&str>,
        key_id: &str,
        hash: &str,
    ) -> StoreResult<ApiKeyRecord> {
        workflows::create_api_key(self, org, name, key_id, hash).await
    }

    async fn list_api_keys(&self) -> StoreResult<Vec<ApiKeyRecord>> {
        workflows::list_api_keys(self).await
    }

    async fn revoke_api_key(&self, key_id: &str) -> StoreResult<bool> {
        workflows::revoke_api_key(self, key_id).await
    }

    async fn api_key_auth(&self, key_id: &str) -> StoreResult<Option<KeyAuth>> {
        workflows::api_key_auth(self, key_id).await
    }

    async fn idempotency_begin(
        &self,
        api_key_id: &str,
        key: &str,
        fingerprint: &str,
        now: i64,
    ) -> StoreResult<IdempotencyBegin> {
        workflows::idempotency_begin(self, api_key_id, key, fingerprint, now).await
    }

    async fn idempotency_finish(
        &self,
        api_key_id: &str,
        key: &str,
        status: u16,
        content_type: Option<&str>,
        body: &[u8],
    ) -> StoreResult<()> {
        sqlx::query("UPDATE idempotency_keys SET state = 'done', status = $1, content_type = $2, body = $3 WHERE api_key_id = $4 AND key = $5")
            .bind(i64::from(status))
            .bind(content_type)
            .bind(body)
            .bind(api_key_id)
            .bind(key)
            .execute(&self.writer)
            .await
            .db()
            .map(|_| ())
    }

    async fn idempotency_abandon(&self, api_key_id: &str, key: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM idempotency_keys WHERE api_key_id = $1 AND key = $2 AND state = 'in_progress'")
            .bind(api_key_id)
            .bind(key)
            .execute(&self.writer)
            .await
            .db()
            .map(|_| ())
    }

    async fn create_agent(&self, org: &str, agent: NewAgent) -> StoreResult<Agent> {
        workflows::create_agent(self, org, agent).await
    }

    async fn list_agents(&self, org: &str, page: PageRequest) -> StoreResult<Page<Agent>> {
        workflows::list_agents(self, org, page).await
    }

    async fn get_agent(&self, org: &str, id: &str) -> StoreResult<Agent> {
        workflows::get_agent(&self.reader, org, id).await
    }

    async fn update_agent(&self, org: &str, id: &str, patch: AgentPatch) -> StoreResult<Agent> {
        workflows::update_agent(self, org, id, patch).await
    }

    async fn delete_agent(&self, org: &str, id: &str) -> StoreResult<()> {
        workflows::delete_agent(self, org, id).await
    }

    async fn update_phone_number(&self, org: &str, id: &str, patch: PhoneNumberPatch) -> StoreResult<PhoneNumber> {
        workflows::update_phone_number(self, org, id, patch).await
    }

    async fn delete_phone_number(&self, org: &str, id: &str) -> StoreResult<()> {
        workflows::delete_phone_number(self, org, id).await
    }

    async fn create_phone_number(&self, org: &str, number: NewPhoneNumber) -> StoreResult<PhoneNumber> {
        workflows::create_phone_number(self, org, number).await
    }

    async fn list_phone_numbers(
        &self,
        org: &str,
        status: Option<&str>,
        country: Option<&str>,
        page: PageRequest,
    ) -> StoreResult<Page<PhoneNumber>> {
        workflows::list_phone_numbers(self, org, status, country, page).await
    }

    async fn get_phone_number(&self, org: &str, id: &str) -> StoreResult<PhoneNumber> {
        workflows::get_phone_number(&self.reader, org, id).await
    }

    async fn create_workflow(&self, org: &str, workflow: NewWorkflow) -> StoreResult<Workflow> {
        workflows::create_workflow(self, org, workflow).await
    }

    async fn list_workflows(
        &self,
        org: &str,
        filter: &WorkflowFilter,
        page: PageRequest,
    ) -> StoreResult<Page<Workflow>> {
        workflows::list_workflows(self, org, filter, page).await
    }

    async fn get_workflow(&self, org: &str, id: &str) -> StoreResult<Workflow> {
        workflows::get_workflow(self, org, id).await
    }

    async fn update_workflow(&self, org: &str, id: &str, patch: WorkflowPatch) -> StoreResult<Workflow> {
        workflows::update_workflow(self, org, id, patch).await
    }

    async fn delete_workflow(&self, org: &str, id: &str) -> StoreResult<()> {
        workflows::delete_workflow(self, org, id).await
    }

    async fn duplicate_workflow(&self, org: &str, id: &str, title: Option<String>) -> StoreResult<Workflow> {
        workflows::duplicate_workflow(self, org, id, title).await
    }

    async fn transition_workflow(&self, org: &str, id: &str, action: Lifecycle) -> StoreResult<Workflow> {
        workflows::transition_workflow(self, org, id, action).await
    }

    async fn workflow_snapshot(&self, org: &str, id: &str) -> StoreResult<(WorkflowSnapshot, Vec<Agent>, Vec<String>)> {
        workflows::workflow_snapshot(self, org, id).await
    }

    async fn create_node(&self, org: &str, workflow_id: &str, node: NewNode) -> StoreResult<Node> {
        workflows::create_node(self, org, workflow_id, node).await
    }

    async fn list_nodes(&self, org: &str, workflow_id: &str) -> StoreResult<Vec<Node>> {
        workflows::list_nodes(self, org, workflow_id).await
    }

    async fn get_node(&self, org: &str, workflow_id: &str, node_id: &str) -> StoreResult<Node> {
        workflows::get_node(self, org, workflow_id, node_id).await
    }

    async fn update_node(&self, org: &str, workflow_id: &str, node_id: &str, patch: NodePatch) -> StoreResult<Node> {
        workflows::update_node(self, org, workflow_id, node_id, patch).await
    }

    async fn delete_node(&self, org: &str, workflow_id: &str, node_id: &str, leads: NodeLeads) -> StoreResult<()> {
        workflows::delete_node(self, org, workflow_id, node_id, leads).await
    }

    async fn create_edge(&self, org: &str, workflow_id: &str, edge: NewEdge) -> StoreResult<Edge> {
        workflows::create_edge(self, org, workflow_id, edge).await
    }

    async fn list_edges(&self, org: &str, workflow_id: &str) -> StoreResult<Vec<Edge>> {
        workflows::list_edges(self, org, workflow_id).await
    }

    async fn delete_edge(&self, org: &str, workflow_id: &str, edge_id: &str) -> StoreResult<()> {
        workflows::delete_edge(self, org, workflow_id, edge_id).await
    }

    async fn begin_enrolment(&self, org: &str, workflow_id: &str) -> StoreResult<Box<dyn Enrolment>> {
        Ok(Box::new(leads::begin_enrolment(self, org, workflow_id).await?))
    }

    async fn list_leads(
        &self,
        org: &str,
        workflow_id: &str,
        filter: &LeadFilter,
        page: PageRequest,
    ) -> StoreResult<Page<Lead>> {
        leads::list_leads(self, org, workflow_id, filter, page).await
    }

    async fn get_lead(&self, org: &str, workflow_id: &str, lead_id: &str) -> StoreResult<Lead> {
        leads::get_lead(self, org, workflow_id, lead_id).await
    }

    async fn remove_lead(&self, org: &str, workflow_id: &str, lead_id: &str) -> StoreResult<()> {
        leads::remove_lead(self, org, workflow_id, lead_id).await
    }

    async fn lead_history(
        &self,
        org: &str,
        workflow_id: &str,
        lead_id: &str,
    ) -> StoreResult<(Lead, Vec<HistoryEntry>)> {
        leads::lead_history(self, org, workflow_id, lead_id).await
    }

    async fn variable_keys(&self, org: &str, workflow_id: &str) -> StoreResult<Vec<String>> {
        leads::variable_keys(self, org, workflow_id).await
    }

    async fn allowed_destinations(&self, org: &str, workflow_id: &str) -> StoreResult<Option<Vec<String>>> {
        leads::allowed_destinations(self, org, workflow_id).await
    }

    async fn list_calls(&self, org: &str, filter: &CallFilter, page: PageRequest) -> StoreResult<Page<Call>> {
        leads::list_calls(self, org, filter, page).await
    }

    async fn get_call(&self, org: &str, id: &str) -> StoreResult<Call> {
        leads::get_call(self, org, id).await
    }

    async fn claim_due(&self, owner: &str, now: i64, lease_until: i64, limit: u32) -> StoreResult<Vec<LeadRow>> {
        engine::claim_due(self, owner, now, lease_until, limit).await
    }

    async fn load_lead_rows(&self, lead_ids: &[String]) -> StoreResult<Vec<LeadRow>> {
        engine::load_lead_rows(self, lead_ids).await
    }

    async fn engine_snapshot(&self, workflow_id: &str) -> StoreResult<Option<WorkflowSnapshot>> {
        engine::engine_snapshot(self, workflow_id).await
    }

    async fn workflow_revisions(&self, workflow_ids: &[String]) -> StoreResult<HashMap<String, i64>> {
        engine::workflow_revisions(self, workflow_ids).await
    }

    async fn calls_in_flight(
        &self,
        workflow_ids: &[String],
        organization_ids: &[String],
    ) -> StoreResult<CallsInFlight> {
        engine::calls_in_flight(self, workflow_ids, organization_ids).await
    }

    async fn commit_changes(
        &self,
        owner: &str,
        now: i64,
        changes: Vec<LeadChange>,
        org_cap: u32,
    ) -> StoreResult<CommitResult> {
        engine::commit_changes(self, owner, now, changes, org_cap).await
    }

    async fn work_elsewhere(&self) {
        match &self.listener {
            // A lost connection is re-established by the listener; a second's pause keeps errors from spinning.
            Some(listener) => {
                if listener.lock().await.recv().await.is_err() {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            None => std::future::pending().await,
        }
    }

    async fn next_due_at(&self) -> StoreResult<Option<i64>> {
        engine::next_due_at(self).await
    }

    async fn recover_after_restart(&self) -> StoreResult<()> {
        engine::recover_after_restart(self, switchboard_domain::time::now_ms()).await
    }
}
