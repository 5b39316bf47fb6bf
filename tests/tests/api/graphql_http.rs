//! GraphQL over HTTP to the letter of the specification: the graphql-http
//! project's own `serverAudits` (the specification's reference
//! implementation, from npm) run against the real server and every MUST and
//! SHOULD must pass; plus the negotiation rules the audits don't reach
//! (406, batches, `Allow` on 405, the widget's `text/plain`).
//!
//! The audits need Node.js and `npm ci` in tests/browser; without them the
//! audit test is skipped, unless `WAYFINDER_BROWSER_TESTS=1` (set by
//! `.ci/run`), which makes missing tools a failure.

use std::{path::Path, process::Command};

use serde_json::{Value, json};

use crate::helpers::*;

fn repo_root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphql_http_server_audits_pass() {
    let root = repo_root();
    let package = root.join("tests/browser/node_modules/graphql-http");
    let node = Command::new("node").arg("--version").output().is_ok();
    if !node || !package.is_dir() {
        let required = std::env::var("WAYFINDER_BROWSER_TESTS").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "WAYFINDER_BROWSER_TESTS=1 but the audits can't run: need node and tests/browser/node_modules/graphql-http (npm ci in tests/browser)"
        );
        eprintln!("skipping the graphql-http audits: node or tests/browser/node_modules missing");
        return;
    }
    // The audits send about seventy public requests.
    let app = spawn_app_with(Backend::Sqlite, |c| c.public_rate_limit = 0).await;
    let url = format!("{}/graphql", app.address);
    let script = root.join("tests/browser/graphql_http_audit.mjs");
    let output =
        tokio::task::spawn_blocking(move || Command::new("node").arg(script).arg(url).output())
            .await
            .unwrap()
            .unwrap();
    assert!(
        output.status.success(),
        "the audit script failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let results: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(results.len() > 40, "only {} audits ran", results.len());
    let failed: Vec<String> = results
        .iter()
        .filter(|r| {
            let name = r["name"].as_str().unwrap_or("");
            let must_or_should = name.starts_with("MUST") || name.starts_with("SHOULD");
            must_or_should && r["status"] != "ok"
        })
        .map(|r| format!("{} ({})", r["name"], r["reason"]))
        .collect();
    assert!(failed.is_empty(), "failed audits:\n{}", failed.join("\n"));
}

async fn post(app: &TestApp, headers: &[(&str, &str)], body: &str) -> reqwest::Response {
    let mut req = app
        .client
        .post(format!("{}/graphql", app.address))
        .body(body.to_owned());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

fn content_type(r: &reqwest::Response) -> String {
    r.headers()["content-type"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn media_types_are_negotiated_and_request_errors_answered_per_type() {
    let app = spawn_app(Backend::Sqlite).await;
    let json_ct = ("content-type", "application/json");
    let gql = ("accept", "application/graphql-response+json");
    let ok = r#"{"query":"{ __typename }"}"#;

    // Legacy clients get application/json; clients that ask get the new type.
    let r = post(&app, &[json_ct], ok).await;
    assert_eq!(r.status(), 200);
    assert!(content_type(&r).starts_with("application/json"));
    let r = post(&app, &[json_ct, gql], ok).await;
    assert_eq!(r.status(), 200);
    assert!(content_type(&r).starts_with("application/graphql-response+json"));
    let r = post(&app, &[json_ct, ("accept", "text/html")], ok).await;
    assert_eq!(r.status(), 406);

    // A document that does not parse: 400 without data under the new type, 200 under the old.
    let broken = r#"{"query":"{"}"#;
    let r = post(&app, &[json_ct, gql], broken).await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(
        v.get("data").is_none() && v["errors"][0]["message"].is_string(),
        "{v}"
    );
    let r = post(&app, &[json_ct], broken).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(v.get("data").is_none() && v["errors"].is_array(), "{v}");

    // Execution errors keep their data and 200 under both.
    let r = post(&app, &[json_ct, gql], r#"{"query":"{ org { name } }"}"#).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(error_code(&v), Some("UNAUTHENTICATED"));
    assert!(v.get("data").is_some(), "{v}");

    // Not a GraphQL request at all: 400 under both.
    for body in [
        r#"{"query": 5}"#,
        r#"{"query":"{ a }","variables":"x"}"#,
        "nope",
        "{}",
    ] {
        let r = post(&app, &[json_ct], body).await;
        assert_eq!(r.status(), 400, "{body}");
        assert_eq!(
            error_code(&r.json::<Value>().await.unwrap()),
            Some("BAD_REQUEST")
        );
    }

    // Unsupported request types are 415; text/plain only from a browser page (the widget's).
    assert_eq!(post(&app, &[], ok).await.status(), 415);
    assert_eq!(
        post(
            &app,
            &[("content-type", "application/x-www-form-urlencoded")],
            ok
        )
        .await
        .status(),
        415
    );
    assert_eq!(
        post(&app, &[("content-type", "text/plain;charset=UTF-8")], ok)
            .await
            .status(),
        415
    );
    let r = post(
        &app,
        &[
            ("content-type", "text/plain;charset=UTF-8"),
            ("origin", "https://shop.example"),
        ],
        ok,
    )
    .await;
    assert_eq!(r.status(), 200);

    // Batches answer in the negotiated type, request errors without data.
    let r = post(
        &app,
        &[json_ct, gql],
        r#"[{"query":"{ __typename }"},{"query":"{"}]"#,
    )
    .await;
    assert_eq!(r.status(), 200);
    assert!(content_type(&r).starts_with("application/graphql-response+json"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v[0]["data"]["__typename"], "Query");
    assert!(v[1].get("data").is_none(), "{v}");

    // Mutations over GET: 405 with Allow: POST.
    let r = app
        .client
        .get(format!("{}/graphql", app.address))
        .query(&[(
            "query",
            "mutation { deleteBot(id: \"00000000-0000-0000-0000-000000000000\") }",
        )])
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    // A query over GET works, in the negotiated type.
    let r = app
        .client
        .get(format!("{}/graphql", app.address))
        .query(&[("query", "{ __typename }")])
        .header("accept", "application/graphql-response+json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(content_type(&r).starts_with("application/graphql-response+json"));
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({ "data": { "__typename": "Query" } })
    );
}
