//! Limits that count what a request really does: root fields, batch entries,
//! websocket `subscribe`s and REST calls each take one unit from the caller's
//! budget (client IP, chat widget, API key); public callers run only small
//! operations; sockets are bounded (keep-alive, write deadline, idle timeout,
//! goodbye on shutdown) and a revoked key closes its sockets and is refused on every replica.

use std::time::Duration;

use entity::chat_message;
use futures_util::{SinkExt, StreamExt};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

use crate::{chat_turn::ARTICLES, chat_turn::widget_with_kb, helpers::*, on_both_databases};

on_both_databases!(a_revoked_key_stops_working_on_every_replica);

const START: &str = "mutation($i: TurnInput!) { startTurn(input: $i) { turnId sessionToken } }";

/// Visitor messages stored (one per started turn).
async fn messages(app: &TestApp) -> u64 {
    chat_message::Entity::find()
        .filter(chat_message::Column::Role.eq("user"))
        .count(&app.state.db)
        .await
        .unwrap()
}

async fn post(app: &TestApp, body: Value, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = app
        .client
        .post(format!("{}/graphql", app.address))
        .json(&body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn aliased_public_mutations_and_wide_queries_are_refused_before_they_run() {
    let app = spawn_app(Backend::Sqlite).await;
    let (widget, _, _) = widget_with_kb(&app, ARTICLES).await;
    let aliases: String = (0..200)
        .map(|i| {
            format!(
                "a{i}: startTurn(input: {{widgetId: \"{widget}\", message: \"hi\"}}) {{ turnId }} "
            )
        })
        .collect();
    let r = post(
        &app,
        json!({ "query": format!("mutation {{ {aliases} }}") }),
        &[],
    )
    .await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(error_code(&v), Some("BAD_REQUEST"), "{v}");
    assert!(v.get("data").is_none(), "{v}");
    assert_eq!(messages(&app).await, 0, "no turn may start");

    // One field is fine, and runs.
    let r = post(&app, json!({ "query": START, "variables": { "i": { "widgetId": widget, "message": "reset password" } } }), &[]).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(v["data"]["startTurn"]["turnId"].is_string(), "{v}");

    // Public queries are small; fragments and aliases count by response key.
    let wide = "query { a: __schema { queryType { name } } b: __schema { queryType { name } } ...F } fragment F on Query { c: __schema { queryType { name } } d: __schema { queryType { name } } }";
    let r = post(&app, json!({ "query": wide }), &[]).await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        error_code(&r.json::<Value>().await.unwrap()),
        Some("BAD_REQUEST")
    );
    // The same with an API key runs.
    let v = app.gql(wide, json!({})).await;
    assert!(v.get("errors").is_none(), "{v}");
    assert_eq!(v["data"]["d"]["queryType"]["name"], "Query");
}

#[tokio::test]
async fn every_alias_and_batch_entry_counts_against_the_public_rate() {
    let app = spawn_app_with(Backend::Sqlite, |c| c.public_rate_limit = 5).await;
    let (widget, _, _) = widget_with_kb(&app, ARTICLES).await;
    let entry = json!({ "query": START, "variables": { "i": { "widgetId": widget, "message": "reset password" } } });
    // A batch of ten one-field operations is ten units: over a budget of five, refused whole.
    let r = post(&app, Value::Array(vec![entry.clone(); 10]), &[]).await;
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    let v: Value = r.json().await.unwrap();
    assert_eq!(error_code(&v), Some("RATE_LIMITED"), "{v}");
    assert_eq!(v["errors"][0]["extensions"]["retryAfter"], json!(retry));
    assert_eq!(messages(&app).await, 0, "a refused batch runs nothing");

    // Three, then three more: the second batch no longer fits.
    let r = post(&app, Value::Array(vec![entry.clone(); 3]), &[]).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v.as_array().unwrap().len(), 3, "{v}");
    assert!(v[2]["data"]["startTurn"]["turnId"].is_string(), "{v}");
    let r = post(&app, Value::Array(vec![entry.clone(); 3]), &[]).await;
    assert_eq!(r.status(), 429);
    // Aliased queries count one by one too: three root fields (typename is free)
    // no longer fit in the two units left.
    let none = "00000000-0000-0000-0000-000000000000";
    let q = format!(
        "{{ t: __typename a: widgetConfig(widgetId: \"{none}\") {{ greeting }} b: widgetConfig(widgetId: \"{none}\") {{ greeting }} c: widgetConfig(widgetId: \"{none}\") {{ greeting }} }}"
    );
    let r = post(&app, json!({ "query": q }), &[]).await;
    assert_eq!(r.status(), 429);
}

