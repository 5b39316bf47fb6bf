//! Operations: health and readiness, GraphiQL, the embedded demo, graceful
//! shutdown, and fan-out across replicas through Redis.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

use crate::helpers::*;

#[tokio::test]
async fn health_readiness_and_graphiql() {
    let app = spawn_app(Backend::Sqlite).await;
    // Every response carries a request id: a UUID, a new one per request,
    // and the client's own when it sent one.
    let healthz = |sent: Option<&'static str>| {
        let mut req = app.client.get(format!("{}/healthz", app.address));
        if let Some(id) = sent {
            req = req.header("x-request-id", id);
        }
        async move {
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 200);
            let v = r.headers()["x-request-id"].to_str().unwrap().to_string();
            uuid::Uuid::parse_str(&v).unwrap_or_else(|e| panic!("{v}: {e}"));
            v
        }
    };
    let first = healthz(None).await;
    assert_ne!(healthz(None).await, first, "each request gets its own id");
    let theirs = "0b7c6a7e-5d1f-4c39-9a57-2f4e8d3c1b20";
    assert_eq!(healthz(Some(theirs)).await, theirs);
    let r: Value = app
        .client
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        r,
        json!({ "status": "ready", "database": "ok", "redis": "not configured" })
    );
    let page = app
        .client
        .get(format!("{}/graphql", app.address))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.text()
            .await
            .unwrap()
            .to_lowercase()
            .contains("graphiql")
    );
}

#[tokio::test]
async fn readiness_reports_a_broken_database() {
    let app = spawn_app(Backend::Sqlite).await;
    app.state.db.clone().close().await.unwrap();
    let r = app
        .client
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let h = app
        .client
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(h.status(), 200);
}

#[tokio::test]
async fn embedded_defaults_seed_a_working_demo_once() {
    let db = TestDatabase::create(Backend::Sqlite).await;
    let mut config = test_config(&db);
    config.database_url = None; // the embedded SQLite file in the data directory
    config.secret = None; // generated and kept in the data directory
    config.demo = true;
    let app = wayfinder::startup::App::build(config.clone())
        .await
        .unwrap();
    let demo = app.demo.as_ref().expect("demo seeded on an empty database");
    let (key, widget) = (demo.api_key.clone(), demo.widget_id);
    let addr = app.addr();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = rx.await;
    }));
    assert!(db.dir.join("wayfinder.db").exists());
    let secret = std::fs::read_to_string(db.dir.join("secret.key")).unwrap();
    assert!(secret.trim().len() >= 32);

    let client = reqwest::Client::new();
    let r: Value = client.post(format!("http://{addr}/graphql")).header("x-api-key", &key)
        .json(&json!({ "query": "{ org { plan creditBalance } bots { nodes { name knowledgeBaseIds } } kbArticles { nodes { title } } chatWidgets { nodes { id } } }" }))
        .send().await.unwrap().json().await.unwrap();
    assert_eq!(r["data"]["org"]["plan"], "PRO");
    assert!(r["data"]["org"]["creditBalance"].as_i64().unwrap() > 0);
    assert_eq!(
        r["data"]["bots"]["nodes"][0]["knowledgeBaseIds"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert!(r["data"]["kbArticles"]["nodes"].as_array().unwrap().len() >= 5);
    assert_eq!(
        r["data"]["chatWidgets"]["nodes"][0]["id"],
        widget.to_string()
    );
    let cfg: Value = client.post(format!("http://{addr}/graphql"))
        .json(&json!({ "query": format!("{{ widgetConfig(widgetId: \"{widget}\") {{ personaName }} }}") }))
        .send().await.unwrap().json().await.unwrap();
    assert_eq!(
        cfg["data"]["widgetConfig"]["personaName"],
        "Wayfinder Guide"
    );
    tx.send(()).unwrap();
    server.await.unwrap().unwrap();

    // A second start keeps the data and the secret, and seeds nothing.
    let mut again = config;
    again.addr = "127.0.0.1:0".parse().unwrap();
    let app2 = wayfinder::startup::App::build(again).await.unwrap();
    assert!(app2.demo.is_none());
    assert_eq!(
        std::fs::read_to_string(db.dir.join("secret.key")).unwrap(),
        secret
    );
}

#[tokio::test]
async fn shutdown_stops_serving() {
    let app = spawn_app(Backend::Sqlite).await;
    let url = format!("{}/healthz", app.address);
    assert_eq!(app.client.get(&url).send().await.unwrap().status(), 200);
    let address = app.address.clone();
    drop(app);
    let mut stopped = false;
    for _ in 0..50 {
        if reqwest::Client::new()
            .get(format!("{address}/healthz"))
            .send()
            .await
            .is_err()
        {
            stopped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(stopped, "server still answers after shutdown");
}

async fn ws_subscribe(
    url: &str,
    key: &str,
    query: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    ws.send(Message::text(
        json!({ "type": "connection_init", "payload": { "apiKey": key } }).to_string(),
    ))
    .await
    .unwrap();
    let ack = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(ack.to_text().unwrap().contains("connection_ack"));
    ws.send(Message::text(
        json!({ "type": "subscribe", "id": "1", "payload": { "query": query } }).to_string(),
    ))
    .await
    .unwrap();
    ws
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn org_events_fan_out_across_replicas_through_redis() {
    let prefix = format!("wftest:{}:", uuid::Uuid::new_v4().simple());
    let db = TestDatabase::create(Backend::Postgres).await;
    let mut config = test_config(&db);
    config.redis_url = Some(redis_url());
    config.redis_prefix = prefix.clone();
    let replica_a = spawn_on(db, config.clone(), Backend::Postgres).await;
    // Replica B shares A's database and Redis.
    let mut config_b = config;
    config_b.addr = "127.0.0.1:0".parse().unwrap();
    let app_b = wayfinder::startup::App::build(config_b).await.unwrap();
    let addr_b = app_b.addr();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app_b.run_until(async move {
        let _ = rx.await;
    }));

    let r: Value = reqwest::Client::new()
        .get(format!("http://{addr_b}/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["redis"], "ok");

    // Subscribed on B, the change happens on A.
    let mut ws = ws_subscribe(
        &format!("ws://{addr_b}/graphql"),
        &replica_a.api_key,
        "subscription { orgEvents { kind payload } }",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let kb = replica_a
        .gql_ok(
            r#"mutation { createKnowledgeBase(input: {name: "fan-out"}) { id } }"#,
            json!({}),
        )
        .await;
    let next = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("event crosses replicas")
        .unwrap()
        .unwrap();
    let msg: Value = serde_json::from_str(next.to_text().unwrap()).unwrap();
    assert_eq!(msg["type"], "next");
    assert_eq!(
        msg["payload"]["data"]["orgEvents"]["kind"],
        "knowledge_base.created"
    );
    assert_eq!(
        msg["payload"]["data"]["orgEvents"]["payload"]["id"],
        kb["createKnowledgeBase"]["id"]
    );
    let _ = tx.send(());
}
