//! End users as dashboards see them, and the data-subject requests about
//! them: an export of everything stored about one visitor (access request)
//! and its deletion (erasure request).
//!
//! Deletion removes, in one transaction: the end user row (its traits), its
//! sessions with their messages and feedback, the outbox events that name
//! one of those sessions (turn, feedback and ticket events, and their
//! webhook deliveries by cascade), its tour runs, and the personal fields of its tickets
//! (name, email, message, user id: the ticket row stays, so the support
//! team's counts and statuses still add up). The credit ledger keeps every
//! row (money is never forgotten) with its turn and message references
//! cleared. Then one `end_user.deleted` event names the deleted end user's
//! id (a random UUID that means nothing once the row is gone) and what was
//! removed; it never carries the host app's user id or an email.

use chrono::Utc;
use entity::{
    chat_feedback, chat_message, chat_session, end_user, event as event_row, support_ticket,
    tour_run,
};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect,
    sea_query::{Expr, ExprTrait},
};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{Page, PageArgs, event, get, paginate, scoped};
use crate::{auth::OrgScope, error::AppError, state::State};

/// What a ticket's message becomes when its visitor is deleted.
pub const REMOVED_TEXT: &str = "[removed at the visitor's request]";
/// Most messages one export carries (a conversation history, not a dump).
const EXPORT_MESSAGES_MAX: u64 = 50_000;

/// Which end users to list.
#[derive(Debug, Clone, Default)]
pub struct EndUserFilter {
    /// Only visitors of this widget.
    pub chat_widget_id: Option<Uuid>,
    /// Only the identified visitor with this host-app user id.
    pub user_id: Option<String>,
    /// Only identified (`true`) or only anonymous (`false`) visitors.
    pub identified: Option<bool>,
}

/// Which end users a deletion or export is about: one by id, or every end
/// user with a host-app user id (optionally on one widget).
#[derive(Debug, Clone)]
pub enum EndUserSelector {
    Id(Uuid),
    UserId {
        user_id: String,
        chat_widget_id: Option<Uuid>,
    },
}

impl EndUserSelector {
    /// One end user by `id`, or every end user with a host-app `user_id`
    /// (optionally on one widget); both or neither is `BAD_USER_INPUT`.
    pub fn from_args(
        id: Option<Uuid>,
        user_id: Option<String>,
        chat_widget_id: Option<Uuid>,
    ) -> Result<Self, AppError> {
        match (id, user_id) {
            (Some(id), None) => Ok(Self::Id(id)),
            (None, Some(user_id)) => Ok(Self::UserId {
                user_id,
                chat_widget_id,
            }),
            _ => Err(AppError::bad_input("id", "give either id or userId")),
        }
    }
}

/// What a deletion removed.
#[derive(Debug, Clone, Default)]
pub struct Removed {
    pub end_user_ids: Vec<Uuid>,
    pub sessions: u64,
    pub messages: u64,
    pub feedback: u64,
    pub tickets_scrubbed: u64,
    pub events: u64,
    pub ledger_entries_cleared: u64,
    pub tour_runs: u64,
}

/// The caller's end users, oldest first.
pub async fn list(
    st: &State,
    scope: &OrgScope,
    filter: EndUserFilter,
    page: &PageArgs,
) -> Result<Page<end_user::Model>, AppError> {
    let mut q = scoped::<end_user::Entity>(scope);
    if let Some(w) = filter.chat_widget_id {
        q = q.filter(end_user::Column::ChatWidgetId.eq(w));
    }
    if let Some(u) = filter.user_id {
        q = q.filter(end_user::Column::ExternalId.eq(u));
    }
    match filter.identified {
        Some(true) => q = q.filter(end_user::Column::ExternalId.is_not_null()),
        Some(false) => q = q.filter(end_user::Column::ExternalId.is_null()),
        None => {}
    }
    paginate(&st.db, q, page).await
}

/// One of the caller's end users.
pub async fn one(st: &State, scope: &OrgScope, id: Uuid) -> Result<end_user::Model, AppError> {
    get::<end_user::Entity>(&st.db, scope, id).await
}

/// The caller's end users `selector` names; none is `NOT_FOUND`.
async fn select(
    db: &impl ConnectionTrait,
    scope: &OrgScope,
    selector: &EndUserSelector,
) -> Result<Vec<end_user::Model>, AppError> {
    let users = match selector {
        EndUserSelector::Id(id) => vec![get::<end_user::Entity>(db, scope, *id).await?],
        EndUserSelector::UserId {
            user_id,
            chat_widget_id,
        } => {
            let mut q = scoped::<end_user::Entity>(scope)
                .filter(end_user::Column::ExternalId.eq(user_id.as_str()));
            if let Some(w) = chat_widget_id {
                q = q.filter(end_user::Column::ChatWidgetId.eq(*w));
            }
            q.order_by_asc(end_user::Column::Id)
                .limit(1_000)
                .all(db)
                .await?
        }
    };
    if users.is_empty() {
        return Err(AppError::not_found("end user"));
    }
    Ok(users)
}

