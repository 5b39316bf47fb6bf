//! At most `WAYFINDER_WS_MAX_SOCKETS_PER_IP` graphql-ws sockets open at once
//! from one client address (an IPv6 client by its /64, as the rate limiter
//! counts it), so one host cannot hold a replica's file descriptors and
//! memory: the upgrade over the cap is refused with 429 `TOO_MANY_SOCKETS`
//! before any socket exists.
//!
//! Counted per replica (a socket lives on one replica; behind a load
//! balancer a host spread over `n` replicas may hold `n` times the cap). The
//! rate limit on upgrades bounds how fast sockets open; this bounds how many
//! stay open. The default leaves room for an office of visitors behind one
//! NAT address, each with a few tabs.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
};

use crate::error::AppError;

/// The open sockets of each client address on this replica.
#[derive(Default)]
pub struct SocketsPerIp {
    /// Most sockets per address; 0 for no cap.
    max: usize,
    /// A std mutex: held for one map operation, never across an await. Only
    /// addresses with an open socket have an entry, so the map is bounded by
    /// the open sockets.
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One open socket's place in its address's count; frees it when dropped.
pub struct SocketPermit {
    ip: IpAddr,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// The address sockets are counted by: an IPv4 address (also when mapped
/// into IPv6), or an IPv6 address's /64 (one host's share of a network).
fn counted(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

impl SocketsPerIp {
    /// A counter allowing `max` sockets per address (0: no cap).
    pub fn new(max: usize) -> Self {
        Self {
            max,
            open: Arc::default(),
        }
    }

    /// A place for one more socket from `ip`, or `TOO_MANY_SOCKETS`.
    pub fn acquire(&self, ip: IpAddr) -> Result<SocketPermit, AppError> {
        let ip = counted(ip);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(ip).or_insert(0);
        if self.max > 0 && *count >= self.max {
            if *count == 0 {
                open.remove(&ip);
            }
            crate::metrics::metrics().socket_refusals.inc();
            return Err(AppError::TooManySockets { max: self.max });
        }
        *count += 1;
        Ok(SocketPermit {
            ip,
            open: self.open.clone(),
        })
    }

    /// Sockets open from `ip` right now.
    pub fn open_from(&self, ip: IpAddr) -> usize {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.get(&counted(ip)).copied().unwrap_or(0)
    }
}

impl Drop for SocketPermit {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_address_and_frees_on_drop() {
        let sockets = SocketsPerIp::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let b: IpAddr = "10.0.0.2".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let first = sockets.acquire(a);
        let second = sockets.acquire(a);
        assert!(first.is_ok() && second.is_ok());
        assert!(matches!(
            sockets.acquire(a),
            Err(AppError::TooManySockets { max: 2 })
        ));
        assert!(
            sockets.acquire(b).is_ok(),
            "another address has its own cap"
        );
        drop(first);
        assert_eq!(sockets.open_from(a), 1);
        assert!(
            sockets.acquire(a).is_ok(),
            "a closed socket frees its place"
        );
    }

    #[test]
    fn an_ipv6_host_is_counted_by_its_64() {
        let sockets = SocketsPerIp::new(1);
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap_or(IpAddr::from([0u16; 8]));
        let other: IpAddr = "2001:db8:1:2::ffff"
            .parse()
            .unwrap_or(IpAddr::from([0u16; 8]));
        let _held = sockets.acquire(one);
        assert!(sockets.acquire(other).is_err());
    }

    #[test]
    fn zero_means_no_cap() {
        let sockets = SocketsPerIp::new(0);
        let ip = IpAddr::from([127, 0, 0, 1]);
        let held: Vec<_> = (0..1000).map(|_| sockets.acquire(ip)).collect();
        assert!(held.iter().all(Result::is_ok));
    }
}
