//! Conformance of `/graphql` to the `graphql-transport-ws` protocol, over raw
//! sockets so every frame and close code is checked exactly.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream, connect_async,
    tungstenite::{
        Message,
        client::IntoClientRequest,
        http::{HeaderValue, header::SEC_WEBSOCKET_PROTOCOL},
    },
};

use crate::helpers::{Backend, TestApp, spawn_app};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Longest wait for any one frame; no test can hang longer than this per step.
const RECV_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to listen to conclude that nothing (more) is coming.
const QUIET: Duration = Duration::from_millis(500);
/// The server's default `WAYFINDER_WS_MAX_SUBSCRIPTIONS`.
const MAX_SUBSCRIPTIONS: usize = 32;

const ORG_EVENTS: &str = "subscription { orgEvents { id kind } }";

fn ok<T, E: std::fmt::Debug>(result: Result<T, E>, what: &str) -> T {
    match result {
        Ok(value) => value,
        Err(err) => panic!("{what}: {err:?}"),
    }
}

/// Opens a socket offering `protocol` (none when `None`).
async fn open(app: &TestApp, protocol: Option<&'static str>) -> Ws {
    let mut request = ok(app.ws_url.as_str().into_client_request(), "ws request");
    if let Some(protocol) = protocol {
        request
            .headers_mut()
            .insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(protocol));
    }
    let connecting = tokio::time::timeout(RECV_TIMEOUT, connect_async(request));
    let (ws, response) = ok(ok(connecting.await, "connect timed out"), "connect");
    if protocol == Some("graphql-transport-ws") {
        assert_eq!(
            response
                .headers()
                .get(SEC_WEBSOCKET_PROTOCOL)
                .and_then(|v| v.to_str().ok()),
            Some("graphql-transport-ws"),
            "server did not select the subprotocol"
        );
    }
    ws
}

/// A socket speaking `graphql-transport-ws`, not yet initialised.
async fn connect(app: &TestApp) -> Ws {
    open(app, Some("graphql-transport-ws")).await
}

async fn send(ws: &mut Ws, message: Value) {
    ok(
        ws.send(Message::text(message.to_string())).await,
        "send message",
    );
}

async fn send_raw(ws: &mut Ws, text: &str) {
    ok(ws.send(Message::text(text.to_string())).await, "send text");
}

/// The next protocol message, skipping transport-level ping/pong frames.
async fn try_recv(ws: &mut Ws, wait: Duration) -> Option<Value> {
    loop {
        let frame = match tokio::time::timeout(wait, ws.next()).await {
            Err(_) => return None,
            Ok(frame) => frame,
        };
        match frame {
            Some(Ok(Message::Text(text))) => {
                return Some(ok(
                    serde_json::from_str(text.as_str()),
                    "server sent invalid JSON",
                ));
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Close(frame))) => panic!("socket closed unexpectedly: {frame:?}"),
            other => panic!("unexpected frame: {other:?}"),
        }
    }
}

async fn recv(ws: &mut Ws) -> Value {
    match try_recv(ws, RECV_TIMEOUT).await {
        Some(message) => message,
        None => panic!("no message within {RECV_TIMEOUT:?}"),
    }
}

