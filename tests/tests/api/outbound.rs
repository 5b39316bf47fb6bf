//! The outbound guard on the real server: customer-chosen URLs (webhooks, an
//! org's own LLM base URL) that point at loopback, private, link-local or
//! metadata addresses are refused when saved and again when used (a name
//! that resolves to loopback only at use time, as after DNS rebinding); the
//! operator's allowlist opens exceptions; a delivery never echoes the
//! receiver's body. Also: bring-your-own LLM settings need a paid plan, and an
//! LLM that stalls never leaves a widget waiting past the request timeout.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use sea_orm::sea_query::prelude::chrono::Utc;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
use serde_json::{Value, json};
use uuid::Uuid;
use wayfinder::{domain::Plan, llm::ProviderKind, service};

use crate::{
    chat_turn::{ARTICLES, widget_with_kb},
    fake_llm::{Behaviour, FakeLlm},
    helpers::*,
    on_both_databases,
    webhooks::{CREATE, Pump, Receiver, app_allowing, create_kb, create_webhook, deliveries},
};

on_both_databases!(
    internal_urls_are_refused_when_saved,
    webhooks_are_refused_at_connect_time_and_say_so,
    byok_base_urls_are_refused_at_connect_time_and_the_turn_falls_back,
    byok_needs_a_paid_plan,
);

const SEND: &str =
    "mutation($i: TurnInput!) { sendMessage(input: $i) { sessionToken status text model } }";

const SET_BASE_URL: &str = "mutation($u: String) { updateOrgSettings(input: {llmProvider: \"openai\", llmBaseUrl: $u}) { llmProvider llmBaseUrl } }";

/// Customer URLs that must never be fetched, each with what the refusal says.
fn internal_targets() -> Vec<(&'static str, &'static str)> {
    vec![
        ("http://127.0.0.1:8080/hook", "loopback"),
        ("http://10.0.0.1/hook", "private"),
        ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
        ("http://[::1]:9000/hook", "loopback"),
        ("http://[::ffff:127.0.0.1]:80/hook", "loopback"),
        ("http://[fd00:ec2::254]:80/latest", "cloud metadata"),
        ("http://2130706433/hook", "loopback"),
        (
            "http://localhost:8080/hook",
            "localhost resolves to a loopback",
        ),
    ]
}

fn assert_refused(v: &Value, field: &str, says: &str, url: &str) {
    assert_eq!(error_code(v), Some("BAD_USER_INPUT"), "{url}: {v}");
    assert_eq!(v["errors"][0]["extensions"]["field"], field, "{url}: {v}");
    let message = v["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("refused") && message.contains(says),
        "{url}: {message}"
    );
}

async fn internal_urls_are_refused_when_saved(backend: Backend) {
    // Arrange: a webhook at a name that does not resolve (accepted: checked at use).
    let app = spawn_app(backend).await;
    let public = "https://receiver.example.invalid/in";
    let (hook, _) = create_webhook(&app, public, json!(null)).await;

    for (url, says) in internal_targets() {
        // Act + Assert: creating, updating, and an org's own LLM base URL.
        let created = app.gql(CREATE, json!({ "url": url })).await;
        assert_refused(&created, "input.url", says, url);
        let updated = app
            .gql(
                "mutation($id: UUID!, $u: String!) { updateWebhook(input: {id: $id, url: $u}) { url } }",
                json!({ "id": hook, "u": url }),
            )
            .await;
        assert_refused(&updated, "input.url", says, url);
        let byok = app.gql(SET_BASE_URL, json!({ "u": url })).await;
        assert_refused(&byok, "input.llmBaseUrl", says, url);
    }

    // Nothing was stored.
    let list = app
        .gql_ok(
            "{ webhooks { nodes { url } } org { llmProvider llmBaseUrl } }",
            json!({}),
        )
        .await;
    assert_eq!(
        list["webhooks"]["nodes"],
        json!([{ "url": public }]),
        "{list}"
    );
    assert_eq!(
        list["org"],
        json!({ "llmProvider": null, "llmBaseUrl": null })
    );

    // A public literal address and an unresolvable name are accepted.
    let ok = app
        .gql_ok(SET_BASE_URL, json!({ "u": "https://8.8.8.8/v1" }))
        .await;
    assert_eq!(ok["updateOrgSettings"]["llmBaseUrl"], "https://8.8.8.8/v1");
    app.gql_ok(
        SET_BASE_URL,
        json!({ "u": "https://llm.example.invalid/v1" }),
    )
    .await;
}

