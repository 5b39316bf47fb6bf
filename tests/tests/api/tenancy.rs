//! Another org's ids behave exactly like nonexistent ids. Org A owns one of
//! everything, a real conversation included (session, turn, vote, ticket,
//! ledger entry, owner email, events); org B's key then tries every query,
//! filter argument, mutation and subscription that takes an id with A's ids.
//! Each answer must be the one a random id gets (`NOT_FOUND` with the same
//! message, or an empty list), while A, asking the same, finds its data: an
//! empty answer means isolation, not absence. Nothing of A changes.

use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;
use wayfinder::{domain::Plan, service};

use crate::{helpers::*, on_both_databases};

on_both_databases!(another_orgs_ids_are_not_found);

/// Everything org A owns, by id.
struct OrgA {
    kb: Value,
    art: Value,
    site: Value,
    bot: Value,
    flow: Value,
    tip: Value,
    /// Published, on the site, answering visitors.
    widget: Value,
    /// Unpublished: invisible to the public.
    hidden_widget: Value,
    key: Value,
    webhook: Value,
    session: Value,
    session_token: Value,
    turn: Value,
    /// The bot's reply in `turn`.
    message: Value,
    ticket: Value,
    /// The visitor of `session`.
    end_user: Value,
}

/// Org B's own objects, to point at A's from.
struct OrgB {
    key: String,
    bot: Value,
    widget: Value,
    flow: Value,
    tip: Value,
}

const OWN_EVENTS: &str = "subscription { orgEvents { kind payload } }";

/// The next `orgEvents` payload on `ws` (fails after 5 s).
async fn next_event(ws: &mut WsClient) -> Value {
    let msg = ws
        .next(Duration::from_secs(5))
        .await
        .expect("an orgEvents message");
    assert_eq!(msg["type"], "next", "{msg}");
    msg["payload"]["data"]["orgEvents"].clone()
}

/// Creates probe knowledge bases with `key` until `ws`'s `orgEvents` stream
/// shows one (a subscription starts asynchronously); returns their ids.
async fn warm_up(app: &TestApp, key: &str, ws: &mut WsClient) -> Vec<Value> {
    let mut probes = vec![];
    for _ in 0..20 {
        probes.push(
            create(
                app,
                Some(key),
                r#"mutation { createKnowledgeBase(input: {name: "probe"}) { id } }"#,
                json!({}),
                "createKnowledgeBase",
            )
            .await,
        );
        if let Some(msg) = ws.next(Duration::from_millis(300)).await {
            assert!(
                probes.contains(&msg["payload"]["data"]["orgEvents"]["payload"]["id"]),
                "{msg}"
            );
            return probes;
        }
    }
    panic!("orgEvents never started");
}

/// The errors of a graphql-ws operation's first answer.
async fn ws_errors(ws: &mut WsClient, id: &str, query: &str, variables: Value) -> Value {
    ws.subscribe(id, query, variables).await;
    // Skip what is left of earlier operations (the `complete` after an errored `next`).
    let msg = loop {
        let msg = ws.next(Duration::from_secs(5)).await.expect("an answer");
        if msg["id"] == id {
            break msg;
        }
    };
    match msg["type"].as_str() {
        Some("error") => msg["payload"].clone(),
        Some("next") => msg["payload"]["errors"].clone(),
        _ => panic!("{query}: expected a refusal, got {msg}"),
    }
}

/// Swaps every string value equal to one of A's ids in `vars` for a fresh random id.
fn with_random_ids(vars: &Value, theirs: &[&Value]) -> Value {
    match vars {
        Value::String(_) if theirs.contains(&vars) => json!(Uuid::now_v7()),
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| with_random_ids(v, theirs)).collect())
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), with_random_ids(v, theirs)))
                .collect(),
        ),
        other => other.clone(),
    }
}

async fn create(app: &TestApp, key: Option<&str>, q: &str, vars: Value, field: &str) -> Value {
    let r = app.gql_as(key, q, vars).await;
    assert!(r["errors"].is_null(), "{q}: {r}");
    let id = &r["data"][field]["id"];
    assert!(id.is_string(), "{q}: {r}");
    id.clone()
}