#[tokio::test]
async fn api_keys_have_a_budget_of_their_own() {
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.api_key_rate_limit = 4;
        c.public_rate_limit = 2;
    })
    .await;
    let body = json!({ "query": "{ org { name } }" });
    for i in 0..4 {
        let r = post(&app, body.clone(), &[("x-api-key", &app.api_key)]).await;
        assert_eq!(r.status(), 200, "request {i}");
    }
    let r = post(&app, body.clone(), &[("x-api-key", &app.api_key)]).await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    // Another key of the same org is another budget; public callers have theirs.
    let (_, other) = app.create_org(wayfinder::domain::Plan::Pro).await;
    let r = post(&app, body.clone(), &[("x-api-key", &other)]).await;
    assert_eq!(r.status(), 200);
    let r = post(&app, json!({ "query": "{ __typename }" }), &[]).await;
    assert_eq!(r.status(), 200);

    // Wrong keys cost the client's address: guessing is limited like the rest.
    let r = post(&app, body.clone(), &[("x-api-key", "wf_live_nope")]).await;
    assert_eq!(r.status(), 401);
    let r = post(&app, body.clone(), &[("x-api-key", "wf_live_nope")]).await;
    assert_eq!(r.status(), 429, "the address's budget of two is spent");
}

#[tokio::test]
async fn a_widget_shares_one_budget_between_its_visitors_and_proxies_are_trusted_only_when_configured()
 {
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.widget_rate_limit = 3;
        c.public_rate_limit = 2;
        c.trusted_proxies = 1;
    })
    .await;
    let (widget, _, _) = widget_with_kb(&app, ARTICLES).await;
    let start = json!({ "query": START, "variables": { "i": { "widgetId": widget, "message": "reset password" } } });
    // Three visitors (behind one proxy) each start a turn: the widget's budget is spent.
    for ip in ["203.0.113.1", "203.0.113.2", "203.0.113.3"] {
        let v: Value = post(&app, start.clone(), &[("x-forwarded-for", ip)])
            .await
            .json()
            .await
            .unwrap();
        assert!(v["data"]["startTurn"]["turnId"].is_string(), "{v}");
    }
    let r = post(&app, start.clone(), &[("x-forwarded-for", "203.0.113.4")]).await;
    assert_eq!(r.status(), 200, "an execution error, not a transport one");
    let v: Value = r.json().await.unwrap();
    assert_eq!(error_code(&v), Some("RATE_LIMITED"), "{v}");
    assert!(v["errors"][0]["extensions"]["retryAfter"].as_u64().unwrap() >= 1);
    assert_eq!(messages(&app).await, 3, "the refused turn stored nothing");

    // Per address: the client named by the trusted proxy, not what the client wrote left of it.
    let q = json!({ "query": "{ __typename }" });
    for _ in 0..2 {
        assert_eq!(
            post(
                &app,
                q.clone(),
                &[("x-forwarded-for", "6.6.6.6, 198.51.100.7")]
            )
            .await
            .status(),
            200
        );
    }
    assert_eq!(
        post(
            &app,
            q.clone(),
            &[("x-forwarded-for", "1.1.1.1, 198.51.100.7")]
        )
        .await
        .status(),
        429
    );
    assert_eq!(
        post(&app, q.clone(), &[("x-forwarded-for", "198.51.100.8")])
            .await
            .status(),
        200
    );

    // Without trusted proxies the header is ignored: forging it changes nothing.
    let direct = spawn_app_with(Backend::Sqlite, |c| c.public_rate_limit = 2).await;
    let mut statuses = vec![];
    for ip in ["1.1.1.1", "2.2.2.2", "3.3.3.3"] {
        statuses.push(
            post(&direct, q.clone(), &[("x-forwarded-for", ip)])
                .await
                .status()
                .as_u16(),
        );
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        1,
        "{statuses:?}"
    );
}

