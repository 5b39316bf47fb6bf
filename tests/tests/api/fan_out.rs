//! Fan-out across replicas through a Redis of the test's own: two servers on
//! one PostgreSQL database, Redis killed and restarted mid-run, and every
//! `chatTurn` and `sessionEvents` event still seen once and in order on the
//! other replica; a replica's Redis subscriptions follow its local subscribers.

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::{Value, json};

use wayfinder::llm::ProviderKind;

use crate::{
    chat_turn::{ARTICLES, widget_with_kb},
    fake_llm::{Behaviour, FakeLlm},
    helpers::*,
    writes::{assert_joined_mid_stream, follow, follow_timed},
};

/// A `redis-server` of this test's own on a free port; killed on drop.
struct OwnRedis {
    port: u16,
    child: Option<Child>,
}

impl OwnRedis {
    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    async fn start_on(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed for the fan-out tests");
        let redis = Self {
            port,
            child: Some(child),
        };
        for _ in 0..100 {
            if redis.ping().await {
                return redis;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server on {port} did not start");
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn ping(&self) -> bool {
        let Ok(client) = redis::Client::open(self.url()) else {
            return false;
        };
        match client.get_multiplexed_async_connection().await {
            Ok(mut conn) => redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .is_ok(),
            Err(_) => false,
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn readyz(app: &TestApp) -> (u16, Value) {
    let r = app
        .client
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn wait_ready_status(app: &TestApp, want: &str) -> (u16, Value) {
    for _ in 0..200 {
        let (code, body) = readyz(app).await;
        if body["status"] == want {
            return (code, body);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("replica never became {want}: {:?}", readyz(app).await);
}

const START: &str =
    "mutation($i: TurnInput!) { startTurn(input: $i) { turnId sessionId sessionToken } }";
const CHAT_TURN: &str = "subscription($t: UUID!, $s: String) { chatTurn(turnId: $t, sessionToken: $s) { seq status turnId } }";
const SESSION_EVENTS: &str =
    "subscription($s: UUID!) { sessionEvents(sessionId: $s) { seq status turnId } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_turn_and_session_events_survive_a_redis_restart_across_replicas() {
    // Arrange: Redis of our own, replicas A and B on one PostgreSQL database.
    let port = OwnRedis::free_port();
    let mut redis = OwnRedis::start_on(port).await;
    let db = TestDatabase::create(Backend::Postgres).await;
    let mut config = test_config(&db);
    config.redis_url = Some(redis.url());
    config.redis_prefix = "wf:".into();
    config.public_rate_limit = 0;
    config.widget_rate_limit = 0;
    config.api_key_rate_limit = 0;
    let b_db = TestDatabase::borrowed(&db);
    let a = spawn_on(db, config.clone(), Backend::Postgres).await;
    let b = spawn_on(b_db, config, Backend::Postgres).await;
    let (widget, _, _) = widget_with_kb(&a, ARTICLES).await;
    let turn = |token: Option<String>| {
        let a = &a;
        let widget = widget.clone();
        async move {
            let v = a
                .gql_as(
                    None,
                    START,
                    json!({ "i": { "widgetId": widget, "message": "How do I reset my password?", "sessionToken": token } }),
                )
                .await;
            assert!(v.get("errors").is_none(), "{v}");
            v["data"]["startTurn"].clone()
        }
    };
    let first = turn(None).await;
    let session_id = first["sessionId"].as_str().unwrap().to_string();
    let token = first["sessionToken"].as_str().unwrap().to_string();
    let mut dashboard = WsClient::connect(&b.ws_url, json!({ "apiKey": a.api_key })).await;
    dashboard
        .subscribe("s", SESSION_EVENTS, json!({ "s": session_id }))
        .await;
    let mut visitor = WsClient::connect(&b.ws_url, json!({ "sessionToken": token })).await;

    // Act: turns on A followed on B, with Redis killed after the third and
    // back after the sixth.
    let mut turns = vec![first["turnId"].as_str().unwrap().to_string()];
    let mut expected: Vec<(String, Vec<i64>)> = vec![];
    for i in 0..9 {
        if i == 3 {
            redis.kill();
            let (code, body) = wait_ready_status(&b, "degraded").await;
            assert_eq!(code, 200, "a degraded replica keeps serving: {body}");
            assert_eq!(body["redis"], "unavailable");
        }
        if i == 6 {
            redis = OwnRedis::start_on(port).await;
            wait_ready_status(&b, "ready").await;
        }
        if i > 0 {
            let t = turn(Some(token.clone())).await;
            turns.push(t["turnId"].as_str().unwrap().to_string());
        }
        let turn_id = turns.last().unwrap().clone();
        let id = format!("t{i}");
        visitor
            .subscribe(&id, CHAT_TURN, json!({ "t": turn_id }))
            .await;
        let events = visitor.collect(&id, Duration::from_secs(20)).await;
        let seqs: Vec<i64> = events
            .iter()
            .map(|e| e["data"]["chatTurn"]["seq"].as_i64().unwrap())
            .collect();
        let n = seqs.len() as i64;
        assert!(n >= 3, "turn {i}: {events:?}");
        assert_eq!(
            seqs,
            (1..=n).collect::<Vec<_>>(),
            "turn {i}: once, in order"
        );
        assert_eq!(
            events.last().unwrap()["data"]["chatTurn"]["status"],
            "COMPLETED"
        );
        expected.push((turn_id, seqs));
    }

    // Assert: the dashboard on B saw every event of every turn once, in order.
    let total: usize = expected.iter().map(|(_, s)| s.len()).sum();
    let mut seen: Vec<(String, i64)> = vec![];
    while seen.len() < total {
        let Some(msg) = dashboard.next(Duration::from_secs(20)).await else {
            panic!(
                "sessionEvents stalled after {} of {total}: {seen:?}",
                seen.len()
            );
        };
        assert_eq!(msg["type"], "next", "{msg}");
        let ev = &msg["payload"]["data"]["sessionEvents"];
        seen.push((
            ev["turnId"].as_str().unwrap().to_string(),
            ev["seq"].as_i64().unwrap(),
        ));
    }
    let want: Vec<(String, i64)> = expected
        .iter()
        .flat_map(|(t, seqs)| seqs.iter().map(move |s| (t.clone(), *s)))
        .collect();
    assert_eq!(seen, want, "every session event once, in order");
    assert!(
        dashboard.next(Duration::from_millis(500)).await.is_none(),
        "no duplicate after the last event"
    );
}

/// The channels `redis` has subscribers on under `prefix`.
async fn channels(conn: &mut redis::aio::MultiplexedConnection, prefix: &str) -> Vec<String> {
    let mut got: Vec<String> = redis::cmd("PUBSUB")
        .arg("CHANNELS")
        .arg(format!("{prefix}*"))
        .query_async(conn)
        .await
        .unwrap();
    got.sort();
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_subscriptions_follow_local_subscribers() {
    let prefix = format!("wftest:{}:", uuid::Uuid::new_v4().simple());
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.redis_url = Some(redis_url());
        c.redis_prefix = prefix.clone();
    })
    .await;
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    assert!(channels(&mut conn, &prefix).await.is_empty());

    let mut ws = WsClient::connect(&app.ws_url, json!({ "apiKey": app.api_key })).await;
    ws.subscribe("1", "subscription { orgEvents { kind } }", json!({}))
        .await;
    ws.subscribe("2", "subscription { orgEvents { kind } }", json!({}))
        .await;
    let org_channel = format!("{prefix}org:{}", app.org_id);
    let mut got = vec![];
    for _ in 0..100 {
        got = channels(&mut conn, &prefix).await;
        if !got.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        got.as_slice(),
        std::slice::from_ref(&org_channel),
        "one channel for the org's topic"
    );

    ws.send_raw(json!({ "type": "complete", "id": "1" })).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        channels(&mut conn, &prefix).await,
        [org_channel],
        "still followed by the second subscription"
    );
    ws.send_raw(json!({ "type": "complete", "id": "2" })).await;
    for _ in 0..100 {
        got = channels(&mut conn, &prefix).await;
        if got.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        got.is_empty(),
        "unsubscribed with the last local subscriber: {got:?}"
    );
}

/// The keys under `prefix` matching `pattern` that are still there after
/// waiting up to a second for them to go (writes reach Redis asynchronously).
async fn keys_left(prefix: &str, pattern: &str) -> Vec<String> {
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut left = vec![];
    for _ in 0..50 {
        left = redis::cmd("KEYS")
            .arg(format!("{prefix}{pattern}"))
            .query_async(&mut conn)
            .await
            .unwrap();
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    left
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_answer_reaches_a_late_subscriber_on_another_replica_from_the_stash() {
    // Arrange: replicas A and B on one PostgreSQL database and Redis; A's
    // LLM streams 300 chunks, one every 4 ms.
    let prefix = format!("wftest:{}:", uuid::Uuid::new_v4().simple());
    let fake = FakeLlm::start(ProviderKind::OpenAi).await;
    let db = TestDatabase::create(Backend::Postgres).await;
    let mut config = test_config(&db);
    fake.configure(&mut config);
    config.redis_url = Some(redis_url());
    config.redis_prefix = prefix.clone();
    let b_db = TestDatabase::borrowed(&db);
    let a = spawn_on(db, config.clone(), Backend::Postgres).await;
    let b = spawn_on(b_db, config, Backend::Postgres).await;
    a.grant_credits(100_000).await;
    let (widget, _, _) = widget_with_kb(&a, ARTICLES).await;
    let chunks: Vec<String> = (0..300).map(|i| format!("step {i} [1]\n")).collect();
    fake.set_behaviour(Behaviour::Paced {
        chunks,
        every: Duration::from_millis(4),
    });

    // Act: a turn on A, followed on A from the start and on B (`chatTurn`
    // and `sessionEvents`) from half-way through the answer.
    let started = a
        .gql_as(
            None,
            START,
            json!({ "i": { "widgetId": widget, "message": "How do I reset my password?" } }),
        )
        .await;
    let s = started["data"]["startTurn"].clone();
    let (live, (late, dashboard)) =
        tokio::join!(follow(&a, &s["turnId"], &s["sessionToken"]), async {
            tokio::time::sleep(Duration::from_millis(600)).await;
            let mut dashboard = WsClient::connect(&b.ws_url, json!({ "apiKey": a.api_key })).await;
            dashboard
                .subscribe("s", SESSION_EVENTS, json!({ "s": s["sessionId"] }))
                .await;
            let late = follow_timed(&b.ws_url, &s["turnId"], &s["sessionToken"]).await;
            (late, dashboard)
        });

    // Assert: B's `chatTurn` got the same stream, the missed chunks while
    // the answer still streamed.
    assert!(live.len() > 300, "{live:?}");
    assert_joined_mid_stream(&late, &live);
    // B's `sessionEvents` got every event of the turn once, in order.
    let mut dashboard = dashboard;
    let mut seqs = vec![];
    while seqs.len() < live.len() {
        let Some(msg) = dashboard.next(Duration::from_secs(10)).await else {
            panic!("sessionEvents stalled after {seqs:?}");
        };
        assert_eq!(msg["type"], "next", "{msg}");
        seqs.push(
            msg["payload"]["data"]["sessionEvents"]["seq"]
                .as_i64()
                .unwrap(),
        );
    }
    assert_eq!(seqs, (1..=live.len() as i64).collect::<Vec<_>>());
    assert!(
        dashboard.next(Duration::from_millis(300)).await.is_none(),
        "no duplicate"
    );
    // The stash is gone once the answer is stored.
    let left = keys_left(&prefix, "stash:*").await;
    assert!(left.is_empty(), "{left:?}");
}

/// Bursts written by one replica's bus (queued faster than Redis answers, so
/// its writer sends them in pipelines) reach another replica whole and in
/// order, and a stash made before a message is readable when it arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_reach_another_replica_whole_in_order_with_their_stashes() {
    use wayfinder::pubsub::{Bus, Delivery, RedisBus};

    let prefix = format!("wftest:{}:", uuid::Uuid::new_v4().simple());
    let client = || redis::Client::open(redis_url()).unwrap();
    let a = RedisBus::connect(client(), prefix.clone()).await.unwrap();
    let b = RedisBus::connect(client(), prefix.clone()).await.unwrap();
    // Subscribed once B's listener is up (its connecting is a gap to
    // subscriptions older than it).
    for _ in 0..250 {
        if b.connected() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut rx = b.subscribe("burst");
    rx.ready(Duration::from_secs(5)).await;

    // Bursts of 24: under the subscriber's buffer of 32, so a burst that
    // arrives at once is never a lag.
    const BURSTS: usize = 100;
    const BURST: usize = 24;
    for burst in 0..BURSTS {
        let key = format!("burst:{burst}");
        a.stash(&key, format!("stash {burst}"), Duration::from_secs(60));
        for i in 0..BURST {
            a.publish("burst", format!("{burst}.{i}"));
        }
        for i in 0..BURST {
            let got = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .unwrap_or_else(|_| panic!("message {burst}.{i} never arrived"));
            assert_eq!(got, Delivery::Message(format!("{burst}.{i}").into()));
            if i == 0 {
                assert_eq!(
                    b.unstash(&key).await.as_deref(),
                    Some(format!("stash {burst}").as_str()),
                    "the stash was written before the burst's first message"
                );
            }
        }
        a.clear_stash(&key);
    }

    // The clears went out too, in order: nothing is left under the prefix.
    let left = keys_left(&prefix, "*").await;
    assert!(left.is_empty(), "stashes left behind: {left:?}");
}
