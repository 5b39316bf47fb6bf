//! The operator role and the credits it manages, end to end: operator keys
//! minted by the CLI run the operator-only operations; org keys get
//! `FORBIDDEN` and the public `UNAUTHENTICATED`; the ledger sums to the
//! balance after grants, revocations, concurrent turns whose usage runs far
//! above their reservation, and cancelled calls. Also the small leaks: secrets
//! in `Debug`, and `/demo` found by the demo org's stored id, not its name.

use std::time::Duration;

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};
use uuid::Uuid;
use wayfinder::llm::ProviderKind;

use crate::{
    chat_turn::{ARTICLES, widget_with_kb},
    cli::run as cli,
    fake_llm::{Behaviour, FakeLlm},
    helpers::*,
    on_both_databases,
};

const CREATE_ORG: &str = "mutation($i: CreateOrgInput!) { createOrg(input: $i) { org { id name plan creditBalance } apiKey { key apiKey { prefix } } } }";
const ORGS: &str = "query($f: Int, $a: String) { orgs(first: $f, after: $a) { nodes { id name plan creditBalance } pageInfo { hasNextPage endCursor } } }";
const SET_PLAN: &str = "mutation($i: SetOrgPlanInput!) { setOrgPlan(input: $i) { id plan } }";
const GRANT: &str = "mutation($i: GrantCreditsInput!) { grantCredits(input: $i) { orgId requested applied balance ledgerEntry { amount kind note } } }";
const REVOKE: &str = "mutation($i: RevokeCreditsInput!) { revokeCredits(input: $i) { orgId requested applied balance ledgerEntry { amount kind note } } }";
const SEND: &str = "mutation($i: TurnInput!) { sendMessage(input: $i) { status } }";

/// An operator key minted the way operators mint them: by the CLI.
async fn cli_operator_key(app: &TestApp) -> (String, String) {
    let out = cli(
        &app.db,
        &["operator-key", "create", "--name", "billing", "--json"],
    )
    .await;
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    (
        v["operatorKey"].as_str().unwrap().to_string(),
        v["operatorKeyId"].as_str().unwrap().to_string(),
    )
}

/// The org's balance and the sum of its ledger, read from the database.
pub async fn balance_and_ledger_sum(app: &TestApp, org_id: Uuid) -> (i64, i64, Vec<String>) {
    let org = entity::org::Entity::find_by_id(org_id)
        .one(&app.state.db)
        .await
        .unwrap()
        .unwrap();
    let rows = entity::credit_ledger::Entity::find()
        .filter(entity::credit_ledger::Column::OrgId.eq(org_id))
        .all(&app.state.db)
        .await
        .unwrap();
    (
        org.credit_balance,
        rows.iter().map(|r| r.amount).sum(),
        rows.iter().map(|r| r.kind.clone()).collect(),
    )
}

fn count(kinds: &[String], kind: &str) -> usize {
    kinds.iter().filter(|k| *k == kind).count()
}

on_both_databases!(
    operator_keys_run_the_operator_operations,
    only_operator_keys_reach_operator_operations,
    concurrent_turns_over_their_reservation_keep_the_ledger_exact,
    cancelled_and_panicking_calls_leave_no_reservation_unsettled,
    demo_page_is_found_by_the_stored_id_not_by_name,
);

