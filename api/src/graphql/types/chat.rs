//! Conversations, feedback and support tickets, as dashboards read them.

use async_graphql::{ComplexObject, Context, Json, SimpleObject};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{
    domain::{TicketSource, TicketStatus},
    error::{AppError, GqlResult},
    graphql::{ContextExt, connection, types::ChatMessageConnection},
    service::{self, PageArgs},
};

/// One conversation of a visitor with a bot.
#[derive(SimpleObject, Clone)]
#[graphql(complex)]
pub struct ChatSession {
    /// Session id.
    pub id: Uuid,
    /// The bot.
    pub bot_id: Uuid,
    /// The widget, unless the session was a dashboard test of the bot.
    pub chat_widget_id: Option<Uuid>,
    /// The visitor.
    pub end_user_id: Option<Uuid>,
    /// When it started.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

#[ComplexObject]
impl ChatSession {
    /// The visitor: identified (host-app `userId`) or anonymous, with their traits.
    async fn end_user(&self, ctx: &Context<'_>) -> GqlResult<Option<super::EndUser>> {
        let Some(id) = self.end_user_id else {
            return Ok(None);
        };
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        match service::end_user::one(st, &scope, id).await {
            Ok(u) => Ok(Some(u.into())),
            Err(AppError::NotFound { .. }) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    /// Every stored step of every turn, in order.
    #[graphql(complexity = "crate::graphql::list_cost(first, child_complexity)")]
    async fn messages(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 1 to 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "Cursor of the message to start after.")] after: Option<String>,
    ) -> GqlResult<ChatMessageConnection> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        let page =
            service::session::messages(st, &scope, self.id, &PageArgs { first, after }).await?;
        Ok(connection(page, |m| m.id))
    }
}

impl From<entity::chat_session::Model> for ChatSession {
    fn from(m: entity::chat_session::Model) -> Self {
        Self {
            id: m.id,
            bot_id: m.bot_id,
            chat_widget_id: m.chat_widget_id,
            end_user_id: m.end_user_id,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

/// One stored step of a chat turn.
#[derive(SimpleObject, Clone)]
pub struct ChatMessage {
    /// Message id.
    pub id: Uuid,
    /// The session.
    pub session_id: Uuid,
    /// The turn it belongs to.
    pub turn_id: Uuid,
    /// Position within the turn, from 1.
    pub seq: i32,
    /// `user`, `bot` or `status`.
    pub role: String,
    /// The turn status this step recorded.
    pub status: String,
    /// Its text.
    pub text: String,
    /// Citations, content and navigation details.
    pub payload: Json<serde_json::Value>,
    /// The LLM model used, if any.
    pub model: Option<String>,
    /// Tokens the LLM call used.
    pub tokens_used: i32,
    /// When it was stored.
    pub created_at: DateTime<Utc>,
}

impl From<entity::chat_message::Model> for ChatMessage {
    fn from(m: entity::chat_message::Model) -> Self {
        Self {
            id: m.id,
            session_id: m.session_id,
            turn_id: m.turn_id,
            seq: m.seq,
            role: m.role,
            status: m.status,
            text: m.text,
            payload: Json(m.payload),
            model: m.model,
            tokens_used: m.tokens_used,
            created_at: m.created_at,
        }
    }
}

/// An up or down vote on a bot message.
#[derive(SimpleObject, Clone)]
pub struct Feedback {
    /// Feedback id.
    pub id: Uuid,
    /// The message voted on.
    pub message_id: Uuid,
    /// Its session.
    pub session_id: Uuid,
    /// `UP` or `DOWN`.
    pub vote: String,
    /// The visitor's comment.
    pub comment: Option<String>,
    /// When it was given.
    pub created_at: DateTime<Utc>,
}

impl From<entity::chat_feedback::Model> for Feedback {
    fn from(m: entity::chat_feedback::Model) -> Self {
        Self {
            id: m.id,
            message_id: m.message_id,
            session_id: m.session_id,
            vote: m.vote,
            comment: m.comment,
            created_at: m.created_at,
        }
    }
}

/// A support ticket.
#[derive(SimpleObject, Clone)]
#[graphql(complex)]
pub struct SupportTicket {
    /// Ticket id.
    pub id: Uuid,
    /// Where it came from.
    pub source: TicketSource,
    /// Where it is in its life.
    pub status: TicketStatus,
    /// The visitor's name.
    pub name: Option<String>,
    /// The visitor's email.
    pub email: Option<String>,
    /// What the visitor wrote (or the reason for the ticket).
    pub message: String,
    /// The conversation it came from, whose messages are the transcript.
    pub session_id: Option<Uuid>,
    /// The visitor who opened it (hand-off, downvote); `null` for the contact form and after that visitor was deleted.
    pub end_user_id: Option<Uuid>,
    /// The host app's user id of an identified visitor (signed identity).
    pub user_id: Option<String>,
    /// Internal note of whoever handles it.
    pub assignee_note: Option<String>,
    /// When it was opened.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl TryFrom<entity::support_ticket::Model> for SupportTicket {
    type Error = AppError;
    fn try_from(m: entity::support_ticket::Model) -> Result<Self, AppError> {
        Ok(Self {
            source: TicketSource::from_stored(&m.source)?,
            status: TicketStatus::from_stored(&m.status)?,
            id: m.id,
            name: m.name,
            email: m.email,
            message: m.message,
            session_id: m.session_id,
            end_user_id: m.end_user_id,
            user_id: m.user_id,
            assignee_note: m.assignee_note,
            created_at: m.created_at,
            updated_at: m.updated_at,
        })
    }
}
