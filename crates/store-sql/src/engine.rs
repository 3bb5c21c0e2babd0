//! Claims and fenced batch commits for the engine.

use crate::rows::{self, Db, json_text};
use crate::workflows::{active_numbers, graph_of, load_edges, load_nodes, wake_throttled};
use crate::{Backend, SqlStore, maybe_complete, notify_work};
use sqlx::Row;
use std::collections::{HashMap, HashSet};
use switchboard_domain::model::{LeadStatus, WorkflowStatus};
use switchboard_store::engine::*;
use switchboard_store::{CallsInFlight, StoreResult};

pub(crate) async fn claim_due(
    store: &SqlStore,
    owner: &str,
    now: i64,
    lease_until: i64,
    limit: u32,
) -> StoreResult<Vec<LeadRow>> {
    // PostgreSQL processes skip rows another claim holds; SQLite's single writer serialises claims anyway.
    let lock = match store.backend {
        Backend::Postgres => "FOR UPDATE OF l SKIP LOCKED",
        Backend::Sqlite => "",
    };
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE leads SET lease_owner = $1, lease_until = $2
         WHERE id IN (
             SELECT l.id FROM leads l JOIN workflows w ON w.id = l.workflow_id
             WHERE l.due_at <= $3 AND l.status = 'in_progress' AND (l.lease_until IS NULL OR l.lease_until < $3)
               AND (w.status = 'active' OR l.state IN ('calling', 'running'))
             ORDER BY l.due_at, l.rowid LIMIT $4 {lock})
         RETURNING *, rowid AS enrol_order"
    )))
    .bind(owner)
    .bind(lease_until)
    .bind(now)
    .bind(limit as i64)
    .fetch_all(&store.writer)
    .await
    .db()?;
    let mut leads = rows.iter().map(rows::lead_row).collect::<StoreResult<Vec<_>>>()?;
    leads.sort_by_key(|l| (l.due_at, l.enrol_order));
    Ok(leads)
}

pub(crate) async fn load_lead_rows(store: &SqlStore, lead_ids: &[String]) -> StoreResult<Vec<LeadRow>> {
    let mut out = Vec::with_capacity(lead_ids.len());
    for chunk in lead_ids.chunks(500) {
        let params: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT *, rowid AS enrol_order FROM leads WHERE id IN ({})",
            params.join(", ")
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in chunk {
            query = query.bind(id.clone());
        }
        for row in query.fetch_all(&store.writer).await.db()? {
            out.push(rows::lead_row(&row)?);
        }
    }
    Ok(out)
}

/// The workflow as the engine runs it; unlike the API's view it skips the lead counts.
pub(crate) async fn engine_snapshot(store: &SqlStore, workflow_id: &str) -> StoreResult<Option<WorkflowSnapshot>> {
    let mut conn = store.read().await?;
    let Some(row) = sqlx::query("SELECT * FROM workflows WHERE id = $1")
        .bind(workflow_id)
        .fetch_optional(&mut *conn)
        .await
        .db()?
    else {
        return Ok(None);
    };
    let org: String = row.get("organization_id");
    let status: String = row.get("status");
    let nodes = load_nodes(&mut conn, workflow_id).await?;
    let edges = load_edges(&mut conn, workflow_id).await?;
    Ok(Some(WorkflowSnapshot {
        id: workflow_id.to_string(),
        status: rows::parse_enum("workflow status", &status, WorkflowStatus::parse)?,
        revision: row.get("revision"),
        settings: rows::settings(&row)?,
        graph: graph_of(row.get("entry_node_id"), &nodes, &edges),
        numbers: active_numbers(&mut conn, &org).await?,
        organization_id: org,
    }))
}

