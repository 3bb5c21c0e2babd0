//! The pure part of the engine: given a claimed lead, its workflow and the batch's view of the world,
//! compute the lead's next committed state. Instant nodes run on in memory until the lead must wait.

use crate::action::{ActionRequest, ActionResult};
use serde_json::{Map, Value, json};
use switchboard_domain::condition::{self, DataContext};
use switchboard_domain::config::{ApplicationConfig, NodeConfig, TimeConfig, VoiceCallConfig};
use switchboard_domain::hours;
use switchboard_domain::ids;
use switchboard_domain::model::{CallOutcome, CallStatus, LeadState, LeadStatus, NodeType, StepStatus, WorkflowStatus};
use switchboard_domain::simulator;
use switchboard_store::CallsInFlight;
use switchboard_store::engine::{CallFinish, CallWrite, HistoryWrite, LeadChange, LeadRow, WorkflowSnapshot};
use switchboard_store::records::Call;

/// Steps a lead may run in a row without placing a call or waiting (API.md 6.7).
const LOOP_LIMIT: u32 = 1000;
/// How long after an action's own timeout its lease lasts before another worker re-drives it.
const ACTION_GRACE_MS: i64 = 30_000;

pub(crate) enum Input {
    Due,
    ActionResult(ActionResult),
}

pub(crate) struct BatchContext {
    pub now: i64,
    pub time_scale: f64,
    /// Calls in flight per workflow and per organization, kept current while the batch is decided.
    pub calls_in_flight: CallsInFlight,
    /// The organization-wide cap on calls in flight.
    pub org_max_concurrent_calls: u32,
}

impl BatchContext {
    fn scaled(&self, ms: i64) -> i64 {
        (ms as f64 / self.time_scale.max(f64::MIN_POSITIVE)).round().max(0.0) as i64
    }
}

pub(crate) struct Decision {
    pub change: LeadChange,
    pub action: Option<ActionRequest>,
}

/// Whether `lead` is still waiting for the result of the action started at `step_seq`.
pub(crate) fn awaits_result(lead: &LeadRow, step_seq: i64) -> bool {
    lead.status == LeadStatus::InProgress && lead.state == Some(LeadState::Running) && lead.step_seq == Some(step_seq)
}

struct Work<'a> {
    lead: LeadRow,
    expected_seq: i64,
    snap: &'a WorkflowSnapshot,
    batch: &'a mut BatchContext,
    history: Vec<HistoryWrite>,
    calls: Vec<CallWrite>,
    action: Option<ActionRequest>,
    lease_until: Option<i64>,
    freed_call_slot: bool,
}

pub(crate) fn decide(lead: LeadRow, input: Input, snap: &WorkflowSnapshot, batch: &mut BatchContext) -> Decision {
    let expected_seq = lead.seq;
    let mut work = Work {
        lead,
        expected_seq,
        snap,
        batch,
        history: Vec::new(),
        calls: Vec::new(),
        action: None,
        lease_until: None,
        freed_call_slot: false,
    };
    work.step(input);
    let Work {
        mut lead,
        history,
        calls,
        action,
        lease_until,
        freed_call_slot,
        ..
    } = work;
    lead.seq = expected_seq + 1;
    Decision {
        change: LeadChange {
            expected_seq,
            workflow_revision: snap.revision,
            lead,
            history,
            calls,
            lease_until,
            freed_call_slot,
        },
        action,
    }
}

