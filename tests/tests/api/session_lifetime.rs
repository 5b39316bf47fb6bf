//! Session tokens end when they should: `WAYFINDER_SESSION_TTL_DAYS` after
//! the session's last turn (every turn pushes that back), and at once when the
//! session, its widget or its bot is deleted. Every public operation that
//! takes a token refuses such a token the same way, and stores nothing.

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, sea_query::Expr};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    chat_turn::{ARTICLES, widget_with_kb},
    helpers::*,
    on_both_databases,
};

const SEND: &str = "mutation($i: TurnInput!) { sendMessage(input: $i) { turnId sessionId sessionToken status messageId } }";
const START: &str =
    "mutation($i: TurnInput!) { startTurn(input: $i) { turnId sessionId sessionToken } }";
const FEEDBACK: &str =
    "mutation($i: SubmitFeedbackInput!) { submitFeedback(input: $i) { ok feedbackId } }";
const HANDOFF: &str =
    "mutation($i: RequestHandoffInput!) { requestHandoff(input: $i) { ok ticketId } }";
const FOLLOW_TURN: &str =
    "subscription($t: UUID!, $s: String) { chatTurn(turnId: $t, sessionToken: $s) { seq status } }";
const FOLLOW_SESSION: &str = "subscription($id: UUID!, $s: String) { sessionEvents(sessionId: $id, sessionToken: $s) { seq status } }";

const EXPIRED: &str = "session expired: start a new conversation";
const INVALID: &str = "invalid session token";

/// One finished public turn: what a widget keeps to continue and to vote.
struct Conversation {
    widget: String,
    token: String,
    session_id: Uuid,
    turn_id: String,
    /// The bot's reply (to vote on).
    message_id: String,
}

async fn converse(app: &TestApp, widget: &str) -> Conversation {
    let r = app
        .gql_as(
            None,
            SEND,
            json!({ "i": { "widgetId": widget, "message": "How do I reset my password?" } }),
        )
        .await;
    assert!(r["errors"].is_null(), "{r}");
    let m = &r["data"]["sendMessage"];
    assert_eq!(m["status"], "ANSWERED", "{r}");
    Conversation {
        widget: widget.to_string(),
        token: m["sessionToken"].as_str().unwrap().to_string(),
        session_id: m["sessionId"].as_str().unwrap().parse().unwrap(),
        turn_id: m["turnId"].as_str().unwrap().to_string(),
        message_id: m["messageId"].as_str().unwrap().to_string(),
    }
}

async fn session_row(app: &TestApp, id: Uuid) -> Option<entity::chat_session::Model> {
    entity::chat_session::Entity::find_by_id(id)
        .one(&app.state.db)
        .await
        .unwrap()
}

/// Sets the session's last turn `days` ago, straight in the database.
async fn age_session(app: &TestApp, id: Uuid, days: i64) {
    let at = Utc::now() - TimeDelta::days(days);
    let updated = entity::chat_session::Entity::update_many()
        .col_expr(entity::chat_session::Column::UpdatedAt, Expr::value(at))
        .filter(entity::chat_session::Column::Id.eq(id))
        .exec(&app.state.db)
        .await
        .unwrap();
    assert_eq!(updated.rows_affected, 1);
}

async fn message_count(app: &TestApp) -> u64 {
    entity::chat_message::Entity::find()
        .count(&app.state.db)
        .await
        .unwrap()
}

/// The errors of a graphql-ws operation's first answer (an `error` message or a `next` with errors).
async fn ws_errors(app: &TestApp, init: Value, query: &str, variables: Value) -> Value {
    let mut ws = WsClient::connect(&app.ws_url, init).await;
    ws.subscribe("op", query, variables).await;
    let msg = ws.next(Duration::from_secs(5)).await.expect("an answer");
    assert_eq!(msg["id"], "op", "{msg}");
    match msg["type"].as_str() {
        Some("error") => msg["payload"].clone(),
        Some("next") => msg["payload"]["errors"].clone(),
        _ => panic!("expected a refusal, got {msg}"),
    }
}