/// Points a stored webhook somewhere else, behind the API's back (as a DNS
/// change would, after the URL was checked).
async fn set_webhook_url(app: &TestApp, id: &str, url: &str) {
    entity::webhook::Entity::update_many()
        .col_expr(entity::webhook::Column::Url, Expr::value(url))
        .col_expr(entity::webhook::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(entity::webhook::Column::Id.eq(Uuid::parse_str(id).unwrap()))
        .exec(&app.state.db)
        .await
        .unwrap();
}

async fn webhooks_are_refused_at_connect_time_and_say_so(backend: Backend) {
    // Arrange: one loopback receiver, allowlisted as 127.0.0.1:PORT; a second
    // one that fails with a body that must not be echoed.
    let receiver = Receiver::start(0).await;
    let failing = Receiver::failing_with(
        usize::MAX,
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "stack trace: db password hunter2",
        ),
    )
    .await;
    let app = app_allowing(backend, &[receiver.allow_entry(), failing.allow_entry()]).await;
    let port = receiver
        .allow_entry()
        .rsplit_once(':')
        .unwrap()
        .1
        .to_owned();
    let allowed_url = format!("{}/allowed", receiver.url);
    let (allowed, _) = create_webhook(&app, &allowed_url, json!(["knowledge_base.*"])).await;
    let (leaky, _) = create_webhook(&app, &failing.url, json!(["knowledge_base.*"])).await;
    // Saved while their names did not resolve; now they point at the same
    // receiver by a name that resolves to loopback and by another spelling
    // of its address. Neither is on the allowlist as written.
    let (rebound, _) = create_webhook(
        &app,
        "https://rebind.example.invalid/hook",
        json!(["knowledge_base.*"]),
    )
    .await;
    let (literal, _) = create_webhook(
        &app,
        "https://literal.example.invalid/hook",
        json!(["knowledge_base.*"]),
    )
    .await;
    set_webhook_url(&app, &rebound, &format!("http://localhost:{port}/rebound")).await;
    set_webhook_url(
        &app,
        &literal,
        &format!("http://[::ffff:127.0.0.1]:{port}/literal"),
    )
    .await;

    // Act
    create_kb(&app, None, "Billing").await;
    let mut pump = Pump::default();
    pump.until(&app, "an attempt on every webhook", async || {
        let mut all = vec![];
        for hook in [&allowed, &leaky, &rebound, &literal] {
            all.extend(deliveries(&app, hook).await);
        }
        all.len() == 4 && all.iter().all(|d| d["attempts"].as_i64().unwrap() >= 1)
    })
    .await;
    pump.settle(&app).await;

    // Assert: the allowlisted receiver got its event…
    let allowed_deliveries = deliveries(&app, &allowed).await;
    assert_eq!(
        allowed_deliveries[0]["status"], "DELIVERED",
        "{allowed_deliveries:?}"
    );
    // …and nothing else reached it.
    let paths: Vec<String> = receiver.received().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, ["/hooks/wayfinder/allowed"], "{paths:?}");

    // The refused ones say why, visibly, without a status code.
    for (hook, says) in [
        (
            &rebound,
            "refused: localhost resolves to a loopback address",
        ),
        (&literal, "refused: ::ffff:127.0.0.1 is a loopback address"),
    ] {
        let ds = deliveries(&app, hook).await;
        let d = &ds[0];
        assert_eq!(d["status"], "PENDING", "{d}");
        assert!(d["lastStatusCode"].is_null(), "{d}");
        let error = d["lastError"].as_str().unwrap();
        assert!(error.starts_with(says), "{error}");
        assert!(!error.contains("127.0.0.1") || hook == &literal, "{error}");
    }

    // The failing receiver's body never reaches lastError: only its status.
    let ds = deliveries(&app, &leaky).await;
    assert_eq!(ds[0]["lastStatusCode"], 500, "{ds:?}");
    assert_eq!(ds[0]["lastError"], "HTTP 500", "{ds:?}");
    assert!(!failing.received().is_empty());
}

