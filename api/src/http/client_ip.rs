//! Who is at the other end, for rate limits.
//!
//! Without proxies (`WAYFINDER_TRUSTED_PROXIES=0`, the default) the client is
//! the TCP peer, and `X-Forwarded-For` is ignored: anyone can send one. Behind
//! `n` trusted proxies, each proxy appends the address it received the
//! request from, so the client is the `n`-th entry from the right; entries
//! left of it were written by the client itself and are never trusted. A
//! header with fewer entries than proxies (a request that skipped one) or an
//! entry that is not an address falls back to the TCP peer, so a forged
//! header can never choose another client's budget.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::{
    extract::ConnectInfo,
    http::{Extensions, HeaderMap},
};

/// The TCP peer of a request, from axum's `ConnectInfo`.
pub fn peer(extensions: &Extensions) -> IpAddr {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// The client's address for a request from TCP peer `peer` that carried
/// `headers`, behind `trusted_proxies` proxies.
pub fn client_ip(headers: &HeaderMap, peer: IpAddr, trusted_proxies: usize) -> IpAddr {
    if trusted_proxies == 0 {
        return peer;
    }
    forwarded_for(headers, trusted_proxies).unwrap_or(peer)
}

/// The `n`-th `X-Forwarded-For` entry from the right, over every header line.
fn forwarded_for(headers: &HeaderMap, n: usize) -> Option<IpAddr> {
    let mut entries: Vec<&str> = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        // A line that is not text is a forged line: trust none of it.
        let value = value.to_str().ok()?;
        entries.extend(value.split(',').map(str::trim));
        if entries.len() > 64 {
            // Far more hops than any real chain: keep only what the proxies wrote.
            entries.drain(..entries.len() - 64);
        }
    }
    let entry = entries.len().checked_sub(n).map(|i| entries[i])?;
    parse_entry(entry)
}

/// An address, with or without a port (`1.2.3.4:5678`, `[2001:db8::1]:80`).
fn parse_entry(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(xff: &[&str]) -> (HeaderMap, IpAddr) {
        let mut headers = HeaderMap::new();
        for v in xff {
            headers.append(
                "x-forwarded-for",
                v.parse()
                    .unwrap_or(axum::http::HeaderValue::from_static("")),
            );
        }
        let mut ext = Extensions::new();
        ext.insert(ConnectInfo(SocketAddr::from(([10, 0, 0, 1], 4000))));
        (headers, peer(&ext))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::V4(Ipv4Addr::BROADCAST))
    }

    #[test]
    fn no_proxies_means_the_peer() {
        let (h, e) = request(&["1.1.1.1"]);
        assert_eq!(client_ip(&h, e, 0), ip("10.0.0.1"));
    }

    #[test]
    fn trusted_hops_from_the_right() {
        let (h, e) = request(&["6.6.6.6, 2.2.2.2", "3.3.3.3"]);
        assert_eq!(client_ip(&h, e, 1), ip("3.3.3.3"));
        assert_eq!(client_ip(&h, e, 2), ip("2.2.2.2"));
        // Fewer entries than proxies: the peer, never a client-written entry.
        assert_eq!(client_ip(&h, e, 4), ip("10.0.0.1"));
        let (h, e) = request(&["[2001:db8::7]:443, 5.5.5.5:80"]);
        assert_eq!(client_ip(&h, e, 1), ip("5.5.5.5"));
        assert_eq!(client_ip(&h, e, 2), ip("2001:db8::7"));
    }

    #[test]
    fn garbage_falls_back_to_the_peer() {
        let (h, e) = request(&["not-an-ip"]);
        assert_eq!(client_ip(&h, e, 1), ip("10.0.0.1"));
        let (h, e) = request(&[]);
        assert_eq!(client_ip(&h, e, 1), ip("10.0.0.1"));
    }
}
