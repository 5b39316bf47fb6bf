//! `spawn_app()`: a real server on a random port over a fresh, migrated
//! database (SQLite file or PostgreSQL database of its own), with one PRO org
//! and its API key. Logs only with `TEST_LOG=1`. Everything is removed when
//! the `TestApp` drops.

use std::{path::PathBuf, sync::Once};

use serde_json::{Value, json};
use uuid::Uuid;
use wayfinder::{config::Config, domain::Plan, service, startup::App, state::AppState};

/// Which database a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs an `async fn(Backend)` test once on SQLite and once on PostgreSQL.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::helpers::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::helpers::Backend::Postgres).await
            }
        }
    )+};
}

/// The PostgreSQL server tests create their databases on.
pub fn postgres_admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// The Redis server tests use (each with its own key prefix).
pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A database of this test's own; dropped with it.
pub struct TestDatabase {
    pub url: String,
    pub dir: PathBuf,
    pg_name: Option<String>,
}

impl TestDatabase {
    pub async fn create(backend: Backend) -> Self {
        let dir = std::env::temp_dir().join(format!("wayfinder-test-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        match backend {
            Backend::Sqlite => Self {
                url: format!("sqlite://{}?mode=rwc", dir.join("test.db").display()),
                dir,
                pg_name: None,
            },
            Backend::Postgres => {
                use sea_orm::ConnectionTrait;
                let name = format!("wf_test_{}", Uuid::new_v4().simple());
                let admin = sea_orm::Database::connect(postgres_admin_url())
                    .await
                    .expect("PostgreSQL must answer for tests");
                admin
                    .execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .unwrap();
                admin.close().await.unwrap();
                let base = postgres_admin_url();
                let url = match base.rsplit_once('/') {
                    Some((server, _)) => format!("{server}/{name}"),
                    None => panic!("TEST_POSTGRES_URL needs a database path"),
                };
                Self {
                    url,
                    dir,
                    pg_name: Some(name),
                }
            }
        }
    }
}

impl TestDatabase {
    /// Another handle on `other`'s database (a second replica's), with a data
    /// directory of its own; dropping it leaves the database to its owner.
    pub fn borrowed(other: &TestDatabase) -> Self {
        let dir = std::env::temp_dir().join(format!("wayfinder-test-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        Self {
            url: other.url.clone(),
            dir,
            pg_name: None,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some(name) = self.pg_name.take() {
            // Drop runs inside the test's runtime: clean up on a thread of our own.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    use sea_orm::ConnectionTrait;
                    if let Ok(admin) = sea_orm::Database::connect(postgres_admin_url()).await {
                        let _ = admin
                            .execute_unprepared(&format!(
                                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                            ))
                            .await;
                        let _ = admin.close().await;
                    }
                });
            })
            .join();
        }
    }
}

/// A running server and what tests need to talk to it.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`
    pub address: String,
    /// `ws://127.0.0.1:PORT/graphql`
    pub ws_url: String,
    /// A valid key of `org_id`.
    pub api_key: String,
    /// The org made for the test (plan PRO).
    pub org_id: Uuid,
    pub state: AppState,
    pub client: reqwest::Client,
    pub backend: Backend,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    // Declared last: dropped after the server has been told to stop.
    pub db: TestDatabase,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

static TRACING: Once = Once::new();

/// The configuration every test server starts from.
pub fn test_config(db: &TestDatabase) -> Config {
    TRACING.call_once(|| {
        if std::env::var("TEST_LOG").is_ok() {
            wayfinder::telemetry::init("text");
        }
    });
    let mut config = Config::defaults();
    config.addr = "127.0.0.1:0".parse().unwrap();
    config.database_url = Some(db.url.clone());
    config.data_dir = db.dir.clone();
    config.secret = Some("test-secret-test-secret-test-secret-0123".into());
    config.demo = false;
    config.redis_url = None;
    // `EMBEDDING_MODEL_DIR` in the environment (set by `.ci/run`) is for the
    // semantic tests, which ask for the model themselves; other servers start
    // without it, so they neither load it nor embed in the background.
    config.embedding_provider = None;
    config.embedding_model_dir = None;
    config.ws_init_timeout_ms = 500;
    config.shutdown_grace_secs = 1;
    config
}

/// A server on `backend` with default test configuration.
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

/// A server on `backend`, configuration adjusted by `tweak`.
pub async fn spawn_app_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> TestApp {
    let db = TestDatabase::create(backend).await;
    let mut config = test_config(&db);
    tweak(&mut config);
    spawn_on(db, config, backend).await
}

/// A server over an existing test database (a second replica, say).
pub async fn spawn_on(db: TestDatabase, config: Config, backend: Backend) -> TestApp {
    let app = App::build(config).await.expect("app builds");
    let addr = app.addr();
    let state = app.state();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until(async move {
        let _ = rx.await;
    }));
    let (org, _, key) = service::org::create(&state.db, "Test org", Plan::Pro, "owner@example.com")
        .await
        .unwrap();
    TestApp {
        address: format!("http://{addr}"),
        ws_url: format!("ws://{addr}/graphql"),
        api_key: key.key,
        org_id: org.id,
        state,
        client: reqwest::Client::new(),
        backend,
        shutdown: Some(tx),
        db,
    }
}

