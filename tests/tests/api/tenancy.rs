//! Another org's ids behave exactly like nonexistent ids: every query and
//! mutation tried with org B's key on org A's objects finds nothing and
//! changes nothing.

use serde_json::{Value, json};
use wayfinder::domain::Plan;

use crate::{helpers::*, on_both_databases};

on_both_databases!(another_orgs_ids_are_not_found);

async fn another_orgs_ids_are_not_found(backend: Backend) {
    let app = spawn_app(backend).await;
    // Org A (the test org) owns one of everything.
    let kb = app
        .gql_ok(
            r#"mutation { createKnowledgeBase(input: {name: "A kb"}) { id } }"#,
            json!({}),
        )
        .await["createKnowledgeBase"]["id"]
        .clone();
    let art = app.gql_ok(r#"mutation($kb: UUID!) { createKbArticle(input: {knowledgeBaseId: $kb, title: "A art", body: "secret body"}) { id } }"#, json!({ "kb": kb })).await["createKbArticle"]["id"].clone();
    let site = app.gql_ok(r#"mutation { createSite(input: {name: "A site", baseUrl: "https://a.example.com"}) { id } }"#, json!({})).await["createSite"]["id"].clone();
    let bot = app.gql_ok(r#"mutation($kb: UUID!) { createBot(input: {name: "A bot", knowledgeBaseIds: [$kb]}) { id } }"#, json!({ "kb": kb })).await["createBot"]["id"].clone();
    let flow = app.gql_ok(r#"mutation { createFlow(input: {name: "A flow", steps: [{pageUrl: "/", targetSelector: "a", title: "t", body: "b", placement: TOP}]}) { id } }"#, json!({})).await["createFlow"]["id"].clone();
    let tip = app.gql_ok(r#"mutation { createTooltip(input: {name: "A tip", pageUrl: "/", targetSelector: "a", body: "b"}) { id } }"#, json!({})).await["createTooltip"]["id"].clone();
    let widget = app.gql_ok(r#"mutation($b: UUID!) { createChatWidget(input: {botId: $b, published: false}) { id } }"#, json!({ "b": bot })).await["createChatWidget"]["id"].clone();
    let key = app
        .gql_ok(
            r#"mutation { createApiKey(input: {name: "A key"}) { apiKey { id } } }"#,
            json!({}),
        )
        .await["createApiKey"]["apiKey"]["id"]
        .clone();

    let (_b_org, b_key) = app.create_org(Plan::Enterprise).await;
    let b = |q: &'static str, v: Value| {
        let app = &app;
        let b_key = b_key.clone();
        async move { app.gql_as(Some(&b_key), q, v).await }
    };

    // Single reads: NOT_FOUND, the same answer as for a random id.
    for (q, id) in [
        ("query($id: UUID!) { knowledgeBase(id: $id) { id } }", &kb),
        ("query($id: UUID!) { kbArticle(id: $id) { id } }", &art),
        ("query($id: UUID!) { site(id: $id) { id } }", &site),
        ("query($id: UUID!) { bot(id: $id) { id } }", &bot),
        ("query($id: UUID!) { flow(id: $id) { id } }", &flow),
        ("query($id: UUID!) { tooltip(id: $id) { id } }", &tip),
        ("query($id: UUID!) { chatWidget(id: $id) { id } }", &widget),
        ("query($id: UUID!) { chatSession(id: $id) { id } }", &bot),
    ] {
        let theirs = b(q, json!({ "id": id })).await;
        let random = b(q, json!({ "id": uuid::Uuid::now_v7() })).await;
        assert_eq!(error_code(&theirs), Some("NOT_FOUND"), "{q}: {theirs}");
        assert_eq!(
            theirs["errors"][0]["message"], random["errors"][0]["message"],
            "{q}"
        );
        assert!(theirs["data"].is_null(), "{q}: {theirs}");
    }

    // Lists: empty.
    let lists = b(
        "{ knowledgeBases { nodes { id } } kbArticles { nodes { id } } sites { nodes { id } } bots { nodes { id } } flows { nodes { id } } tooltips { nodes { id } } chatWidgets { nodes { id } } chatSessions { nodes { id } } supportTickets { nodes { id } } feedback { nodes { id } } }",
        json!({}),
    )
    .await;
    for (field, list) in lists["data"].as_object().unwrap() {
        assert_eq!(list["nodes"], json!([]), "{field} leaked: {lists}");
    }
    let keys = b(
        "{ apiKeys(includeRevoked: true) { nodes { id } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        keys["data"]["apiKeys"]["nodes"].as_array().unwrap().len(),
        1,
        "only B's own key"
    );
    let events = b("{ events(first: 100) { nodes { payload } } }", json!({})).await;
    assert!(
        !events.to_string().contains(bot.as_str().unwrap()),
        "A's events leaked: {events}"
    );

    // Writes: NOT_FOUND, and nothing changes.
    for (q, id) in [
        (
            "mutation($id: UUID!) { updateKnowledgeBase(input: {id: $id, name: \"pwned\"}) { id } }",
            &kb,
        ),
        (
            "mutation($id: UUID!) { updateKbArticle(input: {id: $id, title: \"pwned\"}) { id } }",
            &art,
        ),
        (
            "mutation($id: UUID!) { updateSite(input: {id: $id, name: \"pwned\"}) { id } }",
            &site,
        ),
        (
            "mutation($id: UUID!) { updateSiteMap(input: {siteId: $id, pages: []}) { id } }",
            &site,
        ),
        (
            "mutation($id: UUID!) { updateBot(input: {id: $id, name: \"pwned\"}) { id } }",
            &bot,
        ),
        (
            "mutation($id: UUID!) { updateFlow(input: {id: $id, name: \"pwned\"}) { id } }",
            &flow,
        ),
        (
            "mutation($id: UUID!) { publishFlow(id: $id) { id } }",
            &flow,
        ),
        (
            "mutation($id: UUID!) { updateTooltip(input: {id: $id, name: \"pwned\"}) { id } }",
            &tip,
        ),
        (
            "mutation($id: UUID!) { updateChatWidget(input: {id: $id, name: \"pwned\"}) { id } }",
            &widget,
        ),
        (
            "mutation($id: UUID!) { updateApiKey(input: {id: $id, name: \"pwned\"}) { id } }",
            &key,
        ),
        (
            "mutation($id: UUID!) { deleteApiKey(id: $id) { id } }",
            &key,
        ),
        (
            "mutation($id: UUID!) { deleteChatWidget(id: $id) { id } }",
            &widget,
        ),
        (
            "mutation($id: UUID!) { deleteTooltip(id: $id) { id } }",
            &tip,
        ),
        ("mutation($id: UUID!) { deleteFlow(id: $id) { id } }", &flow),
        ("mutation($id: UUID!) { deleteBot(id: $id) { id } }", &bot),
        ("mutation($id: UUID!) { deleteSite(id: $id) { id } }", &site),
        (
            "mutation($id: UUID!) { deleteKbArticle(id: $id) { id } }",
            &art,
        ),
        (
            "mutation($id: UUID!) { deleteKnowledgeBase(id: $id) { id } }",
            &kb,
        ),
    ] {
        let r = b(q, json!({ "id": id })).await;
        assert_eq!(error_code(&r), Some("NOT_FOUND"), "{q}: {r}");
    }
    // References to A's objects from B's own objects are refused too.
    let r = b("mutation($kb: UUID!) { createKbArticle(input: {knowledgeBaseId: $kb, title: \"x\", body: \"y\"}) { id } }", json!({ "kb": kb })).await;
    assert_eq!(error_code(&r), Some("NOT_FOUND"));
    assert_eq!(
        r["errors"][0]["extensions"]["field"],
        "input.knowledgeBaseId"
    );
    let r = b(
        "mutation($kb: UUID!) { createBot(input: {name: \"x\", knowledgeBaseIds: [$kb]}) { id } }",
        json!({ "kb": kb }),
    )
    .await;
    assert_eq!(error_code(&r), Some("NOT_FOUND"));
    let r = b(
        "mutation($b: UUID!) { createChatWidget(input: {botId: $b}) { id } }",
        json!({ "b": bot }),
    )
    .await;
    assert_eq!(error_code(&r), Some("NOT_FOUND"));

    // A's objects are untouched.
    let a = app
        .gql_ok(
            "query($kb: UUID!, $a: UUID!, $b: UUID!, $s: UUID!, $f: UUID!, $t: UUID!, $w: UUID!) { knowledgeBase(id: $kb) { name } kbArticle(id: $a) { title } bot(id: $b) { name knowledgeBaseIds } site(id: $s) { name } flow(id: $f) { name status } tooltip(id: $t) { name } chatWidget(id: $w) { name } apiKeys { nodes { name revokedAt } } }",
            json!({ "kb": kb, "a": art, "b": bot, "s": site, "f": flow, "t": tip, "w": widget }),
        )
        .await;
    assert_eq!(a["knowledgeBase"]["name"], "A kb");
    assert_eq!(a["kbArticle"]["title"], "A art");
    assert_eq!(a["bot"]["name"], "A bot");
    assert_eq!(a["bot"]["knowledgeBaseIds"], json!([kb]));
    assert_eq!(a["site"]["name"], "A site");
    assert_eq!(a["flow"], json!({ "name": "A flow", "status": "DRAFT" }));
    assert_eq!(a["tooltip"]["name"], "A tip");
    assert_eq!(a["chatWidget"]["name"], "Chat widget");
    assert!(
        a["apiKeys"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["revokedAt"].is_null() && k["name"] != "pwned")
    );
}
