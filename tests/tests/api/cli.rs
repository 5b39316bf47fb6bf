//! The operator's admin commands, run as the binary runs them.

use clap::Parser;
use serde_json::{Value, json};

use crate::helpers::*;

/// Runs `wayfinder ARGS` against `db`, as the binary would; returns its output.
pub async fn run(db: &TestDatabase, args: &[&str]) -> String {
    let mut argv = vec!["wayfinder", "--database-url", &db.url, "--data-dir"];
    let dir = db.dir.display().to_string();
    argv.push(&dir);
    argv.extend_from_slice(args);
    let cli = wayfinder::cli::Cli::try_parse_from(argv).unwrap();
    let mut out: Vec<u8> = vec![];
    wayfinder::cli::run(cli, &mut out).await.unwrap();
    String::from_utf8(out).unwrap()
}

crate::on_both_databases!(admin_commands_create_orgs_keys_and_credits);

async fn admin_commands_create_orgs_keys_and_credits(backend: Backend) {
    let app = spawn_app(backend).await;
    let out = run(
        &app.db,
        &[
            "org",
            "create",
            "--name",
            "Acme",
            "--plan",
            "GROWTH",
            "--owner-email",
            "ops@acme.test",
            "--json",
        ],
    )
    .await;
    let org: Value = serde_json::from_str(out.trim()).unwrap();
    let org_id = org["orgId"].as_str().unwrap().to_string();
    let key = org["apiKey"].as_str().unwrap().to_string();
    assert!(key.starts_with("wf_live_"));
    let me = app
        .gql_as(Some(&key), "{ org { id name plan } }", json!({}))
        .await;
    assert_eq!(
        me["data"]["org"],
        json!({ "id": org_id, "name": "Acme", "plan": "GROWTH" })
    );

    let out = run(&app.db, &["apikey", "create", "--org", &org_id, "--json"]).await;
    let second: Value = serde_json::from_str(out.trim()).unwrap();
    let me = app
        .gql_as(
            Some(second["apiKey"].as_str().unwrap()),
            "{ org { id } }",
            json!({}),
        )
        .await;
    assert_eq!(me["data"]["org"]["id"], org_id.as_str());

    let out = run(
        &app.db,
        &[
            "credits", "grant", "--org", &org_id, "--amount", "500", "--json",
        ],
    )
    .await;
    let granted: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(granted["balance"], 500);
    let out = run(
        &app.db,
        &[
            "credits", "revoke", "--org", &org_id, "--amount", "800", "--json",
        ],
    )
    .await;
    let revoked: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        revoked,
        json!({ "orgId": org_id, "requested": 800, "revoked": 500, "balance": 0 })
    );
    run(
        &app.db,
        &[
            "credits", "grant", "--org", &org_id, "--amount", "500", "--json",
        ],
    )
    .await;
    let credits = app
        .gql_as(
            Some(&key),
            "{ credits { balance ledger { nodes { amount kind } } } }",
            json!({}),
        )
        .await;
    assert_eq!(credits["data"]["credits"]["balance"], 500);
    assert_eq!(
        credits["data"]["credits"]["ledger"]["nodes"],
        json!([
            { "amount": 500, "kind": "GRANT" },
            { "amount": -500, "kind": "REVOKE" },
            { "amount": 500, "kind": "GRANT" }
        ])
    );

    // Bad input is a clear error, not a panic.
    let cli = wayfinder::cli::Cli::try_parse_from([
        "wayfinder",
        "--database-url",
        &app.db.url,
        "org",
        "create",
        "--name",
        "X",
        "--owner-email",
        "nope",
    ])
    .unwrap();
    let err = wayfinder::cli::run(cli, &mut Vec::<u8>::new())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("ownerEmail"), "{err}");
    assert!(
        wayfinder::cli::Cli::try_parse_from([
            "wayfinder",
            "org",
            "create",
            "--name",
            "X",
            "--plan",
            "GOLD",
            "--owner-email",
            "a@b.co"
        ])
        .is_err()
    );
}

crate::on_both_databases!(operator_keys_are_minted_listed_and_revoked_by_the_cli);

