//! Up and down votes on bot replies, and the ticket a downvote may open.
//!
//! One vote per message: voting again replaces the earlier vote (an upsert on
//! the unique `message_id`), so a visitor can change their mind but not stuff
//! the ballot. A downvote that asks for follow-up opens a `FEEDBACK` ticket on
//! the session; while that ticket is not closed, further downvotes in the same
//! session add to it instead of opening more.

use async_graphql::{Enum, InputObject};
use chrono::Utc;
use entity::{chat_feedback, chat_message, support_ticket};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ConnectionTrait, EntityTrait, sea_query::OnConflict,
};
use uuid::Uuid;

use super::{
    chat, event, new_id,
    ticket::{self, NewTicket},
};
use crate::{
    auth::Caller,
    domain::{self, TicketSource},
    error::AppError,
    state::State,
};

/// Longest feedback comment.
pub const COMMENT_MAX: usize = domain::SHORT_TEXT_MAX;
/// How much of the voted answer a ticket quotes.
const QUOTE_MAX: usize = 2_000;

/// A vote on a bot reply.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum FeedbackVote {
    /// The reply helped.
    Up,
    /// The reply did not help.
    Down,
}

impl FeedbackVote {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Up => "UP",
            Self::Down => "DOWN",
        }
    }
}

/// A visitor's vote on one bot reply. (`Debug` never shows the session token.)
#[derive(InputObject)]
pub struct SubmitFeedbackInput {
    /// The reply voted on: `messageId` of `sendMessage`, or of the `ANSWERED`/`FALLBACK` turn event.
    pub message_id: Uuid,
    /// Up or down.
    pub vote: FeedbackVote,
    /// Why (at most 2,000 characters).
    pub comment: Option<String>,
    /// The session's token (or `sessionToken` in `connection_init`). Optional with an API key.
    #[graphql(secret)]
    pub session_token: Option<String>,
    /// With a `DOWN` vote: open a support ticket so a person follows up. Ignored with `UP`. Default: false.
    pub open_ticket: Option<bool>,
}

impl std::fmt::Debug for SubmitFeedbackInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubmitFeedbackInput")
            .field("message_id", &self.message_id)
            .field("vote", &self.vote)
            .field("comment", &self.comment)
            .field(
                "session_token",
                &crate::secret::redacted(&self.session_token),
            )
            .field("open_ticket", &self.open_ticket)
            .finish()
    }
}

/// What a vote did.
#[derive(Debug, Clone)]
pub struct FeedbackOutcome {
    /// The stored vote (the same id when a vote is replaced).
    pub feedback: chat_feedback::Model,
    /// The ticket opened (or added to) for a downvote asking for follow-up.
    pub ticket_id: Option<Uuid>,
}

/// The bot reply `message_id`, if `caller` (or `token`) may vote on it; anything else is `NOT_FOUND`.
async fn votable_message(
    st: &State,
    caller: &Caller,
    token: Option<String>,
    message_id: Uuid,
) -> Result<chat_message::Model, AppError> {
    let not_found = || AppError::not_found_in("chat message", "input.messageId");
    let token = token.or_else(|| match caller {
        Caller::Public { session_token } => session_token.clone(),
        Caller::Org(_) | Caller::Operator(_) => None,
    });
    let session = match (&token, caller) {
        (Some(t), _) => Some(chat::verify_token(st, t).await?),
        (None, Caller::Org(_)) => None,
        (None, Caller::Public { .. } | Caller::Operator(_)) => {
            return Err(AppError::bad_input(
                "input.sessionToken",
                "the session token is needed to vote (or an API key)",
            ));
        }
    };
    let message = chat_message::Entity::find_by_id(message_id)
        .one(&st.db)
        .await?
        .ok_or_else(not_found)?;
    if let Some(s) = &session
        && message.session_id != s.id
    {
        return Err(not_found());
    }
    if let Caller::Org(scope) = caller
        && message.org_id != scope.org_id()
    {
        return Err(not_found());
    }
    if message.role != "bot" {
        return Err(not_found());
    }
    Ok(message)
}

/// The ticket text of a downvote: the answer voted down and the visitor's comment.
fn downvote_note(answer: &str, comment: Option<&str>) -> String {
    let mut quoted: String = answer.chars().take(QUOTE_MAX).collect();
    if quoted.len() < answer.len() {
        quoted.push('…');
    }
    format!(
        "The visitor downvoted this answer:\n{quoted}\n\nTheir comment: {}",
        comment.unwrap_or("(none)")
    )
}

