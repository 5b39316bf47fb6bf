//! The org's outbox events, live.
//!
//! Outbox events carry no sequence number (they come from every replica's
//! changes), so a subscription finds what it missed by time instead: when it
//! may have missed messages (it lagged, or the bus reconnected after a Redis
//! outage) and after a while without any (60–120 s, half a second while Redis is down), it re-reads the org's
//! stored events from a little before the newest one it has seen
//! ([`FILL_OVERLAP`]: clocks of replicas and commit order disagree by
//! milliseconds) and skips the ids it already delivered. Each event reaches
//! the subscriber once; live events in the order they arrive, re-read ones
//! oldest first.

use std::collections::{HashSet, VecDeque};

use async_graphql::{Context, Subscription};
use chrono::{DateTime, Utc};
use futures_util::stream::{self, BoxStream};
use uuid::Uuid;

use super::live;
use crate::{
    error::GqlError,
    graphql::{ContextExt, types::OrgEvent},
    pubsub::{Delivery, Subscription as BusSubscription, org_topic},
    service::event::{self, BusEvent},
    state::AppState,
};

/// How far before the newest delivered event a re-read starts.
const FILL_OVERLAP: chrono::TimeDelta = chrono::TimeDelta::seconds(5);
/// Events one page of a re-read returns at most.
const FILL_LIMIT: u64 = 500;
/// Pages one re-read reads at most (a bounded cost per gap).
const FILL_PAGES: usize = 20;
/// Delivered ids remembered to skip duplicates: more than one re-read window
/// holds at a few hundred events a second, and a fixed cost per subscription.
const SEEN_KEPT: usize = 8_192;

struct OrgFollow {
    st: AppState,
    rx: BusSubscription,
    org_id: Uuid,
    kinds: Option<Vec<String>>,
    pending: VecDeque<BusEvent>,
    seen: HashSet<Uuid>,
    seen_order: VecDeque<Uuid>,
    /// When the newest event delivered (or the subscription) was created.
    newest: DateTime<Utc>,
    /// When the subscription started: older events are not re-read.
    since: DateTime<Utc>,
}

impl OrgFollow {
    /// Queues `ev` unless it was delivered (or queued) before.
    fn offer(&mut self, ev: BusEvent) {
        if ev.org_id != self.org_id || !self.seen.insert(ev.id) {
            return;
        }
        self.seen_order.push_back(ev.id);
        if self.seen_order.len() > SEEN_KEPT
            && let Some(old) = self.seen_order.pop_front()
        {
            self.seen.remove(&old);
        }
        self.newest = self.newest.max(ev.created_at);
        self.pending.push_back(ev);
    }

    async fn fill(&mut self) {
        // Page by page: at a high event rate the overlap window alone holds
        // more than a page of events already delivered (seen at 1,000/s).
        let from = self.newest - FILL_OVERLAP;
        let mut after = None;
        for _ in 0..FILL_PAGES {
            match event::created_since(&self.st.db, self.org_id, from, after, FILL_LIMIT).await {
                Ok(rows) => {
                    let since = self.since;
                    for row in rows.iter().filter(|r| r.created_at >= since) {
                        self.offer(BusEvent::from(row));
                    }
                    if (rows.len() as u64) < FILL_LIMIT {
                        return;
                    }
                    after = rows.last().map(|r| r.id);
                }
                Err(err) => {
                    tracing::warn!(%err, "orgEvents could not read the store");
                    return;
                }
            }
        }
    }

    async fn next(mut self) -> Option<(OrgEvent, Self)> {
        loop {
            if let Some(ev) = self.pending.pop_front() {
                if self.kinds.as_ref().is_some_and(|k| !k.contains(&ev.kind)) {
                    continue;
                }
                return Some((OrgEvent::from(ev), self));
            }
            match tokio::time::timeout(super::chat::long_recheck_after(&self.st), self.rx.recv())
                .await
            {
                Ok(Delivery::Message(raw)) => {
                    if let Ok(ev) = serde_json::from_str::<BusEvent>(&raw) {
                        self.offer(ev);
                    }
                }
                Ok(Delivery::Gap) | Err(_) => Box::pin(self.fill()).await,
                Ok(Delivery::Closed) => return None,
            }
        }
    }
}

#[derive(Default)]
pub struct OrgSubscription;

#[Subscription]
impl OrgSubscription {
    /// Every outbox event of the caller's org from now on (`bot.created`, `ticket.created_via_widget`, …), on whichever replica the client is connected to; events missed while Redis was away are read back from the store, each delivered once.
    async fn org_events(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only events of these kinds; all when omitted.")] kinds: Option<
            Vec<String>,
        >,
    ) -> Result<BoxStream<'static, OrgEvent>, GqlError> {
        if let Some(event) = live::delivered(ctx) {
            return Ok(event);
        }
        let (st, scope, handing) = (ctx.state()?.clone(), ctx.scope()?, live::Handing::of(ctx));
        let org_id = scope.org_id();
        // Boxed: async-graphql keeps this future's space in the
        // subscription's stream for as long as it runs.
        Box::pin(async move {
            let mut rx = st.bus.subscribe(&org_topic(org_id));
            rx.ready(super::chat::BUS_READY_WAIT).await;
            let follow = OrgFollow {
                st,
                rx,
                org_id,
                kinds,
                pending: VecDeque::new(),
                seen: HashSet::new(),
                seen_order: VecDeque::new(),
                newest: Utc::now(),
                since: Utc::now(),
            };
            Ok(handing.pass(stream::unfold(follow, OrgFollow::next)))
        })
        .await
    }
}
