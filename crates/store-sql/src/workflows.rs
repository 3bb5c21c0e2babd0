//! Organizations, keys, agents, phone numbers, workflows, nodes and edges.

use crate::rows::{self, Db, json_text};
use crate::{
    Backend, SqlStore, bump_revision, maybe_complete, not_found, notify_work, remove_leads_where, skip_open_entries,
};
use sqlx::{AnyConnection, Row};
use switchboard_domain::graph::{EdgeDef, Graph, NodeDef};
use switchboard_domain::ids;
use switchboard_domain::model::WorkflowStatus;
use switchboard_domain::time::now_ms;
use switchboard_store::activation::activation_report;
use switchboard_store::engine::WorkflowSnapshot;
use switchboard_store::records::*;
use switchboard_store::*;

const WORKFLOW_SELECT: &str = "SELECT w.*,
    (SELECT count(*) FROM nodes n WHERE n.workflow_id = w.id) AS node_count,
    (SELECT count(*) FROM edges e WHERE e.workflow_id = w.id) AS edge_count
  FROM workflows w";

pub(crate) async fn ensure_organization(store: &SqlStore, name: &str) -> StoreResult<Organization> {
    let mut conn = store.writer.acquire().await.db()?;
    sqlx::query("INSERT INTO organizations (id, name, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING")
        .bind(ids::new_id(ids::ORGANIZATION))
        .bind(name)
        .bind(now_ms())
        .execute(&mut *conn)
        .await
        .db()?;
    let row = sqlx::query("SELECT * FROM organizations WHERE name = $1")
        .bind(name)
        .fetch_one(&mut *conn)
        .await
        .db()?;
    Ok(Organization {
        id: row.get("id"),
        name: row.get("name"),
        created_at: row.get("created_at"),
    })
}

fn api_key(row: &sqlx::any::AnyRow) -> ApiKeyRecord {
    ApiKeyRecord {
        id: row.get("id"),
        organization_id: row.get("organization_id"),
        organization_name: row.get("organization_name"),
        name: row.get("name"),
        created_at: row.get("created_at"),
        revoked_at: row.get("revoked_at"),
    }
}

const KEY_SELECT: &str =
    "SELECT k.*, o.name AS organization_name FROM api_keys k JOIN organizations o ON o.id = k.organization_id";

pub(crate) async fn create_api_key(
    store: &SqlStore,
    org: &str,
    name: Option<&str>,
    key_id: &str,
    hash: &str,
) -> StoreResult<ApiKeyRecord> {
    let mut conn = store.writer.acquire().await.db()?;
    sqlx::query(
        "INSERT INTO api_keys (id, organization_id, name, secret_hash, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(key_id)
    .bind(org)
    .bind(name)
    .bind(hash)
    .bind(now_ms())
    .execute(&mut *conn)
    .await
    .db()?;
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("{KEY_SELECT} WHERE k.id = $1")))
        .bind(key_id)
        .fetch_one(&mut *conn)
        .await
        .db()?;
    Ok(api_key(&row))
}

pub(crate) async fn list_api_keys(store: &SqlStore) -> StoreResult<Vec<ApiKeyRecord>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!("{KEY_SELECT} ORDER BY k.created_at, k.id")))
        .fetch_all(&mut *store.read().await?)
        .await
        .db()?;
    Ok(rows.iter().map(api_key).collect())
}

pub(crate) async fn revoke_api_key(store: &SqlStore, key_id: &str) -> StoreResult<bool> {
    let done = sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
        .bind(now_ms())
        .bind(key_id)
        .execute(&store.writer)
        .await
        .db()?;
    Ok(done.rows_affected() > 0)
}

pub(crate) async fn api_key_auth(store: &SqlStore, key_id: &str) -> StoreResult<Option<KeyAuth>> {
    let row = sqlx::query("SELECT organization_id, secret_hash, revoked_at FROM api_keys WHERE id = $1")
        .bind(key_id)
        .fetch_optional(&mut *store.read().await?)
        .await
        .db()?;
    Ok(row.map(|r| KeyAuth {
        organization_id: r.get("organization_id"),
        secret_hash: r.get("secret_hash"),
        revoked: r.get::<Option<i64>, _>("revoked_at").is_some(),
    }))
}

pub(crate) async fn idempotency_begin(
    store: &SqlStore,
    api_key_id: &str,
    key: &str,
    fingerprint: &str,
    now: i64,
) -> StoreResult<IdempotencyBegin> {
    let mut tx = store.writer.begin().await.db()?;
    sqlx::query(
        "DELETE FROM idempotency_keys WHERE api_key_id = $1 AND key = $2
           AND (created_at < $3 OR (state = 'in_progress' AND created_at < $4))",
    )
    .bind(api_key_id)
    .bind(key)
    .bind(now - IDEMPOTENCY_TTL_MS)
    .bind(now - IDEMPOTENCY_STALE_MS)
    .execute(&mut *tx)
    .await
    .db()?;
    let row = sqlx::query("SELECT * FROM idempotency_keys WHERE api_key_id = $1 AND key = $2")
        .bind(api_key_id)
        .bind(key)
        .fetch_optional(&mut *tx)
        .await
        .db()?;
    let outcome = match row {
        None => {
            sqlx::query(
                "INSERT INTO idempotency_keys (api_key_id, key, fingerprint, state, created_at) VALUES ($1, $2, $3, 'in_progress', $4)",
            )
            .bind(api_key_id)
            .bind(key)
            .bind(fingerprint)
            .bind(now)
            .execute(&mut *tx)
            .await
            .db()?;
            IdempotencyBegin::Started
        }
        Some(row) if row.get::<String, _>("fingerprint") != fingerprint => IdempotencyBegin::Mismatch,
        Some(row) if row.get::<String, _>("state") == "in_progress" => IdempotencyBegin::InProgress,
        Some(row) => IdempotencyBegin::Replay {
            status: row.get::<i64, _>("status") as u16,
            content_type: row.get("content_type"),
            body: row.get("body"),
        },
    };
    tx.commit().await.db()?;
    Ok(outcome)
}

