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
    sync::{Arc, Mutex, Weak},
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
    fn subscribe(&self, topic: &str) -> Subscription;
    /// Topics this replica holds a fan-out entry for (to watch that finished
    /// subscriptions are forgotten).
    fn local_topics(&self) -> usize;
}

/// The topic of an org's outbox events.
pub fn org_topic(org_id: uuid::Uuid) -> String {
    format!("org:{org_id}")
}

type Topics = Mutex<HashMap<String, broadcast::Sender<Arc<str>>>>;

/// This replica's local topic → sender map.
///
/// A topic lives exactly as long as it has a subscriber: the last
/// [`Subscription`] of a topic removes its entry (and its buffer) when it is
/// dropped, so followed-and-finished turns leave nothing behind.
#[derive(Default)]
pub struct Fanout {
    topics: Arc<Topics>,
}

impl Fanout {
    /// A subscription to `topic`, creating its sender on first use.
    pub fn subscribe(&self, topic: &str) -> Subscription {
        let mut topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        let rx = topics
            .entry(topic.to_string())
            .or_insert_with(|| broadcast::channel(TOPIC_CAPACITY).0)
            .subscribe();
        Subscription {
            rx: Some(rx),
            topic: topic.to_string(),
            topics: Arc::downgrade(&self.topics),
        }
    }

    /// Delivers to local subscribers, if the topic has any.
    pub fn deliver(&self, topic: &str, message: Arc<str>) {
        let topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(sender) = topics.get(topic) {
            // No receiver left is not an error here: the last one is being dropped.
            let _ = sender.send(message);
        }
    }

    /// How many topics have subscribers on this replica.
    pub fn len(&self) -> usize {
        self.topics.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no topic has a subscriber on this replica.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Messages of one topic for one subscriber; forgets the topic on drop when
/// it was the last one.
pub struct Subscription {
    /// `None` only while dropping.
    rx: Option<broadcast::Receiver<Arc<str>>>,
    topic: String,
    topics: Weak<Topics>,
}

impl Subscription {
    /// The next message; `Lagged` when this subscriber fell behind by more
    /// than the topic's buffer (the caller recovers from the store).
    pub async fn recv(&mut self) -> Result<Arc<str>, broadcast::error::RecvError> {
        match &mut self.rx {
            Some(rx) => rx.recv().await,
            None => Err(broadcast::error::RecvError::Closed),
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let Some(topics) = self.topics.upgrade() else {
            return;
        };
        let mut topics = topics.lock().unwrap_or_else(|p| p.into_inner());
        // Drop our receiver under the lock, so a concurrent subscribe either
        // sees the entry with our receiver gone or creates a fresh one.
        drop(self.rx.take());
        if topics
            .get(&self.topic)
            .is_some_and(|sender| sender.receiver_count() == 0)
        {
            topics.remove(&self.topic);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn topics_are_forgotten_with_their_last_subscriber() {
        let fanout = Fanout::default();
        let mut a = fanout.subscribe("t");
        let b = fanout.subscribe("t");
        let _other = fanout.subscribe("u");
        assert_eq!(fanout.len(), 2);
        fanout.deliver("t", Arc::from("hello"));
        assert_eq!(a.recv().await.ok().as_deref(), Some("hello"));
        drop(b);
        assert_eq!(fanout.len(), 2, "one subscriber of t is left");
        drop(a);
        assert_eq!(fanout.len(), 1, "t has no subscriber any more");
        // Delivering to a forgotten topic creates nothing.
        fanout.deliver("t", Arc::from("late"));
        assert_eq!(fanout.len(), 1);
    }
}
