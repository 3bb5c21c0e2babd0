//! Enrolment: the example files and their EXPECTED.md results, JSON forms, duplicates and re-enrolment.

use crate::helpers::{TestApp, assert_error, example};
use serde_json::{Value, json};

fn positions(group: &Value) -> Vec<u64> {
    group["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["position"].as_u64().unwrap())
        .collect()
}

async fn phones(app: &TestApp, workflow: &str) -> Vec<String> {
    let mut phones: Vec<String> = app
        .leads(workflow)
        .await
        .iter()
        .map(|l| l["phone_number"].as_str().unwrap().to_string())
        .collect();
    phones.sort();
    phones
}

#[tokio::test]
async fn quickstart_csv_enrols_twelve_leads_with_their_variables() {
    let app = TestApp::spawn().await;
    let id = app.workflow("Upload").await;
    let reply = app.upload(&id, "quickstart.csv", example("quickstart.csv"), &[]).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(
        reply.body,
        json!({"workflow_id": id, "leads_enrolled": 12, "duplicates_skipped": 0, "message": "12 leads enrolled in the workflow."})
    );
    let keys = app.get(&format!("/v1/workflows/{id}/leads/variable-keys")).await.body;
    assert_eq!(
        keys,
        json!({"keys": ["city", "name", "product", "sim_analysis", "sim_outcome"]})
    );
    let leads = app.leads(&id).await;
    assert!(leads.iter().all(|l| l["status"] == "pending" && l["state"].is_null()));
    let workflow = app.get(&format!("/v1/workflows/{id}")).await.body;
    assert_eq!(
        (
            workflow["enrolled_leads"].as_u64(),
            workflow["lead_counts"]["pending"].as_u64()
        ),
        (Some(12), Some(12))
    );
    // Uploading the same file again skips every number.
    let again = app.upload(&id, "quickstart.csv", example("quickstart.csv"), &[]).await;
    assert_eq!(
        (
            again.body["leads_enrolled"].as_u64(),
            again.body["duplicates_skipped"].as_u64()
        ),
        (Some(0), Some(12))
    );
}

#[tokio::test]
async fn national_numbers_need_a_country() {
    let app = TestApp::spawn().await;
    let id = app.workflow("India").await;
    let refused = app
        .upload(&id, "national_in.csv", example("national_in.csv"), &[])
        .await;
    let body = assert_error(&refused, 400, "invalid_rows");
    let groups = body["details"]["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0]["reason"], "invalid_phone_number");
    assert_eq!(groups[0]["count"], 4);
    assert_eq!(positions(&groups[0]), [1, 2, 3, 4]);
    assert!(app.leads(&id).await.is_empty(), "all or nothing");
    let reply = app
        .upload(
            &id,
            "national_in.csv",
            example("national_in.csv"),
            &[("default_country", "IN")],
        )
        .await;
    assert_eq!(reply.body["leads_enrolled"], 5, "{}", reply.body);
    assert_eq!(
        phones(&app, &id).await,
        [
            "+919123456789",
            "+919876543210",
            "+919876543211",
            "+919876543212",
            "+919876543213"
        ]
    );
}

#[tokio::test]
async fn excel_exports_with_bom_semicolons_and_lost_digits() {
    let app = TestApp::spawn().await;
    let id = app.workflow("Excel").await;
    let refused = app
        .upload(
            &id,
            "excel_export.csv",
            example("excel_export.csv"),
            &[("default_country", "US")],
        )
        .await;
    let body = assert_error(&refused, 400, "invalid_rows");
    assert_eq!(
        body["details"]["groups"],
        json!([{"reason": "invalid_phone_number", "count": 1, "rows": [{"position": 5, "phone_number": "1.20156E+10"}]}])
    );
    let reply = app
        .upload(
            &id,
            "excel_export.csv",
            example("excel_export.csv"),
            &[("default_country", "US"), ("skip_invalid", "true")],
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.body["leads_enrolled"], 3);
    assert_eq!(reply.body["rejected"][0]["rows"][0]["position"], 5);
    assert_eq!(
        phones(&app, &id).await,
        ["+12015550111", "+12015550112", "+12015550113"]
    );
    let keys = app.get(&format!("/v1/workflows/{id}/leads/variable-keys")).await.body;
    assert_eq!(keys["keys"], json!(["Company", "Name", "Score"]));
}

#[tokio::test]
async fn xlsx_numbers_keep_their_digits_and_dates_become_date_times() {
    let app = TestApp::spawn().await;
    let id = app.workflow("Sheet").await;
    let reply = app
        .upload(
            &id,
            "numeric_phones.xlsx",
            example("numeric_phones.xlsx"),
            &[("default_country", "US")],
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.body["leads_enrolled"], 3);
    assert_eq!(
        phones(&app, &id).await,
        ["+12015550131", "+12015550132", "+12015550133"]
    );
    let mut leads = app.leads(&id).await;
    leads.sort_by_key(|l| l["phone_number"].as_str().unwrap().to_string());
    let amounts: Vec<&str> = leads
        .iter()
        .map(|l| l["metadata"]["loan_amount"].as_str().unwrap())
        .collect();
    assert_eq!(amounts, ["250000", "120000.5", "80000"]);
    for lead in &leads[..2] {
        let when = lead["metadata"]["callback_after"].as_str().unwrap();
        assert!(when.parse::<jiff::Timestamp>().is_ok(), "{when} is RFC 3339");
    }
}

#[tokio::test]
async fn invalid_rows_are_grouped_by_reason() {
    let app = TestApp::spawn().await;
    let id = app.workflow("Mixed").await;
    let reply = app
        .client
        .post(format!("{}/v1/workflows/{id}/leads?skip_invalid=true", app.base))
        .bearer_auth(&app.key)
        .multipart(reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(example("invalid_rows.csv")).file_name("invalid_rows.csv"),
        ))
        .send()
        .await
        .unwrap();
    let reply = TestApp::reply(reply).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.body["leads_enrolled"], 1);
    let groups = reply.body["rejected"].as_array().unwrap();
    let by_reason = |reason: &str| {
        groups
            .iter()
            .find(|g| g["reason"] == reason)
            .map(positions)
            .unwrap_or_default()
    };
    assert_eq!(by_reason("invalid_phone_number"), [2, 4, 6]);
    assert_eq!(by_reason("missing_phone_number"), [3]);
    assert_eq!(by_reason("invalid_timezone"), [5]);
    let leads = app.leads(&id).await;
    assert_eq!(leads.len(), 1);
    assert_eq!(
        (leads[0]["phone_number"].as_str(), leads[0]["timezone"].as_str()),
        (Some("+12015550121"), Some("America/New_York"))
    );
}