pub(crate) async fn create_agent(store: &SqlStore, org: &str, agent: NewAgent) -> StoreResult<Agent> {
    let now = now_ms();
    let id = ids::new_id(ids::AGENT);
    sqlx::query(
        "INSERT INTO agents (id, organization_id, name, prompt, welcome_message, voice, language, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&id)
    .bind(org)
    .bind(&agent.name)
    .bind(&agent.prompt)
    .bind(&agent.welcome_message)
    .bind(&agent.voice)
    .bind(&agent.language)
    .bind(now)
    .bind(now)
    .execute(&store.writer)
    .await
    .db()?;
    get_agent(&store.writer, org, &id).await
}

pub(crate) async fn get_agent(pool: &sqlx::AnyPool, org: &str, id: &str) -> StoreResult<Agent> {
    let row = sqlx::query("SELECT * FROM agents WHERE id = $1 AND organization_id = $2")
        .bind(id)
        .bind(org)
        .fetch_optional(pool)
        .await
        .db()?
        .ok_or(not_found("agent"))?;
    rows::agent(&row)
}

pub(crate) async fn list_agents(store: &SqlStore, org: &str, page: PageRequest) -> StoreResult<Page<Agent>> {
    let mut conn = store.read().await?;
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM agents WHERE organization_id = $1")
        .bind(org)
        .fetch_one(&mut *conn)
        .await
        .db()?;
    let rows = sqlx::query(
        "SELECT * FROM agents WHERE organization_id = $1 ORDER BY created_at DESC, rowid DESC LIMIT $2 OFFSET $3",
    )
    .bind(org)
    .bind(page.limit as i64)
    .bind(page.offset() as i64)
    .fetch_all(&mut *conn)
    .await
    .db()?;
    Ok(Page {
        data: rows.iter().map(rows::agent).collect::<StoreResult<_>>()?,
        total: total as u64,
    })
}

pub(crate) async fn update_agent(store: &SqlStore, org: &str, id: &str, patch: AgentPatch) -> StoreResult<Agent> {
    let mut tx = store.writer.begin().await.db()?;
    let row = sqlx::query("SELECT * FROM agents WHERE id = $1 AND organization_id = $2")
        .bind(id)
        .bind(org)
        .fetch_optional(&mut *tx)
        .await
        .db()?
        .ok_or(not_found("agent"))?;
    let agent = rows::agent(&row)?;
    sqlx::query(
        "UPDATE agents SET name = $1, prompt = $2, welcome_message = $3, voice = $4, language = $5, updated_at = $6 WHERE id = $7",
    )
    .bind(patch.name.unwrap_or(agent.name))
    .bind(patch.prompt.unwrap_or(agent.prompt))
    .bind(patch.welcome_message.unwrap_or(agent.welcome_message))
    .bind(patch.voice.unwrap_or(agent.voice))
    .bind(patch.language.unwrap_or(agent.language))
    .bind(now_ms())
    .bind(id)
    .execute(&mut *tx)
    .await
    .db()?;
    tx.commit().await.db()?;
    get_agent(&store.writer, org, id).await
}

/// How many VOICE_CALL nodes of the organization's non-final workflows have `config.<field>` = `value`.
async fn voice_nodes_using(conn: &mut AnyConnection, org: &str, field: &str, value: &str) -> StoreResult<usize> {
    let configs: Vec<String> = sqlx::query_scalar(
        "SELECT n.config FROM nodes n JOIN workflows w ON w.id = n.workflow_id
         WHERE w.organization_id = $1 AND w.status NOT IN ('completed', 'cancelled') AND n.node_type = 'VOICE_CALL'",
    )
    .bind(org)
    .fetch_all(conn)
    .await
    .db()?;
    Ok(configs
        .iter()
        .filter_map(|text| serde_json::from_str::<serde_json::Value>(text).ok())
        .filter(|config| config.get(field).and_then(serde_json::Value::as_str) == Some(value))
        .count())
}

/// Something VOICE_CALL nodes name in their config, and that cannot go while a live workflow does.
struct Referenced {
    table: &'static str,
    /// The column whose value the nodes' `config.<field>` holds.
    column: &'static str,
    field: &'static str,
    what: &'static str,
    code: &'static str,
}

const AGENT: Referenced = Referenced {
    table: "agents",
    column: "id",
    field: "agent_id",
    what: "agent",
    code: "agent_in_use",
};
const PHONE_NUMBER: Referenced = Referenced {
    table: "phone_numbers",
    column: "phone_number",
    field: "from_phone_number",
    what: "phone number",
    code: "phone_number_in_use",
};

/// Deletes the organization's `id` unless a VOICE_CALL node of a non-final workflow uses it.
async fn delete_unless_used(store: &SqlStore, org: &str, id: &str, kind: &Referenced) -> StoreResult<()> {
    let mut tx = store.writer.begin().await.db()?;
    let sql = format!(
        "SELECT {} FROM {} WHERE id = $1 AND organization_id = $2",
        kind.column, kind.table
    );
    let value: String = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(org)
        .fetch_optional(&mut *tx)
        .await
        .db()?
        .ok_or(not_found(kind.what))?;
    let users = voice_nodes_using(&mut tx, org, kind.field, &value).await?;
    if users > 0 {
        let message = format!("{users} VOICE_CALL nodes of non-final workflows use this {}", kind.what);
        return Err(StoreError::conflict(kind.code, message));
    }
    let sql = format!("DELETE FROM {} WHERE id = $1", kind.table);
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .execute(&mut *tx)
        .await
        .db()?;
    tx.commit().await.db()?;
    Ok(())
}

pub(crate) async fn delete_agent(store: &SqlStore, org: &str, id: &str) -> StoreResult<()> {
    delete_unless_used(store, org, id, &AGENT).await
}

pub(crate) async fn update_phone_number(
    store: &SqlStore,
    org: &str,
    id: &str,
    patch: PhoneNumberPatch,
) -> StoreResult<PhoneNumber> {
    let mut tx = store.writer.begin().await.db()?;
    let row = sqlx::query("SELECT * FROM phone_numbers WHERE id = $1 AND organization_id = $2")
        .bind(id)
        .bind(org)
        .fetch_optional(&mut *tx)
        .await
        .db()?
        .ok_or(not_found("phone number"))?;
    let label: Option<String> = row.get("label");
    let nickname: Option<String> = row.get("nickname");
    let status: String = row.get("status");
    let config: String = row.get("provider_config");
    let allowed: String = row.get("allowed_destination_countries");
    sqlx::query(
        "UPDATE phone_numbers SET label = $1, nickname = $2, status = $3, provider_config = $4, allowed_destination_countries = $5,
             updated_at = $6 WHERE id = $7",
    )
    .bind(patch.label.unwrap_or(label))
    .bind(patch.nickname.unwrap_or(nickname))
    .bind(patch.status.unwrap_or(status))
    .bind(patch.provider_config.map(|c| json_text(&c)).unwrap_or(config))
    .bind(patch.allowed_destination_countries.map(|c| json_text(&c)).unwrap_or(allowed))
    .bind(now_ms())
    .bind(id)
    .execute(&mut *tx)
    .await
    .db()?;
    tx.commit().await.db()?;
    get_phone_number(&store.writer, org, id).await
}

pub(crate) async fn delete_phone_number(store: &SqlStore, org: &str, id: &str) -> StoreResult<()> {
    delete_unless_used(store, org, id, &PHONE_NUMBER).await
}

pub(crate) async fn create_phone_number(
    store: &SqlStore,
    org: &str,
    number: NewPhoneNumber,
) -> StoreResult<PhoneNumber> {
    let now = now_ms();
    let id = ids::new_id(ids::PHONE_NUMBER);
    let inserted = sqlx::query(
        "INSERT INTO phone_numbers (id, organization_id, phone_number, label, nickname, country_code, status, provider,
             provider_config, allowed_destination_countries, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, 'active', $7, $8, $9, $10, $11) ON CONFLICT (organization_id, phone_number) DO NOTHING",
    )
    .bind(&id)
    .bind(org)
    .bind(&number.phone_number)
    .bind(&number.label)
    .bind(&number.nickname)
    .bind(&number.country_code)
    .bind(&number.provider)
    .bind(json_text(&number.provider_config))
    .bind(json_text(&number.allowed_destination_countries))
    .bind(now)
    .bind(now)
    .execute(&store.writer)
    .await
    .db()?;
    if inserted.rows_affected() == 0 {
        return Err(StoreError::conflict(
            "phone_number_exists",
            format!("{} is already a phone number of this organization", number.phone_number),
        ));
    }
    get_phone_number(&store.writer, org, &id).await
}