async fn byok_base_urls_are_refused_at_connect_time_and_the_turn_falls_back(backend: Backend) {
    // Arrange: no server LLM; the org brings its own, saved at a name that
    // did not resolve, later pointing at a loopback fake (not allowlisted).
    let org_fake = FakeLlm::start(ProviderKind::OpenAi).await;
    let app = spawn_app(backend).await;
    service::credits::grant(&app.state.db, app.org_id, 1_000, None)
        .await
        .unwrap();
    let (widget, _, _) = widget_with_kb(&app, ARTICLES).await;
    app.gql_ok(
        SET_BASE_URL,
        json!({ "u": "https://llm.example.invalid/v1" }),
    )
    .await;
    let port = org_fake
        .allow_entry()
        .rsplit_once(':')
        .unwrap()
        .1
        .to_owned();

    for base_url in [
        format!("http://localhost:{port}/v1"),
        format!("http://127.0.0.1:{port}/v1"),
        format!("http://[::ffff:127.0.0.1]:{port}/v1"),
    ] {
        entity::org::Entity::update_many()
            .col_expr(
                entity::org::Column::LlmBaseUrl,
                Expr::value(base_url.clone()),
            )
            .col_expr(entity::org::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(entity::org::Column::Id.eq(app.org_id))
            .exec(&app.state.db)
            .await
            .unwrap();

        // Act
        let r = app
            .gql_as(
                None,
                SEND,
                json!({ "i": { "widgetId": widget, "message": "How do I reset my password?" } }),
            )
            .await;

        // Assert: the canned fallback, and no request reached the fake.
        let m = &r["data"]["sendMessage"];
        assert_eq!(m["status"], "FALLBACK", "{base_url}: {r}");
        assert!(m["sessionToken"].as_str().is_some_and(|t| !t.is_empty()));
        assert_eq!(org_fake.request_count(), 0, "{base_url}");
    }
    // Nothing was charged for refused calls.
    let credits = app.gql_ok("{ credits { balance } }", json!({})).await;
    assert_eq!(credits["credits"]["balance"], 1_000);
}

async fn byok_needs_a_paid_plan(backend: Backend) {
    // Arrange: a server provider, an org's own provider (allowlisted), a FREE org.
    let server_fake = FakeLlm::start(ProviderKind::Ollama).await;
    let org_fake = FakeLlm::start(ProviderKind::Anthropic).await;
    let app = spawn_app_with(backend, |c| {
        server_fake.configure(c);
        c.llm_model = "server-model".into();
        org_fake.allow(c);
    })
    .await;
    let (_, free_key) = app.create_org(Plan::Free).await;

    // Act + Assert: every bring-your-own setting to a value is PLAN_REQUIRED.
    for input in [
        r#"{llmProvider: "openai"}"#,
        r#"{llmBaseUrl: "https://llm.example.invalid/v1"}"#,
        r#"{llmApiKey: "sk-free-org-0123456789"}"#,
        r#"{name: "Free org", llmProvider: "anthropic", llmApiKey: "sk-x"}"#,
    ] {
        let v = app
            .gql_as(
                Some(&free_key),
                &format!("mutation {{ updateOrgSettings(input: {input}) {{ llmProvider llmApiKeySet }} }}"),
                json!({}),
            )
            .await;
        assert_eq!(error_code(&v), Some("PLAN_REQUIRED"), "{input}: {v}");
        assert_eq!(
            v["errors"][0]["extensions"]["requiredPlan"], "GROWTH",
            "{v}"
        );
    }
    let org = app
        .gql_as(
            Some(&free_key),
            "{ org { name llmProvider llmApiKeySet } }",
            json!({}),
        )
        .await;
    assert_eq!(
        org["data"]["org"],
        json!({ "name": "Other org", "llmProvider": null, "llmApiKeySet": false }),
        "nothing was stored: {org}"
    );
    // Other settings, and clearing the LLM ones, stay allowed.
    let v = app
        .gql_as(
            Some(&free_key),
            "mutation { updateOrgSettings(input: {name: \"Still free\", llmProvider: null, llmApiKey: null}) { name } }",
            json!({}),
        )
        .await;
    assert_eq!(v["data"]["updateOrgSettings"]["name"], "Still free", "{v}");

    // A PRO org brings its own provider; after a downgrade to FREE its turns
    // go back to the server's provider.
    service::credits::grant(&app.state.db, app.org_id, 1_000, None)
        .await
        .unwrap();
    let (widget, _, _) = widget_with_kb(&app, ARTICLES).await;
    app.gql_ok(
        "mutation($u: String!) { updateOrgSettings(input: {llmProvider: \"anthropic\", llmModel: \"own-model\", llmBaseUrl: $u, llmApiKey: \"sk-own\"}) { llmProvider } }",
        json!({ "u": org_fake.base_url() }),
    )
    .await;
    org_fake.set_behaviour(Behaviour::text("From your own provider [1]."));
    server_fake.set_behaviour(Behaviour::text("From the server [1]."));
    let ask = || {
        app.gql_as(
            None,
            SEND,
            json!({ "i": { "widgetId": widget, "message": "How do I reset my password?" } }),
        )
    };
    let own = ask().await;
    assert_eq!(own["data"]["sendMessage"]["model"], "own-model", "{own}");
    assert_eq!(org_fake.request_count(), 1);

    entity::org::Entity::update_many()
        .col_expr(entity::org::Column::Plan, Expr::value(Plan::Free.as_str()))
        .filter(entity::org::Column::Id.eq(app.org_id))
        .exec(&app.state.db)
        .await
        .unwrap();
    let downgraded = ask().await;
    assert_eq!(
        downgraded["data"]["sendMessage"]["model"], "server-model",
        "{downgraded}"
    );
    assert_eq!(
        org_fake.request_count(),
        1,
        "the org's provider is not called"
    );
    assert_eq!(server_fake.request_count(), 1);
}

/// POSTs to the REST chat adapter; the status and JSON answer.
async fn rest_chat(app: &TestApp, widget: &str, message: &str) -> (u16, Value) {
    let resp = app
        .client
        .post(format!("{}/widgets/{widget}/chat", app.address))
        .json(&json!({ "message": message }))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| json!({ "raw": text })),
    )
}

