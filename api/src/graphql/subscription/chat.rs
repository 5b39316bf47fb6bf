//! Live turns: `chatTurn` for the widget following one turn, `sessionEvents`
//! for a dashboard watching a conversation.
//!
//! No gap and no duplicate whatever the timing: subscribe to the bus first,
//! then replay the store, then pass live events after the last replayed
//! sequence number. A live event that skips ahead (a lost or lagged message)
//! is filled in from the store, and an idle stream re-checks the store, so a
//! subscriber on any replica sees every event once, in order.

use std::{
    collections::{HashSet, VecDeque},
    time::Duration,
};

use async_graphql::{Context, Subscription};
use futures_util::{Stream, stream};
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use crate::{
    auth::Caller,
    domain::TurnStatus,
    error::{AppError, GqlError},
    graphql::ContextExt,
    pubsub::Subscription,
    service::chat,
    state::AppState,
    turn::events::{TurnEvent, session_topic, turn_topic},
};

/// How long a live stream waits before re-checking the store.
const IDLE_RECHECK: Duration = Duration::from_secs(10);
/// A turn subscription gives up after this long without completion.
const TURN_MAX: Duration = Duration::from_secs(600);
/// Events a `sessionEvents` subscription replays.
const SESSION_REPLAY: u64 = 200;

/// May the caller see session `session_id`? Another org's session is `NOT_FOUND`.
async fn authorize(
    st: &AppState,
    caller: &Caller,
    session_id: Uuid,
    token: Option<String>,
) -> Result<(), AppError> {
    let not_found = || AppError::not_found("chat session");
    match caller {
        Caller::Org(scope) => {
            crate::service::get::<entity::chat_session::Entity>(&st.db, scope, session_id)
                .await
                .map_err(|_| not_found())?;
            Ok(())
        }
        Caller::Public { .. } | Caller::Operator(_) => {
            let socket_token = match caller {
                Caller::Public { session_token } => session_token.clone(),
                _ => None,
            };
            let token = token.or(socket_token).ok_or(AppError::Unauthenticated(
                "a sessionToken (or an API key) is needed",
            ))?;
            let session = chat::verify_token(st, &token).await?;
            if session.id != session_id {
                return Err(not_found());
            }
            Ok(())
        }
    }
}

fn events(rows: Vec<entity::chat_message::Model>) -> VecDeque<TurnEvent> {
    rows.iter()
        .filter_map(|m| TurnEvent::from_message(m).ok())
        .collect()
}

struct TurnFollow {
    st: AppState,
    rx: Subscription,
    turn_id: Uuid,
    pending: VecDeque<TurnEvent>,
    last_seq: i32,
    done: bool,
    started: tokio::time::Instant,
}

impl TurnFollow {
    async fn fill(&mut self) {
        match chat::turn_events(&self.st.db, self.turn_id, self.last_seq).await {
            Ok(rows) => {
                for ev in events(rows) {
                    if ev.seq > self.pending.back().map_or(self.last_seq, |e| e.seq) {
                        self.pending.push_back(ev);
                    }
                }
            }
            Err(err) => tracing::warn!(%err, "chatTurn could not read the store"),
        }
    }

    async fn next(mut self) -> Option<(TurnEvent, Self)> {
        loop {
            if let Some(ev) = self.pending.pop_front() {
                if ev.seq <= self.last_seq {
                    continue;
                }
                self.last_seq = ev.seq;
                self.done = ev.status == TurnStatus::Completed;
                return Some((ev, self));
            }
            if self.done || self.started.elapsed() > TURN_MAX {
                return None;
            }
            match tokio::time::timeout(IDLE_RECHECK, self.rx.recv()).await {
                Ok(Ok(raw)) => {
                    let Ok(ev) = serde_json::from_str::<TurnEvent>(&raw) else {
                        continue;
                    };
                    if ev.seq <= self.last_seq {
                        continue;
                    }
                    if ev.seq == self.last_seq + 1 {
                        self.pending.push_back(ev);
                    } else {
                        self.fill().await;
                    }
                }
                Ok(Err(RecvError::Lagged(_))) | Err(_) => self.fill().await,
                Ok(Err(RecvError::Closed)) => {
                    self.fill().await;
                    if self.pending.is_empty() {
                        return None;
                    }
                }
            }
        }
    }
}