#[tokio::test]
async fn rest_adapters_are_rate_limited_with_retry_after() {
    let app = spawn_app_with(Backend::Sqlite, |c| c.public_rate_limit = 2).await;
    let (widget, _, _) = widget_with_kb(&app, ARTICLES).await;
    let url = format!("{}/widgets/{widget}/chat", app.address);
    for _ in 0..2 {
        let r = app
            .client
            .post(&url)
            .json(&json!({ "message": "reset password" }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert!(v["reply"].is_string(), "{v}");
    }
    let r = app
        .client
        .post(&url)
        .json(&json!({ "message": "reset password" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(
        r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "RATE_LIMITED", "{v}");
    assert!(v["error"]["retryAfter"].as_u64().unwrap() >= 1);
    // The contact form shares the address's budget.
    let r = app
        .client
        .post(format!("{}/chatbot/message", app.address))
        .json(
            &json!({ "widgetId": widget, "name": "A", "email": "a@example.com", "message": "hi" }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
}

/// A raw graphql-transport-ws socket (headers of our choosing), or the HTTP status of a refused upgrade.
async fn raw_socket(
    app: &TestApp,
    headers: &[(&str, &str)],
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    u16,
> {
    let mut req = app.ws_url.as_str().into_client_request().unwrap();
    req.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    for (k, v) in headers {
        req.headers_mut().insert(
            axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(other) => panic!("unexpected upgrade failure: {other}"),
    }
}

#[tokio::test]
async fn every_upgrade_costs_its_address_whatever_headers_it_carries() {
    let app = spawn_app_with(Backend::Sqlite, |c| c.public_rate_limit = 3).await;
    let wrong = [("x-api-key", "wf_live_not_a_key")];
    for i in 0..3 {
        assert!(raw_socket(&app, &wrong).await.is_ok(), "upgrade {i}");
    }
    assert_eq!(raw_socket(&app, &wrong).await.err(), Some(429));
    let good = [("x-api-key", app.api_key.as_str())];
    assert_eq!(raw_socket(&app, &good).await.err(), Some(429));
}

#[tokio::test]
async fn a_flood_of_subscribe_frames_is_rate_limited_and_the_socket_stays_usable() {
    let app = spawn_app_with(Backend::Sqlite, |c| c.public_rate_limit = 10).await;
    let mut ws = WsClient::connect(&app.ws_url, json!({})).await;
    // One unit went to the upgrade; nine subscribes fit, the rest are refused one by one.
    for i in 0..30 {
        ws.subscribe(&format!("q{i}"), "{ __typename }", json!({}))
            .await;
    }
    let (mut done, mut limited) = (0, 0);
    while done + limited < 30 {
        let msg = ws
            .next(Duration::from_secs(5))
            .await
            .expect("an answer to every subscribe");
        match msg["type"].as_str() {
            Some("complete") => done += 1,
            Some("error") => {
                assert_eq!(
                    msg["payload"][0]["extensions"]["code"], "RATE_LIMITED",
                    "{msg}"
                );
                assert!(
                    msg["payload"][0]["extensions"]["retryAfter"]
                        .as_u64()
                        .unwrap()
                        >= 1
                );
                limited += 1;
            }
            _ => {}
        }
    }
    assert_eq!((done, limited), (9, 21));
}

#[tokio::test]
async fn the_socket_cap_counts_running_subscriptions() {
    let app = spawn_app_with(Backend::Sqlite, |c| c.ws_max_subscriptions = 3).await;
    let mut ws = WsClient::connect(&app.ws_url, json!({ "apiKey": app.api_key })).await;
    for i in 0..4 {
        ws.subscribe(
            &format!("s{i}"),
            "subscription { orgEvents { kind } }",
            json!({}),
        )
        .await;
    }
    let msg = ws.next(Duration::from_secs(5)).await.unwrap();
    assert_eq!(msg["type"], "error");
    assert_eq!(msg["id"], "s3");
    // Completing one frees its place.
    ws.send_raw(json!({ "type": "complete", "id": "s0" })).await;
    ws.subscribe("s4", "subscription { orgEvents { kind } }", json!({}))
        .await;
    assert!(
        ws.next(Duration::from_millis(500)).await.is_none(),
        "s4 runs quietly"
    );

    // One subscription operation is one root field: aliased streams are refused.
    ws.subscribe(
        "many",
        "subscription { a: orgEvents { kind } b: orgEvents { kind } }",
        json!({}),
    )
    .await;
    let msg = ws.next(Duration::from_secs(5)).await.unwrap();
    assert_eq!(msg["type"], "error", "{msg}");
    assert_eq!(msg["id"], "many");
    assert_eq!(
        msg["payload"][0]["extensions"]["code"], "BAD_REQUEST",
        "{msg}"
    );
}

#[tokio::test]
async fn a_subscription_is_one_written_out_field_in_a_small_document() {
    // The socket keeps a subscription's document and parses it again for
    // every event: padding it, or a root field that errs on every event,
    // is refused up front, and the socket goes on.
    let app = spawn_app(Backend::Sqlite).await;
    let mut ws = WsClient::connect(&app.ws_url, json!({ "apiKey": app.api_key })).await;
    let padded = format!(
        "subscription {{ orgEvents {{ kind }} }} # {}",
        "x".repeat(9 * 1024)
    );
    for (id, query) in [
        ("padded", padded.as_str()),
        ("typename", "subscription { __typename orgEvents { kind } }"),
        (
            "spread",
            "subscription { ...S } fragment S on Subscription { orgEvents { kind } }",
        ),
    ] {
        ws.subscribe(id, query, json!({})).await;
        let msg = ws.next(Duration::from_secs(5)).await.unwrap();
        assert_eq!(msg["type"], "error", "{id}: {msg}");
        assert_eq!(msg["id"], id);
        assert_eq!(
            msg["payload"][0]["extensions"]["code"], "BAD_REQUEST",
            "{msg}"
        );
    }
    // A query may be large (it runs once); a plain subscription runs.
    let big_query = format!("{{ __typename }} # {}", "x".repeat(9 * 1024));
    ws.subscribe("q", &big_query, json!({})).await;
    let msg = ws.next(Duration::from_secs(5)).await.unwrap();
    assert_eq!(msg["type"], "next", "{msg}");
    assert_eq!(msg["payload"]["data"]["__typename"], "Query");
    ws.subscribe("ok", "subscription { orgEvents { kind } }", json!({}))
        .await;
    let msg = ws.next(Duration::from_secs(5)).await.unwrap();
    assert_eq!(msg, json!({ "type": "complete", "id": "q" }));
    assert!(
        ws.next(Duration::from_millis(300)).await.is_none(),
        "the plain subscription runs quietly"
    );
}

/// A revoked key closes its sockets and is refused over HTTP on every
/// replica: at once on the one that revoked it, within the revocation watch's
/// poll on the others, although both remembered the key from earlier requests.
async fn a_revoked_key_stops_working_on_every_replica(backend: Backend) {
    let a = spawn_app(backend).await;
    assert_eq!(a.backend, backend);
    // A second replica on the same database, no shared bus needed.
    let db = TestDatabase::borrowed(&a.db);
    let config = test_config(&db);
    let b = spawn_on(db, config, a.backend).await;

    let created = a
        .gql_ok(
            r#"mutation { createApiKey(input: {name: "doomed"}) { key apiKey { id } } }"#,
            json!({}),
        )
        .await;
    let key = created["createApiKey"]["key"].as_str().unwrap().to_string();
    let key_id = created["createApiKey"]["apiKey"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let org = async |app: &TestApp| app.gql_as(Some(&key), "{ org { id } }", json!({})).await;
    for app in [&a, &b] {
        let before = app.state.keys.len();
        let v = org(app).await;
        assert!(v["data"]["org"]["id"].is_string(), "{v}");
        assert_eq!(app.state.keys.len(), before + 1, "the key is remembered");
    }
    let mut on_a = raw_init(&a, &key).await;
    let mut on_b = raw_init(&b, &key).await;
    for ws in [&mut on_a, &mut on_b] {
        ws.send(Message::text(json!({ "type": "subscribe", "id": "1", "payload": { "query": "subscription { orgEvents { kind } }" } }).to_string())).await.unwrap();
    }
    let revoked_at = std::time::Instant::now();
    a.gql_ok(
        "mutation($id: UUID!) { deleteApiKey(id: $id) { revokedAt } }",
        json!({ "id": key_id }),
    )
    .await;
    let v = org(&a).await;
    assert_eq!(error_code(&v), Some("UNAUTHENTICATED"), "at once on A: {v}");
    for ws in [&mut on_a, &mut on_b] {
        let code = close_code(ws, Duration::from_secs(8)).await;
        assert_eq!(code, Some(4403));
    }
    // B's sockets closed on the watch's news, which also made B forget the key.
    let v = org(&b).await;
    assert_eq!(error_code(&v), Some("UNAUTHENTICATED"), "on B: {v}");
    assert!(revoked_at.elapsed() < Duration::from_secs(8));
}

/// Connects with `key` and waits for the ack.
async fn raw_init(
    app: &TestApp,
    key: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let mut ws = raw_socket(app, &[]).await.unwrap();
    ws.send(Message::text(
        json!({ "type": "connection_init", "payload": { "apiKey": key } }).to_string(),
    ))
    .await
    .unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) if t.contains("connection_ack") => return ws,
            Ok(Some(Ok(_))) => continue,
            other => panic!("no ack: {other:?}"),
        }
    }
}

/// The code of the close frame the server sends within `wait`, reading past other frames.
async fn close_code(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    wait: Duration,
) -> Option<u16> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| u16::from(f.code)),
            Ok(Some(Ok(_))) => continue,
            _ => return None,
        }
    }
}

#[tokio::test]
async fn sockets_are_pinged_closed_when_idle_and_told_about_shutdown() {
    let mut app = spawn_app_with(Backend::Sqlite, |c| {
        c.ws_ping_secs = 1;
        c.ws_idle_secs = 2;
    })
    .await;
    // Keep-alive pings arrive; a socket with nothing running closes with 1000.
    let mut idle = raw_init(&app, &app.api_key.clone()).await;
    let started = std::time::Instant::now();
    let mut pings = 0;
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(6), idle.next()).await {
            Ok(Some(Ok(Message::Ping(_)))) => pings += 1,
            Ok(Some(Ok(Message::Close(frame)))) => break frame.map(|f| u16::from(f.code)),
            Ok(Some(Ok(_))) => {}
            other => panic!("socket ended without a close frame: {other:?}"),
        }
    };
    assert_eq!(code, Some(1000));
    assert!(pings >= 1, "no keep-alive ping");
    assert!(started.elapsed() >= Duration::from_millis(1500));

    // A socket with a running subscription is not idle; shutdown says 1001.
    let mut busy = raw_init(&app, &app.api_key.clone()).await;
    busy.send(Message::text(json!({ "type": "subscribe", "id": "1", "payload": { "query": "subscription { orgEvents { kind } }" } }).to_string())).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    app.shut_down();
    assert_eq!(
        close_code(&mut busy, Duration::from_secs(5)).await,
        Some(1001)
    );
}

#[tokio::test]
async fn a_client_that_stops_reading_is_dropped() {
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.ws_write_timeout_secs = 1;
        c.api_key_rate_limit = 0;
    })
    .await;
    // Twenty articles of 150 KB: every answer below is about 3 MB.
    let kb = app
        .gql_ok(
            r#"mutation { createKnowledgeBase(input: {name: "Big"}) { id } }"#,
            json!({}),
        )
        .await["createKnowledgeBase"]["id"]
        .clone();
    let body = "x".repeat(150_000);
    for i in 0..20 {
        app.gql_ok("mutation($kb: UUID!, $b: String!, $t: String!) { createKbArticle(input: {knowledgeBaseId: $kb, title: $t, body: $b}) { id } }", json!({ "kb": kb, "b": body, "t": format!("A{i}") })).await;
    }
    // A client with a small receive buffer that asks for a lot and never reads.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let addr: std::net::SocketAddr = app.address.trim_start_matches("http://").parse().unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let mut req = app.ws_url.as_str().into_client_request().unwrap();
    req.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (mut ws, _) =
        tokio_tungstenite::client_async(req, tokio_tungstenite::MaybeTlsStream::Plain(stream))
            .await
            .unwrap();
    ws.send(Message::text(
        json!({ "type": "connection_init", "payload": { "apiKey": app.api_key } }).to_string(),
    ))
    .await
    .unwrap();
    for i in 0..20 {
        ws.send(Message::text(json!({ "type": "subscribe", "id": format!("{i}"), "payload": { "query": "{ kbArticles(first: 20) { nodes { body } } }" } }).to_string())).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    // Now read: the server gave up on us, so far fewer than 20 answers arrive before the end.
    let mut answers = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) if t.contains("\"next\"") => answers += 1,
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(_))) | Ok(None) => break,
            Err(_) => {
                panic!("the socket is still open after the write deadline ({answers} answers)")
            }
        }
    }
    assert!(answers < 20, "{answers} answers: the server kept writing");
}

