//! One bus for live updates: turn events, session events, org outbox events.
//!
//! Every replica keeps a local fan-out: one `broadcast` sender per topic,
//! which its subscribers read. Publishing goes through the [`Bus`]: in-process
//! it feeds the local fan-out directly; with Redis it goes to Redis, and one
//! pub/sub connection per replica, subscribed to exactly the topics this
//! replica's clients follow, feeds the local fan-out (the publisher's
//! included), not one Redis connection per client. The fan-out tells the bus
//! when a topic gets its first subscriber and loses its last one
//! ([`Interest`]), which is what keeps the Redis subscriptions in step.
//!
//! Delivery is best-effort by design: everything published is persisted first,
//! and subscribers replay from the database. A subscriber learns that it may
//! have missed something ([`Delivery::Gap`]: it lagged, or the bus lost its
//! connection and came back) and re-reads the store, so a dropped message is
//! never a lost one.
//!
//! The bus also keeps short-lived values by key ([`Bus::stash`]): what a
//! running turn has published but not stored yet (its held answer chunks),
//! so a subscriber on any replica that missed them live can read them
//! without the turn writing them to the database mid-stream. Each replica
//! keeps its own stashes in memory too, so a reader on the same replica (and
//! every reader of the embedded default) needs no network.

mod memory;
mod redis;

pub use memory::MemoryBus;
pub use redis::{RedisBus, ping as redis_ping};

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::sync::{broadcast, mpsc, watch};

/// Messages buffered per topic for a slow subscriber before it lags. The
/// buffer (~48 bytes a slot) is allocated when the topic's first subscriber
/// arrives, so it is paid per followed topic, i.e. per live widget socket:
/// 32 slots are 1.5 KB. Subscribers are socket tasks that forward each
/// message at once, so a turn's burst (its chunks arrive one network read at
/// a time) rarely gets 32 ahead; one that does re-reads the store (a gap),
/// which costs a query, not an event.
const TOPIC_CAPACITY: usize = 32;

/// Publish and subscribe by topic name.
pub trait Bus: Send + Sync + 'static {
    /// Sends `message` to every subscriber of `topic` on every replica. Never blocks, never fails the caller.
    fn publish(&self, topic: &str, message: String);
    /// Messages published to `topic` from now on.
    fn subscribe(&self, topic: &str) -> Subscription;
    /// Topics this replica holds a fan-out entry for (to watch that finished
    /// subscriptions are forgotten).
    fn local_topics(&self) -> usize;
    /// Whether messages from other replicas reach this one right now (always
    /// true in-process; with Redis, while its subscription connection is up).
    fn connected(&self) -> bool;
    /// Keeps `value` under `key` for every replica for about `ttl` (replacing
    /// what was there). Never blocks, never fails the caller: a stash that
    /// does not reach other replicas only makes them wait for the store.
    fn stash(&self, key: &str, value: String, ttl: Duration);
    /// What was stashed under `key` and has not expired or been removed.
    fn unstash<'a>(
        &'a self,
        key: &'a str,
    ) -> Pin<Box<dyn Future<Output = Option<String>> + Send + 'a>>;
    /// Removes the stash under `key` (its content is stored now).
    fn clear_stash(&self, key: &str);
}

/// This replica's stashes: key → (expiry, value). Expired entries are
/// dropped by a sweep at most once a second, so a put stays O(1).
#[derive(Default)]
pub struct LocalStash {
    inner: Mutex<LocalStashInner>,
}

#[derive(Default)]
struct LocalStashInner {
    entries: HashMap<String, (Instant, String)>,
    swept: Option<Instant>,
}

/// How often [`LocalStash`] sweeps expired entries.
const STASH_SWEEP: Duration = Duration::from_secs(1);

impl LocalStash {
    fn lock(&self) -> std::sync::MutexGuard<'_, LocalStashInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `value` under `key` until `ttl` from now.
    pub fn put(&self, key: &str, value: String, ttl: Duration) {
        let now = Instant::now();
        let mut inner = self.lock();
        if inner
            .swept
            .is_none_or(|at| now.duration_since(at) >= STASH_SWEEP)
        {
            inner.entries.retain(|_, (until, _)| *until > now);
            inner.swept = Some(now);
        }
        inner.entries.insert(key.to_string(), (now + ttl, value));
    }

    /// The value under `key`, unless it expired.
    pub fn get(&self, key: &str) -> Option<String> {
        let inner = self.lock();
        let (until, value) = inner.entries.get(key)?;
        (*until > Instant::now()).then(|| value.clone())
    }

    /// Forgets `key`.
    pub fn remove(&self, key: &str) {
        self.lock().entries.remove(key);
    }

    /// Entries held, expired ones not yet swept included.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The topic of an org's outbox events.
pub fn org_topic(org_id: uuid::Uuid) -> String {
    format!("org:{org_id}")
}

/// A change in the set of topics this replica follows, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interest {
    /// `topic` got its first local subscriber.
    Follow(String),
    /// `topic` lost its last local subscriber.
    Forget(String),
}