pub(crate) async fn get_phone_number(pool: &sqlx::AnyPool, org: &str, id: &str) -> StoreResult<PhoneNumber> {
    let row = sqlx::query("SELECT * FROM phone_numbers WHERE id = $1 AND organization_id = $2")
        .bind(id)
        .bind(org)
        .fetch_optional(pool)
        .await
        .db()?
        .ok_or(not_found("phone number"))?;
    rows::phone_number(&row)
}

pub(crate) async fn list_phone_numbers(
    store: &SqlStore,
    org: &str,
    status: Option<&str>,
    country: Option<&str>,
    page: PageRequest,
) -> StoreResult<Page<PhoneNumber>> {
    let mut conn = store.read().await?;
    let filter = "organization_id = $1 AND ($2 IS NULL OR status = $2) AND ($3 IS NULL OR country_code = $3)";
    let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM phone_numbers WHERE {filter}"
    )))
    .bind(org)
    .bind(status)
    .bind(country)
    .fetch_one(&mut *conn)
    .await
    .db()?;
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT * FROM phone_numbers WHERE {filter} ORDER BY created_at DESC, rowid DESC LIMIT $4 OFFSET $5"
    )))
    .bind(org)
    .bind(status)
    .bind(country)
    .bind(page.limit as i64)
    .bind(page.offset() as i64)
    .fetch_all(&mut *conn)
    .await
    .db()?;
    Ok(Page {
        data: rows.iter().map(rows::phone_number).collect::<StoreResult<_>>()?,
        total: total as u64,
    })
}

async fn lead_counts(conn: &mut AnyConnection, workflow: &mut Workflow) -> StoreResult<()> {
    let rows = sqlx::query("SELECT status, count(*) AS n FROM leads WHERE workflow_id = $1 GROUP BY status")
        .bind(&workflow.id)
        .fetch_all(conn)
        .await
        .db()?;
    let mut counts = LeadCounts::default();
    for row in rows {
        let status: String = row.get("status");
        let n: i64 = row.get("n");
        counts.add(
            rows::parse_enum("lead status", &status, switchboard_domain::model::LeadStatus::parse)?,
            n as u64,
        );
    }
    workflow.enrolled_leads = counts.total();
    workflow.lead_counts = counts;
    Ok(())
}

