//! The REST adapters (`POST /widgets/{id}/chat`, `POST /chatbot/message`,
//! `POST /api/v1/orgs/{id}/chatbots`), and the widgets' allowed origins, which
//! the adapters share with GraphQL over HTTP and over graphql-ws.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    chat_turn::{ARTICLES, widget_with_kb},
    helpers::*,
    on_both_databases,
};

on_both_databases!(
    rest_chat_answers_and_continues_with_the_session_id,
    rest_contact_form_opens_a_ticket,
    rest_creates_chatbots_in_the_keys_own_org,
    graphql_refuses_origins_the_widget_does_not_allow
);

const SHOP: &str = "https://shop.example";
const EVIL: &str = "https://evil.example";

/// A widget that answers from [`ARTICLES`] and allows only [`SHOP`].
async fn shop_widget(app: &TestApp) -> String {
    let (widget, _, _) = widget_with_kb(app, ARTICLES).await;
    app.gql_ok(
        "mutation($i: UpdateChatWidgetInput!) { updateChatWidget(input: $i) { id } }",
        json!({ "i": { "id": widget, "allowedOrigins": [SHOP] } }),
    )
    .await;
    widget
}

/// POSTs `body` to `path`, from a page of `origin` if given; the status and JSON answer.
async fn post(
    app: &TestApp,
    path: &str,
    origin: Option<&str>,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, Value) {
    let mut req = app
        .client
        .post(format!("{}{path}", app.address))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(o) = origin {
        req = req.header("origin", o);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")),
    )
}

/// A GraphQL POST from a page of `origin` (no API key unless given).
async fn gql_from(
    app: &TestApp,
    origin: Option<&str>,
    key: Option<&str>,
    query: &str,
    variables: Value,
) -> Value {
    let mut req = app
        .client
        .post(format!("{}/graphql", app.address))
        .json(&json!({ "query": query, "variables": variables }));
    if let Some(o) = origin {
        req = req.header("origin", o);
    }
    if let Some(k) = key {
        req = req.header("x-api-key", k);
    }
    req.send().await.unwrap().json().await.unwrap()
}

