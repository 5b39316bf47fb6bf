//! Signed visitor identity (issue 14): verified and refused over GraphQL,
//! REST and graphql-ws; one end user per (widget, userId) with the
//! anonymous session merged in; host-app traits over extracted ones; tickets
//! carrying the visitor; rotation; and the `endUsers` list.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::{chat_turn::ARTICLES, helpers::*, on_both_databases};

on_both_databases!(
    identity_is_verified_and_refused_over_graphql_rest_and_ws,
    unverified_visitors_stay_anonymous_where_identity_is_optional,
    anonymous_session_merges_into_the_identified_user,
    rotation_replaces_the_secret_and_tickets_carry_the_user
);

/// `hex(HMAC-SHA256(secret, user_id))`, computed independently of the server.
pub fn user_hash(secret: &str, user_id: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(user_id.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A widget answering from [`ARTICLES`]: (widget id, identity secret).
pub async fn identity_widget(app: &TestApp, required: bool) -> (String, String) {
    let (_, bot, _) = crate::chat_turn::widget_with_kb(app, ARTICLES).await;
    let w = app
        .gql_ok(
            "mutation($b: UUID!, $r: Boolean) { createChatWidget(input: {botId: $b, allowedOrigins: [\"*\"], identityRequired: $r}) { id identityRequired identitySecretSet identitySecret } }",
            json!({ "b": bot, "r": required }),
        )
        .await;
    let w = &w["createChatWidget"];
    assert_eq!(w["identityRequired"], required);
    assert_eq!(w["identitySecretSet"], true);
    let secret = w["identitySecret"].as_str().unwrap().to_string();
    assert!(
        secret.starts_with("wf_id_") && secret.len() >= 40,
        "{secret}"
    );
    (w["id"].as_str().unwrap().to_string(), secret)
}

pub const SEND: &str = "mutation($i: TurnInput!) { sendMessage(input: $i) { sessionId sessionToken status text messageId } }";

fn turn(widget: &str, user: Option<(&str, &str)>, traits: Value) -> Value {
    let mut i = json!({ "widgetId": widget, "message": "How do I reset my password?" });
    if let Some((id, hash)) = user {
        i["userId"] = json!(id);
        i["userHash"] = json!(hash);
    }
    if !traits.is_null() {
        i["traits"] = traits;
    }
    json!({ "i": i })
}

async fn end_users(app: &TestApp, widget: &str) -> Vec<Value> {
    app.gql_ok(
        "query($w: UUID!) { endUsers(filter: {chatWidgetId: $w}, first: 100) { nodes { id userId identified traits hostTraits email sessionCount } } }",
        json!({ "w": widget }),
    )
    .await["endUsers"]["nodes"]
        .as_array()
        .unwrap()
        .clone()
}

async fn identity_is_verified_and_refused_over_graphql_rest_and_ws(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.public_rate_limit = 0;
        c.widget_rate_limit = 0;
    })
    .await;
    let (widget, secret) = identity_widget(&app, true).await;
    let (_, other_secret) = identity_widget(&app, true).await;
    let good = user_hash(&secret, "user-42");
    let refusals = [
        ("missing", turn(&widget, None, Value::Null), "FORBIDDEN"),
        (
            "wrong hash",
            turn(&widget, Some(("user-42", &"0".repeat(64))), Value::Null),
            "FORBIDDEN",
        ),
        (
            "not hex",
            turn(&widget, Some(("user-42", "not-a-hash")), Value::Null),
            "FORBIDDEN",
        ),
        (
            "another widget's secret",
            turn(
                &widget,
                Some(("user-42", &user_hash(&other_secret, "user-42"))),
                Value::Null,
            ),
            "FORBIDDEN",
        ),
        (
            "tampered user id",
            turn(&widget, Some(("user-43", &good)), Value::Null),
            "FORBIDDEN",
        ),
        (
            "hash without user",
            json!({ "i": { "widgetId": widget, "message": "hi", "userHash": good } }),
            "BAD_USER_INPUT",
        ),
        (
            "oversized traits",
            turn(
                &widget,
                Some(("user-42", &good)),
                json!({ "bio": "x".repeat(5_000) }),
            ),
            "BAD_USER_INPUT",
        ),
        (
            "too many traits",
            turn(
                &widget,
                Some(("user-42", &good)),
                Value::Object((0..60).map(|i| (format!("k{i}"), json!(i))).collect()),
            ),
            "BAD_USER_INPUT",
        ),
        (
            "nested traits",
            turn(
                &widget,
                Some(("user-42", &good)),
                json!({ "a": { "b": 1 } }),
            ),
            "BAD_USER_INPUT",
        ),
    ];
    for (what, vars, code) in &refusals {
        let r = app.gql_as(None, SEND, vars.clone()).await;
        assert_eq!(error_code(&r), Some(*code), "{what}: {r}");
        assert!(
            r["data"].is_null() || r["data"]["sendMessage"].is_null(),
            "{what}: {r}"
        );
    }
    let msg = app.gql_as(None, SEND, refusals[1].1.clone()).await["errors"][0]["message"].clone();
    assert!(
        msg.as_str().unwrap().contains("identity not verified"),
        "{msg}"
    );
    let r = app.gql_as(None, SEND, refusals[6].1.clone()).await;
    assert_eq!(r["errors"][0]["extensions"]["field"], "input.traits", "{r}");
    // Nothing refused was stored.
    assert!(end_users(&app, &widget).await.is_empty());

    // Verified over GraphQL.
    let ok = app
        .gql_as(
            None,
            SEND,
            turn(
                &widget,
                Some(("user-42", &good)),
                json!({ "plan": "pro", "email": "ada@example.com", "seats": 3 }),
            ),
        )
        .await;
    assert_eq!(ok["data"]["sendMessage"]["status"], "ANSWERED", "{ok}");
    let users = end_users(&app, &widget).await;
    assert_eq!(users.len(), 1, "{users:?}");
    assert_eq!(users[0]["userId"], "user-42");
    assert_eq!(users[0]["identified"], true);
    assert_eq!(users[0]["traits"]["plan"], "pro");
    assert_eq!(users[0]["hostTraits"]["seats"], 3);
    assert_eq!(users[0]["email"], "ada@example.com");

    // REST: the same fields in the body.
    let rest = |body: Value| {
        let c = app.client.clone();
        let url = format!("{}/widgets/{widget}/chat", app.address);
        async move { c.post(url).json(&body).send().await.unwrap() }
    };
    let r = rest(json!({ "message": "hi", "userId": "user-43", "userHash": good })).await;
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "FORBIDDEN", "{body}");
    let r = rest(json!({ "message": "hi" })).await;
    assert_eq!(r.status(), 403);
    let r = rest(json!({ "message": "hi", "userId": "user-42", "userHash": good, "traits": { "bio": "x".repeat(5_000) } })).await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["field"], "input.traits", "{body}");
    let r = rest(
        json!({ "message": "How do I reset my password?", "userId": "user-42", "userHash": good }),
    )
    .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["conversationId"], ok["data"]["sendMessage"]["sessionId"],
        "an identified user continues their conversation on any device: {body}"
    );

    // graphql-ws: startTurn on a public socket.
    let start = "mutation($i: TurnInput!) { startTurn(input: $i) { turnId sessionId } }";
    let mut ws = WsClient::connect(&app.ws_url, json!({})).await;
    ws.subscribe(
        "bad",
        start,
        turn(
            &widget,
            Some(("user-42", &user_hash(&other_secret, "user-42"))),
            Value::Null,
        ),
    )
    .await;
    let got = ws.collect("bad", Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0]["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{got:?}"
    );
    ws.subscribe(
        "good",
        start,
        turn(&widget, Some(("user-42", &good)), Value::Null),
    )
    .await;
    let got = ws.collect("good", Duration::from_secs(10)).await;
    assert_eq!(
        got[0]["data"]["startTurn"]["sessionId"], ok["data"]["sendMessage"]["sessionId"],
        "{got:?}"
    );
    assert_eq!(end_users(&app, &widget).await.len(), 1);
}

