//! Webhooks and their deliveries.

use async_graphql::{ComplexObject, Context, SimpleObject};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{
    error::{AppError, GqlResult},
    graphql::{ContextExt, try_connection, types::WebhookDeliveryConnection},
    service::{
        self, PageArgs,
        webhook::{Delivery, DeliveryStatus},
    },
};

/// An HTTP endpoint of the org that receives its events (the outbox events of
/// `orgEvents`), each POSTed as JSON and signed; see `createWebhook`.
#[derive(SimpleObject, Clone)]
#[graphql(complex)]
pub struct Webhook {
    /// Webhook id.
    pub id: Uuid,
    /// Where events are POSTed.
    pub url: String,
    /// The event kinds delivered (`ticket.*` matches every `ticket.` kind); empty: every event.
    pub event_kinds: Vec<String>,
    /// Whether events are delivered; a paused webhook queues nothing and its pending deliveries wait.
    pub active: bool,
    /// When it was created; only events from then on are delivered.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

#[ComplexObject]
impl Webhook {
    /// Its deliveries, one per event, oldest first.
    #[graphql(complexity = "crate::graphql::list_cost(first, child_complexity)")]
    async fn deliveries(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only deliveries in this status.")] status: Option<DeliveryStatus>,
        #[graphql(desc = "Page size, 1 to 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "Cursor of the delivery to start after.")] after: Option<String>,
    ) -> GqlResult<WebhookDeliveryConnection> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        let page = service::webhook::list_deliveries(
            st,
            &scope,
            self.id,
            status,
            &PageArgs { first, after },
        )
        .await?;
        Ok(try_connection(page, |d| d.row.id)?)
    }
}

impl From<entity::webhook::Model> for Webhook {
    fn from(m: entity::webhook::Model) -> Self {
        Self {
            event_kinds: service::webhook::event_kinds_of(&m),
            id: m.id,
            url: m.url,
            active: m.active,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

/// A new webhook with its signing secret, shown this once.
#[derive(SimpleObject)]
pub struct CreatedWebhook {
    /// The secret that signs this webhook's deliveries (64 hex characters).
    /// Store it now: it cannot be shown again.
    pub secret: String,
    /// The webhook's record.
    pub webhook: Webhook,
}

/// One event on its way to one webhook, with its attempts.
#[derive(SimpleObject, Clone)]
pub struct WebhookDelivery {
    /// Delivery id, sent as the `X-Wayfinder-Delivery` header.
    pub id: Uuid,
    /// The webhook it goes to.
    pub webhook_id: Uuid,
    /// The event it carries (the body's `id`; deduplicate on it).
    pub event_id: Uuid,
    /// The event's kind, e.g. `knowledge_base.created`.
    pub event_kind: String,
    /// Pending, delivered, or given up.
    pub status: DeliveryStatus,
    /// Attempts made so far, the successful one included.
    pub attempts: i32,
    /// When the next attempt is due, while pending.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The HTTP status of the last answer; null when the last attempt got none (connection refused, timeout).
    pub last_status_code: Option<i32>,
    /// Why the last attempt failed (at most 500 characters): `HTTP <status>`
    /// (the receiver's answer body is never kept), a connection error, or
    /// `refused: …` when the URL reached a loopback, private or metadata
    /// address; null once delivered.
    pub last_error: Option<String>,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
    /// When the receiver accepted it.
    pub delivered_at: Option<DateTime<Utc>>,
}

impl TryFrom<Delivery> for WebhookDelivery {
    type Error = AppError;

    fn try_from(d: Delivery) -> Result<Self, AppError> {
        let m = d.row;
        let status = DeliveryStatus::from_stored(&m.status)?;
        Ok(Self {
            id: m.id,
            webhook_id: m.webhook_id,
            event_id: m.event_id,
            event_kind: d.event_kind,
            status,
            attempts: m.attempts,
            next_attempt_at: (status == DeliveryStatus::Pending).then_some(m.next_attempt_at),
            last_status_code: m.last_status_code,
            last_error: m.last_error,
            created_at: m.created_at,
            delivered_at: m.delivered_at,
        })
    }
}
