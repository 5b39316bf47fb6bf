//! Turn events: what is stored for each step of a turn and what subscribers
//! receive. Every event is stored first, then published on the turn's and
//! the session's topics, so a subscriber that misses a live message finds it
//! in the store.
//!
//! Except streamed answer chunks (`ANSWER_DELTA`): a long answer would be
//! dozens of rows on the one SQLite writer. They get their sequence numbers
//! and are published at once, but the [`Emitter`] holds them in memory and
//! stores them as **one** coalesced row (the chunks in `payload.parts`, the
//! row's `seq` the first chunk's) just before the turn's next stored event,
//! or, while the stream goes on, at most [`MAX_CHECKPOINTS`] times when the
//! oldest held chunk is [`CHECKPOINT_AFTER`] old. [`TurnEvent::from_stored`]
//! expands such a row back into the chunks with their own sequence numbers,
//! so a replay is the same stream as the live one, and a subscriber that
//! missed live chunks (another replica joining mid-answer, a lag, a Redis
//! outage) finds them in the store by the next checkpoint or the answer.

use std::{sync::Arc, time::Duration};

use tokio::time::Instant;

use async_graphql::{Enum, SimpleObject};
use chrono::{DateTime, Utc};
use entity::{chat_message, chat_session};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    domain::TurnStatus,
    error::AppError,
    service::{
        chat::{NewEvent, store_events},
        content::FlowStep,
    },
    state::State,
};

/// The bus topic of one turn.
pub fn turn_topic(turn_id: Uuid) -> String {
    format!("turn:{turn_id}")
}

/// The bus topic of one session.
pub fn session_topic(session_id: Uuid) -> String {
    format!("session:{session_id}")
}

/// A knowledge-base article an answer used.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, SimpleObject)]
#[serde(rename_all = "camelCase")]
pub struct Citation {
    /// The article's id.
    pub article_id: Uuid,
    /// The article's title.
    pub title: String,
}

/// Kind of product-tour content.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Enum)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ContentKind {
    /// A multi-step flow.
    Flow,
    /// A single tooltip.
    Tooltip,
}

/// A flow or tooltip the turn matched or generated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, SimpleObject)]
#[serde(rename_all = "camelCase")]
pub struct TurnContent {
    /// Flow or tooltip.
    pub kind: ContentKind,
    /// Its id.
    pub id: Uuid,
    /// Its name.
    pub name: String,
    /// The page it starts on.
    pub start_url: Option<String>,
    /// Its steps (one for a tooltip).
    pub steps: Vec<FlowStep>,
}

/// What a stored event carries besides its text, as JSON in `chat_messages.payload`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventPayload {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub citations: Vec<Citation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<TurnContent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub navigate_to: Option<String>,
    /// Whether the reply offers a hand-off to a human.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub handoff_offered: bool,
    /// Why the turn fell back (logged reason, never shown verbatim).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A coalesced `ANSWER_DELTA` row: its chunks, in order, the first at the
    /// row's `seq`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<String>,
}

/// One step of a chat turn, as subscribers and `sendMessage` see it.
#[derive(Clone, Debug, Serialize, Deserialize, SimpleObject)]
#[serde(rename_all = "camelCase")]
pub struct TurnEvent {
    /// Position in the turn: 1, 2, 3… with no gaps.
    pub seq: i32,
    /// The turn.
    pub turn_id: Uuid,
    /// The session.
    pub session_id: Uuid,
    /// The stored message of this step (vote on it with `submitFeedback`).
    pub message_id: Uuid,
    /// What happened.
    pub status: TurnStatus,
    /// The step's text: the visitor's message for `ANALYZING`, the full answer for `ANSWERED`, the canned reply for `FALLBACK`…
    pub text: String,
    /// For `ANSWER_DELTA`: the next piece of the answer.
    pub delta: Option<String>,
    /// Articles the answer used.
    pub citations: Vec<Citation>,
    /// Matched or generated flow or tooltip.
    pub content: Option<TurnContent>,
    /// Where the widget should navigate to start the content.
    pub navigate_to: Option<String>,
    /// Whether the reply offers a hand-off to a human.
    pub handoff_offered: bool,
    /// The model that produced this step (`extractive` without an LLM).
    pub model: Option<String>,
    /// Tokens the LLM call of this step used.
    pub tokens_used: i32,
    /// When it was stored.
    pub created_at: DateTime<Utc>,
}

impl TurnEvent {
    /// The events of a stored message: one, or a coalesced row's chunks.
    pub fn from_stored(m: &chat_message::Model) -> Result<Vec<Self>, AppError> {
        let mut first = Self::from_message(m)?;
        let payload: EventPayload = serde_json::from_value(m.payload.clone()).unwrap_or_default();
        if payload.parts.is_empty() {
            return Ok(vec![first]);
        }
        first.delta = None;
        Ok(payload
            .parts
            .into_iter()
            .zip(m.seq..)
            .map(|(part, seq)| Self {
                seq,
                delta: Some(part),
                ..first.clone()
            })
            .collect())
    }

    /// The event of a stored message (a coalesced row: its first chunk, see
    /// [`TurnEvent::from_stored`]); unknown statuses are a data error.
    pub fn from_message(m: &chat_message::Model) -> Result<Self, AppError> {
        let payload: EventPayload = serde_json::from_value(m.payload.clone()).unwrap_or_default();
        Ok(Self {
            seq: m.seq,
            turn_id: m.turn_id,
            session_id: m.session_id,
            message_id: m.id,
            status: TurnStatus::from_stored(&m.status)?,
            text: m.text.clone(),
            delta: payload.delta,
            citations: payload.citations,
            content: payload.content,
            navigate_to: payload.navigate_to,
            handoff_offered: payload.handoff_offered,
            model: m.model.clone(),
            tokens_used: m.tokens_used,
            created_at: m.created_at,
        })
    }
}