impl TestApp {
    /// Tells the server to shut down (as SIGTERM would), without dropping the test's handles.
    pub fn shut_down(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// The `/metrics` exposition as text.
    pub async fn metrics_text(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.address))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// POSTs a GraphQL operation with `key` (or none); returns the JSON answer.
    pub async fn gql_as(&self, key: Option<&str>, query: &str, variables: Value) -> Value {
        let mut req = self
            .client
            .post(format!("{}/graphql", self.address))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(k) = key {
            req = req.header("x-api-key", k);
        }
        let resp = req.send().await.unwrap();
        resp.json().await.unwrap()
    }

    /// POSTs with the test org's key.
    pub async fn gql(&self, query: &str, variables: Value) -> Value {
        self.gql_as(Some(&self.api_key), query, variables).await
    }

    /// POSTs with the test org's key and fails the test on any GraphQL error.
    pub async fn gql_ok(&self, query: &str, variables: Value) -> Value {
        let v = self.gql(query, variables).await;
        assert!(v.get("errors").is_none(), "unexpected errors: {v}");
        v["data"].clone()
    }

    /// Grants the test org `amount` credits, as the operator does (org keys cannot).
    pub async fn grant_credits(&self, amount: i64) {
        service::credits::grant(&self.state.db, self.org_id, amount, None)
            .await
            .unwrap();
    }

    /// A fresh operator key (`wf_op_…`).
    pub async fn operator_key(&self) -> String {
        service::operator_key::create(&self.state.db, "test")
            .await
            .unwrap()
            .1
            .key
    }

    /// Another org with its own key.
    pub async fn create_org(&self, plan: Plan) -> (Uuid, String) {
        let (org, _, key) =
            service::org::create(&self.state.db, "Other org", plan, "other@example.com")
                .await
                .unwrap();
        (org.id, key.key)
    }
}

/// The `code` extension of the first error of a GraphQL answer.
pub fn error_code(v: &Value) -> Option<&str> {
    v["errors"][0]["extensions"]["code"].as_str()
}

/// A minimal graphql-transport-ws client for tests.
pub struct WsClient {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl WsClient {
    /// Connects and initialises with `payload` (e.g. `{"apiKey": …}`, or `{}` for a public connection).
    pub async fn connect(url: &str, payload: Value) -> Self {
        use futures_util::SinkExt;
        use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};
        let mut req = url.into_client_request().unwrap();
        req.headers_mut().insert(
            "sec-websocket-protocol",
            "graphql-transport-ws".parse().unwrap(),
        );
        // Small buffers (they grow for a larger message), as the server's:
        // tungstenite's defaults are 128 KiB each, which would make the
        // clients' memory hide the server's in the memory test.
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0);
        let (mut ws, _) = tokio_tungstenite::connect_async_with_config(req, Some(config), true)
            .await
            .unwrap();
        ws.send(Message::text(
            json!({ "type": "connection_init", "payload": payload }).to_string(),
        ))
        .await
        .unwrap();
        let mut client = Self { ws };
        let ack = client
            .next(std::time::Duration::from_secs(5))
            .await
            .expect("connection_ack");
        assert_eq!(ack["type"], "connection_ack", "{ack}");
        client
    }

    /// Starts operation `id`.
    pub async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        use futures_util::SinkExt;
        use tokio_tungstenite::tungstenite::Message;
        let msg = json!({ "type": "subscribe", "id": id, "payload": { "query": query, "variables": variables } });
        self.ws.send(Message::text(msg.to_string())).await.unwrap();
    }

    /// Sends any protocol message.
    pub async fn send_raw(&mut self, message: Value) {
        use futures_util::SinkExt;
        use tokio_tungstenite::tungstenite::Message;
        self.ws
            .send(Message::text(message.to_string()))
            .await
            .unwrap();
    }

    /// The next protocol message (pings answered), or `None` after `wait`.
    pub async fn next(&mut self, wait: std::time::Duration) -> Option<Value> {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let msg = tokio::time::timeout(left, self.ws.next())
                .await
                .ok()??
                .ok()?;
            if let Message::Text(t) = msg {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "ping" {
                    self.ws
                        .send(Message::text(json!({ "type": "pong" }).to_string()))
                        .await
                        .unwrap();
                    continue;
                }
                return Some(v);
            }
        }
    }

    /// Every `next` payload of operation `id` until its `complete` (fails on `error` or timeout).
    pub async fn collect(&mut self, id: &str, wait: std::time::Duration) -> Vec<Value> {
        let mut out = vec![];
        loop {
            let msg = self
                .next(wait)
                .await
                .unwrap_or_else(|| panic!("timed out; got so far {out:?}"));
            if msg["id"] != id {
                continue;
            }
            match msg["type"].as_str() {
                Some("next") => out.push(msg["payload"].clone()),
                Some("complete") => return out,
                _ => panic!("unexpected {msg}"),
            }
        }
    }
}