/// sendMessage over HTTP; the status, the JSON answer and how long it took.
async fn send_message(app: &TestApp, widget: &str) -> (u16, Value, Duration) {
    let started = Instant::now();
    let resp = app
        .client
        .post(format!("{}/graphql", app.address))
        .json(&json!({ "query": SEND, "variables": { "i": { "widgetId": widget, "message": "How do I reset my password?" } } }))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or_else(|_| json!({ "raw": text }));
    (status, v, started.elapsed())
}

fn assert_fallback(status: u16, v: &Value, what: &str) {
    assert_eq!(status, 200, "{what}: {v}");
    let m = &v["data"]["sendMessage"];
    assert_eq!(m["status"], "FALLBACK", "{what}: {v}");
    assert!(
        m["text"].as_str().unwrap().starts_with("Sorry, no idea."),
        "{what}: {v}"
    );
    assert!(
        m["sessionToken"].as_str().is_some_and(|t| !t.is_empty()),
        "{what}: {v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_stalls_after_one_chunk_falls_back_within_the_idle_timeout() {
    // Arrange: text at once, then silence; only the idle timeout is short.
    let fake = FakeLlm::start(ProviderKind::OpenAi).await;
    let app = spawn_app_with(Backend::Sqlite, |c| {
        fake.configure(c);
        c.llm_first_token_timeout_ms = 20_000;
        c.llm_total_timeout_ms = 40_000;
        c.llm_idle_timeout_ms = 600;
        c.llm_max_retries = 0;
    })
    .await;
    service::credits::grant(&app.state.db, app.org_id, 1_000, None)
        .await
        .unwrap();
    let (widget, _, _) = widget_with_kb(&app, ARTICLES).await;
    fake.set_behaviour(Behaviour::StallAfterFirstChunk);

    // Act
    let (status, v, took) = send_message(&app, &widget).await;

    // Assert: the fallback, about one idle period after the chunk.
    assert_fallback(status, &v, "sendMessage");
    assert!(took >= Duration::from_millis(550), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");

    // The REST adapter: 200, the fallback and the session token.
    let started = Instant::now();
    let (status, v) = rest_chat(&app, &widget, "How do I reset my password?").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "FALLBACK", "{v}");
    assert!(
        v["reply"].as_str().unwrap().starts_with("Sorry, no idea."),
        "{v}"
    );
    assert!(
        v["sessionToken"].as_str().is_some_and(|t| !t.is_empty()),
        "{v}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(fake.request_count(), 2, "a stall is not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llm_deadlines_end_before_the_request_timeout() {
    // Arrange: every LLM timeout far beyond a 4 s request timeout.
    let fake = FakeLlm::start(ProviderKind::Anthropic).await;
    let app = spawn_app_with(Backend::Sqlite, |c| {
        fake.configure(c);
        c.request_timeout_secs = 4;
        c.llm_first_token_timeout_ms = 60_000;
        c.llm_total_timeout_ms = 60_000;
        c.llm_idle_timeout_ms = 60_000;
        c.llm_max_retries = 0;
    })
    .await;
    service::credits::grant(&app.state.db, app.org_id, 1_000, None)
        .await
        .unwrap();
    let (widget, _, _) = widget_with_kb(&app, ARTICLES).await;

    for behaviour in [Behaviour::StallAfterFirstChunk, Behaviour::Hang] {
        let what = format!("{behaviour:?}");
        fake.set_behaviour(behaviour);

        // Act + Assert: the fallback with a session token, never an empty 408.
        let (status, v, took) = send_message(&app, &widget).await;
        assert_fallback(status, &v, &what);
        assert!(took < Duration::from_secs(4), "{what}: {took:?}");
        let (status, v) = rest_chat(&app, &widget, "How do I reset my password?").await;
        assert_eq!(status, 200, "{what}: {v}");
        assert_eq!(v["status"], "FALLBACK", "{what}: {v}");
        assert!(
            v["sessionToken"].as_str().is_some_and(|t| !t.is_empty()),
            "{what}: {v}"
        );
    }
}
