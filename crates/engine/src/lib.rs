//! The engine: claims due leads, decides their next steps in memory, commits each batch in one
//! fenced transaction, then performs the external effects (HTTP actions) recorded in it.

mod action;
mod decide;

pub use action::{ActionRequest, ActionResult};

use decide::{BatchContext, Input, decide};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use switchboard_domain::ids;
use switchboard_domain::time::now_ms;
use switchboard_store::engine::{LeadChange, LeadRow, WorkflowSnapshot};
use switchboard_store::{Store, StoreResult};
use tokio::sync::{Notify, mpsc, watch};

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Divides every wait the engine schedules (API.md 6.9).
    pub time_scale: f64,
    /// Lets APPLICATION webhooks reach loopback and private addresses.
    pub allow_private_targets: bool,
    /// Calls in flight at once across an organization's workflows.
    pub org_max_concurrent_calls: u32,
    /// Leads claimed per batch (one transaction commits the whole batch).
    pub batch_size: u32,
    /// How long a claim stays ours without a commit.
    pub lease_ms: i64,
    /// Longest sleep when nothing is due (a safety net; wake-ups come from `Engine::wake`).
    pub idle_poll_ms: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            time_scale: 1.0,
            allow_private_targets: false,
            org_max_concurrent_calls: 50,
            batch_size: 256,
            lease_ms: 30_000,
            idle_poll_ms: 1_000,
        }
    }
}

/// Handle to wake the engine when new work arrives (enrolments, activations, graph edits).
#[derive(Clone, Default)]
pub struct Waker(Arc<Notify>);

impl Waker {
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

pub struct Engine {
    store: Arc<dyn Store>,
    config: EngineConfig,
    owner: String,
    waker: Waker,
    http: reqwest::Client,
    /// Workflow snapshots by id; an entry is reused while its revision is current.
    snapshot_cache: std::sync::Mutex<HashMap<String, Arc<WorkflowSnapshot>>>,
}

/// The steps each change completes (history entries it closes), by node type.
fn executed_steps(changes: &[LeadChange]) -> Vec<(String, switchboard_domain::model::NodeType)> {
    changes
        .iter()
        .flat_map(|c| {
            c.history
                .iter()
                .filter(|h| h.exited_at.is_some())
                .map(|h| (c.lead.id.clone(), h.node_type))
        })
        .collect()
}

/// Installs the process-wide TLS crypto provider (ring) that outbound HTTPS uses; idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Engine {
    pub fn new(store: Arc<dyn Store>, config: EngineConfig, waker: Waker) -> Self {
        install_crypto_provider();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self {
            store,
            config,
            owner: ids::new_id("engine_"),
            waker,
            http,
            snapshot_cache: Default::default(),
        }
    }

