//! The one policy for every server-side request to a URL a customer chose:
//! webhook deliveries, an org's own (bring-your-own-key) LLM base URL, and
//! later the site crawler.
//!
//! Why it exists: without it, anyone with an API key can make the server
//! request `http://169.254.169.254/latest/meta-data/…` (cloud credentials),
//! `http://127.0.0.1:6379` (the Redis next door) or any host on the private
//! network, and read a piece of the answer back through an error text (SSRF).
//! So, for such URLs:
//!
//! - **Only `http` and `https`.**
//! - **The address is checked when the connection is made**, not only when
//!   the URL is saved: guarded clients resolve names through
//!   [`GuardedResolver`], which drops every loopback, private, link-local,
//!   shared (CGNAT), multicast, broadcast, reserved or cloud-metadata address
//!   ([`classify`]) from what it hands to the connector. A name that resolves
//!   to a public address when the URL is saved and to `127.0.0.1` a minute
//!   later (DNS rebinding) is refused at that later connect. reqwest never
//!   asks the resolver about IP-literal hosts, so [`Policy::check`] classifies
//!   those itself before every request.
//! - **No redirects** (a public URL answering `302 Location:
//!   http://127.0.0.1/` goes nowhere) and **no proxy** (a proxy would resolve
//!   the name itself, after our check).
//! - **Bounded time and size**: every client made here has a timeout, and
//!   [`read_limited`] / [`Fetcher::get`] stop reading at a byte limit.
//! - **An operator allowlist** (`WAYFINDER_OUTBOUND_ALLOW`, `host:port` or
//!   `ip:port`, e.g. `127.0.0.1:11434` for a local Ollama) opens exceptions.
//!   An entry matches the URL's host *as written* and its port (explicit or
//!   the scheme's default): allowing `127.0.0.1:11434` does not allow a name
//!   that happens to resolve to it, and allowing a name trusts whatever it
//!   resolves to.
//!
//! The server's own LLM (`LLM_*` settings) is the operator's choice and does
//! not go through this module.
//!
//! A refusal is a [`Refused`]: [`Policy::check_when_set`] turns it into
//! `BAD_USER_INPUT` when a URL is saved (a name that does not resolve at all
//! is accepted then and fails when used), and users of a URL report it as a
//! visible failure (a webhook delivery's `lastError`, a turn's fallback).

mod address;

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{Arc, Mutex},
    time::Duration,
};

use reqwest::{Client, ClientBuilder, Response, StatusCode, Url, header::HeaderMap};

pub use self::address::{Forbidden, classify};
use crate::{config::Config, error::AppError};

/// How long saving a URL waits for its name to resolve before accepting it
/// unchecked (it is checked again at every connect anyway).
pub const SET_TIME_LOOKUP: Duration = Duration::from_secs(2);

/// Why a URL or connection was refused. Its text is meant for the org that
/// chose the URL: it never carries an address a name resolved to.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("refused: only http:// and https:// URLs are allowed")]
    Scheme,
    #[error("refused: the URL has no host")]
    NoHost,
    #[error("refused: {ip} is {class}; only public addresses are reachable")]
    Literal { ip: IpAddr, class: Forbidden },
    #[error("refused: {host} resolves to {class}; only public addresses are reachable")]
    Resolved { host: String, class: Forbidden },
}

/// The first [`Refused`] in `err`'s chain of causes: how a connect-time
/// refusal by [`GuardedResolver`] is told apart from other transport errors.
pub fn refusal<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refused> {
    let mut cause = Some(err);
    while let Some(e) = cause {
        if let Some(refused) = e.downcast_ref::<Refused>() {
            return Some(refused);
        }
        cause = e.source();
    }
    None
}

/// One `WAYFINDER_OUTBOUND_ALLOW` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Destination {
    host: AllowedHost,
    port: u16,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum AllowedHost {
    Ip(IpAddr),
    /// Lower case, without a trailing dot.
    Name(String),
}

/// How a URL that passed [`Policy::check`] is to be fetched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// On the operator's allowlist: no address check.
    Allowlisted,
    /// Through a client whose resolver refuses forbidden addresses.
    Guarded,
}

/// The operator's exceptions, and the checks made with them. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    allow: Arc<[Destination]>,
}

impl Policy {
    /// The policy of `WAYFINDER_OUTBOUND_ALLOW`. The last list parsed is
    /// remembered, so a malformed entry is logged once, not at every request.
    pub fn from_config(config: &Config) -> Self {
        static LAST: Mutex<Option<(String, Policy)>> = Mutex::new(None);
        let raw = config.outbound_allow.as_deref().unwrap_or_default();
        let Ok(mut last) = LAST.lock() else {
            return Self::parse(Some(raw));
        };
        if let Some((seen, policy)) = last.as_ref()
            && seen == raw
        {
            return policy.clone();
        }
        let policy = Self::parse(Some(raw));
        *last = Some((raw.to_owned(), policy.clone()));
        policy
    }

