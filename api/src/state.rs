//! What every request handler shares: the database, the bus, the secret and
//! the configuration.

use std::sync::Arc;

use sea_orm::DatabaseConnection;

use crate::{config::Config, graphql::WayfinderSchema, pubsub::Bus, secret::ServerSecret};

/// Shared application state; cheap to clone.
pub type AppState = Arc<State>;

/// A provider built from an org's own settings, and the settings' update time it was built from.
pub type OrgProvider = (
    chrono::DateTime<chrono::Utc>,
    Arc<dyn crate::llm::LlmProvider>,
);

/// See [`AppState`].
pub struct State {
    pub db: DatabaseConnection,
    pub config: Config,
    pub secret: ServerSecret,
    pub bus: Arc<dyn Bus>,
    /// A Redis connection for readiness checks (and shared limits), when `REDIS_URL` is set.
    pub redis: Option<redis::aio::ConnectionManager>,
    /// The server's default LLM provider; `None` answers extractively.
    pub llm: Option<Arc<dyn crate::llm::LlmProvider>>,
    /// Providers built from orgs' own LLM settings, keyed by org and the settings' update time.
    pub org_llm: std::sync::Mutex<std::collections::HashMap<uuid::Uuid, OrgProvider>>,
    /// The embedder and the in-memory retrieval indexes.
    pub retriever: crate::turn::retrieval::Retriever,
    /// Rate budgets per client IP, chat widget and API key.
    pub rate: crate::http::rate_limit::RateLimiter,
    /// The GraphQL schema; requests carry this state and their caller as data.
    pub schema: WayfinderSchema,
    /// Turns `true` when the server begins shutting down: sockets say goodbye (1001).
    pub shutdown: tokio::sync::watch::Sender<bool>,
    /// Ids of API keys just revoked (on any replica): their sockets close (4403).
    /// A broadcast because revocations are rare and every socket must hear them.
    pub revoked_keys: tokio::sync::broadcast::Sender<uuid::Uuid>,
    /// Org API keys that checked out lately (HTTP requests skip the store for them).
    pub keys: crate::auth::KnownKeys,
    /// Open graphql-ws sockets per client address, for the per-address cap.
    pub sockets_per_ip: crate::http::ws::SocketsPerIp,
    /// Events published on the bus whose published mark is not yet written.
    pub published: crate::service::event::PublishedMarks,
}