/// Waits for the server's close frame and returns its code and reason.
async fn closed(ws: &mut Ws) -> (u16, String) {
    loop {
        let frame = match tokio::time::timeout(RECV_TIMEOUT, ws.next()).await {
            Err(_) => panic!("socket not closed within {RECV_TIMEOUT:?}"),
            Ok(frame) => frame,
        };
        match frame {
            Some(Ok(Message::Close(Some(frame)))) => {
                return (u16::from(frame.code), frame.reason.as_str().to_string());
            }
            Some(Ok(Message::Close(None))) => panic!("closed without a code"),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Text(text))) => panic!("expected a close, got message {text}"),
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

async fn assert_closed_with(ws: &mut Ws, code: u16) -> String {
    let (got, reason) = closed(ws).await;
    assert_eq!(got, code, "close code (reason: {reason:?})");
    reason
}

/// Sends `connection_init` with `payload` and expects the ack.
async fn init(ws: &mut Ws, payload: Option<Value>) {
    let message = match payload {
        Some(payload) => json!({ "type": "connection_init", "payload": payload }),
        None => json!({ "type": "connection_init" }),
    };
    send(ws, message).await;
    let ack = recv(ws).await;
    assert_eq!(ack, json!({ "type": "connection_ack" }));
}

/// A socket acknowledged with the app's API key.
async fn connect_org(app: &TestApp) -> Ws {
    let mut ws = connect(app).await;
    init(&mut ws, Some(json!({ "apiKey": app.api_key }))).await;
    ws
}

async fn subscribe(ws: &mut Ws, id: &str, query: &str) {
    send(
        ws,
        json!({ "type": "subscribe", "id": id, "payload": { "query": query } }),
    )
    .await;
}

/// Ping, then everything received before the pong. Since the server handles
/// messages in order, this also proves it processed what was sent before.
async fn round_trip(ws: &mut Ws) -> Vec<Value> {
    send(ws, json!({ "type": "ping" })).await;
    let mut before = Vec::new();
    loop {
        let message = recv(ws).await;
        if message["type"] == "pong" {
            return before;
        }
        before.push(message);
    }
}

/// Creates a knowledge base over HTTP, which emits `knowledge_base.created`.
async fn create_knowledge_base(app: &TestApp) {
    let response = ok(
        reqwest::Client::new()
            .post(format!("{}/graphql", app.address))
            .header("x-api-key", &app.api_key)
            .json(&json!({
                "query": r#"mutation { createKnowledgeBase(input: {name: "x"}) { id } }"#
            }))
            .timeout(RECV_TIMEOUT)
            .send()
            .await,
        "POST /graphql",
    );
    assert!(
        response.status().is_success(),
        "status {}",
        response.status()
    );
    let body: Value = ok(response.json().await, "mutation response");
    assert!(body.get("errors").is_none(), "mutation failed: {body}");
    assert!(
        body["data"]["createKnowledgeBase"]["id"].is_string(),
        "{body}"
    );
}

/// Creates knowledge bases until subscription `id` reports one. Retrying
/// covers the moment between `subscribe` and the bus subscription being live.
async fn next_event(app: &TestApp, ws: &mut Ws, id: &str) -> Value {
    for _ in 0..10 {
        create_knowledge_base(app).await;
        if let Some(message) = try_recv(ws, QUIET).await {
            assert_eq!(
                message["id"], id,
                "message for another operation: {message}"
            );
            assert_eq!(message["type"], "next", "{message}");
            return message;
        }
    }
    panic!("subscription {id} received no event");
}

#[tokio::test]
async fn valid_api_key_is_acknowledged() {
    let app = spawn_app(Backend::Sqlite).await;
    let mut ws = connect(&app).await;
    init(&mut ws, Some(json!({ "apiKey": app.api_key }))).await;
}

#[tokio::test]
async fn wrong_api_key_closes_4403() {
    let app = spawn_app(Backend::Sqlite).await;
    let mut ws = connect(&app).await;
    send(
        &mut ws,
        json!({ "type": "connection_init", "payload": { "apiKey": "wf_not_a_real_key" } }),
    )
    .await;
    let reason = assert_closed_with(&mut ws, 4403).await;
    assert_eq!(reason, "Forbidden");
}

#[tokio::test]
async fn public_init_without_payload_is_acknowledged() {
    let app = spawn_app(Backend::Sqlite).await;
    let mut ws = connect(&app).await;
    init(&mut ws, None).await;
    let mut ws = connect(&app).await;
    init(&mut ws, Some(json!({ "sessionToken": "anything" }))).await;
}

#[tokio::test]
async fn missing_subprotocol_closes_4406() {
    let app = spawn_app(Backend::Sqlite).await;
    let mut ws = open(&app, None).await;
    let reason = assert_closed_with(&mut ws, 4406).await;
    assert_eq!(reason, "Subprotocol not acceptable");
}

#[tokio::test]
async fn subscribe_before_init_closes_4401() {
    let app = spawn_app(Backend::Sqlite).await;
    let mut ws = connect(&app).await;
    subscribe(&mut ws, "1", "{ __typename }").await;
    let reason = assert_closed_with(&mut ws, 4401).await;
    assert_eq!(reason, "Unauthorized");
}

#[tokio::test]
async fn no_init_closes_4408() {
    let app = spawn_app(Backend::Sqlite).await;
    let mut ws = connect(&app).await;
    let reason = assert_closed_with(&mut ws, 4408).await;
    assert_eq!(reason, "Connection initialisation timeout");
}

#[tokio::test]
async fn init_cancels_the_timeout() {
    let app = spawn_app(Backend::Sqlite).await;
    let mut ws = connect(&app).await;
    init(&mut ws, None).await;
    // Well past the 500 ms test timeout, the socket still answers.
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(round_trip(&mut ws).await.is_empty());
}

#[tokio::test]
async fn second_init_closes_4429() {
    let app = spawn_app(Backend::Sqlite).await;
    let mut ws = connect(&app).await;
    init(&mut ws, None).await;
    send(&mut ws, json!({ "type": "connection_init" })).await;
    let reason = assert_closed_with(&mut ws, 4429).await;
    assert_eq!(reason, "Too many initialisation requests");
}

#[tokio::test]
async fn duplicate_active_id_closes_4409() {
    let app = spawn_app(Backend::Sqlite).await;
    let mut ws = connect_org(&app).await;
    subscribe(&mut ws, "dup", ORG_EVENTS).await;
    assert!(round_trip(&mut ws).await.is_empty());
    subscribe(&mut ws, "dup", ORG_EVENTS).await;
    let reason = assert_closed_with(&mut ws, 4409).await;
    assert_eq!(reason, "Subscriber for dup already exists");
}

#[tokio::test]
async fn invalid_json_closes_4400() {
    let app = spawn_app(Backend::Sqlite).await;
    let mut ws = connect(&app).await;
    send_raw(&mut ws, "{not json").await;
    let reason = assert_closed_with(&mut ws, 4400).await;
    assert!(!reason.is_empty());
}

#[tokio::test]
async fn unknown_type_closes_4400() {
    let app = spawn_app(Backend::Sqlite).await;
    let mut ws = connect(&app).await;
    init(&mut ws, None).await;
    send(&mut ws, json!({ "type": "start", "id": "1" })).await;
    let reason = assert_closed_with(&mut ws, 4400).await;
    assert!(reason.contains("start"), "reason {reason:?}");
}

#[tokio::test]
async fn server_message_type_from_client_closes_4400() {
    let app = spawn_app(Backend::Sqlite).await;
    let mut ws = connect(&app).await;
    init(&mut ws, None).await;
    send(
        &mut ws,
        json!({ "type": "next", "id": "1", "payload": { "data": null } }),
    )
    .await;
    assert_closed_with(&mut ws, 4400).await;
}

#[tokio::test]
async fn subscribe_without_query_closes_4400() {
    let app = spawn_app(Backend::Sqlite).await;
    let mut ws = connect(&app).await;
    init(&mut ws, None).await;
    send(
        &mut ws,
        json!({ "type": "subscribe", "id": "1", "payload": { "variables": {} } }),
    )
    .await;
    let reason = assert_closed_with(&mut ws, 4400).await;
    assert!(reason.contains("query"), "reason {reason:?}");
}

#[tokio::test]
async fn binary_frames_are_json_too() {
    let app = spawn_app(Backend::Sqlite).await;
    let mut ws = connect(&app).await;
    let init = json!({ "type": "connection_init" }).to_string();
    ok(
        ws.send(Message::binary(init.into_bytes())).await,
        "send binary",
    );
    assert_eq!(recv(&mut ws).await, json!({ "type": "connection_ack" }));
    ok(
        ws.send(Message::binary(vec![0xff_u8, 0xfe, 0x7b])).await,
        "send binary",
    );
    assert_closed_with(&mut ws, 4400).await;
}

#[tokio::test]
async fn oversized_message_closes_1009() {
    let app = spawn_app(Backend::Sqlite).await;
    let mut ws = connect(&app).await;
    init(&mut ws, None).await;
    // Twice the default 256 KiB body limit.
    let query = format!("{{ __typename }} #{}", "x".repeat(512 * 1024));
    subscribe(&mut ws, "big", &query).await;
    assert_closed_with(&mut ws, 1009).await;
}

#[tokio::test]
async fn ping_gets_pong_before_and_after_init() {
    let app = spawn_app(Backend::Sqlite).await;
    let mut ws = connect(&app).await;
    send(&mut ws, json!({ "type": "ping" })).await;
    assert_eq!(recv(&mut ws).await["type"], "pong");
    init(&mut ws, None).await;
    send(&mut ws, json!({ "type": "ping", "payload": { "n": 1 } })).await;
    let pong = recv(&mut ws).await;
    assert_eq!(pong["type"], "pong");
    // A client's pong is ignored; so is completing an unknown operation.
    send(&mut ws, json!({ "type": "pong" })).await;
    send(
        &mut ws,
        json!({ "type": "complete", "id": "never-started" }),
    )
    .await;
    assert!(round_trip(&mut ws).await.is_empty());
}

#[tokio::test]
async fn query_gives_next_then_complete() {
    let app = spawn_app(Backend::Sqlite).await;
    let mut ws = connect_org(&app).await;
    subscribe(&mut ws, "q1", "{ org { id name } }").await;
    let next = recv(&mut ws).await;
    assert_eq!(next["type"], "next", "{next}");
    assert_eq!(next["id"], "q1");
    assert!(next["payload"].get("errors").is_none(), "{next}");
    assert_eq!(next["payload"]["data"]["org"]["id"], app.org_id.to_string());
    assert!(next["payload"]["data"]["org"]["name"].is_string(), "{next}");
    assert_eq!(
        recv(&mut ws).await,
        json!({ "type": "complete", "id": "q1" })
    );
    // A finished operation frees its id.
    subscribe(&mut ws, "q1", "{ org { id } }").await;
    assert_eq!(recv(&mut ws).await["type"], "next");
    assert_eq!(
        recv(&mut ws).await,
        json!({ "type": "complete", "id": "q1" })
    );
}

#[tokio::test]
async fn syntax_error_gives_error_and_no_complete() {
    let app = spawn_app(Backend::Sqlite).await;
    let mut ws = connect_org(&app).await;
    subscribe(&mut ws, "bad", "{ org { id ").await;
    let error = recv(&mut ws).await;
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["id"], "bad");
    let errors = error["payload"].as_array().cloned().unwrap_or_default();
    assert!(!errors.is_empty(), "{error}");
    assert!(errors[0]["message"].is_string(), "{error}");
    let later = round_trip(&mut ws).await;
    assert!(later.is_empty(), "sent after the error: {later:?}");
    // A validation error is reported the same way, and frees the id.
    subscribe(&mut ws, "bad", "{ noSuchField }").await;
    let error = recv(&mut ws).await;
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["id"], "bad");
    assert!(error["payload"][0]["message"].is_string(), "{error}");
    let later = round_trip(&mut ws).await;
    assert!(later.is_empty(), "sent after the error: {later:?}");
}