async fn populate_org_a(app: &TestApp) -> OrgA {
    let key = Some(app.api_key.as_str());
    let kb = create(
        app,
        key,
        r#"mutation { createKnowledgeBase(input: {name: "A kb"}) { id } }"#,
        json!({}),
        "createKnowledgeBase",
    )
    .await;
    let art = create(app, key, r#"mutation($kb: UUID!) { createKbArticle(input: {knowledgeBaseId: $kb, title: "Resetting your password", body: "Open the sign-in page and click Forgot password; the emailed link lasts an hour."}) { id } }"#, json!({ "kb": kb }), "createKbArticle").await;
    let site = create(app, key, r#"mutation { createSite(input: {name: "A site", baseUrl: "https://a.example.com"}) { id } }"#, json!({}), "createSite").await;
    let bot = create(app, key, r#"mutation($kb: UUID!, $s: UUID!) { createBot(input: {name: "A bot", knowledgeBaseIds: [$kb], siteId: $s, fallbackToHuman: true}) { id } }"#, json!({ "kb": kb, "s": site }), "createBot").await;
    let flow = create(app, key, r#"mutation($s: UUID!) { createFlow(input: {name: "A flow", siteId: $s, steps: [{pageUrl: "/", targetSelector: "a", title: "t", body: "b", placement: TOP}]}) { id } }"#, json!({ "s": site }), "createFlow").await;
    let tip = create(app, key, r#"mutation($s: UUID!) { createTooltip(input: {name: "A tip", siteId: $s, pageUrl: "/", targetSelector: "a", body: "b"}) { id } }"#, json!({ "s": site }), "createTooltip").await;
    let widget = create(app, key, r#"mutation($b: UUID!, $s: UUID!) { createChatWidget(input: {botId: $b, siteId: $s, allowedOrigins: ["*"]}) { id } }"#, json!({ "b": bot, "s": site }), "createChatWidget").await;
    let hidden_widget = create(app, key, r#"mutation($b: UUID!) { createChatWidget(input: {botId: $b, name: "Hidden", published: false}) { id } }"#, json!({ "b": bot }), "createChatWidget").await;
    let r = app
        .gql_ok(
            r#"mutation { createApiKey(input: {name: "A key"}) { apiKey { id } } }"#,
            json!({}),
        )
        .await;
    let api_key = r["createApiKey"]["apiKey"]["id"].clone();
    let r = app
        .gql_ok(r#"mutation { createWebhook(input: {url: "https://hooks.example.com/a", eventKinds: ["tenancy.never"]}) { webhook { id } } }"#, json!({}))
        .await;
    let webhook = r["createWebhook"]["webhook"]["id"].clone();
    assert!(webhook.is_string(), "{r}");

    // A visitor's conversation: a session, a turn, a vote and a hand-off ticket.
    let r = app
        .gql_as(None, "mutation($i: TurnInput!) { sendMessage(input: $i) { sessionId sessionToken turnId messageId status } }", json!({ "i": { "widgetId": widget, "message": "How do I reset my password?" } }))
        .await;
    assert_eq!(r["data"]["sendMessage"]["status"], "ANSWERED", "{r}");
    let m = r["data"]["sendMessage"].clone();
    let r = app
        .gql_as(None, "mutation($i: SubmitFeedbackInput!) { submitFeedback(input: $i) { ok } }", json!({ "i": { "messageId": m["messageId"], "vote": "UP", "sessionToken": m["sessionToken"] } }))
        .await;
    assert_eq!(r["data"]["submitFeedback"]["ok"], true, "{r}");
    let r = app
        .gql_as(
            None,
            "mutation($i: RequestHandoffInput!) { requestHandoff(input: $i) { ticketId } }",
            json!({ "i": { "sessionToken": m["sessionToken"], "email": "visitor@a.example.com" } }),
        )
        .await;
    let ticket = r["data"]["requestHandoff"]["ticketId"].clone();
    assert!(ticket.is_string(), "{r}");

    // A ledger entry and an owner email, as the operator's CLI and an empty balance make them.
    service::credits::grant(&app.state.db, app.org_id, 50, Some("tenancy".into()))
        .await
        .unwrap();
    let org = service::org::find(&app.state.db, app.org_id).await.unwrap();
    assert!(
        service::notify::out_of_credits(&app.state, &org)
            .await
            .unwrap()
    );

    let end_user = app
        .gql_ok(
            "query($id: UUID!) { chatSession(id: $id) { endUserId } }",
            json!({ "id": m["sessionId"] }),
        )
        .await["chatSession"]["endUserId"]
        .clone();
    assert!(end_user.is_string());
    OrgA {
        end_user,
        kb,
        art,
        site,
        bot,
        flow,
        tip,
        widget,
        hidden_widget,
        key: api_key,
        webhook,
        session: m["sessionId"].clone(),
        session_token: m["sessionToken"].clone(),
        turn: m["turnId"].clone(),
        message: m["messageId"].clone(),
        ticket,
    }
}

async fn populate_org_b(app: &TestApp, key: String) -> OrgB {
    let k = Some(key.as_str());
    let bot = create(
        app,
        k,
        r#"mutation { createBot(input: {name: "B bot"}) { id } }"#,
        json!({}),
        "createBot",
    )
    .await;
    let widget = create(
        app,
        k,
        r#"mutation($b: UUID!) { createChatWidget(input: {botId: $b}) { id } }"#,
        json!({ "b": bot }),
        "createChatWidget",
    )
    .await;
    let flow = create(app, k, r#"mutation { createFlow(input: {name: "B flow", steps: [{pageUrl: "/", targetSelector: "b", title: "t", body: "b", placement: TOP}]}) { id } }"#, json!({}), "createFlow").await;
    let tip = create(app, k, r#"mutation { createTooltip(input: {name: "B tip", pageUrl: "/", targetSelector: "b", body: "b"}) { id } }"#, json!({}), "createTooltip").await;
    OrgB {
        key,
        bot,
        widget,
        flow,
        tip,
    }
}

async fn another_orgs_ids_are_not_found(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_b_org, b_key) = app.create_org(Plan::Enterprise).await;

    // Both orgs follow their outbox events from before A does anything.
    let mut b_events = WsClient::connect(&app.ws_url, json!({ "apiKey": b_key })).await;
    b_events.subscribe("ev", OWN_EVENTS, json!({})).await;
    let b_probes = warm_up(&app, &b_key, &mut b_events).await;
    let mut a_events = WsClient::connect(&app.ws_url, json!({ "apiKey": app.api_key })).await;
    a_events.subscribe("ev", OWN_EVENTS, json!({})).await;
    let a_probes = warm_up(&app, &app.api_key, &mut a_events).await;

    let a = populate_org_a(&app).await;
    let b = populate_org_b(&app, b_key.clone()).await;
    let ids: Vec<&Value> = vec![
        &a.kb,
        &a.art,
        &a.site,
        &a.bot,
        &a.flow,
        &a.tip,
        &a.widget,
        &a.hidden_widget,
        &a.key,
        &a.webhook,
        &a.session,
        &a.turn,
        &a.message,
        &a.ticket,
        &a.end_user,
    ];
    // A's events were published: A's own stream has them (after any late probe).
    loop {
        let id = next_event(&mut a_events).await["payload"]["id"].clone();
        if id == a.kb {
            break;
        }
        assert!(a_probes.contains(&id), "A's first event is its kb: {id}");
    }

    // As B: the same refusal for A's ids as for random ones.
    let refused_like_missing = |q: &'static str, vars: Value| {
        let (app, key, ids) = (&app, b.key.clone(), ids.clone());
        async move {
            let theirs = app.gql_as(Some(&key), q, vars.clone()).await;
            let random = app
                .gql_as(Some(&key), q, with_random_ids(&vars, &ids))
                .await;
            assert_eq!(error_code(&theirs), Some("NOT_FOUND"), "{q}: {theirs}");
            assert_eq!(
                theirs["errors"],
                random["errors"].clone(),
                "{q}: like a missing id"
            );
            assert!(theirs["data"].is_null(), "{q}: {theirs}");
        }
    };

    // Single reads by id.
    for (q, id) in [
        ("query($id: UUID!) { knowledgeBase(id: $id) { id } }", &a.kb),
        ("query($id: UUID!) { kbArticle(id: $id) { id } }", &a.art),
        ("query($id: UUID!) { site(id: $id) { id } }", &a.site),
        ("query($id: UUID!) { bot(id: $id) { id } }", &a.bot),
        ("query($id: UUID!) { flow(id: $id) { id } }", &a.flow),
        ("query($id: UUID!) { tooltip(id: $id) { id } }", &a.tip),
        (
            "query($id: UUID!) { chatWidget(id: $id) { id } }",
            &a.widget,
        ),
        (
            "query($id: UUID!) { chatSession(id: $id) { id } }",
            &a.session,
        ),
        ("query($id: UUID!) { webhook(id: $id) { id } }", &a.webhook),
        ("query($id: UUID!) { endUser(id: $id) { id } }", &a.end_user),
        ("query($id: UUID) { exportEndUser(id: $id) }", &a.end_user),
        (
            "query($id: UUID!) { widgetConfig(widgetId: $id) { personaName } }",
            &a.hidden_widget,
        ),
        (
            "query($id: [UUID!]) { kbSearch(knowledgeBaseIds: $id, query: \"reset password\") { articleId } }",
            &json!([a.kb]),
        ),
    ] {
        let mine = app.gql(q, json!({ "id": id })).await;
        if !q.contains("widgetConfig") {
            assert!(mine["errors"].is_null(), "A finds its own: {q}: {mine}");
        }
        refused_like_missing(q, json!({ "id": id })).await;
    }

    // Filter arguments: empty for B, exactly as for a random id; A finds something with each.
    for (q, path, vars) in [
        (
            "query($id: UUID) { chatSessions(botId: $id) { nodes { id } } }",
            "chatSessions",
            json!({ "id": a.bot }),
        ),
        (
            "query($id: UUID) { chatSessions(widgetId: $id) { nodes { id } } }",
            "chatSessions",
            json!({ "id": a.widget }),
        ),
        (
            "query($id: UUID) { chatSessions(endUserId: $id) { nodes { id } } }",
            "chatSessions",
            json!({ "id": a.end_user }),
        ),
        (
            "query($id: UUID) { endUsers(filter: {chatWidgetId: $id}) { nodes { id } } }",
            "endUsers",
            json!({ "id": a.widget }),
        ),
        (
            "query($id: UUID) { kbArticles(knowledgeBaseId: $id) { nodes { id } } }",
            "kbArticles",
            json!({ "id": a.kb }),
        ),
        (
            "query($id: UUID) { flows(filter: {siteId: $id}) { nodes { id } } }",
            "flows",
            json!({ "id": a.site }),
        ),
        (
            "query($id: UUID) { tooltips(filter: {siteId: $id}) { nodes { id } } }",
            "tooltips",
            json!({ "id": a.site }),
        ),
    ] {
        let mine = app.gql_ok(q, vars.clone()).await;
        assert_eq!(
            mine[path]["nodes"].as_array().unwrap().len(),
            1,
            "A finds its own: {q}: {mine}"
        );
        let theirs = app.gql_as(Some(&b.key), q, vars.clone()).await;
        let random = app
            .gql_as(Some(&b.key), q, with_random_ids(&vars, &ids))
            .await;
        assert!(theirs["errors"].is_null(), "{q}: {theirs}");
        assert_eq!(
            theirs["data"][path]["nodes"],
            json!([]),
            "{q} leaked: {theirs}"
        );
        assert_eq!(theirs, random, "{q}: like a missing id");
    }
    // A search over everything B has finds nothing of A's (A's own search finds the article).
    let q = "{ kbSearch(query: \"reset password\") { articleId } }";
    let mine = app.gql_ok(q, json!({})).await;
    assert_eq!(mine["kbSearch"][0]["articleId"], a.art, "{mine}");
    let theirs = app.gql_as(Some(&b.key), q, json!({})).await;
    assert_eq!(theirs["data"]["kbSearch"], json!([]), "{theirs}");

    // Unfiltered lists: nothing of A's (each one non-empty for A).
    let lists = "{ knowledgeBases { nodes { id } } kbArticles { nodes { id } } sites { nodes { id } } bots { nodes { id } } flows { nodes { id } } tooltips { nodes { id } } chatWidgets { nodes { id } } chatSessions { nodes { id } } supportTickets { nodes { id } } feedback { nodes { id } } webhooks { nodes { id } } notifications { nodes { id } } endUsers { nodes { id } } }";
    let mine = app.gql_ok(lists, json!({})).await;
    for (field, list) in mine.as_object().unwrap() {
        assert!(
            !list["nodes"].as_array().unwrap().is_empty(),
            "A has {field}: {mine}"
        );
    }
    let theirs = app.gql_as(Some(&b.key), lists, json!({})).await;
    assert!(theirs["errors"].is_null(), "{theirs}");
    for (field, list) in theirs["data"].as_object().unwrap() {
        for node in list["nodes"].as_array().unwrap() {
            assert!(
                !ids.contains(&&node["id"]),
                "{field} leaked {node}: {theirs}"
            );
        }
        let own = match field.as_str() {
            "knowledgeBases" => b_probes.len(),
            "bots" | "chatWidgets" | "flows" | "tooltips" => 1,
            _ => 0,
        };
        assert_eq!(
            list["nodes"].as_array().unwrap().len(),
            own,
            "{field}: only B's own: {theirs}"
        );
    }
    let keys = app
        .gql_as(
            Some(&b.key),
            "{ apiKeys(includeRevoked: true) { nodes { id } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        keys["data"]["apiKeys"]["nodes"].as_array().unwrap().len(),
        1,
        "only B's own key: {keys}"
    );
    let credits = "{ org { name } credits { balance ledger(first: 100) { nodes { id amount } } } }";
    let mine = app.gql_ok(credits, json!({})).await;
    assert_eq!(
        mine["credits"]["ledger"]["nodes"][0]["amount"], 50,
        "{mine}"
    );
    let theirs = app.gql_as(Some(&b.key), credits, json!({})).await;
    assert_eq!(theirs["data"]["org"]["name"], "Other org", "{theirs}");
    assert_eq!(theirs["data"]["credits"]["balance"], 0, "{theirs}");
    assert_eq!(
        theirs["data"]["credits"]["ledger"]["nodes"],
        json!([]),
        "{theirs}"
    );
    let events = "{ events(first: 100) { nodes { payload } } }";
    let mine = app.gql_ok(events, json!({})).await;
    assert!(mine.to_string().contains(a.bot.as_str().unwrap()), "{mine}");
    let theirs = app.gql_as(Some(&b.key), events, json!({})).await;
    assert!(theirs["errors"].is_null(), "{theirs}");
    for id in &ids {
        assert!(
            !theirs.to_string().contains(id.as_str().unwrap()),
            "A's events leaked: {theirs}"
        );
    }

    // Subscriptions: A's turn and session are as unknown to B as random ones.
    let mut ws = WsClient::connect(&app.ws_url, json!({ "apiKey": b.key })).await;
    for (n, (q, vars)) in [
        ("subscription($t: UUID!) { chatTurn(turnId: $t) { seq } }", json!({ "t": a.turn })),
        ("subscription($t: UUID!, $s: String) { chatTurn(turnId: $t, sessionToken: $s) { seq } }", json!({ "t": a.turn, "s": a.session_token })),
        ("subscription($s: UUID!) { sessionEvents(sessionId: $s) { seq } }", json!({ "s": a.session })),
        ("subscription($s: UUID!, $t: String) { sessionEvents(sessionId: $s, sessionToken: $t) { seq } }", json!({ "s": a.session, "t": a.session_token })),
    ]
    .into_iter()
    .enumerate()
    {
        let theirs = ws_errors(&mut ws, &format!("t{n}"), q, vars.clone()).await;
        let random = ws_errors(&mut ws, &format!("r{n}"), q, with_random_ids(&vars, &ids)).await;
        assert_eq!(theirs[0]["extensions"]["code"], "NOT_FOUND", "{q}: {theirs}");
        assert_eq!(theirs[0]["message"], random[0]["message"], "{q}: like a missing id");
    }
    // A can follow both.
    let mut mine = WsClient::connect(&app.ws_url, json!({ "apiKey": app.api_key })).await;
    mine.subscribe(
        "t",
        "subscription($t: UUID!) { chatTurn(turnId: $t) { status } }",
        json!({ "t": a.turn }),
    )
    .await;
    let turn = mine.collect("t", Duration::from_secs(5)).await;
    assert_eq!(
        turn.last().unwrap()["data"]["chatTurn"]["status"],
        "COMPLETED",
        "{turn:?}"
    );

    // Writes on A's objects: NOT_FOUND like a missing id.
    for (q, id) in [
        (
            "mutation($id: UUID!) { updateKnowledgeBase(input: {id: $id, name: \"pwned\"}) { id } }",
            &a.kb,
        ),
        (
            "mutation($id: UUID!) { updateKbArticle(input: {id: $id, title: \"pwned\"}) { id } }",
            &a.art,
        ),
        (
            "mutation($id: UUID!) { updateSite(input: {id: $id, name: \"pwned\"}) { id } }",
            &a.site,
        ),
        (
            "mutation($id: UUID!) { updateSiteMap(input: {siteId: $id, pages: []}) { id } }",
            &a.site,
        ),
        (
            "mutation($id: UUID!) { updateBot(input: {id: $id, name: \"pwned\"}) { id } }",
            &a.bot,
        ),
        (
            "mutation($id: UUID!) { updateFlow(input: {id: $id, name: \"pwned\"}) { id } }",
            &a.flow,
        ),
        (
            "mutation($id: UUID!) { publishFlow(id: $id) { id } }",
            &a.flow,
        ),
        (
            "mutation($id: UUID!) { updateTooltip(input: {id: $id, name: \"pwned\"}) { id } }",
            &a.tip,
        ),
        (
            "mutation($id: UUID!) { updateChatWidget(input: {id: $id, name: \"pwned\"}) { id } }",
            &a.widget,
        ),
        (
            "mutation($id: UUID!) { updateApiKey(input: {id: $id, name: \"pwned\"}) { id } }",
            &a.key,
        ),
        (
            "mutation($id: UUID!) { updateWebhook(input: {id: $id, active: false}) { id } }",
            &a.webhook,
        ),
        (
            "mutation($id: UUID!) { updateTicket(input: {id: $id, status: CLOSED}) { id } }",
            &a.ticket,
        ),
        (
            "mutation($id: UUID!) { rotateChatWidgetIdentitySecret(id: $id) { id } }",
            &a.widget,
        ),
        (
            "mutation($id: UUID) { deleteEndUser(id: $id) { sessions } }",
            &a.end_user,
        ),
        (
            "mutation($id: UUID!) { submitFeedback(input: {messageId: $id, vote: DOWN, openTicket: true}) { ok } }",
            &a.message,
        ),
        (
            "mutation($id: UUID!) { sendMessage(input: {botId: $id, message: \"hi\"}) { turnId } }",
            &a.bot,
        ),
        (
            "mutation($id: UUID!) { startTurn(input: {botId: $id, message: \"hi\"}) { turnId } }",
            &a.bot,
        ),
        (
            "mutation($id: UUID!) { deleteApiKey(id: $id) { id } }",
            &a.key,
        ),
        (
            "mutation($id: UUID!) { deleteWebhook(id: $id) { id } }",
            &a.webhook,
        ),
        (
            "mutation($id: UUID!) { deleteChatWidget(id: $id) { id } }",
            &a.widget,
        ),
        (
            "mutation($id: UUID!) { deleteTooltip(id: $id) { id } }",
            &a.tip,
        ),
        (
            "mutation($id: UUID!) { deleteFlow(id: $id) { id } }",
            &a.flow,
        ),
        ("mutation($id: UUID!) { deleteBot(id: $id) { id } }", &a.bot),
        (
            "mutation($id: UUID!) { deleteSite(id: $id) { id } }",
            &a.site,
        ),
        (
            "mutation($id: UUID!) { deleteKbArticle(id: $id) { id } }",
            &a.art,
        ),
        (
            "mutation($id: UUID!) { deleteKnowledgeBase(id: $id) { id } }",
            &a.kb,
        ),
    ] {
        refused_like_missing(q, json!({ "id": id })).await;
    }
    // References to A's objects from B's own: NOT_FOUND naming the field, like a missing id.
    for (q, vars) in [
        (
            "mutation($kb: UUID!) { createKbArticle(input: {knowledgeBaseId: $kb, title: \"x\", body: \"y\"}) { id } }",
            json!({ "kb": a.kb }),
        ),
        (
            "mutation($kb: UUID!) { createBot(input: {name: \"x\", knowledgeBaseIds: [$kb]}) { id } }",
            json!({ "kb": a.kb }),
        ),
        (
            "mutation($s: UUID!) { createBot(input: {name: \"x\", siteId: $s}) { id } }",
            json!({ "s": a.site }),
        ),
        (
            "mutation($b: UUID!) { createChatWidget(input: {botId: $b}) { id } }",
            json!({ "b": a.bot }),
        ),
        (
            "mutation($b: UUID!, $s: UUID!) { createChatWidget(input: {botId: $b, siteId: $s}) { id } }",
            json!({ "b": b.bot, "s": a.site }),
        ),
        (
            "mutation($s: UUID!) { createFlow(input: {name: \"x\", siteId: $s, steps: [{pageUrl: \"/\", targetSelector: \"a\", title: \"t\", body: \"b\", placement: TOP}]}) { id } }",
            json!({ "s": a.site }),
        ),
        (
            "mutation($s: UUID!) { createTooltip(input: {name: \"x\", siteId: $s, pageUrl: \"/\", targetSelector: \"a\", body: \"b\"}) { id } }",
            json!({ "s": a.site }),
        ),
        (
            "mutation($id: UUID!, $kb: UUID!) { updateBot(input: {id: $id, knowledgeBaseIds: [$kb]}) { id } }",
            json!({ "id": b.bot, "kb": a.kb }),
        ),
        (
            "mutation($id: UUID!, $s: UUID!) { updateBot(input: {id: $id, siteId: $s}) { id } }",
            json!({ "id": b.bot, "s": a.site }),
        ),
        (
            "mutation($id: UUID!, $b: UUID!) { updateChatWidget(input: {id: $id, botId: $b}) { id } }",
            json!({ "id": b.widget, "b": a.bot }),
        ),
        (
            "mutation($id: UUID!, $s: UUID!) { updateChatWidget(input: {id: $id, siteId: $s}) { id } }",
            json!({ "id": b.widget, "s": a.site }),
        ),
        (
            "mutation($id: UUID!, $s: UUID!) { updateFlow(input: {id: $id, siteId: $s}) { id } }",
            json!({ "id": b.flow, "s": a.site }),
        ),
        (
            "mutation($id: UUID!, $s: UUID!) { updateTooltip(input: {id: $id, siteId: $s}) { id } }",
            json!({ "id": b.tip, "s": a.site }),
        ),
    ] {
        let theirs = app.gql_as(Some(&b.key), q, vars.clone()).await;
        assert!(
            theirs["errors"][0]["extensions"]["field"].is_string(),
            "{q}: {theirs}"
        );
        refused_like_missing(q, vars).await;
    }
    // A's session token does not carry B's key into A's conversation.
    let r = app
        .gql_as(Some(&b.key), "mutation($b: UUID!, $t: String) { sendMessage(input: {botId: $b, message: \"hi\", sessionToken: $t}) { turnId } }", json!({ "b": b.bot, "t": a.session_token }))
        .await;
    assert_eq!(error_code(&r), Some("FORBIDDEN"), "{r}");

    // The REST adapter that names an org: A's id is as unknown to B's key as a random one.
    let mut answers = vec![];
    for org in [app.org_id, Uuid::now_v7()] {
        let resp = app
            .client
            .post(format!("{}/api/v1/orgs/{org}/chatbots", app.address))
            .header("x-api-key", &b.key)
            .json(&json!({ "name": "B's bot in A", "allowedOrigins": ["*"] }))
            .send()
            .await
            .unwrap();
        answers.push((resp.status(), resp.json::<Value>().await.unwrap()));
    }
    assert_eq!(answers[0].0, 404, "{:?}", answers[0]);
    assert_eq!(answers[0], answers[1], "like a missing org");
    let bots = app.gql_ok("{ bots { nodes { name } } }", json!({})).await;
    assert_eq!(bots["bots"]["nodes"], json!([{ "name": "A bot" }]));

    // B's outbox stream carried none of A's events: its next event is B's own.
    let end = create(
        &app,
        Some(&b.key),
        r#"mutation { createKnowledgeBase(input: {name: "B end"}) { id } }"#,
        json!({}),
        "createKnowledgeBase",
    )
    .await;
    // B's own objects (and any late probe) come first, then the end marker.
    loop {
        let ev = next_event(&mut b_events).await;
        assert!(
            !ids.contains(&&ev["payload"]["id"]),
            "orgEvents leaked {ev}"
        );
        if ev["payload"]["id"] == end {
            break;
        }
    }

    // A's objects are untouched.
    let mine = app
        .gql_ok(
            "query($kb: UUID!, $a: UUID!, $b: UUID!, $s: UUID!, $f: UUID!, $t: UUID!, $w: UUID!, $h: UUID!, $session: UUID!) { knowledgeBase(id: $kb) { name } kbArticle(id: $a) { title } bot(id: $b) { name knowledgeBaseIds siteId } site(id: $s) { name } flow(id: $f) { name status siteId } tooltip(id: $t) { name } chatWidget(id: $w) { name botId siteId } webhook(id: $h) { active } chatSession(id: $session) { messages(first: 100) { nodes { id } } } apiKeys { nodes { name revokedAt } } supportTickets { nodes { status } } }",
            json!({ "kb": a.kb, "a": a.art, "b": a.bot, "s": a.site, "f": a.flow, "t": a.tip, "w": a.widget, "h": a.webhook, "session": a.session }),
        )
        .await;
    assert_eq!(mine["knowledgeBase"]["name"], "A kb");
    assert_eq!(mine["kbArticle"]["title"], "Resetting your password");
    assert_eq!(
        mine["bot"],
        json!({ "name": "A bot", "knowledgeBaseIds": [a.kb], "siteId": a.site })
    );
    assert_eq!(mine["site"]["name"], "A site");
    assert_eq!(
        mine["flow"],
        json!({ "name": "A flow", "status": "DRAFT", "siteId": a.site })
    );
    assert_eq!(mine["tooltip"]["name"], "A tip");
    assert_eq!(
        mine["chatWidget"],
        json!({ "name": "Chat widget", "botId": a.bot, "siteId": a.site })
    );
    assert_eq!(mine["webhook"]["active"], true);
    assert_eq!(
        mine["supportTickets"]["nodes"],
        json!([{ "status": "OPEN" }])
    );
    let keys = mine["apiKeys"]["nodes"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "{mine}");
    assert!(
        keys.iter()
            .all(|k| k["revokedAt"].is_null() && k["name"] != "pwned")
    );
    // The session holds the first turn and the hand-off, nothing B sent.
    let messages = mine["chatSession"]["messages"]["nodes"]
        .as_array()
        .unwrap()
        .len();
    let feedback = app
        .gql_ok("{ feedback { nodes { vote } } }", json!({}))
        .await;
    assert_eq!(
        feedback["feedback"]["nodes"],
        json!([{ "vote": "UP" }]),
        "B's downvote changed nothing"
    );
    let turns = app
        .gql_ok("query($s: UUID!) { chatSession(id: $s) { messages(first: 100) { nodes { turnId } } } }", json!({ "s": a.session }))
        .await;
    let mut turn_ids: Vec<String> = turns["chatSession"]["messages"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["turnId"].as_str().unwrap().to_string())
        .collect();
    turn_ids.dedup();
    assert_eq!(
        turn_ids.len(),
        2,
        "the visitor's turn and the hand-off only ({messages} messages)"
    );
}
