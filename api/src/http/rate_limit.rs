//! Rate limits that count work: every operation a request runs (each alias,
//! each batch entry, each websocket `subscribe`, each REST call) takes one
//! unit from the caller's budget, not the request as a whole.
//!
//! Three budgets, each `N per minute` with a burst of `N`:
//! - per client IP, for public callers (no API key), and for every websocket
//!   upgrade and every wrong API key whatever the caller claims to be;
//!   IPv6 clients count per /64, the smallest block one subscriber gets;
//! - per chat widget, for all public visitors of one widget together (checked
//!   by the services once they know the widget);
//! - per API key, for dashboards and integrators.
//!
//! The algorithm is GCRA (the generic cell rate algorithm): one number per
//! key, the "theoretical arrival time" of the next unit. A request of cost
//! `n` fits when pushing that time `n` intervals on stays within the burst
//! window; otherwise it is refused with the seconds until it would fit. With
//! Redis configured the number lives there and one Lua script reads and
//! moves it atomically on Redis's clock, so every replica shares one budget;
//! otherwise (and whenever Redis fails) each replica keeps it in memory.
//!
//! The in-memory store is bounded without scanning: keys hash to shards,
//! each shard keeps two generations of at most [`LOCAL_KEYS_PER_SHARD`]
//! keys, and a full current generation becomes the previous one (dropping
//! the older one outside the lock). An evicted key starts afresh, which only
//! an attacker with more than a hundred thousand distinct addresses a minute
//! could use, and they have that budget anyway.

use std::{
    collections::HashMap,
    hash::{BuildHasher, RandomState},
    net::IpAddr,
    sync::Mutex,
    time::{SystemTime, UNIX_EPOCH},
};

use redis::aio::ConnectionManager;
use uuid::Uuid;

use crate::{config::Config, error::AppError};

/// Keys one in-memory shard holds per generation.
const LOCAL_KEYS_PER_SHARD: usize = 8_192;
/// In-memory shards: enough that two cores never wait on each other long.
const SHARDS: usize = 16;
const MICROS_PER_MINUTE: u64 = 60_000_000;

/// What a budget belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subject {
    /// A client address (public callers, upgrades, wrong keys).
    Ip(IpAddr),
    /// A chat widget (all its public visitors together).
    Widget(Uuid),
    /// An API key (a dashboard or integrator).
    ApiKey(Uuid),
}

/// The budget a subject counts against, as a small copyable key: what the
/// in-memory store hashes (no string is built per request) and what names
/// the Redis key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Bucket {
    V4(std::net::Ipv4Addr),
    /// The /64 prefix of an IPv6 address.
    V6([u16; 4]),
    Widget(Uuid),
    ApiKey(Uuid),
}

impl Subject {
    fn bucket(&self) -> Bucket {
        match self {
            Subject::Ip(IpAddr::V4(ip)) => Bucket::V4(*ip),
            Subject::Ip(IpAddr::V6(ip)) => match ip.to_ipv4_mapped() {
                Some(v4) => Bucket::V4(v4),
                None => {
                    let s = ip.segments();
                    Bucket::V6([s[0], s[1], s[2], s[3]])
                }
            },
            Subject::Widget(id) => Bucket::Widget(*id),
            Subject::ApiKey(id) => Bucket::ApiKey(*id),
        }
    }
}

impl Bucket {
    /// The name in Redis (after the deployment's prefix and `rl:`).
    fn name(&self) -> String {
        match self {
            Bucket::V4(ip) => format!("ip:{ip}"),
            Bucket::V6(s) => format!("ip6:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3]),
            Bucket::Widget(id) => format!("w:{id}"),
            Bucket::ApiKey(id) => format!("k:{id}"),
        }
    }
}

/// Reads and advances one key's theoretical arrival time on Redis's clock.
/// KEYS[1]: the key; ARGV: interval (µs), tolerance (µs), cost.
/// Returns `{1, 0}` when it fits, `{0, µs until it would}` otherwise.
const GCRA_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new = tat + cost * interval
local ahead = new - now
if ahead > tolerance then
  return {0, ahead - tolerance}
end
redis.call('SET', KEYS[1], string.format('%.0f', new), 'PX', math.ceil(ahead / 1000) + 1000)
return {1, 0}
";

/// Every public and per-key budget of this replica (shared through Redis when set).
pub struct RateLimiter {
    per_ip: u32,
    per_widget: u32,
    per_key: u32,
    redis: Option<(ConnectionManager, String, redis::Script)>,
    local: LocalBuckets,
}

impl RateLimiter {
    /// The budgets of `config`; `redis` shares them across replicas.
    pub fn new(config: &Config, redis: Option<(ConnectionManager, String)>) -> Self {
        Self {
            per_ip: config.public_rate_limit,
            per_widget: config.widget_rate_limit,
            per_key: config.api_key_rate_limit,
            redis: redis.map(|(conn, prefix)| (conn, prefix, redis::Script::new(GCRA_SCRIPT))),
            local: LocalBuckets::new(),
        }
    }

    fn per_minute(&self, subject: &Subject) -> u32 {
        match subject {
            Subject::Ip(_) => self.per_ip,
            Subject::Widget(_) => self.per_widget,
            Subject::ApiKey(_) => self.per_key,
        }
    }