/// Deletes everything stored about the end users `selector` names, in one
/// transaction, and records `end_user.deleted` for each.
#[tracing::instrument(skip_all, fields(org_id = %scope.org_id()))]
pub async fn delete(
    st: &State,
    scope: &OrgScope,
    selector: EndUserSelector,
) -> Result<Removed, AppError> {
    let txn = super::begin_write(&st.db).await?;
    let users = select(&txn, scope, &selector).await?;
    let mut total = Removed::default();
    let mut events = vec![];
    for user in users {
        let removed = delete_one(&txn, scope.org_id(), &user).await?;
        events.push(
            event::record(
                &txn,
                scope.org_id(),
                "end_user.deleted",
                json!({
                    "id": user.id,
                    "endUserId": user.id,
                    "sessions": removed.sessions,
                    "messages": removed.messages,
                    "feedback": removed.feedback,
                    "ticketsScrubbed": removed.tickets_scrubbed,
                    "events": removed.events,
                    "ledgerEntriesCleared": removed.ledger_entries_cleared,
                    "tourRuns": removed.tour_runs,
                }),
            )
            .await?,
        );
        total.end_user_ids.push(user.id);
        total.sessions += removed.sessions;
        total.messages += removed.messages;
        total.feedback += removed.feedback;
        total.tickets_scrubbed += removed.tickets_scrubbed;
        total.events += removed.events;
        total.ledger_entries_cleared += removed.ledger_entries_cleared;
        total.tour_runs += removed.tour_runs;
    }
    txn.commit().await?;
    event::publish(st, &events).await;
    tracing::info!(
        end_users = total.end_user_ids.len(),
        sessions = total.sessions,
        "end users deleted on request"
    );
    Ok(total)
}