    /// Parses a comma-separated `host:port` / `ip:port` / `[ipv6]:port`
    /// list; malformed entries are logged and ignored (they allow nothing).
    pub fn parse(list: Option<&str>) -> Self {
        let mut allow = Vec::new();
        for entry in list.unwrap_or_default().split(',').map(str::trim) {
            if entry.is_empty() {
                continue;
            }
            match parse_destination(entry) {
                Some(d) => allow.push(d),
                None => tracing::warn!(
                    entry,
                    "ignoring a WAYFINDER_OUTBOUND_ALLOW entry that is not host:port, ip:port or [ipv6]:port"
                ),
            }
        }
        Self {
            allow: allow.into(),
        }
    }

    /// Whether `url`'s host (as written) and port are on the allowlist.
    pub fn allows(&self, url: &Url) -> bool {
        let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
            return false;
        };
        let ip = literal(host);
        let name = host.trim_end_matches('.');
        self.allow.iter().any(|d| {
            d.port == port
                && match (&d.host, ip) {
                    (AllowedHost::Ip(allowed), Some(ip)) => *allowed == ip,
                    (AllowedHost::Name(allowed), None) => allowed.eq_ignore_ascii_case(name),
                    _ => false,
                }
        })
    }

    /// What can be decided before connecting: the scheme, the allowlist, and
    /// an IP-literal host's address. Call it before every request: the
    /// resolver of a [`Route::Guarded`] client checks names, not literals.
    pub fn check(&self, url: &Url) -> Result<Route, Refused> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Refused::Scheme);
        }
        let host = url.host_str().ok_or(Refused::NoHost)?;
        if self.allows(url) {
            return Ok(Route::Allowlisted);
        }
        if let Some(ip) = literal(host)
            && let Some(class) = classify(ip)
        {
            return Err(Refused::Literal { ip, class });
        }
        Ok(Route::Guarded)
    }

    /// Checks a URL an org is saving (`field` names it in the error): the
    /// literal checks of [`Policy::check`], and, for a name, every address it
    /// resolves to now. A name that does not resolve (or not within
    /// [`SET_TIME_LOOKUP`]) is accepted: it is checked again at every
    /// connect.
    pub async fn check_when_set(&self, field: &str, url: &str) -> Result<(), AppError> {
        let refused = |r: Refused| AppError::bad_input(field, r.to_string());
        let parsed = Url::parse(url.trim())
            .map_err(|_| AppError::bad_input(field, "must be an absolute http(s) URL"))?;
        if self.check(&parsed).map_err(refused)? == Route::Allowlisted {
            return Ok(());
        }
        let Some(host) = parsed.host_str().filter(|h| literal(h).is_none()) else {
            return Ok(());
        };
        let lookup = tokio::net::lookup_host((host, 0));
        match tokio::time::timeout(SET_TIME_LOOKUP, lookup).await {
            Ok(Ok(addrs)) => {
                for addr in addrs {
                    if let Some(class) = classify(addr.ip()) {
                        tracing::info!(host, ip = %addr.ip(), %class, "refusing a URL whose host resolves to a forbidden address");
                        return Err(refused(Refused::Resolved {
                            host: host.to_owned(),
                            class,
                        }));
                    }
                }
                Ok(())
            }
            Ok(Err(err)) => {
                tracing::debug!(host, %err, "URL host does not resolve now; accepted, checked at use");
                Ok(())
            }
            Err(_) => {
                tracing::debug!(host, "URL host lookup timed out; accepted, checked at use");
                Ok(())
            }
        }
    }
}

/// `host` (as `Url::host_str` gives it, IPv6 in brackets) as an address, if it is one.
fn literal(host: &str) -> Option<IpAddr> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse().ok()
}

fn parse_destination(entry: &str) -> Option<Destination> {
    let (host, port) = entry.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    let host = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        AllowedHost::Ip(IpAddr::V6(v6.parse().ok()?))
    } else if let Ok(ip) = host.parse::<Ipv4Addr>() {
        AllowedHost::Ip(IpAddr::V4(ip))
    } else {
        let name = host.trim_end_matches('.').to_ascii_lowercase();
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
        if !valid {
            return None;
        }
        AllowedHost::Name(name)
    };
    Some(Destination { host, port })
}

