//! Recording a site's map in a browser, server side: `startSiteRecording`
//! mints a short-lived signed mapping token; `POST /recorder/pages` takes
//! pages with it (a forged, expired or other-purpose token is refused, and
//! so are pages of another origin and oversized pages), merges them into the
//! map as new versions, and a later crawl keeps the recorded pages it cannot
//! reach itself. The recorder script itself runs in Chromium in
//! `tests/browser/run.mjs`.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{helpers::*, on_both_databases, site_map::wait_mapped, test_web_app::TestWebApp};

const START: &str = "mutation($s: UUID!) { startSiteRecording(siteId: $s) { siteId token expiresAt startUrl scriptPath endpointPath } }";
const PAGES: &str = "query($id: UUID!) { site(id: $id) { mappingStatus mapVersion pages { id url urlPattern title recorded elements { id label locators { kind value } } } } }";

async fn post(app: &TestApp, origin: &str, body: Value) -> (StatusCode, Value) {
    let r = app
        .client
        .post(format!("{}/recorder/pages", app.address))
        .header("origin", origin)
        .header("content-type", "text/plain")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap())
}

fn account_page(token: &str, base: &str) -> Value {
    json!({
        "token": token,
        "url": format!("{base}/account?tab=security"),
        "title": "Account",
        "elements": [
            { "role": "button", "label": "Change password", "locators": [
                { "kind": "ID", "value": "#change-password" },
                { "kind": "ROLE", "value": "role=button[name=\"Change password\"]" },
            ] },
            { "role": "link", "label": "Home", "locators": [{ "kind": "CSS", "value": "nav > a:nth-of-type(1)" }] },
        ],
    })
}

on_both_databases!(recorded_pages_are_merged_into_the_map_with_a_valid_token_only);