#[tokio::test]
async fn followed_turns_leave_nothing_in_the_fan_out() {
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.api_key_rate_limit = 0;
        c.public_rate_limit = 0;
        c.widget_rate_limit = 0;
    })
    .await;
    let baseline = app.state.bus.local_topics();
    let (widget, _, _) = widget_with_kb(&app, ARTICLES).await;
    // A few live turns, followed from a socket while they run.
    let mut ws = WsClient::connect(&app.ws_url, json!({})).await;
    let mut turn = String::new();
    for i in 0..20 {
        let v = app
            .gql_as(
                None,
                START,
                json!({ "i": { "widgetId": widget, "message": "How do I reset my password?" } }),
            )
            .await;
        turn = v["data"]["startTurn"]["turnId"]
            .as_str()
            .unwrap()
            .to_string();
        let token = v["data"]["startTurn"]["sessionToken"].as_str().unwrap();
        ws.subscribe(&format!("t{i}"), "subscription($t: UUID!, $s: String) { chatTurn(turnId: $t, sessionToken: $s) { status } }", json!({ "t": turn, "s": token })).await;
        let events = ws.collect(&format!("t{i}"), Duration::from_secs(10)).await;
        assert_eq!(
            events.last().unwrap()["data"]["chatTurn"]["status"],
            "COMPLETED"
        );
    }
    // Ten thousand followed turns (replays of a finished one), from eight dashboard sockets.
    let per_socket = 1250;
    let tasks = (0..8).map(|s| {
        let (url, key, turn) = (app.ws_url.clone(), app.api_key.clone(), turn.clone());
        tokio::spawn(async move {
            let mut ws = WsClient::connect(&url, json!({ "apiKey": key })).await;
            for i in 0..per_socket {
                let id = format!("{s}-{i}");
                ws.subscribe(
                    &id,
                    "subscription($t: UUID!) { chatTurn(turnId: $t) { status } }",
                    json!({ "t": turn }),
                )
                .await;
                let events = ws.collect(&id, Duration::from_secs(10)).await;
                assert_eq!(
                    events.last().unwrap()["data"]["chatTurn"]["status"],
                    "COMPLETED"
                );
            }
        })
    });
    for t in futures_util::future::join_all(tasks).await {
        t.unwrap();
    }
    drop(ws);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        app.state.bus.local_topics(),
        baseline,
        "finished turns left topics behind"
    );
}

