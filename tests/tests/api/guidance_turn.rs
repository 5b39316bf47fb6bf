//! Guidance in a chat turn, through fake LLM servers in real wire formats:
//! the LLM matcher (winner only from its candidate list, intent), the flow
//! generator (steps only on real pages and elements of the crawled map,
//! stored for the asking visitor alone), at most two LLM calls per turn on
//! every path, and drift flags after the app changes.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use scraper::{Html, Selector};
use serde_json::{Value, json};
use wayfinder::llm::ProviderKind;

use crate::{
    fake_llm::{Behaviour, FakeLlm},
    helpers::*,
    on_both_databases,
    site_map::{map_test_app, wait_mapped},
    test_web_app::TestWebApp,
};

const SEND: &str = "mutation($i: TurnInput!) { sendMessage(input: $i) { turnId sessionToken status text content { kind id name startUrl steps { pageUrl targetSelector elementId title locators { kind value } } } navigateTo } }";

/// Every string in a request body, joined: the prompt, whatever the wire format.
fn strings(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s}\n"),
        Value::Array(a) => a.iter().map(strings).collect(),
        Value::Object(o) => o.values().map(strings).collect(),
        _ => String::new(),
    }
}

/// The fake's replies: the matcher's, the generator's, and a plain answer otherwise.
#[derive(Clone, Default)]
struct Script {
    matcher: Arc<Mutex<String>>,
    generator: Arc<Mutex<String>>,
}

impl Script {
    fn behaviour(&self) -> Behaviour {
        let s = self.clone();
        Behaviour::reply_with(move |body| {
            let prompt = strings(body);
            let text = if prompt.contains("You route a visitor") {
                s.matcher.lock().unwrap().clone()
            } else if prompt.contains("walkthrough (a product tour)") {
                s.generator.lock().unwrap().clone()
            } else {
                "Open Settings, then Team, and send the invite.".to_string()
            };
            text.chars()
                .collect::<Vec<_>>()
                .chunks(7)
                .map(|c| c.iter().collect())
                .collect()
        })
    }
    fn matcher(&self, v: impl ToString) {
        *self.matcher.lock().unwrap() = v.to_string();
    }
    fn generator(&self, v: impl ToString) {
        *self.generator.lock().unwrap() = v.to_string();
    }
}

async fn app_with(backend: Backend, fake: &FakeLlm, web: Option<&TestWebApp>) -> TestApp {
    let app = spawn_app_with(backend, |c| {
        fake.configure(c);
        c.llm_model = "test-model".into();
        c.llm_first_token_timeout_ms = 700;
        c.llm_total_timeout_ms = 1_500;
        c.llm_max_retries = 0;
        c.outbound_allow = web.map(|w| w.allow_entry.clone());
    })
    .await;
    app.grant_credits(100_000).await;
    app
}

/// The statuses, models and tokens of a finished turn, from `chatTurn`.
async fn events(app: &TestApp, turn: &Value) -> Vec<Value> {
    let mut ws = WsClient::connect(&app.ws_url, json!({})).await;
    ws.subscribe("t", "subscription($t: UUID!, $s: String) { chatTurn(turnId: $t, sessionToken: $s) { status model tokensUsed } }", json!({ "t": turn["turnId"], "s": turn["sessionToken"] })).await;
    ws.collect("t", Duration::from_secs(5))
        .await
        .iter()
        .map(|p| p["data"]["chatTurn"].clone())
        .collect()
}

fn statuses(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect()
}

on_both_databases!(llm_matcher_picks_only_from_its_candidates);

