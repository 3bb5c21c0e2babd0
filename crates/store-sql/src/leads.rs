//! Lead enrolment, reads, removal and history; call records.

use crate::rows::{self, Db, json_text};
use crate::workflows::{graph_of, load_edges, load_nodes, load_workflow};
use crate::{Backend, SqlStore, maybe_complete, not_found, notify_work, remove_leads_where};
use sqlx::{AnyConnection, Row};
use std::collections::HashSet;
use switchboard_domain::config::NodeConfig;
use switchboard_domain::ids;
use switchboard_domain::leadfile::LeadCandidate;
use switchboard_domain::model::{LeadState, Reenrollment, WorkflowStatus};
use switchboard_domain::time::now_ms;
use switchboard_store::records::*;
use switchboard_store::*;

const LEAD_SELECT: &str = "SELECT l.*, l.rowid AS enrol_order, w.status AS workflow_status
  FROM leads l JOIN workflows w ON w.id = l.workflow_id";

/// Rows per multi-row statement (14 columns each stays far below SQLite's variable limit).
const INSERT_CHUNK: usize = 400;

pub(crate) struct SqlEnrolment {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    org: String,
    workflow_id: String,
    /// Where leads start (an active workflow); `None` enrols them `pending`.
    entry: Option<String>,
    reenrollment: Reenrollment,
    /// The workflow's status when the enrolment began.
    status: WorkflowStatus,
    backend: Backend,
    now: i64,
    enrolled: u64,
    duplicates: u64,
    last_id: Option<String>,
    keys: HashSet<String>,
}

pub(crate) async fn begin_enrolment(store: &SqlStore, org: &str, workflow_id: &str) -> StoreResult<SqlEnrolment> {
    let mut tx = store.writer.begin().await.db()?;
    let workflow = load_workflow(&mut tx, org, workflow_id).await?;
    if workflow.status.is_final() {
        return Err(StoreError::conflict(
            "workflow_final",
            format!("workflow is {}; it takes no more leads", workflow.status),
        ));
    }
    let entry = if workflow.status == WorkflowStatus::Active {
        let nodes = load_nodes(&mut tx, workflow_id).await?;
        let edges = load_edges(&mut tx, workflow_id).await?;
        let graph = graph_of(workflow.entry_node_id.clone(), &nodes, &edges);
        Some(
            graph
                .entry()
                .map_err(|p| StoreError::conflict(p.code, p.message))?
                .id
                .clone(),
        )
    } else {
        None
    };
    Ok(SqlEnrolment {
        tx,
        org: org.to_string(),
        workflow_id: workflow_id.to_string(),
        entry,
        reenrollment: workflow.settings.reenrollment,
        status: workflow.status,
        backend: store.backend,
        now: now_ms(),
        enrolled: 0,
        duplicates: 0,
        last_id: None,
        keys: HashSet::new(),
    })
}

/// `($1, $2, ...), ($k, ...)`: `rows` groups of `per_row` numbered parameters, starting after `first - 1`.
fn placeholders(rows: usize, per_row: usize, first: usize) -> String {
    let group = |r: usize| {
        let params: Vec<String> = (0..per_row).map(|c| format!("${}", first + r * per_row + c)).collect();
        format!("({})", params.join(", "))
    };
    (0..rows).map(group).collect::<Vec<_>>().join(", ")
}