/// While an answer streams, held chunks are stored once the oldest is this
/// old, so a subscriber that missed them live waits at most about this long.
pub const CHECKPOINT_AFTER: Duration = Duration::from_secs(1);
/// Mid-stream stores per turn at most: with the first event, the final
/// coalesced chunks, the answer and `COMPLETED`, a turn writes at most 7
/// event rows whatever its length.
pub const MAX_CHECKPOINTS: u32 = 2;

/// Chunks published but not stored yet.
struct Held {
    /// The id the coalesced row will have (live chunks carry it already, so
    /// a vote or a dedupe by message id sees the same id live and replayed).
    message_id: Uuid,
    first_seq: i32,
    parts: Vec<String>,
    since: Instant,
}

/// Stores and publishes the events of one turn, numbering them.
pub struct Emitter {
    st: Arc<State>,
    pub session: chat_session::Model,
    pub turn_id: Uuid,
    next_seq: i32,
    held: Option<Held>,
    checkpoints: u32,
}

impl Emitter {
    /// An emitter for a new turn; its first event gets `seq` 1.
    pub fn new(st: Arc<State>, session: chat_session::Model, turn_id: Uuid) -> Self {
        Self {
            st,
            session,
            turn_id,
            next_seq: 1,
            held: None,
            checkpoints: 0,
        }
    }

    /// Stores the event, then publishes it on the turn and session topics
    /// (an `ANSWER_DELTA` is published at once and stored coalesced later).
    pub async fn emit(
        &mut self,
        status: TurnStatus,
        role: &'static str,
        text: impl Into<String>,
        payload: EventPayload,
        model: Option<String>,
        tokens_used: i32,
    ) -> Result<TurnEvent, AppError> {
        if status == TurnStatus::AnswerDelta {
            return self.emit_delta(payload.delta.unwrap_or_default()).await;
        }
        let seq = self.next_seq;
        let new = NewEvent {
            id: None,
            status,
            role,
            text: text.into(),
            payload: serde_json::to_value(&payload).map_err(AppError::internal)?,
            model,
            tokens_used,
        };
        // Held chunks go in with this event, in one statement.
        let mut rows = self.held_row()?.into_iter().collect::<Vec<_>>();
        rows.push((seq, new));
        let stored = store_events(&self.st.db, &self.session, self.turn_id, rows).await?;
        self.held = None;
        let stored = stored
            .last()
            .ok_or_else(|| AppError::internal("no event stored"))?;
        self.next_seq += 1;
        let event = TurnEvent::from_message(stored)?;
        self.publish(&event);
        Ok(event)
    }

    /// Publishes a chunk and holds it for the coalesced row.
    async fn emit_delta(&mut self, delta: String) -> Result<TurnEvent, AppError> {
        let seq = self.next_seq;
        self.next_seq += 1;
        let held = self.held.get_or_insert_with(|| Held {
            message_id: crate::service::new_id(),
            first_seq: seq,
            parts: vec![],
            since: Instant::now(),
        });
        held.parts.push(delta.clone());
        let event = TurnEvent {
            seq,
            turn_id: self.turn_id,
            session_id: self.session.id,
            message_id: held.message_id,
            status: TurnStatus::AnswerDelta,
            text: String::new(),
            delta: Some(delta),
            citations: vec![],
            content: None,
            navigate_to: None,
            handoff_offered: false,
            model: None,
            tokens_used: 0,
            created_at: Utc::now(),
        };
        let due = held.since.elapsed() >= CHECKPOINT_AFTER;
        self.publish(&event);
        if due && self.checkpoints < MAX_CHECKPOINTS {
            self.checkpoints += 1;
            self.store_held().await?;
        }
        Ok(event)
    }

    /// The held chunks as one row to store (none when none are held); they
    /// stay held until the row is stored.
    fn held_row(&self) -> Result<Option<(i32, NewEvent)>, AppError> {
        let Some(held) = &self.held else {
            return Ok(None);
        };
        let payload = EventPayload {
            parts: held.parts.clone(),
            ..Default::default()
        };
        Ok(Some((
            held.first_seq,
            NewEvent {
                id: Some(held.message_id),
                status: TurnStatus::AnswerDelta,
                role: "status",
                text: String::new(),
                payload: serde_json::to_value(&payload).map_err(AppError::internal)?,
                model: None,
                tokens_used: 0,
            },
        )))
    }

    /// Stores the held chunks as one row (a mid-stream checkpoint).
    async fn store_held(&mut self) -> Result<(), AppError> {
        let Some(row) = self.held_row()? else {
            return Ok(());
        };
        store_events(&self.st.db, &self.session, self.turn_id, vec![row]).await?;
        self.held = None;
        Ok(())
    }

    fn publish(&self, event: &TurnEvent) {
        match serde_json::to_string(event) {
            Ok(json) => {
                self.st.bus.publish(&turn_topic(self.turn_id), json.clone());
                self.st.bus.publish(&session_topic(self.session.id), json);
            }
            Err(err) => tracing::error!(%err, "turn event not serialisable"),
        }
    }
}
