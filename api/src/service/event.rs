//! The event outbox: an event is written in the same transaction as the change
//! it announces, published on the bus after commit, and marked published. A
//! relay republishes what a crash left unpublished, so no committed change goes
//! unannounced.
//!
//! Marks are batched ([`PublishedMarks`]): one `UPDATE` a second for every
//! event published in it, not one per event, so a chat turn does not pay a
//! write for its `turn.completed`. The relay waits longer than a batch before
//! it republishes, so a pending mark is not mistaken for a lost event; a crash
//! before the batch is written means those events are published again, which
//! the bus already allows (delivery is at least once).

use std::{sync::Mutex, time::Duration};

use chrono::{DateTime, Utc};
use entity::event;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, sea_query::Expr,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{OrgOwned, Page, PageArgs, new_id, paginate, scoped};
use crate::{auth::OrgScope, error::AppError, pubsub::org_topic, state::State};

/// An event as it travels on the bus.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BusEvent {
    pub id: Uuid,
    pub org_id: Uuid,
    pub kind: String,
    pub payload: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

impl From<&event::Model> for BusEvent {
    fn from(m: &event::Model) -> Self {
        Self {
            id: m.id,
            org_id: m.org_id,
            kind: m.kind.clone(),
            payload: m.payload.clone(),
            created_at: m.created_at,
        }
    }
}

/// Writes an event of `kind` for `org_id` through `db` (a transaction, normally).
pub async fn record(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    kind: &str,
    payload: serde_json::Value,
) -> Result<event::Model, AppError> {
    let model = event::ActiveModel {
        id: Set(new_id()),
        org_id: Set(org_id),
        kind: Set(kind.to_string()),
        payload: Set(payload),
        created_at: Set(Utc::now()),
        published_at: Set(None),
    };
    Ok(event::Entity::insert(model).exec_with_returning(db).await?)
}

/// Publishes committed events and marks them published. Failures are logged:
/// the relay retries what stays unpublished.
pub async fn publish(st: &State, events: &[event::Model]) {
    if events.is_empty() {
        return;
    }
    for ev in events {
        match serde_json::to_string(&BusEvent::from(ev)) {
            Ok(json) => st.bus.publish(&org_topic(ev.org_id), json),
            Err(err) => tracing::error!(%err, "event not serialisable"),
        }
    }
    // Webhook deliveries are queued before the event is marked published, so a
    // crash in between is healed by the relay (enqueueing is idempotent).
    if let Err(err) = super::webhook::enqueue(st, events).await {
        tracing::warn!(%err, "could not queue webhook deliveries; the relay retries");
        return;
    }
    st.published.add(events.iter().map(|e| e.id));
}

/// Most ids one marking `UPDATE` names (bounded statement size).
const MARK_CHUNK: usize = 500;

/// How long a published event waits for its mark, at most (while running).
pub const MARK_EVERY: Duration = Duration::from_secs(1);

/// Ids of events published and not yet marked so in the database; see the module docs.
#[derive(Debug, Default)]
pub struct PublishedMarks {
    pending: Mutex<Vec<Uuid>>,
    /// Marking statements run so far (tests subtract them from a turn's writes).
    statements: std::sync::atomic::AtomicU64,
}

impl PublishedMarks {
    fn add(&self, ids: impl Iterator<Item = Uuid>) {
        if let Ok(mut p) = self.pending.lock() {
            p.extend(ids);
        }
    }

    /// Ids waiting for their mark.
    pub fn len(&self) -> usize {
        self.pending.lock().map_or(0, |p| p.len())
    }

    /// Marking statements run since start.
    pub fn statements(&self) -> u64 {
        self.statements.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether no mark is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Marks everything pending as published: one `UPDATE` per
    /// [`MARK_CHUNK`] ids. Ids whose `UPDATE` fails go back in the queue.
    pub async fn flush(&self, db: &impl ConnectionTrait) {
        let ids = match self.pending.lock() {
            Ok(mut p) => std::mem::take(&mut *p),
            Err(_) => return,
        };
        for chunk in ids.chunks(MARK_CHUNK) {
            self.statements
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if let Err(err) = event::Entity::update_many()
                .col_expr(event::Column::PublishedAt, Expr::value(Utc::now()))
                .filter(event::Column::Id.is_in(chunk.iter().copied()))
                .exec(db)
                .await
            {
                tracing::warn!(%err, count = chunk.len(), "could not mark events published; retrying");
                self.add(chunk.iter().copied());
            }
        }
    }
}

/// Writes the pending published marks every [`MARK_EVERY`], forever.
pub async fn mark_published_forever(st: std::sync::Arc<State>) {
    let mut tick = tokio::time::interval(MARK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !st.published.is_empty() {
            st.published.flush(&st.db).await;
        }
    }
}

/// Republishes events left unpublished for longer than `grace`, forever, every `every`.
pub async fn relay(st: std::sync::Arc<State>, every: Duration, grace: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let cutoff = Utc::now() - chrono::Duration::from_std(grace).unwrap_or_default();
        let stale = event::Entity::find()
            .filter(event::Column::PublishedAt.is_null())
            .filter(event::Column::CreatedAt.lt(cutoff))
            .order_by_asc(event::Column::Id)
            .limit(500)
            .all(&st.db)
            .await;
        match stale {
            Ok(events) if !events.is_empty() => {
                tracing::info!(count = events.len(), "relaying unpublished events");
                publish(&st, &events).await;
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(%err, "event relay query failed"),
        }
    }
}

/// `org_id`'s events created at or after `since` (and, given `after`, with
/// a later id), oldest first, at most `limit` (live subscriptions re-read
/// what the bus may have dropped, page by page).
pub async fn created_since(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    since: DateTime<Utc>,
    after: Option<Uuid>,
    limit: u64,
) -> Result<Vec<event::Model>, AppError> {
    let mut select = event::Entity::find()
        .filter(event::Column::OrgId.eq(org_id))
        .filter(event::Column::CreatedAt.gte(since));
    if let Some(after) = after {
        select = select.filter(event::Column::Id.gt(after));
    }
    Ok(select
        .order_by_asc(event::Column::Id)
        .limit(limit)
        .all(db)
        .await?)
}

/// The caller's org's events, oldest first, optionally only those of `kind`.
pub async fn list(
    st: &State,
    scope: &OrgScope,
    kind: Option<&str>,
    page: &PageArgs,
) -> Result<Page<event::Model>, AppError> {
    let mut select = scoped::<event::Entity>(scope);
    if let Some(kind) = kind {
        select = select.filter(event::Column::Kind.eq(kind));
    }
    paginate(&st.db, select, page).await
}

/// `kind` of `noun.verb` for a created/updated/deleted object, with its id.
pub fn changed<E: OrgOwned>(verb: &str, id: Uuid) -> (String, serde_json::Value) {
    let noun = E::NOUN.to_ascii_lowercase().replace(' ', "_");
    (format!("{noun}.{verb}"), serde_json::json!({ "id": id }))
}

/// Records the `created`/`updated`/`deleted` event of row `id` in `txn`, commits, then publishes.
pub async fn commit_with_event<E: OrgOwned>(
    st: &State,
    txn: sea_orm::DatabaseTransaction,
    org_id: Uuid,
    verb: &str,
    id: Uuid,
) -> Result<(), AppError> {
    let (kind, payload) = changed::<E>(verb, id);
    let ev = record(&txn, org_id, &kind, payload).await?;
    txn.commit().await?;
    publish(st, &[ev]).await;
    Ok(())
}
