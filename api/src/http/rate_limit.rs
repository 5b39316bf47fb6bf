//! Public request rate limits: a fixed one-minute window per client IP.
//!
//! With Redis configured the counters live there (`INCR` + `EXPIRE`), so the
//! limit holds across replicas; otherwise, and whenever Redis fails, a local
//! counter per replica applies. Requests with an API key are not limited here.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{SystemTime, UNIX_EPOCH},
};

use redis::aio::ConnectionManager;

/// Counts requests per key per minute.
pub struct RateLimiter {
    per_minute: u32,
    redis: Option<(ConnectionManager, String)>,
    /// Local fallback: key → (minute, count). Pruned when it grows.
    local: Mutex<HashMap<String, (u64, u32)>>,
}

impl RateLimiter {
    /// `per_minute` = 0 disables limiting.
    pub fn new(per_minute: u32, redis: Option<(ConnectionManager, String)>) -> Self {
        Self {
            per_minute,
            redis,
            local: Mutex::new(HashMap::new()),
        }
    }

    fn minute() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() / 60)
            .unwrap_or(0)
    }

    fn allow_locally(&self, key: &str, minute: u64) -> bool {
        let mut map = self.local.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 100_000 {
            map.retain(|_, (m, _)| *m == minute);
        }
        let entry = map.entry(key.to_string()).or_insert((minute, 0));
        if entry.0 != minute {
            *entry = (minute, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        entry.1 <= self.per_minute
    }

    /// Whether one more request from `key` fits in this minute.
    pub async fn allow(&self, key: &str) -> bool {
        if self.per_minute == 0 {
            return true;
        }
        let minute = Self::minute();
        if let Some((conn, prefix)) = &self.redis {
            let mut conn = conn.clone();
            let redis_key = format!("{prefix}rl:{key}:{minute}");
            let counted: redis::RedisResult<(u64, ())> = redis::pipe()
                .atomic()
                .incr(&redis_key, 1u64)
                .expire(&redis_key, 120)
                .query_async(&mut conn)
                .await;
            match counted {
                Ok((n, ())) => return n <= u64::from(self.per_minute),
                Err(err) => {
                    tracing::warn!(%err, "rate limit counter unavailable in redis; counting locally")
                }
            }
        }
        self.allow_locally(key, minute)
    }
}
