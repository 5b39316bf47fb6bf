//! Building the application as a value: [`App::build`] connects, migrates,
//! binds (port 0 in tests) and exposes its address; [`App::run_until`] serves
//! until a shutdown future resolves, then drains gracefully.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use axum::serve::ListenerExt;
use tokio::net::TcpListener;

use crate::{
    config::Config,
    db, graphql, http,
    pubsub::{Bus, MemoryBus, RedisBus},
    secret::ServerSecret,
    service::{demo, event},
    state::{AppState, State},
};

/// Why the application could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("database: {0}")]
    Database(#[from] sea_orm::DbErr),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("secret: {0}")]
    Secret(#[from] crate::secret::SecretError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("data directory: {0}")]
    DataDir(std::io::Error),
    #[error("LLM provider: {0}")]
    Llm(String),
    #[error("demo seed: {0}")]
    Demo(String),
}

/// A built, bound, not yet serving application.
pub struct App {
    listener: TcpListener,
    addr: SocketAddr,
    state: AppState,
    /// The demo seeded on this start, if any.
    pub demo: Option<demo::Demo>,
}

/// The shared state for `config`: database (migrated), bus, secret, schema.
pub async fn build_state(config: Config) -> Result<AppState, StartError> {
    if config.database_url.is_none() {
        std::fs::create_dir_all(&config.data_dir).map_err(StartError::DataDir)?;
    }
    let secret = ServerSecret::load(config.secret.as_deref(), &config.data_dir)?;
    let db = db::connect(&config.database_url(), config.database_max_connections).await?;
    db::migrate(&db).await?;
    let (bus, redis): (Arc<dyn Bus>, _) = match &config.redis_url {
        Some(url) => {
            let client = redis::Client::open(url.as_str())?;
            let conn = client.get_connection_manager().await?;
            let bus = RedisBus::connect(client, config.redis_prefix.clone()).await?;
            (Arc::new(bus), Some(conn))
        }
        None => (Arc::new(MemoryBus::default()), None),
    };
    let llm = match crate::llm::settings_from_config(&config) {
        Some(settings) => {
            tracing::info!(provider = settings.kind.as_str(), base_url = %settings.base_url, model = %config.llm_model, "LLM provider configured");
            Some(crate::llm::build_provider(settings).map_err(|e| StartError::Llm(e.to_string()))?)
        }
        None => {
            tracing::info!(
                "no LLM provider configured: answers are extractive (set LLM_PROVIDER / LLM_API_KEY)"
            );
            None
        }
    };
    let embedder = match crate::embeddings::from_config(&config).await {
        Ok(Some(e)) => {
            tracing::info!(
                model = e.model(),
                dimension = e.dimension(),
                "embedding model ready: semantic and hybrid retrieval on"
            );
            Some(e)
        }
        Ok(None) => {
            tracing::info!(
                "no embedding model configured: retrieval ranks by keywords (set EMBEDDING_MODEL_DIR)"
            );
            None
        }
        Err(message) => {
            tracing::error!(%message, "the embedding model is unusable: retrieval ranks by keywords until it is fixed");
            None
        }
    };
    let mode = crate::turn::retrieval::RetrievalMode::parse(&config.retrieval).unwrap_or_else(|| {
        tracing::warn!(retrieval = %config.retrieval, "WAYFINDER_RETRIEVAL is not hybrid, keyword, semantic or substring; using hybrid");
        crate::turn::retrieval::RetrievalMode::Hybrid
    });
    let retriever = crate::turn::retrieval::Retriever::new(
        embedder,
        mode,
        config.index_memory_mb.saturating_mul(1024 * 1024),
    );
    let schema = graphql::builder(&config).finish();
    let rate = crate::http::rate_limit::RateLimiter::new(
        &config,
        redis.clone().map(|c| (c, config.redis_prefix.clone())),
    );
    let sockets_per_ip = crate::http::ws::SocketsPerIp::new(config.ws_max_sockets_per_ip);
    Ok(Arc::new(State {
        db,
        config,
        secret,
        bus,
        redis,
        llm,
        org_llm: Default::default(),
        retriever,
        rate,
        schema,
        shutdown: tokio::sync::watch::channel(false).0,
        revoked_keys: tokio::sync::broadcast::channel(256).0,
        keys: Default::default(),
        sockets_per_ip,
        published: Default::default(),
    }))
}

impl App {
    /// Connects, migrates, seeds the demo when asked and the database is empty, and binds.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        let addr = config.addr;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| StartError::Bind { addr, source })?;
        let demo_enabled = config.demo;
        let state = build_state(config).await?;
        match crate::service::mapping::end_abandoned_mappings(&state).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                sites = n,
                "mappings left in progress by a stopped server ended FAILED"
            ),
            Err(err) => tracing::error!(%err, "could not end abandoned mappings"),
        }
        let demo = if demo_enabled {
            demo::seed_if_empty(&state, &format!("http://{addr}"))
                .await
                .map_err(|e| StartError::Demo(e.to_string()))?
        } else {
            None
        };
        Ok(Self {
            listener,
            addr,
            state,
            demo,
        })
    }

    /// The bound address (the real port when built with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The shared state (tests reach the database through it).
    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// Serves until `shutdown` resolves, then lets in-flight requests finish within the grace period.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let relay = tokio::spawn(event::relay(
            self.state.clone(),
            Duration::from_secs(5),
            Duration::from_secs(5),
        ));
        let marks = tokio::spawn(event::mark_published_forever(self.state.clone()));
        let mailer = tokio::spawn(crate::service::notify::send_forever(
            self.state.clone(),
            Duration::from_millis(500),
        ));
        let webhooks = tokio::spawn(crate::service::webhook::deliver_forever(self.state.clone()));
        let revocations = tokio::spawn(watch_revocations(self.state.clone()));
        let retention = tokio::spawn(crate::service::retention::sweep_forever(self.state.clone()));
        let mappings = tokio::spawn(crate::service::mapping::end_abandoned_forever(
            self.state.clone(),
        ));
        let embedding = tokio::spawn(crate::embeddings::indexer::embed_forever(
            self.state.clone(),
        ));
        let grace = Duration::from_secs(self.state.config.shutdown_grace_secs);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let app = http::router(self.state.clone());
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        let state = self.state.clone();
        // Turn events are small writes that follow one another closely: with
        // Nagle's algorithm on, each one after the first waited for the
        // client's delayed ACK (~40 ms). Every accepted connection is TCP_NODELAY.
        let listener = self.listener.tap_io(|tcp| {
            if let Err(err) = tcp.set_nodelay(true) {
                tracing::debug!(%err, "could not set TCP_NODELAY on an accepted connection");
            }
        });
        let server = axum::serve(listener, app).with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutting down: draining in-flight requests");
            let _ = state.shutdown.send(true);
            let _ = stop_tx.send(true);
        });
        let mut stop_rx_deadline = stop_rx.clone();
        let result = tokio::select! {
            r = server => r,
            _ = async move {
                let _ = stop_rx_deadline.wait_for(|s| *s).await;
                tokio::time::sleep(grace).await;
            } => {
                tracing::warn!("grace period over; closing remaining connections");
                Ok(())
            }
        };
        relay.abort();
        marks.abort();
        // What was published but not yet marked: marked now, so the next start does not republish it.
        self.state.published.flush(&self.state.db).await;
        mailer.abort();
        webhooks.abort();
        revocations.abort();
        retention.abort();
        mappings.abort();
        embedding.abort();
        drop(stop_rx);
        result
    }
}

