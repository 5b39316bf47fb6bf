//! Webhooks: an org's events POSTed to its endpoints, signed, retried with
//! backoff, accepted exactly once per event, and invisible to other orgs.
//!
//! The tests drive delivery themselves with [`Pump`]: it queues what each
//! new event should produce (as `event::publish` does after commit) and runs
//! two delivery passes at once, like two replicas racing for the same
//! attempts. When the server's own worker runs too, it simply competes for
//! the same claims.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, StatusCode},
};
use hmac::{Hmac, KeyInit, Mac};
use sea_orm::EntityTrait;
use serde_json::{Value, json};
use sha2::Sha256;
use uuid::Uuid;
use wayfinder::{domain::Plan, service::webhook};

use crate::{helpers::*, on_both_databases};

on_both_databases!(
    deliveries_are_signed_retried_and_accepted_once,
    event_kinds_filter_and_pausing,
    other_orgs_cannot_see_or_change_webhooks,
    unreachable_receivers_are_retried,
);

/// The first retry's wait in these tests (the server's default is 1 s).
const BACKOFF: Duration = Duration::from_millis(20);

/// One request a [`Receiver`] got, and what it answered.
#[derive(Clone, Debug)]
pub(crate) struct Received {
    pub(crate) path: String,
    headers: HeaderMap,
    body: String,
    answered: u16,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

/// A webhook endpoint on `127.0.0.1:0` that answers `failure` to the first
/// `fail_first` attempts of each delivery, then 200. Stops when dropped.
pub(crate) struct Receiver {
    pub(crate) url: String,
    got: Arc<Mutex<Vec<Received>>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

#[derive(Clone)]
struct ReceiverState {
    fail_first: usize,
    failure: (StatusCode, &'static str),
    got: Arc<Mutex<Vec<Received>>>,
}

async fn receive(
    State(rs): State<ReceiverState>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, &'static str) {
    let mut got = rs.got.lock().unwrap();
    let delivery = headers.get("x-wayfinder-delivery").cloned();
    let earlier = got
        .iter()
        .filter(|r| r.headers.get("x-wayfinder-delivery") == delivery.as_ref())
        .count();
    let answer = if earlier < rs.fail_first {
        rs.failure
    } else {
        (StatusCode::OK, "")
    };
    got.push(Received {
        path: uri.path().to_owned(),
        headers,
        body,
        answered: answer.0.as_u16(),
    });
    answer
}

impl Receiver {
    pub(crate) async fn start(fail_first: usize) -> Self {
        Self::failing_with(fail_first, (StatusCode::INTERNAL_SERVER_ERROR, "")).await
    }

