//! Every dashboard object can be created, read, listed (with cursors),
//! updated and deleted, and each change lands in the outbox.

use serde_json::json;

use crate::{helpers::*, on_both_databases};

on_both_databases!(
    dashboard_objects_round_trip,
    lists_paginate_with_cursors,
    org_settings_and_credits
);

async fn dashboard_objects_round_trip(backend: Backend) {
    let app = spawn_app(backend).await;

    let kb = app.gql_ok(r#"mutation { createKnowledgeBase(input: {name: "Help", description: "How to"}) { id name } }"#, json!({})).await;
    let kb_id = kb["createKnowledgeBase"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let art = app
        .gql_ok(
            r#"mutation($kb: UUID!) { createKbArticle(input: {knowledgeBaseId: $kb, title: "Reset password", body: "Click Forgot password."}) { id title published knowledgeBaseId } }"#,
            json!({ "kb": kb_id }),
        )
        .await;
    assert_eq!(art["createKbArticle"]["published"], true);
    let art_id = art["createKbArticle"]["id"].as_str().unwrap().to_string();

    let site = app.gql_ok(r#"mutation { createSite(input: {name: "App", baseUrl: "https://app.example.com"}) { id mappingStatus } }"#, json!({})).await;
    assert_eq!(site["createSite"]["mappingStatus"], "NOT_STARTED");
    let site_id = site["createSite"]["id"].as_str().unwrap().to_string();
    let mapped = app
        .gql_ok(
            r#"mutation($s: UUID!) { updateSiteMap(input: {siteId: $s, pages: [{url: "/settings", title: "Settings", elements: [{label: "Save", selector: "button#save", role: "button"}]}]}) { mappingStatus pages { url elements { selector } } } }"#,
            json!({ "s": site_id }),
        )
        .await;
    assert_eq!(mapped["updateSiteMap"]["mappingStatus"], "COMPLETED");
    assert_eq!(
        mapped["updateSiteMap"]["pages"][0]["elements"][0]["selector"],
        "button#save"
    );

    let bot = app
        .gql_ok(
            r##"mutation($kb: UUID!, $s: UUID!) { createBot(input: {name: "Helper", systemPrompt: "Be kind", personaName: "Ava", greeting: "Hi", knowledgeBaseIds: [$kb], siteId: $s, fallbackToHuman: true, handoffMessage: "A human will reply", fallbackMessage: "Sorry", primaryColor: "#112233"}) { id personaName knowledgeBaseIds siteId primaryColor } }"##,
            json!({ "kb": kb_id, "s": site_id }),
        )
        .await;
    let bot_id = bot["createBot"]["id"].as_str().unwrap().to_string();
    assert_eq!(bot["createBot"]["knowledgeBaseIds"], json!([kb_id]));
    let updated = app
        .gql_ok(r#"mutation($id: UUID!) { updateBot(input: {id: $id, greeting: "Hello!", siteId: null}) { greeting siteId personaName } }"#, json!({ "id": bot_id }))
        .await;
    assert_eq!(
        updated["updateBot"],
        json!({ "greeting": "Hello!", "siteId": null, "personaName": "Ava" })
    );

    let flow = app
        .gql_ok(
            r#"mutation($s: UUID!) { createFlow(input: {name: "Invite a teammate", siteId: $s, steps: [{pageUrl: "/settings", targetSelector: "button#save", title: "Save", body: "Click save", placement: BOTTOM}]}) { id status source audience steps { placement } } }"#,
            json!({ "s": site_id }),
        )
        .await;
    assert_eq!(flow["createFlow"]["status"], "DRAFT");
    assert_eq!(flow["createFlow"]["source"], "MANUAL");
    let flow_id = flow["createFlow"]["id"].as_str().unwrap().to_string();
    let published = app
        .gql_ok(
            r#"mutation($id: UUID!) { publishFlow(id: $id) { status } }"#,
            json!({ "id": flow_id }),
        )
        .await;
    assert_eq!(published["publishFlow"]["status"], "PUBLISHED");

    let tip = app
        .gql_ok(r#"mutation { createTooltip(input: {name: "Save tip", pageUrl: "/settings", targetSelector: "button#save", body: "Saves", status: PUBLISHED}) { id status } }"#, json!({}))
        .await;
    let tip_id = tip["createTooltip"]["id"].as_str().unwrap().to_string();

    let widget = app
        .gql_ok(
            r#"mutation($b: UUID!) { createChatWidget(input: {botId: $b, allowedOrigins: ["https://www.example.com/"]}) { id allowedOrigins published } }"#,
            json!({ "b": bot_id }),
        )
        .await;
    assert_eq!(
        widget["createChatWidget"]["allowedOrigins"],
        json!(["https://www.example.com"])
    );
    let widget_id = widget["createChatWidget"]["id"]
        .as_str()
        .unwrap()
        .to_string();

    // The public config needs no key and carries a contact challenge.
    let config = app
        .gql_as(None, r#"query($w: UUID!) { widgetConfig(widgetId: $w) { personaName greeting contactChallenge contactMinFillMs } }"#, json!({ "w": widget_id }))
        .await;
    assert_eq!(config["data"]["widgetConfig"]["personaName"], "Ava");
    assert_eq!(config["data"]["widgetConfig"]["greeting"], "Hello!");
    assert!(
        config["data"]["widgetConfig"]["contactChallenge"]
            .as_str()
            .unwrap()
            .contains('.')
    );

    // Reads.
    let read = app
        .gql_ok(
            r#"query($kb: UUID!, $a: UUID!, $b: UUID!, $f: UUID!, $t: UUID!, $w: UUID!) {
                knowledgeBase(id: $kb) { name articles { nodes { id } } }
                kbArticle(id: $a) { title } bot(id: $b) { name } flow(id: $f) { name } tooltip(id: $t) { name } chatWidget(id: $w) { botId }
                bots { nodes { id } } sites { nodes { id } } flows(filter: {status: PUBLISHED}) { nodes { id } } tooltips { nodes { id } } chatWidgets { nodes { id } }
                kbArticles(knowledgeBaseId: $kb) { nodes { id } }
            }"#,
            json!({ "kb": kb_id, "a": art_id, "b": bot_id, "f": flow_id, "t": tip_id, "w": widget_id }),
        )
        .await;
    assert_eq!(
        read["knowledgeBase"]["articles"]["nodes"][0]["id"],
        art_id.as_str()
    );
    assert_eq!(read["flows"]["nodes"].as_array().unwrap().len(), 1);
    assert_eq!(read["chatWidget"]["botId"], bot_id.as_str());

    // Deletes, then the objects are gone.
    for (m, id) in [
        ("deleteChatWidget", &widget_id),
        ("deleteTooltip", &tip_id),
        ("deleteFlow", &flow_id),
        ("deleteBot", &bot_id),
        ("deleteSite", &site_id),
        ("deleteKbArticle", &art_id),
        ("deleteKnowledgeBase", &kb_id),
    ] {
        let d = app
            .gql_ok(
                &format!("mutation($id: UUID!) {{ {m}(id: $id) {{ id }} }}"),
                json!({ "id": id }),
            )
            .await;
        assert_eq!(d[m]["id"], id.as_str());
    }
    let gone = app
        .gql(
            r#"query($id: UUID!) { bot(id: $id) { id } }"#,
            json!({ "id": bot_id }),
        )
        .await;
    assert_eq!(error_code(&gone), Some("NOT_FOUND"));

    // Every change is in the outbox.
    let events = app
        .gql_ok(
            r#"{ events(first: 100) { nodes { kind payload } } }"#,
            json!({}),
        )
        .await;
    let kinds: Vec<&str> = events["events"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    for k in [
        "knowledge_base.created",
        "kb_article.created",
        "site.created",
        "site.mapped",
        "bot.created",
        "bot.updated",
        "flow.created",
        "flow.published",
        "tooltip.created",
        "chat_widget.created",
        "chat_widget.deleted",
        "bot.deleted",
        "knowledge_base.deleted",
    ] {
        assert!(kinds.contains(&k), "missing event {k} in {kinds:?}");
    }
}

async fn lists_paginate_with_cursors(backend: Backend) {
    let app = spawn_app(backend).await;
    for i in 0..5 {
        app.gql_ok(
            &format!(r#"mutation {{ createKnowledgeBase(input: {{name: "kb{i}"}}) {{ id }} }}"#),
            json!({}),
        )
        .await;
    }
    let first = app.gql_ok(r#"{ knowledgeBases(first: 2) { edges { cursor node { name } } pageInfo { hasNextPage endCursor } } }"#, json!({})).await;
    let page = &first["knowledgeBases"];
    assert_eq!(page["edges"][0]["node"]["name"], "kb0");
    assert_eq!(page["pageInfo"]["hasNextPage"], true);
    let mut after = page["pageInfo"]["endCursor"].as_str().unwrap().to_string();
    let mut names = vec!["kb0".to_string(), "kb1".to_string()];
    loop {
        let next = app
            .gql_ok(r#"query($a: String) { knowledgeBases(first: 2, after: $a) { nodes { name } pageInfo { hasNextPage endCursor } } }"#, json!({ "a": after }))
            .await;
        for n in next["knowledgeBases"]["nodes"].as_array().unwrap() {
            names.push(n["name"].as_str().unwrap().to_string());
        }
        if next["knowledgeBases"]["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = next["knowledgeBases"]["pageInfo"]["endCursor"]
            .as_str()
            .unwrap()
            .to_string();
    }
    assert_eq!(names, ["kb0", "kb1", "kb2", "kb3", "kb4"]);
    let bad = app
        .gql(
            r#"{ knowledgeBases(first: 2, after: "nope") { nodes { name } } }"#,
            json!({}),
        )
        .await;
    assert_eq!(error_code(&bad), Some("BAD_USER_INPUT"));
    let too_many = app
        .gql(
            r#"{ knowledgeBases(first: 1000) { nodes { name } } }"#,
            json!({}),
        )
        .await;
    assert_eq!(error_code(&too_many), Some("BAD_USER_INPUT"));
}

async fn org_settings_and_credits(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app
        .gql_ok(
            r#"{ org { id plan aiChatbotEnabled creditBalance } }"#,
            json!({}),
        )
        .await;
    assert_eq!(org["org"]["plan"], "PRO");
    assert_eq!(org["org"]["id"], app.org_id.to_string());
    let upd = app
        .gql_ok(r#"mutation { updateOrgSettings(input: {aiChatbotEnabled: false, aiAutoTraitsEnabled: true, ownerEmail: "boss@example.com"}) { aiChatbotEnabled aiAutoTraitsEnabled ownerEmail } }"#, json!({}))
        .await;
    assert_eq!(
        upd["updateOrgSettings"],
        json!({ "aiChatbotEnabled": false, "aiAutoTraitsEnabled": true, "ownerEmail": "boss@example.com" })
    );
    // Credits are the operator's: the org's own key may not grant itself any.
    let own = app
        .gql(
            r#"mutation($o: UUID!) { grantCredits(input: {orgId: $o, amount: 250}) { balance } }"#,
            json!({ "o": app.org_id }),
        )
        .await;
    assert_eq!(error_code(&own), Some("FORBIDDEN"), "{own}");
    let operator = app.operator_key().await;
    let granted = app
        .gql_as(
            Some(&operator),
            r#"mutation($o: UUID!) { grantCredits(input: {orgId: $o, amount: 250, note: "welcome"}) { balance } }"#,
            json!({ "o": app.org_id }),
        )
        .await;
    assert_eq!(granted["data"]["grantCredits"]["balance"], 250, "{granted}");
    let credits = app
        .gql_ok(
            r#"{ credits { balance ledger { nodes { amount kind note } } } }"#,
            json!({}),
        )
        .await;
    assert_eq!(credits["credits"]["balance"], 250);
    assert_eq!(
        credits["credits"]["ledger"]["nodes"],
        json!([{ "amount": 250, "kind": "GRANT", "note": "welcome" }])
    );
    let negative = app
        .gql_as(
            Some(&operator),
            r#"mutation($o: UUID!) { grantCredits(input: {orgId: $o, amount: -5}) { balance } }"#,
            json!({ "o": app.org_id }),
        )
        .await;
    assert_eq!(error_code(&negative), Some("BAD_USER_INPUT"));
}
