#![allow(clippy::expect_used, clippy::unwrap_used)]

//! Sockets under load, against the `wayfinder` binary of this build run as
//! its own process (so its RSS is the server's alone):
//!
//! 1. opens `SOCKETS` graphql-ws sockets (an API key's `connection_init`,
//!    one `orgEvents` subscription each, of another org than the turns'),
//!    `RAMP` at a time, from 200
//!    loopback source addresses (under the per-address socket cap), and
//!    prints the server's RSS per socket and the CPU it spent;
//! 2. while they are held, runs `TURNS` turns without an LLM at an
//!    open-loop `RATE` per second: `startTurn` over HTTP, then `chatTurn` on
//!    a held public socket, timed from `startTurn` sent to `COMPLETED`
//!    received; every turn is checked (no GraphQL `errors`, sequence numbers
//!    1, 2, 3… with no gap, `ANSWERED` with the right article cited, then
//!    `COMPLETED`) and a wrong one fails the bench;
//! 3. closes the sockets and prints the RSS once they are gone.
//!
//! Run: `cargo bench -p wayfinder-api --bench sockets` (a small default:
//! 500 sockets, 50 turns). The README's figures:
//! `ulimit -n 20000; SOCKETS=19000 TURNS=300 RATE=50 cargo bench -p wayfinder-api --bench sockets`
//! (the server needs a descriptor per socket: 20,000 is this machine's hard
//! limit). `DATABASE_URL` and `REDIS_URL` pass through to the server.

mod common;