#[tokio::test]
async fn json_single_and_batch_enrolment() {
    let app = TestApp::spawn().await;
    let id = app.workflow("JSON").await;
    let path = format!("/v1/workflows/{id}/leads");
    let single = app.post(&path, json!({"phone_number": "+1 201 555 0101", "variables": {"name": "Avery", "score": 7}, "timezone": "America/New_York"})).await;
    assert_eq!(single.status, 201, "{}", single.body);
    assert!(single.body["id"].as_str().unwrap().starts_with("wlead_"));
    assert_eq!(single.body["phone_number"], "+12015550101");
    assert_eq!(single.body["metadata"], json!({"name": "Avery", "score": "7"}));
    assert_eq!(single.body["status"], "pending");
    assert_error(
        &app.post(&path, json!({"phone_number": "+12015550101"})).await,
        409,
        "duplicate_lead",
    );
    assert_error(
        &app.post(&path, json!({"phone_number": "12345"})).await,
        400,
        "invalid_rows",
    );
    assert_error(
        &app.post(&path, json!({"phone": "+12015550101"})).await,
        400,
        "unknown_field",
    );
    let batch = app
        .post(&path, json!({"default_country": "IN", "leads": [{"phone_number": "98765 43210"}, {"phone_number": "+919876543210"}, {"phone_number": "+12015550101"}]}))
        .await;
    assert_eq!(batch.body["leads_enrolled"], 1, "{}", batch.body);
    assert_eq!(batch.body["duplicates_skipped"], 2);
    let listed = app.get(&format!("{path}?phone_number=%2B919876543210")).await;
    assert_eq!(listed.body["meta"]["total"], 1);
    assert_error(
        &app.get(&format!("{path}?status=bogus")).await,
        400,
        "validation_failed",
    );
    let text = app
        .client
        .post(format!("{}{path}", app.base))
        .bearer_auth(&app.key)
        .header("content-type", "text/csv")
        .body("phone\n1")
        .send()
        .await
        .unwrap();
    assert_error(&TestApp::reply(text).await, 415, "unsupported_media_type");
}

#[tokio::test]
async fn destinations_are_checked_against_the_calling_numbers() {
    let app = TestApp::spawn().await;
    let agent = app.create("/v1/agents", json!({"name": "A"})).await;
    app.create("/v1/phone-numbers", json!({"phone_number": "+912234567890"}))
        .await;
    let id = app.workflow("India only").await;
    app.node(
        &id,
        "VOICE_CALL",
        "Call",
        json!({"agent_id": agent["id"], "from_phone_number": "+912234567890"}),
    )
    .await;
    let reply = app
        .post(
            &format!("/v1/workflows/{id}/leads"),
            json!({"leads": [{"phone_number": "+919876543210"}, {"phone_number": "+12015550101"}]}),
        )
        .await;
    let body = assert_error(&reply, 400, "invalid_rows");
    assert_eq!(
        body["details"]["groups"][0]["reason"],
        "unsupported_destination_country"
    );
    assert_eq!(positions(&body["details"]["groups"][0]), [2]);
}

