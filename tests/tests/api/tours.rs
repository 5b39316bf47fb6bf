//! Tours on visitors' pages, through the public calls `tour.js` makes:
//! auto-start by audience (rules on signed traits and the page URL, checked
//! on the server) at most once per visitor, run reports stored per run
//! (another visitor's generated flow refused), the dashboard's runs and
//! funnels, and tour runs in a visitor's export, deletion and retention.

use chrono::{TimeDelta, Utc};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, sea_query::Expr};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    end_user_data::dump,
    helpers::*,
    identity::{SEND, identity_widget, user_hash},
    on_both_databases,
};

on_both_databases!(
    tour_calls_are_rate_limited_per_widget,
    auto_start_follows_audience_and_runs_once_per_visitor,
    reports_build_runs_and_funnels,
    tour_runs_are_exported_deleted_and_expire
);

const VISIT: &str = "mutation($i: VisitPageInput!) { visitPage(input: $i) { sessionId sessionToken run content { kind id name steps { title } } } }";
const REPORT: &str = "mutation($i: ReportTourRunInput!) { reportTourRun(input: $i) { accepted ignored sessionId sessionToken } }";

/// A widget whose bot runs on a site: (widget id, identity secret, site id).
async fn tour_widget(app: &TestApp) -> (String, String, String) {
    let (widget, secret) = identity_widget(app, false).await;
    let site = app
        .gql_ok(
            r#"mutation { createSite(input: {name: "App", baseUrl: "https://app.example.com"}) { id } }"#,
            json!({}),
        )
        .await["createSite"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let bot = app
        .gql_ok("{ chatWidgets { nodes { id botId } } }", json!({}))
        .await["chatWidgets"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["id"] == widget.as_str())
        .unwrap()["botId"]
        .clone();
    app.gql_ok(
        "mutation($b: UUID!, $s: UUID!) { updateBot(input: {id: $b, siteId: $s}) { id } }",
        json!({ "b": bot, "s": site }),
    )
    .await;
    (widget, secret, site)
}

/// A flow on `site`; returns its id.
async fn flow(app: &TestApp, site: &str, name: &str, extra: Value) -> String {
    let mut input = json!({
        "name": name,
        "siteId": site,
        "status": "PUBLISHED",
        "steps": [
            { "pageUrl": "/billing", "targetSelector": "#plans", "title": "Plans", "body": "Pick one.", "placement": "BOTTOM" },
            { "pageUrl": "/billing/pay", "targetSelector": "#pay", "title": "Pay", "body": "Then pay.", "placement": "TOP" },
        ],
    });
    for (k, v) in extra.as_object().unwrap() {
        input[k] = v.clone();
    }
    let r = app
        .gql(
            "mutation($i: CreateFlowInput!) { createFlow(input: $i) { id autoStart audience } }",
            json!({ "i": input }),
        )
        .await;
    assert!(r.get("errors").is_none(), "{r}");
    r["data"]["createFlow"]["id"].as_str().unwrap().to_string()
}

async fn visit(app: &TestApp, i: Value) -> Value {
    let r = app.gql_as(None, VISIT, json!({ "i": i })).await;
    assert!(r.get("errors").is_none(), "{r}");
    r["data"]["visitPage"].clone()
}

async fn report(app: &TestApp, i: Value) -> Value {
    let r = app.gql_as(None, REPORT, json!({ "i": i })).await;
    assert!(r.get("errors").is_none(), "{r}");
    r["data"]["reportTourRun"].clone()
}

/// One event as tour.js sends it: its DOM event's detail, name and run.
fn ev(run: &str, content: &str, kind: &str, step: i32) -> Value {
    let name = kind.to_lowercase().replace('_', "-");
    json!({ "run": run, "id": content, "type": name, "step": step, "of": 2 })
}

async fn auto_start_follows_audience_and_runs_once_per_visitor(backend: Backend) {
    let app = spawn_app(backend).await;
    let (widget, secret, site) = tour_widget(&app).await;
    let billing = flow(
        &app,
        &site,
        "Billing tour",
        json!({ "autoStart": "/billing/*" }),
    )
    .await;
    let pro = flow(
        &app,
        &site,
        "Pro settings",
        json!({
            "autoStart": "https://app.example.com/settings",
            "audience": "RULES",
            "audienceRules": { "all": [{ "identified": true }, { "trait": "plan", "op": "in", "value": ["pro", "enterprise"] }] },
        }),
    )
    .await;
    // Never auto-started: content for no one, a draft, content without a trigger.
    flow(
        &app,
        &site,
        "Only for one",
        json!({ "autoStart": "*", "audience": "NO_USERS" }),
    )
    .await;
    flow(
        &app,
        &site,
        "Draft",
        json!({ "autoStart": "*", "status": "DRAFT" }),
    )
    .await;
    flow(&app, &site, "Manual only", json!({})).await;
    let page = |p: &str| format!("https://app.example.com{p}");

    // A plain page view of a new visitor: nothing to start, nothing stored.
    let sessions_before = entity::chat_session::Entity::find()
        .count(&app.state.db)
        .await
        .unwrap();
    let r = visit(
        &app,
        json!({ "widgetId": widget, "pageUrl": page("/home") }),
    )
    .await;
    assert_eq!(
        r,
        json!({ "sessionId": null, "sessionToken": null, "run": null, "content": null })
    );
    let sessions_after = entity::chat_session::Entity::find()
        .count(&app.state.db)
        .await
        .unwrap();
    assert_eq!(
        sessions_before, sessions_after,
        "a page view stores nothing"
    );

    // On a matching page: the ALL flow starts, once, and a session is made to record it.
    let r = visit(
        &app,
        json!({ "widgetId": widget, "pageUrl": page("/billing/plans?x=1") }),
    )
    .await;
    assert_eq!(r["content"]["id"], billing.as_str(), "{r}");
    assert_eq!(r["content"]["steps"][1]["title"], "Pay");
    assert_eq!(r["run"], format!("auto-{}", billing.replace('-', "")));
    let token = r["sessionToken"].as_str().unwrap().to_string();
    let again = visit(
        &app,
        json!({ "widgetId": widget, "sessionToken": token, "pageUrl": page("/billing/plans") }),
    )
    .await;
    assert!(again["content"].is_null(), "once per visitor: {again}");
    assert_eq!(again["sessionId"], r["sessionId"]);
    // Rules need a signed-in visitor with the right plan.
    let anon = visit(
        &app,
        json!({ "widgetId": widget, "sessionToken": token, "pageUrl": page("/settings") }),
    )
    .await;
    assert!(anon["content"].is_null(), "{anon}");
    let signed = |who: &str, plan: &str, hash: Option<String>| {
        json!({
            "widgetId": widget, "pageUrl": page("/settings/"),
            "userId": who, "userHash": hash.unwrap_or_else(|| user_hash(&secret, who)),
            "traits": { "plan": plan },
        })
    };
    // A wrong hash: the traits are not believed, the visitor stays anonymous.
    let forged = visit(&app, signed("mallory", "pro", Some("00".repeat(32)))).await;
    assert!(forged["content"].is_null(), "{forged}");
    let free = visit(&app, signed("sam", "free", None)).await;
    assert!(free["content"].is_null(), "{free}");
    let mut pat = signed("pat", "PRO", None);
    pat["sessionToken"] = json!(token);
    let r = visit(&app, pat.clone()).await;
    assert_eq!(r["content"]["id"], pro.as_str(), "{r}");
    // The anonymous session signed in (merged): its billing run is pat's now, so no second one.
    pat["pageUrl"] = json!(page("/billing/x"));
    let r = visit(&app, pat.clone()).await;
    assert!(r["content"].is_null(), "{r}");
    pat["pageUrl"] = json!(page("/settings"));
    assert!(visit(&app, pat.clone()).await["content"].is_null());

    // Two tabs of a new visitor at the same moment: it starts in one of them.
    let tab = signed("kim", "free", None);
    let mut tab = tab.clone();
    tab["pageUrl"] = json!(page("/billing/a"));
    let (a, b) = tokio::join!(visit(&app, tab.clone()), visit(&app, tab.clone()));
    let started = [&a, &b].iter().filter(|r| !r["content"].is_null()).count();
    assert_eq!(started, 1, "{a} {b}");
    let runs = app
        .gql_ok(
            "{ tourRuns(first: 100) { nodes { contentId trigger status endUserId } } }",
            json!({}),
        )
        .await["tourRuns"]["nodes"]
        .clone();
    assert_eq!(runs.as_array().unwrap().len(), 3, "{runs}");
    assert!(
        runs.as_array()
            .unwrap()
            .iter()
            .all(|r| r["trigger"] == "AUTO" && r["status"] == "STARTED")
    );

    // Rules and patterns are checked when saved.
    for (extra, field) in [
        (
            json!({ "audience": "RULES", "audienceRules": { "trait": "plan", "op": "like", "value": "p" } }),
            "input.audienceRules",
        ),
        (
            json!({ "audienceRules": { "colour": "red" } }),
            "input.audienceRules",
        ),
        (json!({ "autoStart": "billing" }), "input.autoStart"),
    ] {
        let mut input = json!({ "name": "Bad", "siteId": site, "steps": [] });
        for (k, v) in extra.as_object().unwrap() {
            input[k] = v.clone();
        }
        let r = app
            .gql(
                "mutation($i: CreateFlowInput!) { createFlow(input: $i) { id } }",
                json!({ "i": input }),
            )
            .await;
        assert_eq!(error_code(&r), Some("BAD_USER_INPUT"), "{r}");
        assert_eq!(r["errors"][0]["extensions"]["field"], field, "{r}");
    }
    // The trigger can be changed and removed.
    let r = app
        .gql_ok(
            "mutation($id: UUID!) { updateFlow(input: {id: $id, autoStart: \"\"}) { autoStart } }",
            json!({ "id": billing }),
        )
        .await;
    assert!(r["updateFlow"]["autoStart"].is_null());
    let r = visit(
        &app,
        json!({ "widgetId": widget, "pageUrl": page("/billing/plans") }),
    )
    .await;
    assert!(r["content"].is_null(), "{r}");

    // Bounded like every public call: an invalid page, an unknown widget.
    let r = app
        .gql_as(
            None,
            VISIT,
            json!({ "i": { "widgetId": widget, "pageUrl": "javascript:alert(1)" } }),
        )
        .await;
    assert_eq!(error_code(&r), Some("BAD_USER_INPUT"), "{r}");
    let r = app
        .gql_as(
            None,
            VISIT,
            json!({ "i": { "widgetId": Uuid::now_v7(), "pageUrl": page("/") } }),
        )
        .await;
    assert_eq!(error_code(&r), Some("NOT_FOUND"), "{r}");
}

async fn reports_build_runs_and_funnels(backend: Backend) {
    let app = spawn_app(backend).await;
    let (widget, _, site) = tour_widget(&app).await;
    let billing = flow(
        &app,
        &site,
        "Billing tour",
        json!({ "autoStart": "/billing" }),
    )
    .await;
    let page = "https://app.example.com/billing";

    // Visitor A: auto-started, reports the whole run (and a stray batch twice).
    let a = visit(&app, json!({ "widgetId": widget, "pageUrl": page })).await;
    let (a_token, a_run) = (
        a["sessionToken"].as_str().unwrap(),
        a["run"].as_str().unwrap(),
    );
    let r = report(
        &app,
        json!({ "widgetId": widget, "sessionToken": a_token, "pageUrl": page, "events": [
            ev(a_run, &billing, "STARTED", 0), ev(a_run, &billing, "STEP", 0),
        ] }),
    )
    .await;
    assert_eq!(
        (r["accepted"].as_i64(), r["ignored"].as_i64()),
        (Some(2), Some(0)),
        "{r}"
    );
    assert_eq!(r["sessionId"], a["sessionId"]);
    for _ in 0..2 {
        report(
            &app,
            json!({ "widgetId": widget, "sessionToken": a_token, "events": [
                ev(a_run, &billing, "STEP", 1), ev(a_run, &billing, "COMPLETED", 1),
            ] }),
        )
        .await;
    }
    // A later dismissal does not undo the completion.
    report(&app, json!({ "widgetId": widget, "sessionToken": a_token, "events": [ev(a_run, &billing, "DISMISSED", 1)] })).await;

    // Visitor B (a chat session): starts it by hand, an element is missing, dismisses.
    let chat = app
        .gql_as(
            None,
            SEND,
            json!({ "i": { "widgetId": widget, "message": "How do I reset my password?" } }),
        )
        .await;
    let b_token = chat["data"]["sendMessage"]["sessionToken"]
        .as_str()
        .unwrap()
        .to_string();
    let mut missing = ev("r1", &billing, "TARGET_MISSING", 1);
    missing["locators"] = json!([{ "kind": "TEST_ID", "value": "[data-testid=\"pay\"]" }, { "kind": "CSS", "value": "#pay" }]);
    let r = report(
        &app,
        json!({ "widgetId": widget, "sessionToken": b_token, "pageUrl": "https://app.example.com/billing/pay", "events": [
            ev("r1", &billing, "STARTED", 0), ev("r1", &billing, "STEP", 0), missing, ev("r1", &billing, "DISMISSED", 1),
            // Content the page made up, and a step the flow does not have.
            ev("r2", "late-flow", "STARTED", 0), ev("r3", &billing, "STEP", 7),
        ] }),
    )
    .await;
    assert_eq!(
        (r["accepted"].as_i64(), r["ignored"].as_i64()),
        (Some(4), Some(2)),
        "{r}"
    );
    assert_eq!(r["sessionId"], chat["data"]["sendMessage"]["sessionId"]);

    // A flow generated for A: B's reports about it are ignored, A's stored.
    let a_session: Uuid = a["sessionId"].as_str().unwrap().parse().unwrap();
    let generated = wayfinder::service::content::store_generated_flow(
        &app.state,
        wayfinder::service::content::GeneratedFlow {
            org_id: app.org_id,
            site_id: site.parse().unwrap(),
            session_id: a_session,
            name: "Made for A".into(),
            description: String::new(),
            steps: vec![wayfinder::service::content::FlowStep {
                page_url: "/billing".into(),
                target_selector: "#plans".into(),
                title: "Plans".into(),
                body: String::new(),
                placement: wayfinder::domain::Placement::Bottom,
                element_id: None,
                locators: vec![],
                wait_for_navigation: false,
            }],
            map_version: 1,
        },
    )
    .await
    .unwrap()
    .id
    .to_string();
    let r = report(&app, json!({ "widgetId": widget, "sessionToken": b_token, "events": [ev("g", &generated, "STARTED", 0)] })).await;
    assert_eq!(
        (r["accepted"].as_i64(), r["ignored"].as_i64()),
        (Some(0), Some(1)),
        "{r}"
    );
    let r = report(&app, json!({ "widgetId": widget, "sessionToken": a_token, "events": [ev("g", &generated, "STARTED", 0)] })).await;
    assert_eq!(r["accepted"], 1, "{r}");
    // The generated flow never auto-starts for anyone, not even A.
    let r = visit(
        &app,
        json!({ "widgetId": widget, "sessionToken": a_token, "pageUrl": page }),
    )
    .await;
    assert!(r["content"].is_null());

    // Without a token a session is made (the runtime keeps the token it gets back).
    let r = report(
        &app,
        json!({ "widgetId": widget, "events": [ev("solo", &billing, "STARTED", 0)] }),
    )
    .await;
    assert_eq!(r["accepted"], 1);
    assert!(r["sessionToken"].is_string());

    // Bounded at the boundary.
    let too_many: Vec<Value> = (0..51).map(|_| ev("x", &billing, "STEP", 0)).collect();
    for (events, field) in [
        (json!(too_many), "input.events"),
        (
            json!([ev("x", &billing, "STEP", 50)]),
            "input.events[0].step",
        ),
        (
            json!([ev("bad key!", &billing, "STEP", 0)]),
            "input.events[0].run",
        ),
    ] {
        let r = app
            .gql_as(
                None,
                REPORT,
                json!({ "i": { "widgetId": widget, "events": events } }),
            )
            .await;
        assert_eq!(error_code(&r), Some("BAD_USER_INPUT"), "{r}");
        assert_eq!(r["errors"][0]["extensions"]["field"], field, "{r}");
    }

    // The dashboard: runs of the flow, by visitor, paginated; the funnel.
    let runs = app
        .gql_ok(
            "query($c: UUID!) { tourRuns(filter: {contentId: $c}) { nodes { endUserId trigger status stepsSeen furthestStep missingSteps targetMissing dismissedAtStep lastMissingLocators pageUrl endedAt } } }",
            json!({ "c": billing }),
        )
        .await["tourRuns"]["nodes"]
        .clone();
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 3, "{runs:?}");
    assert_eq!(runs[0]["trigger"], "AUTO");
    assert_eq!(runs[0]["status"], "COMPLETED");
    assert_eq!(runs[0]["stepsSeen"], json!([0, 1]));
    assert_eq!(runs[0]["furthestStep"], 2);
    assert!(runs[0]["endedAt"].is_string());
    assert_eq!(runs[1]["trigger"], "MANUAL");
    assert_eq!(runs[1]["status"], "DISMISSED");
    assert_eq!(runs[1]["dismissedAtStep"], 1);
    assert_eq!(runs[1]["missingSteps"], json!([1]));
    assert_eq!(runs[1]["targetMissing"], 1);
    assert_eq!(
        runs[1]["lastMissingLocators"],
        json!(["[data-testid=\"pay\"]", "#pay"])
    );
    assert_eq!(runs[1]["pageUrl"], "https://app.example.com/billing/pay");
    // A missing element on a visitor's page flags the flow, as re-mapping does.
    let health = app
        .gql_ok(
            "query { flows { nodes { id health { ok brokenSteps visitorMissingSteps } } } }",
            json!({}),
        )
        .await["flows"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == billing.as_str())
        .unwrap()["health"]
        .clone();
    assert_eq!(
        health,
        json!({ "ok": false, "brokenSteps": [], "visitorMissingSteps": [1] })
    );
    let broken = app
        .gql_ok(
            "{ events(first: 100) { nodes { kind payload } } }",
            json!({}),
        )
        .await["events"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "content.broken")
        .count();
    assert_eq!(broken, 1, "announced once");
    let b_user = runs[1]["endUserId"].clone();
    let mine = app
        .gql_ok(
            "query($u: UUID!) { tourRuns(filter: {endUserId: $u}, first: 1) { nodes { status } pageInfo { hasNextPage } } }",
            json!({ "u": b_user }),
        )
        .await;
    assert_eq!(
        mine["tourRuns"]["nodes"],
        json!([{ "status": "DISMISSED" }])
    );
    assert_eq!(mine["tourRuns"]["pageInfo"]["hasNextPage"], false);

    let funnel = app
        .gql_ok(
            "query($c: UUID!) { tourFunnel(contentId: $c) { started autoStarted completed dismissed targetMissing completionRate steps { step reached targetMissing dismissed } } }",
            json!({ "c": billing }),
        )
        .await["tourFunnel"]
        .clone();
    assert_eq!(
        funnel,
        json!({
            "started": 3, "autoStarted": 1, "completed": 1, "dismissed": 1, "targetMissing": 1,
            "completionRate": 1.0 / 3.0,
            "steps": [
                { "step": 0, "reached": 2, "targetMissing": 0, "dismissed": 0 },
                { "step": 1, "reached": 1, "targetMissing": 1, "dismissed": 1 },
            ],
        })
    );

    // Another org sees none of it; the public may not read it.
    let (_, other) = app.create_org(wayfinder::domain::Plan::Pro).await;
    let r = app
        .gql_as(Some(&other), "query($c: UUID!) { tourRuns { nodes { id } } tourFunnel(contentId: $c) { started steps { step } } }", json!({ "c": billing }))
        .await;
    assert_eq!(r["data"]["tourRuns"]["nodes"], json!([]), "{r}");
    assert_eq!(
        r["data"]["tourFunnel"],
        json!({ "started": 0, "steps": [] }),
        "{r}"
    );
    let r = app
        .gql_as(None, "{ tourRuns { nodes { id } } }", json!({}))
        .await;
    assert_eq!(error_code(&r), Some("UNAUTHENTICATED"), "{r}");
}