/// A DNS resolver that hands the connector only the addresses [`classify`]
/// lets through, and fails with [`Refused::Resolved`] when none is left.
/// Because it runs inside every connect, a name cannot pass one check and
/// then resolve somewhere else.
#[derive(Clone, Copy, Debug, Default)]
pub struct GuardedResolver;

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let mut allowed: Vec<SocketAddr> = Vec::new();
            let mut refused = None;
            for addr in tokio::net::lookup_host((host.as_str(), 0)).await? {
                match classify(addr.ip()) {
                    None => allowed.push(addr),
                    Some(class) => {
                        tracing::warn!(host = %host, ip = %addr.ip(), %class, "outbound request: refusing a forbidden address");
                        refused.get_or_insert(class);
                    }
                }
            }
            if allowed.is_empty() {
                let class = refused.unwrap_or(Forbidden::Unspecified);
                return Err(Box::new(Refused::Resolved { host, class }) as _);
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// A client builder for `route`: no redirects, no proxy, and for
/// [`Route::Guarded`] the [`GuardedResolver`]. Add a timeout before building.
pub fn builder(route: Route) -> ClientBuilder {
    let builder = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy();
    match route {
        Route::Allowlisted => builder,
        Route::Guarded => builder.dns_resolver(GuardedResolver),
    }
}

/// Why [`Fetcher::get`] or [`read_limited`] failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(transparent)]
    Refused(#[from] Refused),
    #[error("not an absolute URL")]
    InvalidUrl,
    #[error("timed out")]
    Timeout,
    #[error("the response is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("request failed: {0}")]
    Transport(String),
}

impl From<reqwest::Error> for FetchError {
    fn from(err: reqwest::Error) -> Self {
        if let Some(r) = refusal(&err) {
            return Self::Refused(r.clone());
        }
        if err.is_timeout() {
            return Self::Timeout;
        }
        Self::Transport(err.without_url().to_string())
    }
}

/// A response read to its end (at most the limit asked for).
#[derive(Debug)]
pub struct Fetched {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// The clients for customer-chosen URLs of one purpose (one timeout and user
/// agent): a guarded one and one for allowlisted destinations, each with its
/// own connection pool. Build once and share.
#[derive(Clone, Debug)]
pub struct Fetcher {
    guarded: Client,
    allowlisted: Client,
}

impl Fetcher {
    /// Clients whose every request ends within `timeout`, body included.
    pub fn new(timeout: Duration, user_agent: &str) -> Result<Self, reqwest::Error> {
        let make = |route| {
            builder(route)
                .timeout(timeout)
                .connect_timeout(timeout.min(Duration::from_secs(5)))
                .user_agent(user_agent)
                .build()
        };
        Ok(Self {
            guarded: make(Route::Guarded)?,
            allowlisted: make(Route::Allowlisted)?,
        })
    }

    /// The client to request `url` with, after [`Policy::check`].
    pub fn client_for(&self, policy: &Policy, url: &Url) -> Result<&Client, Refused> {
        Ok(match policy.check(url)? {
            Route::Allowlisted => &self.allowlisted,
            Route::Guarded => &self.guarded,
        })
    }

    /// GETs `url` and reads at most `max_bytes` of its body (the crawler's fetch).
    pub async fn get(
        &self,
        policy: &Policy,
        url: &str,
        max_bytes: usize,
    ) -> Result<Fetched, FetchError> {
        self.get_with(policy, url, max_bytes, HeaderMap::new())
            .await
    }

    /// [`Fetcher::get`] with extra request headers (a staging app's auth
    /// header or cookie, which the caller sends only to the site's own origin).
    pub async fn get_with(
        &self,
        policy: &Policy,
        url: &str,
        max_bytes: usize,
        headers: HeaderMap,
    ) -> Result<Fetched, FetchError> {
        let url = Url::parse(url).map_err(|_| FetchError::InvalidUrl)?;
        let response = self
            .client_for(policy, &url)?
            .get(url)
            .headers(headers)
            .send()
            .await?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = read_limited(response, max_bytes).await?;
        Ok(Fetched {
            status,
            headers,
            body,
        })
    }
}

/// Reads `response`'s body, failing as soon as it is longer than `max_bytes`.
pub async fn read_limited(mut response: Response, max_bytes: usize) -> Result<Vec<u8>, FetchError> {
    let too_large = FetchError::TooLarge { limit: max_bytes };
    if response
        .content_length()
        .is_some_and(|n| n > max_bytes as u64)
    {
        return Err(too_large);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > max_bytes {
            return Err(too_large);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn literal_hosts_are_checked_in_every_spelling() {
        let policy = Policy::default();
        for u in [
            "http://127.0.0.1/",
            "http://127.1:8080/",
            "http://2130706433/",
            "http://0x7f000001/",
            "http://10.0.0.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]:9000/",
            "http://[::ffff:127.0.0.1]/",
            "http://[fd00:ec2::254]/",
            "http://0.0.0.0/",
        ] {
            assert!(
                matches!(policy.check(&url(u)), Err(Refused::Literal { .. })),
                "{u}"
            );
        }
        assert_eq!(policy.check(&url("http://8.8.8.8/")), Ok(Route::Guarded));
        assert_eq!(
            policy.check(&url("https://example.com/hook")),
            Ok(Route::Guarded)
        );
        assert_eq!(
            policy.check(&url("ftp://example.com/")),
            Err(Refused::Scheme)
        );
        assert_eq!(
            policy.check(&url("file:///etc/passwd")),
            Err(Refused::Scheme)
        );
    }

    #[test]
    fn the_allowlist_matches_host_as_written_and_port() {
        let policy = Policy::parse(Some(
            " 127.0.0.1:11434, Ollama.Internal.:8080,[::1]:9000,, nonsense, host:0, a b:1, ::1:80",
        ));
        assert_eq!(policy.allow.len(), 3, "{policy:?}");
        let allowed = |u: &str| policy.check(&url(u));
        assert_eq!(
            allowed("http://127.0.0.1:11434/api"),
            Ok(Route::Allowlisted)
        );
        assert_eq!(
            allowed("http://ollama.internal:8080/"),
            Ok(Route::Allowlisted)
        );
        assert_eq!(
            allowed("http://OLLAMA.internal.:8080/"),
            Ok(Route::Allowlisted)
        );
        assert_eq!(allowed("http://[::1]:9000/"), Ok(Route::Allowlisted));
        // Another port, or the same address through another spelling or a name: not allowed.
        assert!(allowed("http://127.0.0.1:11435/").is_err());
        assert!(allowed("http://127.0.0.1/").is_err());
        assert!(allowed("http://[::ffff:127.0.0.1]:11434/").is_err());
        assert_eq!(allowed("http://localhost:11434/"), Ok(Route::Guarded));
        assert_eq!(allowed("http://ollama.internal:80/"), Ok(Route::Guarded));
        // The default port counts.
        let https = Policy::parse(Some("hooks.internal:443"));
        assert_eq!(
            https.check(&url("https://hooks.internal/x")),
            Ok(Route::Allowlisted)
        );
        assert_eq!(
            https.check(&url("http://hooks.internal/x")),
            Ok(Route::Guarded)
        );
    }

    #[tokio::test]
    async fn saving_refuses_names_that_resolve_to_forbidden_addresses() {
        let policy = Policy::default();
        let err = policy
            .check_when_set("input.url", "http://localhost:8080/hook")
            .await
            .unwrap_err();
        assert_eq!(err.code(), "BAD_USER_INPUT");
        assert!(
            err.to_string()
                .contains("localhost resolves to a loopback address"),
            "{err}"
        );
        assert!(
            !err.to_string().contains("127.0.0.1"),
            "no resolved address shown: {err}"
        );
        // Unresolvable names are accepted now and checked at use.
        policy
            .check_when_set("input.url", "https://wayfinder-test.invalid/hook")
            .await
            .unwrap();
        // An allowlisted name is not looked up.
        Policy::parse(Some("localhost:8080"))
            .check_when_set("input.url", "http://localhost:8080/hook")
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn guarded_clients_refuse_at_connect_and_say_so() {
        // A listener on loopback that must never see a connection.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let fetcher = Fetcher::new(Duration::from_secs(2), "test").unwrap();
        let policy = Policy::default();
        let target = url(&format!("http://localhost:{port}/"));
        let client = fetcher.client_for(&policy, &target).unwrap();
        let err = client.get(target).send().await.unwrap_err();
        assert_eq!(
            refusal(&err),
            Some(&Refused::Resolved {
                host: "localhost".into(),
                class: Forbidden::Loopback
            }),
            "{err:?}"
        );
        let accepted = tokio::time::timeout(Duration::from_millis(100), listener.accept()).await;
        assert!(accepted.is_err(), "nothing connected");

        // The same destination, allowlisted, is reached; the body is bounded.
        let allowed = Policy::parse(Some(&format!("localhost:{port}")));
        let serve = tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = socket.read(&mut buf).await;
            let body = "x".repeat(100);
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            socket.write_all(answer.as_bytes()).await.unwrap();
        });
        let too_large = fetcher
            .get(&allowed, &format!("http://localhost:{port}/"), 10)
            .await;
        assert!(
            matches!(too_large, Err(FetchError::TooLarge { limit: 10 })),
            "{too_large:?}"
        );
        serve.await.unwrap();
    }
}