/// Every public operation that takes a session token, tried with `c.token`:
/// each must answer FORBIDDEN with `message`, over HTTP, graphql-ws and REST.
async fn assert_token_refused(app: &TestApp, c: &Conversation, message: &str) {
    let refused = |what: &str, r: &Value| {
        assert_eq!(error_code(r), Some("FORBIDDEN"), "{what}: {r}");
        assert_eq!(r["errors"][0]["message"], message, "{what}: {r}");
        assert!(r["data"].is_null(), "{what}: {r}");
    };
    let turn = json!({ "i": { "widgetId": c.widget, "message": "Still there?", "sessionToken": c.token } });
    refused("sendMessage", &app.gql_as(None, SEND, turn.clone()).await);
    refused("startTurn", &app.gql_as(None, START, turn).await);
    refused(
        "submitFeedback",
        &app.gql_as(
            None,
            FEEDBACK,
            json!({ "i": { "messageId": c.message_id, "vote": "UP", "sessionToken": c.token } }),
        )
        .await,
    );
    refused(
        "requestHandoff",
        &app.gql_as(
            None,
            HANDOFF,
            json!({ "i": { "sessionToken": c.token, "email": "ada@example.com" } }),
        )
        .await,
    );
    // The token as an argument, and as the connection's token.
    for (init, vars) in [
        (json!({}), json!({ "t": c.turn_id, "s": c.token })),
        (
            json!({ "sessionToken": c.token }),
            json!({ "t": c.turn_id }),
        ),
    ] {
        let errors = ws_errors(app, init, FOLLOW_TURN, vars).await;
        assert_eq!(
            errors[0]["extensions"]["code"], "FORBIDDEN",
            "chatTurn: {errors}"
        );
        assert_eq!(errors[0]["message"], message, "chatTurn: {errors}");
    }
    let errors = ws_errors(
        app,
        json!({}),
        FOLLOW_SESSION,
        json!({ "id": c.session_id, "s": c.token }),
    )
    .await;
    assert_eq!(
        errors[0]["extensions"]["code"], "FORBIDDEN",
        "sessionEvents: {errors}"
    );
    assert_eq!(errors[0]["message"], message, "sessionEvents: {errors}");
    // The REST adapter: its `sessionId` is the token.
    let resp = app
        .client
        .post(format!("{}/widgets/{}/chat", app.address, c.widget))
        .json(&json!({ "message": "Still there?", "sessionId": c.token }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "FORBIDDEN", "{body}");
    assert_eq!(body["error"]["message"], message, "{body}");
}

on_both_databases!(
    session_tokens_expire_after_the_last_turn,
    tokens_of_deleted_sessions_widgets_and_bots_stop_working
);

async fn session_tokens_expire_after_the_last_turn(backend: Backend) {
    let app = spawn_app(backend).await;
    let (widget, _, _) = widget_with_kb(&app, ARTICLES).await;
    let c = converse(&app, &widget).await;

    // A quiet session within the TTL (default 30 days) still works, and the turn bumps its last-turn time.
    age_session(&app, c.session_id, 29).await;
    let before = Utc::now();
    let r = app
        .gql_as(
            None,
            SEND,
            json!({ "i": { "widgetId": widget, "message": "And invoices as PDF?", "sessionToken": c.token } }),
        )
        .await;
    assert!(r["errors"].is_null(), "{r}");
    assert_eq!(
        r["data"]["sendMessage"]["sessionId"],
        c.session_id.to_string()
    );
    let bumped = session_row(&app, c.session_id).await.unwrap().updated_at;
    assert!(
        bumped >= before - TimeDelta::seconds(1),
        "sendMessage bumps updated_at: {bumped} < {before}"
    );
    // startTurn (and so the REST adapter and chat.js) bumps it too.
    age_session(&app, c.session_id, 20).await;
    let before = Utc::now();
    let r = app
        .gql_as(
            None,
            START,
            json!({ "i": { "widgetId": widget, "message": "Teammates?", "sessionToken": c.token } }),
        )
        .await;
    assert!(r["errors"].is_null(), "{r}");
    let started = r["data"]["startTurn"]["turnId"].clone();
    let bumped = session_row(&app, c.session_id).await.unwrap().updated_at;
    assert!(
        bumped >= before - TimeDelta::seconds(1),
        "startTurn bumps updated_at"
    );
    // The other public operations accept the fresh token.
    let r = app
        .gql_as(
            None,
            FEEDBACK,
            json!({ "i": { "messageId": c.message_id, "vote": "UP", "sessionToken": c.token } }),
        )
        .await;
    assert_eq!(r["data"]["submitFeedback"]["ok"], true, "{r}");
    let mut ws = WsClient::connect(&app.ws_url, json!({})).await;
    // The second is the turn startTurn began, which runs on in the
    // background: it must finish before what is stored is counted.
    for (id, turn) in [("t", json!(c.turn_id)), ("u", started)] {
        ws.subscribe(id, FOLLOW_TURN, json!({ "t": turn, "s": c.token }))
            .await;
        let events = ws.collect(id, Duration::from_secs(10)).await;
        assert_eq!(
            events.last().unwrap()["data"]["chatTurn"]["status"],
            "COMPLETED",
            "{events:?}"
        );
    }

    // Past the TTL: refused everywhere, and nothing is stored.
    age_session(&app, c.session_id, 31).await;
    let stored = message_count(&app).await;
    assert_token_refused(&app, &c, EXPIRED).await;
    assert_eq!(
        message_count(&app).await,
        stored,
        "a refused turn stores nothing"
    );
    let row = session_row(&app, c.session_id).await.unwrap();
    assert!(
        row.updated_at < Utc::now() - TimeDelta::days(30),
        "a refused token does not revive its session"
    );
    // The visitor starts over; the dashboard still reads the old conversation.
    let fresh = converse(&app, &widget).await;
    assert_ne!(fresh.session_id, c.session_id);
    let old = app
        .gql_ok(
            "query($id: UUID!) { chatSession(id: $id) { id } }",
            json!({ "id": c.session_id }),
        )
        .await;
    assert_eq!(old["chatSession"]["id"], c.session_id.to_string());

    // The TTL is configurable.
    let short = spawn_app_with(backend, |c| c.session_ttl_days = 2).await;
    let (widget, _, _) = widget_with_kb(&short, ARTICLES).await;
    let c = converse(&short, &widget).await;
    age_session(&short, c.session_id, 1).await;
    let r = short
        .gql_as(
            None,
            SEND,
            json!({ "i": { "widgetId": widget, "message": "Hi again", "sessionToken": c.token } }),
        )
        .await;
    assert!(r["errors"].is_null(), "{r}");
    age_session(&short, c.session_id, 3).await;
    assert_token_refused(&short, &c, EXPIRED).await;
}

async fn tokens_of_deleted_sessions_widgets_and_bots_stop_working(backend: Backend) {
    let app = spawn_app(backend).await;

    // A deleted session (as retention or an end user's erasure deletes it).
    let (widget, _, _) = widget_with_kb(&app, ARTICLES).await;
    let c = converse(&app, &widget).await;
    let deleted = entity::chat_session::Entity::delete_by_id(c.session_id)
        .exec(&app.state.db)
        .await
        .unwrap();
    assert_eq!(deleted.rows_affected, 1);
    assert_gone(&app, &c, true).await;

    // A deleted widget takes its sessions with it.
    let (widget, _, _) = widget_with_kb(&app, ARTICLES).await;
    let c = converse(&app, &widget).await;
    let r = app
        .gql_ok(
            "mutation($id: UUID!) { deleteChatWidget(id: $id) { id } }",
            json!({ "id": widget }),
        )
        .await;
    assert_eq!(r["deleteChatWidget"]["id"], widget.as_str());
    assert!(session_row(&app, c.session_id).await.is_none());
    assert_gone(&app, &c, false).await;

    // So does a deleted bot (its widgets go first).
    let (widget, bot, _) = widget_with_kb(&app, ARTICLES).await;
    let c = converse(&app, &widget).await;
    let r = app
        .gql_ok(
            "mutation($id: UUID!) { deleteBot(id: $id) { id } }",
            json!({ "id": bot }),
        )
        .await;
    assert_eq!(r["deleteBot"]["id"], bot.as_str());
    assert!(session_row(&app, c.session_id).await.is_none());
    assert_gone(&app, &c, false).await;

    // A dashboard's test session on a bot ends with its bot.
    let (_, bot, _) = widget_with_kb(&app, ARTICLES).await;
    let r = app
        .gql_ok(
            SEND,
            json!({ "i": { "botId": bot, "message": "How do I reset my password?" } }),
        )
        .await;
    let token = r["sendMessage"]["sessionToken"]
        .as_str()
        .unwrap()
        .to_string();
    app.gql_ok(
        "mutation($id: UUID!) { deleteBot(id: $id) { id } }",
        json!({ "id": bot }),
    )
    .await;
    let r = app
        .gql_as(
            None,
            HANDOFF,
            json!({ "i": { "sessionToken": token, "email": "ada@example.com" } }),
        )
        .await;
    assert_eq!(error_code(&r), Some("FORBIDDEN"), "{r}");
    assert_eq!(r["errors"][0]["message"], INVALID);
}

/// `c`'s session is gone: its token unlocks nothing. With `widget_alive`,
/// turns on the widget reach the token check; otherwise the widget itself is
/// `NOT_FOUND` first. The turn is gone with its session (`NOT_FOUND`).
async fn assert_gone(app: &TestApp, c: &Conversation, widget_alive: bool) {
    let stored = message_count(app).await;
    let turn = json!({ "i": { "widgetId": c.widget, "message": "Still there?", "sessionToken": c.token } });
    for q in [SEND, START] {
        let r = app.gql_as(None, q, turn.clone()).await;
        if widget_alive {
            assert_eq!(error_code(&r), Some("FORBIDDEN"), "{r}");
            assert_eq!(r["errors"][0]["message"], INVALID, "{r}");
        } else {
            assert_eq!(error_code(&r), Some("NOT_FOUND"), "{r}");
        }
        assert!(r["data"].is_null(), "{r}");
    }
    let r = app
        .gql_as(
            None,
            FEEDBACK,
            json!({ "i": { "messageId": c.message_id, "vote": "DOWN", "openTicket": true, "sessionToken": c.token } }),
        )
        .await;
    assert_eq!(error_code(&r), Some("FORBIDDEN"), "{r}");
    assert_eq!(r["errors"][0]["message"], INVALID, "{r}");
    let r = app
        .gql_as(
            None,
            HANDOFF,
            json!({ "i": { "sessionToken": c.token, "email": "ada@example.com" } }),
        )
        .await;
    assert_eq!(error_code(&r), Some("FORBIDDEN"), "{r}");
    assert_eq!(r["errors"][0]["message"], INVALID, "{r}");
    let errors = ws_errors(
        app,
        json!({}),
        FOLLOW_SESSION,
        json!({ "id": c.session_id, "s": c.token }),
    )
    .await;
    assert_eq!(errors[0]["extensions"]["code"], "FORBIDDEN", "{errors}");
    assert_eq!(errors[0]["message"], INVALID, "{errors}");
    let errors = ws_errors(
        app,
        json!({ "sessionToken": c.token }),
        FOLLOW_TURN,
        json!({ "t": c.turn_id }),
    )
    .await;
    assert_eq!(errors[0]["extensions"]["code"], "NOT_FOUND", "{errors}");
    assert_eq!(message_count(app).await, stored, "nothing stored");
    let tickets = app
        .gql_ok("{ supportTickets { nodes { id } } }", json!({}))
        .await;
    assert_eq!(
        tickets["supportTickets"]["nodes"],
        json!([]),
        "no ticket opened"
    );
}