/// The workflow of `org` (404 for another organization's), with counts.
pub(crate) async fn load_workflow(conn: &mut AnyConnection, org: &str, id: &str) -> StoreResult<Workflow> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{WORKFLOW_SELECT} WHERE w.id = $1 AND w.organization_id = $2"
    )))
    .bind(id)
    .bind(org)
    .fetch_optional(&mut *conn)
    .await
    .db()?
    .ok_or(not_found("workflow"))?;
    let mut workflow = rows::workflow(&row)?;
    lead_counts(conn, &mut workflow).await?;
    Ok(workflow)
}

/// Loads a workflow for a change, refusing final ones.
async fn editable_workflow(conn: &mut AnyConnection, org: &str, id: &str) -> StoreResult<Workflow> {
    let workflow = load_workflow(conn, org, id).await?;
    if workflow.status.is_final() {
        return Err(StoreError::conflict(
            "workflow_final",
            format!(
                "workflow is {}; final workflows can only be read, duplicated and deleted",
                workflow.status
            ),
        ));
    }
    Ok(workflow)
}

pub(crate) async fn create_workflow(store: &SqlStore, org: &str, new: NewWorkflow) -> StoreResult<Workflow> {
    let now = now_ms();
    let id = ids::new_id(ids::WORKFLOW);
    let mut conn = store.writer.acquire().await.db()?;
    sqlx::query(
        "INSERT INTO workflows (id, organization_id, title, description, status, settings, created_at, updated_at)
         VALUES ($1, $2, $3, $4, 'draft', $5, $6, $7)",
    )
    .bind(&id)
    .bind(org)
    .bind(&new.title)
    .bind(&new.description)
    .bind(json_text(&new.settings))
    .bind(now)
    .bind(now)
    .execute(&mut *conn)
    .await
    .db()?;
    load_workflow(&mut conn, org, &id).await
}

pub(crate) async fn list_workflows(
    store: &SqlStore,
    org: &str,
    filter: &WorkflowFilter,
    page: PageRequest,
) -> StoreResult<Page<Workflow>> {
    let mut conn = store.read().await?;
    let condition = "w.organization_id = $1 AND ($2 IS NULL OR w.status = $2)
        AND ($3 IS NULL OR lower(w.title) LIKE '%' || lower($3) || '%' ESCAPE '!')";
    // The search is a plain substring: LIKE's wildcards in it are escaped.
    let search = filter
        .search
        .as_ref()
        .map(|s| s.replace('!', "!!").replace('%', "!%").replace('_', "!_"));
    let status = filter.status.map(|s| s.as_str());
    let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM workflows w WHERE {condition}"
    )))
    .bind(org)
    .bind(status)
    .bind(&search)
    .fetch_one(&mut *conn)
    .await
    .db()?;
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{WORKFLOW_SELECT} WHERE {condition} ORDER BY w.created_at DESC, w.rowid DESC LIMIT $4 OFFSET $5"
    )))
    .bind(org)
    .bind(status)
    .bind(&search)
    .bind(page.limit as i64)
    .bind(page.offset() as i64)
    .fetch_all(&mut *conn)
    .await
    .db()?;
    let mut data = Vec::with_capacity(rows.len());
    for row in &rows {
        let mut workflow = rows::workflow(row)?;
        lead_counts(&mut conn, &mut workflow).await?;
        data.push(workflow);
    }
    Ok(Page {
        data,
        total: total as u64,
    })
}

pub(crate) async fn get_workflow(store: &SqlStore, org: &str, id: &str) -> StoreResult<Workflow> {
    load_workflow(&mut *store.read().await?, org, id).await
}

async fn node_in_workflow(conn: &mut AnyConnection, workflow_id: &str, node_id: &str) -> StoreResult<Node> {
    let row = sqlx::query("SELECT * FROM nodes WHERE id = $1 AND workflow_id = $2")
        .bind(node_id)
        .bind(workflow_id)
        .fetch_optional(conn)
        .await
        .db()?
        .ok_or(not_found("node"))?;
    rows::node(&row)
}

pub(crate) async fn update_workflow(
    store: &SqlStore,
    org: &str,
    id: &str,
    patch: WorkflowPatch,
) -> StoreResult<Workflow> {
    let now = now_ms();
    let mut tx = store.writer.begin().await.db()?;
    let workflow = editable_workflow(&mut tx, org, id).await?;
    let title = patch.title.unwrap_or(workflow.title);
    let description = patch.description.unwrap_or(workflow.description);
    let settings = match &patch.settings {
        Some(p) => workflow
            .settings
            .merged(p)
            .map_err(|e| StoreError::invalid("validation_failed", e.message))?,
        None => workflow.settings.clone(),
    };
    let entry = match patch.entry_node_id {
        Some(Some(node_id)) => {
            node_in_workflow(&mut tx, id, &node_id).await.map_err(|_| {
                StoreError::invalid(
                    "validation_failed",
                    format!("entry_node_id {node_id} is not a node of this workflow"),
                )
            })?;
            Some(node_id)
        }
        Some(None) => None,
        None => workflow.entry_node_id,
    };
    sqlx::query(
        "UPDATE workflows SET title = $1, description = $2, settings = $3, entry_node_id = $4, revision = revision + 1, updated_at = $5
         WHERE id = $6",
    )
    .bind(&title)
    .bind(&description)
    .bind(json_text(&settings))
    .bind(&entry)
    .bind(now)
    .bind(id)
    .execute(&mut *tx)
    .await
    .db()?;
    if settings.max_concurrent_calls > workflow.settings.max_concurrent_calls {
        wake_throttled(&mut tx, store.backend, "workflow_id", id, None).await?;
        notify_work(&mut tx, store.backend).await?;
    }
    let updated = load_workflow(&mut tx, org, id).await?;
    tx.commit().await.db()?;
    Ok(updated)
}

