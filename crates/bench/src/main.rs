//! Benchmarks of PERFORMANCE.md: B2 (engine throughput), B4 (timer lateness), B8 (recovery after kill -9).
//!
//!   cargo run --release -p switchboard-bench -- [all|b2|b4|b8] [--leads N] [--runs N] [--postgres URL]
//!
//! Prints one table row per figure: min / median / max over the runs.

use anyhow::{Context, bail};
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use switchboard::{ServeConfig, issue_key, open_store, start};
use switchboard_engine::EngineConfig;

struct Options {
    which: String,
    leads: usize,
    runs: usize,
    postgres: Option<String>,
}

fn options() -> anyhow::Result<Options> {
    let mut args = std::env::args().skip(1);
    let mut options = Options {
        which: "all".into(),
        leads: 100_000,
        runs: 3,
        postgres: None,
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--leads" => options.leads = args.next().context("--leads N")?.parse()?,
            "--runs" => options.runs = args.next().context("--runs N")?.parse()?,
            "--postgres" => options.postgres = Some(args.next().context("--postgres URL")?),
            "all" | "b2" | "b4" | "b8" => options.which = arg,
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(options)
}

/// A database for one run: a SQLite file in `dir`, or a fresh schema on the PostgreSQL server.
async fn database(dir: &tempfile::TempDir, postgres: Option<&str>) -> anyhow::Result<String> {
    let Some(base) = postgres else {
        return Ok(format!("sqlite://{}", dir.path().join("bench.db").display()));
    };
    use sqlx::Connection;
    let schema = format!(
        "bench_{}",
        std::process::id() as u64 * 1000 + jiff::Timestamp::now().as_millisecond() as u64 % 1000
    );
    let mut conn = sqlx::PgConnection::connect(base).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut conn)
        .await?;
    let separator = if base.contains('?') { '&' } else { '?' };
    Ok(format!("{base}{separator}options=-c%20search_path%3D{schema}"))
}

struct Api {
    base: String,
    key: String,
    http: reqwest::Client,
}

