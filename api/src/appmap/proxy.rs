//! The loopback HTTP proxy a rendering Chromium sends every request through,
//! so rendered pages obey the outbound guard ([`crate::outbound`]) exactly as
//! the static crawler does.
//!
//! Why a proxy and not request interception in the browser: Chromium would
//! resolve names itself, so a page could name a host that resolves to a
//! public address when checked and to `127.0.0.1` when connected (DNS
//! rebinding), or load `http://169.254.169.254/` from a script. Behind this
//! proxy Chromium resolves nothing: each connection names its host, the
//! proxy checks it with [`Policy::check`], resolves it itself, drops every
//! forbidden address ([`classify`]) and connects to one that is left. The
//! connection is then spliced byte for byte: `CONNECT` tunnels (https, wss)
//! as they are, plain-http requests with their request line rewritten to
//! origin form and `Connection: close`, so one client connection never
//! carries a second request to another host.
//!
//! Bounded: the request head (16 KiB), the time to connect (5 s) and a whole
//! connection's life, and the bytes of all connections together (the
//! crawl's byte budget: past it connections are cut). Only this machine can
//! reach it (it binds 127.0.0.1, port 0), and it refuses what the guard
//! refuses anyway, so reaching it gains a local process nothing.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use reqwest::Url;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use crate::outbound::{Policy, Route, classify};

/// Longest request head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Time to connect to the destination.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest one proxied connection lives.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// Connections served at once (Chromium opens six per host at most).
const MAX_CONNECTIONS: usize = 64;

/// A running proxy; dropping it stops accepting and cuts its connections.
pub struct GuardProxy {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
    counters: Arc<Counters>,
}

/// What the proxy has done, for logs and tests.
#[derive(Debug, Default)]
pub struct Counters {
    /// Bytes spliced in both directions.
    pub bytes: AtomicUsize,
    /// Connections refused by the guard.
    pub refused: AtomicUsize,
}

impl Drop for GuardProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl GuardProxy {
    /// Starts a proxy on 127.0.0.1 (a free port) applying `policy`, cutting
    /// connections once `max_bytes` went through it in all.
    pub async fn start(policy: Policy, max_bytes: usize) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let counters = Arc::new(Counters::default());
        let shared = counters.clone();
        let task = tokio::spawn(async move {
            let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let (policy, counters) = (policy.clone(), shared.clone());
                connections.spawn(async move {
                    let _permit = permit;
                    let _ = tokio::time::timeout(
                        CONNECTION_LIFETIME,
                        serve(socket, &policy, &counters, max_bytes),
                    )
                    .await;
                });
                // Reap finished connections so the set stays small.
                while connections.try_join_next().is_some() {}
            }
        });
        Ok(Self {
            addr,
            task,
            counters,
        })
    }

    /// Where Chromium is to send its requests (`--proxy-server=http://…`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What it has done so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }
}

/// Reads the request head (up to the blank line); returns it and what came after.
async fn read_head(socket: &mut TcpStream) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut buf = Vec::with_capacity(2048);
    let mut chunk = [0u8; 4096];
    loop {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return Some((buf, rest));
        }
        if buf.len() > MAX_HEAD {
            return None;
        }
    }
}

