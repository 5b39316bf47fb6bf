#![allow(clippy::expect_used, clippy::unwrap_used)]

//! Turn latency without an LLM (the embedded default): p50/p99 of whole
//! `sendMessage` turns over HTTP against a real server on SQLite, with a
//! knowledge base of 200 articles. Prints a table; asserts nothing.
//!
//! Run: `cargo bench -p wayfinder-api --bench turn`

mod common;

use std::time::Instant;

use common::{gql, percentile};

use serde_json::json;
use wayfinder::{config::Config, domain::Plan, service, startup::App};

const TURNS: usize = 400;

#[tokio::main]
async fn main() {
    let dir =
        std::env::temp_dir().join(format!("wayfinder-bench-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut config = Config::defaults();
    config.addr = "127.0.0.1:0".parse().expect("addr");
    config.database_url = Some(format!(
        "sqlite://{}?mode=rwc",
        dir.join("bench.db").display()
    ));
    config.data_dir = dir.clone();
    config.secret = Some("bench-secret-bench-secret-bench-secret-00".into());
    config.demo = false;
    config.public_rate_limit = 0;
    config.widget_rate_limit = 0;
    config.llm_provider = Some("none".into());
    let app = App::build(config).await.expect("app");
    let url = format!("http://{}/graphql", app.addr());
    let state = app.state();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = rx.await;
    }));
    let (_, _, key) = service::org::create(&state.db, "Bench", Plan::Pro, "bench@example.com")
        .await
        .expect("org");
    let key = key.key;
    let client = reqwest::Client::new();

    let kb = common::knowledge_base(&client, &url, &key).await;
    let topics = [
        "password",
        "invoice",
        "export",
        "teammate",
        "billing",
        "integration",
        "webhook",
        "report",
        "calendar",
        "notification",
    ];
    let verbs = [
        "reset",
        "download",
        "configure",
        "invite",
        "cancel",
        "connect",
        "schedule",
        "share",
        "archive",
        "restore",
    ];
    for i in 0..200 {
        let (t, v) = (
            topics[i % topics.len()],
            verbs[(i / topics.len()) % verbs.len()],
        );
        let title = format!("How to {v} your {t} ({i})");
        let body = format!(
            "To {v} a {t}, open Settings and choose {t}s. Then click {v}. Admins can {v} any {t} for the whole workspace. Changes apply at once and are logged in the audit trail."
        );
        gql(&client, &url, Some(&key), "mutation($kb: UUID!, $t: String!, $b: String!) { createKbArticle(input: {knowledgeBaseId: $kb, title: $t, body: $b}) { id } }", json!({ "kb": kb, "t": title, "b": body })).await;
    }
    let bot = gql(&client, &url, Some(&key), "mutation($kb: UUID!) { createBot(input: {name: \"Bench\", knowledgeBaseIds: [$kb]}) { id } }", json!({ "kb": kb })).await["data"]["createBot"]["id"].clone();
    let widget = gql(
        &client,
        &url,
        Some(&key),
        "mutation($b: UUID!) { createChatWidget(input: {botId: $b}) { id } }",
        json!({ "b": bot }),
    )
    .await["data"]["createChatWidget"]["id"]
        .clone();

    let questions = [
        "how do I reset my password",
        "where can I download invoices",
        "can admins invite teammates",
        "how to connect an integration",
        "schedule a report",
    ];
    let send =
        "mutation($i: TurnInput!) { sendMessage(input: $i) { status citations { articleId } } }";
    // Warm up.
    for q in questions {
        gql(
            &client,
            &url,
            None,
            send,
            json!({ "i": { "widgetId": widget, "message": q } }),
        )
        .await;
    }
    let mut times = Vec::with_capacity(TURNS);
    let mut answered = 0;
    let started = Instant::now();
    for i in 0..TURNS {
        let q = questions[i % questions.len()];
        let t = Instant::now();
        let r = gql(
            &client,
            &url,
            None,
            send,
            json!({ "i": { "widgetId": widget, "message": q } }),
        )
        .await;
        times.push(t.elapsed());
        if r["data"]["sendMessage"]["status"] == "ANSWERED" {
            answered += 1;
        }
    }
    let total = started.elapsed();
    times.sort();
    println!(
        "turn latency, no LLM (extractive), SQLite, 200 articles, {TURNS} sequential sendMessage turns over HTTP"
    );
    println!("| p50 | p99 | max | turns/s | answered |");
    println!("|---|---|---|---|---|");
    println!(
        "| {:.1} ms | {:.1} ms | {:.1} ms | {:.0} | {answered}/{TURNS} |",
        percentile(&times, 0.50).as_secs_f64() * 1e3,
        percentile(&times, 0.99).as_secs_f64() * 1e3,
        times.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        TURNS as f64 / total.as_secs_f64(),
    );
    let _ = tx.send(());
    let _ = server.await;
    let _ = std::fs::remove_dir_all(&dir);
}
