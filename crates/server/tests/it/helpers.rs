//! `TestApp`: a real server on port 0 with its own database, one API key and small HTTP helpers.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard::{Running, ServeConfig, issue_key, open_store, start};
use switchboard_engine::EngineConfig;
use tempfile::TempDir;

pub struct TestApp {
    pub base: String,
    pub key: String,
    pub client: reqwest::Client,
    pub store: Arc<dyn switchboard_store::Store>,
    pub db_url: String,
    running: Option<Running>,
    _dir: Arc<TempDir>,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

/// A fresh, empty database for one test: a SQLite file in `dir`, or — with
/// `SWITCHBOARD_TEST_DATABASE=postgres` — a new schema in the PostgreSQL database named by
/// `SWITCHBOARD_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`).
pub async fn test_database(dir: &TempDir) -> String {
    if std::env::var("SWITCHBOARD_TEST_DATABASE").as_deref() != Ok("postgres") {
        return format!("sqlite://{}", dir.path().join("test.db").display());
    }
    use sqlx::Connection;
    let base = std::env::var("SWITCHBOARD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
    let schema = switchboard_domain::ids::new_id("t_");
    let mut conn = sqlx::PgConnection::connect(&base).await.expect("PostgreSQL for tests");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut conn)
        .await
        .expect("schema");
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}options=-c%20search_path%3D{schema}")
}

/// High enough never to bind the tests, so the rate-limit headers are always exercised.
pub const TEST_RATE_LIMIT: u32 = 100_000;

