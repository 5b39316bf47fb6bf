//! Turn events: what is stored for each step of a turn and what subscribers
//! receive. Every event is stored first, then published on the turn's and
//! the session's topics, so a subscriber that misses a live message finds it
//! in the store.

use std::sync::Arc;

use async_graphql::{Enum, SimpleObject};
use chrono::{DateTime, Utc};
use entity::{chat_message, chat_session};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    domain::TurnStatus,
    error::AppError,
    service::{
        chat::{NewEvent, store_event},
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
    /// The event of a stored message; unknown statuses are a data error.
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

/// Stores and publishes the events of one turn, numbering them.
pub struct Emitter {
    st: Arc<State>,
    pub session: chat_session::Model,
    pub turn_id: Uuid,
    next_seq: i32,
}

impl Emitter {
    /// An emitter for a new turn; its first event gets `seq` 1.
    pub fn new(st: Arc<State>, session: chat_session::Model, turn_id: Uuid) -> Self {
        Self {
            st,
            session,
            turn_id,
            next_seq: 1,
        }
    }

    /// Stores the event, then publishes it on the turn and session topics.
    pub async fn emit(
        &mut self,
        status: TurnStatus,
        role: &'static str,
        text: impl Into<String>,
        payload: EventPayload,
        model: Option<String>,
        tokens_used: i32,
    ) -> Result<TurnEvent, AppError> {
        let seq = self.next_seq;
        let stored = store_event(
            &self.st.db,
            &self.session,
            self.turn_id,
            seq,
            NewEvent {
                status,
                role,
                text: text.into(),
                payload: serde_json::to_value(&payload).map_err(AppError::internal)?,
                model,
                tokens_used,
            },
        )
        .await?;
        self.next_seq += 1;
        let event = TurnEvent::from_message(&stored)?;
        match serde_json::to_string(&event) {
            Ok(json) => {
                self.st.bus.publish(&turn_topic(self.turn_id), json.clone());
                self.st.bus.publish(&session_topic(self.session.id), json);
            }
            Err(err) => tracing::error!(%err, "turn event not serialisable"),
        }
        Ok(event)
    }
}
