//! Redis bus: fan-out across replicas.
//!
//! Publishing pushes onto a bounded queue drained by one writer task, so a
//! slow or absent Redis never blocks a request (messages beyond the queue are
//! dropped and logged; subscribers recover them from the database). One
//! `PSUBSCRIBE prefix*` connection per replica feeds the local fan-out and
//! reconnects with backoff when Redis goes away.

use std::{sync::Arc, time::Duration};

use futures_util::StreamExt;
use redis::{AsyncCommands, aio::ConnectionManager};
use tokio::sync::mpsc;

use super::{Bus, Fanout, Subscription};

/// Messages waiting for the writer task; beyond this, publish drops and logs.
const OUTBOX_CAPACITY: usize = 10_000;

/// A bus shared by every replica pointing at the same Redis and prefix.
pub struct RedisBus {
    fanout: Arc<Fanout>,
    prefix: String,
    outbox: mpsc::Sender<(String, String)>,
}

impl RedisBus {
    /// Connects (failing fast if Redis does not answer) and starts the writer and listener tasks.
    pub async fn connect(client: redis::Client, prefix: String) -> redis::RedisResult<Self> {
        let mut publisher = client.get_connection_manager().await?;
        // Subscribe before returning, so nothing published after `connect` is missed.
        let first = subscribe(&client, &prefix).await?;
        let fanout = Arc::new(Fanout::default());
        let (outbox, mut queue) = mpsc::channel::<(String, String)>(OUTBOX_CAPACITY);

        tokio::spawn(async move {
            while let Some((channel, message)) = queue.recv().await {
                let sent: redis::RedisResult<()> = publisher.publish(&channel, message).await;
                if let Err(err) = sent {
                    tracing::warn!(%err, channel, "redis publish failed");
                }
            }
        });

        let listener_fanout = fanout.clone();
        let listener_prefix = prefix.clone();
        tokio::spawn(async move {
            let mut pubsub = Some(first);
            let mut backoff = Duration::from_millis(100);
            loop {
                let conn = match pubsub.take() {
                    Some(c) => c,
                    None => match subscribe(&client, &listener_prefix).await {
                        Ok(c) => {
                            backoff = Duration::from_millis(100);
                            c
                        }
                        Err(err) => {
                            tracing::warn!(%err, "redis subscribe failed; retrying");
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(Duration::from_secs(5));
                            continue;
                        }
                    },
                };
                let mut messages = conn.into_on_message();
                while let Some(msg) = messages.next().await {
                    let Some(topic) = msg.get_channel_name().strip_prefix(&listener_prefix) else {
                        continue;
                    };
                    match msg.get_payload::<String>() {
                        Ok(payload) => listener_fanout.deliver(topic, Arc::from(payload)),
                        Err(err) => tracing::warn!(%err, topic, "undecodable redis message"),
                    }
                }
                tracing::warn!("redis subscription ended; reconnecting");
            }
        });

        Ok(Self {
            fanout,
            prefix,
            outbox,
        })
    }
}

async fn subscribe(client: &redis::Client, prefix: &str) -> redis::RedisResult<redis::aio::PubSub> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.psubscribe(format!("{prefix}*")).await?;
    Ok(pubsub)
}

impl Bus for RedisBus {
    fn publish(&self, topic: &str, message: String) {
        let channel = format!("{}{topic}", self.prefix);
        if self.outbox.try_send((channel, message)).is_err() {
            tracing::warn!(
                topic,
                "redis publish queue full; message dropped (subscribers replay from the database)"
            );
        }
    }

    fn subscribe(&self, topic: &str) -> Subscription {
        self.fanout.subscribe(topic)
    }

    fn local_topics(&self) -> usize {
        self.fanout.len()
    }
}

/// `PING` through `conn`, for readiness checks.
pub async fn ping(conn: &mut ConnectionManager) -> redis::RedisResult<()> {
    redis::cmd("PING").query_async::<()>(conn).await
}