    /// Runs until `shutdown` turns true. Steps in flight at shutdown keep their lease and are re-driven
    /// (with the same idempotency key) by the next start.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        if let Err(e) = self.store.recover_after_restart().await {
            tracing::error!(error = %e, "could not release old leases");
        }
        let (results_tx, mut results_rx) = mpsc::unbounded_channel::<ActionResult>();
        let mut results = Vec::new();
        while !*shutdown.borrow() {
            while let Ok(result) = results_rx.try_recv() {
                results.push(result);
            }
            // A failed tick must not lose action results: their steps would be sent again on lease expiry.
            let kept = results.clone();
            let busy = match self.tick(&mut results, &results_tx).await {
                Ok(busy) => busy,
                Err(e) => {
                    results = kept;
                    tracing::error!(error = %e, "engine step failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            if busy || !results.is_empty() {
                continue;
            }
            let sleep_ms = match self.store.next_due_at().await {
                Ok(Some(due)) => (due - now_ms()).clamp(0, self.config.idle_poll_ms as i64) as u64,
                _ => self.config.idle_poll_ms,
            };
            if sleep_ms == 0 {
                continue;
            }
            tokio::select! {
                _ = self.waker.0.notified() => {}
                _ = self.store.work_elsewhere() => {}
                _ = tokio::time::sleep(Duration::from_millis(sleep_ms)) => {}
                Some(result) = results_rx.recv() => results.push(result),
                _ = shutdown.changed() => {}
            }
        }
    }

    /// The workflows of `inputs`, from the cache when their revision has not moved.
    async fn snapshots(&self, inputs: &[(LeadRow, Input)]) -> StoreResult<HashMap<String, Arc<WorkflowSnapshot>>> {
        let mut ids: Vec<String> = inputs.iter().map(|(lead, _)| lead.workflow_id.clone()).collect();
        ids.sort();
        ids.dedup();
        let revisions = self.store.workflow_revisions(&ids).await?;
        let mut out = HashMap::with_capacity(revisions.len());
        for (id, revision) in revisions {
            let cached = self
                .snapshot_cache
                .lock()
                .expect("cache lock")
                .get(&id)
                .filter(|s| s.revision == revision)
                .cloned();
            let snapshot = match cached {
                Some(snapshot) => snapshot,
                None => match self.store.engine_snapshot(&id).await? {
                    Some(snapshot) => {
                        let snapshot = Arc::new(snapshot);
                        self.snapshot_cache
                            .lock()
                            .expect("cache lock")
                            .insert(id.clone(), snapshot.clone());
                        snapshot
                    }
                    None => continue,
                },
            };
            out.insert(id, snapshot);
        }
        Ok(out)
    }

    /// One batch: apply finished actions, claim due leads, decide, commit, start effects.
    /// Returns whether a full batch was claimed (more may be due).
    async fn tick(
        &self,
        results: &mut Vec<ActionResult>,
        results_tx: &mpsc::UnboundedSender<ActionResult>,
    ) -> StoreResult<bool> {
        let now = now_ms();
        let mut inputs = Vec::new();
        let ids: Vec<String> = results.iter().map(|r| r.lead_id.clone()).collect();
        let mut rows: HashMap<String, LeadRow> = self
            .store
            .load_lead_rows(&ids)
            .await?
            .into_iter()
            .map(|lead| (lead.id.clone(), lead))
            .collect();
        for result in std::mem::take(results) {
            match rows.remove(&result.lead_id) {
                Some(lead) if decide::awaits_result(&lead, result.step_seq) => {
                    inputs.push((lead, Input::ActionResult(result)))
                }
                _ => tracing::debug!(lead = %result.lead_id, "dropping a stale action result"),
            }
        }
        let claimed = self
            .store
            .claim_due(&self.owner, now, now + self.config.lease_ms, self.config.batch_size)
            .await?;
        let full = claimed.len() as u32 >= self.config.batch_size;
        for lead in &claimed {
            if let Some(due) = lead.due_at {
                metrics::histogram!("switchboard_timer_lateness_seconds").record((now - due).max(0) as f64 / 1000.0);
            }
        }
        inputs.extend(claimed.into_iter().map(|lead| (lead, Input::Due)));
        if inputs.is_empty() {
            return Ok(false);
        }
        let snapshots = self.snapshots(&inputs).await?;
        let workflow_ids: Vec<String> = snapshots.keys().cloned().collect();
        let mut org_ids: Vec<String> = snapshots.values().map(|s| s.organization_id.clone()).collect();
        org_ids.sort();
        org_ids.dedup();
        let mut batch = BatchContext {
            now,
            time_scale: self.config.time_scale,
            calls_in_flight: self.store.calls_in_flight(&workflow_ids, &org_ids).await?,
            org_max_concurrent_calls: self.config.org_max_concurrent_calls,
        };
        let mut changes: Vec<LeadChange> = Vec::with_capacity(inputs.len());
        let mut actions: Vec<(String, ActionRequest)> = Vec::new();
        let mut pending_results = HashMap::new();
        for (lead, input) in inputs {
            let Some(snapshot) = snapshots.get(&lead.workflow_id) else {
                continue;
            };
            if let Input::ActionResult(result) = &input {
                pending_results.insert(lead.id.clone(), result.clone());
            }
            let decision = decide(lead, input, snapshot, &mut batch);
            if let Some(action) = decision.action {
                actions.push((decision.change.lead.id.clone(), action));
            }
            changes.push(decision.change);
        }
        let executed = executed_steps(&changes);
        let outcome = self
            .store
            .commit_changes(&self.owner, now, changes, self.config.org_max_concurrent_calls)
            .await?;
        metrics::histogram!("switchboard_step_batch_seconds").record((now_ms() - now) as f64 / 1000.0);
        metrics::counter!("switchboard_transitions_total", "result" => "applied")
            .increment(outcome.applied.len() as u64);
        metrics::counter!("switchboard_transitions_total", "result" => "rejected")
            .increment(outcome.rejected.len() as u64);
        let applied: std::collections::HashSet<&String> = outcome.applied.iter().collect();
        for (lead_id, node_type) in executed {
            if applied.contains(&lead_id) {
                metrics::counter!("switchboard_steps_total", "node_type" => node_type.as_str()).increment(1);
            }
        }
        // A refused result is retried on the next tick against the lead's fresh row.
        for id in &outcome.rejected {
            if let Some(result) = pending_results.remove(id) {
                results.push(result);
            }
        }
        for (lead_id, request) in actions.into_iter().filter(|(id, _)| applied.contains(id)) {
            let http = self.http.clone();
            let tx = results_tx.clone();
            let allow_private = self.config.allow_private_targets;
            tokio::spawn(async move {
                let result = action::perform(&http, lead_id, request, allow_private).await;
                let _ = tx.send(result);
            });
        }
        Ok(full || !outcome.rejected.is_empty())
    }
}
