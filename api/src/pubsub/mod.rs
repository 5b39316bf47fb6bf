//! One bus for live updates: turn events, session events, org outbox events.
//!
//! Every replica keeps a local fan-out: one `broadcast` sender per topic,
//! which its subscribers read. Publishing goes through the [`Bus`]: in-process
//! it feeds the local fan-out directly; with Redis it goes to Redis, and one
//! pattern subscription per replica feeds every replica's local fan-out (the
//! publisher's included), not one Redis connection per client.
//!
//! Delivery is best-effort by design: everything published is persisted first,
//! and subscribers replay from the database, so a dropped message is never a
//! lost one.

mod memory;
mod redis;

pub use memory::MemoryBus;
pub use redis::{RedisBus, ping as redis_ping};

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use tokio::sync::broadcast;

/// Messages buffered per topic for a slow subscriber before it lags. A turn
/// emits a few dozen events; 256 covers a burst without unbounded memory.
const TOPIC_CAPACITY: usize = 256;

/// Publish and subscribe by topic name.
pub trait Bus: Send + Sync + 'static {
    /// Sends `message` to every subscriber of `topic` on every replica. Never blocks, never fails the caller.
    fn publish(&self, topic: &str, message: String);
    /// Messages published to `topic` from now on.
    fn subscribe(&self, topic: &str) -> broadcast::Receiver<Arc<str>>;
}

/// The topic of an org's outbox events.
pub fn org_topic(org_id: uuid::Uuid) -> String {
    format!("org:{org_id}")
}

/// This replica's local topic → sender map.
#[derive(Default)]
pub struct Fanout {
    topics: Mutex<HashMap<String, broadcast::Sender<Arc<str>>>>,
}

impl Fanout {
    /// A receiver for `topic`, creating its sender on first use.
    pub fn subscribe(&self, topic: &str) -> broadcast::Receiver<Arc<str>> {
        let mut topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        topics
            .entry(topic.to_string())
            .or_insert_with(|| broadcast::channel(TOPIC_CAPACITY).0)
            .subscribe()
    }

    /// Delivers to local subscribers; forgets topics nobody listens to any more.
    pub fn deliver(&self, topic: &str, message: Arc<str>) {
        let mut topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(sender) = topics.get(topic)
            && sender.send(message).is_err()
        {
            topics.remove(topic);
        }
    }
}