/// Gives up to `limit` throttled leads with `scope` (`workflow_id` or `organization_id`) = `id` another try,
/// oldest due first (`None`: all of them).
pub(crate) async fn wake_throttled(
    conn: &mut AnyConnection,
    backend: Backend,
    scope: &str,
    id: &str,
    limit: Option<u32>,
) -> StoreResult<()> {
    // Rows another transaction holds (a lead being decided elsewhere) are skipped rather than waited for, so
    // two processes freeing slots at once cannot deadlock; that lead is decided afresh anyway.
    let lock = match backend {
        Backend::Postgres => "FOR UPDATE OF l SKIP LOCKED",
        Backend::Sqlite => "",
    };
    let limit = limit
        .map(|n| format!("ORDER BY l.queued_at LIMIT {n}"))
        .unwrap_or_default();
    // Only leads of active workflows: a slot handed to a paused workflow's lead would sit unused.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE leads SET due_at = queued_at WHERE id IN (
             SELECT l.id FROM leads l JOIN workflows w ON w.id = l.workflow_id
             WHERE l.{scope} = $1 AND l.state = 'throttled' AND l.due_at IS NULL AND w.status = 'active' {limit} {lock})"
    )))
    .bind(id)
    .execute(conn)
    .await
    .db()?;
    Ok(())
}

