//! Benchmarks that run the `wayfinder` binary of this build as processes of
//! their own (so RSS and CPU are the server's alone): starting them, the API
//! keys they need, and graphql-ws sockets to them. Not every benchmark uses
//! every helper.
#![allow(dead_code)]

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    process::{Child, Command, Stdio},
    time::Duration,
};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpSocket;
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream, client_async,
    tungstenite::{Message, client::IntoClientRequest},
};

pub const BIN: &str = env!("CARGO_BIN_EXE_wayfinder");

pub type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

pub fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The server's resident memory, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("server status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// CPU seconds (user + system) the server has used.
pub fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("server stat");
    let after = &stat[stat.rfind(')').expect("stat") + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// The server process; killed when dropped.
pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn command(dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env("WAYFINDER_DATA_DIR", dir)
        .env("WAYFINDER_DEMO", "false")
        .env("WAYFINDER_PUBLIC_RATE_LIMIT", "0")
        .env("WAYFINDER_WIDGET_RATE_LIMIT", "0")
        .env("WAYFINDER_API_KEY_RATE_LIMIT", "0")
        .env("LLM_PROVIDER", "none")
        .env("RUST_LOG", "warn");
    cmd
}

pub fn text(v: Value) -> Message {
    Message::text(v.to_string())
}

/// Reads until a protocol message of type `ty` (answering pings).
pub async fn until(ws: &mut Socket, ty: &str) -> Value {
    while let Some(msg) = ws.next().await {
        let Ok(Message::Text(raw)) = msg else {
            continue;
        };
        let m: Value = serde_json::from_str(&raw).expect("server message");
        match m["type"].as_str() {
            Some(t) if t == ty => return m,
            Some("ping") => ws.send(text(json!({"type": "pong"}))).await.expect("pong"),
            Some("error") => panic!("operation refused: {m}"),
            _ => {}
        }
    }
    panic!("socket closed while waiting for {ty}");
}

/// A graphql-ws socket from source address `from`, acknowledged.
pub async fn connect(addr: SocketAddr, from: Ipv4Addr, init: Value) -> Socket {
    let tcp = TcpSocket::new_v4().expect("socket");
    tcp.bind(SocketAddr::new(IpAddr::V4(from), 0))
        .expect("bind");
    let stream = tcp.connect(addr).await.expect("connect");
    let mut req = format!("ws://{addr}/graphql")
        .into_client_request()
        .expect("request");
    req.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().expect("header"),
    );
    let (mut ws, _) = client_async(req, MaybeTlsStream::Plain(stream))
        .await
        .expect("upgrade");
    ws.send(text(json!({"type": "connection_init", "payload": init})))
        .await
        .expect("init");
    until(&mut ws, "connection_ack").await;
    ws
}

/// A new org (PRO plan) created with the binary's CLI in data dir `dir`: its API key.
pub fn org_key(cmd: impl Fn() -> Command, name: &str) -> String {
    let out = cmd()
        .args([
            "org",
            "create",
            "--name",
            name,
            "--plan",
            "PRO",
            "--owner-email",
            "bench@example.com",
            "--json",
        ])
        .output()
        .expect("org create");
    let created: Value = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!(
                "org create --json: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    created["apiKey"].as_str().expect("apiKey").to_string()
}

/// `cmd serve --addr addr`, once `/healthz` answers.
pub async fn serve(mut cmd: Command, addr: SocketAddr, client: &reqwest::Client) -> Server {
    let server = Server(
        cmd.args(["serve", "--addr", &addr.to_string()])
            .stdout(Stdio::null())
            .spawn()
            .expect("serve"),
    );
    for _ in 0..200 {
        if client
            .get(format!("http://{addr}/healthz"))
            .send()
            .await
            .is_ok()
        {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the server at {addr} did not start");
}

/// The value of the sample `name` (no labels) in the `/metrics` of the
/// server at `addr`, read with `token` as the bearer token when one is set.
pub async fn metric(
    client: &reqwest::Client,
    addr: SocketAddr,
    token: Option<&str>,
    name: &str,
) -> Option<f64> {
    let mut req = client.get(format!("http://{addr}/metrics"));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let text = req
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}
