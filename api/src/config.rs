//! Every setting: its environment variable, its default, one doc line each.
//!
//! The README's configuration table lists exactly these; a test fails when a
//! variable here is missing from it.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

/// Server configuration, read from the environment (or the same-named flags).
#[derive(Clone, Debug, clap::Args)]
pub struct Config {
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    #[arg(long, env = "WAYFINDER_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,

    /// Database URL: `sqlite://…` or `postgres://…`. Default: a SQLite file in the data directory.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,

    /// Directory for the embedded SQLite database and the generated local secret.
    #[arg(long, env = "WAYFINDER_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,

    /// Redis URL for pub/sub across replicas; unset uses in-process pub/sub.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,

    /// Prefix of every Redis channel, so several deployments (or tests) can share one Redis.
    #[arg(long, env = "REDIS_PREFIX", default_value = "wayfinder:")]
    pub redis_prefix: String,

    /// Server secret (at least 32 characters) for signing tokens and sealing keys; unset generates one in the data directory.
    #[arg(long, env = "WAYFINDER_SECRET", hide_env_values = true)]
    pub secret: Option<String>,

    /// Kill-switch for every AI call; `false` makes every bot answer with its canned fallback.
    #[arg(long, env = "AI_CHATBOT_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    pub ai_chatbot_enabled: bool,

    /// Seed a demo org, bot, knowledge base, site and widget into an empty database.
    #[arg(long, env = "WAYFINDER_DEMO", default_value_t = true, action = clap::ArgAction::Set)]
    pub demo: bool,

    /// Log format: `text` for people, `json` for log collectors.
    #[arg(long, env = "WAYFINDER_LOG_FORMAT", default_value = "text")]
    pub log_format: String,

    /// Largest accepted request body, in bytes.
    #[arg(long, env = "WAYFINDER_BODY_LIMIT", default_value_t = 256 * 1024)]
    pub body_limit: usize,

    /// Deepest accepted GraphQL selection nesting.
    #[arg(long, env = "WAYFINDER_MAX_QUERY_DEPTH", default_value_t = 15)]
    pub max_query_depth: usize,

    /// Highest accepted GraphQL query complexity (one point per field; a list counts its fields once per item asked for).
    #[arg(long, env = "WAYFINDER_MAX_QUERY_COMPLEXITY", default_value_t = 5000)]
    pub max_query_complexity: usize,

    /// Most operations accepted in one batched HTTP request.
    #[arg(long, env = "WAYFINDER_MAX_BATCH", default_value_t = 10)]
    pub max_batch: usize,

    /// Milliseconds a graphql-ws client has to send `connection_init` before the socket closes with 4408.
    #[arg(long, env = "WAYFINDER_WS_INIT_TIMEOUT_MS", default_value_t = 3000)]
    pub ws_init_timeout_ms: u64,

    /// Most concurrent subscriptions on one graphql-ws socket.
    #[arg(long, env = "WAYFINDER_WS_MAX_SUBSCRIPTIONS", default_value_t = 32)]
    pub ws_max_subscriptions: usize,

    /// Seconds to let in-flight requests finish after SIGTERM or Ctrl-C.
    #[arg(long, env = "WAYFINDER_SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    pub shutdown_grace_secs: u64,

    /// Minimum milliseconds between minting a contact-form challenge and accepting it.
    #[arg(long, env = "WAYFINDER_CONTACT_MIN_FILL_MS", default_value_t = 5000)]
    pub contact_min_fill_ms: u64,
}

impl Config {
    /// A configuration with every default, for tests and embedding.
    pub fn defaults() -> Self {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            config: Config,
        }
        // Parsing an empty argument list only fails if a default is malformed,
        // which the `config_defaults_parse` unit test rules out.
        match Only::try_parse_from(["wayfinder"]) {
            Ok(only) => only.config,
            Err(err) => panic!("built-in defaults do not parse: {err}"),
        }
    }

    /// The database URL to connect to, falling back to the embedded SQLite file.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("wayfinder.db").display()
            ),
        }
    }

    /// How long a graphql-ws client may take to initialise.
    pub fn ws_init_timeout(&self) -> Duration {
        Duration::from_millis(self.ws_init_timeout_ms)
    }
}