/// One followed topic.
struct Topic {
    sender: broadcast::Sender<Arc<str>>,
    /// Whether the bus delivers this topic from other replicas yet (Redis:
    /// the `SUBSCRIBE` was confirmed). A watch, so a new subscriber can wait
    /// for it before replaying the store.
    live: watch::Sender<bool>,
}

/// What the fan-out and its subscriptions share.
struct Shared {
    /// A std mutex: held for a map operation only, never across an await.
    topics: Mutex<HashMap<String, Topic>>,
    /// Told about first and last subscribers (`None` in-process). Unbounded:
    /// one small message per topic change, drained by the bus at once, and a
    /// subscribe must never block or fail.
    interest: Option<mpsc::UnboundedSender<Interest>>,
    /// Bumped when messages may have been lost for every topic (the bus
    /// reconnected): every subscription then reports a [`Delivery::Gap`].
    epoch: watch::Sender<u64>,
    /// Whether the bus is connected (see [`Bus::connected`]).
    connected: AtomicBool,
}

/// This replica's local topic → sender map.
///
/// A topic lives exactly as long as it has a subscriber: the last
/// [`Subscription`] of a topic removes its entry (and its buffer) when it is
/// dropped, so followed-and-finished turns leave nothing behind.
pub struct Fanout {
    shared: Arc<Shared>,
}

impl Default for Fanout {
    fn default() -> Self {
        Self::build(None)
    }
}

impl Fanout {
    fn build(interest: Option<mpsc::UnboundedSender<Interest>>) -> Self {
        let connected = interest.is_none();
        Self {
            shared: Arc::new(Shared {
                topics: Mutex::default(),
                interest,
                epoch: watch::channel(0).0,
                connected: AtomicBool::new(connected),
            }),
        }
    }

