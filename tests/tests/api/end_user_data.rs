//! What is stored about a visitor, for how long, and how it is forgotten:
//! the retention job (old rows gone, recent ones and the ledger kept) and
//! deletion on request (nothing of the visitor left in any table, other
//! visitors whole), with the export that precedes it.

use chrono::{TimeDelta, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait,
    QueryFilter, sea_query::Expr,
};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    helpers::*,
    identity::{SEND, identity_widget, user_hash},
    on_both_databases,
};

on_both_databases!(
    retention_removes_old_rows_and_keeps_recent_ones_and_the_ledger,
    deletion_leaves_nothing_of_the_visitor_and_others_whole
);

/// One visitor's conversation: (session id, session token, reply message id).
async fn chat(
    app: &TestApp,
    widget: &str,
    user: Option<(&str, &str)>,
    message: &str,
) -> (Uuid, String, String) {
    let mut i = json!({ "widgetId": widget, "message": message });
    if let Some((id, hash)) = user {
        i["userId"] = json!(id);
        i["userHash"] = json!(hash);
        i["traits"] =
            json!({ "email": format!("{id}@example.com"), "name": format!("Person {id}") });
    }
    let r = app.gql_as(None, SEND, json!({ "i": i })).await;
    let s = &r["data"]["sendMessage"];
    assert!(s["sessionId"].is_string(), "{r}");
    (
        s["sessionId"].as_str().unwrap().parse().unwrap(),
        s["sessionToken"].as_str().unwrap().to_string(),
        s["messageId"].as_str().unwrap().to_string(),
    )
}

/// A ledger row referring to a turn of `session_id`, as an LLM charge leaves one.
async fn charge_for(app: &TestApp, session_id: Uuid) -> Uuid {
    let msg = entity::chat_message::Entity::find()
        .filter(entity::chat_message::Column::SessionId.eq(session_id))
        .one(&app.state.db)
        .await
        .unwrap()
        .unwrap();
    let id = Uuid::now_v7();
    entity::credit_ledger::ActiveModel {
        id: Set(id),
        org_id: Set(app.org_id),
        amount: Set(-3),
        kind: Set("charge".into()),
        turn_id: Set(Some(msg.turn_id)),
        message_id: Set(Some(msg.id)),
        model: Set(Some("test".into())),
        note: Set(None),
        created_at: Set(Utc::now()),
    }
    .insert(&app.state.db)
    .await
    .unwrap();
    id
}