async fn unverified_visitors_stay_anonymous_where_identity_is_optional(backend: Backend) {
    let app = spawn_app(backend).await;
    let (widget, secret) = identity_widget(&app, false).await;
    let r = app
        .gql_as(
            None,
            SEND,
            turn(
                &widget,
                Some(("user-1", &user_hash("wf_id_forged", "user-1"))),
                json!({ "plan": "enterprise" }),
            ),
        )
        .await;
    assert_eq!(r["data"]["sendMessage"]["status"], "ANSWERED", "{r}");
    let r = app
        .gql_as(None, SEND, turn(&widget, None, Value::Null))
        .await;
    assert_eq!(r["data"]["sendMessage"]["status"], "ANSWERED", "{r}");
    let users = end_users(&app, &widget).await;
    assert_eq!(users.len(), 2);
    for u in &users {
        assert_eq!(u["identified"], false, "never silently identified: {u}");
        assert!(u["userId"].is_null());
        assert!(
            u["traits"].get("plan").is_none(),
            "unverified traits are not kept: {u}"
        );
    }
    // The same widget verifies a correct hash.
    let r = app
        .gql_as(
            None,
            SEND,
            turn(
                &widget,
                Some(("user-1", &user_hash(&secret, "user-1"))),
                Value::Null,
            ),
        )
        .await;
    assert!(r.get("errors").is_none(), "{r}");
    let ids = app
        .gql_ok(
            "{ endUsers(filter: {identified: true}) { nodes { userId } } }",
            json!({}),
        )
        .await;
    assert_eq!(ids["endUsers"]["nodes"], json!([{ "userId": "user-1" }]));
}