async fn rest_chat_answers_and_continues_with_the_session_id(backend: Backend) {
    let app = spawn_app(backend).await;
    let widget = shop_widget(&app).await;
    let path = format!("/widgets/{widget}/chat");

    // Arrange / Act: a first message from the allowed origin.
    let (status, first) = post(
        &app,
        &path,
        Some(SHOP),
        &[],
        r#"{"message":"How do I reset my password?"}"#,
    )
    .await;

    // Assert: the reply, its citations, and a session id to send back.
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["status"], "ANSWERED");
    assert!(first["reply"].as_str().unwrap().contains("Forgot password"));
    assert_eq!(first["citations"][0]["title"], "Resetting your password");
    let session = first["sessionId"].as_str().unwrap();
    assert_eq!(
        first["sessionToken"], session,
        "sessionId is the session token"
    );
    assert!(first["conversationId"].as_str().is_some());

    // The session id continues the conversation (server to server: no Origin).
    let body = json!({ "message": "How do I export invoices?", "sessionId": session }).to_string();
    let (status, second) = post(&app, &path, None, &[], &body).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(second["conversationId"], first["conversationId"]);

    // What can go wrong, and how it answers.
    let (status, e) = post(&app, &path, Some(EVIL), &[], r#"{"message":"hi"}"#).await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("FORBIDDEN")),
        "{e}"
    );
    let (status, e) = post(&app, &path, None, &[], r#"{"message":""}"#).await;
    assert_eq!(
        (status, e["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("input.message")),
        "{e}"
    );
    let (status, e) = post(&app, &path, None, &[], "not json").await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("BAD_REQUEST")),
        "{e}"
    );
    let (status, e) = post(
        &app,
        &path,
        None,
        &[],
        r#"{"message":"hi","sessionId":"forged"}"#,
    )
    .await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("FORBIDDEN")),
        "{e}"
    );
    for missing in [
        "/widgets/not-a-uuid/chat",
        "/widgets/00000000-0000-0000-0000-000000000000/chat",
    ] {
        let (status, e) = post(&app, missing, None, &[], r#"{"message":"hi"}"#).await;
        assert_eq!(
            (status, e["error"]["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("NOT_FOUND")),
            "{e}"
        );
    }
}

async fn rest_contact_form_opens_a_ticket(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.contact_min_fill_ms = 300).await;
    let widget = shop_widget(&app).await;
    let challenge = || async {
        let v = gql_from(
            &app,
            Some(SHOP),
            None,
            "query($w: UUID!) { widgetConfig(widgetId: $w) { contactChallenge } }",
            json!({ "w": widget }),
        )
        .await;
        v["data"]["widgetConfig"]["contactChallenge"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let form = |challenge: &str, honeypot: &str| {
        json!({ "widgetId": widget, "name": "Ada", "email": "ada@example.com", "message": "Call me", "honeypot": honeypot, "challenge": challenge }).to_string()
    };

    // Too quick: the challenge is younger than the minimum fill time.
    let early = challenge().await;
    let (status, e) = post(&app, "/chatbot/message", Some(SHOP), &[], &form(&early, "")).await;
    assert_eq!(
        (status, e["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("input.challenge")),
        "{e}"
    );

    tokio::time::sleep(Duration::from_millis(400)).await;
    let (status, e) = post(&app, "/chatbot/message", Some(EVIL), &[], &form(&early, "")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{e}");
    let (status, ok) = post(&app, "/chatbot/message", Some(SHOP), &[], &form(&early, "")).await;
    assert_eq!(status, StatusCode::OK, "{ok}");
    assert_eq!(ok["ok"], true);
    assert!(ok["message"].as_str().unwrap().starts_with("Thanks"));

    // A bot filling the honeypot is thanked too, and creates nothing.
    let late = challenge().await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (status, bot) = post(
        &app,
        "/chatbot/message",
        None,
        &[],
        &form(&late, "https://spam.example"),
    )
    .await;
    assert_eq!(
        (status, &bot["ok"]),
        (StatusCode::OK, &json!(true)),
        "{bot}"
    );

    let tickets = app
        .gql_ok("{ supportTickets { nodes { source email } } }", json!({}))
        .await;
    let nodes = tickets["supportTickets"]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 1, "{tickets}");
    assert_eq!(nodes[0]["source"], "CONTACT_FORM");
}

async fn rest_creates_chatbots_in_the_keys_own_org(backend: Backend) {
    let app = spawn_app(backend).await;
    let path = format!("/api/v1/orgs/{}/chatbots", app.org_id);
    let key = [("x-api-key", app.api_key.as_str())];
    let body = json!({ "name": "Support bot", "greeting": "Hello!", "allowedOrigins": [SHOP] })
        .to_string();

    let (status, bot) = post(&app, &path, None, &key, &body).await;
    assert_eq!(status, StatusCode::CREATED, "{bot}");
    assert_eq!(bot["name"], "Support bot");
    assert_eq!(bot["orgId"], app.org_id.to_string());
    let widget = bot["widget"]["id"].as_str().unwrap();
    assert_eq!(bot["widget"]["allowedOrigins"], json!([SHOP]));
    // The new widget is live for its origin at once.
    let config = gql_from(
        &app,
        Some(SHOP),
        None,
        "query($w: UUID!) { widgetConfig(widgetId: $w) { greeting } }",
        json!({ "w": widget }),
    )
    .await;
    assert_eq!(
        config["data"]["widgetConfig"]["greeting"], "Hello!",
        "{config}"
    );
    let listed = app.gql_ok("{ bots { nodes { name } } }", json!({})).await;
    assert!(
        listed["bots"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["name"] == "Support bot")
    );

    // Bearer works too; no widget without allowedOrigins.
    let bearer = format!("Bearer {}", app.api_key);
    let (status, plain) = post(
        &app,
        &path,
        None,
        &[("authorization", &bearer)],
        r#"{"name":"Plain"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{plain}");
    assert!(plain["widget"].is_null());

    // Another org's id looks like a missing one; no key or a wrong one is 401.
    let (other_org, other_key) = app.create_org(wayfinder::domain::Plan::Pro).await;
    let (status, e) = post(
        &app,
        &format!("/api/v1/orgs/{other_org}/chatbots"),
        None,
        &key,
        &body,
    )
    .await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("NOT_FOUND")),
        "{e}"
    );
    let (status, _) = post(
        &app,
        &path,
        None,
        &[("x-api-key", other_key.as_str())],
        &body,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, e) = post(&app, &path, None, &[], &body).await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("UNAUTHENTICATED")),
        "{e}"
    );
    let (status, _) = post(&app, &path, None, &[("x-api-key", "wf_live_wrong")], &body).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Bad bodies, and the plan.
    let (status, e) = post(&app, &path, None, &key, r#"{"name":"X","colour":"red"}"#).await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("BAD_REQUEST")),
        "{e}"
    );
    let (status, e) = post(&app, &path, None, &key, r#"{"name":""}"#).await;
    assert_eq!(
        (status, e["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("input.name")),
        "{e}"
    );
    let (free_org, free_key) = app.create_org(wayfinder::domain::Plan::Free).await;
    let (status, e) = post(
        &app,
        &format!("/api/v1/orgs/{free_org}/chatbots"),
        None,
        &[("x-api-key", free_key.as_str())],
        r#"{"name":"X"}"#,
    )
    .await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("PLAN_REQUIRED")),
        "{e}"
    );
}

async fn graphql_refuses_origins_the_widget_does_not_allow(backend: Backend) {
    let app = spawn_app(backend).await;
    let widget = shop_widget(&app).await;
    let config = "query($w: UUID!) { widgetConfig(widgetId: $w) { personaName } }";
    let vars = json!({ "w": widget });

    // widgetConfig: the listed origin, no origin at all, and the org's own key pass.
    for (origin, key) in [
        (Some(SHOP), None),
        (Some("HTTPS://SHOP.EXAMPLE"), None),
        (None, None),
        (Some(EVIL), Some(app.api_key.as_str())),
    ] {
        let v = gql_from(&app, origin, key, config, vars.clone()).await;
        assert!(v["errors"].is_null(), "{origin:?}: {v}");
    }
    for origin in [
        EVIL,
        "null",
        "https://shop.example:8443",
        "http://shop.example",
    ] {
        let v = gql_from(&app, Some(origin), None, config, vars.clone()).await;
        assert_eq!(error_code(&v), Some("FORBIDDEN"), "{origin}: {v}");
    }
    // Another org's key is just a public caller here.
    let (_, other_key) = app.create_org(wayfinder::domain::Plan::Pro).await;
    let v = gql_from(&app, Some(EVIL), Some(&other_key), config, vars.clone()).await;
    assert_eq!(error_code(&v), Some("FORBIDDEN"), "{v}");

    // `*` lets every origin in (on a second widget: the first stays strict).
    let open = shop_widget(&app).await;
    app.gql_ok(
        "mutation($i: UpdateChatWidgetInput!) { updateChatWidget(input: $i) { id } }",
        json!({ "i": { "id": open, "allowedOrigins": ["*"] } }),
    )
    .await;
    let v = gql_from(&app, Some(EVIL), None, config, json!({ "w": open })).await;
    assert!(v["errors"].is_null(), "{v}");

    // The turn operations and the contact form name the widget too. (startTurn
    // last: its turn goes on in the background.)
    for query in [
        "mutation($i: TurnInput!) { sendMessage(input: $i) { text } }",
        "mutation($i: TurnInput!) { startTurn(input: $i) { turnId } }",
    ] {
        let v = gql_from(
            &app,
            Some(EVIL),
            None,
            query,
            json!({ "i": { "widgetId": widget, "message": "hi" } }),
        )
        .await;
        assert_eq!(error_code(&v), Some("FORBIDDEN"), "{query}: {v}");
        let v = gql_from(
            &app,
            Some(SHOP),
            None,
            query,
            json!({ "i": { "widgetId": widget, "message": "hi" } }),
        )
        .await;
        assert!(v["errors"].is_null(), "{query}: {v}");
    }
    let contact = "mutation($i: SubmitContactInput!) { submitContact(input: $i) { ok } }";
    let v = gql_from(&app, Some(EVIL), None, contact, json!({ "i": { "widgetId": widget, "name": "A", "email": "a@example.com", "message": "m" } })).await;
    assert_eq!(error_code(&v), Some("FORBIDDEN"), "{v}");
}

/// A public graphql-ws connection opened by a page of `origin`.
async fn ws_from(
    app: &TestApp,
    origin: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};
    let mut req = app.ws_url.as_str().into_client_request().unwrap();
    req.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    req.headers_mut().insert("origin", origin.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    ws.send(Message::text(
        json!({ "type": "connection_init", "payload": {} }).to_string(),
    ))
    .await
    .unwrap();
    ws
}

/// The first `next` or `error` message of operation "1".
async fn first_result(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> Value {
    use futures_util::StreamExt;
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let tokio_tungstenite::tungstenite::Message::Text(t) = msg {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["id"] == "1" {
                return v;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphql_ws_checks_the_upgrade_origin_per_operation() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let app = spawn_app(Backend::Sqlite).await;
    let widget = shop_widget(&app).await;
    let subscribe = json!({ "type": "subscribe", "id": "1", "payload": {
        "query": "query($w: UUID!) { widgetConfig(widgetId: $w) { personaName } }",
        "variables": { "w": widget },
    } })
    .to_string();

    let mut evil = ws_from(&app, EVIL).await;
    evil.send(Message::text(subscribe.clone())).await.unwrap();
    let refused = first_result(&mut evil).await;
    assert_eq!(
        refused["payload"]["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{refused}"
    );

    let mut shop = ws_from(&app, SHOP).await;
    shop.send(Message::text(subscribe)).await.unwrap();
    let served = first_result(&mut shop).await;
    assert_eq!(served["type"], "next", "{served}");
    assert!(
        served["payload"]["data"]["widgetConfig"]["personaName"].is_string(),
        "{served}"
    );
}
