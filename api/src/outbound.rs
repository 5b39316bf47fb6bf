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

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{Arc, Mutex},
    time::Duration,
};

use reqwest::{Client, ClientBuilder, Response, StatusCode, Url, header::HeaderMap};

use crate::{config::Config, error::AppError};

/// How long saving a URL waits for its name to resolve before accepting it
/// unchecked (it is checked again at every connect anyway).
pub const SET_TIME_LOOKUP: Duration = Duration::from_secs(2);

/// Why an address may not be reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forbidden {
    /// `0.0.0.0/8`, `::`: "this host" on most stacks.
    Unspecified,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// RFC 1918, `fc00::/7` (unique local), `fec0::/10` (old site-local), local NAT64.
    Private,
    /// `169.254.0.0/16`, `fe80::/10`.
    LinkLocal,
    /// `100.64.0.0/10`, carrier-grade NAT: often a provider's internal network.
    Shared,
    /// `224.0.0.0/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// Documentation, benchmarking, protocol-assignment and future-use
    /// ranges, Teredo, IPv4-compatible IPv6, and IPv6 outside `2000::/3`.
    Reserved,
    /// A cloud provider's instance metadata or host service (AWS, GCP, Azure,
    /// Alibaba, Oracle), even where the range above would say otherwise.
    CloudMetadata,
}

impl Forbidden {
    /// "a loopback address" and so on.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Unspecified => "an unspecified address",
            Self::Loopback => "a loopback address",
            Self::Private => "a private address",
            Self::LinkLocal => "a link-local address",
            Self::Shared => "a shared (carrier-grade NAT) address",
            Self::Multicast => "a multicast address",
            Self::Broadcast => "a broadcast address",
            Self::Reserved => "a reserved address",
            Self::CloudMetadata => "a cloud metadata address",
        }
    }
}

impl fmt::Display for Forbidden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// Cloud metadata and host-service addresses outside the ranges that are
/// refused anyway (169.254.169.254 is link-local, fd00:ec2::254 unique local;
/// they are listed so the refusal names them for what they are).
const METADATA_V4: [Ipv4Addr; 5] = [
    // AWS, GCP, Azure, OpenStack, Oracle, DigitalOcean…
    Ipv4Addr::new(169, 254, 169, 254),
    // AWS ECS task metadata.
    Ipv4Addr::new(169, 254, 170, 2),
    // Azure WireServer: a public address every Azure VM can reach.
    Ipv4Addr::new(168, 63, 129, 16),
    // Alibaba Cloud.
    Ipv4Addr::new(100, 100, 100, 200),
    // Oracle Cloud (legacy).
    Ipv4Addr::new(192, 0, 0, 192),
];

/// Why `ip` may not be reached, or `None` for an ordinary public address.
pub fn classify(ip: IpAddr) -> Option<Forbidden> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<Forbidden> {
    if METADATA_V4.contains(&ip) {
        return Some(Forbidden::CloudMetadata);
    }
    let n = u32::from(ip);
    let within = |net: [u8; 4], bits: u32| {
        let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
        n & mask == u32::from(Ipv4Addr::from(net)) & mask
    };
    let class = if within([0, 0, 0, 0], 8) {
        Forbidden::Unspecified
    } else if within([127, 0, 0, 0], 8) {
        Forbidden::Loopback
    } else if within([10, 0, 0, 0], 8)
        || within([172, 16, 0, 0], 12)
        || within([192, 168, 0, 0], 16)
    {
        Forbidden::Private
    } else if within([169, 254, 0, 0], 16) {
        Forbidden::LinkLocal
    } else if within([100, 64, 0, 0], 10) {
        Forbidden::Shared
    } else if within([224, 0, 0, 0], 4) {
        Forbidden::Multicast
    } else if n == u32::MAX {
        Forbidden::Broadcast
    } else if within([240, 0, 0, 0], 4)
        || within([192, 0, 0, 0], 24)
        || within([192, 0, 2, 0], 24)
        || within([192, 88, 99, 0], 24)
        || within([198, 18, 0, 0], 15)
        || within([198, 51, 100, 0], 24)
        || within([203, 0, 113, 0], 24)
    {
        Forbidden::Reserved
    } else {
        return None;
    };
    Some(class)
}

