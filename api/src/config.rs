//! Every setting: its environment variable, its default, one doc line each.
//!
//! The README's configuration table lists exactly these; a test fails when a
//! variable here is missing from it. `Debug` is written by hand so that it
//! never prints a secret: the server secret, the LLM key and the SMTP
//! password are redacted, and so are passwords (and password-like query
//! parameters) inside every URL. It names every field without `..`, so a
//! new field does not compile until someone decides whether it is secret.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

/// Server configuration, read from the environment (or the same-named flags).
/// `Debug` redacts secrets (see [`Config`]'s `Debug` impl), so logging a
/// configuration never leaks them.
#[derive(Clone, clap::Args)]
pub struct Config {
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    #[arg(
        long,
        global = true,
        env = "WAYFINDER_ADDR",
        default_value = "127.0.0.1:8080"
    )]
    pub addr: SocketAddr,

    /// Database URL: `sqlite://…` or `postgres://…`. Default: a SQLite file in the data directory.
    #[arg(long, global = true, env = "DATABASE_URL")]
    pub database_url: Option<String>,

    /// Most database connections this replica keeps open; unset: 20 on PostgreSQL, 8 on SQLite.
    #[arg(long, global = true, env = "DATABASE_MAX_CONNECTIONS", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub database_max_connections: Option<u32>,

    /// Directory for the embedded SQLite database and the generated local secret.
    #[arg(
        long,
        global = true,
        env = "WAYFINDER_DATA_DIR",
        default_value = "data"
    )]
    pub data_dir: PathBuf,

    /// Redis URL for pub/sub across replicas; unset uses in-process pub/sub.
    #[arg(long, global = true, env = "REDIS_URL")]
    pub redis_url: Option<String>,

    /// Prefix of every Redis channel, so several deployments (or tests) can share one Redis.
    #[arg(
        long,
        global = true,
        env = "REDIS_PREFIX",
        default_value = "wayfinder:"
    )]
    pub redis_prefix: String,

    /// Server secret (at least 32 characters) for signing tokens and sealing keys; unset generates one in the data directory.
    #[arg(long, global = true, env = "WAYFINDER_SECRET", hide_env_values = true)]
    pub secret: Option<String>,

    /// Kill-switch for every AI call; `false` makes every bot answer with its canned fallback.
    #[arg(long, global = true, env = "AI_CHATBOT_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    pub ai_chatbot_enabled: bool,

    /// Seed a demo org, bot, knowledge base, site and widget into an empty database.
    #[arg(long, global = true, env = "WAYFINDER_DEMO", default_value_t = true, action = clap::ArgAction::Set)]
    pub demo: bool,

    /// Log format: `text` for people, `json` for log collectors.
    #[arg(
        long,
        global = true,
        env = "WAYFINDER_LOG_FORMAT",
        default_value = "text"
    )]
    pub log_format: String,

    /// Largest accepted request body, in bytes.
    #[arg(long, global = true, env = "WAYFINDER_BODY_LIMIT", default_value_t = 256 * 1024)]
    pub body_limit: usize,

    /// Deepest accepted GraphQL selection nesting.
    #[arg(
        long,
        global = true,
        env = "WAYFINDER_MAX_QUERY_DEPTH",
        default_value_t = 15
    )]
    pub max_query_depth: usize,

    /// Highest accepted GraphQL query complexity (one point per field; a list counts its fields once per item asked for).
    #[arg(
        long,
        global = true,
        env = "WAYFINDER_MAX_QUERY_COMPLEXITY",
        default_value_t = 5000
    )]
    pub max_query_complexity: usize,

    /// Most operations accepted in one batched HTTP request.
    #[arg(long, global = true, env = "WAYFINDER_MAX_BATCH", default_value_t = 10)]
    pub max_batch: usize,

    /// Milliseconds a graphql-ws client has to send `connection_init` before the socket closes with 4408.
    #[arg(
        long,
        global = true,
        env = "WAYFINDER_WS_INIT_TIMEOUT_MS",
        default_value_t = 3000
    )]
    pub ws_init_timeout_ms: u64,

    /// Most concurrent subscriptions on one graphql-ws socket.
    #[arg(
        long,
        global = true,
        env = "WAYFINDER_WS_MAX_SUBSCRIPTIONS",
        default_value_t = 32
    )]
    pub ws_max_subscriptions: usize,

    /// Most graphql-ws sockets open at once from one client address (an IPv6 client: its /64) on a replica; more upgrades get 429 `TOO_MANY_SOCKETS`; 0 disables.
    #[arg(
        long,
        global = true,
        env = "WAYFINDER_WS_MAX_SOCKETS_PER_IP",
        default_value_t = 256
    )]
    pub ws_max_sockets_per_ip: usize,

    /// Seconds to let in-flight requests finish after SIGTERM or Ctrl-C.
    #[arg(
        long,
        global = true,
        env = "WAYFINDER_SHUTDOWN_GRACE_SECS",
        default_value_t = 10
    )]
    pub shutdown_grace_secs: u64,

    /// LLM provider: `ollama`, `openai` (or any OpenAI-compatible server), `anthropic`, or `none`. Unset: Ollama Cloud when `LLM_API_KEY` is set, otherwise none (extractive answers).
    #[arg(long, global = true, env = "LLM_PROVIDER")]
    pub llm_provider: Option<String>,

    /// Base URL of the LLM provider. Default: `https://ollama.com` (Ollama Cloud, with a key) or `http://localhost:11434` (Ollama without a key), `https://api.openai.com/v1`, `https://api.anthropic.com`.
    #[arg(long, global = true, env = "LLM_BASE_URL")]
    pub llm_base_url: Option<String>,

    /// API key of the LLM provider (Ollama Cloud, OpenAI, Anthropic); never logged.
    #[arg(long, global = true, env = "LLM_API_KEY", hide_env_values = true)]
    pub llm_api_key: Option<String>,

    /// Model for answers.
    #[arg(long, global = true, env = "LLM_MODEL", default_value = "gpt-oss:20b")]
    pub llm_model: String,

    /// Milliseconds to connect to the LLM provider.
    #[arg(
        long,
        global = true,
        env = "LLM_CONNECT_TIMEOUT_MS",
        default_value_t = 3000
    )]
    pub llm_connect_timeout_ms: u64,

    /// Milliseconds to wait for the first streamed token before falling back.
    #[arg(
        long,
        global = true,
        env = "LLM_FIRST_TOKEN_TIMEOUT_MS",
        default_value_t = 15000
    )]
    pub llm_first_token_timeout_ms: u64,

    /// Milliseconds one LLM call may take in all before falling back (kept at least 5 s under the request timeout).
    #[arg(
        long,
        global = true,
        env = "LLM_TOTAL_TIMEOUT_MS",
        default_value_t = 45000
    )]
    pub llm_total_timeout_ms: u64,

    /// Milliseconds an LLM stream may go silent after its first token before the turn falls back.
    #[arg(
        long,
        global = true,
        env = "LLM_IDLE_TIMEOUT_MS",
        default_value_t = 10000
    )]
    pub llm_idle_timeout_ms: u64,

    /// Retries on 429/5xx before the first token (with backoff).
    #[arg(long, global = true, env = "LLM_MAX_RETRIES", default_value_t = 2)]
    pub llm_max_retries: u32,

    /// Knowledge-base ranking for bots and `kbSearch`: `hybrid` (words and meaning; words alone without an embedding model), `keyword` (BM25F), `semantic` (embeddings) or `substring` (the baseline).
    #[arg(
        long,
        global = true,
        env = "WAYFINDER_RETRIEVAL",
        default_value = "hybrid"
    )]
    pub retrieval: String,

    /// Embedding provider: `local` (the model in `EMBEDDING_MODEL_DIR`, the default when it is set), `ollama`, `openai`, or `none`.
    #[arg(long, global = true, env = "EMBEDDING_PROVIDER")]
    pub embedding_provider: Option<String>,

    /// Folder of a sentence-transformers model (`config.json`, `tokenizer.json`, `model.safetensors`) run in process, e.g. all-MiniLM-L6-v2.
    #[arg(long, global = true, env = "EMBEDDING_MODEL_DIR")]
    pub embedding_model_dir: Option<std::path::PathBuf>,

    /// Base URL of the `ollama` or `openai` embedding server (defaults: `http://localhost:11434`, `https://api.openai.com/v1`).
    #[arg(long, global = true, env = "EMBEDDING_BASE_URL")]
    pub embedding_base_url: Option<String>,

    /// The embedding model's name on the `ollama` or `openai` server.
    #[arg(long, global = true, env = "EMBEDDING_MODEL")]
    pub embedding_model: Option<String>,

    /// API key of the `openai` embedding server, sent as a bearer token.
    #[arg(long, global = true, env = "EMBEDDING_API_KEY", hide_env_values = true)]
    pub embedding_api_key: Option<String>,

    /// Memory for the in-process retrieval indexes, in MiB; the least recently searched knowledge bases are dropped beyond it.
    #[arg(
        long,
        global = true,
        env = "WAYFINDER_INDEX_MEMORY_MB",
        default_value_t = 1024
    )]
    pub index_memory_mb: u64,

    /// Credits charged per 1,000 tokens, per model: `model=price,…`; `default` applies to unlisted models.
    #[arg(
        long,
        global = true,
        env = "WAYFINDER_CREDIT_PRICES",
        default_value = "default=1"
    )]
    pub credit_prices: String,

    /// Seconds between two "out of AI credits" emails to the same org's owner.
    #[arg(
        long,
        global = true,
        env = "WAYFINDER_NOTIFY_DEBOUNCE_SECS",
        default_value_t = 86_400
    )]
    pub notify_debounce_secs: u64,

    /// SMTP server for owner emails (`smtp://user:pass@host:port`); unset keeps emails in the notifications outbox only.
    #[arg(long, global = true, env = "SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,

    /// Sender address of owner emails.
    #[arg(
        long,
        global = true,
        env = "SMTP_FROM",
        default_value = "Wayfinder <no-reply@wayfinder.invalid>"
    )]
    pub smtp_from: String,

    /// Credits the demo org starts with.
    #[arg(
        long,
        global = true,
        env = "WAYFINDER_DEMO_CREDITS",
        default_value_t = 10_000
    )]
    pub demo_credits: i64,

    /// Public (no API key) requests allowed per client IP per minute, across replicas when Redis is set; 0 disables.
    #[arg(
        long,
        global = true,
        env = "WAYFINDER_PUBLIC_RATE_LIMIT",
        default_value_t = 120
    )]
    pub public_rate_limit: u32,

    /// Public operations allowed per chat widget per minute (all visitors of one widget together), across replicas when Redis is set; 0 disables.
    #[arg(
        long,
        global = true,
        env = "WAYFINDER_WIDGET_RATE_LIMIT",
        default_value_t = 600
    )]
    pub widget_rate_limit: u32,

    /// Operations allowed per API key per minute (dashboards and integrators), across replicas when Redis is set; 0 disables.
    #[arg(
        long,
        global = true,
        env = "WAYFINDER_API_KEY_RATE_LIMIT",
        default_value_t = 1200
    )]
    pub api_key_rate_limit: u32,

    /// Most root query fields one public (no API key) operation may select; a public mutation may select exactly one.
    #[arg(
        long,
        global = true,
        env = "WAYFINDER_PUBLIC_MAX_ROOT_FIELDS",
        default_value_t = 3
    )]
    pub public_max_root_fields: usize,

    /// Reverse proxies in front of the server whose `X-Forwarded-For` entries are trusted (0: the TCP peer is the client).
    #[arg(
        long,
        global = true,
        env = "WAYFINDER_TRUSTED_PROXIES",
        default_value_t = 0
    )]
    pub trusted_proxies: usize,

    /// Seconds one HTTP request may take before it is answered 408; every LLM deadline ends well before it.
    #[arg(
        long,
        global = true,
        env = "WAYFINDER_REQUEST_TIMEOUT_SECS",
        default_value_t = 60
    )]
    pub request_timeout_secs: u64,

    /// Seconds between the server's keep-alive pings on a graphql-ws socket.
    #[arg(
        long,
        global = true,
        env = "WAYFINDER_WS_PING_SECS",
        default_value_t = 30
    )]
    pub ws_ping_secs: u64,

    /// Seconds a graphql-ws client may take to read what the server sends before the socket is closed.
    #[arg(
        long,
        global = true,
        env = "WAYFINDER_WS_WRITE_TIMEOUT_SECS",
        default_value_t = 10
    )]
    pub ws_write_timeout_secs: u64,

    /// Seconds a graphql-ws socket may stay open with no running subscription before it is closed.
    #[arg(
        long,
        global = true,
        env = "WAYFINDER_WS_IDLE_SECS",
        default_value_t = 300
    )]
    pub ws_idle_secs: u64,

    /// Days a chat session token keeps working after the session's last turn.
    #[arg(
        long,
        global = true,
        env = "WAYFINDER_SESSION_TTL_DAYS",
        default_value_t = 30
    )]
    pub session_ttl_days: u64,

    /// Outbound destinations allowed despite the private-address guard, comma-separated `host:port` or `ip:port` (e.g. `127.0.0.1:11434` for a local Ollama).
    #[arg(long, global = true, env = "WAYFINDER_OUTBOUND_ALLOW")]
    pub outbound_allow: Option<String>,

    /// Wait before a failed webhook delivery's first retry, in milliseconds; it doubles per attempt up to an hour.
    #[arg(
        long,
        global = true,
        env = "WAYFINDER_WEBHOOK_BACKOFF_MS",
        default_value_t = 1000
    )]
    pub webhook_backoff_ms: u64,

    /// Minimum milliseconds between minting a contact-form challenge and accepting it.
    #[arg(
        long,
        global = true,
        env = "WAYFINDER_CONTACT_MIN_FILL_MS",
        default_value_t = 2000
    )]
    pub contact_min_fill_ms: u64,

    /// Seconds between two runs of the retention job, which deletes what is older than each org's `retentionDays`; 0 disables it.
    #[arg(
        long,
        global = true,
        env = "WAYFINDER_RETENTION_INTERVAL_SECS",
        default_value_t = 3600
    )]
    pub retention_interval_secs: u64,

    /// Rows the retention job deletes per statement (each batch is one short transaction, so it never holds the database for long).
    #[arg(
        long,
        global = true,
        env = "WAYFINDER_RETENTION_BATCH",
        default_value_t = 500
    )]
    pub retention_batch: u64,
    /// Most pages one `mapSite` crawl maps (at most 500, the app map's limit).
    #[arg(
        long,
        global = true,
        env = "WAYFINDER_MAP_MAX_PAGES",
        default_value_t = 200
    )]
    pub map_max_pages: usize,

    /// Most links a `mapSite` crawl follows from the base URL.
    #[arg(
        long,
        global = true,
        env = "WAYFINDER_MAP_MAX_DEPTH",
        default_value_t = 5
    )]
    pub map_max_depth: usize,

    /// Largest page a `mapSite` crawl reads, in bytes; larger pages are skipped.
    #[arg(
        long,
        global = true,
        env = "WAYFINDER_MAP_PAGE_BYTES",
        default_value_t = 2097152
    )]
    pub map_page_bytes: usize,

    /// Bytes one `mapSite` crawl reads in all before it stops with what it has.
    #[arg(
        long,
        global = true,
        env = "WAYFINDER_MAP_TOTAL_BYTES",
        default_value_t = 52428800
    )]
    pub map_total_bytes: usize,

    /// Seconds one `mapSite` crawl may run before it stops with what it has.
    #[arg(
        long,
        global = true,
        env = "WAYFINDER_MAP_TIMEOUT_SECS",
        default_value_t = 300
    )]
    pub map_timeout_secs: u64,

    /// Requests one `mapSite` crawl keeps in flight at once (1 to 16).
    #[arg(
        long,
        global = true,
        env = "WAYFINDER_MAP_CONCURRENCY",
        default_value_t = 4
    )]
    pub map_concurrency: usize,

    /// Headless Chromium to render pages with before mapping them (e.g. `/usr/bin/chromium`), so single-page apps map too; unset, `mapSite` reads static HTML only.
    #[arg(long, global = true, env = "WAYFINDER_CHROMIUM")]
    pub chromium: Option<String>,

    /// Milliseconds a rendered page may take to load and settle before its DOM is read as it is.
    #[arg(
        long,
        global = true,
        env = "WAYFINDER_MAP_RENDER_TIMEOUT_MS",
        default_value_t = 15000
    )]
    pub map_render_timeout_ms: u64,

    /// Crawls (`mapSite`) running at once on the whole deployment; each rendered crawl runs one Chromium.
    #[arg(
        long,
        global = true,
        env = "WAYFINDER_MAP_MAX_CRAWLS",
        default_value_t = 4
    )]
    pub map_max_crawls: usize,

    /// Crawls (`mapSite`) one org may run at once.
    #[arg(
        long,
        global = true,
        env = "WAYFINDER_MAP_MAX_CRAWLS_PER_ORG",
        default_value_t = 2
    )]
    pub map_max_crawls_per_org: usize,

    /// Seconds a mapping token from `startSiteRecording` stays valid.
    #[arg(
        long,
        global = true,
        env = "WAYFINDER_RECORDING_TTL_SECS",
        default_value_t = 1800
    )]
    pub recording_ttl_secs: u64,

    /// Bearer token `/metrics` requires (`Authorization: Bearer …`); unset, `/metrics` answers only requests from this machine (a loopback peer).
    #[arg(
        long,
        global = true,
        env = "WAYFINDER_METRICS_TOKEN",
        hide_env_values = true
    )]
    pub metrics_token: Option<String>,
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

    /// Credits per 1,000 tokens of `model`.
    pub fn credit_price(&self, model: &str) -> i64 {
        let mut default = 1;
        for pair in self.credit_prices.split(',') {
            if let Some((m, p)) = pair.split_once('=') {
                let price = p.trim().parse::<i64>().unwrap_or(1).max(0);
                if m.trim() == model {
                    return price;
                }
                if m.trim() == "default" {
                    default = price;
                }
            }
        }
        default
    }

    /// How long a graphql-ws client may take to initialise.
    pub fn ws_init_timeout(&self) -> Duration {
        Duration::from_millis(self.ws_init_timeout_ms)
    }
}

