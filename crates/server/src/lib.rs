//! The `switchboard` binary's library half: configuration, store selection, and the serve loop
//! that runs the API and the engine as sibling tasks under one shutdown signal.

use anyhow::Context;
use std::net::SocketAddr;
use std::sync::Arc;
use switchboard_api::extract::hash_secret;
pub use switchboard_engine::install_crypto_provider;
use switchboard_engine::{Engine, EngineConfig, Waker};
use switchboard_store::Store;
use switchboard_store::records::ApiKeyRecord;
use switchboard_store_sql::SqlStore;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub const DEFAULT_DATABASE_URL: &str = "sqlite://switchboard.db";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Opens the store named by `url`: `sqlite://PATH` (created if missing) or `postgres://...`.
pub async fn open_store(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    let store = SqlStore::connect(url).await.with_context(|| format!("opening {url}"))?;
    Ok(Arc::new(store))
}

/// A newly made API key: the full key is shown once and never stored.
pub struct IssuedKey {
    pub record: ApiKeyRecord,
    pub api_key: String,
}

pub async fn issue_key(store: &dyn Store, org_name: &str, label: Option<&str>) -> anyhow::Result<IssuedKey> {
    let org = store.ensure_organization(org_name).await?;
    let key_id = switchboard_domain::ids::new_id(switchboard_domain::ids::API_KEY);
    let secret = switchboard_domain::ids::new_secret();
    let record = store
        .create_api_key(&org.id, label, &key_id, &hash_secret(&secret))
        .await?;
    Ok(IssuedKey {
        record,
        api_key: format!("sbk_{key_id}_{secret}"),
    })
}

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub engine: EngineConfig,
    /// Requests per second per API key (bursts up to twice that); 0 turns limits off.
    pub rate_limit: u32,
}

/// A running service: its address, and a sender that stops it.
pub struct Running {
    pub addr: SocketAddr,
    pub shutdown: watch::Sender<bool>,
    pub done: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Serves the API and runs the engine on `listener` until `shutdown` is sent.
pub async fn start(store: Arc<dyn Store>, listener: TcpListener, config: ServeConfig) -> anyhow::Result<Running> {
    let addr = listener.local_addr()?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let waker = Waker::default();
    let engine = Engine::new(store.clone(), config.engine, waker.clone());
    let rate_limit = switchboard_api::RateLimit::new(config.rate_limit).map(Arc::new);
    let app = switchboard_api::router(switchboard_api::AppState {
        store,
        waker,
        rate_limit,
    });
    let mut http_shutdown = shutdown_rx.clone();
    let done = tokio::spawn(async move {
        let engine_task = tokio::spawn(engine.run(shutdown_rx));
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = http_shutdown.wait_for(|stop| *stop).await;
            })
            .await?;
        engine_task.await?;
        Ok(())
    });
    Ok(Running {
        addr,
        shutdown: shutdown_tx,
        done,
    })
}