    /// A fan-out that reports first and last subscribers of each topic on
    /// `interest`; its topics are not live until [`Fanout::mark_live`].
    pub fn with_interest(interest: mpsc::UnboundedSender<Interest>) -> Self {
        Self::build(Some(interest))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Topic>> {
        self.shared.topics.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A subscription to `topic`, creating its sender on first use.
    pub fn subscribe(&self, topic: &str) -> Subscription {
        let mut topics = self.lock();
        let entry = topics.entry(topic.to_string()).or_insert_with(|| {
            if let Some(interest) = &self.shared.interest {
                let _ = interest.send(Interest::Follow(topic.to_string()));
            }
            Topic {
                sender: broadcast::channel(TOPIC_CAPACITY).0,
                live: watch::channel(self.shared.interest.is_none()).0,
            }
        });
        let rx = entry.sender.subscribe();
        let live = entry.live.subscribe();
        drop(topics);
        let mut epoch = self.shared.epoch.subscribe();
        epoch.borrow_and_update();
        Subscription {
            rx: Some(rx),
            live,
            epoch,
            topic: topic.to_string(),
            shared: Arc::downgrade(&self.shared),
            _counted: crate::metrics::GaugeGuard::new(&crate::metrics::metrics().subscriptions),
        }
    }

    /// Delivers to local subscribers, if the topic has any.
    pub fn deliver(&self, topic: &str, message: Arc<str>) {
        if let Some(t) = self.lock().get(topic) {
            // No receiver left is not an error here: the last one is being dropped.
            let _ = t.sender.send(message);
        }
    }

    /// Every topic followed right now (to re-subscribe after a reconnect).
    pub fn topics(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// `topics` are delivered from other replicas from now on.
    pub fn mark_live(&self, topics: &[String]) {
        let map = self.lock();
        for topic in topics {
            if let Some(t) = map.get(topic) {
                t.live.send_replace(true);
            }
        }
    }

    /// The bus lost its connection (`false`: nothing is live any more) or
    /// got it back (`true`, after re-subscribing: every subscriber is told
    /// it may have missed messages).
    pub fn set_connected(&self, connected: bool) {
        self.shared.connected.store(connected, Ordering::SeqCst);
        if connected {
            self.shared.epoch.send_modify(|e| *e += 1);
        } else {
            for t in self.lock().values() {
                t.live.send_replace(false);
            }
        }
    }

    /// Whether the bus is connected.
    pub fn connected(&self) -> bool {
        self.shared.connected.load(Ordering::SeqCst)
    }

    /// How many topics have subscribers on this replica.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no topic has a subscriber on this replica.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a subscription's [`Subscription::recv`] yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The next message.
    Message(Arc<str>),
    /// Messages may have been missed (this subscriber lagged, or the bus
    /// reconnected): re-read the store.
    Gap,
    /// The bus is gone.
    Closed,
}

/// Messages of one topic for one subscriber; forgets the topic on drop when
/// it was the last one.
pub struct Subscription {
    /// `None` only while dropping.
    rx: Option<broadcast::Receiver<Arc<str>>>,
    live: watch::Receiver<bool>,
    epoch: watch::Receiver<u64>,
    topic: String,
    shared: Weak<Shared>,
    /// Counts this subscription in the `subscriptions` gauge while it lives.
    _counted: crate::metrics::GaugeGuard,
}

impl Subscription {
    /// The next message, or a [`Delivery::Gap`] when messages may have been
    /// missed (the caller recovers from the store).
    pub async fn recv(&mut self) -> Delivery {
        let Some(rx) = &mut self.rx else {
            return Delivery::Closed;
        };
        let delivery = tokio::select! {
            biased;
            changed = self.epoch.changed() => match changed {
                Ok(()) => Delivery::Gap,
                // The fan-out is gone: nothing more will come.
                Err(_) => Delivery::Closed,
            },
            received = rx.recv() => match received {
                Ok(message) => Delivery::Message(message),
                Err(broadcast::error::RecvError::Lagged(_)) => Delivery::Gap,
                Err(broadcast::error::RecvError::Closed) => Delivery::Closed,
            },
        };
        if delivery == Delivery::Gap {
            crate::metrics::metrics().fanout_gaps.inc();
        }
        delivery
    }

    /// Waits (at most `wait`) until other replicas' messages on this topic
    /// reach this replica, so a replay of the store that follows misses
    /// nothing; at once in-process, or while the bus is disconnected (the
    /// reconnect reports a gap instead).
    pub async fn ready(&mut self, wait: Duration) {
        let connected = self
            .shared
            .upgrade()
            .is_some_and(|s| s.connected.load(Ordering::SeqCst));
        if connected {
            let _ = tokio::time::timeout(wait, self.live.wait_for(|live| *live)).await;
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let mut topics = shared.topics.lock().unwrap_or_else(|p| p.into_inner());
        // Drop our receiver under the lock, so a concurrent subscribe either
        // sees the entry with our receiver gone or creates a fresh one.
        drop(self.rx.take());
        if topics
            .get(&self.topic)
            .is_some_and(|t| t.sender.receiver_count() == 0)
        {
            topics.remove(&self.topic);
            if let Some(interest) = &shared.interest {
                let _ = interest.send(Interest::Forget(self.topic.clone()));
            }
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
        assert_eq!(a.recv().await, Delivery::Message(Arc::from("hello")));
        drop(b);
        assert_eq!(fanout.len(), 2, "one subscriber of t is left");
        drop(a);
        assert_eq!(fanout.len(), 1, "t has no subscriber any more");
        // Delivering to a forgotten topic creates nothing.
        fanout.deliver("t", Arc::from("late"));
        assert_eq!(fanout.len(), 1);
    }

    #[tokio::test]
    async fn interest_follows_first_and_last_subscribers() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let fanout = Fanout::with_interest(tx);
        let a = fanout.subscribe("t");
        let b = fanout.subscribe("t");
        drop(a);
        drop(b);
        let c = fanout.subscribe("t");
        let mut seen = vec![];
        while let Ok(i) = rx.try_recv() {
            seen.push(i);
        }
        assert_eq!(
            seen,
            [
                Interest::Follow("t".into()),
                Interest::Forget("t".into()),
                Interest::Follow("t".into())
            ]
        );
        drop(c);
        assert_eq!(rx.try_recv().ok(), Some(Interest::Forget("t".into())));
    }

    #[tokio::test]
    async fn a_reconnect_is_a_gap_for_every_subscriber() {
        let (tx, _rx) = mpsc::unbounded_channel();
        let fanout = Fanout::with_interest(tx);
        let mut a = fanout.subscribe("t");
        fanout.set_connected(false);
        fanout.set_connected(true);
        assert_eq!(a.recv().await, Delivery::Gap);
        fanout.deliver("t", Arc::from("after"));
        assert_eq!(a.recv().await, Delivery::Message(Arc::from("after")));
    }

    #[test]
    fn stashes_expire_and_are_swept() {
        let stash = LocalStash::default();
        stash.put("a", "1".into(), Duration::from_secs(60));
        stash.put("gone", "2".into(), Duration::ZERO);
        assert_eq!(stash.get("a").as_deref(), Some("1"));
        assert_eq!(stash.get("gone"), None, "expired");
        stash.put("a", "3".into(), Duration::from_secs(60));
        assert_eq!(stash.get("a").as_deref(), Some("3"), "replaced");
        stash.remove("a");
        assert_eq!(stash.get("a"), None);
        // The next sweep (a second after the last) drops the expired entry.
        stash.lock().swept = Some(Instant::now() - STASH_SWEEP);
        stash.put("b", "4".into(), Duration::from_secs(60));
        assert_eq!(stash.len(), 1);
    }

    #[tokio::test]
    async fn a_lagging_subscriber_sees_a_gap() {
        let fanout = Fanout::default();
        let mut a = fanout.subscribe("t");
        for i in 0..TOPIC_CAPACITY + 1 {
            fanout.deliver("t", Arc::from(i.to_string()));
        }
        assert_eq!(a.recv().await, Delivery::Gap);
    }
}