impl SqlEnrolment {
    /// Numbers of `chunk` that block enrolment: already enrolled (ever, or still open, by the rule).
    async fn blocked(&mut self, chunk: &[&LeadCandidate]) -> StoreResult<HashSet<String>> {
        let open_only = match self.reenrollment {
            Reenrollment::Never => "",
            Reenrollment::AfterExit => " AND status IN ('pending', 'in_progress')",
        };
        let sql = format!(
            "SELECT phone_number FROM leads WHERE workflow_id = $1 AND phone_number IN ({}){open_only}",
            (2..chunk.len() + 2)
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut query = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(&self.workflow_id);
        for lead in chunk {
            query = query.bind(&lead.phone.number);
        }
        Ok(query.fetch_all(&mut *self.tx).await.db()?.into_iter().collect())
    }

    async fn insert(&mut self, chunk: &[&LeadCandidate]) -> StoreResult<()> {
        let sql = format!(
            "INSERT INTO leads (id, organization_id, workflow_id, phone_number, phone_country, metadata, timezone, status,
                 state, current_node_id, due_at, enrolled_at, created_at, updated_at) VALUES {}",
            placeholders(chunk.len(), 14, 1)
        );
        let (status, state, due) = match &self.entry {
            Some(_) => ("in_progress", Some(LeadState::Ready.as_str()), Some(self.now)),
            None => ("pending", None, None),
        };
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for lead in chunk {
            let id = ids::new_id(ids::LEAD);
            query = query
                .bind(id.clone())
                .bind(self.org.clone())
                .bind(self.workflow_id.clone())
                .bind(lead.phone.number.clone())
                .bind(lead.phone.country.clone())
                .bind(json_text(&lead.variables))
                .bind(lead.timezone.clone())
                .bind(status)
                .bind(state)
                .bind(self.entry.clone())
                .bind(due)
                .bind(self.now)
                .bind(self.now)
                .bind(self.now);
            self.last_id = Some(id);
        }
        query.execute(&mut *self.tx).await.db()?;
        self.enrolled += chunk.len() as u64;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Enrolment for SqlEnrolment {
    async fn add(&mut self, leads: Vec<LeadCandidate>) -> StoreResult<()> {
        for chunk in leads.chunks(INSERT_CHUNK) {
            let mut seen = HashSet::new();
            let unique: Vec<&LeadCandidate> = chunk.iter().filter(|l| seen.insert(l.phone.number.as_str())).collect();
            let blocked = self.blocked(&unique).await?;
            let fresh: Vec<&LeadCandidate> = unique
                .into_iter()
                .filter(|l| !blocked.contains(&l.phone.number))
                .collect();
            self.duplicates += (chunk.len() - fresh.len()) as u64;
            for lead in &fresh {
                self.keys.extend(lead.variables.keys().cloned());
            }
            if !fresh.is_empty() {
                self.insert(&fresh).await?;
            }
        }
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> StoreResult<EnrolOutcome> {
        // The workflow may have moved on during the upload (cancelled, completed, activated): leads inserted for
        // the status it had then would be stranded, so the upload is refused and rolled back.
        let status = lock_workflow(&mut self.tx, self.backend, &self.workflow_id).await?;
        if status.as_deref() != Some(self.status.as_str()) {
            return Err(StoreError::conflict(
                "workflow_changed",
                "the workflow's status changed during the upload; nothing was enrolled, send it again",
            ));
        }
        for key in &self.keys {
            sqlx::query("INSERT INTO lead_variable_keys (workflow_id, key) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(&self.workflow_id)
                .bind(key)
                .execute(&mut *self.tx)
                .await
                .db()?;
        }
        let single = match (&self.last_id, self.enrolled) {
            (Some(id), 1) => Some(load_lead(&mut self.tx, &self.org, &self.workflow_id, id).await?),
            _ => None,
        };
        if self.entry.is_some() && self.enrolled > 0 {
            notify_work(&mut self.tx, self.backend).await?;
        }
        self.tx.commit().await.db()?;
        Ok(EnrolOutcome {
            enrolled_count: self.enrolled,
            single,
            duplicates_skipped: self.duplicates,
        })
    }
}

/// The workflow's status, its row locked on PostgreSQL so that changes of status and of its leads serialise.
async fn lock_workflow(conn: &mut AnyConnection, backend: Backend, workflow_id: &str) -> StoreResult<Option<String>> {
    let lock = if backend == Backend::Postgres {
        " FOR UPDATE"
    } else {
        ""
    };
    let sql = format!("SELECT status FROM workflows WHERE id = $1{lock}");
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(workflow_id)
        .fetch_optional(conn)
        .await
        .db()
}

async fn load_lead(conn: &mut AnyConnection, org: &str, workflow_id: &str, lead_id: &str) -> StoreResult<Lead> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{LEAD_SELECT} WHERE l.id = $1 AND l.workflow_id = $2 AND l.organization_id = $3"
    )))
    .bind(lead_id)
    .bind(workflow_id)
    .bind(org)
    .fetch_optional(conn)
    .await
    .db()?
    .ok_or(not_found("lead"))?;
    rows::lead(&row)
}