async fn operator_keys_are_minted_listed_and_revoked_by_the_cli(backend: Backend) {
    let app = spawn_app(backend).await;
    let out = run(
        &app.db,
        &["operator-key", "create", "--name", "billing", "--json"],
    )
    .await;
    let made: Value = serde_json::from_str(out.trim()).unwrap();
    let key = made["operatorKey"].as_str().unwrap().to_string();
    let id = made["operatorKeyId"].as_str().unwrap().to_string();
    assert!(key.starts_with("wf_op_") && key.len() == 46, "{key}");
    assert!(key.starts_with(made["prefix"].as_str().unwrap()));
    assert_eq!(made["name"], "billing");
    let text = run(&app.db, &["operator-key", "create"]).await;
    assert!(
        text.contains("wf_op_") && text.contains("shown once"),
        "{text}"
    );

    // Only the hash is stored.
    use sea_orm::EntityTrait;
    let rows = entity::operator_key::Entity::find()
        .all(&app.state.db)
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| !r.key_hash.contains(&key[6..])));

    let orgs = "{ orgs { nodes { id } } }";
    let ok = app.gql_as(Some(&key), orgs, json!({})).await;
    assert!(ok["errors"].is_null(), "{ok}");
    let listed = run(&app.db, &["operator-key", "list", "--json"]).await;
    let listed: Value = serde_json::from_str(listed.trim()).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert!(
        !listed[0]["lastUsedAt"].is_null(),
        "use is recorded: {listed}"
    );
    assert!(!listed.to_string().contains(&key), "never the key itself");

    // Revoked, it stops working at once.
    let out = run(&app.db, &["operator-key", "revoke", "--id", &id, "--json"]).await;
    let revoked: Value = serde_json::from_str(out.trim()).unwrap();
    assert!(!revoked["revokedAt"].is_null(), "{revoked}");
    let refused = app
        .client
        .post(format!("{}/graphql", app.address))
        .header("x-api-key", &key)
        .json(&json!({ "query": orgs }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(error_code(&body), Some("UNAUTHENTICATED"));
    let listed = run(&app.db, &["operator-key", "list"]).await;
    assert_eq!(listed.lines().count(), 1, "{listed}");
    let all = run(&app.db, &["operator-key", "list", "--all"]).await;
    assert!(all.contains("revoked") && all.contains("billing"), "{all}");

    // A revoked key cannot open a new socket either (close 4403).
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};
    let mut req = app.ws_url.as_str().into_client_request().unwrap();
    req.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    socket
        .send(Message::text(
            json!({ "type": "connection_init", "payload": { "apiKey": key } }).to_string(),
        ))
        .await
        .unwrap();
    use futures_util::StreamExt;
    let closed = tokio::time::timeout(std::time::Duration::from_secs(5), socket.next())
        .await
        .unwrap();
    match closed {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 4403),
        other => panic!("expected close 4403, got {other:?}"),
    }

    // Revoking an unknown key is a clear error.
    let cli = wayfinder::cli::Cli::try_parse_from([
        "wayfinder",
        "--database-url",
        &app.db.url,
        "operator-key",
        "revoke",
        "--id",
        &uuid::Uuid::now_v7().to_string(),
    ])
    .unwrap();
    let err = wayfinder::cli::run(cli, &mut Vec::<u8>::new())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not found"), "{err}");
}

crate::on_both_databases!(kb_import_is_idempotent_by_path_and_skips_bad_files);