use std::{
    net::{Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};

use common::{
    gql,
    process::{
        Socket, command, connect, cpu_secs, free_port, metric, ms, org_key, rss_kib, serve,
        setting, text,
    },
};
use futures_util::{SinkExt, StreamExt, stream::FuturesUnordered};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// Visitor sockets the turns' `chatTurn` subscriptions are spread over.
const VISITOR_SOCKETS: usize = 8;

#[tokio::main]
async fn main() {
    let sockets = setting("SOCKETS", 500);
    let ramp = setting("RAMP", 200).max(1);
    let turns = setting("TURNS", 50);
    let rate = setting("RATE", 50).max(1);

    let dir = std::env::temp_dir().join(format!(
        "wayfinder-sockets-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    // Two orgs: the turns run in one; the held sockets follow the other's
    // events (idle widgets and dashboards of other customers), so a turn's
    // outbox event is not fanned out to every held socket.
    let key = org_key(|| command(&dir), "Bench");
    let held_key = org_key(|| command(&dir), "Held");

    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let client = reqwest::Client::new();
    let server = serve(command(&dir), addr, &client).await;
    let pid = server.0.id();
    let url = format!("http://{addr}/graphql");

    // A knowledge base, a bot and its widget for the turns.
    let kb = common::knowledge_base(&client, &url, &key).await;
    let article = gql(&client, &url, Some(&key), r#"mutation($kb: UUID!) { createKbArticle(input: {knowledgeBaseId: $kb, title: "Resetting your password", body: "Open the sign-in page and click Forgot password. The link stays valid for one hour."}) { id } }"#, json!({ "kb": kb })).await["data"]["createKbArticle"]["id"].clone();
    gql(&client, &url, Some(&key), r#"mutation($kb: UUID!) { createKbArticle(input: {knowledgeBaseId: $kb, title: "Downloading invoices", body: "Invoices are under Billing, one PDF per month."}) { id } }"#, json!({ "kb": kb })).await;
    let bot = gql(&client, &url, Some(&key), r#"mutation($kb: UUID!) { createBot(input: {name: "Bench", knowledgeBaseIds: [$kb]}) { id } }"#, json!({ "kb": kb })).await["data"]["createBot"]["id"].clone();
    let widget = gql(
        &client,
        &url,
        Some(&key),
        r#"mutation($b: UUID!) { createChatWidget(input: {botId: $b}) { id } }"#,
        json!({ "b": bot }),
    )
    .await["data"]["createChatWidget"]["id"]
        .clone();

    // 1. Hold the sockets.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = rss_kib(pid);
    let cpu_before = cpu_secs(pid);
    let opened = Instant::now();
    let mut held: Vec<Socket> = Vec::with_capacity(sockets);
    let subscribe = json!({"id": "1", "type": "subscribe", "payload": {"query": "subscription { orgEvents { kind } }"}});
    while held.len() < sockets {
        let batch: FuturesUnordered<_> = (held.len()..sockets.min(held.len() + ramp))
            .map(|i| {
                let (key, subscribe) = (held_key.clone(), subscribe.clone());
                async move {
                    let from =
                        Ipv4Addr::new(127, 0, 1 + (i % 200 / 100) as u8, 1 + (i % 100) as u8);
                    let mut ws = connect(addr, from, json!({ "apiKey": key })).await;
                    ws.send(text(subscribe)).await.expect("subscribe");
                    ws
                }
            })
            .collect();
        held.extend(batch.collect::<Vec<_>>().await);
    }
    let ramp_secs = opened.elapsed().as_secs_f64();
    // Every subscription is running once the server counts them all.
    for _ in 0..100 {
        let subs = metric(&client, addr, None, "wayfinder_subscriptions")
            .await
            .unwrap_or(0.0);
        if subs >= sockets as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_held = rss_kib(pid);
    let cpu_ramp = cpu_secs(pid) - cpu_before;

    // 2. Turns while the sockets are held: open loop, each on its own task.
    // Visitor sockets, each turn's `chatTurn` on one of them in turn (a socket
    // holds at most 32 subscriptions, so a stall cannot fail the bench).
    let waiting: std::sync::Arc<
        std::sync::Mutex<
            std::collections::HashMap<String, tokio::sync::mpsc::UnboundedSender<Value>>,
        >,
    > = Default::default();
    let mut routers = Vec::new();
    let mut writers = Vec::new();
    let mut senders = Vec::new();
    for v in 0..VISITOR_SOCKETS {
        let visitor = connect(addr, Ipv4Addr::new(127, 0, 2, 1 + v as u8), json!({})).await;
        let (mut sink, mut source) = visitor.split();
        let waiting = waiting.clone();
        routers.push(tokio::spawn(async move {
            while let Some(Ok(msg)) = source.next().await {
                let Message::Text(raw) = msg else { continue };
                let m: Value = serde_json::from_str(&raw).expect("server message");
                if let Some(id) = m["id"].as_str()
                    && let Some(tx) = waiting.lock().unwrap().get(id)
                {
                    let _ = tx.send(m);
                }
            }
        }));
        let (sub_tx, mut sub_rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
        writers.push(tokio::spawn(async move {
            while let Some(m) = sub_rx.recv().await {
                sink.send(text(m)).await.expect("send");
            }
        }));
        senders.push(sub_tx);
    }
    let one = |i: usize| {
        let (client, url, widget, article) =
            (client.clone(), url.clone(), widget.clone(), article.clone());
        let (waiting, sub_tx) = (waiting.clone(), senders[i % VISITOR_SOCKETS].clone());
        async move {
            let t0 = Instant::now();
            let began = t0;
            let started = gql(&client, &url, None, "mutation($i: TurnInput!) { startTurn(input: $i) { turnId sessionToken } }", json!({ "i": { "widgetId": widget, "message": format!("how do I reset my password ({i})") } })).await;
            let answered_in = t0.elapsed();
            let s = &started["data"]["startTurn"];
            let id = s["turnId"].as_str().expect("turnId").to_string();
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            waiting.lock().unwrap().insert(id.clone(), tx);
            sub_tx.send(json!({"id": id, "type": "subscribe", "payload": {"query": "subscription($t: UUID!, $s: String) { chatTurn(turnId: $t, sessionToken: $s) { seq status text citations { articleId } } }", "variables": {"t": id, "s": s["sessionToken"]}}})).expect("writer");
            let mut events = Vec::new();
            let elapsed = loop {
                let m = tokio::time::timeout(Duration::from_secs(30), rx.recv())
                    .await
                    .expect("turn within 30 s")
                    .expect("router");
                assert_eq!(m["type"], "next", "turn {id}: {m}");
                assert!(m["payload"].get("errors").is_none(), "turn {id}: {m}");
                let ev = m["payload"]["data"]["chatTurn"].clone();
                let done = ev["status"] == "COMPLETED";
                events.push(ev);
                if done {
                    break t0.elapsed();
                }
            };
            waiting.lock().unwrap().remove(&id);
            // What was timed must be a right answer.
            let seqs: Vec<i64> = events.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
            assert_eq!(
                seqs,
                (1..=seqs.len() as i64).collect::<Vec<_>>(),
                "turn {id}: gap or duplicate"
            );
            let answered = events
                .iter()
                .find(|e| e["status"] == "ANSWERED")
                .unwrap_or_else(|| panic!("turn {id} was not answered: {events:?}"));
            assert!(
                answered["text"]
                    .as_str()
                    .is_some_and(|t| t.contains("Forgot password")),
                "turn {id}: {answered}"
            );
            assert!(
                answered["citations"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|c| c["articleId"] == article)),
                "turn {id} does not cite the password article: {answered}"
            );
            (elapsed, answered_in, began)
        }
    };
    for i in 0..5 {
        one(i).await; // warm up
    }
    let cpu_turns_before = cpu_secs(pid);
    let begun = Instant::now();
    let mut running = Vec::with_capacity(turns);
    for i in 0..turns {
        let due = begun + Duration::from_secs_f64(i as f64 / rate as f64);
        tokio::time::sleep_until(due.into()).await;
        running.push(tokio::spawn(one(i)));
    }
    let mut times = Vec::with_capacity(turns);
    let mut slowest = Vec::with_capacity(turns);
    for (i, r) in running.into_iter().enumerate() {
        let (total, answered_in, began) = r.await.expect("turn");
        times.push(total);
        slowest.push((total, i, answered_in, began.duration_since(begun)));
    }
    slowest.sort_by_key(|s| std::cmp::Reverse(s.0));
    let cpu_turns = cpu_secs(pid) - cpu_turns_before;
    let turn_secs = begun.elapsed().as_secs_f64();
    times.sort();
    for task in writers.iter().chain(&routers) {
        task.abort();
    }

    // 3. Let go of everything.
    for mut ws in held.drain(..) {
        let _ = ws.close(None).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rss_after = rss_kib(pid);

    println!(
        "{sockets} graphql-ws sockets with one orgEvents subscription each, {ramp} at a time; {turns} turns without an LLM at {rate}/s while they are held (server: {})",
        if std::env::var("DATABASE_URL").is_ok() {
            "DATABASE_URL"
        } else {
            "SQLite"
        }
    );
    println!("| RSS before | held | per socket | after close | ramp | CPU (ramp) |");
    println!("|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {:.1} MB | {:.1} MB | {:.2} KB | {:.1} MB | {ramp_secs:.1} s | {cpu_ramp:.1} s |",
        rss_before as f64 / 1024.0,
        rss_held as f64 / 1024.0,
        (rss_held.saturating_sub(rss_before)) as f64 / sockets.max(1) as f64,
        rss_after as f64 / 1024.0,
    );
    println!("| turns | p50 | p99 | max | CPU per turn | checked |");
    println!("|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {turns} in {turn_secs:.1} s | {:.1} ms | {:.1} ms | {:.1} ms | {:.2} ms | {turns}/{turns} right |",
        ms(common::percentile(&times, 0.50)),
        ms(common::percentile(&times, 0.99)),
        ms(common::percentile(&times, 1.0)),
        cpu_turns * 1e3 / turns.max(1) as f64,
    );
    let slow: Vec<String> = slowest
        .iter()
        .take(5)
        .map(|(total, i, answered, at)| {
            format!(
                "#{i} at +{:.2} s: {:.1} ms (startTurn answered in {:.1} ms)",
                at.as_secs_f64(),
                ms(*total),
                ms(*answered)
            )
        })
        .collect();
    println!("slowest turns: {}", slow.join("; "));
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