pub(crate) async fn workflow_revisions(store: &SqlStore, workflow_ids: &[String]) -> StoreResult<HashMap<String, i64>> {
    let mut conn = store.read().await?;
    let mut out = HashMap::with_capacity(workflow_ids.len());
    for id in workflow_ids {
        let revision: Option<i64> = sqlx::query_scalar("SELECT revision FROM workflows WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await
            .db()?;
        if let Some(revision) = revision {
            out.insert(id.clone(), revision);
        }
    }
    Ok(out)
}

pub(crate) async fn calls_in_flight(
    store: &SqlStore,
    workflow_ids: &[String],
    organization_ids: &[String],
) -> StoreResult<CallsInFlight> {
    let mut conn = store.writer.acquire().await.db()?;
    let mut count = async |column: &str, ids: &[String]| -> StoreResult<HashMap<String, u32>> {
        let mut out = HashMap::with_capacity(ids.len());
        for id in ids {
            // Served by the partial indexes `leads_calling` and `leads_calling_org`.
            let sql = format!("SELECT count(*) FROM leads WHERE {column} = $1 AND state = 'calling'");
            let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(id)
                .fetch_one(&mut *conn)
                .await
                .db()?;
            out.insert(id.clone(), n as u32);
        }
        Ok(out)
    };
    let by_workflow = count("workflow_id", workflow_ids).await?;
    let by_organization = count("organization_id", organization_ids).await?;
    Ok(CallsInFlight {
        by_workflow,
        by_organization,
    })
}

/// What a batch commit did, gathered while its changes are applied.
#[derive(Default)]
struct Applied {
    result: CommitResult,
    touched: HashSet<String>,
    /// History entries of the applied changes, written together at the end.
    history: Vec<(String, HistoryWrite)>,
    /// (workflow, organization) of leads this batch throttled.
    throttled: HashSet<(String, String)>,
    /// Call slots freed, per workflow and per organization.
    freed_workflows: HashMap<String, u32>,
    freed_orgs: HashMap<String, u32>,
    finished: HashSet<String>,
}

impl Applied {
    /// Applies one change if its lead's `seq` still matches; false when it was refused.
    async fn apply(
        &mut self,
        conn: &mut sqlx::AnyConnection,
        owner: &str,
        now: i64,
        change: &LeadChange,
    ) -> StoreResult<bool> {
        let lead = &change.lead;
        let updated = sqlx::query(
        "UPDATE leads SET status = $1, state = $2, current_node_id = $3, due_at = $4, queued_at = $5, exit_reason = $6,
             seq = seq + 1, step_seq = $7, attempt = $8, call_count = $9, instant_steps = $10, visit = $11, facts = $12,
             pending_outcome = $13, current_call_id = $14, removal = $15, lease_owner = $16, lease_until = $17,
             updated_at = $18, finished_at = $19
         WHERE id = $20 AND seq = $21",
    )
    .bind(lead.status.as_str())
    .bind(lead.state.map(|s| s.as_str()))
    .bind(&lead.current_node_id)
    .bind(lead.due_at)
    .bind(lead.queued_at)
    .bind(&lead.exit_reason)
    .bind(lead.step_seq)
    .bind(lead.attempt as i64)
    .bind(lead.call_count as i64)
    .bind(lead.instant_steps as i64)
    .bind(lead.visit as i64)
    .bind(json_text(&lead.facts))
    .bind(&lead.pending_outcome)
    .bind(&lead.current_call_id)
    .bind(&lead.removal)
    .bind(change.lease_until.map(|_| owner))
    .bind(change.lease_until)
    .bind(now)
    .bind(lead.finished_at)
    .bind(&lead.id)
    .bind(change.expected_seq)
    .execute(&mut *conn)
    .await
    .db()?;
        if updated.rows_affected() == 0 {
            self.result.rejected.push(lead.id.clone());
            return Ok(false);
        }
        for entry in merged_history(&change.history) {
            self.history.push((lead.id.clone(), entry));
        }
        for call in &change.calls {
            write_call(&mut *conn, call).await?;
        }
        self.touched.insert(lead.workflow_id.clone());
        if lead.state == Some(switchboard_domain::model::LeadState::Throttled) {
            self.throttled
                .insert((lead.workflow_id.clone(), lead.organization_id.clone()));
        }
        if change.freed_call_slot {
            *self.freed_workflows.entry(lead.workflow_id.clone()).or_default() += 1;
            *self.freed_orgs.entry(lead.organization_id.clone()).or_default() += 1;
        }
        if lead.status != LeadStatus::InProgress {
            self.finished.insert(lead.workflow_id.clone());
        }
        self.result.applied.push(lead.id.clone());
        Ok(true)
    }
}

/// A change's history writes with those to the same entry folded into one, as the upsert would have left it:
/// later values win, but a missing outcome, edge, call or detail keeps the earlier one.
fn merged_history(writes: &[HistoryWrite]) -> Vec<HistoryWrite> {
    let mut merged: Vec<HistoryWrite> = Vec::with_capacity(writes.len());
    for write in writes {
        match merged.iter_mut().find(|m| m.idx == write.idx) {
            Some(entry) => {
                entry.status = write.status;
                entry.outcome = write.outcome.clone().or(entry.outcome.take());
                entry.edge_id = write.edge_id.clone().or(entry.edge_id.take());
                entry.next_node_id = write.next_node_id.clone().or(entry.next_node_id.take());
                entry.call_id = write.call_id.clone().or(entry.call_id.take());
                entry.attempts = write.attempts.or(entry.attempts);
                entry.detail = write.detail.clone().or(entry.detail.take());
                entry.exited_at = write.exited_at;
            }
            None => merged.push(write.clone()),
        }
    }
    merged
}

/// History rows per statement (14 parameters each).
const HISTORY_CHUNK: usize = 200;

/// Upserts history entries, many rows a statement; `entered_at` and the node's name stay from the first write.
async fn write_history(conn: &mut sqlx::AnyConnection, entries: &[(String, HistoryWrite)]) -> StoreResult<()> {
    for chunk in entries.chunks(HISTORY_CHUNK) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|r| {
                format!(
                    "({})",
                    (1..=14)
                        .map(|c| format!("${}", r * 14 + c))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO lead_history (lead_id, idx, node_id, node_label, node_type, status, outcome, edge_id, next_node_id,
                 call_id, attempts, detail, entered_at, exited_at)
             VALUES {}
             ON CONFLICT (lead_id, idx) DO UPDATE SET status = excluded.status,
                 outcome = COALESCE(excluded.outcome, lead_history.outcome),
                 edge_id = COALESCE(excluded.edge_id, lead_history.edge_id),
                 next_node_id = COALESCE(excluded.next_node_id, lead_history.next_node_id),
                 call_id = COALESCE(excluded.call_id, lead_history.call_id),
                 attempts = COALESCE(excluded.attempts, lead_history.attempts),
                 detail = COALESCE(excluded.detail, lead_history.detail),
                 exited_at = excluded.exited_at",
            rows.join(", ")
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (lead_id, entry) in chunk {
            query = query
                .bind(lead_id.clone())
                .bind(entry.idx as i64)
                .bind(entry.node_id.clone())
                .bind(entry.node_label.clone())
                .bind(entry.node_type.as_str())
                .bind(entry.status.as_str())
                .bind(entry.outcome.clone())
                .bind(entry.edge_id.clone())
                .bind(entry.next_node_id.clone())
                .bind(entry.call_id.clone())
                .bind(entry.attempts.map(i64::from))
                .bind(entry.detail.as_ref().map(json_text))
                .bind(entry.entered_at)
                .bind(entry.exited_at);
        }
        query.execute(&mut *conn).await.db()?;
    }
    Ok(())
}

/// Calls in flight with `column` = `id`, as the transaction sees them.
async fn calling(conn: &mut sqlx::AnyConnection, column: &str, id: &str) -> StoreResult<u32> {
    let sql = format!("SELECT count(*) FROM leads WHERE {column} = $1 AND state = 'calling'");
    let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_one(conn)
        .await
        .db()?;
    Ok(n as u32)
}

pub(crate) async fn commit_changes(
    store: &SqlStore,
    owner: &str,
    now: i64,
    changes: Vec<LeadChange>,
    org_max_concurrent_calls: u32,
) -> StoreResult<CommitResult> {
    let mut tx = store.writer.begin().await.db()?;
    // On PostgreSQL the workflow (and, for dials, organization) rows are locked, in id order, so the revision
    // fence and the call caps hold against every other process; SQLite's single writer gives the same.
    let lock = match store.backend {
        Backend::Postgres => " FOR UPDATE",
        Backend::Sqlite => "",
    };
    let mut workflow_ids: Vec<String> = changes.iter().map(|c| c.lead.workflow_id.clone()).collect();
    workflow_ids.sort();
    workflow_ids.dedup();
    let mut workflows = HashMap::new();
    for id in &workflow_ids {
        let sql = format!("SELECT revision, settings FROM workflows WHERE id = $1{lock}");
        if let Some(row) = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .db()?
        {
            let cap = rows::settings(&row)?.max_concurrent_calls;
            workflows.insert(id.clone(), (row.get::<i64, _>("revision"), cap));
        }
    }
    // Leads due within a second are news for the other processes (freed slots wake throttled leads too).
    let soon_due = changes
        .iter()
        .any(|c| c.freed_call_slot || c.lead.due_at.is_some_and(|due| due <= now + 1000));
    let (current, stale): (Vec<LeadChange>, Vec<LeadChange>) = changes.into_iter().partition(|c| {
        workflows
            .get(&c.lead.workflow_id)
            .is_some_and(|w| w.0 == c.workflow_revision)
    });
    let mut applied = Applied::default();
    applied.result.rejected.extend(stale.into_iter().map(|c| c.lead.id));
    // Dials go last: each is checked against the caps with every other change of the batch applied.
    let (dials, others): (Vec<LeadChange>, Vec<LeadChange>) = current
        .into_iter()
        .partition(|c| c.calls.iter().any(|w| matches!(w, CallWrite::Insert(_))));
    for change in &others {
        applied.apply(&mut tx, owner, now, change).await?;
    }
    if !dials.is_empty() {
        let mut orgs: Vec<String> = dials.iter().map(|c| c.lead.organization_id.clone()).collect();
        orgs.sort();
        orgs.dedup();
        let mut org_calls = HashMap::new();
        for org in &orgs {
            let sql = format!("SELECT id FROM organizations WHERE id = $1{lock}");
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(org)
                .execute(&mut *tx)
                .await
                .db()?;
            org_calls.insert(org.clone(), calling(&mut tx, "organization_id", org).await?);
        }
        let mut workflow_calls = HashMap::new();
        for change in &dials {
            let (workflow, org) = (&change.lead.workflow_id, &change.lead.organization_id);
            if !workflow_calls.contains_key(workflow) {
                workflow_calls.insert(workflow.clone(), calling(&mut tx, "workflow_id", workflow).await?);
            }
            // A lead whose call just ended and who dials again holds one of the counted slots itself.
            let own = u32::from(change.freed_call_slot);
            let workflow_full = workflow_calls[workflow].saturating_sub(own) >= workflows[workflow].1;
            if workflow_full || org_calls[org].saturating_sub(own) >= org_max_concurrent_calls {
                applied.result.rejected.push(change.lead.id.clone());
            } else if applied.apply(&mut tx, owner, now, change).await? {
                *workflow_calls.get_mut(workflow).expect("counted") += 1 - own;
                *org_calls.get_mut(org).expect("counted") += 1 - own;
            }
        }
    }
    let Applied {
        result,
        history,
        throttled,
        touched,
        freed_workflows,
        freed_orgs,
        finished,
    } = applied;
    write_history(&mut tx, &history).await?;
    // A lead throttled on counts read before another process freed a slot would wait for a wake-up that already
    // happened: wherever this batch throttled leads, free slots (as committed now) wake that many again.
    for (workflow_id, organization_id) in &throttled {
        let free = |cap: u32, calling: u32| cap.saturating_sub(calling);
        let cap = workflows.get(workflow_id).map(|w| w.1).unwrap_or(0);
        let workflow_free = free(cap, calling(&mut tx, "workflow_id", workflow_id).await?);
        let org_free = free(
            org_max_concurrent_calls,
            calling(&mut tx, "organization_id", organization_id).await?,
        );
        if workflow_free.min(org_free) > 0 {
            wake_throttled(
                &mut tx,
                store.backend,
                "workflow_id",
                workflow_id,
                Some(workflow_free.min(org_free)),
            )
            .await?;
        }
    }
    if soon_due {
        notify_work(&mut tx, store.backend).await?;
    }
    for id in &result.rejected {
        sqlx::query("UPDATE leads SET lease_owner = NULL, lease_until = NULL WHERE id = $1 AND lease_owner = $2")
            .bind(id)
            .bind(owner)
            .execute(&mut *tx)
            .await
            .db()?;
    }
    // Each freed slot wakes one throttled lead of its workflow and one of its organization (another
    // workflow's lead may have been waiting for the organization's cap); those still blocked wait again.
    for (workflow_id, freed) in &freed_workflows {
        wake_throttled(&mut tx, store.backend, "workflow_id", workflow_id, Some(*freed)).await?;
    }
    for (organization_id, freed) in &freed_orgs {
        wake_throttled(&mut tx, store.backend, "organization_id", organization_id, Some(*freed)).await?;
    }
    for workflow_id in &touched {
        // At most once a second: every process's batches would otherwise queue on this row.
        sqlx::query(
            "UPDATE workflows SET last_triggered_at = $1
             WHERE id = $2 AND (last_triggered_at IS NULL OR last_triggered_at < $1 - 1000)",
        )
        .bind(now)
        .bind(workflow_id)
        .execute(&mut *tx)
        .await
        .db()?;
    }
    for workflow_id in &finished {
        maybe_complete(&mut tx, workflow_id, now).await?;
    }
    tx.commit().await.db()?;
    Ok(result)
}

async fn write_call(conn: &mut sqlx::AnyConnection, call: &CallWrite) -> StoreResult<()> {
    match call {
        CallWrite::Insert(c) => {
            sqlx::query(
                "INSERT INTO calls (id, organization_id, workflow_id, workflow_lead_id, node_id, agent_id, from_phone_number,
                     to_phone_number, attempt, status, outcome, end_reason, duration_seconds, transcript, summary, analysis,
                     recording_url, provider, provider_call_id, idempotency_key, created_at, answered_at, ended_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23)",
            )
            .bind(&c.id)
            .bind(&c.organization_id)
            .bind(&c.workflow_id)
            .bind(&c.workflow_lead_id)
            .bind(&c.node_id)
            .bind(&c.agent_id)
            .bind(&c.from_phone_number)
            .bind(&c.to_phone_number)
            .bind(c.attempt as i64)
            .bind(c.status.as_str())
            .bind(c.outcome.map(|o| o.as_str()))
            .bind(&c.end_reason)
            .bind(c.duration_seconds.map(i64::from))
            .bind(&c.transcript)
            .bind(&c.summary)
            .bind(c.analysis.as_ref().map(json_text))
            .bind(&c.recording_url)
            .bind(&c.provider)
            .bind(&c.provider_call_id)
            .bind(&c.idempotency_key)
            .bind(c.created_at)
            .bind(c.answered_at)
            .bind(c.ended_at)
            .execute(conn)
            .await
            .db()?;
        }
        CallWrite::Finish(f) => {
            sqlx::query(
                "UPDATE calls SET status = $1, outcome = $2, end_reason = $3, duration_seconds = $4, transcript = $5, summary = $6,
                     analysis = $7, answered_at = COALESCE(answered_at, $8), ended_at = $9
                 WHERE id = $10 AND ended_at IS NULL",
            )
            .bind(f.status.as_str())
            .bind(f.outcome.as_str())
            .bind(&f.end_reason)
            .bind(f.duration_seconds as i64)
            .bind(&f.transcript)
            .bind(&f.summary)
            .bind(f.analysis.as_ref().map(json_text))
            .bind(f.answered_at)
            .bind(f.ended_at)
            .bind(&f.id)
            .execute(conn)
            .await
            .db()?;
        }
    }
    Ok(())
}

pub(crate) async fn next_due_at(store: &SqlStore) -> StoreResult<Option<i64>> {
    let row = sqlx::query(
        "SELECT l.due_at, l.lease_until FROM leads l JOIN workflows w ON w.id = l.workflow_id
         WHERE l.due_at IS NOT NULL AND l.status = 'in_progress' AND (w.status = 'active' OR l.state IN ('calling', 'running'))
         ORDER BY l.due_at LIMIT 1",
    )
    .fetch_optional(&mut *store.read().await?)
    .await
    .db()?;
    Ok(row.map(|r| {
        let due: i64 = r.get(0);
        let lease: Option<i64> = r.get(1);
        due.max(lease.unwrap_or(i64::MIN))
    }))
}

/// SQLite serves one process, so a restarting process takes every lease back at once and re-drives steps
/// that were in flight. On PostgreSQL other processes may hold live leases: they are left to expire.
pub(crate) async fn recover_after_restart(store: &SqlStore, now: i64) -> StoreResult<()> {
    if store.backend == Backend::Postgres {
        return Ok(());
    }
    let mut tx = store.writer.begin().await.db()?;
    // Steps in flight in a process that is gone are re-driven at once, with their original idempotency key.
    sqlx::query("UPDATE leads SET due_at = $1 WHERE state = 'running' AND status = 'in_progress' AND due_at > $2")
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await
        .db()?;
    sqlx::query("UPDATE leads SET lease_owner = NULL, lease_until = NULL WHERE lease_owner IS NOT NULL")
        .execute(&mut *tx)
        .await
        .db()?;
    sqlx::query("UPDATE leads SET due_at = queued_at WHERE state = 'throttled' AND due_at IS NULL")
        .execute(&mut *tx)
        .await
        .db()?;
    tx.commit().await.db()?;
    Ok(())
}
