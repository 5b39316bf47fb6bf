//! In-process bus: the embedded default, for a single replica.

use std::sync::Arc;

use tokio::sync::broadcast;

use super::{Bus, Fanout};

/// Publishes straight into this process's fan-out.
#[derive(Default)]
pub struct MemoryBus {
    fanout: Fanout,
}

impl Bus for MemoryBus {
    fn publish(&self, topic: &str, message: String) {
        self.fanout.deliver(topic, Arc::from(message));
    }

    fn subscribe(&self, topic: &str) -> broadcast::Receiver<Arc<str>> {
        self.fanout.subscribe(topic)
    }
}
