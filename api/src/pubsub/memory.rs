//! In-process bus: the embedded default, for a single replica.

use std::sync::Arc;

use super::{Bus, Fanout, Subscription};

/// Publishes straight into this process's fan-out.
#[derive(Default)]
pub struct MemoryBus {
    fanout: Fanout,
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
}