async fn llm_matcher_picks_only_from_its_candidates(backend: Backend) {
    let fake = FakeLlm::start(ProviderKind::OpenAi).await;
    let script = Script::default();
    fake.set_behaviour(script.behaviour());
    let app = app_with(backend, &fake, None).await;
    let site = app.gql_ok(r#"mutation { createSite(input: {name: "App", baseUrl: "https://app.example.com"}) { id } }"#, json!({})).await["createSite"]["id"].clone();
    app.gql_ok(r#"mutation($s: UUID!) { updateSiteMap(input: {siteId: $s, pages: [{url: "/settings/team", title: "Team", elements: [{label: "Invite", role: "button", selector: "button#invite"}]}]}) { id } }"#, json!({ "s": site })).await;
    let kb = app
        .gql_ok(
            r#"mutation { createKnowledgeBase(input: {name: "Help"}) { id } }"#,
            json!({}),
        )
        .await["createKnowledgeBase"]["id"]
        .clone();
    app.gql_ok(r#"mutation($kb: UUID!) { createKbArticle(input: {knowledgeBaseId: $kb, title: "Adding a colleague", body: "To add a colleague to your workspace, open Settings, then Team, and send an invite."}) { id } }"#, json!({ "kb": kb })).await;
    let bot = app.gql_ok("mutation($s: UUID!, $kb: UUID!) { createBot(input: {name: \"Guide\", siteId: $s, knowledgeBaseIds: [$kb]}) { id } }", json!({ "s": site, "kb": kb })).await["createBot"]["id"].clone();
    let widget = app.gql_ok("mutation($b: UUID!, $s: UUID!) { createChatWidget(input: {botId: $b, siteId: $s}) { id } }", json!({ "b": bot, "s": site })).await["createChatWidget"]["id"].clone();
    let step = r#"{pageUrl: "/settings/team", targetSelector: "button#invite", title: "Invite", body: "Click invite", placement: BOTTOM}"#;
    let invite = app.gql_ok(&format!(r#"mutation($s: UUID!) {{ createFlow(input: {{name: "Invite a teammate", description: "Add a colleague to your workspace team", siteId: $s, status: PUBLISHED, steps: [{step}]}}) {{ id }} }}"#), json!({ "s": site })).await["createFlow"]["id"].clone();
    app.gql_ok(&format!(r#"mutation($s: UUID!) {{ createFlow(input: {{name: "Export data", siteId: $s, status: PUBLISHED, steps: [{step}]}}) {{ id }} }}"#), json!({ "s": site })).await;
    let ask = |message: &'static str| {
        let (app, widget) = (&app, widget.clone());
        async move {
            let r = app.gql_as(None, SEND, json!({ "i": { "widgetId": widget, "message": message, "pageUrl": "https://app.example.com/home" } })).await;
            assert!(r["errors"].is_null(), "{r}");
            r["data"]["sendMessage"].clone()
        }
    };

    // The verbatim fast path: no LLM call at all.
    let r = ask("how do I invite a teammate?").await;
    assert_eq!(r["status"], "MATCHED_CONTENT");
    assert_eq!(fake.request_count(), 0);

    // The LLM picks c1 from the lexical candidates.
    script.matcher(json!({ "winner": "c1", "intent": "walkthrough" }));
    let r = ask("how can I add a colleague to my workspace?").await;
    assert_eq!(r["status"], "MATCHED_CONTENT", "{r}");
    assert_eq!(r["content"]["id"], invite);
    assert_eq!(r["navigateTo"], "https://app.example.com/settings/team");
    assert_eq!(fake.request_count(), 1);
    let prompt = strings(&fake.requests()[0]);
    assert!(prompt.contains("c1 [flow] Invite a teammate"), "{prompt}");
    assert!(
        !prompt.contains("Export data"),
        "only lexical candidates: {prompt}"
    );
    let ev = events(&app, &r).await;
    assert_eq!(
        statuses(&ev),
        [
            "ANALYZING",
            "MATCHING",
            "MATCHED_CONTENT",
            "NAVIGATING",
            "COMPLETED"
        ]
    );
    assert_eq!(ev[1]["model"], "test-model");
    assert!(ev[1]["tokensUsed"].as_i64().unwrap() > 0);

    // Outside the list (a key too far, a real id, prose): no winner; the visitor wanted an answer.
    for reply in [
        json!({ "winner": "c5", "intent": "answer" }).to_string(),
        json!({ "winner": invite, "intent": "answer" }).to_string(),
        "I would pick c1.".to_string(),
    ] {
        script.matcher(&reply);
        let before = fake.request_count();
        let r = ask("how can I add a colleague to my workspace?").await;
        assert_eq!(r["status"], "ANSWERED", "{reply}: {r}");
        assert!(r["content"].is_null());
        assert_eq!(fake.request_count() - before, 2, "matcher + answer");
        let ev = events(&app, &r).await;
        assert_eq!(statuses(&ev)[1], "MATCHING");
        assert_eq!(statuses(&ev).last(), Some(&"COMPLETED"));
    }

    // A provider too slow for the deadline: the matcher gives up, then the answer does: the fallback, two calls at most.
    fake.set_behaviour(Behaviour::SlowFirstToken(Duration::from_secs(3)));
    let before = fake.request_count();
    let r = ask("how can I add a colleague to my workspace?").await;
    assert_eq!(r["status"], "FALLBACK", "{r}");
    assert!(fake.request_count() - before <= 2);
}

on_both_databases!(generator_builds_a_flow_from_the_map_for_that_visitor_only);

async fn generator_builds_a_flow_from_the_map_for_that_visitor_only(backend: Backend) {
    let web = TestWebApp::start().await;
    let fake = FakeLlm::start(ProviderKind::Anthropic).await;
    let script = Script::default();
    fake.set_behaviour(script.behaviour());
    let app = app_with(backend, &fake, Some(&web)).await;
    let (site, mapped) = map_test_app(&app, &web).await;
    assert_eq!(mapped["mappingStatus"], "COMPLETED");
    let bot = app.gql_ok("mutation($s: UUID!) { createBot(input: {name: \"Guide\", siteId: $s, fallbackMessage: \"Sorry.\"}) { id } }", json!({ "s": site })).await["createBot"]["id"].clone();
    let widget = app.gql_ok("mutation($b: UUID!, $s: UUID!) { createChatWidget(input: {botId: $b, siteId: $s}) { id } }", json!({ "b": bot, "s": site })).await["createChatWidget"]["id"].clone();
    let pages = mapped["pages"].as_array().unwrap();
    let team = pages
        .iter()
        .find(|p| p["urlPattern"] == "/settings/team")
        .unwrap();
    let reports = pages
        .iter()
        .find(|p| p["urlPattern"] == "/reports")
        .unwrap();
    let el = |label: &str| {
        team["elements"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["label"] == label)
            .unwrap()["id"]
            .clone()
    };
    let (email, send) = (el("Teammate email"), el("Send invite"));

    script.matcher(json!({ "winner": null, "intent": "walkthrough" }));
    script.generator(json!({ "name": "Invite a teammate", "steps": [
        { "page": team["id"], "element": email, "title": "Enter their email", "body": "Type your teammate's work email." },
        { "page": team["id"], "element": "e00000000", "title": "made up element" },
        { "page": "p00000000", "element": send, "title": "made up page" },
        { "page": reports["id"], "element": send, "title": "element of another page" },
        { "page": team["id"], "element": send, "title": "Send it", "body": "Click Send invite." },
    ] }));
    let ask = |message: &'static str, token: Option<String>| {
        let (app, widget, base) = (&app, widget.clone(), web.base_url.clone());
        async move {
            let r = app.gql_as(None, SEND, json!({ "i": { "widgetId": widget, "message": message, "sessionToken": token, "pageUrl": format!("{base}/") } })).await;
            assert!(r["errors"].is_null(), "{r}");
            r["data"]["sendMessage"].clone()
        }
    };
    let started = std::time::Instant::now();
    let r = ask("How do I invite someone to my team?", None).await;
    let took = started.elapsed();
    assert_eq!(r["status"], "GENERATED_CONTENT", "{r}");
    assert_eq!(fake.request_count(), 2, "matcher + generator");
    let steps = r["content"]["steps"].as_array().unwrap();
    assert_eq!(
        steps.len(),
        2,
        "only steps on real pages and elements: {steps:?}"
    );
    assert_eq!(steps[0]["elementId"], email);
    assert_eq!(steps[1]["elementId"], send);
    assert_eq!(r["navigateTo"], format!("{}/settings/team", web.base_url));
    // Every step's locator matches exactly one element of its page.
    let html = Html::parse_document(&web.html("/settings/team").await);
    for s in steps {
        let sel = Selector::parse(s["targetSelector"].as_str().unwrap()).unwrap();
        assert_eq!(html.select(&sel).count(), 1, "{s}");
        assert!(!s["locators"].as_array().unwrap().is_empty());
    }
    // The generator saw the relevant part of the map, with map ids.
    let prompt = strings(&fake.requests()[1]);
    assert!(
        prompt.contains(send.as_str().unwrap()) && prompt.contains("Send invite"),
        "{prompt}"
    );
    let ev = events(&app, &r).await;
    assert_eq!(
        statuses(&ev),
        [
            "ANALYZING",
            "MATCHING",
            "GENERATING",
            "GENERATED_CONTENT",
            "NAVIGATING",
            "COMPLETED"
        ]
    );
    assert_eq!(ev[2]["model"], "test-model");
    assert!(ev[2]["tokensUsed"].as_i64().unwrap() > 0);
    eprintln!("question to GENERATED_CONTENT with a fake LLM: {took:?}");

    // In the library: source AI, published, for no one else.
    let flows = app.gql_ok("{ flows(filter: {source: AI}) { nodes { id status source audience health { ok } steps { elementId } } } }", json!({})).await;
    let generated = &flows["flows"]["nodes"][0];
    assert_eq!(generated["id"], r["content"]["id"]);
    assert_eq!(
        (generated["status"].as_str(), generated["audience"].as_str()),
        (Some("PUBLISHED"), Some("NO_USERS"))
    );
    assert_eq!(generated["health"]["ok"], true);

    // The asking visitor can fetch it again after a reload; another visitor cannot, nor does it match for them.
    let fetch = "query($t: String!, $id: UUID!) { visitorContent(sessionToken: $t, id: $id) { id kind steps { elementId } } }";
    let mine = app
        .gql_as(
            None,
            fetch,
            json!({ "t": r["sessionToken"], "id": r["content"]["id"] }),
        )
        .await;
    assert_eq!(
        mine["data"]["visitorContent"]["id"], r["content"]["id"],
        "{mine}"
    );
    script.matcher(json!({ "winner": "c1", "intent": "answer" }));
    let other = ask("Invite someone to my team", None).await;
    assert_ne!(other["status"], "MATCHED_CONTENT", "{other}");
    let theirs = app
        .gql_as(
            None,
            fetch,
            json!({ "t": other["sessionToken"], "id": r["content"]["id"] }),
        )
        .await;
    assert_eq!(error_code(&theirs), Some("NOT_FOUND"), "{theirs}");

    // Invalid drafts (only unknown ids; not JSON) store nothing and end in the fallback, two calls at most.
    script.matcher(json!({ "winner": null, "intent": "walkthrough" }));
    for draft in [
        json!({ "name": "x", "steps": [{ "page": "p00000000", "element": "e00000000" }] })
            .to_string(),
        "Step 1: click the button".to_string(),
    ] {
        script.generator(&draft);
        let before = fake.request_count();
        let r = ask("How do I invite someone to my team?", None).await;
        assert_eq!(r["status"], "FALLBACK", "{draft}: {r}");
        assert_eq!(fake.request_count() - before, 2);
        let ev = events(&app, &r).await;
        assert_eq!(
            statuses(&ev),
            [
                "ANALYZING",
                "MATCHING",
                "GENERATING",
                "FALLBACK",
                "COMPLETED"
            ]
        );
    }
    let flows = app
        .gql_ok(
            "{ flows(filter: {source: AI}) { nodes { id } } }",
            json!({}),
        )
        .await;
    assert_eq!(flows["flows"]["nodes"].as_array().unwrap().len(), 1);
}

on_both_databases!(content_drift_is_flagged_after_a_remap);

async fn content_drift_is_flagged_after_a_remap(backend: Backend) {
    let web = TestWebApp::start().await;
    let app = spawn_app_with(backend, |c| {
        c.outbound_allow = Some(web.allow_entry.clone())
    })
    .await;
    let (site, _) = map_test_app(&app, &web).await;
    let flow = |name: &str, target: &str| {
        format!(
            r#"mutation($s: UUID!) {{ createFlow(input: {{name: "{name}", siteId: $s, status: PUBLISHED, steps: [{{pageUrl: "/settings/team", targetSelector: "{target}", title: "t", body: "b", placement: TOP}}]}}) {{ id }} }}"#
        )
    };
    let fragile = app
        .gql_ok(
            &flow("Send an invite", r#"[data-testid=\"send-invite\"]"#),
            json!({ "s": site }),
        )
        .await["createFlow"]["id"]
        .clone();
    let stable = app
        .gql_ok(
            &flow("Fill the email", "#invite-email"),
            json!({ "s": site }),
        )
        .await["createFlow"]["id"]
        .clone();

    // The redesign drops the send button's test id and makes it a link.
    web.set_team_page(&crate::test_web_app::TEAM_PAGE.replace(r#"<button type="submit" data-testid="send-invite" class="btn primary">Send invite</button>"#, r#"<a href="/settings/team?sent=1">Send</a>"#));
    app.gql_ok(
        "mutation($i: MapSiteInput!) { mapSite(input: $i) { id } }",
        json!({ "i": { "siteId": site } }),
    )
    .await;
    assert_eq!(wait_mapped(&app, &site).await["mapVersion"], 2);

    // The health check runs after the mapping completes: wait until each
    // flow's health is of the new map (bounded), then look.
    let q = "query($id: UUID!) { flow(id: $id) { health { checked ok brokenSteps mapVersion } } }";
    let health_of = |id: Value| {
        let app = &app;
        async move {
            for _ in 0..100 {
                let h = app.gql_ok(q, json!({ "id": id })).await["flow"]["health"].clone();
                if h["mapVersion"] == 2 {
                    return h;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            panic!("flow {id}: health never checked against map version 2");
        }
    };
    let h = health_of(fragile.clone()).await;
    assert_eq!(
        h,
        json!({ "checked": true, "ok": false, "brokenSteps": [0], "mapVersion": 2 })
    );
    let h = health_of(stable.clone()).await;
    assert_eq!(h["ok"], true, "{h}");
    let mut events = json!({});
    for _ in 0..100 {
        events = app
            .gql_ok(
                r#"{ events(kind: "content.broken") { nodes { payload } } }"#,
                json!({}),
            )
            .await;
        if !events["events"]["nodes"]
            .as_array()
            .is_none_or(|n| n.is_empty())
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let nodes = events["events"]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    assert_eq!(nodes[0]["payload"]["id"], fragile);
    assert_eq!(nodes[0]["payload"]["brokenSteps"], json!([0]));
}

on_both_databases!(matcher_without_credits_makes_no_call);

async fn matcher_without_credits_makes_no_call(backend: Backend) {
    let fake = FakeLlm::start(ProviderKind::Ollama).await;
    let script = Script::default();
    fake.set_behaviour(script.behaviour());
    let app = spawn_app_with(backend, |c| {
        fake.configure(c);
        c.llm_model = "test-model".into();
    })
    .await;
    let site = app.gql_ok(r#"mutation { createSite(input: {name: "App", baseUrl: "https://app.example.com"}) { id } }"#, json!({})).await["createSite"]["id"].clone();
    app.gql_ok(r#"mutation($s: UUID!) { updateSiteMap(input: {siteId: $s, pages: [{url: "/settings/team", elements: [{label: "Invite", role: "button", selector: "button#invite"}]}]}) { id } }"#, json!({ "s": site })).await;
    let bot = app
        .gql_ok(
            "mutation($s: UUID!) { createBot(input: {name: \"Guide\", siteId: $s}) { id } }",
            json!({ "s": site }),
        )
        .await["createBot"]["id"]
        .clone();
    let widget = app.gql_ok("mutation($b: UUID!, $s: UUID!) { createChatWidget(input: {botId: $b, siteId: $s}) { id } }", json!({ "b": bot, "s": site })).await["createChatWidget"]["id"].clone();
    let r = app
        .gql_as(
            None,
            SEND,
            json!({ "i": { "widgetId": widget, "message": "how do I add a colleague?" } }),
        )
        .await;
    assert_eq!(
        r["data"]["sendMessage"]["status"], "INSUFFICIENT_CREDITS",
        "{r}"
    );
    assert_eq!(fake.request_count(), 0);
    let ev = events(&app, &r["data"]["sendMessage"]).await;
    assert_eq!(
        statuses(&ev),
        ["ANALYZING", "INSUFFICIENT_CREDITS", "COMPLETED"]
    );
}
