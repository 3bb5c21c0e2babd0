//! The engine through the API: the quick-start run, routing, retries, actions, lifecycle and limits.

use crate::helpers::{TestApp, example, expected_nurture};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;

const RUN_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn quickstart_leads_reach_the_outcome_their_simulator_columns_dictate() {
    let app = TestApp::spawn().await;
    let flow = app.nurture_workflow().await;
    let upload = app
        .upload(&flow.id, "quickstart.csv", example("quickstart.csv"), &[])
        .await;
    assert_eq!(upload.status, 201, "{}", upload.body);
    assert_eq!(upload.body["leads_enrolled"], 12);
    app.activate(&flow.id).await;

    let done = app.wait_for_status(&flow.id, "completed", RUN_TIMEOUT).await;
    let leads = app.leads(&flow.id).await;
    assert_eq!(leads.len(), 12);
    let mut counts: HashMap<&str, u64> = HashMap::new();
    for lead in &leads {
        let (path, status, calls) = expected_nurture(&lead["metadata"]);
        let phone = lead["phone_number"].as_str().unwrap();
        assert_eq!(lead["status"], status, "{phone}");
        *counts.entry(status).or_default() += 1;
        let id = lead["id"].as_str().unwrap();
        let history = app.history(&flow.id, id).await;
        let labels: Vec<&str> = history.iter().map(|h| h["node_label"].as_str().unwrap()).collect();
        assert_eq!(labels, path, "{phone}");
        assert!(
            history
                .iter()
                .all(|h| h["status"] == "completed" && h["exited_at"].is_string()),
            "{phone}: {history:?}"
        );
        let calls_made = app.calls_of(id).await;
        assert_eq!(calls_made.len(), calls, "{phone}");
        // Calls list newest first; their outcomes follow the `sim_outcome` sequence.
        let outcomes: Vec<&str> = calls_made
            .iter()
            .rev()
            .map(|c| c["outcome"].as_str().unwrap())
            .collect();
        let listed: Vec<String> = lead["metadata"]["sim_outcome"]
            .as_str()
            .unwrap()
            .split(',')
            .map(String::from)
            .collect();
        for (i, outcome) in outcomes.iter().enumerate() {
            assert_eq!(*outcome, listed[i.min(listed.len() - 1)], "{phone} call {}", i + 1);
        }
        assert!(lead["finished_at"].is_string());
        assert!(lead["state"].is_null());
    }
    assert_eq!(done["lead_counts"]["completed"], counts["completed"]);
    assert_eq!(done["lead_counts"]["dropped"], counts["dropped"]);
    assert_eq!(counts["completed"], 5);
    assert!(done["last_triggered_at"].is_string());

    // A completed call carries the simulator's analysis and talk time.
    let converted = leads.iter().find(|l| l["phone_number"] == "+12015550101").unwrap();
    let call = &app.calls_of(converted["id"].as_str().unwrap()).await[0];
    assert_eq!(call["status"], "completed");
    assert_eq!(call["analysis"], json!({"interest": "yes", "budget": "250000"}));
    assert_eq!(call["duration_seconds"], 30);
    assert_eq!(call["attempt"], 1);
    assert!(call["answered_at"].is_string() && call["ended_at"].is_string());
    let metrics = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("switchboard_leads{status=\"completed\"} 5"),
        "{metrics}"
    );
    assert!(metrics.contains("switchboard_leads{status=\"dropped\"} 7"), "{metrics}");
    assert!(metrics.contains("switchboard_calls_in_flight 0"), "{metrics}");
    for family in [
        "switchboard_steps_total",
        "switchboard_timer_lateness_seconds",
        "switchboard_http_request_duration_seconds",
    ] {
        assert!(metrics.contains(family), "{family} in {metrics}");
    }
    let by_workflow = app.get(&format!("/v1/calls?workflow_id={}&limit=100", flow.id)).await;
    assert_eq!(by_workflow.body["meta"]["total"], 18);
}

/// A workflow with one VOICE_CALL node whose edges are given; the node id is returned with the workflow id.
async fn call_workflow(app: &TestApp, config: Value) -> (String, String) {
    let (agent, from) = app.agent_and_number().await;
    let id = app.workflow("Calls").await;
    let mut config = config;
    config["agent_id"] = json!(agent);
    config["from_phone_number"] = json!(from);
    let call = app.node(&id, "VOICE_CALL", "Call", config).await;
    (id, call)
}