/// Waits in these tests are divided by this, so a 2-day TIME node takes about 0.2 s.
pub const TEST_TIME_SCALE: f64 = 1_000_000.0;

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(EngineConfig {
            time_scale: TEST_TIME_SCALE,
            allow_private_targets: true,
            ..Default::default()
        })
        .await
    }

    pub async fn spawn_with(engine: EngineConfig) -> Self {
        Self::spawn_config(ServeConfig {
            engine,
            rate_limit: TEST_RATE_LIMIT,
        })
        .await
    }

    pub async fn spawn_config(config: ServeConfig) -> Self {
        let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
        let db_url = test_database(&dir).await;
        Self::spawn_on(db_url, dir, config).await
    }

    /// A client for a server running elsewhere (another process) on `db_url`.
    pub async fn attach(base: String, key: String, db_url: String, dir: Arc<TempDir>) -> Self {
        switchboard::install_crypto_provider();
        let store = open_store(&db_url).await.expect("store");
        // No pooled connections: the server behind `base` may be killed and restarted.
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .expect("client");
        Self {
            base,
            key,
            client,
            store,
            db_url,
            running: None,
            _dir: dir,
        }
    }

    /// Starts a server on an existing database (a restart).
    pub async fn spawn_on(db_url: String, dir: Arc<TempDir>, config: ServeConfig) -> Self {
        switchboard::install_crypto_provider();
        if std::env::var("TEST_LOG").is_ok() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter("debug,sqlx=warn,hyper=info")
                .try_init();
        }
        let store = open_store(&db_url).await.expect("store");
        let key = issue_key(store.as_ref(), "test-org", None).await.expect("key").api_key;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let running = start(store.clone(), listener, config).await.expect("start");
        Self {
            base: format!("http://{}", running.addr),
            key,
            client: reqwest::Client::new(),
            store,
            db_url,
            running: Some(running),
            _dir: dir,
        }
    }

    pub fn dir(&self) -> Arc<TempDir> {
        self._dir.clone()
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            let _ = running.shutdown.send(true);
            running.done.await.expect("join").expect("clean stop");
        }
    }

    /// A key of another organization.
    pub async fn key_for(&self, org: &str) -> String {
        issue_key(self.store.as_ref(), org, None).await.expect("key").api_key
    }

    pub async fn send(&self, method: Method, path: &str, body: Option<Value>, key: Option<&str>) -> Reply {
        let mut request = self.client.request(method, format!("{}{}", self.base, path));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        Self::reply(request.send().await.expect("request")).await
    }

    pub async fn reply(response: reqwest::Response) -> Reply {
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply { status, headers, body }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, None, Some(&self.key)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.send(Method::POST, path, Some(body), Some(&self.key)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Reply {
        self.send(Method::PATCH, path, Some(body), Some(&self.key)).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.send(Method::DELETE, path, None, Some(&self.key)).await
    }

    /// Uploads a CSV as multipart, with extra text parts.
    pub async fn upload(&self, workflow_id: &str, file_name: &str, bytes: Vec<u8>, parts: &[(&str, &str)]) -> Reply {
        let mut form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(bytes).file_name(file_name.to_string()),
        );
        for (name, value) in parts {
            form = form.text(name.to_string(), value.to_string());
        }
        let request = self
            .client
            .post(format!("{}/v1/workflows/{workflow_id}/leads", self.base))
            .bearer_auth(&self.key)
            .multipart(form);
        Self::reply(request.send().await.expect("upload")).await
    }

    pub async fn create(&self, path: &str, body: Value) -> Value {
        let reply = self.post(path, body.clone()).await;
        assert_eq!(reply.status, StatusCode::CREATED, "POST {path} {body}: {}", reply.body);
        reply.body
    }

    /// The organization of this app's key.
    pub async fn get_org(&self) -> String {
        let (key_id, _) = switchboard_api::extract::parse_api_key(&self.key).expect("key");
        self.store
            .api_key_auth(key_id)
            .await
            .expect("auth")
            .expect("key exists")
            .organization_id
    }

    pub async fn agent_and_number(&self) -> (String, String) {
        let agent = self
            .create("/v1/agents", json!({"name": "Loan follow-up", "prompt": "Hi {{name}}"}))
            .await;
        self.create(
            "/v1/phone-numbers",
            json!({"phone_number": "+12015550100", "allowed_destination_countries": ["US", "IN", "GB"]}),
        )
        .await;
        (agent["id"].as_str().unwrap().to_string(), "+12015550100".to_string())
    }

    pub async fn workflow(&self, title: &str) -> String {
        self.create("/v1/workflows", json!({"title": title})).await["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    pub async fn node(&self, workflow: &str, node_type: &str, label: &str, config: Value) -> String {
        let body = json!({"node_type": node_type, "label": label, "config": config});
        self.create(&format!("/v1/workflows/{workflow}/nodes"), body).await["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    pub async fn edge(&self, workflow: &str, from: &str, to: &str, label: Option<&str>) -> String {
        let body = json!({"from_node_id": from, "to_node_id": to, "label": label});
        self.create(&format!("/v1/workflows/{workflow}/edges"), body).await["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The quick-start graph: call → (NO_ANSWER/BUSY) wait → call again → condition on interest → CONVERTED/DROPPED.
    pub async fn nurture_workflow(&self) -> Nurture {
        let (agent, from) = self.agent_and_number().await;
        let id = self.workflow("Lead nurture").await;
        let call = json!({"agent_id": agent, "from_phone_number": from});
        let first = self.node(&id, "VOICE_CALL", "First call", call.clone()).await;
        let wait = self.node(&id, "TIME", "Wait two days", json!({"delay_days": 2})).await;
        let second = self.node(&id, "VOICE_CALL", "Second call", call).await;
        let check = self
            .node(&id, "CONDITIONAL", "Interested?", json!({"logic": "AND", "conditions": [{"field": "call.analysis.interest", "operator": "equals", "value": "yes"}]}))
            .await;
        let converted = self.node(&id, "CONVERTED", "Converted", json!({})).await;
        let dropped = self.node(&id, "DROPPED", "Dropped", json!({})).await;
        self.edge(&id, &first, &check, Some("COMPLETED")).await;
        self.edge(&id, &first, &wait, Some("NO_ANSWER")).await;
        self.edge(&id, &first, &wait, Some("BUSY")).await;
        self.edge(&id, &first, &dropped, None).await;
        self.edge(&id, &wait, &second, None).await;
        self.edge(&id, &second, &check, Some("COMPLETED")).await;
        self.edge(&id, &second, &dropped, None).await;
        self.edge(&id, &check, &converted, Some("true")).await;
        self.edge(&id, &check, &dropped, Some("false")).await;
        Nurture {
            id,
            first,
            wait,
            second,
            check,
            converted,
            dropped,
        }
    }

    pub async fn activate(&self, workflow: &str) {
        let reply = self
            .post(&format!("/v1/workflows/{workflow}/activate"), json!({}))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "activate: {}", reply.body);
        assert_eq!(reply.body["status"], "active");
    }

    /// Polls until the workflow reaches `status`, failing after `timeout`.
    pub async fn wait_for_status(&self, workflow: &str, status: &str, timeout: Duration) -> Value {
        let started = Instant::now();
        loop {
            let reply = self.get(&format!("/v1/workflows/{workflow}")).await;
            if reply.body["status"] == status {
                return reply.body;
            }
            assert!(
                started.elapsed() < timeout,
                "workflow never became {status}: {}",
                reply.body
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every lead of a workflow (up to 100 per page, all pages).
    pub async fn leads(&self, workflow: &str) -> Vec<Value> {
        let mut out = Vec::new();
        for page in 1.. {
            let reply = self
                .get(&format!("/v1/workflows/{workflow}/leads?limit=100&page={page}"))
                .await;
            let data = reply.body["data"].as_array().cloned().unwrap_or_default();
            if data.is_empty() {
                break;
            }
            out.extend(data);
        }
        out
    }

    pub async fn history(&self, workflow: &str, lead: &str) -> Vec<Value> {
        self.get(&format!("/v1/workflows/{workflow}/leads/{lead}/history"))
            .await
            .body["history"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub async fn calls_of(&self, lead: &str) -> Vec<Value> {
        self.get(&format!("/v1/calls?workflow_lead_id={lead}&limit=100"))
            .await
            .body["data"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            let _ = running.shutdown.send(true);
        }
    }
}

#[allow(dead_code)]
pub struct Nurture {
    pub id: String,
    pub first: String,
    pub wait: String,
    pub second: String,
    pub check: String,
    pub converted: String,
    pub dropped: String,
}

/// Asserts the contract's error body and returns it.
pub fn assert_error(reply: &Reply, status: u16, code: &str) -> Value {
    assert_eq!(reply.status.as_u16(), status, "{}", reply.body);
    let body = &reply.body;
    assert_eq!(body["statusCode"], status, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert!(body["message"].is_string() || body["message"].is_array(), "{body}");
    assert_eq!(
        body["error"],
        StatusCode::from_u16(status).unwrap().canonical_reason().unwrap(),
        "{body}"
    );
    let request_id = body["request_id"].as_str().expect("request_id");
    assert_eq!(reply.headers["x-request-id"].to_str().unwrap(), request_id);
    assert!(body.as_object().unwrap().contains_key("details"), "{body}");
    body.clone()
}

pub fn example(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/../../examples/leads/{name}", env!("CARGO_MANIFEST_DIR"))).expect("example file")
}

/// The path and call count the nurture graph must give a lead, derived from its simulator columns.
pub fn expected_nurture(metadata: &Value) -> (Vec<&'static str>, &'static str, usize) {
    let outcomes: Vec<String> = metadata["sim_outcome"]
        .as_str()
        .unwrap()
        .split(',')
        .map(|s| s.trim().to_string())
        .collect();
    let nth = |n: usize| outcomes[n.min(outcomes.len() - 1)].as_str();
    let interested = metadata["sim_analysis"].as_str().unwrap_or("").contains("interest=yes");
    let decide = |path: &mut Vec<&'static str>| {
        path.push("Interested?");
        if interested {
            path.push("Converted");
            "completed"
        } else {
            path.push("Dropped");
            "dropped"
        }
    };
    match nth(0) {
        "COMPLETED" => {
            let mut path = vec!["First call"];
            let status = decide(&mut path);
            (path, status, 1)
        }
        "NO_ANSWER" | "BUSY" => {
            let mut path = vec!["First call", "Wait two days", "Second call"];
            let status = if nth(1) == "COMPLETED" {
                decide(&mut path)
            } else {
                path.push("Dropped");
                "dropped"
            };
            (path, status, 2)
        }
        _ => (vec!["First call", "Dropped"], "dropped", 1),
    }
}
