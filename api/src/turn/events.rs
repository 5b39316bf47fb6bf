//! Turn events: what is stored for each step of a turn and what subscribers
//! receive. Every event is stored first, then published on the turn's and
//! the session's topics, so a subscriber that misses a live message finds it
//! in the store.
//!
//! Except streamed answer chunks (`ANSWER_DELTA`): a long answer would be
//! dozens of rows on the one SQLite writer. They get their sequence numbers
//! and are published at once, but the [`Emitter`] holds them in memory and
//! stores them as **one** coalesced row (the chunks in `payload.parts`, the
//! row's `seq` the first chunk's) with the turn's next stored event.
//! [`TurnEvent::from_stored`] expands such a row back into the chunks with
//! their own sequence numbers, so a replay is the same stream as the live
//! one. While the stream goes on, the held chunks are stashed on the bus
//! every [`STASH_EVERY`] (one value per turn, replaced, not one per chunk;
//! no database write), so a subscriber that missed live chunks (another
//! replica joining mid-answer, a lag) finds them in the store and the stash
//! ([`stashed_chunks`]); through a Redis outage, other replicas find them
//! in the store with the answer.

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
    /// A streamed chunk of an answer.
    pub fn chunk(
        seq: i32,
        turn_id: Uuid,
        session_id: Uuid,
        message_id: Uuid,
        delta: String,
        created_at: DateTime<Utc>,
    ) -> Self {
        Self {
            seq,
            turn_id,
            session_id,
            message_id,
            status: TurnStatus::AnswerDelta,
            text: String::new(),
            delta: Some(delta),
            citations: vec![],
            content: None,
            navigate_to: None,
            handoff_offered: false,
            model: None,
            tokens_used: 0,
            created_at,
        }
    }

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

/// While an answer streams, the held chunks are stashed on the bus (not
/// stored) once the last stash is this old, so a subscriber that missed
/// chunks live waits at most about this long for them.
pub const STASH_EVERY: Duration = Duration::from_millis(250);
/// How long a stash outlives a turn that never stores its chunks (the
/// process died mid-answer): as long as a `chatTurn` follows a turn.
const STASH_TTL: Duration = Duration::from_secs(600);

/// The bus key of a turn's stashed chunks.
pub fn chunks_key(turn_id: Uuid) -> String {
    format!("chunks:{turn_id}")
}

/// A running turn's chunks published but not stored yet, as stashed on the
/// bus: compact (no per-chunk envelope), expanded by [`ChunkStash::events`].
#[derive(Debug, Serialize, Deserialize)]
pub struct ChunkStash {
    #[serde(rename = "m")]
    message_id: Uuid,
    #[serde(rename = "s")]
    session_id: Uuid,
    #[serde(rename = "f")]
    first_seq: i32,
    #[serde(rename = "p")]
    parts: Vec<String>,
    #[serde(rename = "t")]
    at: DateTime<Utc>,
}

impl ChunkStash {
    /// The stashed chunks as the events they were published as.
    pub fn events(self, turn_id: Uuid) -> Vec<TurnEvent> {
        let (message_id, session_id, at) = (self.message_id, self.session_id, self.at);
        self.parts
            .into_iter()
            .zip(self.first_seq..)
            .map(|(delta, seq)| TurnEvent::chunk(seq, turn_id, session_id, message_id, delta, at))
            .collect()
    }
}

/// The chunks turn `turn_id` has published and not stored yet, as far as
/// they were stashed (none when nothing is, or the bus cannot say).
pub async fn stashed_chunks(st: &State, turn_id: Uuid) -> Vec<TurnEvent> {
    let Some(raw) = st.bus.unstash(&chunks_key(turn_id)).await else {
        return vec![];
    };
    match serde_json::from_str::<ChunkStash>(&raw) {
        Ok(stash) => stash.events(turn_id),
        Err(err) => {
            tracing::warn!(%err, %turn_id, "undecodable chunk stash");
            vec![]
        }
    }
}

/// Chunks published but not stored yet.
struct Held {
    /// The id the coalesced row will have (live chunks carry it already, so
    /// a vote or a dedupe by message id sees the same id live and replayed).
    message_id: Uuid,
    first_seq: i32,
    parts: Vec<String>,
    /// When the held chunks were last stashed (or the first was held).
    stashed_at: Instant,
    /// Whether a stash of them is on the bus.
    stashed: bool,
}

