//! What each layer on the HTTP request path costs: `{ __typename }` requests
//! per second through the real router with every layer, with each layer
//! turned off in turn, with none, and two floors (a bare axum route that
//! answers the same bytes, and the GraphQL engine alone, without HTTP).
//!
//! The server runs in this process on its own 2-thread runtime (as the
//! binary's), over a fresh SQLite database; the client is `CONNECTIONS`
//! keep-alive connections on a 1-thread runtime of its own, so on a 2-core
//! machine they share the cores as a server and `wrk -t1` would. Figures are
//! comparable with each other, not with wrk's (reqwest is a heavier client).
//! Every answer is checked: status 200 and exactly
//! `{"data":{"__typename":"Query"}}`.
//!
//! `cargo bench -p wayfinder-api --bench http_layers` (`SECONDS` per variant, 5)

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use wayfinder::{
    config::Config,
    http::{Layers, router_with},
    state::AppState,
};

/// Turns one layer off.
type TurnOff = fn(&mut Layers);

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Serves `router` on a loopback port from a 2-thread runtime of its own;
/// returns the address and the runtime (dropping it stops the server).
fn serve(router: axum::Router) -> (SocketAddr, tokio::runtime::Runtime) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move {
        use axum::serve::ListenerExt;
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let app = router.into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(listener, app).await.unwrap();
    });
    (addr, rt)
}

/// Requests per second from `connections` clients for `seconds`, every answer checked.
fn load(client_rt: &tokio::runtime::Runtime, url: &str, connections: usize, seconds: u64) -> f64 {
    client_rt.block_on(async {
        let clients: Vec<reqwest::Client> = (0..connections)
            .map(|_| {
                reqwest::Client::builder()
                    .pool_max_idle_per_host(1)
                    .build()
                    .unwrap()
            })
            .collect();
        // Connections open before the clock starts.
        for c in &clients {
            let r = c
                .post(url)
                .header("content-type", "application/json")
                .body(r#"{"query":"{ __typename }"}"#)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
        let begun = Instant::now();
        let (requests, _) =
            common::typename_load(clients, url, begun + Duration::from_secs(seconds)).await;
        requests as f64 / begun.elapsed().as_secs_f64()
    })
}

fn main() {
    let connections = setting("CONNECTIONS", 32).max(1);
    let seconds = setting("SECONDS", 5).max(1) as u64;
    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("wayfinder-bench-layers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    // One state per rate-limit setting (0 = the per-address limiter is off).
    let state = |public_rate_limit: u32| -> AppState {
        let mut config = Config::defaults();
        config.database_url = Some(format!(
            "sqlite://{}?mode=rwc",
            dir.join(format!("db-{public_rate_limit}.sqlite")).display()
        ));
        config.data_dir = dir.clone();
        config.secret = Some("bench-secret-bench-secret-bench-secret-01".into());
        config.demo = false;
        config.embedding_provider = None;
        config.embedding_model_dir = None;
        config.public_rate_limit = public_rate_limit;
        client_rt
            .block_on(wayfinder::startup::build_state(config))
            .unwrap()
    };
    // A limit no bench reaches: the limiter is consulted on every request, never refuses.
    let limited = state(u32::MAX / 2);
    let unlimited = state(0);

    let mut variants = vec![("every layer (as served)".to_string(), Layers::ALL, &limited)];
    let toggles: [(&str, TurnOff); 6] = [
        ("catch-panic", |l| l.catch_panic = false),
        ("body limits", |l| l.body_limit = false),
        ("CORS", |l| l.cors = false),
        ("the timeout", |l| l.timeout = false),
        ("request ids", |l| l.request_id = false),
        ("the trace span", |l| l.trace = false),
    ];
    for (name, off) in toggles {
        let mut layers = Layers::ALL;
        off(&mut layers);
        variants.push((format!("without {name}"), layers, &limited));
    }
    variants.push((
        "without the per-address rate limiter".into(),
        Layers::ALL,
        &unlimited,
    ));
    variants.push(("no layer, no rate limiter".into(), Layers::NONE, &unlimited));

    println!(
        "`{{ __typename }}` over HTTP, {connections} connections, {seconds} s per variant (in-process reqwest client)"
    );
    println!("| request path | requests/s | vs every layer |");
    println!("|---|---:|---:|");
    let time = |router: axum::Router| {
        let (addr, rt) = serve(router);
        let rps = load(
            &client_rt,
            &format!("http://{addr}/graphql"),
            connections,
            seconds,
        );
        drop(rt);
        rps
    };
    let mut base = 0.0;
    let mut row = |name: &str, rps: f64| {
        if base == 0.0 {
            base = rps;
        }
        println!(
            "| {name} | {rps:.0} | {:+.1} % |",
            (rps / base - 1.0) * 100.0
        );
    };
    for (name, layers, st) in variants {
        row(&name, time(router_with(st.clone(), layers)));
    }
    // Floor 1: a bare axum route answering the same bytes (HTTP and the client alone).
    let bare = axum::Router::new().route(
        "/graphql",
        axum::routing::post(|| async {
            (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                r#"{"data":{"__typename":"Query"}}"#,
            )
        }),
    );
    row("floor: a bare axum route, same answer", time(bare));

    // Floor 2: the GraphQL engine alone, one thread, no HTTP.
    let schema = limited.schema.clone();
    let (n, begun) = (200_000u32, Instant::now());
    client_rt.block_on(async {
        for _ in 0..n {
            let r = schema.execute("{ __typename }").await;
            assert!(r.errors.is_empty(), "{:?}", r.errors);
        }
    });
    let per = begun.elapsed().as_secs_f64() / f64::from(n);
    println!(
        "GraphQL engine alone (parse, validate, execute `{{ __typename }}`, one thread): {:.1} µs per request, {:.0}/s",
        per * 1e6,
        1.0 / per
    );
    let _ = std::fs::remove_dir_all(&dir);
}