    /// Takes `cost` units from `subject`'s budget, or `RATE_LIMITED` with the
    /// seconds until they would fit. A cost of zero always fits.
    pub async fn check(&self, subject: Subject, cost: u32) -> Result<(), AppError> {
        let per_minute = self.per_minute(&subject);
        if per_minute == 0 || cost == 0 {
            return Ok(());
        }
        let interval = (MICROS_PER_MINUTE / u64::from(per_minute)).max(1);
        let tolerance = interval.saturating_mul(u64::from(per_minute));
        let key = subject.bucket();
        let verdict = match &self.redis {
            Some((conn, prefix, script)) => {
                let mut conn = conn.clone();
                let counted: redis::RedisResult<(i64, i64)> = script
                    .key(format!("{prefix}rl:{}", key.name()))
                    .arg(interval)
                    .arg(tolerance)
                    .arg(cost)
                    .invoke_async(&mut conn)
                    .await;
                match counted {
                    Ok((1, _)) => Ok(()),
                    Ok((_, wait)) => Err(u64::try_from(wait).unwrap_or(0)),
                    Err(err) => {
                        tracing::warn!(%err, "rate limit unavailable in redis; counting locally");
                        self.local
                            .take(key, cost, interval, tolerance, now_micros())
                    }
                }
            }
            None => self
                .local
                .take(key, cost, interval, tolerance, now_micros()),
        };
        if verdict.is_err() {
            let subject = match subject {
                Subject::Ip(_) => "ip",
                Subject::Widget(_) => "widget",
                Subject::ApiKey(_) => "api_key",
            };
            crate::metrics::metrics()
                .rate_limited
                .get_or_create(&crate::metrics::SubjectLabels { subject })
                .inc();
        }
        verdict.map_err(|wait_micros| AppError::RateLimited {
            retry_after: wait_micros.div_ceil(1_000_000).max(1),
        })
    }
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Two generations of theoretical arrival times.
#[derive(Default)]
struct Generations {
    current: HashMap<Bucket, u64>,
    previous: HashMap<Bucket, u64>,
}

/// The in-memory budgets: sharded, bounded, no scans.
struct LocalBuckets {
    hasher: RandomState,
    shards: Vec<Mutex<Generations>>,
}

impl LocalBuckets {
    fn new() -> Self {
        Self {
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    /// GCRA on one key: `Err(µs until it fits)` when it does not.
    fn take(
        &self,
        key: Bucket,
        cost: u32,
        interval: u64,
        tolerance: u64,
        now: u64,
    ) -> Result<(), u64> {
        let shard = (self.hasher.hash_one(key) as usize) % SHARDS;
        let retired;
        {
            let mut g = self.shards[shard].lock().unwrap_or_else(|p| p.into_inner());
            let tat = g
                .current
                .get(&key)
                .or_else(|| g.previous.get(&key))
                .copied()
                .unwrap_or(now)
                .max(now);
            let new = tat.saturating_add(interval.saturating_mul(u64::from(cost)));
            let ahead = new - now;
            if ahead > tolerance {
                return Err(ahead - tolerance);
            }
            retired = if g.current.len() >= LOCAL_KEYS_PER_SHARD && !g.current.contains_key(&key) {
                let full = std::mem::take(&mut g.current);
                Some(std::mem::replace(&mut g.previous, full))
            } else {
                None
            };
            g.previous.remove(&key);
            g.current.insert(key, new);
        }
        // The retired generation is freed here, outside the lock.
        drop(retired);
        Ok(())
    }

    #[cfg(test)]
    fn keys(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let g = s.lock().unwrap_or_else(|p| p.into_inner());
                g.current.len() + g.previous.len()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: u64 = MICROS_PER_MINUTE;

    fn k(n: u128) -> Bucket {
        Bucket::Widget(Uuid::from_u128(n))
    }

    #[test]
    fn a_burst_then_the_rate() {
        let b = LocalBuckets::new();
        let (interval, tolerance) = (MINUTE / 6, MINUTE);
        let t0 = 1_000 * MINUTE;
        for _ in 0..6 {
            assert!(b.take(k(1), 1, interval, tolerance, t0).is_ok());
        }
        let wait = b.take(k(1), 1, interval, tolerance, t0).unwrap_err();
        assert_eq!(wait, interval, "one more unit fits one interval later");
        assert!(b.take(k(1), 1, interval, tolerance, t0 + interval).is_ok());
        // Other keys have budgets of their own.
        assert!(b.take(k(2), 6, interval, tolerance, t0).is_ok());
    }

    #[test]
    fn cost_counts_units() {
        let b = LocalBuckets::new();
        let (interval, tolerance) = (MINUTE / 10, MINUTE);
        let t0 = 5 * MINUTE;
        assert!(b.take(k(1), 8, interval, tolerance, t0).is_ok());
        assert!(b.take(k(1), 3, interval, tolerance, t0).is_err());
        assert!(b.take(k(1), 2, interval, tolerance, t0).is_ok());
    }

    #[test]
    fn memory_stays_bounded() {
        let b = LocalBuckets::new();
        for i in 0..(SHARDS * LOCAL_KEYS_PER_SHARD * 3) {
            let _ = b.take(k(i as u128), 1, 1, 10, 100);
        }
        assert!(b.keys() <= SHARDS * LOCAL_KEYS_PER_SHARD * 2);
    }

    #[test]
    fn ipv6_counts_per_64() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap_or(IpAddr::from([0u8; 16]));
        let b: IpAddr = "2001:db8:1:2:ffff::9"
            .parse()
            .unwrap_or(IpAddr::from([0u8; 16]));
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap_or(IpAddr::from([0u8; 16]));
        assert_eq!(Subject::Ip(a).bucket(), Subject::Ip(b).bucket());
        assert_ne!(Subject::Ip(a).bucket(), Subject::Ip(c).bucket());
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap_or(IpAddr::from([0u8; 16]));
        assert_eq!(Subject::Ip(mapped).bucket().name(), "ip:10.1.2.3");
        // Redis keys keep their names.
        assert_eq!(Subject::Ip(a).bucket().name(), "ip6:2001:db8:1:2::/64");
    }
}