async fn tour_runs_are_exported_deleted_and_expire(backend: Backend) {
    let app = spawn_app(backend).await;
    let (widget, secret, site) = tour_widget(&app).await;
    let billing = flow(
        &app,
        &site,
        "Billing tour",
        json!({ "autoStart": "/billing" }),
    )
    .await;
    let mut sessions = vec![];
    for who in ["target", "bystander"] {
        let hash = user_hash(&secret, who);
        let v = visit(&app, json!({ "widgetId": widget, "pageUrl": "https://app.example.com/billing", "userId": who, "userHash": hash })).await;
        assert_eq!(v["content"]["id"], billing.as_str(), "{v}");
        let run = v["run"].as_str().unwrap();
        // With the identity, as tour.js sends it: a bare token of a signed-in visitor opens nothing of theirs.
        report(&app, json!({ "widgetId": widget, "sessionToken": v["sessionToken"], "userId": who, "userHash": user_hash(&secret, who), "pageUrl": format!("https://app.example.com/billing?who={who}"), "events": [ev(run, &billing, "STEP", 0)] })).await;
        sessions.push(v["sessionId"].as_str().unwrap().parse::<Uuid>().unwrap());
    }
    let target = app
        .gql_ok(
            "{ endUsers(filter: {userId: \"target\"}) { nodes { id } } }",
            json!({}),
        )
        .await["endUsers"]["nodes"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let export = app
        .gql_ok(
            "query($id: UUID!) { exportEndUser(id: $id) }",
            json!({ "id": target }),
        )
        .await["exportEndUser"]
        .clone();
    let runs = &export["endUsers"][0]["tourRuns"];
    assert_eq!(runs.as_array().unwrap().len(), 1, "{export}");
    assert_eq!(runs[0]["contentId"], billing.as_str());
    assert_eq!(runs[0]["trigger"], "AUTO");

    let removed = app
        .gql_ok(
            "mutation { deleteEndUser(userId: \"target\") { sessions tourRuns } }",
            json!({}),
        )
        .await["deleteEndUser"]
        .clone();
    assert_eq!(removed, json!({ "sessions": 1, "tourRuns": 1 }));
    let rows = dump(&app, "tour_runs").await;
    assert_eq!(rows.len(), 1, "the bystander's run stays: {rows:?}");
    for needle in [
        sessions[0].to_string(),
        sessions[0].simple().to_string(),
        "who=target".into(),
    ] {
        assert!(!rows[0].contains(&needle), "{needle} left in {rows:?}");
    }
    assert!(rows[0].contains("who=bystander"));
    // Deleted, the visitor is a new one: the flow may start for them again.
    let v = visit(&app, json!({ "widgetId": widget, "pageUrl": "https://app.example.com/billing", "userId": "target", "userHash": user_hash(&secret, "target") })).await;
    assert_eq!(v["content"]["id"], billing.as_str());

    // Retention: runs last reported before the cutoff go, recent ones stay.
    app.gql_ok(
        "mutation { updateOrgSettings(input: {retentionDays: 30}) { retentionDays } }",
        json!({}),
    )
    .await;
    entity::tour_run::Entity::update_many()
        .col_expr(
            entity::tour_run::Column::UpdatedAt,
            Expr::value(Utc::now() - TimeDelta::days(40)),
        )
        .filter(entity::tour_run::Column::SessionId.eq(sessions[1]))
        .exec(&app.state.db)
        .await
        .unwrap();
    let swept = wayfinder::service::retention::sweep(&app.state, Utc::now())
        .await
        .unwrap();
    assert_eq!(swept.tour_runs, 1, "{swept:?}");
    let left = entity::tour_run::Entity::find()
        .all(&app.state.db)
        .await
        .unwrap();
    assert_eq!(left.len(), 1);
    assert_ne!(left[0].session_id, sessions[1]);
}

async fn tour_calls_are_rate_limited_per_widget(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.widget_rate_limit = 3).await;
    let (widget, _, _) = tour_widget(&app).await;
    let page = "https://app.example.com/billing";
    let mut codes = vec![];
    for i in 0..4 {
        let r = if i % 2 == 0 {
            app.gql_as(
                None,
                VISIT,
                json!({ "i": { "widgetId": widget, "pageUrl": page } }),
            )
            .await
        } else {
            app.gql_as(
                None,
                REPORT,
                json!({ "i": { "widgetId": widget, "events": [ev("r", "x", "STARTED", 0)] } }),
            )
            .await
        };
        codes.push(error_code(&r).map(str::to_owned));
        if i == 3 {
            assert!(
                r["errors"][0]["extensions"]["retryAfter"]
                    .as_u64()
                    .is_some(),
                "{r}"
            );
        }
    }
    assert_eq!(codes, [None, None, None, Some("RATE_LIMITED".to_owned())]);
}