/// Records `input` as the vote on its message (replacing an earlier one),
/// opening or adding to a `FEEDBACK` ticket for a downvote that asks for it.
/// Emits `feedback.submitted`, and `ticket.created` or `ticket.updated`.
#[tracing::instrument(skip_all, fields(message_id = %input.message_id, vote = input.vote.as_str(), org_id, session_id))]
pub async fn submit(
    st: &State,
    caller: &Caller,
    input: SubmitFeedbackInput,
) -> Result<FeedbackOutcome, AppError> {
    let comment = match input.comment.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(c) => Some(domain::text("input.comment", c, 1, COMMENT_MAX)?),
    };
    let message = votable_message(st, caller, input.session_token, input.message_id).await?;
    let span = tracing::Span::current();
    span.record("org_id", tracing::field::display(message.org_id));
    span.record("session_id", tracing::field::display(message.session_id));
    let open_ticket = input.vote == FeedbackVote::Down && input.open_ticket.unwrap_or(false);
    let now = Utc::now();

    let txn = crate::service::begin_write(&st.db).await?;
    if open_ticket {
        // Writing the session row first serialises concurrent votes of one
        // session, so two downvotes can't both open a ticket.
        chat::touch_session(&txn, message.session_id).await?;
    }
    let feedback = chat_feedback::Entity::insert(chat_feedback::ActiveModel {
        id: Set(new_id()),
        org_id: Set(message.org_id),
        message_id: Set(message.id),
        session_id: Set(message.session_id),
        vote: Set(input.vote.as_str().to_string()),
        comment: Set(comment.clone()),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .on_conflict(
        OnConflict::column(chat_feedback::Column::MessageId)
            .update_columns([
                chat_feedback::Column::Vote,
                chat_feedback::Column::Comment,
                chat_feedback::Column::UpdatedAt,
            ])
            .to_owned(),
    )
    .exec_with_returning(&txn)
    .await?;
    let ticket = if open_ticket {
        let note = downvote_note(&message.text, comment.as_deref());
        Some(
            match ticket::unclosed_for_session(&txn, message.session_id, TicketSource::Feedback)
                .await?
            {
                Some(existing) => add_to_ticket(&txn, existing, &note).await?,
                None => {
                    let known =
                        crate::service::identity::ticket_contact(&txn, message.session_id).await?;
                    let t = ticket::open(
                        &txn,
                        NewTicket {
                            org_id: message.org_id,
                            source: TicketSource::Feedback,
                            name: known.name,
                            email: known.email,
                            message: note,
                            session_id: Some(message.session_id),
                            end_user_id: known.end_user_id,
                            user_id: known.user_id,
                        },
                    )
                    .await?;
                    (t, Some("ticket.created"))
                }
            },
        )
    } else {
        None
    };
    let ticket_id = ticket.as_ref().map(|(t, _)| t.id);
    let mut recorded = vec![
        event::record(
            &txn,
            message.org_id,
            "feedback.submitted",
            serde_json::json!({
                "id": feedback.id,
                "feedbackId": feedback.id,
                "messageId": feedback.message_id,
                "sessionId": feedback.session_id,
                "vote": feedback.vote,
                "ticketId": ticket_id,
            }),
        )
        .await?,
    ];
    if let Some((t, Some(kind))) = &ticket {
        recorded.push(event::record(&txn, message.org_id, kind, ticket::event_payload(t)).await?);
    }
    txn.commit().await?;
    event::publish(st, &recorded).await;
    Ok(FeedbackOutcome {
        feedback,
        ticket_id,
    })
}

/// Appends `note` to an open ticket, unless it has grown to the longest a
/// ticket may be; returns it with the kind of event to record, if it changed.
async fn add_to_ticket(
    db: &impl ConnectionTrait,
    existing: support_ticket::Model,
    note: &str,
) -> Result<(support_ticket::Model, Option<&'static str>), AppError> {
    if existing.message.chars().count() + note.chars().count() > domain::LONG_TEXT_MAX {
        return Ok((existing, None));
    }
    let message = format!("{}\n\n---\n\n{note}", existing.message);
    let mut am: support_ticket::ActiveModel = existing.into();
    am.message = Set(message);
    am.updated_at = Set(Utc::now());
    Ok((am.update(db).await?, Some("ticket.updated")))
}
