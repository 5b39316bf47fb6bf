//! End users (visitors) and what deleting one removed.

use async_graphql::{ComplexObject, Context, Json, SimpleObject};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{
    error::GqlResult,
    graphql::ContextExt,
    service::{self, end_user::Removed},
};

/// A visitor of one widget: anonymous, or identified by the host app's signed user id.
#[derive(SimpleObject, Clone)]
#[graphql(complex)]
pub struct EndUser {
    /// End user id.
    pub id: Uuid,
    /// The widget they chat through (`null` for dashboard tests of a bot).
    pub chat_widget_id: Option<Uuid>,
    /// The host app's user id, set only by a verified signed identity; `null` for anonymous visitors.
    pub user_id: Option<String>,
    /// Whether the visitor is identified (a verified `userId`).
    pub identified: bool,
    /// Every profile trait: the host app's, which win, over those extracted from the chat.
    pub traits: Json<serde_json::Value>,
    /// The traits the host app passed with the signed identity.
    pub host_traits: Json<serde_json::Value>,
    /// The visitor's email, from their traits, if any.
    pub email: Option<String>,
    /// When they were first seen.
    pub created_at: DateTime<Utc>,
    /// When their traits last changed.
    pub updated_at: DateTime<Utc>,
}

#[ComplexObject]
impl EndUser {
    /// How many chat sessions they have.
    async fn session_count(&self, ctx: &Context<'_>) -> GqlResult<i64> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        let n = service::end_user::session_count(st, &scope, self.id).await?;
        Ok(i64::try_from(n).unwrap_or(i64::MAX))
    }
}

impl From<entity::end_user::Model> for EndUser {
    fn from(m: entity::end_user::Model) -> Self {
        let host = service::identity::host_traits(&m);
        Self {
            email: m
                .traits
                .get("email")
                .and_then(|v| v.as_str())
                .map(str::to_string),
            id: m.id,
            chat_widget_id: m.chat_widget_id,
            identified: m.external_id.is_some(),
            user_id: m.external_id,
            traits: Json(m.traits),
            host_traits: Json(serde_json::Value::Object(host)),
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

/// What `deleteEndUser` removed, in one transaction.
#[derive(SimpleObject, Clone)]
pub struct EndUserDeletion {
    /// The deleted end users (one for an `id`; every match of a `userId`).
    pub end_user_ids: Vec<Uuid>,
    /// Chat sessions deleted.
    pub sessions: i64,
    /// Chat messages deleted (every step of every turn).
    pub messages: i64,
    /// Votes deleted.
    pub feedback: i64,
    /// Support tickets kept with their personal fields (name, email, message, user id) removed.
    pub tickets_scrubbed: i64,
    /// Outbox events about their conversations deleted.
    pub events: i64,
    /// Credit ledger entries kept with their turn references cleared.
    pub ledger_entries_cleared: i64,
    /// Tour runs deleted (what the walkthrough runtime reported about them).
    pub tour_runs: i64,
}

impl From<Removed> for EndUserDeletion {
    fn from(r: Removed) -> Self {
        let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        Self {
            end_user_ids: r.end_user_ids,
            sessions: n(r.sessions),
            messages: n(r.messages),
            feedback: n(r.feedback),
            tickets_scrubbed: n(r.tickets_scrubbed),
            events: n(r.events),
            ledger_entries_cleared: n(r.ledger_entries_cleared),
            tour_runs: n(r.tour_runs),
        }
    }
}