async fn operator_keys_run_the_operator_operations(backend: Backend) {
    let app = spawn_app(backend).await;
    let (op, _) = cli_operator_key(&app).await;
    assert!(op.starts_with("wf_op_") && op.len() >= 6 + 32, "{op}");

    // createOrg: the org and its first API key, which works at once.
    let created = app
        .gql_as(
            Some(&op),
            CREATE_ORG,
            json!({ "i": { "name": "Acme", "plan": "GROWTH", "ownerEmail": "ops@acme.test" } }),
        )
        .await;
    assert!(created["errors"].is_null(), "{created}");
    let c = &created["data"]["createOrg"];
    assert_eq!(c["org"]["name"], "Acme");
    assert_eq!(c["org"]["plan"], "GROWTH");
    assert_eq!(c["org"]["creditBalance"], 0);
    let org_id = c["org"]["id"].as_str().unwrap().to_string();
    let org_uuid = Uuid::parse_str(&org_id).unwrap();
    let key = c["apiKey"]["key"].as_str().unwrap().to_string();
    assert!(key.starts_with("wf_live_"));
    assert!(key.starts_with(c["apiKey"]["apiKey"]["prefix"].as_str().unwrap()));
    let me = app
        .gql_as(Some(&key), "{ org { id name plan } }", json!({}))
        .await;
    assert_eq!(
        me["data"]["org"],
        json!({ "id": org_id, "name": "Acme", "plan": "GROWTH" })
    );
    let bad = app
        .gql_as(
            Some(&op),
            CREATE_ORG,
            json!({ "i": { "name": "X", "plan": "FREE", "ownerEmail": "nope" } }),
        )
        .await;
    assert_eq!(error_code(&bad), Some("BAD_USER_INPUT"), "{bad}");
    assert_eq!(bad["errors"][0]["extensions"]["field"], "input.ownerEmail");

    // orgs: every org, oldest first, page by page.
    let first = app
        .gql_as(Some(&op), ORGS, json!({ "f": 1, "a": null }))
        .await;
    let page = &first["data"]["orgs"];
    assert_eq!(page["nodes"][0]["name"], "Test org", "{first}");
    assert_eq!(page["pageInfo"]["hasNextPage"], true);
    let second = app
        .gql_as(
            Some(&op),
            ORGS,
            json!({ "f": 10, "a": page["pageInfo"]["endCursor"] }),
        )
        .await;
    assert_eq!(
        second["data"]["orgs"]["nodes"],
        json!([{ "id": org_id, "name": "Acme", "plan": "GROWTH", "creditBalance": 0 }]),
        "{second}"
    );
    assert_eq!(second["data"]["orgs"]["pageInfo"]["hasNextPage"], false);

    // setOrgPlan, seen by the org itself and in its outbox.
    let set = app
        .gql_as(
            Some(&op),
            SET_PLAN,
            json!({ "i": { "orgId": org_id, "plan": "ENTERPRISE" } }),
        )
        .await;
    assert_eq!(set["data"]["setOrgPlan"]["plan"], "ENTERPRISE", "{set}");
    let me = app.gql_as(Some(&key), "{ org { plan } }", json!({})).await;
    assert_eq!(me["data"]["org"]["plan"], "ENTERPRISE");
    let missing = app
        .gql_as(
            Some(&op),
            SET_PLAN,
            json!({ "i": { "orgId": Uuid::now_v7(), "plan": "PRO" } }),
        )
        .await;
    assert_eq!(error_code(&missing), Some("NOT_FOUND"), "{missing}");

    // grantCredits and revokeCredits, each with its ledger row.
    let granted = app
        .gql_as(
            Some(&op),
            GRANT,
            json!({ "i": { "orgId": org_id, "amount": 500, "note": "invoice 42" } }),
        )
        .await;
    assert_eq!(
        granted["data"]["grantCredits"],
        json!({ "orgId": org_id, "requested": 500, "applied": 500, "balance": 500,
                "ledgerEntry": { "amount": 500, "kind": "GRANT", "note": "invoice 42" } }),
        "{granted}"
    );
    let revoked = app
        .gql_as(
            Some(&op),
            REVOKE,
            json!({ "i": { "orgId": org_id, "amount": 200, "note": "refund 7" } }),
        )
        .await;
    assert_eq!(
        revoked["data"]["revokeCredits"],
        json!({ "orgId": org_id, "requested": 200, "applied": 200, "balance": 300,
                "ledgerEntry": { "amount": -200, "kind": "REVOKE", "note": "refund 7" } }),
        "{revoked}"
    );
    // More than the balance: the whole balance, never below zero.
    let all = app
        .gql_as(
            Some(&op),
            REVOKE,
            json!({ "i": { "orgId": org_id, "amount": 1000, "note": "chargeback" } }),
        )
        .await;
    assert_eq!(
        all["data"]["revokeCredits"],
        json!({ "orgId": org_id, "requested": 1000, "applied": 300, "balance": 0,
                "ledgerEntry": { "amount": -300, "kind": "REVOKE", "note": "chargeback" } }),
        "{all}"
    );
    // Nothing left: nothing changes, nothing is recorded.
    let none = app
        .gql_as(
            Some(&op),
            REVOKE,
            json!({ "i": { "orgId": org_id, "amount": 5 } }),
        )
        .await;
    assert_eq!(
        none["data"]["revokeCredits"],
        json!({ "orgId": org_id, "requested": 5, "applied": 0, "balance": 0, "ledgerEntry": null }),
        "{none}"
    );
    for (q, amount) in [(GRANT, 0), (GRANT, 1_000_000_001), (REVOKE, -1)] {
        let r = app
            .gql_as(
                Some(&op),
                q,
                json!({ "i": { "orgId": org_id, "amount": amount } }),
            )
            .await;
        assert_eq!(error_code(&r), Some("BAD_USER_INPUT"), "{r}");
    }
    let r = app
        .gql_as(
            Some(&op),
            GRANT,
            json!({ "i": { "orgId": Uuid::now_v7(), "amount": 1 } }),
        )
        .await;
    assert_eq!(error_code(&r), Some("NOT_FOUND"), "{r}");

    // The ledger sums to the balance; the org sees it all, and the events.
    app.gql_as(
        Some(&op),
        GRANT,
        json!({ "i": { "orgId": org_id, "amount": 70 } }),
    )
    .await;
    let (balance, sum, kinds) = balance_and_ledger_sum(&app, org_uuid).await;
    assert_eq!((balance, sum), (70, 70), "{kinds:?}");
    assert_eq!(kinds, ["GRANT", "REVOKE", "REVOKE", "GRANT"]);
    let own = app
        .gql_as(
            Some(&key),
            "{ credits { balance ledger { nodes { amount kind } } } }",
            json!({}),
        )
        .await;
    assert_eq!(own["data"]["credits"]["balance"], 70);
    let events = app
        .gql_as(
            Some(&key),
            "{ events(first: 50) { nodes { kind payload } } }",
            json!({}),
        )
        .await;
    let kinds: Vec<&str> = events["data"]["events"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "org.created",
            "org.updated",
            "credits.granted",
            "credits.revoked",
            "credits.revoked",
            "credits.granted"
        ],
        "{events}"
    );
    assert_eq!(
        events["data"]["events"]["nodes"][4]["payload"]["amount"], 300,
        "{events}"
    );
    // The test org saw none of it: only its own creation is in its outbox.
    let other = app.gql_ok("{ events { nodes { kind } } }", json!({})).await;
    assert_eq!(other["events"]["nodes"], json!([{ "kind": "org.created" }]));
}

