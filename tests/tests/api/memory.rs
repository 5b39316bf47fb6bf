//! Memory follows the sockets: what 1,000 graphql-ws sockets with a live
//! subscription each take is given back when they close, both as live heap
//! (nothing of theirs is kept in a map or a task) and as resident memory
//! (the allocator returns the pages to the system).
//!
//! The figures are the whole process's (the server and its clients share
//! it), read from jemalloc, which this test binary allocates with as the
//! server binary does. They mean something only when the test has its
//! process to itself, as under `cargo nextest` (the README's test command).

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::json;
use tikv_jemalloc_ctl::{background_thread, epoch, stats};

use crate::helpers::*;

const SOCKETS: usize = 1_000;
/// Sockets opened at once.
const WAVE: usize = 50;

/// (live heap bytes, resident bytes) of the process now.
fn heap() -> (usize, usize) {
    epoch::advance().unwrap();
    (
        stats::allocated::read().unwrap(),
        stats::resident::read().unwrap(),
    )
}

async fn open(app: &TestApp, n: usize) -> Vec<WsClient> {
    let mut all = Vec::with_capacity(n);
    while all.len() < n {
        let wave = (n - all.len()).min(WAVE);
        all.extend(
            join_all((0..wave).map(|_| async {
                let mut ws = WsClient::connect(&app.ws_url, json!({ "apiKey": app.api_key })).await;
                ws.subscribe("1", "subscription { orgEvents { kind } }", json!({}))
                    .await;
                ws
            }))
            .await,
        );
    }
    all
}

/// Creates a knowledge base and waits until every socket has its event: the
/// subscriptions are running (and the server has done its share of work).
async fn event_reaches_all(app: &TestApp, sockets: &mut [WsClient]) {
    // graphql-ws does not acknowledge a subscribe: wait until the server
    // runs every subscription, or an event published before the last ones
    // start would not reach them (orgEvents does not replay the past).
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(app, "wayfinder_subscriptions ").await < sockets.len() as f64
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.gql_ok(
        r#"mutation { createKnowledgeBase(input: {name: "kb"}) { id } }"#,
        json!({}),
    )
    .await;
    for chunk in sockets.chunks_mut(WAVE) {
        join_all(chunk.iter_mut().map(|ws| async {
            // The org's own earlier events may come first: the outbox relay
            // publishes `org.created` (recorded before any socket) on its
            // own schedule.
            loop {
                let msg = ws.next(Duration::from_secs(20)).await.expect("an event");
                assert_eq!(msg["type"], "next", "{msg}");
                if msg["payload"]["data"]["orgEvents"]["kind"] == "knowledge_base.created" {
                    break;
                }
            }
        }))
        .await;
    }
}

/// The value of the metric line starting with `name` (a space included).
async fn metric(app: &TestApp, name: &str) -> f64 {
    app.metrics_text()
        .await
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no metric {name}"))
}

async fn open_sockets(app: &TestApp) -> f64 {
    metric(app, "wayfinder_open_sockets ").await
}

/// Waits until the server has closed every socket.
async fn all_closed(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while open_sockets(app).await > 0.0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        open_sockets(app).await,
        0.0,
        "the server closed every socket"
    );
}

/// Polls `read` every 200 ms for up to `within`; the last value it saw.
async fn settles<T: Copy>(
    within: Duration,
    mut read: impl FnMut() -> T,
    ok: impl Fn(T) -> bool,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        let v = read();
        if ok(v) || Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_returns_to_its_baseline_after_sockets_close() {
    if std::env::var("NEXTEST_EXECUTION_MODE").as_deref() != Ok("process-per-test") {
        eprintln!("skipped: heap figures need a process of the test's own (cargo nextest)");
        return;
    }
    background_thread::write(true).unwrap();
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.ws_max_sockets_per_ip = SOCKETS + 64;
        // A thousand upgrades from one address in a few seconds.
        c.public_rate_limit = 0;
        c.api_key_rate_limit = 0;
    })
    .await;

    // A first round allocates what is made once (pools, caches, the
    // allocator's own structures); the baseline is taken after it.
    let mut warm = open(&app, WAVE).await;
    event_reaches_all(&app, &mut warm).await;
    drop(warm);
    all_closed(&app).await;
    let (base_live, base_resident) = heap();

    let mut sockets = open(&app, SOCKETS).await;
    event_reaches_all(&app, &mut sockets).await;
    let (held_live, held_resident) = heap();
    let grew = held_live.saturating_sub(base_live);
    let per_socket = grew / SOCKETS;
    eprintln!(
        "{SOCKETS} sockets: live heap {base_live} -> {held_live} ({per_socket} B per socket, both ends), resident {base_resident} -> {held_resident}"
    );
    // Both ends of a socket together; the server's share was ~150 KB when
    // axum's default buffers were kept per socket.
    assert!(per_socket < 48 * 1024, "{per_socket} B per socket");
    assert!(
        grew > SOCKETS * 1024,
        "the sockets were measured ({grew} B)"
    );

    drop(sockets);
    all_closed(&app).await;
    // Nothing of theirs stays alive: within 2 % of what they took (a pool
    // connection or a log buffer may come and go meanwhile).
    let slack = grew / 50;
    let live = settles(
        Duration::from_secs(10),
        || heap().0,
        |v| v <= base_live + slack,
    )
    .await;
    assert!(
        live <= base_live + slack,
        "live heap {live} B after close, baseline {base_live} B, the sockets took {grew} B"
    );
    // And the pages go back to the system: resident within a quarter of
    // what the sockets added (jemalloc's dirty pages decay over ~10 s). Not
    // all of it: a page that still holds one live allocation made meanwhile
    // (a pool connection, a log line) stays resident, and on a loaded machine
    // that was an eighth of the pages (12.5 %, seen in CI beside other tests).
    let added = held_resident.saturating_sub(base_resident);
    let returned = |v: usize| v <= base_resident + added / 4;
    let resident = settles(Duration::from_secs(40), || heap().1, returned).await;
    eprintln!("resident after close: {resident} (baseline {base_resident}, held {held_resident})");
    assert!(
        returned(resident),
        "resident {resident} B after close, baseline {base_resident} B, held {held_resident} B"
    );
}