impl Work<'_> {
    fn now(&self) -> i64 {
        self.batch.now
    }

    fn active(&self) -> bool {
        self.snap.status == WorkflowStatus::Active
    }

    fn current_node(&self) -> Option<(String, NodeType, String, Value)> {
        let id = self.lead.current_node_id.as_deref()?;
        self.snap
            .graph
            .node(id)
            .map(|n| (n.id.clone(), n.node_type, n.label.clone(), n.config.clone()))
    }

    fn step(&mut self, input: Input) {
        if self.lead.status != LeadStatus::InProgress {
            return;
        }
        let state = self.lead.state.unwrap_or(LeadState::Ready);
        if let Some(reason) = self.lead.removal.clone().filter(|_| !state.is_in_flight()) {
            self.write_entry(StepStatus::Skipped, None, None, Some(json!({"reason": reason})), true);
            return self.finish(LeadStatus::Removed, Some(reason));
        }
        match (state, input) {
            (LeadState::Running, Input::ActionResult(result)) => self.finish_action(result),
            (LeadState::Running, Input::Due) => self.redrive_action(),
            (LeadState::Calling, _) => self.resolve_call(),
            (_, Input::ActionResult(_)) => {}
            (_, Input::Due) if !self.active() => {}
            (LeadState::Ready, Input::Due) => {
                if let Some(node_id) = self.lead.current_node_id.clone() {
                    self.enter(&node_id);
                    self.run_current();
                } else {
                    self.fail("node_missing", "the lead has no current node".into());
                }
            }
            (LeadState::Stalled, Input::Due) => {
                let outcome = self.lead.pending_outcome.clone().unwrap_or_default();
                if self.after_outcome(&outcome, None) {
                    self.run_current();
                }
            }
            (LeadState::Waiting | LeadState::OutsideHours | LeadState::Throttled | LeadState::Paused, Input::Due) => {
                match self.current_node() {
                    Some((_, NodeType::Time, ..)) => {
                        if self.after_outcome("", None) {
                            self.run_current();
                        }
                    }
                    Some((_, NodeType::VoiceCall, _, config)) => {
                        match NodeConfig::parse(NodeType::VoiceCall, &config) {
                            Ok(NodeConfig::VoiceCall(c)) => self.try_dial(&c),
                            _ => self.fail("config_invalid", "the VOICE_CALL node's config is invalid".into()),
                        }
                    }
                    _ => self.fail("node_missing", "the lead's node no longer exists".into()),
                }
            }
        }
    }

    /// Upserts the lead's current history entry.
    fn write_entry(
        &mut self,
        status: StepStatus,
        outcome: Option<&str>,
        edge: Option<(&str, &str)>,
        detail: Option<Value>,
        exit: bool,
    ) {
        if self.lead.visit == 0 {
            return;
        }
        let (node_id, node_type, label) = match self.current_node() {
            Some((id, t, label, _)) => (id, t, label),
            None => (
                self.lead.current_node_id.clone().unwrap_or_default(),
                NodeType::Conditional,
                String::new(),
            ),
        };
        let is_call = node_type == NodeType::VoiceCall;
        self.history.push(HistoryWrite {
            idx: self.lead.visit,
            node_id,
            node_label: label,
            node_type,
            status,
            outcome: outcome.filter(|o| !o.is_empty()).map(String::from),
            edge_id: edge.map(|e| e.0.to_string()),
            next_node_id: edge.map(|e| e.1.to_string()),
            call_id: if is_call {
                self.lead.current_call_id.clone()
            } else {
                None
            },
            attempts: (is_call && self.lead.attempt > 0).then_some(self.lead.attempt),
            detail,
            entered_at: self.now(),
            exited_at: exit.then_some(self.now()),
        });
    }

    fn enter(&mut self, node_id: &str) {
        self.lead.current_node_id = Some(node_id.to_string());
        self.lead.visit += 1;
        self.lead.attempt = 0;
        self.lead.current_call_id = None;
        self.lead.pending_outcome = None;
        self.lead.exit_reason = None;
        self.lead.queued_at = None;
        self.lead.state = Some(LeadState::Running);
        self.lead.due_at = None;
        self.write_entry(StepStatus::Running, None, None, None, false);
    }

    fn finish(&mut self, status: LeadStatus, reason: Option<String>) {
        self.lead.status = status;
        self.lead.state = None;
        self.lead.due_at = None;
        self.lead.queued_at = None;
        self.lead.exit_reason = reason;
        self.lead.removal = None;
        self.lead.finished_at = Some(self.now());
        self.lease_until = None;
    }

    fn fail(&mut self, code: &str, message: String) {
        self.write_entry(
            StepStatus::Failed,
            None,
            None,
            Some(json!({"error": code, "message": message})),
            true,
        );
        self.finish(LeadStatus::Failed, Some(code.to_string()));
    }

    fn wait(&mut self, state: LeadState, due_at: Option<i64>, detail: Option<Value>) {
        self.lead.state = Some(state);
        self.lead.due_at = due_at;
        self.write_entry(StepStatus::Waiting, None, None, detail, false);
    }

    /// Records a node's outcome and moves the lead along the matching edge. Returns true when the lead
    /// entered a next node that should run now.
    fn after_outcome(&mut self, outcome: &str, detail: Option<Value>) -> bool {
        if let Some(reason) = self.lead.removal.clone() {
            self.write_entry(StepStatus::Completed, Some(outcome), None, detail, true);
            self.finish(LeadStatus::Removed, Some(reason));
            return false;
        }
        let node_id = self.lead.current_node_id.clone().unwrap_or_default();
        let Some(edge) = self.snap.graph.route(&node_id, outcome) else {
            let shown = if outcome.is_empty() { "(none)" } else { outcome };
            let mut detail = detail.unwrap_or_else(|| json!({}));
            if let Value::Object(map) = &mut detail {
                map.insert(
                    "stalled".into(),
                    json!(format!("no edge from this node takes outcome {shown}")),
                );
            }
            self.lead.pending_outcome = Some(outcome.to_string());
            self.wait(LeadState::Stalled, None, Some(detail));
            self.write_entry(StepStatus::Waiting, Some(outcome), None, None, false);
            self.lead.exit_reason = Some(shown.to_string());
            return false;
        };
        let (edge_id, next) = (edge.id.clone(), edge.to_node_id.clone());
        self.write_entry(
            StepStatus::Completed,
            Some(outcome),
            Some((&edge_id, &next)),
            detail,
            true,
        );
        self.lead.pending_outcome = None;
        self.lead.exit_reason = None;
        if !self.active() {
            // Paused (or finishing a step after a status change): wait at the next node, unentered.
            self.lead.current_node_id = Some(next);
            self.lead.state = Some(LeadState::Ready);
            self.lead.due_at = Some(self.now());
            return false;
        }
        self.enter(&next);
        true
    }

    /// Runs the node the lead just entered, and every instant node after it.
    fn run_current(&mut self) {
        loop {
            self.lead.instant_steps += 1;
            if self.lead.instant_steps > LOOP_LIMIT {
                return self.fail(
                    "loop_limit",
                    format!("more than {LOOP_LIMIT} steps without a call or a wait"),
                );
            }
            let Some((_, node_type, _, raw)) = self.current_node() else {
                return self.fail("node_missing", "the lead's node no longer exists".into());
            };
            let config = match NodeConfig::parse(node_type, &raw) {
                Ok(config) => config,
                Err(e) => return self.fail("config_invalid", e.message),
            };
            let (outcome, detail) = match config {
                NodeConfig::Terminal { reason } => {
                    self.write_entry(StepStatus::Completed, None, None, None, true);
                    let status = if node_type == NodeType::Converted {
                        LeadStatus::Completed
                    } else {
                        LeadStatus::Dropped
                    };
                    let reason = reason.or_else(|| {
                        Some(
                            if status == LeadStatus::Completed {
                                "converted"
                            } else {
                                "dropped"
                            }
                            .into(),
                        )
                    });
                    return self.finish(status, reason);
                }
                NodeConfig::Conditional(c) => {
                    let (outcome, detail) = condition::evaluate(&self.data(), &c);
                    (outcome, Some(detail))
                }
                NodeConfig::Time(TimeConfig::Delay { ms }) => {
                    let due = self.now() + self.batch.scaled(ms);
                    if due > self.now() {
                        self.lead.instant_steps = 0;
                        return self.wait(LeadState::Waiting, Some(due), None);
                    }
                    (String::new(), None)
                }
                NodeConfig::Time(TimeConfig::Until { field }) => match self.until_instant(&field) {
                    Ok(due) => {
                        self.lead.instant_steps = 0;
                        return self.wait(
                            LeadState::Waiting,
                            Some(due),
                            Some(json!({"until_field": field, "until": switchboard_domain::time::format_ms(due)})),
                        );
                    }
                    Err(note) => (String::new(), Some(json!({"until_field": field, "note": note}))),
                },
                NodeConfig::VoiceCall(c) => return self.try_dial(&c),
                NodeConfig::Application(a) => return self.start_action(&a, None),
            };
            if !self.after_outcome(&outcome, detail) {
                return;
            }
        }
    }

    fn data(&self) -> DataContext<'_> {
        DataContext {
            lead_id: &self.lead.id,
            workflow_id: &self.lead.workflow_id,
            phone_number: &self.lead.phone_number,
            variables: &self.lead.variables,
            facts: &self.lead.facts,
        }
    }

    fn lead_zone(&self) -> String {
        hours::lead_zone(
            self.lead.timezone.as_deref(),
            self.lead.phone_country.as_deref(),
            &self.snap.settings.timezone,
        )
    }

    /// The instant a `until_field` TIME node waits for, or why it continues at once.
    fn until_instant(&self, field: &str) -> Result<i64, String> {
        let value = self
            .data()
            .lookup(field)
            .ok_or_else(|| format!("{field} is missing; continued at once"))?;
        let text = condition::text_of(&value);
        let text = text.trim();
        let instant = text
            .parse::<jiff::Timestamp>()
            .map(|t| t.as_millisecond())
            .or_else(|_| {
                let zone = jiff::tz::TimeZone::get(&self.lead_zone()).unwrap_or(jiff::tz::TimeZone::UTC);
                text.parse::<jiff::civil::DateTime>()
                    .or_else(|_| text.parse::<jiff::civil::Date>().map(|d| d.at(0, 0, 0, 0)))
                    .and_then(|dt| dt.to_zoned_datetime(zone))
                    .map(|z| z.timestamp().as_millisecond())
            })
            .map_err(|_| format!("{field} = {text:?} is not a date-time; continued at once"))?;
        if instant <= self.now() {
            return Err(format!("{field} = {text} is in the past; continued at once"));
        }
        Ok(instant)
    }

    fn try_dial(&mut self, c: &VoiceCallConfig) {
        let (Some(agent_id), Some(from)) = (c.agent_id.clone(), c.from_phone_number.clone()) else {
            return self.fail(
                "config_invalid",
                "the VOICE_CALL node has no agent_id or from_phone_number".into(),
            );
        };
        if !self.snap.numbers.contains(&from) {
            return self.fail(
                "config_invalid",
                format!("{from} is not an active phone number of this organization"),
            );
        }
        if let Some(window) = &self.snap.settings.calling_hours {
            let zone = self.lead_zone();
            if let Some(opening) = hours::next_opening(self.now(), &zone, window) {
                let detail =
                    json!({"outside_hours": {"zone": zone, "until": switchboard_domain::time::format_ms(opening)}});
                return self.wait(LeadState::OutsideHours, Some(opening), Some(detail));
            }
        }
        let (workflow, org) = (self.lead.workflow_id.clone(), self.lead.organization_id.clone());
        let counts = &mut self.batch.calls_in_flight;
        let workflow_full =
            *counts.by_workflow.entry(workflow.clone()).or_insert(0) >= self.snap.settings.max_concurrent_calls;
        let org_full = *counts.by_organization.entry(org.clone()).or_insert(0) >= self.batch.org_max_concurrent_calls;
        if workflow_full || org_full {
            self.lead.queued_at = Some(self.lead.queued_at.or(self.lead.due_at).unwrap_or(self.batch.now));
            let limit = if workflow_full { "workflow" } else { "organization" };
            return self.wait(LeadState::Throttled, None, Some(json!({"throttled_by": limit})));
        }
        *counts.by_workflow.entry(workflow).or_insert(0) += 1;
        *counts.by_organization.entry(org).or_insert(0) += 1;
        self.dial(agent_id, from);
    }

    fn dial(&mut self, agent_id: String, from: String) {
        let now = self.now();
        self.lead.attempt += 1;
        self.lead.call_count += 1;
        self.lead.instant_steps = 0;
        self.lead.queued_at = None;
        let step_seq = self.expected_seq + 1;
        let outcome = simulator::outcome(&self.lead.variables, &self.lead.id, self.lead.call_count);
        let answered = outcome == CallOutcome::Completed;
        let talk_ms = if answered {
            i64::from(simulator::talk_seconds(&self.lead.variables)) * 1000
        } else {
            0
        };
        let call_id = ids::new_id(ids::CALL);
        self.calls.push(CallWrite::Insert(Box::new(Call {
            id: call_id.clone(),
            organization_id: self.lead.organization_id.clone(),
            workflow_id: Some(self.lead.workflow_id.clone()),
            workflow_lead_id: Some(self.lead.id.clone()),
            node_id: self.lead.current_node_id.clone(),
            agent_id: Some(agent_id),
            from_phone_number: from,
            to_phone_number: self.lead.phone_number.clone(),
            attempt: self.lead.attempt,
            status: if answered {
                CallStatus::InProgress
            } else {
                CallStatus::Initiated
            },
            outcome: None,
            end_reason: None,
            duration_seconds: None,
            transcript: None,
            summary: None,
            analysis: None,
            recording_url: None,
            provider: "simulator".into(),
            provider_call_id: Some(format!("sim_{}", &call_id[ids::CALL.len()..])),
            created_at: now,
            answered_at: answered.then_some(now),
            ended_at: None,
            idempotency_key: format!("{}:{step_seq}", self.lead.id),
        })));
        self.lead.current_call_id = Some(call_id);
        self.lead.step_seq = Some(step_seq);
        self.lead.state = Some(LeadState::Calling);
        self.lead.due_at = Some(now + self.batch.scaled(talk_ms));
        self.write_entry(StepStatus::Running, None, None, None, false);
    }

    /// The simulated call is over: its outcome is a pure function of the lead, so re-deriving it after a
    /// crash gives the same answer and never dials again.
    fn resolve_call(&mut self) {
        let now = self.now();
        let outcome = simulator::outcome(&self.lead.variables, &self.lead.id, self.lead.call_count);
        let answered = outcome == CallOutcome::Completed;
        let talk = if answered {
            simulator::talk_seconds(&self.lead.variables)
        } else {
            0
        };
        let analysis = answered.then(|| Value::Object(simulator::analysis(&self.lead.variables)));
        if let Some(call_id) = self.lead.current_call_id.clone() {
            self.calls.push(CallWrite::Finish(CallFinish {
                id: call_id,
                status: outcome.call_status(),
                outcome,
                end_reason: simulator::end_reason(outcome).into(),
                duration_seconds: talk,
                transcript: answered.then(|| "[simulated call]".to_string()),
                summary: answered.then(|| format!("Simulated call completed after {talk} s.")),
                analysis: analysis.clone(),
                answered_at: matches!(outcome, CallOutcome::Completed | CallOutcome::Voicemail).then_some(now),
                ended_at: now,
            }));
        }
        let counts = &mut self.batch.calls_in_flight;
        for n in [
            counts.by_workflow.get_mut(&self.lead.workflow_id),
            counts.by_organization.get_mut(&self.lead.organization_id),
        ]
        .into_iter()
        .flatten()
        {
            *n = n.saturating_sub(1);
        }
        self.freed_call_slot = true;
        let call_facts = json!({"status": outcome.as_str(), "outcome": outcome.as_str(), "duration_seconds": talk,
                                "attempts": self.lead.attempt, "analysis": analysis.unwrap_or_else(|| json!({})),
                                "id": self.lead.current_call_id});
        self.facts_mut().insert("call".into(), call_facts);
        let config = self
            .current_node()
            .and_then(|(_, t, _, raw)| match NodeConfig::parse(t, &raw) {
                Ok(NodeConfig::VoiceCall(c)) => Some(c),
                _ => None,
            });
        if let Some(c) = config {
            let retry =
                self.lead.removal.is_none() && c.retry_on.contains(&outcome) && self.lead.attempt < c.max_attempts;
            if retry {
                let due = now + self.batch.scaled(i64::from(c.retry_delay_minutes) * 60_000);
                return self.wait(
                    LeadState::Waiting,
                    Some(due),
                    Some(json!({"last_outcome": outcome.as_str()})),
                );
            }
        }
        if self.after_outcome(outcome.as_str(), None) {
            self.run_current();
        }
    }

    fn facts_mut(&mut self) -> &mut Map<String, Value> {
        if !self.lead.facts.is_object() {
            self.lead.facts = json!({});
        }
        self.lead.facts.as_object_mut().expect("facts is an object")
    }

    fn render_json(&self, value: &Value) -> Value {
        match value {
            Value::String(s) => Value::String(self.data().render(s)),
            Value::Array(items) => Value::Array(items.iter().map(|v| self.render_json(v)).collect()),
            Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), self.render_json(v))).collect()),
            other => other.clone(),
        }
    }

    fn start_action(&mut self, a: &ApplicationConfig, step_seq: Option<i64>) {
        let step_seq = step_seq.unwrap_or(self.expected_seq + 1);
        let data = self.data();
        let request = ActionRequest {
            method: a.method.clone(),
            url: data.render(&a.url),
            headers: a.headers.iter().map(|(k, v)| (k.clone(), data.render(v))).collect(),
            body: a.body.as_ref().map(|b| self.render_json(b)),
            timeout_ms: a.timeout_ms,
            step_seq,
            idempotency_key: format!("{}:{step_seq}", self.lead.id),
        };
        let until = self.now() + a.timeout_ms as i64 + ACTION_GRACE_MS;
        self.lead.step_seq = Some(step_seq);
        self.lead.state = Some(LeadState::Running);
        self.lead.due_at = Some(until);
        self.lease_until = Some(until);
        self.action = Some(request);
        self.write_entry(StepStatus::Running, None, None, None, false);
    }

    /// An action whose result was never recorded (a crash, an expired lease): send it again with the
    /// same idempotency key so the receiver can drop the repeat.
    fn redrive_action(&mut self) {
        match self.current_node().map(|(_, t, _, raw)| NodeConfig::parse(t, &raw)) {
            Some(Ok(NodeConfig::Application(a))) => self.start_action(&a, self.lead.step_seq),
            _ => self.fail("config_invalid", "the APPLICATION node's config is invalid".into()),
        }
    }

    fn finish_action(&mut self, result: ActionResult) {
        let outcome = if result.success { "success" } else { "failure" };
        self.facts_mut().insert(
            "application".into(),
            json!({"status": outcome, "status_code": result.status_code, "response": result.response}),
        );
        let detail = json!({"status_code": result.status_code, "error": result.error});
        if self.after_outcome(outcome, Some(detail)) {
            self.run_current();
        }
    }
}
