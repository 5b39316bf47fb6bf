//! The chat turn on the embedded default (no LLM): sessions and their tokens,
//! stored-then-published events, replay-then-live subscriptions with no gap
//! and no duplicate, fallback when AI is off, traits.

use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

use crate::{helpers::*, on_both_databases};

on_both_databases!(
    extractive_answers_cite_and_sessions_continue,
    session_tokens_only_unlock_their_session,
    ai_off_gives_the_canned_reply_and_handoff_offer,
    traits_are_extracted_when_enabled
);

/// A widget whose bot answers from a small KB; returns (widget id, bot id, article ids).
pub async fn widget_with_kb(
    app: &TestApp,
    articles: &[(&str, &str)],
) -> (String, String, Vec<String>) {
    let kb = app
        .gql_ok(
            r#"mutation { createKnowledgeBase(input: {name: "Help"}) { id } }"#,
            json!({}),
        )
        .await["createKnowledgeBase"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut ids = vec![];
    for (title, body) in articles {
        let a = app
            .gql_ok("mutation($kb: UUID!, $t: String!, $b: String!) { createKbArticle(input: {knowledgeBaseId: $kb, title: $t, body: $b}) { id } }", json!({ "kb": kb, "t": title, "b": body }))
            .await;
        ids.push(a["createKbArticle"]["id"].as_str().unwrap().to_string());
    }
    let bot = app
        .gql_ok(r#"mutation($kb: UUID!) { createBot(input: {name: "Helper", knowledgeBaseIds: [$kb], fallbackMessage: "Sorry, no idea.", fallbackToHuman: true}) { id } }"#, json!({ "kb": kb }))
        .await["createBot"]["id"].as_str().unwrap().to_string();
    let widget = app
        .gql_ok(r#"mutation($b: UUID!) { createChatWidget(input: {botId: $b, allowedOrigins: ["*"]}) { id } }"#, json!({ "b": bot }))
        .await["createChatWidget"]["id"].as_str().unwrap().to_string();
    (widget, bot, ids)
}

pub const ARTICLES: &[(&str, &str)] = &[
    (
        "Resetting your password",
        "To reset your password, open the sign-in page and click Forgot password. We email you a link that stays valid for one hour.",
    ),
    (
        "Exporting invoices",
        "Billing admins can download every invoice as PDF from Settings, Billing, Invoices. Exports include VAT numbers.",
    ),
    (
        "Inviting teammates",
        "Owners invite teammates from Settings, Team. Each invitation expires after seven days.",
    ),
];

const SEND: &str = "mutation($i: TurnInput!) { sendMessage(input: $i) { turnId sessionId sessionToken status text citations { articleId title } model handoffOffered messageId } }";

async fn extractive_answers_cite_and_sessions_continue(backend: Backend) {
    let app = spawn_app(backend).await;
    let (widget, _, ids) = widget_with_kb(&app, ARTICLES).await;

    let first = app
        .gql_as(
            None,
            SEND,
            json!({ "i": { "widgetId": widget, "message": "How do I reset my password?" } }),
        )
        .await;
    let r = &first["data"]["sendMessage"];
    assert_eq!(r["status"], "ANSWERED", "{first}");
    assert_eq!(r["model"], "extractive");
    assert_eq!(r["citations"][0]["articleId"], ids[0].as_str(), "{first}");
    assert!(r["text"].as_str().unwrap().contains("Forgot password"));
    let token = r["sessionToken"].as_str().unwrap();
    let session = r["sessionId"].as_str().unwrap();

    // The token continues the same session.
    let second = app.gql_as(None, SEND, json!({ "i": { "widgetId": widget, "message": "And how can I get my invoices as PDF?", "sessionToken": token } })).await;
    assert_eq!(second["data"]["sendMessage"]["sessionId"], session);
    assert_eq!(
        second["data"]["sendMessage"]["citations"][0]["articleId"],
        ids[1].as_str(),
        "{second}"
    );

    // The dashboard sees the whole conversation, stored step by step.
    let s = app.gql_ok("query($id: UUID!) { chatSession(id: $id) { messages(first: 100) { nodes { seq status role text } } } }", json!({ "id": session })).await;
    let statuses: Vec<&str> = s["chatSession"]["messages"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses.first(), Some(&"ANALYZING"));
    assert_eq!(statuses.iter().filter(|s| **s == "COMPLETED").count(), 2);
    assert_eq!(statuses.iter().filter(|s| **s == "ANSWERED").count(), 2);

    // The outbox announces completed turns.
    let ev = app
        .gql_ok(
            r#"{ events(kind: "chat.turn.completed") { nodes { payload } } }"#,
            json!({}),
        )
        .await;
    assert_eq!(ev["events"]["nodes"].as_array().unwrap().len(), 2);

    // A question the KB can't answer: the canned reply, still a 200 with data.
    let none = app
        .gql_as(
            None,
            SEND,
            json!({ "i": { "widgetId": widget, "message": "zzqx vvbn" } }),
        )
        .await;
    assert_eq!(none["data"]["sendMessage"]["status"], "FALLBACK", "{none}");
    assert_eq!(none["data"]["sendMessage"]["handoffOffered"], true);
}

async fn session_tokens_only_unlock_their_session(backend: Backend) {
    let app = spawn_app(backend).await;
    let (widget_a, _, _) = widget_with_kb(&app, ARTICLES).await;
    let (widget_b, _, _) = widget_with_kb(&app, ARTICLES).await;
    let a = app
        .gql_as(
            None,
            SEND,
            json!({ "i": { "widgetId": widget_a, "message": "reset password" } }),
        )
        .await;
    let token = a["data"]["sendMessage"]["sessionToken"]
        .as_str()
        .unwrap()
        .to_string();

    // Another widget's token.
    let r = app
        .gql_as(
            None,
            SEND,
            json!({ "i": { "widgetId": widget_b, "message": "hi", "sessionToken": token } }),
        )
        .await;
    assert_eq!(error_code(&r), Some("FORBIDDEN"), "{r}");
    // A tampered token.
    let mut tampered = token.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let r = app
        .gql_as(
            None,
            SEND,
            json!({ "i": { "widgetId": widget_a, "message": "hi", "sessionToken": tampered } }),
        )
        .await;
    assert_eq!(error_code(&r), Some("FORBIDDEN"), "{r}");
    let r = app
        .gql_as(
            None,
            SEND,
            json!({ "i": { "widgetId": widget_a, "message": "hi", "sessionToken": "garbage" } }),
        )
        .await;
    assert_eq!(error_code(&r), Some("FORBIDDEN"));

    // A token for session B cannot follow a turn of session A.
    let b = app
        .gql_as(
            None,
            SEND,
            json!({ "i": { "widgetId": widget_b, "message": "reset password" } }),
        )
        .await;
    let b_token = b["data"]["sendMessage"]["sessionToken"]
        .as_str()
        .unwrap()
        .to_string();
    let mut ws = WsClient::connect(&app.ws_url, json!({})).await;
    ws.subscribe(
        "t",
        "subscription($t: UUID!, $s: String) { chatTurn(turnId: $t, sessionToken: $s) { seq } }",
        json!({ "t": a["data"]["sendMessage"]["turnId"], "s": b_token }),
    )
    .await;
    let msg = ws.next(Duration::from_secs(5)).await.unwrap();
    let errors = if msg["type"] == "error" {
        msg["payload"].clone()
    } else {
        msg["payload"]["errors"].clone()
    };
    assert_eq!(errors[0]["extensions"]["code"], "NOT_FOUND", "{msg}");

    // Public callers need a widgetId; botId needs an API key.
    let r = app
        .gql_as(
            None,
            SEND,
            json!({ "i": { "botId": Uuid::now_v7(), "message": "hi" } }),
        )
        .await;
    assert_eq!(error_code(&r), Some("UNAUTHENTICATED"), "{r}");
    let r = app
        .gql_as(
            None,
            SEND,
            json!({ "i": { "widgetId": Uuid::now_v7(), "message": "hi" } }),
        )
        .await;
    assert_eq!(error_code(&r), Some("NOT_FOUND"));
    let r = app
        .gql_as(
            None,
            SEND,
            json!({ "i": { "widgetId": widget_a, "message": "x".repeat(5000) } }),
        )
        .await;
    assert_eq!(error_code(&r), Some("BAD_USER_INPUT"));
}

async fn ai_off_gives_the_canned_reply_and_handoff_offer(backend: Backend) {
    let app = spawn_app(backend).await;
    let (widget, _, _) = widget_with_kb(&app, ARTICLES).await;
    app.gql_ok(
        "mutation { updateOrgSettings(input: {aiChatbotEnabled: false}) { id } }",
        json!({}),
    )
    .await;
    let r = app
        .gql_as(
            None,
            SEND,
            json!({ "i": { "widgetId": widget, "message": "How do I reset my password?" } }),
        )
        .await;
    let r = &r["data"]["sendMessage"];
    assert_eq!(r["status"], "FALLBACK");
    assert!(r["text"].as_str().unwrap().starts_with("Sorry, no idea."));
    assert_eq!(r["handoffOffered"], true);

    // The server-wide kill switch does the same.
    let app = spawn_app_with(backend, |c| c.ai_chatbot_enabled = false).await;
    let (widget, _, _) = widget_with_kb(&app, ARTICLES).await;
    let r = app
        .gql_as(
            None,
            SEND,
            json!({ "i": { "widgetId": widget, "message": "How do I reset my password?" } }),
        )
        .await;
    assert_eq!(r["data"]["sendMessage"]["status"], "FALLBACK");
}

async fn traits_are_extracted_when_enabled(backend: Backend) {
    use sea_orm::EntityTrait;
    let app = spawn_app(backend).await;
    let (widget, _, _) = widget_with_kb(&app, ARTICLES).await;
    app.gql_ok(
        "mutation { updateOrgSettings(input: {aiAutoTraitsEnabled: true}) { id } }",
        json!({}),
    )
    .await;
    let r = app.gql_as(None, SEND, json!({ "i": { "widgetId": widget, "message": "Hi, my name is Ada Lovelace and my email is ada@engines.io. How do I reset my password?" } })).await;
    let session_id: Uuid = r["data"]["sendMessage"]["sessionId"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let session = entity::chat_session::Entity::find_by_id(session_id)
        .one(&app.state.db)
        .await
        .unwrap()
        .unwrap();
    let mut traits = Value::Null;
    for _ in 0..50 {
        let user = entity::end_user::Entity::find_by_id(session.end_user_id.unwrap())
            .one(&app.state.db)
            .await
            .unwrap()
            .unwrap();
        if user.traits.get("email").is_some() {
            traits = user.traits;
            assert!(!user.anonymous);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(traits["email"], "ada@engines.io", "{traits}");
    assert_eq!(traits["name"], "Ada Lovelace");
}

const START: &str =
    "mutation($i: TurnInput!) { startTurn(input: $i) { turnId sessionId sessionToken } }";
const FOLLOW: &str = "subscription($t: UUID!, $s: String) { chatTurn(turnId: $t, sessionToken: $s) { seq status text delta citations { articleId title } model } }";

fn seqs_and_statuses(events: &[Value]) -> (Vec<i64>, Vec<String>) {
    let evs: Vec<&Value> = events.iter().map(|p| &p["data"]["chatTurn"]).collect();
    (
        evs.iter().map(|e| e["seq"].as_i64().unwrap()).collect(),
        evs.iter()
            .map(|e| e["status"].as_str().unwrap().to_string())
            .collect(),
    )
}

on_both_databases!(chat_turn_streams_every_event_once_in_order);

async fn chat_turn_streams_every_event_once_in_order(backend: Backend) {
    let app = spawn_app(backend).await;
    let (widget, _, ids) = widget_with_kb(&app, ARTICLES).await;

    // Subscribe right after startTurn, racing the background turn.
    let started = app
        .gql_as(
            None,
            START,
            json!({ "i": { "widgetId": widget, "message": "How do I reset my password?" } }),
        )
        .await;
    let s = &started["data"]["startTurn"];
    let mut ws = WsClient::connect(&app.ws_url, json!({ "sessionToken": s["sessionToken"] })).await;
    ws.subscribe("turn", FOLLOW, json!({ "t": s["turnId"] }))
        .await;
    let events = ws.collect("turn", Duration::from_secs(10)).await;
    let (seqs, statuses) = seqs_and_statuses(&events);
    assert_eq!(
        seqs,
        (1..=seqs.len() as i64).collect::<Vec<_>>(),
        "no gap, no duplicate"
    );
    assert_eq!(statuses.first().map(String::as_str), Some("ANALYZING"));
    assert_eq!(statuses.last().map(String::as_str), Some("COMPLETED"));
    assert!(statuses.contains(&"ANSWER_DELTA".to_string()));
    let answered = events
        .iter()
        .map(|p| &p["data"]["chatTurn"])
        .find(|e| e["status"] == "ANSWERED")
        .unwrap();
    assert_eq!(answered["citations"][0]["articleId"], ids[0].as_str());
    let streamed: String = events
        .iter()
        .filter_map(|p| p["data"]["chatTurn"]["delta"].as_str())
        .collect();
    assert_eq!(streamed, answered["text"].as_str().unwrap());

    // Many subscribers at staggered times (before, during, after the turn) each see the same full sequence.
    for round in 0..3 {
        let started = app.gql_as(None, START, json!({ "i": { "widgetId": widget, "message": "Where are invoices exported?", "sessionToken": s["sessionToken"] } })).await;
        let turn = started["data"]["startTurn"]["turnId"].clone();
        let mut handles = vec![];
        for i in 0..6u64 {
            let url = app.ws_url.clone();
            let token = s["sessionToken"].clone();
            let turn = turn.clone();
            handles.push(tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(i * 7 * (round + 1))).await;
                let mut ws = WsClient::connect(&url, json!({})).await;
                ws.subscribe("t", FOLLOW, json!({ "t": turn, "s": token }))
                    .await;
                ws.collect("t", Duration::from_secs(10)).await
            }));
        }
        let mut reference: Option<Vec<String>> = None;
        for h in handles {
            let events = h.await.unwrap();
            let (seqs, statuses) = seqs_and_statuses(&events);
            assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>());
            assert_eq!(statuses.last().map(String::as_str), Some("COMPLETED"));
            match &reference {
                None => reference = Some(statuses),
                Some(r) => assert_eq!(r, &statuses),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_events_follow_a_conversation_for_dashboards() {
    let app = spawn_app(Backend::Sqlite).await;
    let (widget, _, _) = widget_with_kb(&app, ARTICLES).await;
    let first = app
        .gql_as(
            None,
            SEND,
            json!({ "i": { "widgetId": widget, "message": "reset password" } }),
        )
        .await;
    let r = &first["data"]["sendMessage"];
    let mut ws = WsClient::connect(&app.ws_url, json!({ "apiKey": app.api_key })).await;
    ws.subscribe(
        "s",
        "subscription($s: UUID!) { sessionEvents(sessionId: $s) { turnId seq status } }",
        json!({ "s": r["sessionId"] }),
    )
    .await;
    // Replay of the first turn.
    let mut seen = vec![];
    while seen
        .last()
        .map(|v: &Value| v["status"] != "COMPLETED")
        .unwrap_or(true)
    {
        let m = ws
            .next(Duration::from_secs(5))
            .await
            .expect("replayed event");
        seen.push(m["payload"]["data"]["sessionEvents"].clone());
    }
    assert_eq!(seen[0]["status"], "ANALYZING");
    // Then a live second turn.
    let second = app.gql_as(None, SEND, json!({ "i": { "widgetId": widget, "message": "invoices", "sessionToken": r["sessionToken"] } })).await;
    assert!(second["errors"].is_null(), "{second}");
    let second_turn = &second["data"]["sendMessage"]["turnId"];
    assert!(second_turn.is_string(), "{second}");
    let m = ws.next(Duration::from_secs(5)).await.expect("live event");
    assert_eq!(m["type"], "next", "{m}");
    assert!(m["payload"]["errors"].is_null(), "{m}");
    assert_eq!(
        m["payload"]["data"]["sessionEvents"]["turnId"], *second_turn,
        "{m}"
    );
    assert_ne!(m["payload"]["data"]["sessionEvents"]["turnId"], r["turnId"]);
    assert_eq!(m["payload"]["data"]["sessionEvents"]["seq"], 1);

    // Another org's key can't watch it.
    let (_, other) = app.create_org(wayfinder::domain::Plan::Pro).await;
    let mut ws = WsClient::connect(&app.ws_url, json!({ "apiKey": other })).await;
    ws.subscribe(
        "s",
        "subscription($s: UUID!) { sessionEvents(sessionId: $s) { seq } }",
        json!({ "s": r["sessionId"] }),
    )
    .await;
    let m = ws.next(Duration::from_secs(5)).await.unwrap();
    let errors = if m["type"] == "error" {
        m["payload"].clone()
    } else {
        m["payload"]["errors"].clone()
    };
    assert_eq!(errors[0]["extensions"]["code"], "NOT_FOUND", "{m}");
}

on_both_databases!(a_question_naming_a_published_flow_starts_it);

async fn a_question_naming_a_published_flow_starts_it(backend: Backend) {
    let app = spawn_app(backend).await;
    let site = app.gql_ok(r#"mutation { createSite(input: {name: "App", baseUrl: "https://app.example.com"}) { id } }"#, json!({})).await["createSite"]["id"].clone();
    let kb = app
        .gql_ok(
            r#"mutation { createKnowledgeBase(input: {name: "Help"}) { id } }"#,
            json!({}),
        )
        .await["createKnowledgeBase"]["id"]
        .clone();
    let bot = app.gql_ok("mutation($s: UUID!, $kb: UUID!) { createBot(input: {name: \"Guide\", siteId: $s, knowledgeBaseIds: [$kb]}) { id } }", json!({ "s": site, "kb": kb })).await["createBot"]["id"].clone();
    app.gql_ok(r#"mutation($s: UUID!) { updateSiteMap(input: {siteId: $s, pages: [{url: "/settings/team", elements: [{label: "Invite", role: "button", selector: "button#invite"}]}]}) { id } }"#, json!({ "s": site })).await;
    let widget = app.gql_ok("mutation($b: UUID!, $s: UUID!) { createChatWidget(input: {botId: $b, siteId: $s}) { id } }", json!({ "b": bot, "s": site })).await["createChatWidget"]["id"].clone();
    let step = r#"{pageUrl: "/settings/team", targetSelector: "button#invite", title: "Invite", body: "Click invite", placement: BOTTOM}"#;
    let flow = app.gql_ok(&format!(r#"mutation($s: UUID!) {{ createFlow(input: {{name: "Invite a teammate", siteId: $s, status: PUBLISHED, steps: [{step}]}}) {{ id }} }}"#), json!({ "s": site })).await["createFlow"]["id"].clone();
    app.gql_ok(&format!(r#"mutation($s: UUID!) {{ createFlow(input: {{name: "Export data", siteId: $s, steps: [{step}]}}) {{ id }} }}"#), json!({ "s": site })).await;

    let q = "mutation($i: TurnInput!) { sendMessage(input: $i) { turnId sessionToken status content { kind id name startUrl steps { targetSelector } } navigateTo } }";
    let r = app.gql_as(None, q, json!({ "i": { "widgetId": widget, "message": "how do I INVITE A TEAMMATE to my workspace?", "pageUrl": "https://app.example.com/home" } })).await;
    let m = &r["data"]["sendMessage"];
    assert_eq!(m["status"], "MATCHED_CONTENT", "{r}");
    assert_eq!(m["content"]["id"], flow);
    assert_eq!(m["content"]["kind"], "FLOW");
    assert_eq!(m["content"]["steps"][0]["targetSelector"], "button#invite");
    assert_eq!(m["navigateTo"], "https://app.example.com/settings/team");

    // The events, in order.
    let mut ws = WsClient::connect(&app.ws_url, json!({})).await;
    ws.subscribe("t", "subscription($t: UUID!, $s: String) { chatTurn(turnId: $t, sessionToken: $s) { status navigateTo content { id } } }", json!({ "t": m["turnId"], "s": m["sessionToken"] })).await;
    let statuses: Vec<String> = ws
        .collect("t", Duration::from_secs(5))
        .await
        .iter()
        .map(|p| {
            p["data"]["chatTurn"]["status"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        statuses,
        ["ANALYZING", "MATCHED_CONTENT", "NAVIGATING", "COMPLETED"]
    );

    // Already on the start page: no navigation. A draft flow never matches.
    let r = app.gql_as(None, q, json!({ "i": { "widgetId": widget, "message": "invite a teammate", "pageUrl": "https://app.example.com/settings/team" } })).await;
    assert_eq!(r["data"]["sendMessage"]["status"], "MATCHED_CONTENT");
    assert!(r["data"]["sendMessage"]["navigateTo"].is_null());
    let r = app
        .gql_as(
            None,
            q,
            json!({ "i": { "widgetId": widget, "message": "how to export data?" } }),
        )
        .await;
    assert!(r["errors"].is_null(), "{r}");
    // The bot's knowledge base is empty: with no flow matched, the canned reply.
    assert_eq!(r["data"]["sendMessage"]["status"], "FALLBACK", "{r}");
    assert!(r["data"]["sendMessage"]["content"].is_null(), "{r}");

    // Content for nobody (a visitor's generated flow) is never offered by name.
    {
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
        let id = uuid::Uuid::parse_str(flow.as_str().unwrap()).unwrap();
        entity::flow::Entity::update_many()
            .col_expr(entity::flow::Column::Audience, Expr::value("NO_USERS"))
            .filter(entity::flow::Column::Id.eq(id))
            .exec(&app.state.db)
            .await
            .unwrap();
    }
    let r = app
        .gql_as(
            None,
            q,
            json!({ "i": { "widgetId": widget, "message": "invite a teammate" } }),
        )
        .await;
    assert!(r["errors"].is_null(), "{r}");
    assert_eq!(r["data"]["sendMessage"]["status"], "FALLBACK", "{r}");
    assert!(r["data"]["sendMessage"]["content"].is_null(), "{r}");
}
