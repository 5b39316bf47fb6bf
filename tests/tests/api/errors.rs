//! Auth, validation and limits: bad input gets a clear error naming the
//! field, never a panic, never internal detail.

use serde_json::{Value, json};
use wayfinder::domain::Plan;

use crate::{helpers::*, on_both_databases};

on_both_databases!(
    api_keys_authenticate_and_revoke,
    inputs_are_validated_with_field_names,
    plan_gating,
    broken_database_is_masked
);

async fn api_keys_authenticate_and_revoke(backend: Backend) {
    let app = spawn_app(backend).await;
    let url = format!("{}/graphql", app.address);
    let body = json!({ "query": "{ org { id } }" });

    // No key: a public caller, refused on dashboard operations.
    let public = app.gql_as(None, "{ org { id } }", json!({})).await;
    assert_eq!(error_code(&public), Some("UNAUTHENTICATED"));
    // A wrong key: 401, not a public call.
    let wrong = app
        .client
        .post(&url)
        .header("x-api-key", "wf_live_nope")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert_eq!(
        error_code(&wrong.json::<Value>().await.unwrap()),
        Some("UNAUTHENTICATED")
    );
    // Bearer works like x-api-key.
    let bearer: Value = app
        .client
        .post(&url)
        .bearer_auth(&app.api_key)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bearer["data"]["org"]["id"], app.org_id.to_string());

    // A new key is shown once, has the documented shape, and is stored only as a hash.
    let created = app
        .gql_ok(
            r#"mutation { createApiKey(input: {name: "ci"}) { key apiKey { id prefix } } }"#,
            json!({}),
        )
        .await;
    let key = created["createApiKey"]["key"].as_str().unwrap().to_string();
    assert!(key.starts_with("wf_live_") && key.len() >= 40, "{key}");
    assert!(
        key.starts_with(
            created["createApiKey"]["apiKey"]["prefix"]
                .as_str()
                .unwrap()
        )
    );
    let dump = dump_table(&app, "api_keys").await;
    assert!(!dump.contains(&key), "plain key stored");
    assert!(!dump.contains(&app.api_key), "plain key stored");
    let listed = app
        .gql_as(Some(&key), "{ apiKeys { nodes { name } } }", json!({}))
        .await;
    assert!(listed["errors"].is_null(), "{listed}");
    assert!(
        listed["data"]["apiKeys"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["name"] == "ci"),
        "{listed}"
    );
    assert!(!listed.to_string().contains(&key));

    // Revoked keys stop working at once.
    let id = created["createApiKey"]["apiKey"]["id"].clone();
    app.gql_ok(
        "mutation($id: UUID!) { deleteApiKey(id: $id) { revokedAt } }",
        json!({ "id": id }),
    )
    .await;
    let after = app
        .client
        .post(&url)
        .header("x-api-key", &key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 401);
}

async fn dump_table(app: &TestApp, table: &str) -> String {
    use sea_orm::{ConnectionTrait, Statement};
    let backend = app.state.db.get_database_backend();
    let rows = app
        .state
        .db
        .query_all_raw(Statement::from_string(
            backend,
            format!("SELECT * FROM {table}"),
        ))
        .await
        .unwrap();
    let mut out = String::new();
    for row in rows {
        for col in ["name", "prefix", "key_hash"] {
            let v: String = row.try_get("", col).unwrap();
            out.push_str(&v);
            out.push('\n');
        }
    }
    out
}

async fn inputs_are_validated_with_field_names(backend: Backend) {
    let app = spawn_app(backend).await;
    let cases: &[(&str, &str)] = &[
        (
            r#"mutation { createKnowledgeBase(input: {name: "   "}) { id } }"#,
            "input.name",
        ),
        (
            r#"mutation { createSite(input: {name: "s", baseUrl: "javascript:alert(1)"}) { id } }"#,
            "input.baseUrl",
        ),
        (
            r#"mutation { updateOrgSettings(input: {ownerEmail: "not-an-email"}) { id } }"#,
            "input.ownerEmail",
        ),
        (
            r#"mutation { createBot(input: {name: "b", primaryColor: "red"}) { id } }"#,
            "input.primaryColor",
        ),
        (
            r#"mutation { createChatWidget(input: {botId: "00000000-0000-0000-0000-000000000000", allowedOrigins: ["https://x.io/path"]}) { id } }"#,
            "input.allowedOrigins[0]",
        ),
        (
            r#"mutation { createTooltip(input: {name: "t", pageUrl: "/", targetSelector: "", body: "b"}) { id } }"#,
            "input.targetSelector",
        ),
    ];
    for (q, field) in cases {
        let r = app.gql(q, json!({})).await;
        assert_eq!(error_code(&r), Some("BAD_USER_INPUT"), "{q}: {r}");
        assert_eq!(r["errors"][0]["extensions"]["field"], *field, "{q}: {r}");
    }
    // A huge string is refused by its bound, not stored.
    let huge = "x".repeat(100_000);
    let r = app
        .gql(
            "mutation($n: String!) { createKnowledgeBase(input: {name: $n}) { id } }",
            json!({ "n": huge }),
        )
        .await;
    assert_eq!(error_code(&r), Some("BAD_USER_INPUT"));
    // Wrong types are GraphQL validation errors, not crashes.
    let r = app
        .gql(
            r#"mutation { createKnowledgeBase(input: {name: 42}) { id } }"#,
            json!({}),
        )
        .await;
    assert!(
        r["errors"][0]["message"].as_str().unwrap().contains("name"),
        "{r}"
    );
    let r = app
        .gql(
            "query($id: UUID!) { bot(id: $id) { id } }",
            json!({ "id": "not-a-uuid" }),
        )
        .await;
    assert!(r["errors"].is_array(), "{r}");
}