async fn enrol(app: &TestApp, workflow: &str, leads: Value) {
    let reply = app
        .post(&format!("/v1/workflows/{workflow}/leads"), json!({"leads": leads}))
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
}

/// Polls the lead with `phone` until `ready` holds (or about five seconds pass) and returns it as last seen.
async fn lead_when(app: &TestApp, workflow: &str, phone: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let mut lead = Value::Null;
    for _ in 0..200 {
        lead = lead_by_phone(app, workflow, phone).await;
        if ready(&lead) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    lead
}

async fn lead_by_phone(app: &TestApp, workflow: &str, phone: &str) -> Value {
    app.leads(workflow)
        .await
        .into_iter()
        .find(|l| l["phone_number"] == phone)
        .expect("lead")
}

#[tokio::test]
async fn routing_takes_exact_label_then_dnp_then_default() {
    let app = TestApp::spawn().await;
    let (id, call) = call_workflow(&app, json!({})).await;
    let converted = app.node(&id, "CONVERTED", "Won", json!({})).await;
    let dnp = app
        .node(&id, "DROPPED", "Did not pick up", json!({"reason": "no_contact"}))
        .await;
    let busy = app.node(&id, "DROPPED", "Busy line", json!({})).await;
    let fallback = app.node(&id, "DROPPED", "Other", json!({})).await;
    app.edge(&id, &call, &fallback, None).await;
    let dnp_edge = app.edge(&id, &call, &dnp, Some("DNP")).await;
    let busy_edge = app.edge(&id, &call, &busy, Some("busy")).await;
    app.edge(&id, &call, &converted, Some("COMPLETED")).await;
    enrol(
        &app,
        &id,
        json!([
            {"phone_number": "+12015550101", "metadata": {"sim_outcome": "NO_ANSWER"}},
            {"phone_number": "+12015550102", "metadata": {"sim_outcome": "BUSY"}},
            {"phone_number": "+12015550103", "metadata": {"sim_outcome": "FAILED"}},
            {"phone_number": "+12015550104", "metadata": {"sim_outcome": "COMPLETED"}},
            {"phone_number": "+12015550105", "metadata": {"sim_outcome": "VOICEMAIL"}}
        ]),
    )
    .await;
    app.activate(&id).await;
    app.wait_for_status(&id, "completed", RUN_TIMEOUT).await;
    let expect = [
        ("+12015550101", &dnp, Some(&dnp_edge), "no_contact"),
        ("+12015550102", &busy, Some(&busy_edge), "dropped"),
        ("+12015550103", &fallback, None, "dropped"),
        ("+12015550104", &converted, None, "converted"),
        ("+12015550105", &dnp, Some(&dnp_edge), "no_contact"),
    ];
    for (phone, node, edge, reason) in expect {
        let lead = lead_by_phone(&app, &id, phone).await;
        assert_eq!(lead["current_node_id"], json!(node), "{phone}");
        assert_eq!(lead["exit_reason"], reason, "{phone}");
        if let Some(edge) = edge {
            let history = app.history(&id, lead["id"].as_str().unwrap()).await;
            assert_eq!(history[0]["edge_id"], json!(edge), "{phone}");
        }
    }
}

#[tokio::test]
async fn a_lead_with_no_matching_edge_stalls_until_an_edge_is_added() {
    let app = TestApp::spawn().await;
    let id = app.workflow("Branches").await;
    let check = app
        .node(
            &id,
            "CONDITIONAL",
            "Tier",
            json!({"condition_field": "lead.tier", "branches": ["gold"]}),
        )
        .await;
    let gold = app.node(&id, "CONVERTED", "Gold", json!({})).await;
    app.edge(&id, &check, &gold, Some("GOLD")).await;
    enrol(&app, &id, json!([{"phone_number": "+12015550101", "metadata": {"tier": "Gold"}}, {"phone_number": "+12015550102", "metadata": {"tier": "silver"}}])).await;
    assert_eq!(
        app.post(&format!("/v1/workflows/{id}/activate"), json!({}))
            .await
            .status,
        200
    );
    let stalled = lead_when(&app, &id, "+12015550102", |l| l["state"] == "stalled").await;
    assert_eq!(stalled["state"], "stalled", "{stalled}");
    assert_eq!(stalled["status"], "in_progress");
    assert_eq!(stalled["exit_reason"], "no_match");
    assert_eq!(lead_by_phone(&app, &id, "+12015550101").await["status"], "completed");
    let history = app.history(&id, stalled["id"].as_str().unwrap()).await;
    assert_eq!(history[0]["detail"]["actual"], "silver", "{history:?}");
    assert!(history[0]["exited_at"].is_null());

    // Edits on a live workflow apply at once: a new default edge moves the stalled lead on.
    let other = app.node(&id, "DROPPED", "Other", json!({})).await;
    app.edge(&id, &check, &other, None).await;
    app.wait_for_status(&id, "completed", RUN_TIMEOUT).await;
    let moved = lead_by_phone(&app, &id, "+12015550102").await;
    assert_eq!(moved["status"], "dropped");
    assert_eq!(moved["current_node_id"], json!(other));
}

#[tokio::test]
async fn retries_follow_retry_on_and_stop_at_max_attempts() {
    let app = TestApp::spawn().await;
    let (id, call) = call_workflow(&app, json!({"max_attempts": 3, "retry_delay_minutes": 30})).await;
    let answered = app.node(&id, "CONVERTED", "Answered", json!({})).await;
    let unanswered = app.node(&id, "DROPPED", "Unanswered", json!({})).await;
    app.edge(&id, &call, &answered, Some("COMPLETED")).await;
    app.edge(&id, &call, &unanswered, None).await;
    enrol(
        &app,
        &id,
        json!([
            {"phone_number": "+12015550101", "metadata": {"sim_outcome": "NO_ANSWER,BUSY,COMPLETED"}},
            {"phone_number": "+12015550102", "metadata": {"sim_outcome": "NO_ANSWER"}},
            {"phone_number": "+12015550103", "metadata": {"sim_outcome": "VOICEMAIL,COMPLETED"}}
        ]),
    )
    .await;
    app.activate(&id).await;
    app.wait_for_status(&id, "completed", RUN_TIMEOUT).await;
    for (phone, status, calls, outcome) in [
        ("+12015550101", "completed", 3, "COMPLETED"),
        ("+12015550102", "dropped", 3, "NO_ANSWER"),
        ("+12015550103", "dropped", 1, "VOICEMAIL"),
    ] {
        let lead = lead_by_phone(&app, &id, phone).await;
        assert_eq!(lead["status"], status, "{phone}");
        let lead_calls = app.calls_of(lead["id"].as_str().unwrap()).await;
        assert_eq!(lead_calls.len(), calls, "{phone}");
        let attempts: Vec<u64> = lead_calls
            .iter()
            .rev()
            .map(|c| c["attempt"].as_u64().unwrap())
            .collect();
        assert_eq!(attempts, (1..=calls as u64).collect::<Vec<_>>(), "{phone}");
        // The retry delay (30 min, scaled) separates consecutive attempts: never shorter than configured.
        let created: Vec<i64> = lead_calls.iter().rev().map(|c| ms(&c["created_at"])).collect();
        let ended: Vec<i64> = lead_calls.iter().rev().map(|c| ms(&c["ended_at"])).collect();
        for pair in 1..calls {
            let gap = created[pair] - ended[pair - 1];
            assert!(
                gap as f64 >= 30.0 * 60_000.0 / crate::helpers::TEST_TIME_SCALE - 1.0,
                "{phone}: gap {gap}"
            );
        }
        let history = app.history(&id, lead["id"].as_str().unwrap()).await;
        assert_eq!(history[0]["attempts"], calls as u64, "{phone}");
        assert_eq!(history[0]["outcome"], outcome, "{phone}");
        assert_eq!(history[0]["call_id"], lead_calls[0]["id"], "{phone}");
    }
}

fn ms(value: &Value) -> i64 {
    value
        .as_str()
        .unwrap()
        .parse::<jiff::Timestamp>()
        .unwrap()
        .as_millisecond()
}

/// A local webhook receiver: records requests, answers 200 (JSON) on `/ok` and 500 on `/fail`.
async fn receiver() -> (String, std::sync::Arc<std::sync::Mutex<Vec<(String, Value)>>>) {
    use axum::routing::post;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = |seen: std::sync::Arc<std::sync::Mutex<Vec<(String, Value)>>>| {
        move |headers: axum::http::HeaderMap, body: axum::Json<Value>| {
            let seen = seen.clone();
            async move {
                let key = headers
                    .get("idempotency-key")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                seen.lock().unwrap().push((key, body.0));
            }
        }
    };
    let ok_seen = seen.clone();
    let app = axum::Router::new()
        .route(
            "/ok",
            post(move |h: axum::http::HeaderMap, b: axum::Json<Value>| {
                let handler = record(ok_seen.clone());
                async move {
                    handler(h, b).await;
                    axum::Json(json!({"crm": {"status": "created", "score": 87}}))
                }
            }),
        )
        .route(
            "/fail",
            post(|| async { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "down") }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

#[tokio::test]
async fn application_webhooks_render_templates_carry_idempotency_keys_and_branch() {
    let app = TestApp::spawn().await;
    let (base, seen) = receiver().await;
    let id = app.workflow("CRM push").await;
    let push = app
        .node(
            &id,
            "APPLICATION",
            "Push to CRM",
            json!({"action": "webhook", "url": format!("{base}/ok"),
            "headers": {"X-Lead": "{{lead_id}}"}, "body": {"phone": "{{phone_number}}", "name": "{{name}}"}}),
        )
        .await;
    let score = app
        .node(&id, "CONDITIONAL", "Score", json!({"conditions": [{"field": "application.response.crm.score", "operator": "greater_than", "value": 50}]}))
        .await;
    let broken = app
        .node(&id, "APPLICATION", "Broken CRM", json!({"url": format!("{base}/fail")}))
        .await;
    let won = app.node(&id, "CONVERTED", "Won", json!({})).await;
    let lost = app.node(&id, "DROPPED", "Lost", json!({})).await;
    app.edge(&id, &push, &score, Some("success")).await;
    app.edge(&id, &push, &lost, Some("failure")).await;
    app.edge(&id, &score, &broken, Some("true")).await;
    app.edge(&id, &score, &lost, Some("false")).await;
    app.edge(&id, &broken, &won, Some("failure")).await;
    app.edge(&id, &broken, &lost, Some("success")).await;
    enrol(
        &app,
        &id,
        json!([{"phone_number": "+12015550101", "metadata": {"name": "Avery"}}]),
    )
    .await;
    app.activate(&id).await;
    app.wait_for_status(&id, "completed", RUN_TIMEOUT).await;
    let lead = lead_by_phone(&app, &id, "+12015550101").await;
    assert_eq!(lead["status"], "completed", "{lead}");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let lead_id = lead["id"].as_str().unwrap();
    assert!(seen[0].0.starts_with(&format!("{lead_id}:")), "{:?}", seen[0]);
    assert_eq!(seen[0].1, json!({"phone": "+12015550101", "name": "Avery"}));
    let history = app.history(&id, lead_id).await;
    let outcomes: Vec<&str> = history.iter().map(|h| h["outcome"].as_str().unwrap_or("")).collect();
    assert_eq!(outcomes, ["success", "true", "failure", ""]);
    assert_eq!(history[2]["detail"]["status_code"], 500);
}

#[tokio::test]
async fn private_targets_are_refused_unless_allowed() {
    let app = TestApp::spawn_with(switchboard_engine::EngineConfig {
        time_scale: crate::helpers::TEST_TIME_SCALE,
        ..Default::default()
    })
    .await;
    let (base, seen) = receiver().await;
    let id = app.workflow("Private").await;
    let push = app
        .node(&id, "APPLICATION", "Push", json!({"url": format!("{base}/ok")}))
        .await;
    let won = app.node(&id, "CONVERTED", "Won", json!({})).await;
    let lost = app.node(&id, "DROPPED", "Lost", json!({})).await;
    app.edge(&id, &push, &won, Some("success")).await;
    app.edge(&id, &push, &lost, Some("failure")).await;
    enrol(&app, &id, json!([{"phone_number": "+12015550101"}])).await;
    app.activate(&id).await;
    app.wait_for_status(&id, "completed", RUN_TIMEOUT).await;
    let lead = lead_by_phone(&app, &id, "+12015550101").await;
    assert_eq!(lead["status"], "dropped");
    assert!(seen.lock().unwrap().is_empty());
    let history = app.history(&id, lead["id"].as_str().unwrap()).await;
    assert_eq!(history[0]["detail"]["error"], "target_forbidden");
}

#[tokio::test]
async fn pause_holds_leads_and_resume_continues_them() {
    let app = TestApp::spawn_with(switchboard_engine::EngineConfig {
        time_scale: 1000.0,
        allow_private_targets: true,
        ..Default::default()
    })
    .await;
    let flow = app.nurture_workflow().await;
    // 2 days / 1000 = about 173 s: leads park at the wait.
    enrol(&app, &flow.id, json!([{"phone_number": "+12015550101", "metadata": {"sim_outcome": "NO_ANSWER,COMPLETED", "sim_duration_seconds": "0"}}])).await;
    app.activate(&flow.id).await;
    let lead = lead_when(&app, &flow.id, "+12015550101", |l| l["state"] == "waiting").await;
    assert_eq!(lead["current_node_id"], json!(flow.wait), "{lead}");
    let due = lead["next_action_at"].clone();
    let paused = app.post(&format!("/v1/workflows/{}/pause", flow.id), json!({})).await;
    assert_eq!(paused.body["status"], "paused");
    let lead = lead_by_phone(&app, &flow.id, "+12015550101").await;
    assert_eq!(lead["state"], "paused");
    assert_eq!(lead["next_action_at"], due, "a pause keeps the absolute due time");
    let listed = app.get(&format!("/v1/workflows/{}/leads?state=paused", flow.id)).await;
    assert_eq!(listed.body["meta"]["total"], 1);
    // Enrolled while paused: pending until resume.
    enrol(&app, &flow.id, json!([{"phone_number": "+12015550102", "metadata": {"sim_outcome": "COMPLETED", "sim_analysis": "interest=yes", "sim_duration_seconds": "0"}}])).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(lead_by_phone(&app, &flow.id, "+12015550102").await["status"], "pending");
    let resumed = app.post(&format!("/v1/workflows/{}/resume", flow.id), json!({})).await;
    assert_eq!(resumed.body["status"], "active");
    lead_when(&app, &flow.id, "+12015550102", |l| l["status"] == "completed").await;
    assert_eq!(
        lead_by_phone(&app, &flow.id, "+12015550102").await["status"],
        "completed"
    );
    assert_eq!(lead_by_phone(&app, &flow.id, "+12015550101").await["state"], "waiting");
}

#[tokio::test]
async fn removing_a_waiting_lead_stops_it_for_good_and_cancel_removes_the_rest() {
    let app = TestApp::spawn_with(switchboard_engine::EngineConfig {
        time_scale: 20_000.0,
        allow_private_targets: true,
        ..Default::default()
    })
    .await;
    let flow = app.nurture_workflow().await;
    // 2 days / 20,000 is about 8.6 s of wait after the first call.
    enrol(
        &app,
        &flow.id,
        json!([{"phone_number": "+12015550101", "metadata": {"sim_outcome": "NO_ANSWER", "sim_duration_seconds": "0"}},
               {"phone_number": "+12015550102", "metadata": {"sim_outcome": "NO_ANSWER", "sim_duration_seconds": "0"}}]),
    )
    .await;
    app.activate(&flow.id).await;
    for _ in 0..200 {
        let leads = app.leads(&flow.id).await;
        if leads.iter().all(|l| l["state"] == "waiting") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let first = lead_by_phone(&app, &flow.id, "+12015550101").await;
    let first_id = first["id"].as_str().unwrap();
    let removed = app.delete(&format!("/v1/workflows/{}/leads/{first_id}", flow.id)).await;
    assert_eq!(removed.status, 200, "{}", removed.body);
    assert_eq!(removed.body["message"], "Lead removed from workflow.");
    let again = app.delete(&format!("/v1/workflows/{}/leads/{first_id}", flow.id)).await;
    crate::helpers::assert_error(&again, 409, "lead_final");
    let lead = lead_by_phone(&app, &flow.id, "+12015550101").await;
    assert_eq!(
        (lead["status"].as_str(), lead["exit_reason"].as_str()),
        (Some("removed"), Some("removed_via_api"))
    );
    let history = app.history(&flow.id, first_id).await;
    assert_eq!(history.last().unwrap()["status"], "skipped");

    let cancelled = app.post(&format!("/v1/workflows/{}/cancel", flow.id), json!({})).await;
    assert_eq!(cancelled.body["status"], "cancelled");
    assert_eq!(cancelled.body["lead_counts"]["removed"], 2);
    let second = lead_by_phone(&app, &flow.id, "+12015550102").await;
    assert_eq!(second["exit_reason"], "workflow_cancelled");
    // Past the wait's due time nothing else is dialled.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(app.calls_of(first_id).await.len(), 1);
    assert_eq!(app.calls_of(second["id"].as_str().unwrap()).await.len(), 1);
}

#[tokio::test]
async fn max_concurrent_calls_is_never_exceeded() {
    let app = TestApp::spawn_with(switchboard_engine::EngineConfig {
        time_scale: 1000.0,
        allow_private_targets: true,
        ..Default::default()
    })
    .await;
    let (id, call) = call_workflow(&app, json!({})).await;
    app.patch(
        &format!("/v1/workflows/{id}"),
        json!({"settings": {"max_concurrent_calls": 2}}),
    )
    .await;
    let done = app.node(&id, "CONVERTED", "Done", json!({})).await;
    app.edge(&id, &call, &done, None).await;
    // Each call talks 100 s / 1000 = 0.1 s.
    let leads: Vec<Value> = (0..8)
        .map(|i| json!({"phone_number": format!("+1201555{:04}", 110 + i), "metadata": {"sim_outcome": "COMPLETED", "sim_duration_seconds": "100"}}))
        .collect();
    enrol(&app, &id, Value::Array(leads)).await;
    app.activate(&id).await;
    app.wait_for_status(&id, "completed", RUN_TIMEOUT).await;
    let calls = app.get(&format!("/v1/calls?workflow_id={id}&limit=100")).await.body["data"]
        .as_array()
        .cloned()
        .unwrap();
    assert_eq!(calls.len(), 8);
    let spans: Vec<(i64, i64)> = calls
        .iter()
        .map(|c| (ms(&c["created_at"]), ms(&c["ended_at"])))
        .collect();
    for (start, _) in &spans {
        let overlapping = spans.iter().filter(|(s, e)| s <= start && start < e).count();
        assert!(overlapping <= 2, "{overlapping} calls in flight at {start}: {spans:?}");
    }
}

#[tokio::test]
async fn calling_hours_hold_calls_until_the_window_opens() {
    let app = TestApp::spawn().await;
    let (id, call) = call_workflow(&app, json!({})).await;
    let done = app.node(&id, "CONVERTED", "Done", json!({})).await;
    app.edge(&id, &call, &done, None).await;
    // A window that is closed now: the two hours that started five hours ago, every day, in UTC.
    let now = jiff::Timestamp::now().to_zoned_datetime(jiff::tz::TimeZone::UTC);
    let start_hour = (now.hour() as i64 + 19) % 24;
    let (start_hour, end_hour) = if start_hour >= 22 {
        (1, 3)
    } else {
        (start_hour, start_hour + 2)
    };
    let hours = json!({"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": format!("{start_hour:02}:00"), "end": format!("{end_hour:02}:00")});
    app.patch(
        &format!("/v1/workflows/{id}"),
        json!({"settings": {"calling_hours": hours, "timezone": "UTC"}}),
    )
    .await;
    enrol(&app, &id, json!([{"phone_number": "+12015550101", "timezone": "UTC"}])).await;
    app.activate(&id).await;
    let lead = lead_when(&app, &id, "+12015550101", |l| l["state"] == "outside_hours").await;
    assert_eq!(lead["state"], "outside_hours", "{lead}");
    let opening = ms(&lead["next_action_at"]);
    let opening_hour = jiff::Timestamp::from_millisecond(opening)
        .unwrap()
        .to_zoned_datetime(jiff::tz::TimeZone::UTC);
    assert_eq!((opening_hour.hour() as i64, opening_hour.minute()), (start_hour, 0));
    assert!(app.calls_of(lead["id"].as_str().unwrap()).await.is_empty());
}

#[tokio::test]
async fn the_organization_cap_spans_workflows() {
    let app = TestApp::spawn_with(switchboard_engine::EngineConfig {
        time_scale: 1000.0,
        allow_private_targets: true,
        org_max_concurrent_calls: 3,
        ..Default::default()
    })
    .await;
    let (agent, from) = app.agent_and_number().await;
    let mut workflows = Vec::new();
    for (w, title) in ["North", "South"].iter().enumerate() {
        let id = app.workflow(title).await;
        let call = app
            .node(
                &id,
                "VOICE_CALL",
                "Call",
                json!({"agent_id": agent, "from_phone_number": from}),
            )
            .await;
        let done = app.node(&id, "CONVERTED", "Done", json!({})).await;
        app.edge(&id, &call, &done, None).await;
        // Each workflow alone may run 10 calls; together they share the organization's 3.
        let leads: Vec<Value> = (0..6)
            .map(|i| {
                json!({"phone_number": format!("+1201555{:04}", 300 + w * 10 + i),
                            "metadata": {"sim_outcome": "COMPLETED", "sim_duration_seconds": "100"}})
            })
            .collect();
        enrol(&app, &id, Value::Array(leads)).await;
        workflows.push(id);
    }
    for id in &workflows {
        app.activate(id).await;
    }
    let mut spans = Vec::new();
    for id in &workflows {
        app.wait_for_status(id, "completed", RUN_TIMEOUT).await;
        let calls = app.get(&format!("/v1/calls?workflow_id={id}&limit=100")).await.body["data"]
            .as_array()
            .cloned()
            .unwrap();
        assert_eq!(calls.len(), 6);
        spans.extend(calls.iter().map(|c| (ms(&c["created_at"]), ms(&c["ended_at"]))));
    }
    for (start, _) in &spans {
        let overlapping = spans.iter().filter(|(s, e)| s <= start && start < e).count();
        assert!(overlapping <= 3, "{overlapping} calls in flight at {start}: {spans:?}");
    }
}

#[tokio::test]
async fn each_lead_keeps_its_own_local_calling_hours() {
    let app = TestApp::spawn().await;
    let (id, call) = call_workflow(&app, json!({})).await;
    let done = app.node(&id, "CONVERTED", "Done", json!({})).await;
    app.edge(&id, &call, &done, None).await;
    // A two-hour window around the current hour in Kolkata; New York is 9.5 to 10.5 hours behind, so closed there.
    let kolkata = jiff::Timestamp::now().to_zoned_datetime(jiff::tz::TimeZone::get("Asia/Kolkata").unwrap());
    let hour = kolkata.hour() as i64;
    let start = (hour - 1).max(0);
    let end = if hour + 2 > 23 {
        "23:59".to_string()
    } else {
        format!("{:02}:00", hour + 2)
    };
    let hours = json!({"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": format!("{start:02}:00"), "end": end});
    app.patch(
        &format!("/v1/workflows/{id}"),
        json!({"settings": {"calling_hours": hours, "timezone": "UTC"}}),
    )
    .await;
    // One lead read in its number's country's zone (India has one), one in its own zone, New York.
    enrol(
        &app,
        &id,
        json!([{"phone_number": "+919876543210"}, {"phone_number": "+12015550101", "timezone": "America/New_York"}]),
    )
    .await;
    app.activate(&id).await;
    let mut new_york = Value::Null;
    for _ in 0..200 {
        new_york = lead_by_phone(&app, &id, "+12015550101").await;
        if new_york["state"] == "outside_hours"
            && lead_by_phone(&app, &id, "+919876543210").await["status"] == "completed"
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        lead_by_phone(&app, &id, "+919876543210").await["status"],
        "completed",
        "inside Kolkata's hours"
    );
    assert_eq!(new_york["state"], "outside_hours", "{new_york}");
    assert!(app.calls_of(new_york["id"].as_str().unwrap()).await.is_empty());
    let opening = jiff::Timestamp::from_millisecond(ms(&new_york["next_action_at"]))
        .unwrap()
        .to_zoned_datetime(jiff::tz::TimeZone::get("America/New_York").unwrap());
    assert_eq!(
        (opening.hour() as i64, opening.minute()),
        (start, 0),
        "opens at the window's start in New York"
    );
}

#[tokio::test]
async fn removing_a_lead_mid_call_lets_the_call_finish_then_stops() {
    let app = TestApp::spawn_with(switchboard_engine::EngineConfig {
        time_scale: 1000.0,
        allow_private_targets: true,
        ..Default::default()
    })
    .await;
    let flow = app.nurture_workflow().await;
    // A 2,000 s call lasts 2 s here; it completes, and would go on to the condition but for the removal.
    enrol(
        &app,
        &flow.id,
        json!([{"phone_number": "+12015550101", "metadata": {"sim_outcome": "COMPLETED", "sim_analysis": "interest=yes", "sim_duration_seconds": "2000"}}]),
    )
    .await;
    app.activate(&flow.id).await;
    let lead = lead_when(&app, &flow.id, "+12015550101", |l| l["state"] == "calling").await;
    assert_eq!(lead["state"], "calling", "{lead}");
    let id = lead["id"].as_str().unwrap().to_string();
    let removed = app.delete(&format!("/v1/workflows/{}/leads/{id}", flow.id)).await;
    assert_eq!(removed.status, 200, "{}", removed.body);
    // Still on the call: the running step finishes first.
    assert_eq!(
        lead_by_phone(&app, &flow.id, "+12015550101").await["status"],
        "in_progress"
    );
    app.wait_for_status(&flow.id, "completed", RUN_TIMEOUT).await;
    let lead = lead_by_phone(&app, &flow.id, "+12015550101").await;
    assert_eq!(
        (lead["status"].as_str(), lead["exit_reason"].as_str()),
        (Some("removed"), Some("removed_via_api"))
    );
    let history = app.history(&flow.id, &id).await;
    assert_eq!(history.len(), 1, "nothing after the call: {history:?}");
    assert_eq!(
        (history[0]["status"].as_str(), history[0]["outcome"].as_str()),
        (Some("completed"), Some("COMPLETED"))
    );
    let calls = app.calls_of(&id).await;
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["status"], "completed", "the call's outcome is recorded");
}

#[tokio::test]
async fn the_loop_guard_fails_a_lead_that_never_waits() {
    let app = TestApp::spawn().await;
    let id = app.workflow("Spin").await;
    // The cycle holds a TIME node (so activation allows it), but its until_field is missing: it never waits.
    let check = app
        .node(
            &id,
            "CONDITIONAL",
            "Check",
            json!({"conditions": [{"field": "x", "operator": "exists"}]}),
        )
        .await;
    let wait = app
        .node(&id, "TIME", "Wait for callback", json!({"until_field": "callback_at"}))
        .await;
    let done = app.node(&id, "CONVERTED", "Done", json!({})).await;
    app.edge(&id, &check, &done, Some("true")).await;
    app.edge(&id, &check, &wait, Some("false")).await;
    app.edge(&id, &wait, &check, None).await;
    app.patch(&format!("/v1/workflows/{id}"), json!({"entry_node_id": check}))
        .await;
    enrol(&app, &id, json!([{"phone_number": "+12015550101"}])).await;
    app.activate(&id).await;
    app.wait_for_status(&id, "completed", RUN_TIMEOUT).await;
    let lead = lead_by_phone(&app, &id, "+12015550101").await;
    assert_eq!(
        (lead["status"].as_str(), lead["exit_reason"].as_str()),
        (Some("failed"), Some("loop_limit"))
    );
    let history = app.history(&id, lead["id"].as_str().unwrap()).await;
    assert_eq!(history.len(), 1001, "1,000 steps, then the one that failed");
    assert_eq!(history.last().unwrap()["status"], "failed");
    assert!(history[1]["detail"]["note"].as_str().unwrap().contains("missing"));
}

#[tokio::test]
async fn a_call_that_leads_straight_to_another_call_keeps_its_slot_at_the_cap() {
    let app = TestApp::spawn().await;
    let (id, first) = call_workflow(&app, json!({})).await;
    app.patch(
        &format!("/v1/workflows/{id}"),
        json!({"settings": {"max_concurrent_calls": 1}}),
    )
    .await;
    let (agent, from) = {
        let node = app.get(&format!("/v1/workflows/{id}/nodes/{first}")).await.body;
        (
            node["config"]["agent_id"].clone(),
            node["config"]["from_phone_number"].clone(),
        )
    };
    // The first call's end frees the one slot and the lead takes it again at once for the second call.
    let second = app
        .node(
            &id,
            "VOICE_CALL",
            "Second",
            json!({"agent_id": agent, "from_phone_number": from}),
        )
        .await;
    let done = app.node(&id, "CONVERTED", "Done", json!({})).await;
    app.edge(&id, &first, &second, None).await;
    app.edge(&id, &second, &done, None).await;
    let leads: Vec<Value> = (0..3)
        .map(|i| json!({"phone_number": format!("+1201555{:04}", 500 + i), "metadata": {"sim_outcome": "COMPLETED"}}))
        .collect();
    enrol(&app, &id, Value::Array(leads)).await;
    app.activate(&id).await;
    app.wait_for_status(&id, "completed", RUN_TIMEOUT).await;
    let calls = app.get(&format!("/v1/calls?workflow_id={id}&limit=100")).await.body["meta"]["total"].clone();
    assert_eq!(calls, 6);
}
