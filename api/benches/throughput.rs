#![allow(clippy::expect_used, clippy::unwrap_used)]

//! Two replicas and the HTTP path, against the `wayfinder` binary of this
//! build run as processes of their own:
//!
//! 1. **Fan-out.** Replicas A and B share one PostgreSQL database (a fresh
//!    one, dropped at the end) and one Redis (a key prefix of their own).
//!    A dashboard socket on each follows `orgEvents`; the bench changes
//!    knowledge bases through A at an open-loop `EVENT_RATE` per second
//!    (`EVENTS` changes, each answered without GraphQL `errors`), and times
//!    every event from its `createdAt` (stamped by A as it writes the event,
//!    before its transaction commits) to its arrival on each socket (same
//!    machine, same clock). A's own dashboard hears it through Redis too, so
//!    both figures include the commit and the Redis round trip; B's is the
//!    fan-out from A to B, an upper bound. Every event A saw must reach B,
//!    once; the count lost is printed and must be zero.
//! 2. **HTTP.** `{ __typename }` over HTTP to replica A from `CONNECTIONS`
//!    keep-alive connections for `SECONDS`: requests per second, each
//!    response checked (200, `{"data":{"__typename":"Query"}}`, no `errors`).
//!    `HTTP_URL` points this part at another server instead (a reference
//!    such as Apollo Server, timed by the same client in the same run).
//!
//! Run: `cargo bench -p wayfinder-api --bench throughput`.
//! `DATABASE_MAX_CONNECTIONS` sizes each replica's pool (6 here). `PG_ADMIN_URL`
//! (default `postgres://postgres@127.0.0.1:5432/postgres`) creates the
//! database; `REDIS_URL` defaults to `redis://127.0.0.1:6379`.

mod common;

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use common::{
    gql,
    process::{
        Socket, command, connect, cpu_secs, free_port, metric, ms, org_key, serve, setting, text,
    },
};
use futures_util::{SinkExt, StreamExt};
use sea_orm::{ConnectionTrait, Database};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// The replicas' `/metrics` token (the bench reads their gap counters).
const METRICS_TOKEN: &str = "bench-metrics";

/// `wayfinder_fanout_gaps_total` of the replica at `addr`: how often a live
/// subscription lagged or lost the bus and re-read the store.
async fn gaps(client: &reqwest::Client, addr: SocketAddr) -> f64 {
    metric(
        client,
        addr,
        Some(METRICS_TOKEN),
        "wayfinder_fanout_gaps_total",
    )
    .await
    .expect("wayfinder_fanout_gaps_total in /metrics")
}

/// Knowledge bases the changes rotate over (one row would serialise them on its lock).
const KBS: usize = 16;

/// Per event id seen on one socket: its `createdAt`, and how long after it the event arrived.
type Arrivals = Arc<Mutex<HashMap<String, (chrono::DateTime<chrono::Utc>, Duration)>>>;

/// Follows `orgEvents` on `ws`, recording when each event arrives (a
/// second arrival of one id is a duplicate and fails the bench).
fn follow(mut ws: Socket) -> (Arrivals, tokio::task::JoinHandle<()>) {
    let seen: Arrivals = Default::default();
    let task = {
        let seen = seen.clone();
        tokio::spawn(async move {
            ws.send(text(json!({"id": "e", "type": "subscribe", "payload": {"query": "subscription { orgEvents { id kind createdAt } }"}})))
                .await
                .expect("subscribe");
            while let Some(Ok(msg)) = ws.next().await {
                let Message::Text(raw) = msg else { continue };
                let m: Value = serde_json::from_str(&raw).expect("server message");
                match m["type"].as_str() {
                    Some("next") => {
                        assert!(m["payload"].get("errors").is_none(), "event: {m}");
                        let now = chrono::Utc::now();
                        let ev = &m["payload"]["data"]["orgEvents"];
                        let id = ev["id"].as_str().expect("event id").to_string();
                        let created: chrono::DateTime<chrono::Utc> = ev["createdAt"]
                            .as_str()
                            .and_then(|t| t.parse().ok())
                            .expect("createdAt");
                        let lag = (now - created).to_std().unwrap_or_default();
                        let again = seen.lock().unwrap().insert(id.clone(), (created, lag));
                        assert!(again.is_none(), "event {id} arrived twice");
                    }
                    Some("ping") => ws.send(text(json!({"type": "pong"}))).await.expect("pong"),
                    Some("error" | "complete") => panic!("subscription ended: {m}"),
                    _ => {}
                }
            }
        })
    };
    (seen, task)
}