pub(crate) async fn list_leads(
    store: &SqlStore,
    org: &str,
    workflow_id: &str,
    filter: &LeadFilter,
    page: PageRequest,
) -> StoreResult<Page<Lead>> {
    let mut conn = store.read().await?;
    load_workflow(&mut conn, org, workflow_id).await?;
    // A paused workflow shows its waiting leads as `paused`; the state filter follows what is shown.
    let condition = "l.workflow_id = $1 AND ($2 IS NULL OR l.status = $2)
        AND ($3 IS NULL OR (l.status = 'in_progress' AND CASE WHEN w.status = 'paused'
             AND l.state IN ('ready', 'waiting', 'outside_hours', 'throttled') THEN 'paused' ELSE l.state END = $3))
        AND ($4 IS NULL OR l.current_node_id = $4) AND ($5 IS NULL OR l.phone_number = $5)";
    let status = filter.status.map(|s| s.as_str());
    let state = filter.state.map(|s| s.as_str());
    let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM leads l JOIN workflows w ON w.id = l.workflow_id WHERE {condition}"
    )))
    .bind(workflow_id)
    .bind(status)
    .bind(state)
    .bind(&filter.current_node_id)
    .bind(&filter.phone_number)
    .fetch_one(&mut *conn)
    .await
    .db()?;
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{LEAD_SELECT} WHERE {condition} ORDER BY l.enrolled_at DESC, l.rowid DESC LIMIT $6 OFFSET $7"
    )))
    .bind(workflow_id)
    .bind(status)
    .bind(state)
    .bind(&filter.current_node_id)
    .bind(&filter.phone_number)
    .bind(page.limit as i64)
    .bind(page.offset() as i64)
    .fetch_all(&mut *conn)
    .await
    .db()?;
    Ok(Page {
        data: rows.iter().map(rows::lead).collect::<StoreResult<_>>()?,
        total: total as u64,
    })
}

pub(crate) async fn get_lead(store: &SqlStore, org: &str, workflow_id: &str, lead_id: &str) -> StoreResult<Lead> {
    let mut conn = store.read().await?;
    load_workflow(&mut conn, org, workflow_id).await?;
    load_lead(&mut conn, org, workflow_id, lead_id).await
}

pub(crate) async fn remove_lead(store: &SqlStore, org: &str, workflow_id: &str, lead_id: &str) -> StoreResult<()> {
    let now = now_ms();
    let mut tx = store.writer.begin().await.db()?;
    load_workflow(&mut tx, org, workflow_id).await?;
    lock_workflow(&mut tx, store.backend, workflow_id).await?;
    let lead = load_lead(&mut tx, org, workflow_id, lead_id).await?;
    if lead.status.is_final() {
        return Err(StoreError::conflict(
            "lead_final",
            format!("lead is already {}", lead.status),
        ));
    }
    remove_leads_where(&mut tx, "id = $3", lead_id, "removed_via_api", now).await?;
    maybe_complete(&mut tx, workflow_id, now).await?;
    tx.commit().await.db()?;
    Ok(())
}

pub(crate) async fn lead_history(
    store: &SqlStore,
    org: &str,
    workflow_id: &str,
    lead_id: &str,
) -> StoreResult<(Lead, Vec<HistoryEntry>)> {
    let mut conn = store.read().await?;
    load_workflow(&mut conn, org, workflow_id).await?;
    let lead = load_lead(&mut conn, org, workflow_id, lead_id).await?;
    let rows = sqlx::query("SELECT * FROM lead_history WHERE lead_id = $1 ORDER BY idx")
        .bind(lead_id)
        .fetch_all(&mut *conn)
        .await
        .db()?;
    let entries = rows.iter().map(rows::history_entry).collect::<StoreResult<_>>()?;
    Ok((lead, entries))
}