async fn delete_one(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    user: &end_user::Model,
) -> Result<Removed, AppError> {
    let sessions: Vec<Uuid> = chat_session::Entity::find()
        .select_only()
        .column(chat_session::Column::Id)
        .filter(chat_session::Column::OrgId.eq(org_id))
        .filter(chat_session::Column::EndUserId.eq(user.id))
        .into_tuple()
        .all(db)
        .await?;
    let in_sessions = || chat_message::Column::SessionId.is_in(sessions.clone());
    let ledger =
        super::credits::forget_message_references(db, org_id, Condition::all().add(in_sessions()))
            .await?;
    let tickets = support_ticket::Entity::update_many()
        .col_expr(
            support_ticket::Column::Name,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            support_ticket::Column::Email,
            Expr::value(Option::<String>::None),
        )
        .col_expr(support_ticket::Column::Message, Expr::value(REMOVED_TEXT))
        .col_expr(
            support_ticket::Column::UserId,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            support_ticket::Column::EndUserId,
            Expr::value(Option::<Uuid>::None),
        )
        .col_expr(
            support_ticket::Column::SessionId,
            Expr::value(Option::<Uuid>::None),
        )
        .col_expr(support_ticket::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(support_ticket::Column::OrgId.eq(org_id))
        .filter(
            Condition::any()
                .add(support_ticket::Column::EndUserId.eq(user.id))
                .add(support_ticket::Column::SessionId.is_in(sessions.clone())),
        )
        .exec(db)
        .await?
        .rows_affected;
    let mut events = 0;
    for chunk in sessions.chunks(50) {
        let mut any = Condition::any();
        for s in chunk {
            // The payload is JSON (text on SQLite, `json` on PostgreSQL): cast, then match the id.
            any = any.add(Expr::cust("CAST(payload AS TEXT)").like(format!("%{s}%")));
        }
        events += event_row::Entity::delete_many()
            .filter(event_row::Column::OrgId.eq(org_id))
            .filter(any)
            .exec(db)
            .await?
            .rows_affected;
    }
    let feedback = chat_feedback::Entity::delete_many()
        .filter(chat_feedback::Column::OrgId.eq(org_id))
        .filter(chat_feedback::Column::SessionId.is_in(sessions.clone()))
        .exec(db)
        .await?
        .rows_affected;
    let tour_runs = tour_run::Entity::delete_many()
        .filter(tour_run::Column::OrgId.eq(org_id))
        .filter(
            Condition::any()
                .add(tour_run::Column::EndUserId.eq(user.id))
                .add(tour_run::Column::SessionId.is_in(sessions.clone())),
        )
        .exec(db)
        .await?
        .rows_affected;
    let messages = chat_message::Entity::delete_many()
        .filter(chat_message::Column::OrgId.eq(org_id))
        .filter(in_sessions())
        .exec(db)
        .await?
        .rows_affected;
    let sessions_removed = chat_session::Entity::delete_many()
        .filter(chat_session::Column::OrgId.eq(org_id))
        .filter(chat_session::Column::Id.is_in(sessions.clone()))
        .exec(db)
        .await?
        .rows_affected;
    end_user::Entity::delete_by_id(user.id).exec(db).await?;
    Ok(Removed {
        end_user_ids: vec![user.id],
        sessions: sessions_removed,
        messages,
        feedback,
        tickets_scrubbed: tickets,
        events,
        ledger_entries_cleared: ledger,
        tour_runs,
    })
}

/// Everything stored about the end users `selector` names, as one JSON
/// document: `{exportedAt, endUsers: [{…, sessions: [{…, messages, feedback}], tickets}]}`.
pub async fn export(
    st: &State,
    scope: &OrgScope,
    selector: EndUserSelector,
) -> Result<Value, AppError> {
    let users = select(&st.db, scope, &selector).await?;
    let mut out = vec![];
    let mut budget = EXPORT_MESSAGES_MAX;
    for user in users {
        let sessions = scoped::<chat_session::Entity>(scope)
            .filter(chat_session::Column::EndUserId.eq(user.id))
            .order_by_asc(chat_session::Column::Id)
            .all(&st.db)
            .await?;
        let mut session_docs = vec![];
        for s in sessions {
            let messages = scoped::<chat_message::Entity>(scope)
                .filter(chat_message::Column::SessionId.eq(s.id))
                .order_by_asc(chat_message::Column::Id)
                .limit(budget)
                .all(&st.db)
                .await?;
            budget = budget.saturating_sub(messages.len() as u64);
            let feedback = scoped::<chat_feedback::Entity>(scope)
                .filter(chat_feedback::Column::SessionId.eq(s.id))
                .order_by_asc(chat_feedback::Column::Id)
                .all(&st.db)
                .await?;
            session_docs.push(json!({
                "id": s.id,
                "botId": s.bot_id,
                "chatWidgetId": s.chat_widget_id,
                "createdAt": s.created_at,
                "updatedAt": s.updated_at,
                "messages": messages.iter().map(|m| json!({
                    "id": m.id, "turnId": m.turn_id, "seq": m.seq, "role": m.role,
                    "status": m.status, "text": m.text, "createdAt": m.created_at,
                })).collect::<Vec<_>>(),
                "feedback": feedback.iter().map(|f| json!({
                    "id": f.id, "messageId": f.message_id, "vote": f.vote,
                    "comment": f.comment, "createdAt": f.created_at,
                })).collect::<Vec<_>>(),
            }));
        }
        let session_ids: Vec<Uuid> = session_docs
            .iter()
            .filter_map(|d| d["id"].as_str().and_then(|s| Uuid::parse_str(s).ok()))
            .collect();
        let tickets = scoped::<support_ticket::Entity>(scope)
            .filter(
                Condition::any()
                    .add(support_ticket::Column::EndUserId.eq(user.id))
                    .add(support_ticket::Column::SessionId.is_in(session_ids.clone())),
            )
            .order_by_asc(support_ticket::Column::Id)
            .all(&st.db)
            .await?;
        let runs = scoped::<tour_run::Entity>(scope)
            .filter(
                Condition::any()
                    .add(tour_run::Column::EndUserId.eq(user.id))
                    .add(tour_run::Column::SessionId.is_in(session_ids.clone())),
            )
            .order_by_asc(tour_run::Column::Id)
            .limit(EXPORT_MESSAGES_MAX)
            .all(&st.db)
            .await?;
        out.push(json!({
            "id": user.id,
            "userId": user.external_id,
            "chatWidgetId": user.chat_widget_id,
            "identified": user.external_id.is_some(),
            "traits": user.traits,
            "hostTraits": user.host_traits,
            "createdAt": user.created_at,
            "updatedAt": user.updated_at,
            "sessions": session_docs,
            "tickets": tickets.iter().map(|t| json!({
                "id": t.id, "source": t.source, "status": t.status, "name": t.name,
                "email": t.email, "message": t.message, "sessionId": t.session_id,
                "createdAt": t.created_at,
            })).collect::<Vec<_>>(),
            "tourRuns": runs.iter().map(|r| json!({
                "id": r.id, "contentId": r.content_id, "contentKind": r.content_kind,
                "sessionId": r.session_id, "trigger": r.trigger, "status": r.status,
                "furthestStep": r.furthest_step, "dismissedAtStep": r.dismissed_at_step,
                "targetMissing": r.target_missing, "pageUrl": r.page_url,
                "createdAt": r.created_at, "updatedAt": r.updated_at,
            })).collect::<Vec<_>>(),
        }));
    }
    Ok(json!({
        "exportedAt": Utc::now(),
        "truncated": budget == 0,
        "endUsers": out,
    }))
}

/// How many sessions `end_user_id` has (for the dashboard's list).
pub async fn session_count(
    st: &State,
    scope: &OrgScope,
    end_user_id: Uuid,
) -> Result<u64, AppError> {
    Ok(scoped::<chat_session::Entity>(scope)
        .filter(chat_session::Column::EndUserId.eq(end_user_id))
        .count(&st.db)
        .await?)
}
