//! The HTTP contract: auth, the error body, tenant isolation, validation, lifecycle conflicts, duplicate.

use crate::helpers::{TestApp, assert_error};
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn every_v1_request_needs_a_valid_key() {
    let app = TestApp::spawn().await;
    let cases = [
        (None, "missing"),
        (Some("not-a-key"), "malformed"),
        (Some("sbk_key_aaaaaaaaaaaa_wrongsecret"), "unknown"),
    ];
    for (key, why) in cases {
        let reply = app.send(Method::GET, "/v1/workflows", None, key).await;
        assert_error(&reply, 401, "unauthorized");
        assert_eq!(reply.status, 401, "{why}");
    }
    // Right key id, wrong secret.
    let (key_id, _) = switchboard_api::extract::parse_api_key(&app.key).unwrap();
    let forged = format!("sbk_{key_id}_forgedsecretforgedsecret");
    assert_error(
        &app.send(Method::GET, "/v1/workflows", None, Some(&forged)).await,
        401,
        "unauthorized",
    );
    // A revoked key stops working.
    let other = app.key_for("revoked-org").await;
    assert_eq!(
        app.send(Method::GET, "/v1/workflows", None, Some(&other)).await.status,
        200
    );
    let (other_id, _) = switchboard_api::extract::parse_api_key(&other).unwrap();
    assert!(app.store.revoke_api_key(other_id).await.unwrap());
    assert_error(
        &app.send(Method::GET, "/v1/workflows", None, Some(&other)).await,
        401,
        "unauthorized",
    );
    // Health probes need no key.
    assert_eq!(app.send(Method::GET, "/healthz", None, None).await.status, 200);
    assert_eq!(app.send(Method::GET, "/readyz", None, None).await.status, 200);
}

#[tokio::test]
async fn another_organizations_objects_answer_404_and_lists_do_not_leak() {
    let app = TestApp::spawn().await;
    let flow = app.nurture_workflow().await;
    app.post(
        &format!("/v1/workflows/{}/leads", flow.id),
        json!({"phone_number": "+12015550101"}),
    )
    .await;
    let lead = app.leads(&flow.id).await[0]["id"].as_str().unwrap().to_string();
    let agent = app.get("/v1/agents").await.body["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let number = app.get("/v1/phone-numbers").await.body["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let intruder = app.key_for("intruder").await;
    let id = &flow.id;
    for path in [
        format!("/v1/workflows/{id}"),
        format!("/v1/workflows/{id}/nodes"),
        format!("/v1/workflows/{id}/nodes/{}", flow.first),
        format!("/v1/workflows/{id}/edges"),
        format!("/v1/workflows/{id}/leads"),
        format!("/v1/workflows/{id}/leads/{lead}"),
        format!("/v1/workflows/{id}/leads/{lead}/history"),
        format!("/v1/workflows/{id}/leads/variable-keys"),
        format!("/v1/agents/{agent}"),
        format!("/v1/phone-numbers/{number}"),
    ] {
        assert_error(
            &app.send(Method::GET, &path, None, Some(&intruder)).await,
            404,
            "not_found",
        );
    }
    for (method, path) in [
        (Method::POST, format!("/v1/workflows/{id}/activate")),
        (Method::POST, format!("/v1/workflows/{id}/duplicate")),
        (Method::DELETE, format!("/v1/workflows/{id}")),
        (Method::DELETE, format!("/v1/workflows/{id}/leads/{lead}")),
        (Method::DELETE, format!("/v1/workflows/{id}/nodes/{}", flow.first)),
    ] {
        assert_error(&app.send(method, &path, None, Some(&intruder)).await, 404, "not_found");
    }
    let patch = app
        .send(
            Method::PATCH,
            &format!("/v1/workflows/{id}"),
            Some(json!({"title": "mine"})),
            Some(&intruder),
        )
        .await;
    assert_error(&patch, 404, "not_found");
    for path in [
        "/v1/workflows",
        "/v1/agents",
        "/v1/phone-numbers",
        "/v1/calls",
        &format!("/v1/calls?workflow_id={id}"),
    ] {
        let reply = app.send(Method::GET, path, None, Some(&intruder)).await;
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.body["meta"]["total"], 0, "{path}: {}", reply.body);
    }
    // The owner still sees everything unchanged.
    assert_eq!(
        app.get(&format!("/v1/workflows/{id}")).await.body["title"],
        "Lead nurture"
    );
}