async fn only_operator_keys_reach_operator_operations(backend: Backend) {
    let app = spawn_app(backend).await;
    let op = app.operator_key().await;
    let org = app.org_id.to_string();
    let operations: [(&str, Value); 5] = [
        (
            CREATE_ORG,
            json!({ "i": { "name": "Evil", "plan": "ENTERPRISE", "ownerEmail": "e@evil.test" } }),
        ),
        (ORGS, json!({})),
        (
            SET_PLAN,
            json!({ "i": { "orgId": org, "plan": "ENTERPRISE" } }),
        ),
        (GRANT, json!({ "i": { "orgId": org, "amount": 1000000 } })),
        (REVOKE, json!({ "i": { "orgId": org, "amount": 1 } })),
    ];
    for (query, vars) in &operations {
        let by_org = app.gql(query, vars.clone()).await;
        assert_eq!(error_code(&by_org), Some("FORBIDDEN"), "{query}: {by_org}");
        let public = app.gql_as(None, query, vars.clone()).await;
        assert_eq!(
            error_code(&public),
            Some("UNAUTHENTICATED"),
            "{query}: {public}"
        );
        let by_operator = app.gql_as(Some(&op), query, vars.clone()).await;
        assert!(by_operator["errors"].is_null(), "{query}: {by_operator}");
    }
    // Another org's key cannot touch the test org either.
    let (_, other) = app.create_org(wayfinder::domain::Plan::Enterprise).await;
    let r = app
        .gql_as(
            Some(&other),
            GRANT,
            json!({ "i": { "orgId": org, "amount": 5 } }),
        )
        .await;
    assert_eq!(error_code(&r), Some("FORBIDDEN"), "{r}");

    // An operator key holds no org: org operations refuse it.
    for query in [
        "{ org { id } }",
        "{ bots { nodes { id } } }",
        "{ credits { balance } }",
        r#"mutation { createKnowledgeBase(input: {name: "x"}) { id } }"#,
        r#"mutation { updateOrgSettings(input: {name: "x"}) { id } }"#,
    ] {
        let r = app.gql_as(Some(&op), query, json!({})).await;
        assert_eq!(error_code(&r), Some("FORBIDDEN"), "{query}: {r}");
    }
    let rest = app
        .client
        .post(format!("{}/api/v1/orgs/{org}/chatbots", app.address))
        .header("x-api-key", &op)
        .json(&json!({ "name": "x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(rest.status(), 403);

    // A wrong operator key is a wrong key: 401, not a public caller.
    // Its last character changed (to `x`, or `y` when it was an `x`).
    let last = if op.ends_with('x') { 'y' } else { 'x' };
    let wrong = format!("{}{last}", &op[..op.len() - 1]);
    let resp = app
        .client
        .post(format!("{}/graphql", app.address))
        .header("authorization", format!("Bearer {wrong}"))
        .json(&json!({ "query": ORGS }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    // Over graphql-ws the operator key opens an operator connection.
    let mut ws = WsClient::connect(&app.ws_url, json!({ "apiKey": op })).await;
    ws.subscribe("o", "{ orgs { nodes { id } } }", json!({}))
        .await;
    let got = ws.collect("o", Duration::from_secs(5)).await;
    assert_eq!(got[0]["data"]["orgs"]["nodes"][0]["id"], org, "{got:?}");
    let mut ws = WsClient::connect(&app.ws_url, json!({ "apiKey": app.api_key })).await;
    ws.subscribe("o", "{ orgs { nodes { id } } }", json!({}))
        .await;
    let got = ws.collect("o", Duration::from_secs(5)).await;
    assert_eq!(
        got[0]["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{got:?}"
    );
}

/// A server whose LLM is `fake`, with short timeouts.
async fn app_with_llm(backend: Backend, fake: &FakeLlm) -> TestApp {
    spawn_app_with(backend, |c| {
        fake.configure(c);
        c.llm_model = "test-model".into();
        c.llm_first_token_timeout_ms = 2_000;
        c.llm_total_timeout_ms = 5_000;
        c.llm_max_retries = 0;
        c.public_rate_limit = 0;
    })
    .await
}

async fn concurrent_turns_over_their_reservation_keep_the_ledger_exact(backend: Backend) {
    let fake = FakeLlm::start(ProviderKind::OpenAi).await;
    let app = app_with_llm(backend, &fake).await;
    let (widget, _, _) = widget_with_kb(&app, ARTICLES).await;
    // Each call reserves about 2 credits (~1.2k tokens estimated) but the
    // provider reports 30k tokens used (30 credits): every settlement wants far
    // more than was reserved, and the 150 credits run out midway.
    app.grant_credits(150).await;
    fake.set_behaviour(Behaviour::reply(
        &["Use Forgot ", "password [1]."],
        29_000,
        1_000,
    ));
    let mut turns = vec![];
    for _ in 0..100 {
        let (url, widget) = (app.address.clone(), widget.clone());
        turns.push(tokio::spawn(async move {
            let r: Value = reqwest::Client::new()
                .post(format!("{url}/graphql"))
                .json(&json!({ "query": SEND, "variables": { "i": { "widgetId": widget, "message": "How do I reset my password?" } } }))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            r["data"]["sendMessage"]["status"]
                .as_str()
                .unwrap_or("?")
                .to_string()
        }));
    }
    let mut statuses = vec![];
    for t in turns {
        statuses.push(t.await.unwrap());
    }
    let answered = statuses.iter().filter(|s| *s == "ANSWERED").count();
    let insufficient = statuses
        .iter()
        .filter(|s| *s == "INSUFFICIENT_CREDITS")
        .count();
    assert_eq!(answered + insufficient, 100, "{statuses:?}");
    assert!(answered >= 5, "{statuses:?}");
    assert!(
        insufficient >= 25,
        "the balance ran out midway: {statuses:?}"
    );
    assert_eq!(fake.request_count(), answered);

    let (balance, sum, kinds) = balance_and_ledger_sum(&app, app.org_id).await;
    assert!(balance >= 0, "{balance}");
    assert_eq!(sum, balance, "the ledger sums to the balance");
    assert_eq!(count(&kinds, "RESERVATION"), answered);
    assert_eq!(
        count(&kinds, "SETTLEMENT"),
        answered,
        "every reservation is settled once"
    );
    // Usage was far above every reservation: nothing was refunded, and the
    // whole grant was spent as far as the calls' cost allowed.
    assert_eq!(count(&kinds, "REFUND"), 0);
    assert_eq!(balance, 150 - (answered as i64 * 30).min(150));
}

async fn cancelled_and_panicking_calls_leave_no_reservation_unsettled(backend: Backend) {
    use wayfinder::{auth::Caller, service::credits::ReservationGuard, turn};

    // OpenAI's wire format opens the stream (headers, a role-only chunk) at
    // once, so the call is cut while the response is streaming.
    let fake = FakeLlm::start(ProviderKind::OpenAi).await;
    let app = app_with_llm(backend, &fake).await;
    let (widget, _, _) = widget_with_kb(&app, ARTICLES).await;
    app.grant_credits(100).await;
    let settled = |app: &TestApp| {
        let app_db = app.state.db.clone();
        let org = app.org_id;
        async move {
            for _ in 0..100 {
                let rows = entity::credit_ledger::Entity::find()
                    .filter(entity::credit_ledger::Column::OrgId.eq(org))
                    .all(&app_db)
                    .await
                    .unwrap();
                let reservations = rows.iter().filter(|r| r.kind == "RESERVATION").count();
                let settlements = rows.iter().filter(|r| r.kind == "SETTLEMENT").count();
                if reservations == settlements {
                    return rows;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("a reservation was never settled");
        }
    };

    // 1. The turn's task is aborted while the provider is streaming.
    fake.set_behaviour(Behaviour::SlowFirstToken(Duration::from_secs(3)));
    let started = turn::start(
        &app.state,
        &Caller::Public {
            session_token: None,
        },
        turn::TurnRequest {
            widget_id: Some(Uuid::parse_str(&widget).unwrap()),
            message: "How do I reset my password?".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let task = tokio::spawn(turn::run(app.state.clone(), started));
    for _ in 0..100 {
        if fake.request_count() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(fake.request_count(), 1, "the call is in flight");
    tokio::time::sleep(Duration::from_millis(200)).await;
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    let rows = settled(&app).await;
    let (balance, sum, _) = balance_and_ledger_sum(&app, app.org_id).await;
    assert_eq!((balance, sum), (100, 100), "the reservation was refunded");
    assert!(
        rows.iter().any(
            |r| r.kind == "SETTLEMENT" && r.note.as_deref().unwrap_or("").contains("cancelled")
        ),
        "{rows:?}"
    );

    // 2. The client hangs up mid-stream.
    let hung_up = reqwest::Client::builder()
        .timeout(Duration::from_millis(700))
        .build()
        .unwrap()
        .post(format!("{}/graphql", app.address))
        .json(&json!({ "query": SEND, "variables": { "i": { "widgetId": widget, "message": "How do I reset my password?" } } }))
        .send()
        .await;
    assert!(hung_up.is_err(), "the client gave up first");
    assert_eq!(fake.request_count(), 2);
    settled(&app).await;
    let (balance, sum, _) = balance_and_ledger_sum(&app, app.org_id).await;
    assert_eq!(sum, balance);
    // Refunded when the server dropped the request, or settled at the fake's
    // tiny usage (1 credit) had it finished the call: never left reserved.
    assert!(balance == 100 || balance == 99, "{balance}");

    // 3. A panic inside the paid call.
    let db = app.state.db.clone();
    let org = app.org_id;
    let before = balance;
    let panicked = tokio::spawn(async move {
        let _guard = ReservationGuard::reserve(&db, org, None, "test-model", 7)
            .await
            .unwrap();
        panic!("the provider adapter blew up");
    })
    .await;
    assert!(panicked.unwrap_err().is_panic());
    settled(&app).await;
    let (balance, sum, _) = balance_and_ledger_sum(&app, app.org_id).await;
    assert_eq!((balance, sum), (before, before), "refunded after the panic");
}

/// Renames the test org to the demo's name and gives it a published widget.
async fn take_the_demo_name(app: &TestApp) -> String {
    app.gql_ok(
        r#"mutation { updateOrgSettings(input: {name: "Wayfinder Demo"}) { name } }"#,
        json!({}),
    )
    .await;
    widget_with_kb(app, ARTICLES).await.0
}

async fn demo_page_is_found_by_the_stored_id_not_by_name(backend: Backend) {
    let widget_of_page = |html: &str| {
        let at = html
            .find("data-widget-id=\"")
            .expect("a widget on the page")
            + 16;
        html[at..at + 36].to_string()
    };
    // Without the demo, an org named like it does not make one.
    let app = spawn_app(backend).await;
    take_the_demo_name(&app).await;
    let resp = app
        .client
        .get(format!("{}/demo", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    // With the demo, an impostor does not replace it.
    let app = spawn_app_with(backend, |c| c.demo = true).await;
    let page = |app: &TestApp| {
        let (client, url) = (app.client.clone(), format!("{}/demo", app.address));
        async move {
            let resp = client.get(url).send().await.unwrap();
            assert_eq!(resp.status(), 200);
            resp.text().await.unwrap()
        }
    };
    let demo_widget = widget_of_page(&page(&app).await);
    let impostor = take_the_demo_name(&app).await;
    assert_ne!(impostor, demo_widget);
    assert_eq!(widget_of_page(&page(&app).await), demo_widget);

    // An installation from before the stored id keeps its demo: the migration
    // records the oldest org when it still has the demo's name.
    use migration::MigratorTrait;
    let names: Vec<String> = migration::Migrator::migrations()
        .iter()
        .map(|m| m.name().to_string())
        .collect();
    let at = names
        .iter()
        .position(|n| n == "m20261201_000005_server_settings")
        .unwrap();
    let undo = u32::try_from(names.len() - at).unwrap();
    migration::Migrator::down(&app.state.db, Some(undo))
        .await
        .unwrap();
    migration::Migrator::up(&app.state.db, None).await.unwrap();
    assert_eq!(widget_of_page(&page(&app).await), demo_widget);
}

#[test]
fn debug_output_never_contains_a_secret() {
    use wayfinder::{config::Config, service::org::UpdateOrgSettingsInput};
    let mut config = Config::defaults();
    config.secret = Some("the-server-secret-0123456789abcdef".into());
    config.llm_api_key = Some("sk-llm-0123456789".into());
    config.smtp_url = Some("smtp://postmaster:smtp-password@mail.example.com:587".into());
    config.database_url = Some("postgres://wf:db-password@db.example.com/wf".into());
    config.redis_url = Some("redis://:redis-password@cache.example.com:6379".into());
    let shown = format!("{config:?} {config:#?}");
    for secret in [
        "the-server-secret",
        "sk-llm-0123456789",
        "smtp-password",
        "db-password",
        "redis-password",
    ] {
        assert!(!shown.contains(secret), "{secret} leaked: {shown}");
    }
    assert!(shown.contains("db.example.com"));

    let input = UpdateOrgSettingsInput {
        llm_api_key: async_graphql_value("sk-org-own-key-42"),
        llm_base_url: async_graphql_value("https://user:url-password@llm.example.com"),
        ..Default::default()
    };
    let shown = format!("{input:?}");
    assert!(!shown.contains("sk-org-own-key-42"), "{shown}");
    assert!(!shown.contains("url-password"), "{shown}");
    assert!(shown.contains("llm.example.com"), "{shown}");

    let turn = wayfinder::turn::TurnRequest {
        session_token: Some("session.token-secret".into()),
        ..Default::default()
    };
    assert!(!format!("{turn:?}").contains("token-secret"));
}

fn async_graphql_value(s: &str) -> async_graphql::MaybeUndefined<String> {
    async_graphql::MaybeUndefined::Value(s.to_string())
}