fn classify_v6(ip: Ipv6Addr) -> Option<Forbidden> {
    let s = ip.segments();
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    // ::ffff:a.b.c.d reaches a.b.c.d on a dual-stack socket.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    if ip.is_unspecified() {
        return Some(Forbidden::Unspecified);
    }
    if ip.is_loopback() {
        return Some(Forbidden::Loopback);
    }
    // AWS (fd00:ec2::254 and its DNS/NTP neighbours) and GCP (fd20:ce::254).
    if (s[0] == 0xfd00 && s[1] == 0x0ec2) || ip == Ipv6Addr::new(0xfd20, 0xce, 0, 0, 0, 0, 0, 0x254)
    {
        return Some(Forbidden::CloudMetadata);
    }
    // ::a.b.c.d, IPv4-compatible (deprecated): name what it embeds when that is worse.
    if s[..6].iter().all(|&x| x == 0) {
        return Some(classify_v4(embedded(s[6], s[7])).unwrap_or(Forbidden::Reserved));
    }
    // 64:ff9b::/96, NAT64: a gateway translates it to the embedded IPv4 address.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6].iter().all(|&x| x == 0) {
        return classify_v4(embedded(s[6], s[7]));
    }
    // 64:ff9b:1::/48, local-use NAT64.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1 {
        return Some(Forbidden::Private);
    }
    // 2002::/16, 6to4: the relay sends it to the embedded IPv4 address.
    if s[0] == 0x2002 {
        return classify_v4(embedded(s[1], s[2]));
    }
    let class = if s[0] & 0xfe00 == 0xfc00 || s[0] & 0xffc0 == 0xfec0 {
        Forbidden::Private
    } else if s[0] & 0xffc0 == 0xfe80 {
        Forbidden::LinkLocal
    } else if s[0] & 0xff00 == 0xff00 {
        Forbidden::Multicast
    } else if s[0] & 0xe000 != 0x2000
        // 2001::/23: IETF protocol assignments (Teredo, ORCHID, …).
        || (s[0] == 0x2001 && s[1] < 0x0200)
        // 2001:db8::/32 and 3fff::/20: documentation.
        || (s[0] == 0x2001 && s[1] == 0x0db8)
        || s[0] & 0xfff0 == 0x3ff0
    {
        Forbidden::Reserved
    } else {
        return None;
    };
    Some(class)
}

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
        let url = Url::parse(url).map_err(|_| FetchError::InvalidUrl)?;
        let response = self.client_for(policy, &url)?.get(url).send().await?;
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

    fn class(ip: &str) -> Option<Forbidden> {
        classify(ip.parse().unwrap())
    }

    #[test]
    fn classifies_ipv4() {
        use Forbidden::*;
        for (ip, want) in [
            ("0.0.0.0", Some(Unspecified)),
            ("0.1.2.3", Some(Unspecified)),
            ("127.0.0.1", Some(Loopback)),
            ("127.255.255.254", Some(Loopback)),
            ("10.0.0.1", Some(Private)),
            ("172.16.0.1", Some(Private)),
            ("172.31.255.255", Some(Private)),
            ("192.168.1.1", Some(Private)),
            ("169.254.1.1", Some(LinkLocal)),
            ("169.254.169.254", Some(CloudMetadata)),
            ("169.254.170.2", Some(CloudMetadata)),
            ("168.63.129.16", Some(CloudMetadata)),
            ("100.100.100.200", Some(CloudMetadata)),
            ("192.0.0.192", Some(CloudMetadata)),
            ("100.64.0.1", Some(Shared)),
            ("100.127.255.255", Some(Shared)),
            ("224.0.0.1", Some(Multicast)),
            ("239.255.255.250", Some(Multicast)),
            ("255.255.255.255", Some(Broadcast)),
            ("240.0.0.1", Some(Reserved)),
            ("192.0.2.10", Some(Reserved)),
            ("198.18.0.1", Some(Reserved)),
            ("198.51.100.7", Some(Reserved)),
            ("203.0.113.9", Some(Reserved)),
            ("192.0.0.8", Some(Reserved)),
            // Public neighbours of the ranges above.
            ("8.8.8.8", None),
            ("1.1.1.1", None),
            ("172.15.255.255", None),
            ("172.32.0.0", None),
            ("100.63.255.255", None),
            ("100.128.0.0", None),
            ("169.253.255.255", None),
            ("11.0.0.0", None),
            ("223.255.255.255", None),
            ("198.20.0.0", None),
            ("168.63.129.17", None),
        ] {
            assert_eq!(class(ip), want, "{ip}");
        }
    }

    #[test]
    fn classifies_ipv6_and_embedded_ipv4() {
        use Forbidden::*;
        for (ip, want) in [
            ("::", Some(Unspecified)),
            ("::1", Some(Loopback)),
            ("::ffff:127.0.0.1", Some(Loopback)),
            ("::ffff:10.0.0.1", Some(Private)),
            ("::ffff:169.254.169.254", Some(CloudMetadata)),
            ("::ffff:8.8.8.8", None),
            ("::127.0.0.1", Some(Loopback)),
            ("::8.8.8.8", Some(Reserved)),
            ("64:ff9b::127.0.0.1", Some(Loopback)),
            ("64:ff9b::a9fe:a9fe", Some(CloudMetadata)),
            ("64:ff9b::8.8.8.8", None),
            ("64:ff9b:1::1", Some(Private)),
            ("2002:7f00:1::", Some(Loopback)),
            ("2002:0a00:0001::1", Some(Private)),
            ("2002:0808:0808::1", None),
            ("fc00::1", Some(Private)),
            ("fd12:3456::1", Some(Private)),
            ("fd00:ec2::254", Some(CloudMetadata)),
            ("fd00:ec2::253", Some(CloudMetadata)),
            ("fd20:ce::254", Some(CloudMetadata)),
            ("fec0::1", Some(Private)),
            ("fe80::1", Some(LinkLocal)),
            ("febf::1", Some(LinkLocal)),
            ("ff02::1", Some(Multicast)),
            ("2001:db8::1", Some(Reserved)),
            ("2001::1", Some(Reserved)),
            ("3fff::1", Some(Reserved)),
            ("100::1", Some(Reserved)),
            ("4000::1", Some(Reserved)),
            ("2606:4700:4700::1111", None),
            ("2a00:1450:4001::200e", None),
            ("2001:4860:4860::8888", None),
        ] {
            assert_eq!(class(ip), want, "{ip}");
        }
    }

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
