//! Redis bus: fan-out across replicas.
//!
//! Publishing pushes onto a bounded queue drained by one writer task, so a
//! slow or absent Redis never blocks a request (messages beyond the queue are
//! dropped and logged; subscribers recover them from the database). The
//! writer takes everything queued at once (up to [`WRITE_BATCH`]) and sends
//! it as one pipeline, in queue order: a burst costs one round trip, not one
//! per message. Stashes go through the same queue (`SET … PX`, `DEL`), so a
//! stash and the messages published around it reach Redis in the order they
//! were made.
//!
//! One pub/sub connection per replica carries exactly the channels of the
//! topics this replica's clients follow: the local fan-out reports a topic's
//! first subscriber (`SUBSCRIBE`) and its last one leaving (`UNSUBSCRIBE`),
//! so a replica receives only what its own clients need, and the work of
//! fan-out grows with a replica's subscribers, not with the deployment's
//! traffic. When the connection drops, the listener reconnects with backoff,
//! subscribes the current set again, and then tells every local subscriber
//! that it may have missed messages (they re-read the store).

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use futures_util::StreamExt;
use redis::{AsyncCommands, aio::ConnectionManager};
use tokio::sync::mpsc;

use super::{Bus, Fanout, Interest, LocalStash, Subscription};

/// Messages waiting for the writer task; beyond this, publish drops and logs.
const OUTBOX_CAPACITY: usize = 10_000;

/// Most queued writes the writer sends in one pipeline (one round trip).
const WRITE_BATCH: usize = 256;

/// Channels per `SUBSCRIBE` when re-subscribing after a reconnect, so one
/// command stays a reasonable size with tens of thousands of topics.
const RESUBSCRIBE_CHUNK: usize = 1_000;

/// How long a read of another replica's stash may take before the reader
/// goes on without it (it finds the same content in the store later).
const UNSTASH_TIMEOUT: Duration = Duration::from_millis(250);

/// What the writer task sends to Redis, in order.
enum Out {
    Publish {
        channel: String,
        message: String,
    },
    Stash {
        key: String,
        value: String,
        ttl: Duration,
    },
    Clear {
        key: String,
    },
}

/// A bus shared by every replica pointing at the same Redis and prefix.
pub struct RedisBus {
    fanout: Arc<Fanout>,
    prefix: String,
    outbox: mpsc::Sender<Out>,
    /// This replica's own stashes, read before Redis (and all there is of
    /// them while Redis is down).
    local: LocalStash,
    /// For reading other replicas' stashes.
    reader: ConnectionManager,
}

impl RedisBus {
    /// Connects (failing fast if Redis does not answer) and starts the writer and listener tasks.
    pub async fn connect(client: redis::Client, prefix: String) -> redis::RedisResult<Self> {
        let mut publisher = client.get_connection_manager().await?;
        let first = client.get_async_pubsub().await?;
        let (interest_tx, interest_rx) = mpsc::unbounded_channel();
        let fanout = Arc::new(Fanout::with_interest(interest_tx));
        let (outbox, mut queue) = mpsc::channel::<Out>(OUTBOX_CAPACITY);
        let reader = publisher.clone();

        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(WRITE_BATCH);
            while queue.recv_many(&mut batch, WRITE_BATCH).await > 0 {
                let mut pipe = redis::pipe();
                for out in batch.drain(..) {
                    match out {
                        Out::Publish { channel, message } => pipe.publish(channel, message),
                        Out::Stash { key, value, ttl } => {
                            let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
                            pipe.pset_ex(key, value, ms)
                        }
                        Out::Clear { key } => pipe.del(key),
                    }
                    .ignore();
                }
                if let Err(err) = pipe.query_async::<()>(&mut publisher).await {
                    tracing::warn!(%err, "redis write failed");
                }
            }
        });

        tokio::spawn(listen(
            client,
            prefix.clone(),
            fanout.clone(),
            Some(first),
            interest_rx,
        ));

        Ok(Self {
            fanout,
            prefix,
            outbox,
            local: LocalStash::default(),
            reader,
        })
    }

    fn send(&self, out: Out) {
        if self.outbox.try_send(out).is_err() {
            tracing::warn!(
                "redis publish queue full; message dropped (subscribers replay from the database)"
            );
        }
    }

    fn stash_key(&self, key: &str) -> String {
        format!("{}stash:{key}", self.prefix)
    }
}