/// `wayfinder kb import`: Markdown and HTML become articles; a second run
/// updates what changed and duplicates nothing; bad files are listed, not fatal.
async fn kb_import_is_idempotent_by_path_and_skips_bad_files(backend: Backend) {
    let app = spawn_app(backend).await;
    let v = app
        .gql(
            r#"mutation { createKnowledgeBase(input: {name: "Imported"}) { id } }"#,
            json!({}),
        )
        .await;
    let kb = v["data"]["createKnowledgeBase"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let dir = app.db.dir.join("import");
    std::fs::create_dir_all(dir.join("billing")).unwrap();
    std::fs::write(
        dir.join("billing/refunds.md"),
        "# Refunds\n\nWe refund annual plans within 30 days.\n\n## Monthly plans\nNo refunds.",
    )
    .unwrap();
    std::fs::write(
        dir.join("sso.html"),
        "<html><head><title>Single sign-on</title><script>x()</script></head>\
         <body><h1>Single sign-on</h1><p>Connect Okta under Settings, Security.</p></body></html>",
    )
    .unwrap();
    std::fs::write(
        dir.join("notes.md"),
        format!("# {}\nLong.", "very long title ".repeat(40)),
    )
    .unwrap();
    std::fs::write(dir.join("broken.md"), [0xff, 0xfe, 0x00, 0x41]).unwrap();
    std::fs::write(dir.join("ignored.png"), "not an article").unwrap();
    let org = app.org_id.to_string();
    let dir_s = dir.display().to_string();
    let args = ["kb", "import", "--org", &org, "--kb", &kb, &dir_s, "--json"];

    let first: Value = serde_json::from_str(run(&app.db, &args).await.trim()).unwrap();
    assert_eq!(first["files"], 4, "{first}");
    assert_eq!(first["created"], 3, "{first}");
    assert_eq!(first["skipped"][0]["file"], "broken.md", "{first}");
    assert_eq!(first["skipped"][0]["reason"], "not UTF-8 text");
    assert_eq!(first["warnings"][0]["file"], "notes.md", "{first}");

    let list = r#"query($kb: UUID!) { kbArticles(knowledgeBaseId: $kb, first: 50) { nodes { title body } } }"#;
    let articles = app.gql(list, json!({ "kb": kb })).await;
    let nodes = articles["data"]["kbArticles"]["nodes"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(nodes.len(), 3, "{articles}");
    let sso = nodes
        .iter()
        .find(|n| n["title"] == "Single sign-on")
        .unwrap();
    assert_eq!(sso["body"], "Connect Okta under Settings, Security.");
    let long = nodes
        .iter()
        .find(|n| n["title"].as_str().unwrap().starts_with("very"))
        .unwrap();
    let t = long["title"].as_str().unwrap();
    let last_word = t.strip_suffix('…').and_then(|c| c.rsplit(' ').next());
    assert!(t.chars().count() <= 300, "{t}");
    assert!(
        matches!(last_word, Some("very" | "long" | "title")),
        "cut inside a word: {t}"
    );

    // Run again after one edit: one update, nothing duplicated.
    std::fs::write(
        dir.join("billing/refunds.md"),
        "# Refunds\n\nWe refund annual plans within 14 days.",
    )
    .unwrap();
    let second: Value = serde_json::from_str(run(&app.db, &args).await.trim()).unwrap();
    assert_eq!(
        (
            second["created"].as_u64(),
            second["updated"].as_u64(),
            second["unchanged"].as_u64()
        ),
        (Some(0), Some(1), Some(2)),
        "{second}"
    );
    let articles = app.gql(list, json!({ "kb": kb })).await;
    assert_eq!(
        articles["data"]["kbArticles"]["nodes"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let hits = app
        .gql(
            r#"{ kbSearch(query: "refund within days", mode: KEYWORD) { title snippet } }"#,
            json!({}),
        )
        .await;
    assert_eq!(hits["data"]["kbSearch"][0]["title"], "Refunds", "{hits}");
    assert!(
        hits["data"]["kbSearch"][0]["snippet"]
            .as_str()
            .unwrap()
            .contains("14 days")
    );

    // Another org's knowledge base is refused.
    let (other, _) = app.create_org(wayfinder::domain::Plan::Pro).await;
    let cli = wayfinder::cli::Cli::try_parse_from([
        "wayfinder",
        "--database-url",
        &app.db.url,
        "kb",
        "import",
        "--org",
        &other.to_string(),
        "--kb",
        &kb,
        &dir_s,
    ])
    .unwrap();
    let mut out = vec![];
    let err = wayfinder::cli::run(cli, &mut out).await.unwrap_err();
    assert!(err.to_string().contains("knowledge base"), "{err}");
}
