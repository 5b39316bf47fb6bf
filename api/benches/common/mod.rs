//! What the benchmarks share: a GraphQL call over HTTP and percentiles.
#![allow(dead_code)] // each bench uses some of it

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

/// `{ __typename }` over HTTP to `url` from each client (one keep-alive
/// connection each) until `stop`, every answer checked: status 200 and
/// exactly `{"data":{"__typename":"Query"}}`. Returns the requests made and
/// each one's time.
pub async fn typename_load(
    clients: Vec<reqwest::Client>,
    url: &str,
    stop: std::time::Instant,
) -> (u64, Vec<Duration>) {
    let expected = json!({"data": {"__typename": "Query"}});
    let workers: Vec<_> = clients
        .into_iter()
        .map(|client| {
            let (url, expected) = (url.to_string(), expected.clone());
            tokio::spawn(async move {
                let mut done = 0u64;
                let mut times = Vec::new();
                while std::time::Instant::now() < stop {
                    let t0 = std::time::Instant::now();
                    let resp = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(r#"{"query":"{ __typename }"}"#)
                        .send()
                        .await
                        .expect("request");
                    assert_eq!(resp.status(), 200);
                    let v: Value = resp.json().await.expect("json");
                    assert_eq!(v, expected, "a wrong answer to {{ __typename }}");
                    times.push(t0.elapsed());
                    done += 1;
                }
                (done, times)
            })
        })
        .collect();
    let mut requests = 0u64;
    let mut times = Vec::new();
    for w in workers {
        let (n, t) = w.await.expect("worker");
        requests += n;
        times.extend(t);
    }
    (requests, times)
}