/// Stores and publishes the events of one turn, numbering them.
///
/// What it writes, whatever the answer's length: each stored event is one
/// `INSERT`, the held chunks go in with the next one, and an event emitted
/// with [`Emitter::emit_with_next`] waits for the next one too, so an
/// answer, its chunks and `COMPLETED` are one statement.
pub struct Emitter {
    st: Arc<State>,
    pub session: chat_session::Model,
    pub turn_id: Uuid,
    next_seq: i32,
    held: Option<Held>,
    /// Events numbered but neither stored nor published yet: they go with
    /// the next stored event, in order.
    deferred: Vec<(i32, NewEvent)>,
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
            deferred: vec![],
        }
    }

    /// Stores the event (with the held chunks and deferred events before
    /// it), then publishes the deferred events and it on the turn and
    /// session topics. An `ANSWER_DELTA` is published at once and stored
    /// coalesced later.
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
        self.emit_with_next(status, role, text, payload, model, tokens_used)?;
        self.flush().await
    }

    /// Stores the held chunks and the deferred events in one statement, then
    /// publishes the deferred events (the chunks were published one by one
    /// already); returns the last one.
    async fn flush(&mut self) -> Result<TurnEvent, AppError> {
        let mut rows = self.held_row()?.into_iter().collect::<Vec<_>>();
        let deferred = self.deferred.len();
        rows.append(&mut self.deferred);
        let stored = store_events(&self.st.db, &self.session, self.turn_id, rows).await?;
        if let Some(held) = self.held.take()
            && held.stashed
        {
            self.st.bus.clear_stash(&chunks_key(self.turn_id));
        }
        let mut last = None;
        for m in &stored[stored.len() - deferred..] {
            let event = TurnEvent::from_message(m)?;
            self.publish(&event);
            last = Some(event);
        }
        last.ok_or_else(|| AppError::internal("no event stored"))
    }

    /// Numbers the event and keeps it to be stored and published with the
    /// next stored event (for an answer right before `COMPLETED`: one
    /// statement for both, and nothing published that is not stored yet, so
    /// a vote on it always finds it). Returns its message id.
    pub fn emit_with_next(
        &mut self,
        status: TurnStatus,
        role: &'static str,
        text: impl Into<String>,
        payload: EventPayload,
        model: Option<String>,
        tokens_used: i32,
    ) -> Result<Uuid, AppError> {
        let id = crate::service::new_id();
        let new = NewEvent {
            id: Some(id),
            status,
            role,
            text: text.into(),
            payload: serde_json::to_value(&payload).map_err(AppError::internal)?,
            model,
            tokens_used,
        };
        let seq = self.take_seq();
        self.deferred.push((seq, new));
        Ok(id)
    }

    fn take_seq(&mut self) -> i32 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// Publishes a chunk and holds it for the coalesced row.
    async fn emit_delta(&mut self, delta: String) -> Result<TurnEvent, AppError> {
        if !self.deferred.is_empty() {
            return Err(AppError::internal("a chunk after a deferred event"));
        }
        let seq = self.take_seq();
        let held = self.held.get_or_insert_with(|| Held {
            message_id: crate::service::new_id(),
            first_seq: seq,
            parts: vec![],
            stashed_at: Instant::now(),
            stashed: false,
        });
        held.parts.push(delta.clone());
        let event = TurnEvent::chunk(
            seq,
            self.turn_id,
            self.session.id,
            held.message_id,
            delta,
            Utc::now(),
        );
        // Stash before publishing: a subscriber that sees this chunk skip
        // ahead and reads the stash finds everything up to it.
        if held.stashed_at.elapsed() >= STASH_EVERY {
            let stash = ChunkStash {
                message_id: held.message_id,
                session_id: self.session.id,
                first_seq: held.first_seq,
                parts: held.parts.clone(),
                at: event.created_at,
            };
            match serde_json::to_string(&stash) {
                Ok(json) => {
                    self.st
                        .bus
                        .stash(&chunks_key(self.turn_id), json, STASH_TTL);
                    held.stashed = true;
                }
                Err(err) => tracing::error!(%err, "chunk stash not serialisable"),
            }
            held.stashed_at = Instant::now();
        }
        self.publish(&event);
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
