//! Org, API keys, credits and outbox events.

use async_graphql::{ComplexObject, Context, Json, SimpleObject};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{
    domain::Plan,
    error::GqlResult,
    graphql::{ContextExt, connection, types::LedgerEntryConnection},
    service::{self, PageArgs, event::BusEvent},
};

/// An organisation: the tenant every other object belongs to (the caller's own, or any of them for the operator).
#[derive(SimpleObject, Clone)]
pub struct Org {
    /// Org id.
    pub id: Uuid,
    /// Org name.
    pub name: String,
    /// Current plan.
    pub plan: Plan,
    /// Whether the chatbot may call an LLM (the canned fallback answers otherwise).
    pub ai_chatbot_enabled: bool,
    /// Whether profile traits are extracted from visitor messages.
    pub ai_auto_traits_enabled: bool,
    /// Email of the owner, who gets notifications such as "out of credits".
    pub owner_email: String,
    /// Credits left.
    pub credit_balance: i64,
    /// The org's own LLM provider, if it brings its own; otherwise the server's provider answers.
    pub llm_provider: Option<String>,
    /// The org's own model name, if set.
    pub llm_model: Option<String>,
    /// The org's own provider base URL, if set.
    pub llm_base_url: Option<String>,
    /// Whether an API key of the org's own is stored (the key itself is never returned).
    pub llm_api_key_set: bool,
    /// Days conversations, tickets and events are kept after their last activity; `null`: forever.
    pub retention_days: Option<i32>,
    /// When the org was created.
    pub created_at: DateTime<Utc>,
    /// When the org's settings last changed.
    pub updated_at: DateTime<Utc>,
}

impl TryFrom<entity::org::Model> for Org {
    type Error = crate::error::AppError;
    fn try_from(m: entity::org::Model) -> Result<Self, Self::Error> {
        Ok(Self {
            plan: Plan::from_stored(&m.plan)?,
            id: m.id,
            name: m.name,
            ai_chatbot_enabled: m.ai_chatbot_enabled,
            ai_auto_traits_enabled: m.ai_auto_traits_enabled,
            owner_email: m.owner_email,
            credit_balance: m.credit_balance,
            llm_provider: m.llm_provider,
            llm_model: m.llm_model,
            llm_base_url: m.llm_base_url,
            llm_api_key_set: m.llm_api_key_sealed.is_some(),
            retention_days: m.retention_days,
            created_at: m.created_at,
            updated_at: m.updated_at,
        })
    }
}

/// An API key. The secret itself is only ever shown once, in `CreatedApiKey.key`.
#[derive(SimpleObject, Clone)]
pub struct ApiKey {
    /// Key id.
    pub id: Uuid,
    /// A human name for the key.
    pub name: String,
    /// The first characters of the key, to tell keys apart.
    pub prefix: String,
    /// When it was revoked; revoked keys no longer authenticate.
    pub revoked_at: Option<DateTime<Utc>>,
    /// When it was last used (updated at most once a minute).
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

impl From<entity::api_key::Model> for ApiKey {
    fn from(m: entity::api_key::Model) -> Self {
        Self {
            id: m.id,
            name: m.name,
            prefix: m.prefix,
            revoked_at: m.revoked_at,
            last_used_at: m.last_used_at,
            created_at: m.created_at,
        }
    }
}

/// A new API key with its secret, shown this once.
#[derive(SimpleObject)]
pub struct CreatedApiKey {
    /// The full key (`wf_live_…`). Store it now: it cannot be shown again.
    pub key: String,
    /// The key's record.
    pub api_key: ApiKey,
}

/// One credit ledger entry.
#[derive(SimpleObject, Clone)]
pub struct LedgerEntry {
    /// Entry id.
    pub id: Uuid,
    /// Credits added (positive) or taken (negative).
    pub amount: i64,
    /// `GRANT` and `REVOKE` (the operator), `RESERVATION` (held before an LLM call), `SETTLEMENT` (an excess charge, or 0) and `REFUND` (what a call cost less than its reservation).
    pub kind: String,
    /// The chat turn that caused it, if any.
    pub turn_id: Option<Uuid>,
    /// The chat message that caused it, if any.
    pub message_id: Option<Uuid>,
    /// The LLM model charged for, if any.
    pub model: Option<String>,
    /// A free-text note.
    pub note: Option<String>,
    /// When it happened.
    pub created_at: DateTime<Utc>,
}

impl From<entity::credit_ledger::Model> for LedgerEntry {
    fn from(m: entity::credit_ledger::Model) -> Self {
        Self {
            id: m.id,
            amount: m.amount,
            kind: m.kind,
            turn_id: m.turn_id,
            message_id: m.message_id,
            model: m.model,
            note: m.note,
            created_at: m.created_at,
        }
    }
}

/// The org's credit balance and ledger.
#[derive(SimpleObject, Clone)]
#[graphql(complex)]
pub struct Credits {
    /// Credits left.
    pub balance: i64,
}

#[ComplexObject]
impl Credits {
    /// Credits spent per day and model (reservations less refunds), newest day first.
    async fn usage(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "How many days back, 1 to 366.", default = 30)] days: u32,
    ) -> GqlResult<Vec<crate::service::credits::UsageRow>> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        Ok(service::credits::usage(st, &scope, days).await?)
    }

    /// Every grant and charge, oldest first.
    #[graphql(complexity = "crate::graphql::list_cost(first, child_complexity)")]
    async fn ledger(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 1 to 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "Cursor of the entry to start after.")] after: Option<String>,
    ) -> GqlResult<LedgerEntryConnection> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        let page = service::credits::ledger(st, &scope, &PageArgs { first, after }).await?;
        Ok(connection(page, |m| m.id))
    }
}

/// A domain event from the org's outbox (`bot.created`, `ticket.created_via_widget`, …).
#[derive(SimpleObject, Clone)]
pub struct OrgEvent {
    /// Event id (time-ordered).
    pub id: Uuid,
    /// What happened, as `noun.verb`.
    pub kind: String,
    /// Details; always has the `id` of the object concerned.
    pub payload: Json<serde_json::Value>,
    /// When it happened.
    pub created_at: DateTime<Utc>,
}

impl From<entity::event::Model> for OrgEvent {
    fn from(m: entity::event::Model) -> Self {
        Self {
            id: m.id,
            kind: m.kind,
            payload: Json(m.payload),
            created_at: m.created_at,
        }
    }
}

impl From<BusEvent> for OrgEvent {
    fn from(e: BusEvent) -> Self {
        Self {
            id: e.id,
            kind: e.kind,
            payload: Json(e.payload),
            created_at: e.created_at,
        }
    }
}

/// An email to the org's owner (e.g. "out of AI credits"), with its delivery status.
#[derive(SimpleObject, Clone)]
pub struct Notification {
    /// Notification id.
    pub id: Uuid,
    /// What it is about, e.g. `credits.insufficient`.
    pub kind: String,
    /// Who it is for.
    pub recipient: String,
    /// Email subject.
    pub subject: String,
    /// `PENDING` (queued, or no SMTP server configured), `SENT` or `FAILED` (gave up).
    pub status: String,
    /// Delivery attempts so far.
    pub attempts: i32,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
    /// When it was sent.
    pub sent_at: Option<DateTime<Utc>>,
}

impl From<entity::notification::Model> for Notification {
    fn from(m: entity::notification::Model) -> Self {
        Self {
            id: m.id,
            kind: m.kind,
            recipient: m.recipient,
            subject: m.subject,
            status: m.status,
            attempts: m.attempts,
            last_error: m.last_error,
            created_at: m.created_at,
            sent_at: m.sent_at,
        }
    }
}
