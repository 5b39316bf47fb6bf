//! The operator's admin commands, run as the binary runs them.

use clap::Parser;
use serde_json::{Value, json};

use crate::helpers::*;

async fn run(db: &TestDatabase, args: &[&str]) -> String {
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
        json!([{ "amount": 500, "kind": "GRANT" }])
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