async fn recorded_pages_are_merged_into_the_map_with_a_valid_token_only(backend: Backend) {
    let web = TestWebApp::start().await;
    let app = spawn_app_with(backend, |c| {
        c.outbound_allow = Some(web.allow_entry.clone())
    })
    .await;
    let site = app
        .gql_ok(
            "mutation($u: String!) { createSite(input: {name: \"Acme\", baseUrl: $u}) { id } }",
            json!({ "u": web.base_url }),
        )
        .await["createSite"]["id"]
        .clone();
    let rec = app.gql_ok(START, json!({ "s": site })).await["startSiteRecording"].clone();
    let token = rec["token"].as_str().unwrap();
    assert_eq!(rec["siteId"], site);
    assert_eq!(
        rec["startUrl"],
        format!("{}#wayfinder-record={token}", web.base_url)
    );
    assert_eq!(rec["scriptPath"], "/recorder.js");

    // A good page: merged as version 1, the site is mapped.
    let (status, r) = post(&app, &web.base_url, account_page(token, &web.base_url)).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["mapVersion"], 1);
    assert_eq!(r["elements"], 2);
    let s = app.gql_ok(PAGES, json!({ "id": site })).await["site"].clone();
    assert_eq!(s["mappingStatus"], "COMPLETED");
    let page = &s["pages"][0];
    assert_eq!(page["url"], "/account?tab=security");
    assert_eq!(page["urlPattern"], "/account");
    assert_eq!(page["recorded"], true);
    assert_eq!(
        page["elements"][0]["locators"][0]["value"],
        "#change-password"
    );

    // Refused: forged, expired and other-purpose tokens; no token.
    let forged = format!("{}x", &token[..token.len() - 1]);
    let claims = |e: i64| {
        let id: uuid::Uuid = site.as_str().unwrap().parse().unwrap();
        serde_json::to_vec(&json!({ "o": app.org_id, "s": id, "e": e })).unwrap()
    };
    let expired = app.state.secret.sign(
        wayfinder::service::recording::RECORDING_PURPOSE,
        &claims(chrono::Utc::now().timestamp() - 5),
    );
    let other_purpose = app
        .state
        .secret
        .sign("session", &claims(chrono::Utc::now().timestamp() + 600));
    for bad in [
        forged.as_str(),
        expired.as_str(),
        other_purpose.as_str(),
        "",
    ] {
        let (status, r) = post(&app, &web.base_url, account_page(bad, &web.base_url)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{bad}: {r}");
        assert_eq!(r["error"]["code"], "UNAUTHENTICATED");
    }
    // Another origin (the browser's Origin, or the page's URL), bad kinds, too many elements.
    let (status, r) = post(
        &app,
        "https://evil.example",
        account_page(token, &web.base_url),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{r}");
    let (status, r) = post(
        &app,
        &web.base_url,
        account_page(token, "https://evil.example"),
    )
    .await;
    assert_eq!(
        (status, r["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("url")),
        "{r}"
    );
    let mut bad_kind = account_page(token, &web.base_url);
    bad_kind["elements"][0]["locators"][0]["kind"] = json!("XPATH");
    let (status, r) = post(&app, &web.base_url, bad_kind).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{r}");
    assert_eq!(r["error"]["field"], "elements[0].locators[0].kind");
    let mut many = account_page(token, &web.base_url);
    many["elements"] = json!((0..301)
        .map(|i| json!({ "label": "x", "locators": [{ "kind": "CSS", "value": format!("#e{i}") }] }))
        .collect::<Vec<_>>());
    let (status, r) = post(&app, &web.base_url, many).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{r}");
    assert_eq!(r["error"]["field"], "elements");
    let mut shared = account_page(token, &web.base_url);
    shared["elements"][1]["locators"][0]["value"] = json!("#change-password");
    let (status, r) = post(&app, &web.base_url, shared).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{r}");
    // Nothing of that changed the map.
    let s = app.gql_ok(PAGES, json!({ "id": site })).await["site"].clone();
    assert_eq!(s["mapVersion"], 1);

    // Another org's key cannot start a recording of this site.
    let (_, other_key) = app.create_org(wayfinder::domain::Plan::Pro).await;
    let r = app
        .gql_as(Some(&other_key), START, json!({ "s": site }))
        .await;
    assert_eq!(error_code(&r), Some("NOT_FOUND"), "{r}");

    // A crawl cannot enter /account (it redirects to /login without the cookie), and keeps the recorded page.
    let r = app
        .gql_ok(
            "mutation($i: MapSiteInput!) { mapSite(input: $i) { id } }",
            json!({ "i": { "siteId": site } }),
        )
        .await;
    assert!(r["mapSite"]["id"].is_string());
    let mapped = wait_mapped(&app, &site).await;
    assert_eq!(mapped["mappingStatus"], "COMPLETED", "{mapped}");
    let s = app.gql_ok(PAGES, json!({ "id": site })).await["site"].clone();
    let patterns: Vec<&str> = s["pages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["urlPattern"].as_str().unwrap())
        .collect();
    assert!(
        patterns.contains(&"/login") && patterns.contains(&"/account"),
        "{patterns:?}"
    );
    assert_eq!(s["mapVersion"], 2);
}

on_both_databases!(map_site_is_capped_per_org_and_per_deployment);

async fn map_site_is_capped_per_org_and_per_deployment(backend: Backend) {
    use sea_orm::{ActiveModelTrait, ActiveValue::Set, EntityTrait};
    let app = spawn_app_with(backend, |c| {
        c.map_max_crawls_per_org = 1;
        c.map_max_crawls = 2;
    })
    .await;
    let create =
        "mutation($u: String!) { createSite(input: {name: \"Acme\", baseUrl: $u}) { id } }";
    let map = "mutation($s: UUID!) { mapSite(input: {siteId: $s}) { id } }";
    // A crawl in progress (a fresh heartbeat) of one of the org's sites, as the database shows it.
    let crawling = |key: Option<String>| {
        let app = &app;
        async move {
            let r = app
                .gql_as(
                    key.as_deref(),
                    create,
                    json!({ "u": "https://app.example.com" }),
                )
                .await;
            let id: uuid::Uuid = r["data"]["createSite"]["id"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            let row = entity::site::Entity::find_by_id(id)
                .one(&app.state.db)
                .await
                .unwrap()
                .unwrap();
            let mut am: entity::site::ActiveModel = row.into();
            am.mapping_status = Set("IN_PROGRESS".into());
            am.mapping_heartbeat_at = Set(Some(chrono::Utc::now()));
            am.update(&app.state.db).await.unwrap();
        }
    };
    crawling(Some(app.api_key.clone())).await;
    let other = app
        .gql_ok(create, json!({ "u": "https://other.example.com" }))
        .await["createSite"]["id"]
        .clone();
    let r = app.gql(map, json!({ "s": other })).await;
    assert_eq!(error_code(&r), Some("RATE_LIMITED"), "{r}");
    assert!(r["errors"][0]["extensions"]["retryAfter"].as_u64().unwrap() > 0);

    // Another org may crawl, until the deployment's cap is reached; then nobody may.
    let (_, second) = app.create_org(wayfinder::domain::Plan::Pro).await;
    crawling(Some(second.clone())).await;
    let (_, third) = app.create_org(wayfinder::domain::Plan::Pro).await;
    let site = app
        .gql_as(
            Some(&third),
            create,
            json!({ "u": "https://third.example.com" }),
        )
        .await["data"]["createSite"]["id"]
        .clone();
    let r = app.gql_as(Some(&third), map, json!({ "s": site })).await;
    assert_eq!(error_code(&r), Some("RATE_LIMITED"), "{r}");
}
