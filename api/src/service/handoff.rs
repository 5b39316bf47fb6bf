//! Hand-off to a human: the visitor asks for a person, the conversation
//! becomes a `HANDOFF` ticket, and the chat shows the bot's hand-off message
//! as a turn of its own (`HANDOFF`, then `COMPLETED`) that every subscriber of
//! the session sees.
//!
//! One unclosed hand-off ticket per session: asking again answers with the
//! same ticket and the same message, and writes nothing, so a button mashed
//! a hundred times still makes one ticket.

use async_graphql::InputObject;
use entity::bot;
use sea_orm::EntityTrait;
use uuid::Uuid;

use super::{
    chat, event, new_id,
    ticket::{self, NewTicket},
};
use crate::{
    auth::Caller,
    domain::{self, TicketSource, TurnStatus},
    error::AppError,
    state::AppState,
    turn::events::{Emitter, EventPayload},
};

/// Longest note a visitor may add to a hand-off.
pub const NOTE_MAX: usize = domain::SHORT_TEXT_MAX;
/// The ticket text when the visitor adds no note.
const DEFAULT_NOTE: &str = "The visitor asked to talk to a person.";

/// A visitor asking for a person. (`Debug` never shows the session token.)
#[derive(InputObject)]
pub struct RequestHandoffInput {
    /// The session's token (or `sessionToken` in `connection_init`).
    #[graphql(secret)]
    pub session_token: Option<String>,
    /// Where the team can answer; defaults to the email the visitor gave in the chat, if any.
    pub email: Option<String>,
    /// Anything the visitor wants to add (at most 2,000 characters).
    pub note: Option<String>,
}

impl std::fmt::Debug for RequestHandoffInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestHandoffInput")
            .field(
                "session_token",
                &crate::secret::redacted(&self.session_token),
            )
            .field("email", &self.email)
            .field("note", &self.note)
            .finish()
    }
}

/// What a hand-off request did.
#[derive(Debug, Clone)]
pub struct HandoffOutcome {
    /// The bot's hand-off message, to show the visitor.
    pub message: String,
    /// The hand-off ticket (the existing one when the session already had one).
    pub ticket_id: Uuid,
    /// The turn that carries the `HANDOFF` event; `None` when the request repeated an earlier one.
    pub turn_id: Option<Uuid>,
}

/// Trims `v`; empty is `None`.
fn present(v: Option<&str>) -> Option<&str> {
    v.map(str::trim).filter(|s| !s.is_empty())
}

/// Hands the session of `input.session_token` off to a person: opens a
/// `HANDOFF` ticket (recording `ticket.created`), then emits the bot's hand-off
/// message as a `HANDOFF` turn event. A session that already has an unclosed
/// hand-off ticket gets that ticket back and nothing new is written.
#[tracing::instrument(skip_all, fields(org_id, session_id, ticket_id))]
pub async fn request(
    st: &AppState,
    caller: &Caller,
    input: RequestHandoffInput,
) -> Result<HandoffOutcome, AppError> {
    let email = present(input.email.as_deref())
        .map(|e| domain::email("input.email", e))
        .transpose()?;
    let note = present(input.note.as_deref())
        .map(|n| domain::text("input.note", n, 1, NOTE_MAX))
        .transpose()?;
    let token = present(input.session_token.as_deref())
        .map(str::to_string)
        .or_else(|| match caller {
            Caller::Public { session_token } => session_token.clone(),
            Caller::Org(_) | Caller::Operator(_) => None,
        })
        .ok_or_else(|| AppError::bad_input("input.sessionToken", "the session token is needed"))?;
    let session = chat::verify_token(st, &token).await?;
    let span = tracing::Span::current();
    span.record("org_id", tracing::field::display(session.org_id));
    span.record("session_id", tracing::field::display(session.id));
    let bot = bot::Entity::find_by_id(session.bot_id)
        .one(&st.db)
        .await?
        .ok_or_else(|| AppError::internal("session without bot"))?;
    if !bot.fallback_to_human {
        return Err(AppError::Forbidden(
            "this bot does not hand conversations off to people".into(),
        ));
    }

    let known = crate::service::identity::ticket_contact(&st.db, session.id).await?;
    let txn = crate::service::begin_write(&st.db).await?;
    // Writing the session row first serialises concurrent requests of one
    // session, so a double click can't open two tickets.
    chat::touch_session(&txn, session.id).await?;
    if let Some(existing) =
        ticket::unclosed_for_session(&txn, session.id, TicketSource::Handoff).await?
    {
        txn.commit().await?;
        span.record("ticket_id", tracing::field::display(existing.id));
        return Ok(HandoffOutcome {
            message: bot.handoff_message,
            ticket_id: existing.id,
            turn_id: None,
        });
    }
    let ticket = ticket::open(
        &txn,
        NewTicket {
            org_id: session.org_id,
            source: TicketSource::Handoff,
            name: known.name,
            email: email.or(known.email),
            message: note.unwrap_or_else(|| DEFAULT_NOTE.to_string()),
            session_id: Some(session.id),
            end_user_id: known.end_user_id,
            user_id: known.user_id,
        },
    )
    .await?;
    let ev = event::record(
        &txn,
        session.org_id,
        "ticket.created",
        ticket::event_payload(&ticket),
    )
    .await?;
    txn.commit().await?;
    event::publish(st, &[ev]).await;
    span.record("ticket_id", tracing::field::display(ticket.id));

    // The ticket is what matters; a failure to show the message is logged, not returned.
    let turn_id = new_id();
    let mut emitter = Emitter::new(st.clone(), session, turn_id);
    let shown = emitter
        .emit(
            TurnStatus::Handoff,
            "bot",
            bot.handoff_message.clone(),
            EventPayload::default(),
            None,
            0,
        )
        .await;
    match shown {
        Ok(_) => {
            if let Err(err) = emitter
                .emit(
                    TurnStatus::Completed,
                    "status",
                    "",
                    EventPayload::default(),
                    None,
                    0,
                )
                .await
            {
                tracing::error!(%err, "could not store COMPLETED of the hand-off turn");
            }
        }
        Err(err) => tracing::error!(%err, "could not store the HANDOFF event"),
    }
    Ok(HandoffOutcome {
        message: bot.handoff_message,
        ticket_id: ticket.id,
        turn_id: Some(turn_id),
    })
}