async fn refuse(socket: &mut TcpStream, status: &str) {
    let _ = socket
        .write_all(
            format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await;
}

/// Connects to `host:port` if the guard allows it: the allowlist as
/// written, else only addresses [`classify`] lets through.
async fn connect(policy: &Policy, url: &Url) -> Result<TcpStream, String> {
    let route = policy.check(url).map_err(|r| r.to_string())?;
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
        return Err("no host".into());
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::lookup_host((bare, port)))
        .await
        .map_err(|_| "lookup timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let mut refused = None;
    for addr in addrs {
        if route == Route::Guarded
            && let Some(class) = classify(addr.ip())
        {
            refused.get_or_insert(class);
            continue;
        }
        if let Ok(Ok(stream)) =
            tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await
        {
            let _ = stream.set_nodelay(true);
            return Ok(stream);
        }
    }
    Err(match refused {
        Some(class) => format!("refused: {host} resolves to {class}"),
        None => format!("could not connect to {host}"),
    })
}

async fn serve(mut client: TcpStream, policy: &Policy, counters: &Counters, max_bytes: usize) {
    let Some((head, rest)) = read_head(&mut client).await else {
        return;
    };
    let text = String::from_utf8_lossy(&head);
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(_version)) = (parts.next(), parts.next(), parts.next())
    else {
        return refuse(&mut client, "400 Bad Request").await;
    };
    let tunnel = method.eq_ignore_ascii_case("CONNECT");
    let url = if tunnel {
        Url::parse(&format!("https://{target}/"))
    } else {
        Url::parse(target)
    };
    let Ok(url) = url else {
        return refuse(&mut client, "400 Bad Request").await;
    };
    if !tunnel && url.scheme() != "http" {
        return refuse(&mut client, "400 Bad Request").await;
    }
    let mut upstream = match connect(policy, &url).await {
        Ok(s) => s,
        Err(why) => {
            counters.refused.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                host = url.host_str().unwrap_or(""),
                why,
                "rendering: request refused"
            );
            return refuse(&mut client, "403 Forbidden").await;
        }
    };
    if tunnel {
        if client
            .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            .await
            .is_err()
        {
            return;
        }
    } else {
        // Origin form, and one request per connection.
        let path = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        let mut out = format!("{method} {path} HTTP/1.1\r\n");
        for line in lines.filter(|l| !l.is_empty()) {
            let name = line.split(':').next().unwrap_or("").trim();
            if [
                "connection",
                "proxy-connection",
                "keep-alive",
                "proxy-authorization",
            ]
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h))
            {
                continue;
            }
            out.push_str(line);
            out.push_str("\r\n");
        }
        out.push_str("connection: close\r\n\r\n");
        if upstream.write_all(out.as_bytes()).await.is_err() {
            return;
        }
    }
    if !rest.is_empty() && upstream.write_all(&rest).await.is_err() {
        return;
    }
    let (mut cr, mut cw) = client.split();
    let (mut ur, mut uw) = upstream.split();
    tokio::select! {
        () = pump(&mut cr, &mut uw, counters, max_bytes) => {}
        () = pump(&mut ur, &mut cw, counters, max_bytes) => {}
    }
}

/// Copies `from` to `to` until either ends or the shared budget is spent.
async fn pump<R, W>(from: &mut R, to: &mut W, counters: &Counters, max_bytes: usize)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if counters.bytes.fetch_add(n, Ordering::Relaxed) + n > max_bytes {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn through(proxy: &GuardProxy, request: &str) -> String {
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out)).await;
        out
    }

    #[tokio::test]
    async fn forbidden_destinations_are_refused_and_allowed_ones_spliced() {
        let target = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = target.local_addr().unwrap().port();
        let proxy = GuardProxy::start(Policy::default(), 1 << 20).await.unwrap();
        for req in [
            format!("GET http://127.0.0.1:{port}/ HTTP/1.1\r\nhost: x\r\n\r\n"),
            format!("GET http://localhost:{port}/ HTTP/1.1\r\nhost: x\r\n\r\n"),
            format!("CONNECT localhost:{port} HTTP/1.1\r\nhost: x\r\n\r\n"),
            format!("CONNECT [::ffff:127.0.0.1]:{port} HTTP/1.1\r\n\r\n"),
            "GET http://169.254.169.254/latest/meta-data/ HTTP/1.1\r\n\r\n".to_string(),
            "GET ftp://example.com/ HTTP/1.1\r\n\r\n".to_string(),
        ] {
            let answer = through(&proxy, &req).await;
            assert!(
                answer.starts_with("HTTP/1.1 403") || answer.starts_with("HTTP/1.1 400"),
                "{req}: {answer}"
            );
        }
        let nothing = tokio::time::timeout(Duration::from_millis(100), target.accept()).await;
        assert!(nothing.is_err(), "nothing reached the loopback listener");

        // Allowlisted: the request arrives in origin form with connection: close.
        let allowed = GuardProxy::start(Policy::parse(Some(&format!("127.0.0.1:{port}"))), 1 << 20)
            .await
            .unwrap();
        let serve = tokio::spawn(async move {
            let (mut s, _) = target.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let n = s.read(&mut buf).await.unwrap();
            let head = String::from_utf8_lossy(&buf[..n]).into_owned();
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await
                .unwrap();
            head
        });
        let answer = through(
            &allowed,
            &format!(
                "GET http://127.0.0.1:{port}/a?b=1 HTTP/1.1\r\nhost: 127.0.0.1\r\nproxy-connection: keep-alive\r\n\r\n"
            ),
        )
        .await;
        assert!(answer.ends_with("ok"), "{answer}");
        let head = serve.await.unwrap();
        assert!(head.starts_with("GET /a?b=1 HTTP/1.1\r\n"), "{head}");
        assert!(head.contains("connection: close"), "{head}");
        assert!(
            !head.to_ascii_lowercase().contains("proxy-connection"),
            "{head}"
        );
    }
}