async fn plan_gating(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, free_key) = app.create_org(Plan::Free).await;
    let r = app
        .gql_as(
            Some(&free_key),
            r#"mutation { createBot(input: {name: "b"}) { id } }"#,
            json!({}),
        )
        .await;
    assert_eq!(error_code(&r), Some("PLAN_REQUIRED"));
    assert_eq!(r["errors"][0]["extensions"]["requiredPlan"], "GROWTH");
    let (_, growth_key) = app.create_org(Plan::Growth).await;
    let r = app
        .gql_as(
            Some(&growth_key),
            r#"mutation { createBot(input: {name: "b"}) { id } }"#,
            json!({}),
        )
        .await;
    assert!(r["errors"].is_null(), "{r}");
}

async fn broken_database_is_masked(backend: Backend) {
    use sea_orm::ConnectionTrait;
    let app = spawn_app(backend).await;
    app.state
        .db
        .execute_unprepared("DROP TABLE tooltips")
        .await
        .unwrap();
    let r = app.gql("{ tooltips { nodes { id } } }", json!({})).await;
    assert_eq!(error_code(&r), Some("INTERNAL"));
    let msg = r["errors"][0]["message"].as_str().unwrap();
    assert_eq!(msg, "internal error");
    let text = r.to_string().to_lowercase();
    assert!(
        !text.contains("no such table") && !text.contains("relation") && !text.contains("select"),
        "{r}"
    );
    // The rest of the API still works.
    app.gql_ok("{ org { id } }", json!({})).await;
}

#[tokio::test]
async fn transport_limits() {
    let app = spawn_app(Backend::Sqlite).await;
    let url = format!("{}/graphql", app.address);

    // Malformed JSON: 400 with a GraphQL-shaped error.
    let r = app
        .client
        .post(&url)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        error_code(&r.json::<Value>().await.unwrap()),
        Some("BAD_REQUEST")
    );

    // Oversized body: 413.
    let big = json!({ "query": format!("{{ org {{ id }} }} # {}", "x".repeat(400_000)) });
    let r = app
        .client
        .post(&url)
        .header("x-api-key", &app.api_key)
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);

    // Batches: allowed up to the limit, refused beyond.
    let op = json!({ "query": "{ org { id } }" });
    let ok: Value = app
        .client
        .post(&url)
        .header("x-api-key", &app.api_key)
        .json(&json!([op, op]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ok.as_array().unwrap().len(), 2);
    let r = app
        .client
        .post(&url)
        .header("x-api-key", &app.api_key)
        .json(&vec![op.clone(); 11])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = app.client.post(&url).json(&json!([])).send().await.unwrap();
    assert_eq!(r.status(), 400);

    // Depth limit.
    let deep = format!(
        "{{ __schema {{ types {{ fields {{ type {{ {}name{} }} }} }} }} }}",
        "ofType { ".repeat(14),
        " }".repeat(14)
    );
    let r = app.gql(&deep, json!({})).await;
    assert!(
        r["errors"][0]["message"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("nested too deep"),
        "{r}"
    );

    // Complexity limit: many aliased list fields.
    let wide: String = (0..60).map(|i| format!("a{i}: knowledgeBases(first: 100) {{ nodes {{ id name description createdAt updatedAt }} }} ")).collect();
    let r = app.gql(&format!("{{ {wide} }}"), json!({})).await;
    assert!(
        r["errors"][0]["message"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("complex"),
        "{r}"
    );

    // GET runs queries but never mutations.
    let r: Value = app
        .client
        .get(&url)
        .query(&[("query", "{ org { id } }")])
        .header("x-api-key", &app.api_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["data"]["org"]["id"], app.org_id.to_string());
    let r = app
        .client
        .get(&url)
        .query(&[(
            "query",
            "mutation { createKnowledgeBase(input: {name: \"x\"}) { id } }",
        )])
        .header("x-api-key", &app.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let kbs = app
        .gql_ok("{ knowledgeBases { nodes { id } } }", json!({}))
        .await;
    assert_eq!(kbs["knowledgeBases"]["nodes"], json!([]));
}

#[tokio::test]
async fn public_requests_are_rate_limited_per_client() {
    let app = spawn_app_with(Backend::Sqlite, |c| c.public_rate_limit = 5).await;
    let url = format!("{}/graphql", app.address);
    let body = json!({ "query": "{ __typename }" });
    for i in 0..5 {
        let r = app.client.post(&url).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 200, "request {i}");
    }
    let r = app.client.post(&url).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(
        error_code(&r.json::<Value>().await.unwrap()),
        Some("RATE_LIMITED")
    );
    // Dashboards with a key are not limited by the public rate.
    for _ in 0..10 {
        let r = app
            .client
            .post(&url)
            .header("x-api-key", &app.api_key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_rate_limits_are_shared_across_replicas_through_redis() {
    let prefix = format!("wftest:{}:", uuid::Uuid::new_v4().simple());
    let a = spawn_app_with(Backend::Sqlite, |c| {
        c.public_rate_limit = 6;
        c.redis_url = Some(redis_url());
        c.redis_prefix = prefix.clone();
    })
    .await;
    let b = spawn_app_with(Backend::Sqlite, |c| {
        c.public_rate_limit = 6;
        c.redis_url = Some(redis_url());
        c.redis_prefix = prefix.clone();
    })
    .await;
    let body = json!({ "query": "{ __typename }" });
    let mut statuses = vec![];
    for i in 0..8 {
        let app = if i % 2 == 0 { &a } else { &b };
        statuses.push(
            app.client
                .post(format!("{}/graphql", app.address))
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 200, 429, 429]);
}
