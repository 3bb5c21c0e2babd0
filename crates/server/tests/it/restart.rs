//! Crash recovery: the real binary is killed with SIGKILL mid-run and started again on the same file.

use crate::helpers::{TestApp, expected_nurture};
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A server process, killed with SIGKILL when dropped (also when the test fails).
struct Server(Child);

impl Server {
    fn kill_9(&mut self) {
        self.0.kill().expect("SIGKILL");
        self.0.wait().expect("reap");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(db_url: &str, port: u16) -> Server {
    serve_with(db_url, port, &[])
}

fn serve_with(db_url: &str, port: u16, env: &[(&str, &str)]) -> Server {
    let child = Command::new(BIN)
        .envs(env.iter().copied())
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("SWITCHBOARD_DATABASE_URL", db_url)
        // 2 days / 200,000 is about 0.9 s; a 30 s call lasts 0.15 ms.
        .env("SWITCHBOARD_TIME_SCALE", "200000")
        .env("SWITCHBOARD_LOG", "warn")
        // The checks read every lead; the default per-key limit would answer some of them 429.
        .env("SWITCHBOARD_RATE_LIMIT", "0")
        // On PostgreSQL a restarted process waits for its dead predecessor's leases to lapse.
        .env("SWITCHBOARD_LEASE_SECONDS", "2")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start switchboard");
    Server(child)
}

async fn wait_healthy(base: &str) {
    switchboard::install_crypto_provider();
    let started = Instant::now();
    while reqwest::get(format!("{base}/healthz")).await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(20), "server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An API key made by `switchboard keys create`, as a user would.
fn cli_key(db_url: &str) -> String {
    let created = Command::new(BIN)
        .args(["keys", "create", "--org", "acme", "--json"])
        .env("SWITCHBOARD_DATABASE_URL", db_url)
        .output()
        .unwrap();
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let key: Value = serde_json::from_slice(&created.stdout).unwrap();
    key["api_key"].as_str().unwrap().to_string()
}

/// `count` leads cycling through `PATTERNS`, numbered from `first`, with the talk time `talk(i)` gives.
fn pattern_leads(count: usize, first: usize, talk: impl Fn(usize) -> &'static str) -> Vec<Value> {
    (0..count)
        .map(|i| {
            let (outcome, analysis) = PATTERNS[i % PATTERNS.len()];
            json!({"phone_number": format!("+1201555{:04}", first + i),
                   "metadata": {"sim_outcome": outcome, "sim_analysis": analysis, "sim_duration_seconds": talk(i)}})
        })
        .collect()
}

/// The seed of random kill points: `KILL_SEED` replays a run, otherwise the clock; printed either way.
fn kill_seed() -> u64 {
    let seed = std::env::var("KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| jiff::Timestamp::now().as_millisecond() as u64);
    eprintln!("kill points seed: {seed} (KILL_SEED={seed} replays them)");
    seed
}

const PATTERNS: [(&str, &str); 8] = [
    ("COMPLETED", "interest=yes"),
    ("NO_ANSWER,COMPLETED", "interest=no"),
    ("NO_ANSWER,NO_ANSWER", ""),
    ("BUSY", ""),
    ("VOICEMAIL", ""),
    ("FAILED", ""),
    ("BUSY,COMPLETED", "interest=yes"),
    ("COMPLETED", "interest=no"),
];

#[tokio::test]
async fn kill_9_mid_run_loses_no_lead_and_repeats_no_call() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let db_url = crate::helpers::test_database(&dir).await;
    let key = cli_key(&db_url);
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = serve(&db_url, port);
    wait_healthy(&base).await;
    let app = TestApp::attach(base.clone(), key.clone(), db_url.clone(), dir.clone()).await;
    let flow = app.nurture_workflow().await;
    let leads = pattern_leads(1000, 2000, |_| "30");
    let enrolled = app
        .post(&format!("/v1/workflows/{}/leads", flow.id), json!({"leads": leads}))
        .await;
    assert_eq!(enrolled.body["leads_enrolled"], 1000, "{}", enrolled.body);
    app.activate(&flow.id).await;

    // Three kills at random moments (the seed is printed so a failure can be replayed).
    let seed = kill_seed();
    let mut state = seed | 1;
    for _ in 0..3 {
        // xorshift: a pause between 50 and 1,050 ms.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        tokio::time::sleep(Duration::from_millis(50 + state % 1000)).await;
        child.kill_9();
        child = serve(&db_url, port);
        wait_healthy(&base).await;
    }
    let done = app
        .wait_for_status(&flow.id, "completed", Duration::from_secs(120))
        .await;
    assert_eq!(done["lead_counts"]["in_progress"], 0);
    assert_eq!(done["enrolled_leads"], 1000);
    for lead in app.leads(&flow.id).await {
        let (path, status, calls) = expected_nurture(&lead["metadata"]);
        let phone = lead["phone_number"].as_str().unwrap();
        assert_eq!(lead["status"], status, "{phone}");
        let id = lead["id"].as_str().unwrap();
        let history = app.history(&flow.id, id).await;
        let labels: Vec<&str> = history.iter().map(|h| h["node_label"].as_str().unwrap()).collect();
        assert_eq!(labels, path, "{phone}: no step lost or repeated");
        assert_eq!(
            app.calls_of(id).await.len(),
            calls,
            "{phone}: each attempt dialled exactly once"
        );
    }
    drop(child);
}

#[tokio::test]
async fn a_graceful_restart_resumes_every_lead_at_once() {
    let engine = switchboard_engine::EngineConfig {
        time_scale: 100_000.0,
        allow_private_targets: true,
        ..Default::default()
    };
    let mut app = TestApp::spawn_with(engine.clone()).await;
    let flow = app.nurture_workflow().await;
    let leads = pattern_leads(40, 400, |_| "30");
    app.post(&format!("/v1/workflows/{}/leads", flow.id), json!({"leads": leads}))
        .await;
    app.activate(&flow.id).await;
    // 2 days / 100,000 is about 1.7 s: stop while leads wait.
    tokio::time::sleep(Duration::from_millis(400)).await;
    app.stop().await;
    let org = app.get_org().await;
    let filter = switchboard_store::LeadFilter {
        state: Some(switchboard_domain::model::LeadState::Waiting),
        ..Default::default()
    };
    let page = switchboard_store::PageRequest { page: 1, limit: 100 };
    let waiting = app.store.list_leads(&org, &flow.id, &filter, page).await.unwrap();
    assert!(waiting.total > 0, "some leads were parked at the wait");
    let config = switchboard::ServeConfig {
        engine,
        rate_limit: crate::helpers::TEST_RATE_LIMIT,
    };
    let app = TestApp::spawn_on(app.db_url.clone(), app.dir(), config).await;
    app.wait_for_status(&flow.id, "completed", Duration::from_secs(30))
        .await;
    for lead in app.leads(&flow.id).await {
        let (path, status, calls) = expected_nurture(&lead["metadata"]);
        let id = lead["id"].as_str().unwrap();
        assert_eq!(lead["status"], status);
        assert_eq!(app.history(&flow.id, id).await.len(), path.len());
        assert_eq!(app.calls_of(id).await.len(), calls);
    }
}

#[tokio::test]
async fn three_processes_share_a_1000_lead_postgres_run_and_survive_losing_one() {
    if std::env::var("SWITCHBOARD_TEST_DATABASE").as_deref() != Ok("postgres") {
        eprintln!("several processes need PostgreSQL: this test runs in the PostgreSQL pass of scripts/test");
        return;
    }
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let db_url = crate::helpers::test_database(&dir).await;
    let key = cli_key(&db_url);
    let ports = [free_port(), free_port(), free_port()];
    let mut servers: Vec<Server> = ports.iter().map(|port| serve(&db_url, *port)).collect();
    for port in ports {
        wait_healthy(&format!("http://127.0.0.1:{port}")).await;
    }
    let base = |i: usize| format!("http://127.0.0.1:{}", ports[i]);
    let app = TestApp::attach(base(0), key.clone(), db_url.clone(), dir.clone()).await;
    let flow = app.nurture_workflow().await;
    app.patch(
        &format!("/v1/workflows/{}", flow.id),
        json!({"settings": {"max_concurrent_calls": 1000}}),
    )
    .await;
    // Some calls talk longer than a lease (600,000 s / 200,000 = 3 s > 2 s): still dialled once.
    let leads = pattern_leads(1000, 3000, |i| if i % 25 == 0 { "600000" } else { "30" });
    let enrolled = app
        .post(&format!("/v1/workflows/{}/leads", flow.id), json!({"leads": leads}))
        .await;
    assert_eq!(enrolled.body["leads_enrolled"], 1000, "{}", enrolled.body);
    app.activate(&flow.id).await;
    // The kill comes at a random moment of the run (the seed is printed so a failure can be replayed).
    let seed = kill_seed();
    tokio::time::sleep(Duration::from_millis(100 + seed % 1500)).await;
    servers[1].kill_9();
    // The others take the dead process's leads over once its leases lapse.
    let app = TestApp::attach(base(2), app.key.clone(), db_url.clone(), dir.clone()).await;
    let done = app
        .wait_for_status(&flow.id, "completed", Duration::from_secs(90))
        .await;
    assert_eq!(done["lead_counts"]["in_progress"], 0);
    let calls = app
        .get(&format!("/v1/calls?workflow_id={}&limit=1", flow.id))
        .await
        .body["meta"]["total"]
        .clone();
    let mut expected_calls = 0;
    for lead in app.leads(&flow.id).await {
        let (path, status, calls) = expected_nurture(&lead["metadata"]);
        let phone = lead["phone_number"].as_str().unwrap();
        assert_eq!(lead["status"], status, "{phone}");
        let history = app.history(&flow.id, lead["id"].as_str().unwrap()).await;
        let labels: Vec<&str> = history.iter().map(|h| h["node_label"].as_str().unwrap()).collect();
        assert_eq!(labels, path, "{phone}");
        expected_calls += calls;
    }
    assert_eq!(
        calls, expected_calls,
        "every attempt dialled exactly once across the three processes"
    );
    drop(servers);
}

#[tokio::test]
async fn processes_sharing_postgres_never_exceed_a_workflow_cap_together() {
    if std::env::var("SWITCHBOARD_TEST_DATABASE").as_deref() != Ok("postgres") {
        eprintln!("several processes need PostgreSQL: this test runs in the PostgreSQL pass of scripts/test");
        return;
    }
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let db_url = crate::helpers::test_database(&dir).await;
    let key = cli_key(&db_url);
    let ports = [free_port(), free_port(), free_port()];
    // Batches of one lead, so the three processes decide dials at the same moments.
    let servers: Vec<Server> = ports
        .iter()
        .map(|port| serve_with(&db_url, *port, &[("SWITCHBOARD_BATCH_SIZE", "1")]))
        .collect();
    for port in ports {
        wait_healthy(&format!("http://127.0.0.1:{port}")).await;
    }
    let app = TestApp::attach(
        format!("http://127.0.0.1:{}", ports[0]),
        key.clone(),
        db_url.clone(),
        dir.clone(),
    )
    .await;
    let (agent, from) = app.agent_and_number().await;
    let id = app.workflow("Capped").await;
    app.patch(
        &format!("/v1/workflows/{id}"),
        json!({"settings": {"max_concurrent_calls": 2}}),
    )
    .await;
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
    // 40,000 s / 200,000 = 0.2 s of talk each.
    let leads: Vec<Value> = (0..24)
        .map(|i| {
            json!({"phone_number": format!("+1201555{:04}", 2000 + i),
                        "metadata": {"sim_outcome": "COMPLETED", "sim_duration_seconds": "40000"}})
        })
        .collect();
    app.post(&format!("/v1/workflows/{id}/leads"), json!({"leads": leads}))
        .await;
    app.activate(&id).await;
    app.wait_for_status(&id, "completed", Duration::from_secs(60)).await;
    let calls = app.get(&format!("/v1/calls?workflow_id={id}&limit=100")).await.body["data"]
        .as_array()
        .cloned()
        .unwrap();
    assert_eq!(calls.len(), 24);
    let at = |v: &Value| v.as_str().unwrap().parse::<jiff::Timestamp>().unwrap().as_millisecond();
    let spans: Vec<(i64, i64)> = calls
        .iter()
        .map(|c| (at(&c["created_at"]), at(&c["ended_at"])))
        .collect();
    // Each process stamps a batch with the time it began deciding it, so stamps of different processes can be
    // a few milliseconds out of commit order: allow that much overlap, far below a 200 ms call.
    const SKEW_MS: i64 = 25;
    for (start, _) in &spans {
        let overlapping = spans.iter().filter(|(s, e)| s <= start && *start < e - SKEW_MS).count();
        assert!(
            overlapping <= 2,
            "{overlapping} calls in flight at {start} across processes: {spans:?}"
        );
    }
    drop(servers);
}

#[tokio::test]
async fn postgres_processes_hear_of_new_work_from_each_other() {
    if std::env::var("SWITCHBOARD_TEST_DATABASE").as_deref() != Ok("postgres") {
        eprintln!("LISTEN/NOTIFY is PostgreSQL's: this test runs in the PostgreSQL pass of scripts/test");
        return;
    }
    let app = TestApp::spawn().await;
    let id = app.workflow("Heard").await;
    app.node(&id, "CONVERTED", "Done", json!({})).await;
    app.activate(&id).await;
    // Another process's view of the same database, listening from now on.
    let other = switchboard::open_store(&app.db_url).await.unwrap();
    let heard = tokio::spawn(async move { tokio::time::timeout(Duration::from_secs(5), other.work_elsewhere()).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    app.post(
        &format!("/v1/workflows/{id}/leads"),
        json!({"phone_number": "+12015550101"}),
    )
    .await;
    assert!(
        heard.await.unwrap().is_ok(),
        "the enrolment was signalled to the other process"
    );
}