fn quantiles(mut v: Vec<Duration>) -> (f64, f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    v.sort();
    (
        ms(common::percentile(&v, 0.5)),
        ms(common::percentile(&v, 0.99)),
        ms(common::percentile(&v, 1.0)),
    )
}

#[tokio::main]
async fn main() {
    let events = setting("EVENTS", 3000);
    let rate = setting("EVENT_RATE", 1000).max(1);
    let connections = setting("CONNECTIONS", 32).max(1);
    let seconds = setting("SECONDS", 5).max(1);
    // Each replica's PostgreSQL pool: two cores that also run PostgreSQL,
    // Redis, the other replica and this client are best served by a few
    // connections (see docs/decisions.md, "Pool size and the first second").
    let pool = setting("DATABASE_MAX_CONNECTIONS", 6).max(1);
    let admin = std::env::var("PG_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let redis = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());

    // A fresh database and key prefix, shared by both replicas.
    let name = format!("wayfinder_bench_{}", uuid::Uuid::new_v4().simple());
    let pg = Database::connect(&admin).await.expect("PostgreSQL");
    pg.execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create database");
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
    let database_url = format!("{base}/{name}");
    let dir = std::env::temp_dir().join(format!("wayfinder-throughput-{name}"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let replica = || {
        let mut cmd = command(&dir);
        cmd.env("DATABASE_URL", &database_url)
            .env("DATABASE_MAX_CONNECTIONS", pool.to_string())
            .env("REDIS_URL", &redis)
            .env("REDIS_PREFIX", format!("{name}:"))
            .env("WAYFINDER_METRICS_TOKEN", METRICS_TOKEN);
        cmd
    };
    let key = org_key(replica, "Bench");
    let client = reqwest::Client::new();
    let (a, b): (SocketAddr, SocketAddr) = (
        ([127, 0, 0, 1], free_port()).into(),
        ([127, 0, 0, 1], free_port()).into(),
    );
    let server_a = serve(replica(), a, &client).await;
    let server_b = serve(replica(), b, &client).await;
    let url_a = format!("http://{a}/graphql");

    let mut kbs = Vec::with_capacity(KBS);
    for _ in 0..KBS {
        kbs.push(common::knowledge_base(&client, &url_a, &key).await);
    }
    let from = std::net::Ipv4Addr::new(127, 0, 0, 1);
    let (on_a, follow_a) = follow(connect(a, from, json!({ "apiKey": key })).await);
    let (on_b, follow_b) = follow(connect(b, from, json!({ "apiKey": key })).await);
    // Both subscriptions are live once a first change reaches both.
    let warm = Instant::now();
    loop {
        gql(&client, &url_a, Some(&key), "mutation($id: UUID!) { updateKnowledgeBase(input: {id: $id, description: \"warm\"}) { id } }", json!({ "id": kbs[0] })).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (na, nb) = (on_a.lock().unwrap().len(), on_b.lock().unwrap().len());
        if na > 0 && nb > 0 {
            break;
        }
        assert!(
            warm.elapsed() < Duration::from_secs(20),
            "subscriptions never went live"
        );
    }
    on_a.lock().unwrap().clear();
    on_b.lock().unwrap().clear();

    // 1. Changes through A at an open-loop rate.
    let (gaps_a, gaps_b) = (gaps(&client, a).await, gaps(&client, b).await);
    let (cpu_a, cpu_b) = (cpu_secs(server_a.0.id()), cpu_secs(server_b.0.id()));
    let begun = Instant::now();
    let begun_wall = chrono::Utc::now();
    let mut sent = Vec::with_capacity(events);
    for i in 0..events {
        let due = begun + Duration::from_secs_f64(i as f64 / rate as f64);
        tokio::time::sleep_until(due.into()).await;
        let (client, url, key, kb) = (
            client.clone(),
            url_a.clone(),
            key.clone(),
            kbs[i % KBS].clone(),
        );
        sent.push(tokio::spawn(async move {
            let t0 = Instant::now();
            gql(&client, &url, Some(&key), "mutation($id: UUID!, $d: String) { updateKnowledgeBase(input: {id: $id, description: $d}) { id } }", json!({ "id": kb, "d": format!("change {i}") })).await;
            t0.elapsed()
        }));
    }
    let mut answered = Vec::with_capacity(events);
    for s in sent {
        answered.push(s.await.expect("change"));
    }
    let (m50, m99, _) = quantiles(answered);
    let send_secs = begun.elapsed().as_secs_f64();
    // Let B catch up with what A saw.
    let drain = Instant::now();
    while drain.elapsed() < Duration::from_secs(10) {
        let (na, nb) = (on_a.lock().unwrap().len(), on_b.lock().unwrap().len());
        if na >= events && nb >= na {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cpu_a = cpu_secs(server_a.0.id()) - cpu_a;
    let cpu_b = cpu_secs(server_b.0.id()) - cpu_b;
    let gaps_a = gaps(&client, a).await - gaps_a;
    let gaps_b = gaps(&client, b).await - gaps_b;
    follow_a.abort();
    follow_b.abort();
    // Only this run's changes: the relay also republishes, a few seconds
    // late, the events the admin command wrote before the replicas started.
    let this_run = |seen: &Arrivals| {
        let mut seen = seen.lock().unwrap().clone();
        seen.retain(|_, (created, _)| *created >= begun_wall);
        seen
    };
    let (seen_a, seen_b) = (this_run(&on_a), this_run(&on_b));
    let lost = seen_a.keys().filter(|id| !seen_b.contains_key(*id)).count();
    let lags = |seen: &HashMap<_, (chrono::DateTime<chrono::Utc>, Duration)>,
                keep: &dyn Fn(chrono::DateTime<chrono::Utc>) -> bool| {
        seen.values()
            .filter(|(created, _)| keep(*created))
            .map(|(_, lag)| *lag)
            .collect::<Vec<_>>()
    };
    let (a50, a99, amax) = quantiles(lags(&seen_a, &|_| true));
    let (b50, b99, bmax) = quantiles(lags(&seen_b, &|_| true));
    // Second by second: a replica's pools and caches warm up in the first.
    let secs = |n: i64| begun_wall + chrono::Duration::seconds(n);
    let by_second: Vec<(f64, f64, f64)> = (0..send_secs.ceil() as i64)
        .map(|n| quantiles(lags(&seen_b, &|c| c >= secs(n) && c < secs(n + 1))))
        .collect();
    let (r50, r99, _) = quantiles(lags(&seen_b, &|c| c >= secs(1)));

    // 2. `{ __typename }` over HTTP from a fixed number of connections.
    // HTTP_URL: another server to time with the same client (a reference).
    let http_url = std::env::var("HTTP_URL").unwrap_or_else(|_| url_a.clone());
    // One client per worker: one keep-alive connection each (built before the clock starts).
    let clients: Vec<reqwest::Client> = (0..connections)
        .map(|_| {
            reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .expect("client")
        })
        .collect();
    let http_begun = Instant::now();
    let stop = http_begun + Duration::from_secs(seconds as u64);
    let (requests, times) = common::typename_load(clients, &http_url, stop).await;
    let http_secs = http_begun.elapsed().as_secs_f64();
    let (h50, h99, _) = quantiles(times);

    println!(
        "Two replicas on PostgreSQL (pools of {pool}) and Redis; {events} knowledge-base changes through A at {rate}/s (sent in {send_secs:.1} s, {:.0}/s)",
        events as f64 / send_secs
    );
    println!("mutation answered in p50 {m50:.2} ms, p99 {m99:.2} ms");
    println!(
        "server CPU per change: A {:.3} ms, B {:.3} ms; subscriptions that lagged and re-read the store: A {gaps_a}, B {gaps_b}",
        cpu_a * 1e3 / events as f64,
        cpu_b * 1e3 / events as f64
    );
    println!("| socket | events seen | lost | created → socket p50 | p99 | max |");
    println!("|---|---:|---:|---:|---:|---:|");
    println!(
        "| A (where they happen) | {} | {} | {a50:.2} ms | {a99:.2} ms | {amax:.2} ms |",
        seen_a.len(),
        events - seen_a.len().min(events)
    );
    println!(
        "| B (fan-out from A) | {} | {lost} | {b50:.2} ms | {b99:.2} ms | {bmax:.2} ms |",
        seen_b.len()
    );
    let seconds_b: Vec<String> = by_second
        .iter()
        .map(|(p50, p99, max)| format!("{p50:.1}/{p99:.1}/{max:.1}"))
        .collect();
    println!(
        "B by second of creation, p50/p99/max ms: {}; after the first: p50 {r50:.2} ms, p99 {r99:.2} ms",
        seconds_b.join(", ")
    );
    println!("`{{ __typename }}` over HTTP to {http_url}, {connections} connections, {seconds} s");
    println!("| requests | per second | p50 | p99 |");
    println!("|---:|---:|---:|---:|");
    println!(
        "| {requests} | {:.0} | {h50:.2} ms | {h99:.2} ms |",
        requests as f64 / http_secs
    );

    drop(server_a);
    drop(server_b);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = pg
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await;
    assert!(seen_a.len() >= events, "A's dashboard missed events");
    assert_eq!(lost, 0, "events A saw never reached B");
}
