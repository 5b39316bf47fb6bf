//! Knowledge-base retrieval through `kbSearch` (and the function the chat
//! turn calls): ranked by meaning rather than by substring, confined to the
//! caller's org and to published articles, in step with every article write,
//! and unbothered by full-text syntax in the question.

use sea_orm::{ConnectionTrait, DbBackend, Statement, Value as DbValue};
use serde_json::{Value, json};
use uuid::Uuid;
use wayfinder::{
    domain::Plan,
    turn::retrieval::{self, RetrievalMode},
};

use crate::{helpers::*, on_both_databases};

on_both_databases!(
    kb_search_finds_word_forms_the_baseline_misses,
    kb_search_sees_only_published_articles_of_the_callers_org,
    kb_search_follows_article_writes,
    kb_search_rejects_other_orgs_knowledge_bases,
    kb_search_survives_query_syntax,
    migration_indexes_existing_articles,
);

const SEARCH: &str = r#"query($q: String!, $kbs: [UUID!], $first: Int) {
    kbSearch(query: $q, knowledgeBaseIds: $kbs, first: $first) { articleId knowledgeBaseId title score snippet }
}"#;

async fn create_kb(app: &TestApp, key: &str, name: &str) -> String {
    let v = app
        .gql_as(
            Some(key),
            r#"mutation($n: String!) { createKnowledgeBase(input: {name: $n}) { id } }"#,
            json!({ "n": name }),
        )
        .await;
    v["data"]["createKnowledgeBase"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .to_string()
}

async fn create_article(
    app: &TestApp,
    key: &str,
    kb: &str,
    title: &str,
    body: &str,
    published: bool,
) -> String {
    let v = app
        .gql_as(
            Some(key),
            r#"mutation($kb: UUID!, $t: String!, $b: String!, $p: Boolean) {
                createKbArticle(input: {knowledgeBaseId: $kb, title: $t, body: $b, published: $p}) { id }
            }"#,
            json!({ "kb": kb, "t": title, "b": body, "p": published }),
        )
        .await;
    v["data"]["createKbArticle"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .to_string()
}

/// The titles `kbSearch` returns for `q` (all the org's knowledge bases), best first.
async fn titles(app: &TestApp, key: &str, q: &str) -> Vec<String> {
    let v = app.gql_as(Some(key), SEARCH, json!({ "q": q })).await;
    assert!(v.get("errors").is_none(), "{q:?}: {v}");
    v["data"]["kbSearch"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["title"].as_str().unwrap().to_string())
        .collect()
}

/// A small help centre with one article per topic.
async fn help_centre(app: &TestApp) -> String {
    let kb = create_kb(app, &app.api_key, "Help centre").await;
    for (title, body) in [
        (
            "Find and download your invoices",
            "Every renewal we issue an invoice and email it to the billing contact. Open Settings, Billing, Invoice history and click Download to get a PDF.",
        ),
        (
            "Reset a forgotten password",
            "On the sign-in page click Forgot password and enter your email address. The link we send is valid for one hour.",
        ),
        (
            "Invite teammates",
            "Admins add people from Settings, Members, Invite. Each person gets an email with a link valid for seven days.",
        ),
        (
            "Export tasks to a spreadsheet",
            "Apply filters, then click Export to download a CSV or Excel file with every visible task.",
        ),
        (
            "Billing contact and company address",
            "The billing email and postal address shown on documents come from Settings, Billing, Billing details.",
        ),
    ] {
        create_article(app, &app.api_key, &kb, title, body, true).await;
    }
    kb
}

async fn kb_search_finds_word_forms_the_baseline_misses(backend: Backend) {
    let app = spawn_app(backend).await;
    let kb = help_centre(&app).await;
    let question = "Can I see our past invoicing?";

    let v = app
        .gql_ok(SEARCH, json!({ "q": question, "kbs": [kb], "first": 3 }))
        .await;

    let hits = v["kbSearch"].as_array().unwrap();
    assert!(!hits.is_empty() && hits.len() <= 3, "{v}");
    assert_eq!(hits[0]["title"], "Find and download your invoices", "{v}");
    assert_eq!(hits[0]["knowledgeBaseId"], kb.as_str());
    let scores: Vec<f64> = hits.iter().map(|h| h["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    let snippet = hits[0]["snippet"].as_str().unwrap();
    assert!(snippet.contains("Invoice history"), "{snippet}");
    assert!(snippet.chars().count() <= 200, "{snippet}");

    // The substring baseline has no stemming: "invoicing" is in no article,
    // nor are the question's other words.
    let kb_id: Uuid = kb.parse().unwrap();
    let baseline = retrieval::search(
        &app.state,
        app.org_id,
        &[kb_id],
        question,
        3,
        RetrievalMode::Substring,
    )
    .await
    .unwrap();
    assert!(
        baseline
            .first()
            .is_none_or(|h| h.title != "Find and download your invoices"),
        "{baseline:?}"
    );

    // A synonym the thesaurus knows, and a stemmed plural.
    assert_eq!(
        titles(&app, &app.api_key, "I need a receipt").await[0],
        "Find and download your invoices"
    );
    assert_eq!(
        titles(&app, &app.api_key, "passwords").await[0],
        "Reset a forgotten password"
    );
}

async fn kb_search_sees_only_published_articles_of_the_callers_org(backend: Backend) {
    let app = spawn_app(backend).await;
    let kb = create_kb(&app, &app.api_key, "Ours").await;
    create_article(
        &app,
        &app.api_key,
        &kb,
        "Refund policy",
        "Annual plans are refunded within 14 days.",
        true,
    )
    .await;
    create_article(
        &app,
        &app.api_key,
        &kb,
        "Draft: refund exceptions",
        "Unpublished refund notes.",
        false,
    )
    .await;
    let (_, other_key) = app.create_org(Plan::Pro).await;
    let other_kb = create_kb(&app, &other_key, "Theirs").await;
    create_article(
        &app,
        &other_key,
        &other_kb,
        "Refunds at the other org",
        "Other org's refund article.",
        true,
    )
    .await;

    assert_eq!(
        titles(&app, &app.api_key, "refund").await,
        ["Refund policy"]
    );
    assert_eq!(
        titles(&app, &other_key, "refund").await,
        ["Refunds at the other org"]
    );
    // The chat turn's entry point scopes by org too, whatever ids it is given.
    let hits = retrieval::search(
        &app.state,
        app.org_id,
        &[other_kb.parse().unwrap()],
        "refund",
        10,
        RetrievalMode::Keyword,
    )
    .await
    .unwrap();
    assert!(hits.is_empty(), "{hits:?}");
    for mode in [RetrievalMode::Keyword, RetrievalMode::Substring] {
        let hits = retrieval::search(
            &app.state,
            app.org_id,
            &[kb.parse().unwrap(), other_kb.parse().unwrap()],
            "refund exceptions",
            10,
            mode,
        )
        .await
        .unwrap();
        let titles: Vec<&str> = hits.iter().map(|h| h.title.as_str()).collect();
        assert_eq!(titles, ["Refund policy"], "{mode:?}");
    }
}

async fn kb_search_follows_article_writes(backend: Backend) {
    let app = spawn_app(backend).await;
    let kb = create_kb(&app, &app.api_key, "Help").await;
    let id = create_article(
        &app,
        &app.api_key,
        &kb,
        "Export to CSV",
        "Download your tasks as a spreadsheet.",
        true,
    )
    .await;
    assert_eq!(
        titles(&app, &app.api_key, "spreadsheet").await,
        ["Export to CSV"]
    );

    let update = r#"mutation($id: UUID!, $t: String, $b: String, $p: Boolean) {
        updateKbArticle(input: {id: $id, title: $t, body: $b, published: $p}) { id }
    }"#;
    app.gql_ok(
        update,
        json!({ "id": id, "t": "Connect Slack", "b": "Post project updates to a channel." }),
    )
    .await;
    assert!(titles(&app, &app.api_key, "spreadsheet").await.is_empty());
    assert!(titles(&app, &app.api_key, "csv").await.is_empty());
    assert_eq!(titles(&app, &app.api_key, "slack").await, ["Connect Slack"]);
    assert_eq!(
        titles(&app, &app.api_key, "channels").await,
        ["Connect Slack"]
    );

    app.gql_ok(update, json!({ "id": id, "p": false })).await;
    assert!(titles(&app, &app.api_key, "slack").await.is_empty());
    app.gql_ok(update, json!({ "id": id, "p": true })).await;
    assert_eq!(titles(&app, &app.api_key, "slack").await, ["Connect Slack"]);

    app.gql_ok(
        r#"mutation($id: UUID!) { deleteKbArticle(id: $id) { id } }"#,
        json!({ "id": id }),
    )
    .await;
    assert!(titles(&app, &app.api_key, "slack").await.is_empty());

    // Articles deleted by the knowledge base's cascade leave the index too.
    create_article(
        &app,
        &app.api_key,
        &kb,
        "Webhooks",
        "Signed POST requests.",
        true,
    )
    .await;
    assert_eq!(titles(&app, &app.api_key, "webhook").await, ["Webhooks"]);
    app.gql_ok(
        r#"mutation($id: UUID!) { deleteKnowledgeBase(id: $id) { id } }"#,
        json!({ "id": kb }),
    )
    .await;
    assert!(titles(&app, &app.api_key, "webhook").await.is_empty());
    let kb2 = create_kb(&app, &app.api_key, "Help again").await;
    create_article(&app, &app.api_key, &kb2, "Slack again", "Channels.", true).await;
    assert_eq!(titles(&app, &app.api_key, "slack").await, ["Slack again"]);
}

async fn kb_search_rejects_other_orgs_knowledge_bases(backend: Backend) {
    let app = spawn_app(backend).await;
    let ours = help_centre(&app).await;
    let (_, other_key) = app.create_org(Plan::Pro).await;
    let theirs = create_kb(&app, &other_key, "Theirs").await;

    for kbs in [
        json!([theirs]),
        json!([ours, theirs]),
        json!([Uuid::new_v4()]),
    ] {
        let v = app
            .gql(SEARCH, json!({ "q": "password", "kbs": kbs }))
            .await;
        assert_eq!(error_code(&v), Some("NOT_FOUND"), "{v}");
        assert_eq!(
            v["errors"][0]["extensions"]["field"], "knowledgeBaseIds",
            "{v}"
        );
    }
    let v = app
        .gql(SEARCH, json!({ "q": "password", "first": 0 }))
        .await;
    assert_eq!(error_code(&v), Some("BAD_USER_INPUT"), "{v}");
    assert_eq!(v["errors"][0]["extensions"]["field"], "first");
    let v = app
        .gql(SEARCH, json!({ "q": "password ".repeat(200) }))
        .await;
    assert_eq!(error_code(&v), Some("BAD_USER_INPUT"), "{v}");
    assert_eq!(v["errors"][0]["extensions"]["field"], "query");
    let v = app.gql_as(None, SEARCH, json!({ "q": "password" })).await;
    assert_eq!(error_code(&v), Some("UNAUTHENTICATED"), "{v}");

    // Our own ids, repeated, are fine.
    let v = app
        .gql_ok(SEARCH, json!({ "q": "password", "kbs": [ours, ours] }))
        .await;
    assert_eq!(v["kbSearch"][0]["title"], "Reset a forgotten password");
}

async fn kb_search_survives_query_syntax(backend: Backend) {
    let app = spawn_app(backend).await;
    help_centre(&app).await;

    for q in [
        r#"password""#,
        r#""unbalanced quote"#,
        "password*",
        "*",
        "NEAR(password reset, 2)",
        "title:password",
        "password & | ! reset",
        "!password",
        "-password",
        "password:*",
        "'; DROP TABLE kb_articles; --",
        "AND OR NOT",
        "((( ^ )))",
        "{title}: password",
        "pass\\word",
        "\u{0}password\u{7}",
        "émoji 🔑 пароль",
    ] {
        let v = app.gql(SEARCH, json!({ "q": q })).await;
        assert!(v.get("errors").is_none(), "{q:?}: {v}");
        assert!(v["data"]["kbSearch"].is_array(), "{q:?}: {v}");
        for mode in [RetrievalMode::Keyword, RetrievalMode::Substring] {
            let kb_ids = kb_ids(&app).await;
            retrieval::search(&app.state, app.org_id, &kb_ids, q, 5, mode)
                .await
                .unwrap_or_else(|e| panic!("{q:?} {mode:?}: {e}"));
        }
    }
    assert_eq!(
        titles(&app, &app.api_key, "title:password NEAR(").await[0],
        "Reset a forgotten password"
    );
    // Nothing searchable: no error, no hits.
    for q in ["", "   ", "how do I do it?", "*:&|!()\""] {
        assert!(titles(&app, &app.api_key, q).await.is_empty(), "{q:?}");
    }
}

async fn kb_ids(app: &TestApp) -> Vec<Uuid> {
    let v: Value = app
        .gql_ok("{ knowledgeBases { nodes { id } } }", json!({}))
        .await;
    v["knowledgeBases"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap().parse().unwrap())
        .collect()
}

/// Articles written before the retrieval migrations are found after them.
async fn migration_indexes_existing_articles(backend: Backend) {
    use migration::{Migrator, MigratorTrait};

    let test_db = TestDatabase::create(backend).await;
    let db = wayfinder::db::connect(&test_db.url, None).await.unwrap();
    Migrator::up(&db, Some(1)).await.unwrap();
    let (org, kb, article) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let now = chrono_now();
    let b = db.get_database_backend();
    let insert = |sql: &str, values: Vec<DbValue>| {
        let sql = if b == DbBackend::Postgres {
            let mut n = 0;
            sql.chars()
                .map(|c| {
                    if c == '?' {
                        n += 1;
                        format!("${n}")
                    } else {
                        c.to_string()
                    }
                })
                .collect()
        } else {
            sql.to_string()
        };
        Statement::from_sql_and_values(b, sql, values)
    };
    db.execute_raw(insert(
        "INSERT INTO orgs (id, name, plan, ai_chatbot_enabled, ai_auto_traits_enabled, owner_email, credit_balance, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        vec![
            org.into(),
            "Old org".into(),
            "PRO".into(),
            true.into(),
            false.into(),
            "old@example.com".into(),
            0i64.into(),
            now.clone(),
            now.clone(),
        ],
    ))
    .await
    .unwrap();
    db.execute_raw(insert(
        "INSERT INTO knowledge_bases (id, org_id, name, description, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
        vec![kb.into(), org.into(), "Old KB".into(), "".into(), now.clone(), now.clone()],
    ))
    .await
    .unwrap();
    db.execute_raw(insert(
        "INSERT INTO kb_articles (id, org_id, knowledge_base_id, title, body, published, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        vec![
            article.into(),
            org.into(),
            kb.into(),
            "Cancel your subscription".into(),
            "Owners cancel under Settings, Billing, Plan.".into(),
            true.into(),
            now.clone(),
            now,
        ],
    ))
    .await
    .unwrap();

    Migrator::up(&db, None).await.unwrap();
    db.close().await.unwrap();
    let state = wayfinder::startup::build_state(test_config(&test_db))
        .await
        .unwrap();

    let hits = retrieval::search(
        &state,
        org,
        &[kb],
        "cancelling my subscriptions",
        5,
        RetrievalMode::Keyword,
    )
    .await
    .unwrap();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0].article_id, article);
}

fn chrono_now() -> DbValue {
    DbValue::from(sea_orm::prelude::ChronoDateTimeUtc::from(
        std::time::SystemTime::now(),
    ))
}
