//! Support tickets: how the contact form, hand-offs and downvotes open them,
//! how the support inbox lists and updates them, and the transcript of the
//! conversation a ticket came from.
//!
//! A ticket does not copy the conversation: it keeps the session id, and the
//! transcript is read from the session's stored messages when asked for, so
//! it is always the conversation as it was stored, never a stale copy.

use chrono::{DateTime, Utc};
use entity::{chat_message, support_ticket};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use uuid::Uuid;

use super::{Page, PageArgs, event, get, new_id, paginate, scoped};
use crate::{
    auth::OrgScope,
    domain::{self, TicketSource, TicketStatus, TurnStatus},
    error::AppError,
    state::State,
};

/// Longest internal note on a ticket.
pub const ASSIGNEE_NOTE_MAX: usize = domain::SHORT_TEXT_MAX;
/// Most messages a transcript holds: the conversation's last ones.
pub const TRANSCRIPT_MAX: u64 = 200;
/// The statuses a transcript shows: what the visitor wrote and what the bot replied.
/// Progress steps (`ANSWER_DELTA`, `NAVIGATING`, `COMPLETED`, …) are left out.
pub const TRANSCRIPT_STATUSES: [TurnStatus; 5] = [
    TurnStatus::Analyzing,
    TurnStatus::Answered,
    TurnStatus::Fallback,
    TurnStatus::Handoff,
    TurnStatus::InsufficientCredits,
];

/// Filters for the ticket list.
#[derive(Debug, Default, async_graphql::InputObject)]
pub struct TicketFilter {
    /// Only tickets with this status.
    pub status: Option<TicketStatus>,
    /// Only tickets from this source.
    pub source: Option<TicketSource>,
    /// Only tickets created at or after this time.
    pub created_after: Option<DateTime<Utc>>,
    /// Only tickets created before this time.
    pub created_before: Option<DateTime<Utc>>,
}

/// Changes to a support ticket; omitted fields stay as they are.
#[derive(Debug, async_graphql::InputObject)]
pub struct UpdateTicketInput {
    /// The ticket.
    pub id: Uuid,
    /// New status: `PENDING` while someone works on it, `CLOSED` when done, `OPEN` to reopen.
    pub status: Option<TicketStatus>,
    /// Internal note of whoever handles the ticket (at most 2,000 characters); an empty string clears it.
    pub assignee_note: Option<String>,
}

/// A ticket about to be opened, already validated.
#[derive(Debug, Clone)]
pub struct NewTicket {
    pub org_id: Uuid,
    pub source: TicketSource,
    pub name: Option<String>,
    pub email: Option<String>,
    pub message: String,
    pub session_id: Option<Uuid>,
    /// The end user who opened it (hand-off, downvote).
    pub end_user_id: Option<Uuid>,
    /// The host app's user id, when that visitor is identified.
    pub user_id: Option<String>,
}

/// Inserts an `OPEN` ticket through `db` (the transaction that also records its event).
pub async fn open(
    db: &impl ConnectionTrait,
    new: NewTicket,
) -> Result<support_ticket::Model, AppError> {
    let now = Utc::now();
    Ok(support_ticket::ActiveModel {
        id: Set(new_id()),
        org_id: Set(new.org_id),
        source: Set(new.source.as_str().to_string()),
        status: Set(TicketStatus::Open.as_str().to_string()),
        name: Set(new.name),
        email: Set(new.email),
        message: Set(new.message),
        session_id: Set(new.session_id),
        end_user_id: Set(new.end_user_id),
        user_id: Set(new.user_id),
        assignee_note: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(db)
    .await?)
}

/// The not-yet-closed ticket from `source` on session `session_id`, if there is one.
pub async fn unclosed_for_session(
    db: &impl ConnectionTrait,
    session_id: Uuid,
    source: TicketSource,
) -> Result<Option<support_ticket::Model>, AppError> {
    Ok(support_ticket::Entity::find()
        .filter(support_ticket::Column::SessionId.eq(session_id))
        .filter(support_ticket::Column::Source.eq(source.as_str()))
        .filter(support_ticket::Column::Status.ne(TicketStatus::Closed.as_str()))
        .order_by_asc(support_ticket::Column::Id)
        .one(db)
        .await?)
}

/// The payload of `ticket.created` and `ticket.updated`.
pub fn event_payload(t: &support_ticket::Model) -> serde_json::Value {
    serde_json::json!({
        "id": t.id,
        "ticketId": t.id,
        "source": t.source,
        "status": t.status,
        "sessionId": t.session_id,
    })
}

/// The caller's tickets, oldest first.
pub async fn list(
    st: &State,
    scope: &OrgScope,
    filter: TicketFilter,
    page: &PageArgs,
) -> Result<Page<support_ticket::Model>, AppError> {
    let mut q = scoped::<support_ticket::Entity>(scope);
    if let Some(s) = filter.status {
        q = q.filter(support_ticket::Column::Status.eq(s.as_str()));
    }
    if let Some(s) = filter.source {
        q = q.filter(support_ticket::Column::Source.eq(s.as_str()));
    }
    if let Some(t) = filter.created_after {
        q = q.filter(support_ticket::Column::CreatedAt.gte(t));
    }
    if let Some(t) = filter.created_before {
        q = q.filter(support_ticket::Column::CreatedAt.lt(t));
    }
    paginate(&st.db, q, page).await
}

/// Applies `input` to one of the caller's tickets and announces it as `ticket.updated`.
#[tracing::instrument(skip_all, fields(org_id = %scope.org_id(), ticket_id = %input.id))]
pub async fn update(
    st: &State,
    scope: &OrgScope,
    input: UpdateTicketInput,
) -> Result<support_ticket::Model, AppError> {
    let note = match input.assignee_note.as_deref() {
        None => None,
        Some(n) if n.trim().is_empty() => Some(None),
        Some(n) => Some(Some(domain::text(
            "input.assigneeNote",
            n,
            1,
            ASSIGNEE_NOTE_MAX,
        )?)),
    };
    let txn = crate::service::begin_write(&st.db).await?;
    let mut am: support_ticket::ActiveModel = get::<support_ticket::Entity>(&txn, scope, input.id)
        .await?
        .into();
    if let Some(s) = input.status {
        am.status = Set(s.as_str().to_string());
    }
    if let Some(n) = note {
        am.assignee_note = Set(n);
    }
    am.updated_at = Set(Utc::now());
    let ticket = am.update(&txn).await?;
    let ev = event::record(
        &txn,
        scope.org_id(),
        "ticket.updated",
        event_payload(&ticket),
    )
    .await?;
    txn.commit().await?;
    event::publish(st, &[ev]).await;
    Ok(ticket)
}

/// The transcript of session `session_id` (the conversation a ticket came
/// from): the visitor's messages and the bot's replies, oldest first, at most
/// the last `last` (capped at [`TRANSCRIPT_MAX`]). Another org's session reads
/// as empty.
pub async fn transcript(
    st: &State,
    scope: &OrgScope,
    session_id: Uuid,
    last: u64,
) -> Result<Vec<chat_message::Model>, AppError> {
    let statuses = TRANSCRIPT_STATUSES.map(TurnStatus::as_str);
    let mut rows = scoped::<chat_message::Entity>(scope)
        .filter(chat_message::Column::SessionId.eq(session_id))
        .filter(chat_message::Column::Status.is_in(statuses))
        .order_by_desc(chat_message::Column::Id)
        .limit(last.clamp(1, TRANSCRIPT_MAX))
        .all(&st.db)
        .await?;
    rows.reverse();
    Ok(rows)
}