#[tokio::test]
async fn reenrollment_after_exit_allows_a_finished_number_back() {
    let app = TestApp::spawn().await;
    let id = app.workflow("Again").await;
    app.node(&id, "DROPPED", "Out", json!({})).await;
    app.patch(
        &format!("/v1/workflows/{id}"),
        json!({"settings": {"reenrollment": "after_exit", "auto_complete": false}}),
    )
    .await;
    let path = format!("/v1/workflows/{id}/leads");
    app.post(&path, json!({"phone_number": "+12015550101"})).await;
    app.activate(&id).await;
    for _ in 0..200 {
        if app.leads(&id).await[0]["status"] == "dropped" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let again = app.post(&path, json!({"phone_number": "+12015550101"})).await;
    assert_eq!(again.status, 201, "{}", again.body);
    assert_eq!(
        app.get(&format!("/v1/workflows/{id}")).await.body["status"],
        "active",
        "auto_complete off"
    );
    // With `never` (the default) a number enrolled once is skipped for good.
    let never = app.workflow("Once").await;
    app.node(&never, "DROPPED", "Out", json!({})).await;
    app.post(
        &format!("/v1/workflows/{never}/leads"),
        json!({"phone_number": "+12015550101"}),
    )
    .await;
    let skipped = app
        .post(
            &format!("/v1/workflows/{never}/leads"),
            json!({"leads": [{"phone_number": "+12015550101"}]}),
        )
        .await;
    assert_eq!(skipped.body["duplicates_skipped"], 1);
}

#[tokio::test]
async fn unreadable_files_and_oversized_rows_are_refused() {
    let app = TestApp::spawn().await;
    let id = app.workflow("Files").await;
    let no_phone = app.upload(&id, "x.csv", b"name,city\nA,B\n".to_vec(), &[]).await;
    assert_error(&no_phone, 400, "invalid_header");
    let headless = app
        .upload(&id, "x.csv", b"phone,,city\n+12015550101,stray,B\n".to_vec(), &[])
        .await;
    assert!(
        assert_error(&headless, 400, "invalid_header")["message"]
            .as_str()
            .unwrap()
            .contains("column 2")
    );
    let binary = app.upload(&id, "x.csv", vec![0xff, 0xfe, 0x00, 0x41, 0x0a], &[]).await;
    assert_error(&binary, 400, "invalid_file");
    let broken_xlsx = app
        .upload(&id, "x.xlsx", b"PK\x03\x04 not really a workbook".to_vec(), &[])
        .await;
    assert_error(&broken_xlsx, 400, "invalid_file");
    let no_file = app
        .client
        .post(format!("{}/v1/workflows/{id}/leads", app.base))
        .bearer_auth(&app.key)
        .multipart(reqwest::multipart::Form::new().text("default_country", "US"))
        .send()
        .await
        .unwrap();
    assert_error(&TestApp::reply(no_file).await, 400, "validation_failed");
    // 51 variables, and a 4,097-character cell.
    let wide_header: Vec<String> = (0..51).map(|i| format!("v{i}")).collect();
    let wide = format!(
        "phone,{}\n+12015550101,{}\n+12015550102,{}\n",
        wide_header.join(","),
        vec!["x"; 51].join(","),
        vec!["y"; 51].join(",")
    );
    let reply = app.upload(&id, "wide.csv", wide.into_bytes(), &[]).await;
    let body = assert_error(&reply, 400, "invalid_rows");
    assert_eq!(body["details"]["groups"][0]["reason"], "too_many_columns");
    assert_eq!(body["details"]["groups"][0]["count"], 2);
    let long = format!("phone,note\n+12015550101,{}\n+12015550102,fine\n", "z".repeat(4097));
    let reply = app.upload(&id, "long.csv", long.clone().into_bytes(), &[]).await;
    let body = assert_error(&reply, 400, "invalid_rows");
    assert_eq!(body["details"]["groups"][0]["reason"], "value_too_long");
    assert_eq!(body["details"]["groups"][0]["rows"][0]["position"], 1);
    assert!(app.leads(&id).await.is_empty(), "a refused upload leaves nothing");
    let kept = app
        .upload(&id, "long.csv", long.into_bytes(), &[("skip_invalid", "true")])
        .await;
    assert_eq!(kept.body["leads_enrolled"], 1);
}

#[tokio::test]
async fn a_failed_upload_of_many_batches_leaves_nothing() {
    let app = TestApp::spawn().await;
    let id = app.workflow("Big").await;
    // 12,000 valid rows (more than two insert batches), then one bad row at the end.
    let mut file = String::from("phone_number,name\n");
    for i in 0..12_000 {
        file.push_str(&format!("+1201{:07},n{i}\n", 2_000_000 + i));
    }
    file.push_str("12345,bad\n");
    let reply = app.upload(&id, "big.csv", file.clone().into_bytes(), &[]).await;
    let body = assert_error(&reply, 400, "invalid_rows");
    assert_eq!(body["details"]["groups"][0]["rows"][0]["position"], 12_001);
    let workflow = app.get(&format!("/v1/workflows/{id}")).await.body;
    assert_eq!(workflow["enrolled_leads"], 0);
    assert_eq!(
        app.get(&format!("/v1/workflows/{id}/leads/variable-keys")).await.body["keys"],
        serde_json::json!([])
    );
    let reply = app
        .upload(&id, "big.csv", file.into_bytes(), &[("skip_invalid", "true")])
        .await;
    assert_eq!(reply.body["leads_enrolled"], 12_000);
}