struct SessionFollow {
    st: AppState,
    rx: Subscription,
    session_id: Uuid,
    pending: VecDeque<TurnEvent>,
    seen: HashSet<Uuid>,
    last_id: Option<Uuid>,
}

impl SessionFollow {
    async fn fill(&mut self) {
        if let Ok(rows) =
            chat::session_events(&self.st.db, self.session_id, self.last_id, SESSION_REPLAY).await
        {
            self.pending.extend(events(rows));
        }
    }

    async fn next(mut self) -> Option<(TurnEvent, Self)> {
        loop {
            if let Some(ev) = self.pending.pop_front() {
                if !self.seen.insert(ev.message_id) {
                    continue;
                }
                if self.seen.len() > 10_000 {
                    self.seen.clear();
                    self.seen.insert(ev.message_id);
                }
                self.last_id = Some(self.last_id.map_or(ev.message_id, |l| l.max(ev.message_id)));
                return Some((ev, self));
            }
            match self.rx.recv().await {
                Ok(raw) => {
                    if let Ok(ev) = serde_json::from_str::<TurnEvent>(&raw) {
                        self.pending.push_back(ev);
                    }
                }
                Err(RecvError::Lagged(_)) => self.fill().await,
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

#[derive(Default)]
pub struct ChatSubscription;

#[Subscription]
impl ChatSubscription {
    /// Public: the events of one turn — first every stored one, then live ones — ending after `COMPLETED`. Needs the session's token (argument, or `sessionToken` in `connection_init`) or an API key of the org.
    async fn chat_turn(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The turn, from `startTurn`.")] turn_id: Uuid,
        #[graphql(desc = "The session token from `startTurn` or `sendMessage`.")]
        session_token: Option<String>,
    ) -> Result<impl Stream<Item = TurnEvent> + use<>, GqlError> {
        let st = ctx.state()?.clone();
        let session_id = chat::session_of_turn(&st.db, turn_id)
            .await?
            .ok_or_else(|| AppError::not_found("turn"))?;
        authorize(&st, &ctx.caller(), session_id, session_token)
            .await
            .map_err(|e| match e {
                AppError::NotFound { .. } => AppError::not_found("turn"),
                other => other,
            })?;
        let rx = st.bus.subscribe(&turn_topic(turn_id));
        let pending = events(chat::turn_events(&st.db, turn_id, 0).await?);
        let follow = TurnFollow {
            st,
            rx,
            turn_id,
            pending,
            last_seq: 0,
            done: false,
            started: tokio::time::Instant::now(),
        };
        Ok(stream::unfold(follow, TurnFollow::next))
    }

    /// Every event of a conversation: the last 200 stored ones, then live ones, for dashboards (API key) or the session's own token.
    async fn session_events(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The session.")] session_id: Uuid,
        #[graphql(desc = "The session's token, when not using an API key.")] session_token: Option<
            String,
        >,
    ) -> Result<impl Stream<Item = TurnEvent> + use<>, GqlError> {
        let st = ctx.state()?.clone();
        authorize(&st, &ctx.caller(), session_id, session_token).await?;
        let rx = st.bus.subscribe(&session_topic(session_id));
        let rows = chat::recent_session_events(&st.db, session_id, SESSION_REPLAY).await?;
        let follow = SessionFollow {
            st,
            rx,
            session_id,
            pending: events(rows),
            seen: HashSet::new(),
            last_id: None,
        };
        Ok(stream::unfold(follow, SessionFollow::next))
    }
}