#[tokio::test]
async fn errors_have_one_shape_and_carry_the_request_id() {
    let app = TestApp::spawn().await;
    let reply = app.get("/v1/workflows/wfl_doesnotexist").await;
    assert_error(&reply, 404, "not_found");
    assert!(reply.body["request_id"].as_str().unwrap().starts_with("req_"));
    assert_error(&app.get("/v1/nothing-here").await, 404, "route_not_found");
    // The caller's request id is echoed when well-formed.
    let echoed = app
        .client
        .get(format!("{}/v1/workflows/wfl_x", app.base))
        .bearer_auth(&app.key)
        .header("x-request-id", "trace-42.a_b")
        .send()
        .await
        .unwrap();
    let echoed = TestApp::reply(echoed).await;
    assert_eq!(echoed.body["request_id"], "trace-42.a_b");
    let bad_id = app
        .client
        .get(format!("{}/v1/workflows", app.base))
        .bearer_auth(&app.key)
        .header("x-request-id", "has space")
        .send()
        .await
        .unwrap();
    assert!(bad_id.headers()["x-request-id"].to_str().unwrap().starts_with("req_"));
    // Malformed JSON, wrong content type, unknown fields, non-object bodies.
    let raw = |body: &'static str, content_type: &'static str| {
        app.client
            .post(format!("{}/v1/workflows", app.base))
            .bearer_auth(&app.key)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    assert_error(
        &TestApp::reply(raw("{\"title\": ", "application/json").await.unwrap()).await,
        400,
        "invalid_json",
    );
    assert_error(
        &TestApp::reply(raw("[1]", "application/json").await.unwrap()).await,
        400,
        "invalid_json",
    );
    assert_error(
        &TestApp::reply(raw("title=x", "text/plain").await.unwrap()).await,
        415,
        "unsupported_media_type",
    );
    let unknown = app.post("/v1/workflows", json!({"title": "x", "colour": "red"})).await;
    assert!(
        assert_error(&unknown, 400, "unknown_field")["message"]
            .as_str()
            .unwrap()
            .contains("colour")
    );
    let big = "x".repeat(1024 * 1024 + 10);
    let too_big = app
        .post("/v1/workflows", json!({"title": "x", "description": big}))
        .await;
    assert_error(&too_big, 413, "payload_too_large");
    // Pagination limits.
    assert_error(&app.get("/v1/workflows?limit=101").await, 400, "validation_failed");
    assert_error(&app.get("/v1/workflows?page=0").await, 400, "validation_failed");
    assert_error(&app.get("/v1/workflows?status=bogus").await, 400, "validation_failed");
    let method = app.send(Method::PUT, "/v1/workflows", None, Some(&app.key)).await;
    assert_error(&method, 405, "method_not_allowed");
}

#[tokio::test]
async fn workflows_are_created_listed_and_patched_as_the_contract_says() {
    let app = TestApp::spawn().await;
    assert_error(&app.post("/v1/workflows", json!({})).await, 400, "validation_failed");
    assert_error(
        &app.post("/v1/workflows", json!({"title": "a", "status": "active"}))
            .await,
        400,
        "activate_separately",
    );
    assert_error(
        &app.post("/v1/workflows", json!({"title": "a", "name": "b"})).await,
        400,
        "validation_failed",
    );
    assert_error(
        &app.post("/v1/workflows", json!({"title": "x".repeat(256)})).await,
        400,
        "validation_failed",
    );
    let bad_settings = app
        .post(
            "/v1/workflows",
            json!({"title": "a", "settings": {"timezone": "Nowhere/City"}}),
        )
        .await;
    assert!(
        assert_error(&bad_settings, 400, "validation_failed")["message"]
            .as_str()
            .unwrap()
            .contains("timezone")
    );

    let created = app.create("/v1/workflows", json!({"name": "Renewals", "description": "d", "status": "draft", "settings": {"timezone": "Asia/Kolkata"}})).await;
    assert_eq!(created["title"], "Renewals");
    assert_eq!(created["name"], "Renewals");
    assert_eq!(created["status"], "draft");
    assert_eq!(created["settings"]["timezone"], "Asia/Kolkata");
    assert_eq!(created["settings"]["max_concurrent_calls"], 10);
    assert_eq!(
        created["lead_counts"],
        json!({"pending": 0, "in_progress": 0, "completed": 0, "dropped": 0, "removed": 0, "failed": 0})
    );
    assert!(created["id"].as_str().unwrap().starts_with("wfl_") && created["id"].as_str().unwrap().len() == 16);
    assert!(created["created_at"].as_str().unwrap().ends_with('Z'));
    let id = created["id"].as_str().unwrap();
    app.create("/v1/workflows", json!({"title": "Collections"})).await;

    let listed = app.get("/v1/workflows?limit=1").await;
    assert_eq!(
        listed.body["meta"],
        json!({"page": 1, "limit": 1, "total": 2, "totalPages": 2})
    );
    assert_eq!(listed.body["data"][0]["title"], "Collections", "newest first");
    assert_eq!(app.get("/v1/workflows?search=RENEW").await.body["meta"]["total"], 1);
    assert_eq!(app.get("/v1/workflows?status=running").await.body["meta"]["total"], 0);
    assert_eq!(app.get("/v1/workflows?status=draft").await.body["meta"]["total"], 2);

    let patched = app
        .patch(
            &format!("/v1/workflows/{id}"),
            json!({"settings": {"max_concurrent_calls": 3}, "description": null}),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.body["settings"]["max_concurrent_calls"], 3);
    assert_eq!(
        patched.body["settings"]["timezone"], "Asia/Kolkata",
        "settings merge key by key"
    );
    assert!(patched.body["description"].is_null());
    assert_error(
        &app.patch(&format!("/v1/workflows/{id}"), json!({"status": "active"}))
            .await,
        409,
        "status_not_patchable",
    );
    assert_error(
        &app.patch(&format!("/v1/workflows/{id}"), json!({})).await,
        400,
        "validation_failed",
    );
    assert_error(
        &app.patch(&format!("/v1/workflows/{id}"), json!({"entry_node_id": "node_nope"}))
            .await,
        400,
        "validation_failed",
    );
}

#[tokio::test]
async fn lifecycle_conflicts_answer_409_with_their_codes() {
    let app = TestApp::spawn().await;
    let flow = app.nurture_workflow().await;
    let path = |action: &str| format!("/v1/workflows/{}/{action}", flow.id);
    assert_error(&app.post(&path("pause"), json!({})).await, 409, "workflow_not_active");
    assert_error(&app.post(&path("resume"), json!({})).await, 409, "workflow_not_paused");
    assert_eq!(app.post(&path("activate"), json!({})).await.status, 200);
    assert_error(&app.post(&path("activate"), json!({})).await, 409, "workflow_not_draft");
    assert_error(&app.post(&path("resume"), json!({})).await, 409, "workflow_not_paused");
    assert_error(
        &app.delete(&format!("/v1/workflows/{}", flow.id)).await,
        409,
        "workflow_active",
    );
    assert_eq!(app.post(&path("pause"), json!({})).await.body["status"], "paused");
    assert_error(&app.post(&path("pause"), json!({})).await, 409, "workflow_not_active");
    assert_error(
        &app.delete(&format!("/v1/workflows/{}", flow.id)).await,
        409,
        "workflow_active",
    );
    assert_eq!(app.post(&path("cancel"), json!({})).await.body["status"], "cancelled");
    assert_error(&app.post(&path("cancel"), json!({})).await, 409, "workflow_final");
    assert_error(&app.post(&path("activate"), json!({})).await, 409, "workflow_not_draft");
    // Final workflows refuse edits and uploads, but can be read, duplicated and deleted.
    assert_error(
        &app.patch(&format!("/v1/workflows/{}", flow.id), json!({"title": "x"}))
            .await,
        409,
        "workflow_final",
    );
    assert_error(
        &app.post(
            &format!("/v1/workflows/{}/nodes", flow.id),
            json!({"node_type": "CONVERTED"}),
        )
        .await,
        409,
        "workflow_final",
    );
    let edge = json!({"from_node_id": flow.first, "to_node_id": flow.dropped, "label": "VOICEMAIL"});
    assert_error(
        &app.post(&format!("/v1/workflows/{}/edges", flow.id), edge).await,
        409,
        "workflow_final",
    );
    assert_error(
        &app.post(
            &format!("/v1/workflows/{}/leads", flow.id),
            json!({"phone_number": "+12015550101"}),
        )
        .await,
        409,
        "workflow_final",
    );
    assert_eq!(app.post(&path("duplicate"), json!({})).await.status, 201);
    let deleted = app.delete(&format!("/v1/workflows/{}", flow.id)).await;
    assert_eq!(deleted.body, json!({"message": "Workflow deleted."}));
    assert_error(&app.get(&format!("/v1/workflows/{}", flow.id)).await, 404, "not_found");
}

#[tokio::test]
async fn activation_reports_graph_problems_as_structured_errors() {
    let app = TestApp::spawn().await;
    let id = app.workflow("Broken").await;
    let empty = app.post(&format!("/v1/workflows/{id}/validate"), json!({})).await;
    assert_eq!(empty.body["valid"], false);
    assert_eq!(empty.body["errors"][0]["code"], "no_nodes");
    let call = app.node(&id, "VOICE_CALL", "Call", json!({})).await;
    let check = app
        .node(
            &id,
            "CONDITIONAL",
            "Check",
            json!({"conditions": [{"field": "x", "operator": "exists"}]}),
        )
        .await;
    let done = app.node(&id, "CONVERTED", "Done", json!({})).await;
    app.node(&id, "DROPPED", "Orphan", json!({})).await;
    app.edge(&id, &call, &check, Some("COMPLETED")).await;
    app.edge(&id, &check, &done, Some("true")).await;
    let reply = app.post(&format!("/v1/workflows/{id}/activate"), json!({})).await;
    let body = assert_error(&reply, 400, "graph_invalid");
    let codes: Vec<&str> = body["details"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["code"].as_str().unwrap())
        .collect();
    assert!(codes.contains(&"entry_ambiguous"), "{codes:?}");
    assert!(codes.contains(&"uncovered_outcome"), "{codes:?}");
    assert!(codes.contains(&"config_invalid"), "{codes:?}");
    let validated = app.post(&format!("/v1/workflows/{id}/validate"), json!({})).await;
    assert_eq!(validated.status, 200);
    assert_eq!(validated.body["valid"], false);
    assert_eq!(
        app.get(&format!("/v1/workflows/{id}")).await.body["status"],
        "draft",
        "validate and a failed activate change nothing"
    );
}

#[tokio::test]
async fn duplicate_copies_the_graph_with_new_ids_and_nothing_else() {
    let app = TestApp::spawn().await;
    let flow = app.nurture_workflow().await;
    app.patch(
        &format!("/v1/workflows/{}", flow.id),
        json!({"entry_node_id": flow.first, "settings": {"max_concurrent_calls": 7}}),
    )
    .await;
    app.post(
        &format!("/v1/workflows/{}/leads", flow.id),
        json!({"phone_number": "+12015550101"}),
    )
    .await;
    app.activate(&flow.id).await;
    let copy = app
        .create(&format!("/v1/workflows/{}/duplicate", flow.id), json!({}))
        .await;
    assert_eq!(copy["title"], "Lead nurture (Copy)");
    assert_eq!(copy["status"], "draft");
    assert_eq!(copy["settings"]["max_concurrent_calls"], 7);
    assert_eq!(copy["enrolled_leads"], 0);
    assert_eq!(
        (copy["node_count"].as_u64(), copy["edge_count"].as_u64()),
        (Some(6), Some(9))
    );
    let copy_id = copy["id"].as_str().unwrap();
    assert_ne!(copy_id, flow.id);
    let original_nodes = app.get(&format!("/v1/workflows/{}/nodes", flow.id)).await.body["data"]
        .as_array()
        .cloned()
        .unwrap();
    let copied_nodes = app.get(&format!("/v1/workflows/{copy_id}/nodes")).await.body["data"]
        .as_array()
        .cloned()
        .unwrap();
    let copied_ids: Vec<&str> = copied_nodes.iter().map(|n| n["id"].as_str().unwrap()).collect();
    for (original, copied) in original_nodes.iter().zip(&copied_nodes) {
        assert_ne!(original["id"], copied["id"]);
        assert_eq!(
            (&original["node_type"], &original["label"], &original["config"]),
            (&copied["node_type"], &copied["label"], &copied["config"])
        );
    }
    let entry_index = original_nodes
        .iter()
        .position(|n| n["id"] == flow.first.as_str())
        .unwrap();
    assert_eq!(copy["entry_node_id"], copied_nodes[entry_index]["id"]);
    let copied_edges = app.get(&format!("/v1/workflows/{copy_id}/edges")).await.body["data"]
        .as_array()
        .cloned()
        .unwrap();
    assert_eq!(copied_edges.len(), 9);
    for edge in &copied_edges {
        assert!(
            copied_ids.contains(&edge["from_node_id"].as_str().unwrap())
                && copied_ids.contains(&edge["to_node_id"].as_str().unwrap())
        );
    }
    let named = app
        .create(
            &format!("/v1/workflows/{}/duplicate", flow.id),
            json!({"title": "Second wave"}),
        )
        .await;
    assert_eq!(named["title"], "Second wave");
    // The copy shares nothing: editing it leaves the original alone.
    app.delete(&format!(
        "/v1/workflows/{copy_id}/nodes/{}",
        copied_nodes[5]["id"].as_str().unwrap()
    ))
    .await;
    assert_eq!(
        app.get(&format!("/v1/workflows/{}", flow.id)).await.body["node_count"],
        6
    );
    assert_error(
        &app.post("/v1/workflows/wfl_000000000000/duplicate", json!({})).await,
        404,
        "not_found",
    );
}

#[tokio::test]
async fn nodes_and_edges_validate_their_input() {
    let app = TestApp::spawn().await;
    let id = app.workflow("Graph").await;
    let nodes = format!("/v1/workflows/{id}/nodes");
    let reply = app.post(&nodes, json!({"node_type": "SMS"})).await;
    assert!(
        assert_error(&reply, 400, "invalid_node_type")["message"]
            .as_str()
            .unwrap()
            .contains("VOICE_CALL")
    );
    let reply = app
        .post(&nodes, json!({"node_type": "TIME", "config": {"delay_minutes": -1}}))
        .await;
    assert!(
        assert_error(&reply, 400, "config_invalid")["message"]
            .as_str()
            .unwrap()
            .contains("delay_minutes")
    );
    assert_error(
        &app.post(&nodes, json!({"node_type": "TIME"})).await,
        400,
        "config_invalid",
    );
    let wait = app.node(&id, "TIME", "Wait", json!({"delay_hours": 1})).await;
    let node = app.get(&format!("{nodes}/{wait}")).await.body;
    assert_eq!(
        (node["position_x"].as_f64(), node["label"].as_str()),
        (Some(0.0), Some("Wait"))
    );
    let done = app.node(&id, "CONVERTED", "Done", json!({})).await;
    assert_error(
        &app.patch(&format!("{nodes}/{wait}"), json!({"node_type": "CONVERTED"}))
            .await,
        400,
        "node_type_immutable",
    );
    let updated = app
        .patch(
            &format!("{nodes}/{wait}"),
            json!({"config": {"duration": 2, "unit": "days"}, "position_x": 40}),
        )
        .await;
    assert_eq!(updated.body["config"], json!({"duration": 2, "unit": "days"}));
    assert_eq!(updated.body["position_x"], 40.0);
    let edges = format!("/v1/workflows/{id}/edges");
    assert_error(
        &app.post(&edges, json!({"from_node_id": "", "to_node_id": done})).await,
        400,
        "validation_failed",
    );
    assert_error(
        &app.post(&edges, json!({"from_node_id": done, "to_node_id": wait}))
            .await,
        400,
        "terminal_has_edges",
    );
    assert_error(
        &app.post(&edges, json!({"from_node_id": wait, "to_node_id": "node_000000000000"}))
            .await,
        404,
        "not_found",
    );
    let edge = app.edge(&id, &wait, &done, None).await;
    assert_error(
        &app.post(&edges, json!({"from_node_id": wait, "to_node_id": done, "label": ""}))
            .await,
        409,
        "edge_exists",
    );
    assert_eq!(app.get(&edges).await.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(
        app.delete(&format!("{edges}/{edge}")).await.body["message"],
        "Edge deleted."
    );
    assert_error(&app.delete(&format!("{edges}/{edge}")).await, 404, "not_found");
    assert_eq!(
        app.delete(&format!("{nodes}/{done}")).await.body["message"],
        "Node deleted."
    );
    assert_eq!(app.get(&nodes).await.body["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn deleting_a_node_with_leads_needs_a_destination() {
    let app = TestApp::spawn_with(switchboard_engine::EngineConfig {
        time_scale: 1.0,
        allow_private_targets: true,
        ..Default::default()
    })
    .await;
    let id = app.workflow("Waiting room").await;
    let wait = app.node(&id, "TIME", "Long wait", json!({"delay_days": 30})).await;
    let done = app.node(&id, "CONVERTED", "Done", json!({})).await;
    app.edge(&id, &wait, &done, None).await;
    app.post(
        &format!("/v1/workflows/{id}/leads"),
        json!({"leads": [{"phone_number": "+12015550101"}, {"phone_number": "+12015550102"}]}),
    )
    .await;
    app.activate(&id).await;
    for _ in 0..200 {
        if app.leads(&id).await.iter().all(|l| l["state"] == "waiting") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    // Graph edits on the live workflow: a node with no leads deletes without ceremony.
    let lost = app.node(&id, "DROPPED", "Lost", json!({})).await;
    let second_wait = app.node(&id, "TIME", "Short wait", json!({"delay_minutes": 1})).await;
    let unused = app.node(&id, "TIME", "Unused", json!({"delay_minutes": 1})).await;
    assert_eq!(
        app.delete(&format!("/v1/workflows/{id}/nodes/{unused}")).await.status,
        200
    );
    app.edge(&id, &second_wait, &lost, None).await;
    // The entry node of a live workflow cannot go; moving the entry first allows it.
    assert_error(
        &app.delete(&format!("/v1/workflows/{id}/nodes/{wait}?reassign_to={second_wait}"))
            .await,
        409,
        "entry_node",
    );
    app.patch(&format!("/v1/workflows/{id}"), json!({"entry_node_id": second_wait}))
        .await;
    let refused = app.delete(&format!("/v1/workflows/{id}/nodes/{wait}")).await;
    assert_eq!(
        assert_error(&refused, 409, "node_has_leads")["details"]["lead_count"],
        2
    );
    let moved = app
        .delete(&format!("/v1/workflows/{id}/nodes/{wait}?reassign_to={second_wait}"))
        .await;
    assert_eq!(moved.status, 200, "{}", moved.body);
    for lead in app.leads(&id).await {
        assert_eq!(lead["current_node_id"], json!(second_wait));
        let history = app.history(&id, lead["id"].as_str().unwrap()).await;
        assert_eq!(history[0]["status"], "skipped");
        assert_eq!(history[0]["node_id"], json!(wait));
    }
    let lead_id = app.leads(&id).await[0]["id"].as_str().unwrap().to_string();
    app.patch(&format!("/v1/workflows/{id}"), json!({"entry_node_id": lost}))
        .await;
    let removed = app
        .delete(&format!("/v1/workflows/{id}/nodes/{second_wait}?remove_leads=true"))
        .await;
    assert_eq!(removed.status, 200, "{}", removed.body);
    let lead = app.get(&format!("/v1/workflows/{id}/leads/{lead_id}")).await.body;
    assert_eq!(
        (lead["status"].as_str(), lead["exit_reason"].as_str()),
        (Some("removed"), Some("node_deleted"))
    );
    assert_eq!(
        app.get(&format!("/v1/workflows/{id}")).await.body["status"],
        "completed",
        "auto_complete once every lead is final"
    );
}

#[tokio::test]
async fn agents_numbers_and_calls_endpoints() {
    let app = TestApp::spawn().await;
    assert_error(
        &app.post("/v1/agents", json!({"prompt": "x"})).await,
        400,
        "validation_failed",
    );
    let agent = app
        .create("/v1/agents", json!({"name": "Collector", "language": "en-US"}))
        .await;
    assert!(agent["id"].as_str().unwrap().starts_with("agt_"));
    assert_eq!(
        app.get(&format!("/v1/agents/{}", agent["id"].as_str().unwrap()))
            .await
            .body["name"],
        "Collector"
    );
    assert_error(
        &app.post("/v1/phone-numbers", json!({"phone_number": "2015550100"}))
            .await,
        400,
        "validation_failed",
    );
    let number = app
        .create(
            "/v1/phone-numbers",
            json!({"phone_number": "+91 22 3456 7890", "label": "Main line"}),
        )
        .await;
    assert_eq!(number["phone_number"], "+912234567890");
    assert_eq!(number["country_code"], "IN");
    assert_eq!(number["allowed_destination_countries"], json!(["IN"]));
    assert_eq!(number["provider"], "simulator");
    assert_error(
        &app.post("/v1/phone-numbers", json!({"phone_number": "+912234567890"}))
            .await,
        409,
        "phone_number_exists",
    );
    assert_eq!(
        app.get("/v1/organization-phone-numbers?country_code=in").await.body["meta"]["total"],
        1
    );
    assert_eq!(
        app.get("/v1/phone-numbers?country_code=US").await.body["meta"]["total"],
        0
    );
    assert_error(&app.get("/v1/calls/call_000000000000").await, 404, "not_found");
    assert_error(&app.get("/v1/call-logs?from=yesterday").await, 400, "validation_failed");
    assert_eq!(app.get("/v1/call-logs").await.body["meta"]["total"], 0);
}

#[tokio::test]
async fn agents_and_numbers_in_use_cannot_be_deleted() {
    let app = TestApp::spawn().await;
    let flow = app.nurture_workflow().await;
    let agent = app.get("/v1/agents").await.body["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let number = app.get("/v1/phone-numbers").await.body["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let renamed = app
        .patch(
            &format!("/v1/agents/{agent}"),
            json!({"name": "Renewals desk", "voice": "alloy"}),
        )
        .await;
    assert_eq!(
        (renamed.body["name"].as_str(), renamed.body["voice"].as_str()),
        (Some("Renewals desk"), Some("alloy"))
    );
    assert_eq!(
        renamed.body["prompt"], "Hi {{name}}",
        "PATCH keeps fields it does not name"
    );
    let relabelled = app
        .patch(
            &format!("/v1/phone-numbers/{number}"),
            json!({"label": "Desk", "allowed_destination_countries": ["us", "GB"]}),
        )
        .await;
    assert_eq!(relabelled.body["allowed_destination_countries"], json!(["US", "GB"]));
    assert_error(
        &app.patch(&format!("/v1/phone-numbers/{number}"), json!({"status": "gone"}))
            .await,
        400,
        "validation_failed",
    );
    assert_error(
        &app.patch(
            &format!("/v1/phone-numbers/{number}"),
            json!({"phone_number": "+12015550199"}),
        )
        .await,
        400,
        "unknown_field",
    );
    assert_error(&app.delete(&format!("/v1/agents/{agent}")).await, 409, "agent_in_use");
    assert_error(
        &app.delete(&format!("/v1/phone-numbers/{number}")).await,
        409,
        "phone_number_in_use",
    );
    app.post(&format!("/v1/workflows/{}/cancel", flow.id), json!({})).await;
    assert_eq!(
        app.delete(&format!("/v1/agents/{agent}")).await.body["message"],
        "Agent deleted."
    );
    assert_eq!(
        app.delete(&format!("/v1/phone-numbers/{number}")).await.body["message"],
        "Phone number deleted."
    );
    assert_error(&app.get(&format!("/v1/agents/{agent}")).await, 404, "not_found");
    assert_error(
        &app.delete(&format!("/v1/phone-numbers/{number}")).await,
        404,
        "not_found",
    );
}

#[tokio::test]
async fn rate_limits_apply_per_key_with_headers() {
    let app = TestApp::spawn_config(switchboard::ServeConfig {
        engine: switchboard_engine::EngineConfig::default(),
        rate_limit: 2,
    })
    .await;
    let first = app.get("/v1/workflows").await;
    assert_eq!(first.status, 200);
    assert_eq!(first.headers["x-ratelimit-limit"], "2");
    assert!(first.headers.contains_key("x-ratelimit-remaining") && first.headers.contains_key("x-ratelimit-reset"));
    let mut limited = None;
    for _ in 0..10 {
        let reply = app.get("/v1/workflows").await;
        if reply.status == 429 {
            limited = Some(reply);
            break;
        }
    }
    let limited = limited.expect("a burst of 10 exceeds 2/s with bursts of 4");
    assert_error(&limited, 429, "rate_limited");
    assert!(limited.headers["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(limited.headers["x-ratelimit-remaining"], "0");
    // Another key has its own budget.
    let other = app.key_for("other-org").await;
    assert_eq!(
        app.send(Method::GET, "/v1/workflows", None, Some(&other)).await.status,
        200
    );
}

#[tokio::test]
async fn idempotency_keys_replay_the_first_response() {
    let app = TestApp::spawn().await;
    let post = |key: &'static str, body: serde_json::Value| {
        app.client
            .post(format!("{}/v1/workflows", app.base))
            .bearer_auth(&app.key)
            .header("idempotency-key", key)
            .json(&body)
            .send()
    };
    let first = TestApp::reply(post("create-renewals-1", json!({"title": "Renewals"})).await.unwrap()).await;
    assert_eq!(first.status, 201);
    let again = TestApp::reply(post("create-renewals-1", json!({"title": "Renewals"})).await.unwrap()).await;
    assert_eq!(again.status, 201);
    assert_eq!(again.body["id"], first.body["id"], "the stored response is replayed");
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(
        app.get("/v1/workflows").await.body["meta"]["total"],
        1,
        "nothing was created twice"
    );
    let reused = TestApp::reply(post("create-renewals-1", json!({"title": "Other"})).await.unwrap()).await;
    assert_error(&reused, 422, "idempotency_key_reused");
    // Errors are stored and replayed too; a different key runs anew.
    let bad = TestApp::reply(post("bad-1", json!({})).await.unwrap()).await;
    assert_error(&bad, 400, "validation_failed");
    let bad_again = TestApp::reply(post("bad-1", json!({})).await.unwrap()).await;
    assert_eq!(bad_again.body["code"], "validation_failed");
    // Keys belong to one API key: another key may use the same value.
    let other = app.key_for("other-org").await;
    let theirs = app
        .client
        .post(format!("{}/v1/workflows", app.base))
        .bearer_auth(&other)
        .header("idempotency-key", "create-renewals-1")
        .json(&json!({"title": "Renewals"}))
        .send()
        .await
        .unwrap();
    let theirs = TestApp::reply(theirs).await;
    assert_eq!(theirs.status, 201);
    assert_ne!(theirs.body["id"], first.body["id"]);
    let long_key = "k".repeat(256);
    let too_long = app
        .client
        .post(format!("{}/v1/workflows", app.base))
        .bearer_auth(&app.key)
        .header("idempotency-key", long_key)
        .json(&json!({"title": "x"}))
        .send()
        .await
        .unwrap();
    assert_error(&TestApp::reply(too_long).await, 400, "validation_failed");
}

#[tokio::test]
async fn the_served_openapi_document_is_the_committed_one() {
    let app = TestApp::spawn().await;
    let served = app
        .client
        .get(format!("{}/openapi.json", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../openapi.json");
    if std::env::var("UPDATE_OPENAPI").is_ok() {
        std::fs::write(path, &served).unwrap();
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        served == committed,
        "openapi.json is stale: run `UPDATE_OPENAPI=1 cargo test --test it openapi`"
    );
    let document: serde_json::Value = serde_json::from_str(&served).unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    for path in [
        "/v1/workflows",
        "/v1/workflows/{id}/leads",
        "/v1/calls/{id}",
        "/v1/call-logs",
        "/healthz",
    ] {
        assert!(document["paths"][path].is_object(), "{path} is documented");
    }
}

#[tokio::test]
async fn graph_limits_and_idempotency_in_flight() {
    let app = TestApp::spawn().await;
    let id = app.workflow("Huge").await;
    for i in 0..500 {
        app.create(
            &format!("/v1/workflows/{id}/nodes"),
            json!({"node_type": "DROPPED", "label": format!("n{i}")}),
        )
        .await;
    }
    let reply = app
        .post(&format!("/v1/workflows/{id}/nodes"), json!({"node_type": "DROPPED"}))
        .await;
    assert!(
        assert_error(&reply, 400, "limit_exceeded")["message"]
            .as_str()
            .unwrap()
            .contains("500")
    );
    // A second request with a key whose first request is still running is refused.
    let (key_id, _) = switchboard_api::extract::parse_api_key(&app.key).unwrap();
    let now = switchboard_domain::time::now_ms();
    let first = app
        .store
        .idempotency_begin(
            key_id,
            "slow-1",
            &switchboard_api::request_fingerprint("POST", "/v1/workflows", br#"{"title":"x"}"#),
            now,
        )
        .await
        .unwrap();
    assert_eq!(first, switchboard_store::IdempotencyBegin::Started);
    let reply = app
        .client
        .post(format!("{}/v1/workflows", app.base))
        .bearer_auth(&app.key)
        .header("idempotency-key", "slow-1")
        .json(&json!({"title": "x"}))
        .send()
        .await
        .unwrap();
    assert_error(&TestApp::reply(reply).await, 409, "idempotency_key_in_use");
}