/// What redacted values print as.
const REDACTED: &str = "<redacted>";

/// `url` with its password, and the values of query parameters that look like
/// credentials, replaced by `<redacted>`; a URL that does not parse is
/// redacted whole (it may be a secret pasted in the wrong place).
pub(crate) fn redact_url(url: &str) -> String {
    let Ok(mut parsed) = reqwest::Url::parse(url) else {
        return REDACTED.to_string();
    };
    if parsed.password().is_some() && parsed.set_password(Some(REDACTED)).is_err() {
        return REDACTED.to_string();
    }
    let secretish = |name: &str| {
        let name = name.to_ascii_lowercase();
        [
            "pass",
            "secret",
            "token",
            "key",
            "auth",
            "credential",
            "sig",
        ]
        .iter()
        .any(|s| name.contains(s))
    };
    if parsed.query_pairs().any(|(k, _)| secretish(&k)) {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let v = if secretish(&k) {
                    REDACTED.to_string()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No `..`: a new field must be listed here, redacted if it is secret.
        let Config {
            addr,
            database_url,
            database_max_connections,
            data_dir,
            redis_url,
            redis_prefix,
            secret,
            ai_chatbot_enabled,
            demo,
            log_format,
            body_limit,
            max_query_depth,
            max_query_complexity,
            max_batch,
            ws_init_timeout_ms,
            ws_max_subscriptions,
            ws_max_sockets_per_ip,
            shutdown_grace_secs,
            llm_provider,
            llm_base_url,
            llm_api_key,
            llm_model,
            llm_connect_timeout_ms,
            llm_first_token_timeout_ms,
            llm_total_timeout_ms,
            llm_idle_timeout_ms,
            llm_max_retries,
            retrieval,
            embedding_provider,
            embedding_model_dir,
            embedding_base_url,
            embedding_model,
            embedding_api_key,
            index_memory_mb,
            credit_prices,
            notify_debounce_secs,
            smtp_url,
            smtp_from,
            demo_credits,
            public_rate_limit,
            widget_rate_limit,
            api_key_rate_limit,
            public_max_root_fields,
            trusted_proxies,
            request_timeout_secs,
            ws_ping_secs,
            ws_write_timeout_secs,
            ws_idle_secs,
            session_ttl_days,
            outbound_allow,
            webhook_backoff_ms,
            contact_min_fill_ms,
            retention_interval_secs,
            retention_batch,
            map_max_pages,
            map_max_depth,
            map_page_bytes,
            map_total_bytes,
            map_timeout_secs,
            map_concurrency,
            chromium,
            map_render_timeout_ms,
            map_max_crawls,
            map_max_crawls_per_org,
            recording_ttl_secs,
            metrics_token,
        } = self;
        let url = |u: &Option<String>| u.as_deref().map(redact_url);
        f.debug_struct("Config")
            .field("addr", addr)
            .field("database_url", &url(database_url))
            .field("database_max_connections", database_max_connections)
            .field("data_dir", data_dir)
            .field("redis_url", &url(redis_url))
            .field("redis_prefix", redis_prefix)
            .field("secret", &crate::secret::redacted(secret))
            .field("ai_chatbot_enabled", ai_chatbot_enabled)
            .field("demo", demo)
            .field("log_format", log_format)
            .field("body_limit", body_limit)
            .field("max_query_depth", max_query_depth)
            .field("max_query_complexity", max_query_complexity)
            .field("max_batch", max_batch)
            .field("ws_init_timeout_ms", ws_init_timeout_ms)
            .field("ws_max_subscriptions", ws_max_subscriptions)
            .field("ws_max_sockets_per_ip", ws_max_sockets_per_ip)
            .field("shutdown_grace_secs", shutdown_grace_secs)
            .field("llm_provider", llm_provider)
            .field("llm_base_url", &url(llm_base_url))
            .field("llm_api_key", &crate::secret::redacted(llm_api_key))
            .field("llm_model", llm_model)
            .field("llm_connect_timeout_ms", llm_connect_timeout_ms)
            .field("llm_first_token_timeout_ms", llm_first_token_timeout_ms)
            .field("llm_total_timeout_ms", llm_total_timeout_ms)
            .field("llm_idle_timeout_ms", llm_idle_timeout_ms)
            .field("llm_max_retries", llm_max_retries)
            .field("retrieval", retrieval)
            .field("embedding_provider", embedding_provider)
            .field("embedding_model_dir", embedding_model_dir)
            .field("embedding_base_url", &url(embedding_base_url))
            .field("embedding_model", embedding_model)
            .field(
                "embedding_api_key",
                &crate::secret::redacted(embedding_api_key),
            )
            .field("index_memory_mb", index_memory_mb)
            .field("credit_prices", credit_prices)
            .field("notify_debounce_secs", notify_debounce_secs)
            .field("smtp_url", &url(smtp_url))
            .field("smtp_from", smtp_from)
            .field("demo_credits", demo_credits)
            .field("public_rate_limit", public_rate_limit)
            .field("widget_rate_limit", widget_rate_limit)
            .field("api_key_rate_limit", api_key_rate_limit)
            .field("public_max_root_fields", public_max_root_fields)
            .field("trusted_proxies", trusted_proxies)
            .field("request_timeout_secs", request_timeout_secs)
            .field("ws_ping_secs", ws_ping_secs)
            .field("ws_write_timeout_secs", ws_write_timeout_secs)
            .field("ws_idle_secs", ws_idle_secs)
            .field("session_ttl_days", session_ttl_days)
            .field("outbound_allow", outbound_allow)
            .field("webhook_backoff_ms", webhook_backoff_ms)
            .field("contact_min_fill_ms", contact_min_fill_ms)
            .field("retention_interval_secs", retention_interval_secs)
            .field("retention_batch", retention_batch)
            .field("map_max_pages", map_max_pages)
            .field("map_max_depth", map_max_depth)
            .field("map_page_bytes", map_page_bytes)
            .field("map_total_bytes", map_total_bytes)
            .field("map_timeout_secs", map_timeout_secs)
            .field("map_concurrency", map_concurrency)
            .field("chromium", chromium)
            .field("map_render_timeout_ms", map_render_timeout_ms)
            .field("map_max_crawls", map_max_crawls)
            .field("map_max_crawls_per_org", map_max_crawls_per_org)
            .field("recording_ttl_secs", recording_ttl_secs)
            .field("metrics_token", &crate::secret::redacted(metrics_token))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_a_secret() {
        let mut c = Config::defaults();
        c.secret = Some("server-secret-0123456789-0123456789".into());
        c.llm_api_key = Some("sk-llm-key-abcdef".into());
        c.smtp_url = Some("smtp://mailer:smtp-pass-1@mail.example.com:587".into());
        c.database_url =
            Some("postgres://app:db-pass-2@db.example.com:5432/wf?sslmode=require".into());
        c.redis_url = Some("redis://:redis-pass-3@cache.example.com:6379/0".into());
        c.llm_base_url = Some("https://proxy.example.com/v1?api_key=qs-key-4&region=eu".into());
        let shown = format!("{c:?}");
        for secret in [
            "server-secret",
            "sk-llm-key",
            "smtp-pass-1",
            "db-pass-2",
            "redis-pass-3",
            "qs-key-4",
        ] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        // What helps debugging stays.
        for kept in [
            "db.example.com:5432/wf",
            "sslmode=require",
            "cache.example.com",
            "mail.example.com",
            "mailer",
            "region=eu",
            "gpt-oss:20b",
        ] {
            assert!(shown.contains(kept), "{kept} missing from {shown}");
        }
        assert_eq!(redact_url("not a url with a secret"), "<redacted>");
        assert_eq!(
            redact_url("sqlite://data/wayfinder.db?mode=rwc"),
            "sqlite://data/wayfinder.db?mode=rwc"
        );
    }
}
