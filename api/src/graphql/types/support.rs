//! Feedback, hand-off and ticket types: what the public support mutations
//! answer, and a ticket's transcript.

use async_graphql::{ComplexObject, Context, Enum, SimpleObject};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::SupportTicket;
use crate::{
    domain::TurnStatus,
    error::{AppError, GqlResult},
    graphql::ContextExt,
    service::ticket::{self, TRANSCRIPT_MAX},
};

/// Who said a line of a transcript.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum TranscriptAuthor {
    /// The visitor.
    Visitor,
    /// The bot.
    Bot,
}

/// One line of a conversation: a visitor's message or a bot's reply.
#[derive(SimpleObject, Clone)]
pub struct TranscriptEntry {
    /// The stored message.
    pub message_id: Uuid,
    /// The turn it belongs to.
    pub turn_id: Uuid,
    /// Who said it.
    pub author: TranscriptAuthor,
    /// `ANALYZING` for the visitor's message; `ANSWERED`, `FALLBACK`, `HANDOFF` or `INSUFFICIENT_CREDITS` for a reply.
    pub status: TurnStatus,
    /// What was said.
    pub text: String,
    /// When it was stored.
    pub created_at: DateTime<Utc>,
}

impl TryFrom<entity::chat_message::Model> for TranscriptEntry {
    type Error = AppError;
    fn try_from(m: entity::chat_message::Model) -> Result<Self, AppError> {
        let status = TurnStatus::from_stored(&m.status)?;
        Ok(Self {
            message_id: m.id,
            turn_id: m.turn_id,
            author: if status == TurnStatus::Analyzing {
                TranscriptAuthor::Visitor
            } else {
                TranscriptAuthor::Bot
            },
            status,
            text: m.text,
            created_at: m.created_at,
        })
    }
}

/// Transcript lines that count as one unit of query complexity.
const LINES_PER_UNIT: usize = 20;

/// The complexity of a transcript: its fields once per started batch of
/// [`LINES_PER_UNIT`] lines. A transcript is one indexed query for at most 200
/// short rows, so counting every line would price a ticket list with
/// transcripts out of reach without bounding any real cost.
fn transcript_cost(last: Option<i32>, child_complexity: usize) -> usize {
    let lines = last
        .unwrap_or(TRANSCRIPT_MAX as i32)
        .clamp(1, TRANSCRIPT_MAX as i32) as usize;
    1 + lines
        .div_ceil(LINES_PER_UNIT)
        .saturating_mul(child_complexity)
}

#[ComplexObject]
impl SupportTicket {
    /// The conversation the ticket came from, oldest first: the visitor's messages and the bot's replies (progress steps left out). Empty for contact-form tickets, which have no conversation.
    #[graphql(complexity = "transcript_cost(last, child_complexity)")]
    async fn transcript(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only the last this many lines, 1 to 200 (default 200).")] last: Option<
            i32,
        >,
    ) -> GqlResult<Vec<TranscriptEntry>> {
        let Some(session_id) = self.session_id else {
            return Ok(vec![]);
        };
        let last = match last {
            None => TRANSCRIPT_MAX,
            Some(n) if (1..=TRANSCRIPT_MAX as i32).contains(&n) => n as u64,
            Some(_) => {
                return Err(AppError::bad_input("last", "must be between 1 and 200").into());
            }
        };
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        let rows = ticket::transcript(st, &scope, session_id, last).await?;
        Ok(rows
            .into_iter()
            .map(TranscriptEntry::try_from)
            .collect::<Result<_, _>>()?)
    }
}

/// What a vote did.
#[derive(SimpleObject)]
pub struct SubmitFeedbackResult {
    /// Whether the vote was recorded. Always true when there is no error.
    pub ok: bool,
    /// The stored vote; voting again on the same message replaces it and keeps this id.
    pub feedback_id: Uuid,
    /// The support ticket a downvote with `openTicket` opened (or added to, when the session already had one open).
    pub ticket_id: Option<Uuid>,
}

/// What a hand-off request did.
#[derive(SimpleObject)]
pub struct RequestHandoffResult {
    /// Whether the team was told. Always true when there is no error.
    pub ok: bool,
    /// The bot's hand-off message, to show the visitor.
    pub message: String,
    /// The hand-off ticket; asking again in the same session returns the same one while it is not closed.
    pub ticket_id: Uuid,
    /// The turn carrying the `HANDOFF` event (follow it with `chatTurn`); null when the request repeated an earlier one.
    pub turn_id: Option<Uuid>,
}
