use anyhow::Context;
use clap::{Parser, Subcommand};
use switchboard::{
    DEFAULT_DATABASE_URL, DEFAULT_LISTEN, ServeConfig, install_crypto_provider, issue_key, open_store, start,
};
use switchboard_engine::EngineConfig;
use tokio::net::TcpListener;

/// Switchboard: a durable engine for multi-step outbound calling workflows.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Database URL (sqlite://PATH).
    #[arg(long, global = true, env = "SWITCHBOARD_DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    database: String,
    /// Options of `serve`, which runs when no subcommand is given.
    #[command(flatten)]
    serve: ServeArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API and run the engine (the default).
    Serve(ServeArgs),
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Apply database migrations and exit.
    Migrate,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "SWITCHBOARD_LISTEN", default_value = DEFAULT_LISTEN)]
    listen: String,
    /// Divides every wait the engine schedules (for tests and demos).
    #[arg(long, env = "SWITCHBOARD_TIME_SCALE", default_value_t = 1.0)]
    time_scale: f64,
    /// How long a claimed lead stays this process's without a commit (another process takes it over after).
    #[arg(long, env = "SWITCHBOARD_LEASE_SECONDS", default_value_t = 30)]
    lease_seconds: u64,
    /// Leads the engine claims and commits per batch (one transaction each).
    #[arg(long, env = "SWITCHBOARD_BATCH_SIZE", default_value_t = 256)]
    batch_size: u32,
    /// Calls in flight at once across all workflows of an organization.
    #[arg(long, env = "SWITCHBOARD_ORG_MAX_CONCURRENT_CALLS", default_value_t = 50)]
    org_max_concurrent_calls: u32,
    /// Requests per second per API key (bursts up to twice that); 0 turns limits off.
    #[arg(long, env = "SWITCHBOARD_RATE_LIMIT", default_value_t = 100)]
    rate_limit: u32,
    /// Let APPLICATION webhooks reach loopback and private addresses.
    #[arg(long, env = "SWITCHBOARD_ALLOW_PRIVATE_TARGETS", default_value_t = false)]
    allow_private_targets: bool,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key (and the organization, if new); prints the key once.
    Create {
        #[arg(long)]
        org: String,
        #[arg(long)]
        name: Option<String>,
        /// Print {"organization_id", "key_id", "api_key"}.
        #[arg(long)]
        json: bool,
    },
    /// List keys (never their secrets).
    List,
    /// Revoke a key by id.
    Revoke { key_id: String },
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SWITCHBOARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    // Colours only on a terminal, so redirected logs stay plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if std::env::var("SWITCHBOARD_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

async fn serve(database: &str, args: ServeArgs) -> anyhow::Result<()> {
    if !(args.time_scale.is_finite() && args.time_scale > 0.0) {
        anyhow::bail!("SWITCHBOARD_TIME_SCALE must be a positive number");
    }
    let store = open_store(database).await?;
    if store.organization_count().await? == 0 {
        let key = issue_key(store.as_ref(), "default", Some("first key")).await?;
        println!(
            "Created organization \"default\". Its API key (shown once, keep it):\n{}",
            key.api_key
        );
    }
    let listener = TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let engine = EngineConfig {
        time_scale: args.time_scale,
        allow_private_targets: args.allow_private_targets,
        lease_ms: args.lease_seconds.clamp(1, 3600) as i64 * 1000,
        org_max_concurrent_calls: args.org_max_concurrent_calls.max(1),
        batch_size: args.batch_size.clamp(1, 10_000),
        ..Default::default()
    };
    let running = start(
        store,
        listener,
        ServeConfig {
            engine,
            rate_limit: args.rate_limit,
        },
    )
    .await?;
    tracing::info!(addr = %running.addr, database, "switchboard is serving");
    shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = running.shutdown.send(true);
    running.done.await??;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_logging();
    install_crypto_provider();
    let cli = Cli::parse();
    match cli.command {
        None => serve(&cli.database, cli.serve).await,
        Some(Command::Serve(args)) => serve(&cli.database, args).await,
        Some(Command::Migrate) => {
            open_store(&cli.database).await?;
            println!("migrations applied to {}", cli.database);
            Ok(())
        }
        Some(Command::Keys { command }) => {
            let store = open_store(&cli.database).await?;
            match command {
                KeysCommand::Create { org, name, json } => {
                    let key = issue_key(store.as_ref(), &org, name.as_deref()).await?;
                    if json {
                        let out = serde_json::json!({
                            "organization_id": key.record.organization_id,
                            "key_id": key.record.id,
                            "api_key": key.api_key,
                        });
                        println!("{out}");
                    } else {
                        println!("{}", key.api_key);
                    }
                }
                KeysCommand::List => {
                    for key in store.list_api_keys().await? {
                        let status = if key.revoked_at.is_some() { "revoked" } else { "active" };
                        println!(
                            "{}\t{}\t{}\t{}",
                            key.id,
                            key.organization_name,
                            key.name.unwrap_or_default(),
                            status
                        );
                    }
                }
                KeysCommand::Revoke { key_id } => {
                    if !store.revoke_api_key(&key_id).await? {
                        anyhow::bail!("no active key {key_id}");
                    }
                    println!("revoked {key_id}");
                }
            }
            Ok(())
        }
    }
}