#[tokio::test]
async fn client_complete_stops_subscription_and_frees_id() {
    let app = spawn_app(Backend::Sqlite).await;
    let mut ws = connect_org(&app).await;
    subscribe(&mut ws, "live", ORG_EVENTS).await;
    next_event(&app, &mut ws, "live").await;
    send(&mut ws, json!({ "type": "complete", "id": "live" })).await;
    // Events from retried mutations may still have been on their way.
    for message in round_trip(&mut ws).await {
        assert_eq!(message["type"], "next", "{message}");
    }
    create_knowledge_base(&app).await;
    assert_eq!(
        try_recv(&mut ws, QUIET * 2).await,
        None,
        "an event arrived after complete"
    );
    // The id is free again.
    subscribe(&mut ws, "live", ORG_EVENTS).await;
    let next = next_event(&app, &mut ws, "live").await;
    assert_eq!(
        next["payload"]["data"]["orgEvents"]["kind"],
        "knowledge_base.created"
    );
}

#[tokio::test]
async fn subscriptions_over_the_cap_get_an_error() {
    let app = spawn_app(Backend::Sqlite).await;
    let mut ws = connect_org(&app).await;
    for n in 0..MAX_SUBSCRIPTIONS {
        subscribe(&mut ws, &format!("s{n}"), ORG_EVENTS).await;
    }
    assert!(round_trip(&mut ws).await.is_empty());
    subscribe(&mut ws, "one-too-many", ORG_EVENTS).await;
    let error = recv(&mut ws).await;
    assert_eq!(
        error,
        json!({
            "type": "error",
            "id": "one-too-many",
            "payload": [{
                "message": format!("too many active subscriptions on this connection (at most {MAX_SUBSCRIPTIONS})"),
                "extensions": { "code": "BAD_REQUEST" }
            }]
        })
    );
    // Freeing one makes room again.
    send(&mut ws, json!({ "type": "complete", "id": "s0" })).await;
    subscribe(&mut ws, "room", ORG_EVENTS).await;
    assert!(round_trip(&mut ws).await.is_empty());
}