#[tokio::test]
async fn malformed_requests_cost_their_address_too() {
    let app = spawn_app_with(Backend::Sqlite, |c| c.public_rate_limit = 3).await;
    let send = |body: &'static str| {
        app.client
            .post(format!("{}/graphql", app.address))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    for body in ["not json", "{\"query\": 1}", "[]"] {
        assert_eq!(send(body).await.unwrap().status(), 400, "{body}");
    }
    let r = send("not json").await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn repeated_fields_and_spreads_count_each_time_they_run() {
    let app = spawn_app(Backend::Sqlite).await;
    let (widget, _, _) = widget_with_kb(&app, ARTICLES).await;
    let vars = json!({ "i": { "widgetId": widget, "message": "reset password" } });
    for query in [
        // The same field twice runs twice (async-graphql merges only the results).
        "mutation($i: TurnInput!) { startTurn(input: $i) { turnId } startTurn(input: $i) { turnId } }",
        // One fragment spread twice runs its field twice.
        "mutation($i: TurnInput!) { ...F ...F } fragment F on Mutation { startTurn(input: $i) { turnId } }",
    ] {
        let r = post(&app, json!({ "query": query, "variables": vars }), &[]).await;
        assert_eq!(r.status(), 400, "{query}");
        assert_eq!(
            error_code(&r.json::<Value>().await.unwrap()),
            Some("BAD_REQUEST")
        );
    }
    assert_eq!(messages(&app).await, 0, "nothing ran");
    let r = post(&app, json!({ "query": "{ widgetConfig(widgetId: \"00000000-0000-0000-0000-000000000000\") { greeting } widgetConfig(widgetId: \"00000000-0000-0000-0000-000000000000\") { greeting } __typename widgetConfig(widgetId: \"00000000-0000-0000-0000-000000000000\") { greeting } widgetConfig(widgetId: \"00000000-0000-0000-0000-000000000000\") { greeting } }" }), &[]).await;
    assert_eq!(
        r.status(),
        400,
        "four repeats of one query field are four fields"
    );
}

#[tokio::test]
async fn a_flood_of_pings_closes_the_socket() {
    let app = spawn_app_with(Backend::Sqlite, |c| c.public_rate_limit = 5).await;
    let mut ws = raw_socket(&app, &[]).await.unwrap();
    ws.send(Message::text(
        json!({ "type": "connection_init", "payload": {} }).to_string(),
    ))
    .await
    .unwrap();
    // Twenty messages cost a unit: the fifth unit is over the four left after the upgrade.
    let big = "x".repeat(4096);
    for _ in 0..200 {
        if ws
            .send(Message::text(
                json!({ "type": "ping", "payload": { "pad": big } }).to_string(),
            ))
            .await
            .is_err()
        {
            break;
        }
    }
    let mut echoed_big = false;
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => break frame.map(|f| u16::from(f.code)),
            Ok(Some(Ok(Message::Text(t)))) => echoed_big |= t.contains(&big),
            Ok(Some(Ok(_))) => {}
            other => panic!("no close frame: {other:?}"),
        }
    };
    assert_eq!(code, Some(1008));
    assert!(!echoed_big, "a large ping payload is not echoed");
}