/// How often each replica looks for newly revoked API keys.
const REVOCATION_POLL: Duration = Duration::from_secs(2);
/// How far back each look reaches: generous, so clocks that disagree by
/// seconds between replicas still see every revocation.
const REVOCATION_WINDOW: chrono::TimeDelta = chrono::TimeDelta::seconds(30);

/// Tells this replica's sockets which API keys were revoked, on any replica,
/// and makes its HTTP requests read those keys from the store again: one
/// small query every [`REVOCATION_POLL`] per replica, not one per socket, and
/// no dependence on the bus (a lost message can't keep a socket open). Every
/// poll forgets every key of the window, not only the new ones, so a request
/// that read a key just before its revocation cannot leave it remembered.
async fn watch_revocations(st: AppState) {
    let mut announced: std::collections::HashMap<uuid::Uuid, chrono::DateTime<chrono::Utc>> =
        Default::default();
    let mut tick = tokio::time::interval(REVOCATION_POLL);
    loop {
        tick.tick().await;
        let now = chrono::Utc::now();
        announced.retain(|_, at| now - *at < REVOCATION_WINDOW * 2);
        match crate::auth::revoked_since(&st.db, now - REVOCATION_WINDOW).await {
            Ok(ids) => {
                st.keys.forget(&ids.iter().copied().collect());
                for id in ids {
                    if announced.insert(id, now).is_none() {
                        let _ = st.revoked_keys.send(id);
                    }
                }
            }
            Err(err) => tracing::warn!(%err, "could not look for revoked API keys"),
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
