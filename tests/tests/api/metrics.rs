//! `/metrics`: the Prometheus (OpenMetrics) text format, with the counters a
//! turn, a socket and a subscription move.

use std::{collections::HashMap, time::Duration};

use serde_json::json;

use crate::{
    chat_turn::{ARTICLES, widget_with_kb},
    helpers::*,
};

/// Parses OpenMetrics text strictly enough to catch a malformed exposition:
/// every sample belongs to a declared family, every label is `name="value"`,
/// every value is a number, and the text ends with `# EOF`. Returns the
/// samples by `name{labels}`.
fn parse(text: &str) -> HashMap<String, f64> {
    let mut families: Vec<String> = vec![];
    let mut samples = HashMap::new();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.last(), Some(&"# EOF"), "ends with # EOF");
    let valid_name = |n: &str| {
        !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            && !n.starts_with(|c: char| c.is_ascii_digit())
    };
    for line in &lines[..lines.len() - 1] {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kind, name) = (parts.next().unwrap(), parts.next().unwrap());
            assert!(["HELP", "TYPE", "UNIT"].contains(&kind), "{line}");
            assert!(valid_name(name), "{line}");
            if kind == "TYPE" {
                let ty = parts.next().unwrap();
                assert!(
                    ["counter", "gauge", "histogram", "info", "unknown"].contains(&ty),
                    "{line}"
                );
                families.push(name.to_string());
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample has a value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
        };
        let name = match series.split_once('{') {
            Some((name, labels)) => {
                let labels = labels.strip_suffix('}').expect("labels close");
                for pair in labels.split("\",").filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once("=\"").expect("label is k=\"v\"");
                    assert!(valid_name(k), "{line}");
                    assert!(!v.trim_end_matches('"').contains('"'), "{line}");
                }
                name
            }
            None => series,
        };
        assert!(valid_name(name), "{line}");
        let family_ok = families.iter().any(|f| {
            name == f
                || ["_total", "_bucket", "_sum", "_count", "_created"]
                    .iter()
                    .any(|s| name.strip_suffix(s) == Some(f.as_str()))
        });
        assert!(family_ok, "sample of an undeclared family: {line}");
        samples.insert(series.to_string(), value);
    }
    samples
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_as_prometheus_text() {
    let app = spawn_app(Backend::Sqlite).await;
    let (widget, _, _) = widget_with_kb(&app, ARTICLES).await;
    let v = app
        .gql_as(
            None,
            "mutation($i: TurnInput!) { sendMessage(input: $i) { status } }",
            json!({ "i": { "widgetId": widget, "message": "How do I reset my password?" } }),
        )
        .await;
    assert_eq!(v["data"]["sendMessage"]["status"], "ANSWERED", "{v}");
    let mut ws = WsClient::connect(&app.ws_url, json!({ "apiKey": app.api_key })).await;
    ws.subscribe("1", "subscription { orgEvents { kind } }", json!({}))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let r = app
        .client
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text"),
    );
    let samples = parse(&r.text().await.unwrap());
    let at_least = |series: &str, min: f64| {
        let got = samples.get(series).copied().unwrap_or_default();
        assert!(got >= min, "{series} = {got}, want ≥ {min}; {samples:?}");
    };
    at_least("wayfinder_turns_total{status=\"ANSWERED\"}", 1.0);
    at_least(
        "wayfinder_graphql_operations_total{kind=\"mutation\",transport=\"http\"}",
        1.0,
    );
    at_least(
        "wayfinder_graphql_operations_total{kind=\"subscription\",transport=\"ws\"}",
        1.0,
    );
    at_least(
        "wayfinder_graphql_operation_seconds_count{kind=\"mutation\",transport=\"http\"}",
        1.0,
    );
    at_least("wayfinder_open_sockets", 1.0);
    at_least("wayfinder_subscriptions", 1.0);
    for family in [
        "wayfinder_credit_refusals_total",
        "wayfinder_fanout_gaps_total",
    ] {
        assert!(samples.contains_key(family), "{family} missing");
    }
}

#[tokio::test]
async fn metrics_need_the_token_once_one_is_set() {
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.metrics_token = Some("scrape-secret-0123".into())
    })
    .await;
    let url = format!("{}/metrics", app.address);
    let r = app.client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401, "even from loopback");
    let r = app
        .client
        .get(&url)
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = app
        .client
        .get(&url)
        .bearer_auth("scrape-secret-0123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().ends_with("# EOF\n"));
}