#[tokio::test]
async fn public_caller_gets_unauthenticated_for_org_query() {
    let app = spawn_app(Backend::Sqlite).await;
    let mut ws = connect(&app).await;
    init(&mut ws, None).await;
    subscribe(&mut ws, "p", "{ org { id } }").await;
    let next = recv(&mut ws).await;
    assert_eq!(next["type"], "next", "{next}");
    assert_eq!(next["id"], "p");
    assert_eq!(
        next["payload"]["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{next}"
    );
    assert_eq!(
        recv(&mut ws).await,
        json!({ "type": "complete", "id": "p" })
    );
}

#[tokio::test]
async fn org_events_receive_knowledge_base_created() {
    let app = spawn_app(Backend::Sqlite).await;
    let mut ws = connect_org(&app).await;
    subscribe(&mut ws, "events", ORG_EVENTS).await;
    let next = next_event(&app, &mut ws, "events").await;
    let event = &next["payload"]["data"]["orgEvents"];
    assert_eq!(event["kind"], "knowledge_base.created", "{next}");
    assert!(event["id"].is_string(), "{next}");
}

#[tokio::test]
async fn each_event_is_resolved_with_the_whole_subscribe_message() {
    // The socket resolves every event by executing the operation again: the
    // operation picked by name, its variables, the alias and the fragments
    // must all carry over to each event, and a later event too.
    let app = spawn_app(Backend::Sqlite).await;
    let mut ws = connect_org(&app).await;
    let query = r#"
        query Other { org { id } }
        subscription Watch($kinds: [String!]) {
            watched: orgEvents(kinds: $kinds) { ...Parts }
        }
        fragment Parts on OrgEvent { type: __typename kind id }
    "#;
    send(
        &mut ws,
        json!({ "type": "subscribe", "id": "w", "payload": {
            "query": query,
            "operationName": "Watch",
            "variables": { "kinds": ["knowledge_base.created"] },
        } }),
    )
    .await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let next = next_event(&app, &mut ws, "w").await;
        let event = &next["payload"]["data"]["watched"];
        assert_eq!(event["type"], "OrgEvent", "{next}");
        assert_eq!(event["kind"], "knowledge_base.created", "{next}");
        assert!(next["payload"].get("errors").is_none(), "{next}");
        ids.push(event["id"].as_str().unwrap_or_default().to_owned());
    }
    assert_ne!(ids[0], ids[1], "two events, not one twice");

    // A kind outside the variable's list is not delivered: the next event
    // seen is the knowledge base created after the bot.
    app.gql_ok(
        r#"mutation { createBot(input: {name: "b"}) { id } }"#,
        json!({}),
    )
    .await;
    let next = next_event(&app, &mut ws, "w").await;
    let event = &next["payload"]["data"]["watched"];
    assert_eq!(event["kind"], "knowledge_base.created", "{next}");
}