    pub(crate) async fn failing_with(
        fail_first: usize,
        failure: (StatusCode, &'static str),
    ) -> Self {
        let got = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new().fallback(receive).with_state(ReceiverState {
            fail_first,
            failure,
            got: got.clone(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Self {
            url: format!("http://{addr}/hooks/wayfinder"),
            got,
            _stop: stop,
        }
    }

    /// The `WAYFINDER_OUTBOUND_ALLOW` entry for this receiver (`127.0.0.1:PORT`):
    /// without it the outbound guard refuses a loopback webhook.
    pub(crate) fn allow_entry(&self) -> String {
        allow_entry(&self.url)
    }

    /// Every request so far.
    pub(crate) fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// The requests answered 2xx.
    pub(crate) fn accepted(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| (200..300).contains(&r.answered))
            .collect()
    }

    /// The kinds of the accepted events, in order.
    fn accepted_kinds(&self) -> Vec<String> {
        self.accepted()
            .iter()
            .map(|r| r.json()["kind"].as_str().unwrap().to_string())
            .collect()
    }
}

/// `host:port` of `url`, for the outbound allowlist.
pub(crate) fn allow_entry(url: &str) -> String {
    let url = reqwest::Url::parse(url).unwrap();
    format!("{}:{}", url.host_str().unwrap(), url.port().unwrap())
}

/// A server whose outbound allowlist holds `entries` (the test's receivers).
pub(crate) async fn app_allowing(backend: Backend, entries: &[String]) -> TestApp {
    let list = entries.join(",");
    spawn_app_with(backend, |c| c.outbound_allow = Some(list)).await
}

/// Queues deliveries for events it has not seen yet, then runs two delivery passes at once.
#[derive(Default)]
pub(crate) struct Pump {
    seen: HashSet<Uuid>,
}

impl Pump {
    pub(crate) async fn once(&mut self, app: &TestApp) {
        let new: Vec<_> = entity::event::Entity::find()
            .all(&app.state.db)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| self.seen.insert(e.id))
            .collect();
        webhook::enqueue(&app.state, &new).await.unwrap();
        let (a, b) = tokio::join!(
            webhook::deliver_due(&app.state, BACKOFF),
            webhook::deliver_due(&app.state, BACKOFF),
        );
        a.unwrap();
        b.unwrap();
    }

    /// Pumps until `done`, failing after 30 s.
    pub(crate) async fn until(&mut self, app: &TestApp, what: &str, done: impl AsyncFn() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            self.once(app).await;
            if done().await {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
    }

    /// A few more passes, for checking that nothing else arrives.
    pub(crate) async fn settle(&mut self, app: &TestApp) {
        for _ in 0..6 {
            self.once(app).await;
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

pub(crate) const CREATE: &str = r#"mutation($url: String!, $kinds: [String!]) {
    createWebhook(input: {url: $url, eventKinds: $kinds}) { secret webhook { id url eventKinds active } }
}"#;

const DELIVERIES: &str = r#"query($id: UUID!) { webhook(id: $id) { deliveries {
    nodes { id status attempts lastStatusCode lastError eventId eventKind nextAttemptAt deliveredAt }
} } }"#;

pub(crate) async fn create_webhook(app: &TestApp, url: &str, kinds: Value) -> (String, String) {
    let created = app
        .gql_ok(CREATE, json!({ "url": url, "kinds": kinds }))
        .await["createWebhook"]
        .clone();
    (
        created["webhook"]["id"].as_str().unwrap().to_string(),
        created["secret"].as_str().unwrap().to_string(),
    )
}

pub(crate) async fn create_kb(app: &TestApp, key: Option<&str>, name: &str) -> String {
    let v = app
        .gql_as(
            Some(key.unwrap_or(&app.api_key)),
            "mutation($n: String!) { createKnowledgeBase(input: {name: $n}) { id } }",
            json!({ "n": name }),
        )
        .await;
    v["data"]["createKnowledgeBase"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .to_string()
}

pub(crate) async fn deliveries(app: &TestApp, webhook_id: &str) -> Vec<Value> {
    app.gql_ok(DELIVERIES, json!({ "id": webhook_id })).await["webhook"]["deliveries"]["nodes"]
        .as_array()
        .unwrap()
        .clone()
}

fn expected_signature(secret: &str, timestamp: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.{body}").as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn deliveries_are_signed_retried_and_accepted_once(backend: Backend) {
    // Arrange: a receiver that fails every delivery twice with 500 before accepting it.
    let receiver = Receiver::start(2).await;
    let app = app_allowing(backend, &[receiver.allow_entry()]).await;
    let created = app.gql_ok(CREATE, json!({ "url": receiver.url })).await["createWebhook"].clone();
    let webhook_id = created["webhook"]["id"].as_str().unwrap().to_string();
    let secret = created["secret"].as_str().unwrap().to_string();
    assert_eq!(secret.len(), 64, "{created}");
    assert!(
        secret
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    assert_eq!(created["webhook"]["eventKinds"], json!([]));
    assert_eq!(created["webhook"]["active"], true);
    assert_eq!(created["webhook"]["url"], receiver.url);

    // Act: two more events after the webhook's own `webhook.created`.
    create_kb(&app, None, "Billing").await;
    create_kb(&app, None, "Shipping").await;
    let mut pump = Pump::default();
    pump.until(&app, "three accepted deliveries", async || {
        receiver.accepted().len() >= 3
    })
    .await;
    pump.settle(&app).await;

    // Assert: every event accepted exactly once, after exactly two failures.
    let accepted = receiver.accepted();
    let mut kinds = receiver.accepted_kinds();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "knowledge_base.created",
            "knowledge_base.created",
            "webhook.created"
        ],
        "{accepted:?}"
    );
    let accepted_ids: HashSet<String> = accepted
        .iter()
        .map(|r| r.json()["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        accepted_ids.len(),
        3,
        "an event was accepted twice: {accepted:?}"
    );
    let all = receiver.received();
    assert_eq!(all.len(), 9, "three attempts per event, no more: {all:?}");
    let mut attempts_per_delivery: HashMap<String, Vec<u16>> = HashMap::new();
    for r in &all {
        attempts_per_delivery
            .entry(r.header("x-wayfinder-delivery").to_string())
            .or_default()
            .push(r.answered);
    }
    for (delivery, answers) in &attempts_per_delivery {
        assert_eq!(answers, &[500, 500, 200], "delivery {delivery}");
    }

    // Every request carries the event, its headers, and a valid fresh signature.
    let now = chrono_now();
    for r in &all {
        let body = r.json();
        assert_eq!(r.header("content-type"), "application/json");
        assert_eq!(r.header("x-wayfinder-event"), body["kind"]);
        assert_eq!(body["orgId"], app.org_id.to_string());
        assert!(
            body["createdAt"].is_string() && body["payload"].is_object(),
            "{body}"
        );
        let ts = r.header("x-wayfinder-timestamp");
        let ts_secs: i64 = ts.parse().unwrap();
        assert!((now - ts_secs).abs() < 300, "stale timestamp {ts}");
        let sig = r.header("x-wayfinder-signature");
        assert_eq!(
            sig,
            format!("v1={}", expected_signature(&secret, ts, &r.body)),
            "bad signature"
        );
        assert_ne!(
            sig,
            format!("v1={}", expected_signature("wrong secret", ts, &r.body))
        );
    }

    // The dashboard sees the same story.
    let nodes = deliveries(&app, &webhook_id).await;
    assert_eq!(nodes.len(), 3, "{nodes:?}");
    for d in &nodes {
        assert_eq!(d["status"], "DELIVERED", "{d}");
        assert_eq!(d["attempts"], 3, "{d}");
        assert_eq!(d["lastStatusCode"], 200, "{d}");
        assert!(d["lastError"].is_null(), "{d}");
        assert!(d["deliveredAt"].is_string(), "{d}");
        assert!(d["nextAttemptAt"].is_null(), "{d}");
        assert!(accepted_ids.contains(d["eventId"].as_str().unwrap()), "{d}");
        assert!(
            attempts_per_delivery.contains_key(d["id"].as_str().unwrap()),
            "{d}"
        );
        assert!(
            d["eventKind"].as_str().unwrap().ends_with(".created"),
            "{d}"
        );
    }
    let pending = app
        .gql_ok(
            "query($id: UUID!) { webhook(id: $id) { deliveries(status: PENDING) { nodes { id } } } }",
            json!({ "id": webhook_id }),
        )
        .await;
    assert_eq!(pending["webhook"]["deliveries"]["nodes"], json!([]));
}

async fn event_kinds_filter_and_pausing(backend: Backend) {
    let kbs = Receiver::start(0).await;
    let sites = Receiver::start(0).await;
    let app = app_allowing(backend, &[kbs.allow_entry(), sites.allow_entry()]).await;
    let (kb_hook, _) = create_webhook(&app, &kbs.url, json!(["knowledge_base.created"])).await;
    let (_, _) = create_webhook(&app, &sites.url, json!(["site.*"])).await;
    let mut pump = Pump::default();

    // Only the kinds asked for arrive.
    let first_kb = create_kb(&app, None, "Billing").await;
    app.gql_ok(
        r#"mutation { createSite(input: {name: "Docs", baseUrl: "https://docs.example.com"}) { id } }"#,
        json!({}),
    )
    .await;
    app.gql_ok(
        "mutation($id: UUID!) { deleteKnowledgeBase(id: $id) { id } }",
        json!({ "id": first_kb }),
    )
    .await;
    pump.until(&app, "both receivers", async || {
        !kbs.accepted().is_empty() && !sites.accepted().is_empty()
    })
    .await;
    pump.settle(&app).await;
    assert_eq!(kbs.accepted_kinds(), ["knowledge_base.created"]);
    assert_eq!(sites.accepted_kinds(), ["site.created"]);

    // Paused: nothing is queued. Resumed with an empty filter: everything after that.
    let paused = app
        .gql_ok(
            "mutation($id: UUID!) { updateWebhook(input: {id: $id, eventKinds: [], active: false}) { eventKinds active } }",
            json!({ "id": kb_hook }),
        )
        .await;
    assert_eq!(
        paused["updateWebhook"],
        json!({ "eventKinds": [], "active": false })
    );
    let while_paused = create_kb(&app, None, "While paused").await;
    pump.settle(&app).await;
    assert_eq!(kbs.accepted().len(), 1);
    app.gql_ok(
        "mutation($id: UUID!) { updateWebhook(input: {id: $id, active: true}) { id } }",
        json!({ "id": kb_hook }),
    )
    .await;
    let resumed = create_kb(&app, None, "Resumed").await;
    pump.until(&app, "deliveries after resuming", async || {
        kbs.accepted().len() >= 3
    })
    .await;
    pump.settle(&app).await;
    // Deliveries of one pass run concurrently: arrival order is not guaranteed.
    let mut kinds = kbs.accepted_kinds();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "knowledge_base.created",
            "knowledge_base.created",
            "webhook.updated"
        ]
    );
    let kb_ids: HashSet<String> = kbs
        .accepted()
        .iter()
        .filter(|r| r.json()["kind"] == "knowledge_base.created")
        .map(|r| r.json()["payload"]["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kb_ids, HashSet::from([first_kb, resumed]));
    assert!(!kb_ids.contains(&while_paused));

    // Validation and the per-org limit.
    for (url, kinds, field) in [
        ("ftp://example.com/hook", json!(null), "input.url"),
        (
            "https://example.com/hook",
            json!(["Not A Kind"]),
            "input.eventKinds",
        ),
    ] {
        let v = app.gql(CREATE, json!({ "url": url, "kinds": kinds })).await;
        assert_eq!(error_code(&v), Some("BAD_USER_INPUT"), "{v}");
        assert_eq!(v["errors"][0]["extensions"]["field"], field, "{v}");
    }
    for i in 2..10 {
        let url = format!("https://hooks{i}.example.com/in");
        app.gql_ok(CREATE, json!({ "url": url, "kinds": ["nothing.ever"] }))
            .await;
    }
    let eleventh = app
        .gql(CREATE, json!({ "url": "https://one-too-many.example.com" }))
        .await;
    assert_eq!(error_code(&eleventh), Some("FORBIDDEN"), "{eleventh}");
}

async fn other_orgs_cannot_see_or_change_webhooks(backend: Backend) {
    let receiver = Receiver::start(0).await;
    let app = app_allowing(backend, &[receiver.allow_entry()]).await;
    let (hook, _) = create_webhook(&app, &receiver.url, json!(null)).await;
    let (_other_org, other_key) = app.create_org(Plan::Enterprise).await;
    let other = |q: &'static str, v: Value| {
        let (app, key) = (&app, other_key.clone());
        async move { app.gql_as(Some(&key), q, v).await }
    };

    // Reads: nothing; single reads and writes: NOT_FOUND, like a random id.
    let list = other("{ webhooks { nodes { id } } }", json!({})).await;
    assert_eq!(list["data"]["webhooks"]["nodes"], json!([]), "{list}");
    for q in [
        "query($id: UUID!) { webhook(id: $id) { id } }",
        r#"mutation($id: UUID!) { updateWebhook(input: {id: $id, url: "https://evil.example.com"}) { id } }"#,
        "mutation($id: UUID!) { deleteWebhook(id: $id) { id } }",
    ] {
        let theirs = other(q, json!({ "id": hook })).await;
        let random = other(q, json!({ "id": Uuid::now_v7() })).await;
        assert_eq!(error_code(&theirs), Some("NOT_FOUND"), "{q}: {theirs}");
        assert_eq!(
            theirs["errors"][0]["message"],
            random["errors"][0]["message"]
        );
    }
    let mine = app
        .gql_ok(
            "query($id: UUID!) { webhook(id: $id) { url active } }",
            json!({ "id": hook }),
        )
        .await;
    assert_eq!(
        mine["webhook"],
        json!({ "url": receiver.url, "active": true })
    );

    // The other org's events never reach this org's webhook.
    create_kb(&app, Some(&other_key), "Theirs").await;
    let mut pump = Pump::default();
    pump.until(&app, "this org's webhook.created", async || {
        !receiver.accepted().is_empty()
    })
    .await;
    pump.settle(&app).await;
    assert_eq!(receiver.accepted_kinds(), ["webhook.created"]);
    for r in receiver.received() {
        assert_eq!(r.json()["orgId"], app.org_id.to_string());
    }

    // Deleting removes it and its deliveries.
    app.gql_ok(
        "mutation($id: UUID!) { deleteWebhook(id: $id) { id } }",
        json!({ "id": hook }),
    )
    .await;
    let gone = app
        .gql(
            "query($id: UUID!) { webhook(id: $id) { id } }",
            json!({ "id": hook }),
        )
        .await;
    assert_eq!(error_code(&gone), Some("NOT_FOUND"), "{gone}");
}

async fn unreachable_receivers_are_retried(backend: Backend) {
    // A port nobody listens on (bound, then released).
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let failing = Receiver::failing_with(
        usize::MAX,
        (StatusCode::SERVICE_UNAVAILABLE, "down for maintenance"),
    )
    .await;
    let app = app_allowing(backend, &[closed.to_string(), failing.allow_entry()]).await;
    let (refused, secret) =
        create_webhook(&app, &format!("http://{closed}/hook"), json!(null)).await;
    let (unavailable, _) = create_webhook(&app, &failing.url, json!(["knowledge_base.*"])).await;
    create_kb(&app, None, "Billing").await;

    let mut pump = Pump::default();
    pump.until(&app, "three failed attempts each", async || {
        let mut all = deliveries(&app, &refused).await;
        all.extend(deliveries(&app, &unavailable).await);
        // `refused` gets every event (two webhook.created, one knowledge_base.created), `unavailable` one.
        all.len() == 4 && all.iter().all(|d| d["attempts"].as_i64().unwrap() >= 3)
    })
    .await;

    for d in deliveries(&app, &refused).await {
        assert_eq!(d["status"], "PENDING", "{d}");
        assert!(d["lastStatusCode"].is_null(), "{d}");
        let error = d["lastError"].as_str().unwrap();
        assert!(!error.is_empty() && error.len() <= 500, "{d}");
        assert!(!error.contains(&secret), "{d}");
        assert!(
            d["nextAttemptAt"].is_string() && d["deliveredAt"].is_null(),
            "{d}"
        );
    }
    for d in deliveries(&app, &unavailable).await {
        assert_eq!(d["status"], "PENDING", "{d}");
        assert_eq!(d["lastStatusCode"], 503, "{d}");
        // The status only: the receiver's body is never echoed.
        assert_eq!(d["lastError"], "HTTP 503", "{d}");
    }
    assert!(failing.accepted().is_empty());
    assert!(failing.received().len() >= 3);
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}
