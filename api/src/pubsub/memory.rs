//! In-process bus: the embedded default, for a single replica.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use super::{Bus, Fanout, LocalStash, Subscription};

/// Publishes straight into this process's fan-out.
#[derive(Default)]
pub struct MemoryBus {
    fanout: Fanout,
    stash: LocalStash,
}

impl Bus for MemoryBus {
    fn publish(&self, topic: &str, message: String) {
        self.fanout.deliver(topic, Arc::from(message));
    }

    fn subscribe(&self, topic: &str) -> Subscription {
        self.fanout.subscribe(topic)
    }

    fn local_topics(&self) -> usize {
        self.fanout.len()
    }

    fn connected(&self) -> bool {
        true
    }

    fn stash(&self, key: &str, value: String, ttl: Duration) {
        self.stash.put(key, value, ttl);
    }

    fn unstash<'a>(
        &'a self,
        key: &'a str,
    ) -> Pin<Box<dyn Future<Output = Option<String>> + Send + 'a>> {
        let value = self.stash.get(key);
        Box::pin(std::future::ready(value))
    }

    fn clear_stash(&self, key: &str) {
        self.stash.remove(key);
    }
}
