//! What the benchmarks share: a GraphQL call over HTTP and percentiles.

pub mod process;

use std::time::Duration;

use serde_json::{Value, json};

/// The `p`-quantile (0..=1) of `sorted`.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// POSTs `query` with `vars` (and API key `key`) to `url`; a response with
/// GraphQL `errors` fails the benchmark: a figure is only worth something
/// when what it timed was answered.
pub async fn gql(
    client: &reqwest::Client,
    url: &str,
    key: Option<&str>,
    query: &str,
    vars: Value,
) -> Value {
    let mut req = client
        .post(url)
        .json(&json!({ "query": query, "variables": vars }));
    if let Some(k) = key {
        req = req.header("x-api-key", k);
    }
    let v: Value = req
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert!(v.get("errors").is_none(), "GraphQL errors: {v}");
    v
}

/// A new knowledge base's id.
pub async fn knowledge_base(client: &reqwest::Client, url: &str, key: &str) -> Value {
    gql(
        client,
        url,
        Some(key),
        r#"mutation { createKnowledgeBase(input: {name: "Bench"}) { id } }"#,
        json!({}),
    )
    .await["data"]["createKnowledgeBase"]["id"]
        .clone()
}