#[tokio::test]
async fn postgres_smoke() {
    let app = spawn_app(Backend::Postgres).await;
    let mut ws = connect_org(&app).await;
    subscribe(&mut ws, "pg", "{ org { id } }").await;
    let next = recv(&mut ws).await;
    assert_eq!(next["type"], "next", "{next}");
    assert_eq!(next["payload"]["data"]["org"]["id"], app.org_id.to_string());
    assert_eq!(
        recv(&mut ws).await,
        json!({ "type": "complete", "id": "pg" })
    );
}

#[tokio::test]
async fn sockets_over_the_per_address_cap_are_refused_with_429() {
    // Arrange: at most two sockets per address.
    let app =
        crate::helpers::spawn_app_with(Backend::Sqlite, |c| c.ws_max_sockets_per_ip = 2).await;
    let mut first = connect(&app).await;
    init(&mut first, None).await;
    let mut second = connect(&app).await;
    init(&mut second, None).await;

    // Act: a third upgrade from the same address.
    let mut request = ok(app.ws_url.as_str().into_client_request(), "ws request");
    request.headers_mut().insert(
        SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static("graphql-transport-ws"),
    );
    let refused = tokio::time::timeout(RECV_TIMEOUT, connect_async(request)).await;

    // Assert: refused before the upgrade, saying why.
    let Ok(Err(tokio_tungstenite::tungstenite::Error::Http(response))) = refused else {
        panic!("a third socket was not refused: {refused:?}");
    };
    assert_eq!(response.status(), 429);
    let body: Value = serde_json::from_slice(response.body().as_deref().unwrap_or_default())
        .unwrap_or(Value::Null);
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "TOO_MANY_SOCKETS",
        "{body}"
    );
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("at most 2")),
        "{body}"
    );

    // The sockets held still work, and a closed one frees its place.
    let _ = round_trip(&mut first).await;
    ok(second.close(None).await, "close");
    let mut freed = None;
    for _ in 0..50 {
        let mut request = ok(app.ws_url.as_str().into_client_request(), "ws request");
        request.headers_mut().insert(
            SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("graphql-transport-ws"),
        );
        if let Ok((ws, _)) = connect_async(request).await {
            freed = Some(ws);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut third = freed.expect("a place freed by the closed socket");
    init(&mut third, None).await;
}

#[tokio::test]
async fn closed_sockets_leave_nothing_behind() {
    // Arrange: sockets, each with a subscription.
    let app = spawn_app(Backend::Sqlite).await;
    let local = std::net::IpAddr::from([127, 0, 0, 1]);
    let mut sockets = Vec::new();
    for _ in 0..20 {
        let mut ws = connect_org(&app).await;
        subscribe(&mut ws, "1", ORG_EVENTS).await;
        let _ = round_trip(&mut ws).await;
        sockets.push(ws);
    }
    assert_eq!(app.state.sockets_per_ip.open_from(local), 20);
    assert_eq!(app.state.bus.local_topics(), 1, "one org topic, shared");

    // Act
    for mut ws in sockets {
        ok(ws.close(None).await, "close");
    }

    // Assert: no socket counted, no topic followed.
    for _ in 0..50 {
        if app.state.sockets_per_ip.open_from(local) == 0 && app.state.bus.local_topics() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "left behind: {} sockets counted, {} topics",
        app.state.sockets_per_ip.open_from(local),
        app.state.bus.local_topics()
    );
}