pub(crate) async fn delete_workflow(store: &SqlStore, org: &str, id: &str) -> StoreResult<()> {
    let mut tx = store.writer.begin().await.db()?;
    let workflow = load_workflow(&mut tx, org, id).await?;
    if matches!(workflow.status, WorkflowStatus::Active | WorkflowStatus::Paused) {
        return Err(StoreError::conflict(
            "workflow_active",
            format!("workflow is {}; cancel it before deleting", workflow.status),
        ));
    }
    // Lead history, leads, variable keys, edges and nodes go by cascade; calls stay.
    sqlx::query("DELETE FROM workflows WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await
        .db()?;
    tx.commit().await.db()?;
    Ok(())
}

pub(crate) async fn load_nodes(conn: &mut AnyConnection, workflow_id: &str) -> StoreResult<Vec<Node>> {
    let rows = sqlx::query("SELECT * FROM nodes WHERE workflow_id = $1 ORDER BY created_at, rowid")
        .bind(workflow_id)
        .fetch_all(conn)
        .await
        .db()?;
    rows.iter().map(rows::node).collect()
}

pub(crate) async fn load_edges(conn: &mut AnyConnection, workflow_id: &str) -> StoreResult<Vec<Edge>> {
    let rows = sqlx::query("SELECT * FROM edges WHERE workflow_id = $1 ORDER BY created_at, rowid")
        .bind(workflow_id)
        .fetch_all(conn)
        .await
        .db()?;
    rows.iter().map(rows::edge).collect()
}

pub(crate) fn graph_of(entry_node_id: Option<String>, nodes: &[Node], edges: &[Edge]) -> Graph {
    Graph {
        nodes: nodes
            .iter()
            .map(|n| NodeDef {
                id: n.id.clone(),
                node_type: n.node_type,
                label: n.label.clone(),
                config: n.config.clone(),
            })
            .collect(),
        edges: edges
            .iter()
            .map(|e| EdgeDef {
                id: e.id.clone(),
                from_node_id: e.from_node_id.clone(),
                to_node_id: e.to_node_id.clone(),
                label: e.label.clone(),
            })
            .collect(),
        entry_node_id,
    }
}

pub(crate) async fn duplicate_workflow(
    store: &SqlStore,
    org: &str,
    id: &str,
    title: Option<String>,
) -> StoreResult<Workflow> {
    let now = now_ms();
    let mut tx = store.writer.begin().await.db()?;
    let source = load_workflow(&mut tx, org, id).await?;
    let nodes = load_nodes(&mut tx, id).await?;
    let edges = load_edges(&mut tx, id).await?;
    let title = title.unwrap_or_else(|| {
        let suffix = " (Copy)";
        let kept: String = source.title.chars().take(255 - suffix.len()).collect();
        format!("{kept}{suffix}")
    });
    let new_id = ids::new_id(ids::WORKFLOW);
    let mut node_ids = std::collections::HashMap::new();
    for node in &nodes {
        node_ids.insert(node.id.clone(), ids::new_id(ids::NODE));
    }
    let entry = source.entry_node_id.as_ref().and_then(|e| node_ids.get(e)).cloned();
    sqlx::query(
        "INSERT INTO workflows (id, organization_id, title, description, status, entry_node_id, settings, created_at, updated_at)
         VALUES ($1, $2, $3, $4, 'draft', $5, $6, $7, $8)",
    )
    .bind(&new_id)
    .bind(org)
    .bind(&title)
    .bind(&source.description)
    .bind(&entry)
    .bind(json_text(&source.settings))
    .bind(now)
    .bind(now)
    .execute(&mut *tx)
    .await
    .db()?;
    for node in &nodes {
        sqlx::query(
            "INSERT INTO nodes (id, workflow_id, node_type, label, position_x, position_y, config, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&node_ids[&node.id])
        .bind(&new_id)
        .bind(node.node_type.as_str())
        .bind(&node.label)
        .bind(node.position_x)
        .bind(node.position_y)
        .bind(json_text(&node.config))
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await
        .db()?;
    }
    for edge in &edges {
        sqlx::query("INSERT INTO edges (id, workflow_id, from_node_id, to_node_id, label, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(ids::new_id(ids::EDGE))
            .bind(&new_id)
            .bind(&node_ids[&edge.from_node_id])
            .bind(&node_ids[&edge.to_node_id])
            .bind(&edge.label)
            .bind(now)
            .execute(&mut *tx)
            .await
            .db()?;
    }
    let copy = load_workflow(&mut tx, org, &new_id).await?;
    tx.commit().await.db()?;
    Ok(copy)
}

async fn directory(
    conn: &mut AnyConnection,
    org: &str,
    workflow_id: &str,
) -> StoreResult<(Vec<Agent>, Vec<String>, Vec<String>)> {
    let agents = sqlx::query("SELECT * FROM agents WHERE organization_id = $1")
        .bind(org)
        .fetch_all(&mut *conn)
        .await
        .db()?
        .iter()
        .map(rows::agent)
        .collect::<StoreResult<Vec<_>>>()?;
    let numbers = active_numbers(conn, org).await?;
    let keys: Vec<String> =
        sqlx::query_scalar("SELECT key FROM lead_variable_keys WHERE workflow_id = $1 ORDER BY key")
            .bind(workflow_id)
            .fetch_all(&mut *conn)
            .await
            .db()?;
    Ok((agents, numbers, keys))
}

pub(crate) async fn active_numbers(conn: &mut AnyConnection, org: &str) -> StoreResult<Vec<String>> {
    sqlx::query_scalar("SELECT phone_number FROM phone_numbers WHERE organization_id = $1 AND status = 'active'")
        .bind(org)
        .fetch_all(conn)
        .await
        .db()
}

pub(crate) async fn snapshot(
    conn: &mut AnyConnection,
    org: &str,
    id: &str,
) -> StoreResult<(WorkflowSnapshot, Vec<Agent>, Vec<String>)> {
    let workflow = load_workflow(conn, org, id).await?;
    let nodes = load_nodes(conn, id).await?;
    let edges = load_edges(conn, id).await?;
    let (agents, numbers, keys) = directory(conn, org, id).await?;
    let snapshot = WorkflowSnapshot {
        id: workflow.id.clone(),
        organization_id: workflow.organization_id.clone(),
        status: workflow.status,
        revision: workflow.revision,
        settings: workflow.settings.clone(),
        graph: graph_of(workflow.entry_node_id.clone(), &nodes, &edges),
        numbers: numbers.clone(),
    };
    Ok((snapshot, agents, keys))
}

pub(crate) async fn workflow_snapshot(
    store: &SqlStore,
    org: &str,
    id: &str,
) -> StoreResult<(WorkflowSnapshot, Vec<Agent>, Vec<String>)> {
    snapshot(&mut *store.read().await?, org, id).await
}

/// Puts every pending lead of the workflow at its entry node, ready to run.
async fn start_pending(conn: &mut AnyConnection, workflow_id: &str, entry: &str, now: i64) -> StoreResult<()> {
    sqlx::query(
        "UPDATE leads SET status = 'in_progress', state = 'ready', current_node_id = $1, due_at = $2, updated_at = $3, seq = seq + 1
         WHERE workflow_id = $4 AND status = 'pending'",
    )
    .bind(entry)
    .bind(now)
    .bind(now)
    .bind(workflow_id)
    .execute(conn)
    .await
    .db()?;
    Ok(())
}

pub(crate) async fn transition_workflow(
    store: &SqlStore,
    org: &str,
    id: &str,
    action: Lifecycle,
) -> StoreResult<Workflow> {
    let now = now_ms();
    let mut tx = store.writer.begin().await.db()?;
    let workflow = load_workflow(&mut tx, org, id).await?;
    let status = workflow.status;
    let refuse = |code: &'static str, wanted: &str| {
        Err(StoreError::conflict(
            code,
            format!("workflow is {status}, not {wanted}"),
        ))
    };
    let next = match action {
        Lifecycle::Activate if status != WorkflowStatus::Draft => {
            return refuse("workflow_not_draft", "draft");
        }
        Lifecycle::Pause if status != WorkflowStatus::Active => {
            return refuse("workflow_not_active", "active");
        }
        Lifecycle::Resume if status != WorkflowStatus::Paused => {
            return refuse("workflow_not_paused", "paused");
        }
        Lifecycle::Cancel if status.is_final() => {
            return Err(StoreError::conflict(
                "workflow_final",
                format!("workflow is already {status}"),
            ));
        }
        Lifecycle::Activate | Lifecycle::Resume => WorkflowStatus::Active,
        Lifecycle::Pause => WorkflowStatus::Paused,
        Lifecycle::Cancel => WorkflowStatus::Cancelled,
    };
    if matches!(action, Lifecycle::Activate | Lifecycle::Resume) {
        let (snap, agents, keys) = snapshot(&mut tx, org, id).await?;
        if action == Lifecycle::Activate {
            let report = activation_report(&snap, &agents, &keys, workflow.enrolled_leads > 0);
            if !report.valid {
                return Err(StoreError::Invalid {
                    code: "graph_invalid",
                    message: format!("the workflow cannot be activated: {}", report.errors[0].message),
                    details: Some(serde_json::json!({"errors": report.errors, "warnings": report.warnings})),
                });
            }
        }
        if let Ok(entry) = snap.graph.entry() {
            // Activation pins the entry, so later graph edits never change where new leads start.
            sqlx::query("UPDATE workflows SET entry_node_id = $1 WHERE id = $2")
                .bind(&entry.id)
                .bind(id)
                .execute(&mut *tx)
                .await
                .db()?;
            start_pending(&mut tx, id, &entry.id, now).await?;
        }
    }
    sqlx::query("UPDATE workflows SET status = $1, activated_at = COALESCE(activated_at, $2) WHERE id = $3")
        .bind(next.as_str())
        .bind((action == Lifecycle::Activate).then_some(now))
        .bind(id)
        .execute(&mut *tx)
        .await
        .db()?;
    bump_revision(&mut tx, id, now).await?;
    if action == Lifecycle::Cancel {
        remove_leads_where(&mut tx, "workflow_id = $3", id, "workflow_cancelled", now).await?;
    }
    if matches!(action, Lifecycle::Activate | Lifecycle::Resume) {
        // After the status change: only leads of active workflows are woken.
        wake_throttled(&mut tx, store.backend, "workflow_id", id, None).await?;
        // Every lead may have ended while it was paused.
        maybe_complete(&mut tx, id, now).await?;
        notify_work(&mut tx, store.backend).await?;
    }
    let updated = load_workflow(&mut tx, org, id).await?;
    tx.commit().await.db()?;
    Ok(updated)
}

pub(crate) async fn create_node(store: &SqlStore, org: &str, workflow_id: &str, node: NewNode) -> StoreResult<Node> {
    let now = now_ms();
    let mut tx = store.writer.begin().await.db()?;
    let workflow = editable_workflow(&mut tx, org, workflow_id).await?;
    if workflow.node_count >= 500 {
        return Err(StoreError::invalid(
            "limit_exceeded",
            "a workflow has at most 500 nodes",
        ));
    }
    let id = ids::new_id(ids::NODE);
    sqlx::query(
        "INSERT INTO nodes (id, workflow_id, node_type, label, position_x, position_y, config, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&id)
    .bind(workflow_id)
    .bind(node.node_type.as_str())
    .bind(&node.label)
    .bind(node.position_x)
    .bind(node.position_y)
    .bind(json_text(&node.config))
    .bind(now)
    .bind(now)
    .execute(&mut *tx)
    .await
    .db()?;
    bump_revision(&mut tx, workflow_id, now).await?;
    let created = node_in_workflow(&mut tx, workflow_id, &id).await?;
    tx.commit().await.db()?;
    Ok(created)
}

pub(crate) async fn list_nodes(store: &SqlStore, org: &str, workflow_id: &str) -> StoreResult<Vec<Node>> {
    let mut conn = store.read().await?;
    load_workflow(&mut conn, org, workflow_id).await?;
    load_nodes(&mut conn, workflow_id).await
}

pub(crate) async fn get_node(store: &SqlStore, org: &str, workflow_id: &str, node_id: &str) -> StoreResult<Node> {
    let mut conn = store.read().await?;
    load_workflow(&mut conn, org, workflow_id).await?;
    node_in_workflow(&mut conn, workflow_id, node_id).await
}

pub(crate) async fn update_node(
    store: &SqlStore,
    org: &str,
    workflow_id: &str,
    node_id: &str,
    patch: NodePatch,
) -> StoreResult<Node> {
    let now = now_ms();
    let mut tx = store.writer.begin().await.db()?;
    editable_workflow(&mut tx, org, workflow_id).await?;
    let node = node_in_workflow(&mut tx, workflow_id, node_id).await?;
    sqlx::query(
        "UPDATE nodes SET label = $1, position_x = $2, position_y = $3, config = $4, updated_at = $5 WHERE id = $6",
    )
    .bind(patch.label.unwrap_or(node.label))
    .bind(patch.position_x.unwrap_or(node.position_x))
    .bind(patch.position_y.unwrap_or(node.position_y))
    .bind(json_text(&patch.config.unwrap_or(node.config)))
    .bind(now)
    .bind(node_id)
    .execute(&mut *tx)
    .await
    .db()?;
    bump_revision(&mut tx, workflow_id, now).await?;
    let updated = node_in_workflow(&mut tx, workflow_id, node_id).await?;
    tx.commit().await.db()?;
    Ok(updated)
}

pub(crate) async fn delete_node(
    store: &SqlStore,
    org: &str,
    workflow_id: &str,
    node_id: &str,
    leads: NodeLeads,
) -> StoreResult<()> {
    let now = now_ms();
    let mut tx = store.writer.begin().await.db()?;
    let workflow = editable_workflow(&mut tx, org, workflow_id).await?;
    node_in_workflow(&mut tx, workflow_id, node_id).await?;
    let live = matches!(workflow.status, WorkflowStatus::Active | WorkflowStatus::Paused);
    if live && workflow.entry_node_id.as_deref() == Some(node_id) {
        return Err(StoreError::conflict(
            "entry_node",
            "this is the entry node of a live workflow; move entry_node_id first",
        ));
    }
    let (standing, in_flight): (i64, i64) = sqlx::query_as(
        "SELECT count(*), COALESCE(sum(CASE WHEN state IN ('calling', 'running') THEN 1 ELSE 0 END), 0) FROM leads
         WHERE workflow_id = $1 AND current_node_id = $2 AND status = 'in_progress'",
    )
    .bind(workflow_id)
    .bind(node_id)
    .fetch_one(&mut *tx)
    .await
    .db()?;
    if standing > 0 {
        let refuse = |message: String| StoreError::Conflict {
            code: "node_has_leads",
            message,
            details: Some(serde_json::json!({"lead_count": standing, "in_flight": in_flight})),
        };
        match &leads {
            NodeLeads::Refuse => {
                return Err(refuse(format!(
                    "{standing} leads are at this node; pass reassign_to=<node id> or remove_leads=true"
                )));
            }
            _ if in_flight > 0 => {
                return Err(refuse(format!(
                    "{in_flight} leads have a step in flight at this node; retry when it finishes"
                )));
            }
            NodeLeads::ReassignTo(target) => {
                if target == node_id {
                    return Err(StoreError::invalid(
                        "validation_failed",
                        "reassign_to must be another node",
                    ));
                }
                node_in_workflow(&mut tx, workflow_id, target).await.map_err(|_| {
                    StoreError::invalid(
                        "validation_failed",
                        format!("reassign_to {target} is not a node of this workflow"),
                    )
                })?;
                let moved: Vec<String> = sqlx::query_scalar(
                    "UPDATE leads SET current_node_id = $1, state = 'ready', due_at = $2, queued_at = NULL, attempt = 0,
                         pending_outcome = NULL, exit_reason = NULL, seq = seq + 1, updated_at = $2, lease_owner = NULL, lease_until = NULL
                     WHERE workflow_id = $3 AND current_node_id = $4 AND status = 'in_progress' RETURNING id",
                )
                .bind(target)
                .bind(now)
                .bind(workflow_id)
                .bind(node_id)
                .fetch_all(&mut *tx)
                .await
                .db()?;
                skip_open_entries(&mut tx, &moved, "node_deleted", now).await?;
            }
            NodeLeads::Remove => {
                remove_leads_where(&mut tx, "current_node_id = $3", node_id, "node_deleted", now).await?;
            }
        }
    }
    sqlx::query("UPDATE workflows SET entry_node_id = NULL WHERE id = $1 AND entry_node_id = $2")
        .bind(workflow_id)
        .bind(node_id)
        .execute(&mut *tx)
        .await
        .db()?;
    sqlx::query("DELETE FROM nodes WHERE id = $1")
        .bind(node_id)
        .execute(&mut *tx)
        .await
        .db()?;
    bump_revision(&mut tx, workflow_id, now).await?;
    maybe_complete(&mut tx, workflow_id, now).await?;
    tx.commit().await.db()?;
    Ok(())
}

pub(crate) async fn create_edge(store: &SqlStore, org: &str, workflow_id: &str, edge: NewEdge) -> StoreResult<Edge> {
    let now = now_ms();
    let mut tx = store.writer.begin().await.db()?;
    let workflow = editable_workflow(&mut tx, org, workflow_id).await?;
    if workflow.edge_count >= 2000 {
        return Err(StoreError::invalid(
            "limit_exceeded",
            "a workflow has at most 2000 edges",
        ));
    }
    let from = node_in_workflow(&mut tx, workflow_id, &edge.from_node_id).await?;
    node_in_workflow(&mut tx, workflow_id, &edge.to_node_id).await?;
    if from.node_type.is_terminal() {
        return Err(StoreError::invalid(
            "terminal_has_edges",
            format!("{} nodes are final and cannot have outgoing edges", from.node_type),
        ));
    }
    let label = edge.label.map(|l| l.trim().to_string()).filter(|l| !l.is_empty());
    let exists: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM edges WHERE workflow_id = $1 AND from_node_id = $2 AND to_node_id = $3 AND COALESCE(label, '') = COALESCE($4, '')",
    )
    .bind(workflow_id)
    .bind(&edge.from_node_id)
    .bind(&edge.to_node_id)
    .bind(&label)
    .fetch_one(&mut *tx)
    .await
    .db()?;
    if exists > 0 {
        return Err(StoreError::conflict(
            "edge_exists",
            "an edge with the same from_node_id, to_node_id and label exists",
        ));
    }
    let id = ids::new_id(ids::EDGE);
    sqlx::query(
        "INSERT INTO edges (id, workflow_id, from_node_id, to_node_id, label, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&id)
    .bind(workflow_id)
    .bind(&edge.from_node_id)
    .bind(&edge.to_node_id)
    .bind(&label)
    .bind(now)
    .execute(&mut *tx)
    .await
    .db()?;
    // Stalled leads at the source node get another routing attempt.
    sqlx::query("UPDATE leads SET due_at = $1 WHERE workflow_id = $2 AND current_node_id = $3 AND state = 'stalled' AND status = 'in_progress'")
        .bind(now)
        .bind(workflow_id)
        .bind(&edge.from_node_id)
        .execute(&mut *tx)
        .await
        .db()?;
    notify_work(&mut tx, store.backend).await?;
    bump_revision(&mut tx, workflow_id, now).await?;
    let row = sqlx::query("SELECT * FROM edges WHERE id = $1")
        .bind(&id)
        .fetch_one(&mut *tx)
        .await
        .db()?;
    tx.commit().await.db()?;
    rows::edge(&row)
}

pub(crate) async fn list_edges(store: &SqlStore, org: &str, workflow_id: &str) -> StoreResult<Vec<Edge>> {
    let mut conn = store.read().await?;
    load_workflow(&mut conn, org, workflow_id).await?;
    load_edges(&mut conn, workflow_id).await
}

pub(crate) async fn delete_edge(store: &SqlStore, org: &str, workflow_id: &str, edge_id: &str) -> StoreResult<()> {
    let now = now_ms();
    let mut tx = store.writer.begin().await.db()?;
    editable_workflow(&mut tx, org, workflow_id).await?;
    let done = sqlx::query("DELETE FROM edges WHERE id = $1 AND workflow_id = $2")
        .bind(edge_id)
        .bind(workflow_id)
        .execute(&mut *tx)
        .await
        .db()?;
    if done.rows_affected() == 0 {
        return Err(not_found("edge"));
    }
    bump_revision(&mut tx, workflow_id, now).await?;
    tx.commit().await.db()?;
    Ok(())
}