pub(crate) async fn variable_keys(store: &SqlStore, org: &str, workflow_id: &str) -> StoreResult<Vec<String>> {
    let mut conn = store.read().await?;
    load_workflow(&mut conn, org, workflow_id).await?;
    sqlx::query_scalar("SELECT key FROM lead_variable_keys WHERE workflow_id = $1 ORDER BY key")
        .bind(workflow_id)
        .fetch_all(&mut *conn)
        .await
        .db()
}

pub(crate) async fn allowed_destinations(
    store: &SqlStore,
    org: &str,
    workflow_id: &str,
) -> StoreResult<Option<Vec<String>>> {
    let mut conn = store.read().await?;
    load_workflow(&mut conn, org, workflow_id).await?;
    let nodes = load_nodes(&mut conn, workflow_id).await?;
    let numbers: HashSet<String> = nodes
        .iter()
        .filter_map(|n| match NodeConfig::parse(n.node_type, &n.config) {
            Ok(NodeConfig::VoiceCall(c)) => c.from_phone_number,
            _ => None,
        })
        .collect();
    if numbers.is_empty() {
        return Ok(None);
    }
    let mut allowed = HashSet::new();
    for number in numbers {
        let row = sqlx::query(
            "SELECT allowed_destination_countries FROM phone_numbers WHERE organization_id = $1 AND phone_number = $2",
        )
        .bind(org)
        .bind(&number)
        .fetch_optional(&mut *conn)
        .await
        .db()?;
        if let Some(row) = row {
            let text: String = row.get(0);
            allowed.extend(serde_json::from_str::<Vec<String>>(&text).unwrap_or_default());
        }
    }
    Ok(Some(allowed.into_iter().collect()))
}

pub(crate) async fn list_calls(
    store: &SqlStore,
    org: &str,
    filter: &CallFilter,
    page: PageRequest,
) -> StoreResult<Page<Call>> {
    let mut conn = store.read().await?;
    let condition =
        "organization_id = $1 AND ($2 IS NULL OR workflow_id = $2) AND ($3 IS NULL OR workflow_lead_id = $3)
        AND ($4 IS NULL OR agent_id = $4) AND ($5 IS NULL OR status = $5) AND ($6 IS NULL OR created_at >= $6)
        AND ($7 IS NULL OR created_at <= $7)";
    macro_rules! bind_filter {
        ($q:expr) => {
            $q.bind(org)
                .bind(&filter.workflow_id)
                .bind(&filter.workflow_lead_id)
                .bind(&filter.agent_id)
                .bind(&filter.status)
                .bind(filter.from)
                .bind(filter.to)
        };
    }
    let total: i64 = bind_filter!(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM calls WHERE {condition}"
    ))))
    .fetch_one(&mut *conn)
    .await
    .db()?;
    let rows = bind_filter!(sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT * FROM calls WHERE {condition} ORDER BY created_at DESC, rowid DESC LIMIT $8 OFFSET $9"
    ))))
    .bind(page.limit as i64)
    .bind(page.offset() as i64)
    .fetch_all(&mut *conn)
    .await
    .db()?;
    Ok(Page {
        data: rows.iter().map(rows::call).collect::<StoreResult<_>>()?,
        total: total as u64,
    })
}

pub(crate) async fn get_call(store: &SqlStore, org: &str, id: &str) -> StoreResult<Call> {
    let row = sqlx::query("SELECT * FROM calls WHERE id = $1 AND organization_id = $2")
        .bind(id)
        .bind(org)
        .fetch_optional(&mut *store.read().await?)
        .await
        .db()?
        .ok_or(not_found("call"))?;
    rows::call(&row)
}