impl Api {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{path}: {status} {body}");
        }
        Ok(body)
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn id(&self, path: &str, body: Value) -> anyhow::Result<String> {
        Ok(self.post(path, body).await?["id"].as_str().context("id")?.to_string())
    }

    async fn node(&self, workflow: &str, node_type: &str, config: Value) -> anyhow::Result<String> {
        self.id(
            &format!("/v1/workflows/{workflow}/nodes"),
            json!({"node_type": node_type, "config": config}),
        )
        .await
    }

    async fn edge(&self, workflow: &str, from: &str, to: &str, label: Option<&str>) -> anyhow::Result<()> {
        let body = json!({"from_node_id": from, "to_node_id": to, "label": label});
        self.post(&format!("/v1/workflows/{workflow}/edges"), body)
            .await
            .map(|_| ())
    }

    /// Enrols `leads` in batches of 10,000.
    async fn enrol(&self, workflow: &str, leads: Vec<Value>) -> anyhow::Result<()> {
        for chunk in leads.chunks(10_000) {
            self.post(&format!("/v1/workflows/{workflow}/leads"), json!({"leads": chunk}))
                .await?;
        }
        Ok(())
    }

    async fn wait_completed(&self, workflow: &str, timeout: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            let body = self
                .call(reqwest::Method::GET, &format!("/v1/workflows/{workflow}"), None)
                .await?;
            if body["status"] == "completed" {
                return Ok(());
            }
            if started.elapsed() > timeout {
                bail!(
                    "workflow {workflow} not completed after {timeout:?}: {}",
                    body["lead_counts"]
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn phone(i: usize) -> String {
    // US numbers in the 201 area: +1 201 2xx xxxx, valid for the phone library.
    format!("+1201{:07}", 2_000_000 + i)
}

/// A 204 receiver for APPLICATION steps.
async fn receiver() -> anyhow::Result<String> {
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(|| async { axum::http::StatusCode::NO_CONTENT }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(format!("http://{addr}/hook"))
}

/// CONDITIONAL → VOICE_CALL (0 s talk) → CONDITIONAL → APPLICATION → CONVERTED; returns the workflow id.
async fn b2_workflow(api: &Api, hook: &str) -> anyhow::Result<String> {
    let agent = api.id("/v1/agents", json!({"name": "Bench"})).await?;
    api.post("/v1/phone-numbers", json!({"phone_number": "+12015550100"}))
        .await?;
    let workflow = api
        .id(
            "/v1/workflows",
            json!({"title": "B2", "settings": {"max_concurrent_calls": 1000}}),
        )
        .await?;
    let always = json!({"conditions": [{"field": "lead.tier", "operator": "exists"}]});
    let first = api.node(&workflow, "CONDITIONAL", always.clone()).await?;
    let call = api
        .node(
            &workflow,
            "VOICE_CALL",
            json!({"agent_id": agent, "from_phone_number": "+12015550100"}),
        )
        .await?;
    let second = api.node(&workflow, "CONDITIONAL", always).await?;
    let action = api
        .node(
            &workflow,
            "APPLICATION",
            json!({"url": hook, "body": {"phone": "{{phone_number}}"}}),
        )
        .await?;
    let done = api.node(&workflow, "CONVERTED", json!({})).await?;
    api.edge(&workflow, &first, &call, None).await?;
    api.edge(&workflow, &call, &second, None).await?;
    api.edge(&workflow, &second, &action, None).await?;
    api.edge(&workflow, &action, &done, None).await?;
    Ok(workflow)
}

struct Server {
    api: Api,
    running: switchboard::Running,
    _dir: tempfile::TempDir,
}

async fn in_process(postgres: Option<&str>, engine: EngineConfig) -> anyhow::Result<Server> {
    switchboard::install_crypto_provider();
    let dir = tempfile::tempdir()?;
    let url = database(&dir, postgres).await?;
    let store = open_store(&url).await?;
    let key = issue_key(store.as_ref(), "bench", None).await?.api_key;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let running = start(store, listener, ServeConfig { engine, rate_limit: 0 }).await?;
    let api = Api {
        base: format!("http://{}", running.addr),
        key,
        http: reqwest::Client::new(),
    };
    Ok(Server {
        api,
        running,
        _dir: dir,
    })
}

fn engine_config() -> EngineConfig {
    EngineConfig {
        time_scale: 1_000_000.0,
        allow_private_targets: true,
        org_max_concurrent_calls: 100_000,
        ..Default::default()
    }
}

/// B2: step transitions per second through the five-node chain.
async fn b2(options: &Options) -> anyhow::Result<f64> {
    let server = in_process(options.postgres.as_deref(), engine_config()).await?;
    let hook = receiver().await?;
    let workflow = b2_workflow(&server.api, &hook).await?;
    let leads = (0..options.leads)
        .map(|i| json!({"phone_number": phone(i), "metadata": {"tier": "a", "sim_outcome": "COMPLETED", "sim_duration_seconds": "0"}}))
        .collect();
    server.api.enrol(&workflow, leads).await?;
    let started = Instant::now();
    server
        .api
        .post(&format!("/v1/workflows/{workflow}/activate"), json!({}))
        .await?;
    server.api.wait_completed(&workflow, Duration::from_secs(3600)).await?;
    let elapsed = started.elapsed().as_secs_f64();
    let _ = server.running.shutdown.send(true);
    // Five node visits per lead: each is one step transition.
    Ok((options.leads * 5) as f64 / elapsed)
}

/// B4: leads parked on TIME nodes falling due over 10 s; lateness = when the step ran − when it was due.
async fn b4(options: &Options) -> anyhow::Result<(f64, f64, f64)> {
    let mut engine = engine_config();
    engine.time_scale = 1.0;
    let server = in_process(options.postgres.as_deref(), engine).await?;
    let api = &server.api;
    let workflow = api.id("/v1/workflows", json!({"title": "B4"})).await?;
    let wait = api.node(&workflow, "TIME", json!({"until_field": "due"})).await?;
    let done = api.node(&workflow, "CONVERTED", json!({})).await?;
    api.edge(&workflow, &wait, &done, None).await?;
    api.post(&format!("/v1/workflows/{workflow}/activate"), json!({}))
        .await?;
    // Enrol first (the leads park; allow 1 ms a lead for that), then they fall due over 10 s.
    let first_due = jiff::Timestamp::now().as_millisecond() + 20_000 + options.leads as i64;
    let leads: Vec<Value> = (0..options.leads)
        .map(|i| {
            let due = first_due + (i as i64 * 10_000) / options.leads as i64;
            let due = jiff::Timestamp::from_millisecond(due).expect("instant");
            json!({"phone_number": phone(i), "metadata": {"due": format!("{due:.3}")}})
        })
        .collect();
    api.enrol(&workflow, leads).await?;
    let now = jiff::Timestamp::now().as_millisecond();
    if now > first_due {
        bail!("enrolment took longer than the lead time; use fewer --leads");
    }
    api.wait_completed(&workflow, Duration::from_secs(600)).await?;
    let mut lateness = Vec::with_capacity(options.leads);
    let mut page = 1;
    loop {
        let body = api
            .call(
                reqwest::Method::GET,
                &format!("/v1/workflows/{workflow}/leads?limit=100&page={page}"),
                None,
            )
            .await?;
        let data = body["data"].as_array().cloned().unwrap_or_default();
        if data.is_empty() {
            break;
        }
        for lead in data {
            let due: jiff::Timestamp = lead["metadata"]["due"].as_str().context("due")?.parse()?;
            let finished: jiff::Timestamp = lead["finished_at"].as_str().context("finished_at")?.parse()?;
            lateness.push((finished.as_millisecond() - due.as_millisecond()) as f64);
        }
        page += 1;
    }
    let _ = server.running.shutdown.send(true);
    lateness.sort_by(f64::total_cmp);
    let at = |q: f64| lateness[((lateness.len() as f64 - 1.0) * q).round() as usize];
    Ok((at(0.5), at(0.99), at(1.0)))
}

/// A `switchboard serve` process (for B8), killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_server(url: &str, port: u16) -> anyhow::Result<Process> {
    let binary = std::env::current_exe()?.with_file_name("switchboard");
    let child = Command::new(&binary)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--rate-limit", "0"])
        .env("SWITCHBOARD_DATABASE_URL", url)
        .env("SWITCHBOARD_TIME_SCALE", "1000000")
        .env("SWITCHBOARD_ALLOW_PRIVATE_TARGETS", "true")
        .env("SWITCHBOARD_ORG_MAX_CONCURRENT_CALLS", "100000")
        .env("SWITCHBOARD_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {} (build it with cargo build --release)", binary.display()))?;
    Ok(Process(child))
}

async fn wait_healthy(base: &str) -> anyhow::Result<()> {
    for _ in 0..400 {
        if reqwest::get(format!("{base}/healthz")).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    bail!("server at {base} did not start")
}

/// B8: kill -9 during a B2 run, restart; seconds until the first step after start, steps repeated, leads lost.
async fn b8(options: &Options) -> anyhow::Result<(f64, i64, i64)> {
    switchboard::install_crypto_provider();
    let dir = tempfile::tempdir()?;
    let url = database(&dir, options.postgres.as_deref()).await?;
    let store = open_store(&url).await?;
    let key = issue_key(store.as_ref(), "bench", None).await?.api_key;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = spawn_server(&url, port)?;
    wait_healthy(&base).await?;
    let api = Api {
        base: base.clone(),
        key,
        http: reqwest::Client::builder().pool_max_idle_per_host(0).build()?,
    };
    let hook = receiver().await?;
    let workflow = b2_workflow(&api, &hook).await?;
    let leads = (0..options.leads)
        .map(|i| json!({"phone_number": phone(i), "metadata": {"tier": "a", "sim_outcome": "COMPLETED", "sim_duration_seconds": "0"}}))
        .collect();
    api.enrol(&workflow, leads).await?;
    api.post(&format!("/v1/workflows/{workflow}/activate"), json!({}))
        .await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _ = server.0.kill();
    let _ = server.0.wait();
    let steps_before = history_rows(&url).await?;
    let restarted = Instant::now();
    server = spawn_server(&url, port)?;
    let first_step = loop {
        if history_rows(&url).await? > steps_before {
            break restarted.elapsed().as_secs_f64();
        }
        if restarted.elapsed() > Duration::from_secs(60) {
            bail!("no step within 60 s of the restart");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    wait_healthy(&base).await?;
    api.wait_completed(&workflow, Duration::from_secs(3600)).await?;
    drop(server);
    let pool = sqlx::AnyPool::connect(&url).await?;
    let repeated: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT lead_id, node_id FROM lead_history GROUP BY lead_id, node_id HAVING count(*) > 1) AS d",
    )
    .fetch_one(&pool)
    .await?;
    let lost: i64 = sqlx::query_scalar("SELECT count(*) FROM leads WHERE status <> 'completed'")
        .fetch_one(&pool)
        .await?;
    Ok((first_step, repeated, lost))
}

async fn history_rows(url: &str) -> anyhow::Result<i64> {
    let pool = sqlx::AnyPool::connect(url).await?;
    let n = sqlx::query_scalar("SELECT count(*) FROM lead_history WHERE exited_at IS NOT NULL")
        .fetch_one(&pool)
        .await?;
    pool.close().await;
    Ok(n)
}

fn summary(values: &mut [f64]) -> String {
    values.sort_by(f64::total_cmp);
    let median = values[values.len() / 2];
    format!(
        "{:>10.1} {:>10.1} {:>10.1}",
        values[0],
        median,
        values[values.len() - 1]
    )
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").parse::<u64>().unwrap_or(0) / 1024 / 1024)
        })
        .unwrap_or(0);
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    format!("{cores} cores, {memory} GiB, {cpu}")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    sqlx::any::install_default_drivers();
    let options = options()?;
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let backend = if options.postgres.is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    println!("machine: {}", machine());
    println!(
        "date: {}   commit: {commit}   backend: {backend}   leads: {}   runs: {}",
        jiff::Timestamp::now(),
        options.leads,
        options.runs
    );
    println!("{:<44} {:>10} {:>10} {:>10}", "figure", "min", "median", "max");
    let wants = |b: &str| options.which == "all" || options.which == b;
    if wants("b2") {
        let mut rates = Vec::new();
        for _ in 0..options.runs {
            rates.push(b2(&options).await?);
        }
        println!("{:<44} {}", "B2 engine: step transitions/s", summary(&mut rates));
    }
    if wants("b4") {
        let (mut p50, mut p99, mut max) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..options.runs {
            let (a, b, c) = b4(&options).await?;
            p50.push(a);
            p99.push(b);
            max.push(c);
        }
        println!("{:<44} {}", "B4 timer lateness p50 (ms)", summary(&mut p50));
        println!("{:<44} {}", "B4 timer lateness p99 (ms)", summary(&mut p99));
        println!("{:<44} {}", "B4 timer lateness max (ms)", summary(&mut max));
    }
    if wants("b8") {
        let (mut first, mut repeated, mut lost) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..options.runs {
            let (a, b, c) = b8(&options).await?;
            first.push(a);
            repeated.push(b as f64);
            lost.push(c as f64);
        }
        println!(
            "{:<44} {}",
            "B8 recovery: first step after start (s)",
            summary(&mut first)
        );
        println!("{:<44} {}", "B8 recovery: steps repeated", summary(&mut repeated));
        println!("{:<44} {}", "B8 recovery: leads lost", summary(&mut lost));
    }
    Ok(())
}