async fn retention_removes_old_rows_and_keeps_recent_ones_and_the_ledger(backend: Backend) {
    let app = spawn_app(backend).await;
    let (widget, secret) = identity_widget(&app, false).await;
    let (old_session, old_token, old_msg) =
        chat(&app, &widget, None, "How do I reset my password?").await;
    app.gql_as(None, "mutation($t: String!, $m: UUID!) { submitFeedback(input: {messageId: $m, vote: DOWN, sessionToken: $t, openTicket: true}) { ticketId } }", json!({ "t": old_token, "m": old_msg })).await;
    let (new_session, _, _) = chat(
        &app,
        &widget,
        Some(("keep", &user_hash(&secret, "keep"))),
        "Exporting invoices?",
    )
    .await;
    let old_charge = charge_for(&app, old_session).await;
    let new_charge = charge_for(&app, new_session).await;
    // Age the first conversation (and everything about it) by 40 days.
    let past = Utc::now() - TimeDelta::days(40);
    let db = &app.state.db;
    entity::chat_message::Entity::update_many()
        .col_expr(entity::chat_message::Column::CreatedAt, Expr::value(past))
        .filter(entity::chat_message::Column::SessionId.eq(old_session))
        .exec(db)
        .await
        .unwrap();
    entity::chat_session::Entity::update_many()
        .col_expr(entity::chat_session::Column::UpdatedAt, Expr::value(past))
        .filter(entity::chat_session::Column::Id.eq(old_session))
        .exec(db)
        .await
        .unwrap();
    entity::support_ticket::Entity::update_many()
        .col_expr(entity::support_ticket::Column::UpdatedAt, Expr::value(past))
        .exec(db)
        .await
        .unwrap();
    let old_user = entity::chat_session::Entity::find_by_id(old_session)
        .one(db)
        .await
        .unwrap()
        .unwrap()
        .end_user_id
        .unwrap();
    entity::end_user::Entity::update_many()
        .col_expr(entity::end_user::Column::UpdatedAt, Expr::value(past))
        .filter(entity::end_user::Column::Id.eq(old_user))
        .exec(db)
        .await
        .unwrap();
    let events_before = entity::event::Entity::find().count(db).await.unwrap();
    entity::event::Entity::update_many()
        .col_expr(entity::event::Column::CreatedAt, Expr::value(past))
        .filter(entity::event::Column::Kind.eq("chat.turn.completed"))
        .exec(db)
        .await
        .unwrap();

    // No retention period: nothing goes.
    let swept = wayfinder::service::retention::sweep(&app.state, Utc::now())
        .await
        .unwrap();
    assert_eq!(swept, Default::default());
    let r = app
        .gql(
            "mutation { updateOrgSettings(input: {retentionDays: 0}) { id } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&r), Some("BAD_USER_INPUT"), "{r}");
    let org = app
        .gql_ok(
            "mutation { updateOrgSettings(input: {retentionDays: 30}) { retentionDays } }",
            json!({}),
        )
        .await;
    assert_eq!(org["updateOrgSettings"]["retentionDays"], 30);

    let swept = wayfinder::service::retention::sweep(&app.state, Utc::now())
        .await
        .unwrap();
    assert!(
        swept.messages >= 3 && swept.sessions == 1 && swept.tickets == 1 && swept.end_users == 1,
        "{swept:?}"
    );
    assert!(swept.events >= 2, "{swept:?}");
    let count_in = |s: Uuid| {
        entity::chat_message::Entity::find()
            .filter(entity::chat_message::Column::SessionId.eq(s))
            .count(db)
    };
    assert_eq!(count_in(old_session).await.unwrap(), 0);
    assert!(
        count_in(new_session).await.unwrap() >= 3,
        "recent messages stay"
    );
    assert!(
        entity::chat_session::Entity::find_by_id(old_session)
            .one(db)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        entity::chat_session::Entity::find_by_id(new_session)
            .one(db)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        entity::end_user::Entity::find_by_id(old_user)
            .one(db)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        entity::chat_feedback::Entity::find()
            .count(db)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        entity::support_ticket::Entity::find()
            .count(db)
            .await
            .unwrap(),
        0
    );
    assert!(entity::event::Entity::find().count(db).await.unwrap() < events_before);
    // The ledger keeps both rows; only the old one lost its turn reference.
    let old = entity::credit_ledger::Entity::find_by_id(old_charge)
        .one(db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((old.turn_id, old.message_id, old.amount), (None, None, -3));
    let new = entity::credit_ledger::Entity::find_by_id(new_charge)
        .one(db)
        .await
        .unwrap()
        .unwrap();
    assert!(new.turn_id.is_some());
    // A second sweep finds nothing more.
    let again = wayfinder::service::retention::sweep(&app.state, Utc::now())
        .await
        .unwrap();
    assert_eq!(again, Default::default());
}

/// Every text column of every table, as one string per row, for a
/// table-by-table search for what is left of someone.
pub async fn dump(app: &TestApp, table: &str) -> Vec<String> {
    let db = &app.state.db;
    let sql = match app.backend {
        Backend::Postgres => format!("SELECT row_to_json(t)::text AS row FROM {table} t"),
        Backend::Sqlite => {
            let cols = db
                .query_all_raw(sea_orm::Statement::from_string(
                    db.get_database_backend(),
                    format!("SELECT name FROM pragma_table_info('{table}')"),
                ))
                .await
                .unwrap()
                .into_iter()
                .map(|r| r.try_get::<String>("", "name").unwrap())
                // UUIDs are 16-byte blobs on SQLite: hex them (the needles include that form).
                .map(|c| format!("COALESCE(CASE WHEN typeof(\"{c}\") = 'blob' THEN lower(hex(\"{c}\")) ELSE CAST(\"{c}\" AS TEXT) END, '')"))
                .collect::<Vec<_>>()
                .join(" || '|' || ");
            format!("SELECT {cols} AS row FROM {table}")
        }
    };
    db.query_all_raw(sea_orm::Statement::from_string(
        db.get_database_backend(),
        sql,
    ))
    .await
    .unwrap()
    .into_iter()
    .map(|r| r.try_get::<String>("", "row").unwrap().to_lowercase())
    .collect()
}

async fn deletion_leaves_nothing_of_the_visitor_and_others_whole(backend: Backend) {
    let app = spawn_app(backend).await;
    let (widget, secret) = identity_widget(&app, false).await;
    let mut tokens = vec![];
    for who in ["target", "bystander"] {
        let hash = user_hash(&secret, who);
        let (session, token, msg) = chat(
            &app,
            &widget,
            Some((who, &hash)),
            &format!("How do I reset my password? secret-word-{who}"),
        )
        .await;
        chat(&app, &widget, Some((who, &hash)), "Exporting invoices?").await;
        app.gql_as(None, "mutation($t: String!, $m: UUID!) { submitFeedback(input: {messageId: $m, vote: DOWN, comment: \"bad answer\", sessionToken: $t, openTicket: true}) { ticketId } }", json!({ "t": token, "m": msg })).await;
        app.gql_as(None, "mutation($t: String!) { requestHandoff(input: {sessionToken: $t, note: \"call me\"}) { ticketId } }", json!({ "t": token })).await;
        charge_for(&app, session).await;
        tokens.push((session, token));
    }
    let target = app
        .gql_ok(
            "{ endUsers(filter: {userId: \"target\"}) { nodes { id } } }",
            json!({}),
        )
        .await["endUsers"]["nodes"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();

    // Export first (an access request), then delete (an erasure request).
    let export = app
        .gql_ok(
            "query($id: UUID!) { exportEndUser(id: $id) }",
            json!({ "id": target }),
        )
        .await["exportEndUser"]
        .clone();
    let u = &export["endUsers"][0];
    assert_eq!(u["userId"], "target");
    assert_eq!(u["traits"]["email"], "target@example.com");
    assert!(
        u["sessions"][0]["messages"].as_array().unwrap().len() >= 6,
        "{export}"
    );
    assert_eq!(u["sessions"][0]["feedback"][0]["comment"], "bad answer");
    assert_eq!(u["tickets"].as_array().unwrap().len(), 2, "{export}");

    // Another org's key cannot see or delete them.
    let (_, other_key) = app.create_org(wayfinder::domain::Plan::Pro).await;
    for q in [
        "mutation($id: UUID!) { deleteEndUser(id: $id) { sessions } }",
        "query($id: UUID!) { exportEndUser(id: $id) }",
    ] {
        let r = app
            .gql_as(Some(&other_key), q, json!({ "id": target }))
            .await;
        assert_eq!(error_code(&r), Some("NOT_FOUND"), "{r}");
    }
    let r = app
        .gql_as(
            Some(&other_key),
            "mutation { deleteEndUser(userId: \"target\") { sessions } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&r), Some("NOT_FOUND"), "{r}");

    let removed = app.gql_ok("mutation { deleteEndUser(userId: \"target\") { endUserIds sessions messages feedback ticketsScrubbed events ledgerEntriesCleared } }", json!({})).await["deleteEndUser"].clone();
    assert_eq!(removed["endUserIds"], json!([target]));
    assert_eq!(removed["sessions"], 1);
    assert!(removed["messages"].as_i64().unwrap() >= 6, "{removed}");
    assert_eq!(removed["feedback"], 1);
    assert_eq!(removed["ticketsScrubbed"], 2);
    assert!(removed["events"].as_i64().unwrap() >= 3, "{removed}");
    assert_eq!(removed["ledgerEntriesCleared"], 1);

    // Table by table: nothing of the target is left; the bystander is whole.
    let (target_session, _) = &tokens[0];
    let (bystander_session, _) = &tokens[1];
    let (hyphenated, simple) = (
        target_session.to_string(),
        target_session.simple().to_string(),
    );
    let needles = [
        "target@example.com",
        "person target",
        "secret-word-target",
        &hyphenated,
        &simple,
        "\"target\"",
        "|target|",
    ];
    let tables = [
        "end_users",
        "chat_sessions",
        "chat_messages",
        "chat_feedback",
        "support_tickets",
        "credit_ledger",
        "events",
        "webhook_deliveries",
        "notifications",
    ];
    let mut bystander_rows = 0;
    for table in tables {
        for row in dump(&app, table).await {
            for n in needles {
                assert!(!row.contains(n), "{table} still holds {n}: {row}");
            }
            if row.contains(&bystander_session.to_string())
                || row.contains(&bystander_session.simple().to_string())
                || row.contains("bystander")
            {
                bystander_rows += 1;
            }
        }
    }
    assert!(
        bystander_rows >= 8,
        "the other visitor is whole ({bystander_rows} rows)"
    );
    let b = app.gql_ok("{ endUsers { nodes { userId traits sessionCount } } supportTickets { nodes { userId email message } } }", json!({})).await;
    assert_eq!(
        b["endUsers"]["nodes"],
        json!([{ "userId": "bystander", "traits": { "email": "bystander@example.com", "name": "Person bystander" }, "sessionCount": 1 }])
    );
    let tickets = b["supportTickets"]["nodes"].as_array().unwrap();
    assert_eq!(tickets.len(), 4, "scrubbed tickets stay for the counts");
    assert_eq!(
        tickets
            .iter()
            .filter(|t| t["userId"] == "bystander" && t["email"] == "bystander@example.com")
            .count(),
        2
    );
    assert_eq!(tickets.iter().filter(|t| t["message"] == "[removed at the visitor's request]" && t["email"].is_null()).count(), 2);
    let ledger = entity::credit_ledger::Entity::find()
        .filter(entity::credit_ledger::Column::Kind.eq("charge"))
        .all(&app.state.db)
        .await
        .unwrap();
    assert_eq!(ledger.len(), 2, "money is never forgotten");
    // The deletion is announced, without the user id.
    let ev = app
        .gql_ok(
            "{ events(first: 100) { nodes { kind payload } } }",
            json!({}),
        )
        .await;
    let deleted: Vec<&Value> = ev["events"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "end_user.deleted")
        .collect();
    assert_eq!(deleted.len(), 1, "{ev}");
    assert_eq!(deleted[0]["payload"]["id"], target.as_str());
    // Their token no longer works; deleting again is NOT_FOUND.
    let r = app
        .gql_as(
            None,
            SEND,
            json!({ "i": { "widgetId": widget, "message": "hi", "sessionToken": tokens[0].1 } }),
        )
        .await;
    assert_eq!(error_code(&r), Some("FORBIDDEN"), "{r}");
    let r = app
        .gql(
            "query($id: UUID!) { exportEndUser(id: $id) }",
            json!({ "id": target }),
        )
        .await;
    assert_eq!(error_code(&r), Some("NOT_FOUND"), "{r}");
}