/// The listener: one pub/sub connection, kept subscribed to the local topics.
async fn listen(
    client: redis::Client,
    prefix: String,
    fanout: Arc<Fanout>,
    mut first: Option<redis::aio::PubSub>,
    mut interest: mpsc::UnboundedReceiver<Interest>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let conn = match first.take() {
            Some(c) => Ok(c),
            None => client.get_async_pubsub().await,
        };
        let (mut sink, mut messages) = match conn {
            Ok(c) => c.split(),
            Err(err) => {
                tracing::warn!(%err, "redis subscribe failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        // Changes queued while disconnected are covered by the snapshot; the
        // ones after it are applied in order below (both idempotent in Redis).
        let topics = fanout.topics();
        let mut resubscribed = true;
        for chunk in topics.chunks(RESUBSCRIBE_CHUNK) {
            let channels: Vec<String> = chunk.iter().map(|t| format!("{prefix}{t}")).collect();
            if let Err(err) = sink.subscribe(&channels).await {
                tracing::warn!(%err, "redis re-subscribe failed; reconnecting");
                resubscribed = false;
                break;
            }
        }
        if !resubscribed {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
            continue;
        }
        backoff = Duration::from_millis(100);
        fanout.mark_live(&topics);
        fanout.set_connected(true);
        tracing::debug!(topics = topics.len(), "redis subscription connected");
        loop {
            tokio::select! {
                msg = messages.next() => {
                    let Some(msg) = msg else { break };
                    let Some(topic) = msg.get_channel_name().strip_prefix(&prefix) else {
                        continue;
                    };
                    match msg.get_payload::<String>() {
                        Ok(payload) => fanout.deliver(topic, Arc::from(payload)),
                        Err(err) => tracing::warn!(%err, topic, "undecodable redis message"),
                    }
                }
                change = interest.recv() => {
                    let Some(change) = change else { return };
                    let done = match &change {
                        Interest::Follow(topic) => {
                            let done = sink.subscribe(format!("{prefix}{topic}")).await;
                            if done.is_ok() {
                                fanout.mark_live(std::slice::from_ref(topic));
                            }
                            done
                        }
                        Interest::Forget(topic) => sink.unsubscribe(format!("{prefix}{topic}")).await,
                    };
                    if let Err(err) = done {
                        tracing::warn!(%err, ?change, "redis (un)subscribe failed; reconnecting");
                        break;
                    }
                }
            }
        }
        fanout.set_connected(false);
        tracing::warn!("redis subscription ended; reconnecting");
    }
}

impl Bus for RedisBus {
    fn publish(&self, topic: &str, message: String) {
        let channel = format!("{}{topic}", self.prefix);
        self.send(Out::Publish { channel, message });
    }

    fn subscribe(&self, topic: &str) -> Subscription {
        self.fanout.subscribe(topic)
    }

    fn local_topics(&self) -> usize {
        self.fanout.len()
    }

    fn connected(&self) -> bool {
        self.fanout.connected()
    }

    fn stash(&self, key: &str, value: String, ttl: Duration) {
        self.local.put(key, value.clone(), ttl);
        self.send(Out::Stash {
            key: self.stash_key(key),
            value,
            ttl,
        });
    }

    fn unstash<'a>(
        &'a self,
        key: &'a str,
    ) -> Pin<Box<dyn Future<Output = Option<String>> + Send + 'a>> {
        Box::pin(async move {
            if let Some(value) = self.local.get(key) {
                return Some(value);
            }
            if !self.connected() {
                return None;
            }
            let mut conn = self.reader.clone();
            let read = conn.get::<_, Option<String>>(self.stash_key(key));
            match tokio::time::timeout(UNSTASH_TIMEOUT, read).await {
                Ok(Ok(value)) => value,
                Ok(Err(err)) => {
                    tracing::warn!(%err, "redis stash read failed");
                    None
                }
                Err(_) => None,
            }
        })
    }

    fn clear_stash(&self, key: &str) {
        self.local.remove(key);
        self.send(Out::Clear {
            key: self.stash_key(key),
        });
    }
}

/// `PING` through `conn`, for readiness checks.
pub async fn ping(conn: &mut ConnectionManager) -> redis::RedisResult<()> {
    redis::cmd("PING").query_async::<()>(conn).await
}
