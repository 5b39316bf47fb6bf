//! The app map: `mapSite` crawling a multi-page web app on loopback (robots.txt,
//! bounds, the outbound guard, a cookie for a staging app), unique locators,
//! progress and completion on the outbox, abandoned mappings ended at start,
//! uploads validated at the boundary, and the prerequisites of a widget bound
//! to a site.

use std::time::Duration;

use scraper::{Html, Selector};
use serde_json::{Value, json};
use wayfinder::domain::Plan;

use crate::{helpers::*, on_both_databases, test_web_app::TestWebApp};

const SITE: &str = "mutation($u: String!) { createSite(input: {name: \"Acme\", baseUrl: $u}) { id mappingStatus } }";
const MAP: &str = "mutation($i: MapSiteInput!) { mapSite(input: $i) { id mappingStatus } }";
const GET: &str = "query($id: UUID!) { site(id: $id) { mappingStatus mappingError mapVersion pages { id url urlPattern title elements { id role label selector locators { kind value } } } } }";

/// Polls the site until its mapping ends; returns the site.
pub async fn wait_mapped(app: &TestApp, site: &Value) -> Value {
    for _ in 0..200 {
        let s = app.gql_ok(GET, json!({ "id": site })).await["site"].clone();
        if s["mappingStatus"] != "IN_PROGRESS" {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("mapping did not end");
}

/// Creates a site for `web` and maps it by crawling; returns its id and the mapped site.
pub async fn map_test_app(app: &TestApp, web: &TestWebApp) -> (Value, Value) {
    let site = app.gql_ok(SITE, json!({ "u": web.base_url })).await["createSite"]["id"].clone();
    let r = app.gql_ok(MAP, json!({ "i": { "siteId": site } })).await;
    assert_eq!(r["mapSite"]["mappingStatus"], "IN_PROGRESS");
    let mapped = wait_mapped(app, &site).await;
    (site, mapped)
}

fn page<'a>(site: &'a Value, pattern: &str) -> Option<&'a Value> {
    site["pages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["urlPattern"] == pattern)
}

on_both_databases!(map_site_crawls_the_app_with_unique_locators);

async fn map_site_crawls_the_app_with_unique_locators(backend: Backend) {
    let web = TestWebApp::start().await;
    let app = spawn_app_with(backend, |c| {
        c.outbound_allow = Some(web.allow_entry.clone())
    })
    .await;
    let (site, mapped) = map_test_app(&app, &web).await;
    assert_eq!(mapped["mappingStatus"], "COMPLETED", "{mapped}");
    assert_eq!(mapped["mapVersion"], 1);

    let patterns: Vec<&str> = mapped["pages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["urlPattern"].as_str().unwrap())
        .collect();
    for want in [
        "/",
        "/settings/team",
        "/projects/:id",
        "/reports",
        "/reports/export",
        "/login",
    ] {
        assert!(patterns.contains(&want), "{want} missing from {patterns:?}");
    }
    // robots.txt disallows /admin; /projects/17 and /projects/42 share a pattern; the cookie page redirected to /login.
    assert!(
        !patterns.iter().any(|p| p.starts_with("/admin")),
        "{patterns:?}"
    );
    assert_eq!(
        patterns.iter().filter(|p| **p == "/projects/:id").count(),
        1
    );
    assert!(!patterns.contains(&"/account"), "{patterns:?}");

    let team = page(&mapped, "/settings/team").unwrap();
    assert_eq!(team["title"], "Team settings");
    let els = team["elements"].as_array().unwrap();
    let by_label = |l: &str| els.iter().filter(|e| e["label"] == l).collect::<Vec<_>>();
    let email = by_label("Teammate email");
    assert_eq!(email[0]["role"], "textbox");
    assert_eq!(
        email[0]["locators"][0],
        json!({ "kind": "ID", "value": "#invite-email" })
    );
    let send = by_label("Send invite");
    assert_eq!(
        send[0]["locators"][0],
        json!({ "kind": "TEST_ID", "value": "[data-testid=\"send-invite\"]" })
    );
    assert_eq!(send[0]["role"], "button");
    let remove = by_label("Remove member");
    assert!(
        remove[0]["locators"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| !l["value"].as_str().unwrap().contains("ember4711")),
        "generated id used: {remove:?}"
    );
    assert_eq!(by_label("Role")[0]["role"], "combobox");
    // The two identical Cancel buttons are both mapped, told apart structurally only.
    let cancels = by_label("Cancel");
    assert_eq!(cancels.len(), 2);
    assert_ne!(cancels[0]["selector"], cancels[1]["selector"]);

    // Every CSS locator of every page matches exactly one element of that page; map ids are unique.
    let mut ids = std::collections::HashSet::new();
    for p in mapped["pages"].as_array().unwrap() {
        let html = Html::parse_document(&web.html(p["url"].as_str().unwrap()).await);
        for e in p["elements"].as_array().unwrap() {
            assert!(
                ids.insert(e["id"].as_str().unwrap().to_string()),
                "duplicate id {e}"
            );
            for l in e["locators"].as_array().unwrap() {
                if ["TEST_ID", "ID", "LABEL", "CSS"].contains(&l["kind"].as_str().unwrap()) {
                    let sel = Selector::parse(l["value"].as_str().unwrap()).unwrap();
                    assert_eq!(
                        html.select(&sel).count(),
                        1,
                        "{} on {}",
                        l["value"],
                        p["url"]
                    );
                }
            }
        }
    }

    // Progress and completion went to the outbox (and so to orgEvents).
    let events = app
        .gql_ok(
            "{ events(first: 100) { nodes { kind payload } } }",
            json!({}),
        )
        .await;
    let kinds: Vec<&str> = events["events"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"site.mapping_started"), "{kinds:?}");
    assert!(kinds.contains(&"site.mapped"), "{kinds:?}");
    let done = events["events"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "site.mapped")
        .unwrap();
    assert_eq!(done["payload"]["id"], site);
    assert_eq!(done["payload"]["disallowed"], 1, "{done}");
    let (fetched, ms) = (
        done["payload"]["fetched"].as_f64().unwrap(),
        done["payload"]["ms"].as_f64().unwrap().max(1.0),
    );
    println!(
        "static mapping: {fetched} pages in {ms} ms ({:.0} pages/s)",
        fetched * 1000.0 / ms
    );
}

on_both_databases!(map_site_respects_bounds_credentials_and_the_guard);

async fn map_site_respects_bounds_credentials_and_the_guard(backend: Backend) {
    let web = TestWebApp::start().await;
    // Depth 1: the export page (two links deep) is not reached; a cookie opens the staging page.
    let app = spawn_app_with(backend, |c| {
        c.outbound_allow = Some(web.allow_entry.clone());
        c.map_max_depth = 1;
    })
    .await;
    let site = app.gql_ok(SITE, json!({ "u": web.base_url })).await["createSite"]["id"].clone();
    app.gql_ok(
        MAP,
        json!({ "i": { "siteId": site, "cookie": "session=staging" } }),
    )
    .await;
    let mapped = wait_mapped(&app, &site).await;
    assert_eq!(mapped["mappingStatus"], "COMPLETED", "{mapped}");
    assert!(page(&mapped, "/reports").is_some());
    assert!(page(&mapped, "/reports/export").is_none());
    let account = page(&mapped, "/account").expect("the cookie opens /account");
    assert_eq!(
        account["elements"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["label"] == "Change password")
            .count(),
        1
    );

    // At most two pages.
    let app2 = spawn_app_with(backend, |c| {
        c.outbound_allow = Some(web.allow_entry.clone());
        c.map_max_pages = 2;
    })
    .await;
    let (_, mapped) = map_test_app(&app2, &web).await;
    assert_eq!(mapped["mappingStatus"], "COMPLETED");
    assert_eq!(mapped["pages"].as_array().unwrap().len(), 2);

    // Without the allowlist, loopback is refused by the outbound guard.
    let app3 = spawn_app(backend).await;
    let site = app3.gql_ok(SITE, json!({ "u": web.base_url })).await["createSite"]["id"].clone();
    let r = app3.gql(MAP, json!({ "i": { "siteId": site } })).await;
    assert_eq!(error_code(&r), Some("BAD_USER_INPUT"), "{r}");
    assert!(
        r["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("loopback"),
        "{r}"
    );

    // A site whose base URL answers 404 ends FAILED with the error.
    let site = app
        .gql_ok(SITE, json!({ "u": format!("{}/nowhere", web.base_url) }))
        .await["createSite"]["id"]
        .clone();
    app.gql_ok(MAP, json!({ "i": { "siteId": site } })).await;
    let failed = wait_mapped(&app, &site).await;
    assert_eq!(failed["mappingStatus"], "FAILED");
    assert!(
        failed["mappingError"].as_str().unwrap().contains("200"),
        "{failed}"
    );
    assert_eq!(failed["mapVersion"], 0);
}

on_both_databases!(map_left_in_progress_by_a_dead_server_ends_failed);

async fn map_left_in_progress_by_a_dead_server_ends_failed(backend: Backend) {
    use sea_orm::{ActiveModelTrait, ActiveValue::Set, EntityTrait};
    let mut app = spawn_app(backend).await;
    let site = app
        .gql_ok(SITE, json!({ "u": "https://app.example.com" }))
        .await["createSite"]["id"]
        .clone();
    let id: uuid::Uuid = site.as_str().unwrap().parse().unwrap();
    let row = entity::site::Entity::find_by_id(id)
        .one(&app.state.db)
        .await
        .unwrap()
        .unwrap();
    let mut am: entity::site::ActiveModel = row.into();
    am.mapping_status = Set("IN_PROGRESS".into());
    am.mapping_heartbeat_at = Set(Some(chrono::Utc::now() - chrono::Duration::minutes(10)));
    am.update(&app.state.db).await.unwrap();
    app.shut_down();

    let config = test_config(&app.db);
    let restarted = spawn_on(TestDatabase::borrowed(&app.db), config, backend).await;
    let s = restarted
        .gql_as(Some(&app.api_key), GET, json!({ "id": site }))
        .await;
    assert_eq!(s["data"]["site"]["mappingStatus"], "FAILED", "{s}");
    assert!(
        s["data"]["site"]["mappingError"]
            .as_str()
            .unwrap()
            .contains("interrupted")
    );
}

on_both_databases!(site_map_uploads_are_validated_and_versioned);

async fn site_map_uploads_are_validated_and_versioned(backend: Backend) {
    let app = spawn_app(backend).await;
    let site = app
        .gql_ok(SITE, json!({ "u": "https://app.example.com" }))
        .await["createSite"]["id"]
        .clone();
    let upload = "mutation($s: UUID!, $p: [AppMapPageInput!]!) { updateSiteMap(input: {siteId: $s, pages: $p}) { mapVersion pages { id urlPattern elements { id selector locators { kind value } } } } }";
    let good = json!([{ "url": "/projects/42/settings", "elements": [
        { "label": "Save", "role": "button", "locators": [{ "kind": "TEST_ID", "value": "[data-testid=save]" }], "selector": "form > button" },
        { "label": "Name", "role": "textbox", "id": "name-field", "selector": "#name" },
    ] }]);
    let r = app.gql_ok(upload, json!({ "s": site, "p": good })).await["updateSiteMap"].clone();
    assert_eq!(r["mapVersion"], 1);
    assert_eq!(r["pages"][0]["urlPattern"], "/projects/:id/settings");
    assert_eq!(
        r["pages"][0]["elements"][0]["selector"],
        "[data-testid=save]"
    );
    assert_eq!(r["pages"][0]["elements"][1]["id"], "name-field");
    let again = app.gql_ok(upload, json!({ "s": site, "p": good })).await["updateSiteMap"].clone();
    assert_eq!(again["mapVersion"], 2);
    assert_eq!(
        again["pages"][0]["elements"][0]["id"], r["pages"][0]["elements"][0]["id"],
        "map ids are stable"
    );

    // Two elements of one page sharing a locator, too many elements, a bad URL, no locator at all.
    let shared = json!([{ "url": "/x", "elements": [{ "label": "A", "selector": "#a" }, { "label": "B", "selector": "#a" }] }]);
    let many: Vec<Value> = (0..301)
        .map(|i| json!({ "label": "x", "selector": format!("#e{i}") }))
        .collect();
    for (bad, field) in [
        (shared, "input.pages[0].elements[1].locators"),
        (
            json!([{ "url": "/x", "elements": many }]),
            "input.pages[0].elements",
        ),
        (
            json!([{ "url": "javascript:alert(1)", "elements": [] }]),
            "input.pages[0].url",
        ),
        (
            json!([{ "url": "/x", "elements": [{ "label": "A" }] }]),
            "input.pages[0].elements[0].locators",
        ),
    ] {
        let r = app.gql(upload, json!({ "s": site, "p": bad })).await;
        assert_eq!(error_code(&r), Some("BAD_USER_INPUT"), "{r}");
        assert_eq!(r["errors"][0]["extensions"]["field"], field, "{r}");
    }
}

on_both_databases!(a_widget_on_a_site_needs_pro_and_a_mapped_site);

async fn a_widget_on_a_site_needs_pro_and_a_mapped_site(backend: Backend) {
    let app = spawn_app(backend).await;
    let bot = app
        .gql_ok(
            r#"mutation { createBot(input: {name: "Guide"}) { id } }"#,
            json!({}),
        )
        .await["createBot"]["id"]
        .clone();
    let site = app
        .gql_ok(SITE, json!({ "u": "https://app.example.com" }))
        .await["createSite"]["id"]
        .clone();
    let create =
        "mutation($b: UUID!, $s: UUID) { createChatWidget(input: {botId: $b, siteId: $s}) { id } }";
    let r = app.gql(create, json!({ "b": bot, "s": site })).await;
    assert_eq!(error_code(&r), Some("BAD_USER_INPUT"), "{r}");
    assert_eq!(r["errors"][0]["extensions"]["field"], "input.siteId");
    // Unpublished, then bound, then published: refused until the site is mapped.
    let w = app
        .gql_ok(
            "mutation($b: UUID!) { createChatWidget(input: {botId: $b, published: false}) { id } }",
            json!({ "b": bot }),
        )
        .await["createChatWidget"]["id"]
        .clone();
    app.gql_ok(
        "mutation($w: UUID!, $s: UUID!) { updateChatWidget(input: {id: $w, siteId: $s}) { id } }",
        json!({ "w": w, "s": site }),
    )
    .await;
    let publish =
        "mutation($w: UUID!) { updateChatWidget(input: {id: $w, published: true}) { published } }";
    assert_eq!(
        error_code(&app.gql(publish, json!({ "w": w })).await),
        Some("BAD_USER_INPUT")
    );
    app.gql_ok(r#"mutation($s: UUID!) { updateSiteMap(input: {siteId: $s, pages: [{url: "/", elements: [{label: "Home", selector: "a"}]}]}) { id } }"#, json!({ "s": site })).await;
    assert_eq!(
        app.gql_ok(publish, json!({ "w": w })).await["updateChatWidget"]["published"],
        true
    );
    app.gql_ok(create, json!({ "b": bot, "s": site })).await;

    // On GROWTH, even a mapped site is refused; without a site, widgets are fine.
    let (_, key) = app.create_org(Plan::Growth).await;
    let bot = app
        .gql_as(
            Some(&key),
            r#"mutation { createBot(input: {name: "Guide"}) { id } }"#,
            json!({}),
        )
        .await["data"]["createBot"]["id"]
        .clone();
    let site = app
        .gql_as(Some(&key), SITE, json!({ "u": "https://g.example.com" }))
        .await["data"]["createSite"]["id"]
        .clone();
    app.gql_as(
        Some(&key),
        r#"mutation($s: UUID!) { updateSiteMap(input: {siteId: $s, pages: []}) { id } }"#,
        json!({ "s": site }),
    )
    .await;
    let r = app
        .gql_as(Some(&key), create, json!({ "b": bot, "s": site }))
        .await;
    assert_eq!(error_code(&r), Some("PLAN_REQUIRED"), "{r}");
    let r = app
        .gql_as(Some(&key), create, json!({ "b": bot, "s": null }))
        .await;
    assert!(r["errors"].is_null(), "{r}");
}

/// Debian's Chromium, when it is there; `WAYFINDER_BROWSER_TESTS=1` requires it.
pub fn chromium() -> Option<String> {
    let path = std::env::var("CHROMIUM_PATH").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if std::path::Path::new(&path).exists() {
        return Some(path);
    }
    assert!(
        std::env::var("WAYFINDER_BROWSER_TESTS").as_deref() != Ok("1"),
        "WAYFINDER_BROWSER_TESTS=1 but there is no Chromium at {path}"
    );
    eprintln!("skipping: no Chromium at {path}");
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn site_map_renders_single_page_apps_in_chromium_behind_the_guard() {
    let Some(chromium) = chromium() else { return };
    let web = TestWebApp::start().await;
    let spa = format!("{}/spa", web.base_url);

    // Static HTML only: the app's shell has nothing to map.
    let plain = spawn_app_with(Backend::Sqlite, |c| {
        c.outbound_allow = Some(web.allow_entry.clone())
    })
    .await;
    let site = plain.gql_ok(SITE, json!({ "u": spa })).await["createSite"]["id"].clone();
    plain.gql_ok(MAP, json!({ "i": { "siteId": site } })).await;
    let mapped = wait_mapped(&plain, &site).await;
    assert_eq!(mapped["mappingStatus"], "COMPLETED", "{mapped}");
    assert!(
        page(&mapped, "/spa").unwrap()["elements"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(page(&mapped, "/spa/billing").is_none());

    // Rendered: the elements and links the script creates are mapped.
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.outbound_allow = Some(web.allow_entry.clone());
        c.chromium = Some(chromium);
    })
    .await;
    let site = app.gql_ok(SITE, json!({ "u": spa })).await["createSite"]["id"].clone();
    let started = std::time::Instant::now();
    app.gql_ok(MAP, json!({ "i": { "siteId": site } })).await;
    let mut mapped = json!(null);
    for _ in 0..120 {
        mapped = app.gql_ok(GET, json!({ "id": site })).await["site"].clone();
        if mapped["mappingStatus"] != "IN_PROGRESS" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let elapsed = started.elapsed();
    assert_eq!(mapped["mappingStatus"], "COMPLETED", "{mapped}");
    let home = page(&mapped, "/spa").expect("the SPA's home page");
    let create = home["elements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["label"] == "Create project")
        .unwrap_or_else(|| panic!("no JS-only button in {home}"));
    assert_eq!(
        create["locators"][0],
        json!({ "kind": "TEST_ID", "value": "[data-testid=\"create-project\"]" })
    );
    let billing = page(&mapped, "/spa/billing").expect("the link the script created is followed");
    assert!(
        billing["elements"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["label"] == "Update card" && e["locators"][0]["value"] == "#update-card"),
        "{billing}"
    );
    let events = app
        .gql_ok(
            "{ events(first: 100) { nodes { kind payload } } }",
            json!({}),
        )
        .await;
    let done = events["events"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "site.mapped")
        .unwrap()
        .clone();
    assert_eq!(done["payload"]["rendered"], 2, "{done}");
    let pages = done["payload"]["fetched"].as_f64().unwrap();
    let crawl_ms = done["payload"]["ms"].as_f64().unwrap().max(1.0);
    println!(
        "rendered mapping: {pages} pages in {crawl_ms} ms ({:.1} pages/s; {} ms from mapSite to COMPLETED, Chromium start included)",
        pages * 1000.0 / crawl_ms,
        elapsed.as_millis(),
    );

    // Every attempt of the page to reach a loopback port nobody allowed was refused.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        web.trap_hits.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the rendered page reached a loopback port"
    );
}

/// The payload of the last `site.mapped` event.
async fn mapped_event(app: &TestApp) -> Value {
    let events = app
        .gql_ok(
            "{ events(first: 100) { nodes { kind payload } } }",
            json!({}),
        )
        .await;
    events["events"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "site.mapped")
        .unwrap()["payload"]
        .clone()
}

on_both_databases!(non_html_responses_count_toward_the_crawl_bounds);

/// Crawls the test app's downloads page (six linked CSV files) one request at a time; the `site.mapped` payload.
async fn crawl_downloads(
    backend: Backend,
    web: &TestWebApp,
    tweak: impl FnOnce(&mut wayfinder::config::Config),
) -> Value {
    let app = spawn_app_with(backend, |c| {
        c.outbound_allow = Some(web.allow_entry.clone());
        c.map_concurrency = 1;
        tweak(c);
    })
    .await;
    let downloads = format!("{}/downloads", web.base_url);
    let site = app.gql_ok(SITE, json!({ "u": downloads })).await["createSite"]["id"].clone();
    app.gql_ok(MAP, json!({ "i": { "siteId": site } })).await;
    assert_eq!(wait_mapped(&app, &site).await["mappingStatus"], "COMPLETED");
    mapped_event(&app).await
}

async fn non_html_responses_count_toward_the_crawl_bounds(backend: Backend) {
    let web = TestWebApp::start().await;
    // Three requests in all: the page and two CSV files; the rest stay unfetched.
    let done = crawl_downloads(backend, &web, |c| c.map_max_pages = 3).await;
    assert_eq!(done["fetched"], 3, "{done}");
    assert_eq!(done["stoppedBy"], "pages", "{done}");
    assert!(
        done["bytes"].as_u64().unwrap() >= 20_000,
        "CSV bytes counted: {done}"
    );
    // The CSV bytes end the crawl at the byte bound.
    let done = crawl_downloads(backend, &web, |c| c.map_total_bytes = 25_000).await;
    assert_eq!(done["stoppedBy"], "bytes", "{done}");
    assert!(done["fetched"].as_u64().unwrap() < 7, "{done}");
}