async fn anonymous_session_merges_into_the_identified_user(backend: Backend) {
    let app = spawn_app(backend).await;
    app.gql_ok(
        "mutation { updateOrgSettings(input: {aiAutoTraitsEnabled: true}) { id } }",
        json!({}),
    )
    .await;
    let (widget, secret) = identity_widget(&app, false).await;
    // Before sign-in: anonymous, and the chat reveals a name and an email.
    let anon = app
        .gql_as(None, SEND, json!({ "i": { "widgetId": widget, "message": "Hi, my name is Bob Stone and my email is bob@stone.io. How do I reset my password?" } }))
        .await;
    let anon = &anon["data"]["sendMessage"];
    for _ in 0..50 {
        let u = end_users(&app, &widget).await;
        if u[0]["traits"].get("email").is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Sign-in: the same browser (token) now carries the signed identity.
    let hash = user_hash(&secret, "acct-7");
    let signed = app
        .gql_as(None, SEND, json!({ "i": { "widgetId": widget, "message": "Inviting teammates?", "sessionToken": anon["sessionToken"], "userId": "acct-7", "userHash": hash, "traits": { "name": "Robert Stone", "plan": "growth" } } }))
        .await;
    let signed = &signed["data"]["sendMessage"];
    assert_eq!(
        signed["sessionId"], anon["sessionId"],
        "the conversation continues: {signed}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let users = end_users(&app, &widget).await;
    assert_eq!(
        users.len(),
        1,
        "the anonymous visitor was merged: {users:?}"
    );
    let u = &users[0];
    assert_eq!(u["userId"], "acct-7");
    assert_eq!(
        u["traits"]["name"], "Robert Stone",
        "host-app traits win: {u}"
    );
    assert_eq!(
        u["traits"]["email"], "bob@stone.io",
        "extracted traits are kept: {u}"
    );
    assert_eq!(u["traits"]["plan"], "growth");
    // Chat extraction after sign-in never overwrites a host-app trait.
    app.gql_as(None, SEND, json!({ "i": { "widgetId": widget, "message": "my name is Mallory Evil", "sessionToken": signed["sessionToken"], "userId": "acct-7", "userHash": hash } }))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        end_users(&app, &widget).await[0]["traits"]["name"],
        "Robert Stone"
    );
    // Another device, no token: the same end user and conversation.
    let other = app
        .gql_as(
            None,
            SEND,
            turn(&widget, Some(("acct-7", &hash)), Value::Null),
        )
        .await;
    assert_eq!(
        other["data"]["sendMessage"]["sessionId"], anon["sessionId"],
        "{other}"
    );
    // Someone else signing in on the first browser does not take over that conversation.
    let eve = app
        .gql_as(None, SEND, json!({ "i": { "widgetId": widget, "message": "hello", "sessionToken": signed["sessionToken"], "userId": "acct-8", "userHash": user_hash(&secret, "acct-8") } }))
        .await;
    assert_ne!(
        eve["data"]["sendMessage"]["sessionId"], anon["sessionId"],
        "{eve}"
    );
    let users = end_users(&app, &widget).await;
    assert_eq!(users.len(), 2);
    assert_eq!(
        users.iter().find(|u| u["userId"] == "acct-7").unwrap()["sessionCount"],
        1
    );
    // The dashboard's session view shows who it is.
    let s = app
        .gql_ok(
            "query($id: UUID!) { chatSession(id: $id) { endUser { userId traits } } }",
            json!({ "id": anon["sessionId"] }),
        )
        .await;
    assert_eq!(s["chatSession"]["endUser"]["userId"], "acct-7");
}

async fn rotation_replaces_the_secret_and_tickets_carry_the_user(backend: Backend) {
    let app = spawn_app(backend).await;
    let (widget, old) = identity_widget(&app, true).await;
    let listed = app
        .gql_ok(
            "{ chatWidgets { nodes { identitySecret identitySecretSet } } }",
            json!({}),
        )
        .await;
    for w in listed["chatWidgets"]["nodes"].as_array().unwrap() {
        assert!(w["identitySecret"].is_null(), "shown once: {w}");
    }
    let rotated = app
        .gql_ok(
            "mutation($id: UUID!) { rotateChatWidgetIdentitySecret(id: $id) { identitySecret } }",
            json!({ "id": widget }),
        )
        .await["rotateChatWidgetIdentitySecret"]["identitySecret"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(rotated, old);
    let r = app
        .gql_as(
            None,
            SEND,
            turn(&widget, Some(("u-1", &user_hash(&old, "u-1"))), Value::Null),
        )
        .await;
    assert_eq!(
        error_code(&r),
        Some("FORBIDDEN"),
        "the old secret stops verifying: {r}"
    );
    let r = app
        .gql_as(
            None,
            SEND,
            turn(
                &widget,
                Some(("u-1", &user_hash(&rotated, "u-1"))),
                json!({ "email": "u1@example.com", "name": "Una One" }),
            ),
        )
        .await;
    let token = r["data"]["sendMessage"]["sessionToken"].clone();
    let message_id = r["data"]["sendMessage"]["messageId"].clone();
    assert!(token.is_string(), "{r}");
    // Another org cannot rotate it.
    let (_, other_key) = app.create_org(wayfinder::domain::Plan::Pro).await;
    let r = app
        .gql_as(
            Some(&other_key),
            "mutation($id: UUID!) { rotateChatWidgetIdentitySecret(id: $id) { id } }",
            json!({ "id": widget }),
        )
        .await;
    assert_eq!(error_code(&r), Some("NOT_FOUND"), "{r}");
    // Hand-off and downvote tickets carry the user id and email.
    let h = app
        .gql_as(
            None,
            "mutation($t: String!) { requestHandoff(input: {sessionToken: $t}) { ticketId } }",
            json!({ "t": token }),
        )
        .await;
    assert!(h.get("errors").is_none(), "{h}");
    let f = app
        .gql_as(None, "mutation($t: String!, $m: UUID!) { submitFeedback(input: {messageId: $m, vote: DOWN, sessionToken: $t, openTicket: true}) { ticketId } }", json!({ "t": token, "m": message_id }))
        .await;
    assert!(f.get("errors").is_none(), "{f}");
    let t = app
        .gql_ok(
            "{ supportTickets { nodes { source userId email name endUserId } } }",
            json!({}),
        )
        .await;
    let tickets = t["supportTickets"]["nodes"].as_array().unwrap();
    assert_eq!(tickets.len(), 2, "{t}");
    for ticket in tickets {
        assert_eq!(ticket["userId"], "u-1", "{ticket}");
        assert_eq!(ticket["email"], "u1@example.com", "{ticket}");
        assert_eq!(ticket["name"], "Una One", "{ticket}");
        assert!(ticket["endUserId"].is_string());
    }
}
