//! The public chat operations: `sendMessage` runs a whole turn, `startTurn`
//! returns at once and runs it in the background (follow it with `chatTurn`).

use async_graphql::{Context, InputObject, Object, SimpleObject};
use uuid::Uuid;

use crate::{
    domain::TurnStatus,
    error::GqlResult,
    graphql::ContextExt,
    turn::{
        self, TurnRequest,
        events::{Citation, TurnContent},
    },
};

/// A visitor's message. Public callers give `widgetId`; dashboards with an API key may give `botId` instead.
#[derive(InputObject)]
pub struct TurnInput {
    /// The public widget id.
    pub widget_id: Option<Uuid>,
    /// A bot of the caller's org (API key only), to test it without a widget.
    pub bot_id: Option<Uuid>,
    /// What the visitor wrote (1 to 4,000 characters).
    pub message: String,
    /// The token of an earlier answer, to continue that conversation; omit to start a new one.
    #[graphql(secret)]
    pub session_token: Option<String>,
    /// The page the visitor is on.
    pub page_url: Option<String>,
    /// The host app's id of a signed-in visitor (1 to 255 bytes), with `userHash`. A verified identity makes the visitor one end user of this widget across devices and sessions.
    pub user_id: Option<String>,
    /// `hex(HMAC-SHA256(identitySecret, userId))`, computed by the host app's server with the widget's identity secret. A wrong or missing hash is `FORBIDDEN` on a widget with `identityRequired`; elsewhere the visitor stays anonymous.
    #[graphql(secret)]
    pub user_hash: Option<String>,
    /// Profile traits of the signed-in visitor (name, email, plan, company, custom keys): an object of at most 50 string, number, boolean or null values, names of 1 to 64 letters, digits, `_`, `-` or `.`, strings up to 1,000 characters, 8 KiB in all. They win over traits extracted from the chat. Only with `userId` and `userHash`.
    pub traits: Option<async_graphql::Json<serde_json::Value>>,
}

impl From<TurnInput> for TurnRequest {
    fn from(i: TurnInput) -> Self {
        Self {
            widget_id: i.widget_id,
            bot_id: i.bot_id,
            message: i.message,
            session_token: i.session_token,
            page_url: i.page_url,
            identity: crate::service::identity::IdentityClaim {
                user_id: i.user_id,
                user_hash: i.user_hash,
                traits: i.traits.map(|t| t.0),
            },
        }
    }
}

/// A started turn: subscribe to `chatTurn(turnId, sessionToken)` for its events.
#[derive(SimpleObject)]
pub struct StartedTurnResult {
    /// The turn.
    pub turn_id: Uuid,
    /// The session (new or continued).
    pub session_id: Uuid,
    /// Send it back with the next message to continue the conversation.
    pub session_token: String,
}

/// A finished turn.
#[derive(SimpleObject)]
pub struct SendMessageResult {
    /// The turn.
    pub turn_id: Uuid,
    /// The session (new or continued).
    pub session_id: Uuid,
    /// Send it back with the next message to continue the conversation.
    pub session_token: String,
    /// How the turn answered: `ANSWERED`, `FALLBACK`, …
    pub status: TurnStatus,
    /// The reply.
    pub text: String,
    /// Articles the reply used.
    pub citations: Vec<Citation>,
    /// Matched or generated flow or tooltip.
    pub content: Option<TurnContent>,
    /// Where to navigate to start the content.
    pub navigate_to: Option<String>,
    /// Whether the reply offers a hand-off to a human.
    pub handoff_offered: bool,
    /// The stored reply (vote on it with `submitFeedback`).
    pub message_id: Option<Uuid>,
    /// The model that answered (`extractive` without an LLM).
    pub model: Option<String>,
}

#[derive(Default)]
pub struct ChatMutation;

#[Object]
impl ChatMutation {
    /// Public: runs a whole chat turn and returns the reply. The user message is stored before anything else.
    async fn send_message(
        &self,
        ctx: &Context<'_>,
        input: TurnInput,
    ) -> GqlResult<SendMessageResult> {
        let st = ctx.state()?.clone();
        crate::http::origin::check_widget_id(ctx, input.widget_id).await?;
        let started = turn::start(&st, &ctx.caller(), input.into()).await?;
        let (turn_id, session_id, session_token) = (
            started.turn_id,
            started.session_id,
            started.session_token.clone(),
        );
        // Run detached so a client that disconnects mid-turn can't cut the turn short.
        let outcome = tokio::spawn(turn::run(st, started))
            .await
            .map_err(crate::error::AppError::internal)?;
        Ok(SendMessageResult {
            turn_id,
            session_id,
            session_token,
            status: outcome.status,
            text: outcome.text,
            citations: outcome.citations,
            content: outcome.content,
            navigate_to: outcome.navigate_to,
            handoff_offered: outcome.handoff_offered,
            message_id: outcome.message_id,
            model: outcome.model,
        })
    }

    /// Public: stores the message and returns at once; the turn runs in the background. Follow it with `chatTurn`.
    async fn start_turn(
        &self,
        ctx: &Context<'_>,
        input: TurnInput,
    ) -> GqlResult<StartedTurnResult> {
        let st = ctx.state()?.clone();
        crate::http::origin::check_widget_id(ctx, input.widget_id).await?;
        let started = turn::start(&st, &ctx.caller(), input.into()).await?;
        let result = StartedTurnResult {
            turn_id: started.turn_id,
            session_id: started.session_id,
            session_token: started.session_token.clone(),
        };
        tokio::spawn(turn::run(st, started));
        Ok(result)
    }
}
