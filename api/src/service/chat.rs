//! Chat sessions and turn events: session tokens, the end user and session a
//! first message creates, and the stored-then-published events of a turn.

use chrono::{DateTime, TimeDelta, Utc};
use entity::{chat_message, chat_session, chat_widget, end_user};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection,
    EntityTrait, JoinType, QueryFilter, QueryOrder, QuerySelect, sea_query::Expr,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::new_id;
use crate::{domain::TurnStatus, error::AppError, state::State};

/// Token purpose of session tokens.
const SESSION_PURPOSE: &str = "chat-session";

/// What a session token proves: the holder may continue this session of this widget (or bot).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SessionClaims {
    /// Session id.
    pub s: Uuid,
    /// Org id.
    pub o: Uuid,
    /// Widget id (`None` for a dashboard session on a bot).
    pub w: Option<Uuid>,
}

/// Mints the signed token of a session.
pub fn mint_token(st: &State, session: &chat_session::Model) -> Result<String, AppError> {
    let claims = SessionClaims {
        s: session.id,
        o: session.org_id,
        w: session.chat_widget_id,
    };
    let payload = serde_json::to_vec(&claims).map_err(AppError::internal)?;
    Ok(st.secret.sign(SESSION_PURPOSE, &payload))
}

/// What a visitor whose session has gone quiet for longer than the TTL is told.
pub const SESSION_EXPIRED: &str = "session expired: start a new conversation";

/// Longest session TTL honoured, in days (a hundred years: keeps the date arithmetic in range).
const SESSION_TTL_MAX_DAYS: u64 = 36_500;

/// The session a token unlocks. A forged or tampered token, or one whose
/// session is gone (deleted, or with its widget or bot), is `FORBIDDEN`
/// ("invalid session token"); so is one whose session's last turn is older
/// than `WAYFINDER_SESSION_TTL_DAYS` ([`SESSION_EXPIRED`]). Every public
/// operation that takes a token comes through here.
pub async fn verify_token(st: &State, token: &str) -> Result<chat_session::Model, AppError> {
    let claims = token_claims(st, token)?;
    let session = chat_session::Entity::find_by_id(claims.s)
        .one(&st.db)
        .await?;
    checked(st, &claims, session)
}

/// [`verify_token`], and the session's visitor read with it (one joined
/// statement): a turn decides whose conversation it continues from both.
pub async fn verify_token_with_visitor(
    st: &State,
    token: &str,
) -> Result<(chat_session::Model, Option<end_user::Model>), AppError> {
    let claims = token_claims(st, token)?;
    let visitor = chat_session::Entity::belongs_to(end_user::Entity)
        .from(chat_session::Column::EndUserId)
        .to(end_user::Column::Id);
    let (session, visitor) = match chat_session::Entity::find_by_id(claims.s)
        .join(JoinType::LeftJoin, visitor.into())
        .select_also(end_user::Entity)
        .one(&st.db)
        .await?
    {
        Some((session, visitor)) => (Some(session), visitor),
        None => (None, None),
    };
    Ok((checked(st, &claims, session)?, visitor))
}

fn token_claims(st: &State, token: &str) -> Result<SessionClaims, AppError> {
    let payload = st
        .secret
        .verify(SESSION_PURPOSE, token)
        .ok_or_else(invalid_token)?;
    serde_json::from_slice(&payload).map_err(|_| invalid_token())
}

fn invalid_token() -> AppError {
    AppError::Forbidden("invalid session token".into())
}

/// The token's session, if it is the one the token was minted for and live.
fn checked(
    st: &State,
    claims: &SessionClaims,
    session: Option<chat_session::Model>,
) -> Result<chat_session::Model, AppError> {
    let session = session.ok_or_else(invalid_token)?;
    if session.org_id != claims.o || session.chat_widget_id != claims.w {
        return Err(invalid_token());
    }
    if session_expired(&session, st.config.session_ttl_days, Utc::now()) {
        return Err(AppError::Forbidden(SESSION_EXPIRED.into()));
    }
    Ok(session)
}

/// Whether `session` has gone quiet for longer than the configured TTL.
pub fn session_expired_now(st: &State, session: &chat_session::Model) -> bool {
    session_expired(session, st.config.session_ttl_days, Utc::now())
}

/// Whether `session`'s last turn is more than `ttl_days` before `now`.
fn session_expired(session: &chat_session::Model, ttl_days: u64, now: DateTime<Utc>) -> bool {
    let days = i64::try_from(ttl_days.min(SESSION_TTL_MAX_DAYS)).unwrap_or(i64::MAX);
    session.updated_at + TimeDelta::days(days) < now
}

/// Bumps the session's `updated_at`: a row write that also takes the
/// session's row lock (callers in a transaction use that to serialise).
pub async fn touch_session(db: &impl ConnectionTrait, session_id: Uuid) -> Result<(), AppError> {
    chat_session::Entity::update_many()
        .col_expr(chat_session::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(chat_session::Column::Id.eq(session_id))
        .exec(db)
        .await?;
    Ok(())
}

/// A session's last turn is recorded at most this often: its TTL counts in
/// days, and a visitor's burst of turns should not write the session row for
/// each one (a new session was created just now anyway).
const TOUCH_EVERY: TimeDelta = TimeDelta::minutes(1);

/// Records that a turn started in `session`: its token's TTL counts from
/// now (give or take [`TOUCH_EVERY`]). Never fails the turn (the visitor's
/// message is already stored); a failed write is logged and only shortens
/// that session's life.
pub async fn turn_started(db: &impl ConnectionTrait, session: &chat_session::Model) {
    if Utc::now() - session.updated_at < TOUCH_EVERY {
        return;
    }
    let session_id = session.id;
    if let Err(err) = touch_session(db, session_id).await {
        tracing::warn!(%err, %session_id, "could not bump the session's last turn");
    }
}

/// A new anonymous end user and a session for them on `widget` (or on `bot_id` alone, for dashboards).
pub async fn start_session(
    db: &DatabaseConnection,
    org_id: Uuid,
    bot_id: Uuid,
    widget: Option<&chat_widget::Model>,
) -> Result<chat_session::Model, AppError> {
    let now = Utc::now();
    let txn = crate::service::begin_write(db).await?;
    let user = end_user::ActiveModel {
        id: Set(new_id()),
        org_id: Set(org_id),
        chat_widget_id: Set(widget.map(|w| w.id)),
        external_id: Set(None),
        anonymous: Set(true),
        traits: Set(serde_json::json!({})),
        host_traits: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await?;
    let session = chat_session::ActiveModel {
        id: Set(new_id()),
        org_id: Set(org_id),
        bot_id: Set(bot_id),
        chat_widget_id: Set(widget.map(|w| w.id)),
        end_user_id: Set(Some(user.id)),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await?;
    txn.commit().await?;
    Ok(session)
}

/// One event to store as a chat message.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// The row's id when chosen beforehand (a coalesced answer's chunks
    /// were published with it); a new one otherwise.
    pub id: Option<Uuid>,
    pub status: TurnStatus,
    /// `user`, `bot` or `status`.
    pub role: &'static str,
    pub text: String,
    pub payload: serde_json::Value,
    pub model: Option<String>,
    pub tokens_used: i32,
}

/// Stores several events of one turn (each with its `seq`) in one statement,
/// in order; returns them as stored.
pub async fn store_events(
    db: &impl ConnectionTrait,
    session: &chat_session::Model,
    turn_id: Uuid,
    events: Vec<(i32, NewEvent)>,
) -> Result<Vec<chat_message::Model>, AppError> {
    let now = Utc::now();
    let models: Vec<chat_message::Model> = events
        .into_iter()
        .map(|(seq, ev)| chat_message::Model {
            id: ev.id.unwrap_or_else(new_id),
            org_id: session.org_id,
            session_id: session.id,
            turn_id,
            seq,
            role: ev.role.to_string(),
            status: ev.status.as_str().to_string(),
            text: ev.text,
            payload: ev.payload,
            model: ev.model,
            tokens_used: ev.tokens_used,
            created_at: now,
        })
        .collect();
    if models.is_empty() {
        return Ok(models);
    }
    let rows = models.iter().map(|m| chat_message::ActiveModel {
        id: Set(m.id),
        org_id: Set(m.org_id),
        session_id: Set(m.session_id),
        turn_id: Set(m.turn_id),
        seq: Set(m.seq),
        role: Set(m.role.clone()),
        status: Set(m.status.clone()),
        text: Set(m.text.clone()),
        payload: Set(m.payload.clone()),
        model: Set(m.model.clone()),
        tokens_used: Set(m.tokens_used),
        created_at: Set(m.created_at),
    });
    chat_message::Entity::insert_many(rows).exec(db).await?;
    Ok(models)
}

/// A turn's stored events after `after_seq`, in order.
pub async fn turn_events(
    db: &DatabaseConnection,
    turn_id: Uuid,
    after_seq: i32,
) -> Result<Vec<chat_message::Model>, AppError> {
    Ok(chat_message::Entity::find()
        .filter(chat_message::Column::TurnId.eq(turn_id))
        .filter(chat_message::Column::Seq.gt(after_seq))
        .order_by_asc(chat_message::Column::Seq)
        .limit(5_000)
        .all(db)
        .await?)
}

/// The session's last `limit` stored events, oldest first.
pub async fn recent_session_events(
    db: &DatabaseConnection,
    session_id: Uuid,
    limit: u64,
) -> Result<Vec<chat_message::Model>, AppError> {
    let mut rows = chat_message::Entity::find()
        .filter(chat_message::Column::SessionId.eq(session_id))
        .order_by_desc(chat_message::Column::Id)
        .limit(limit.min(10_000))
        .all(db)
        .await?;
    rows.reverse();
    Ok(rows)
}

/// The session's stored events after message `after` (by id), oldest first, at most `limit`.
pub async fn session_events(
    db: &DatabaseConnection,
    session_id: Uuid,
    after: Option<Uuid>,
    limit: u64,
) -> Result<Vec<chat_message::Model>, AppError> {
    let mut q = chat_message::Entity::find().filter(chat_message::Column::SessionId.eq(session_id));
    if let Some(a) = after {
        q = q.filter(chat_message::Column::Id.gt(a));
    }
    Ok(q.order_by_asc(chat_message::Column::Id)
        .limit(limit.min(10_000))
        .all(db)
        .await?)
}

/// The last `turns` exchanges of a session (user message, final bot text), oldest first.
pub async fn history(
    db: &DatabaseConnection,
    session_id: Uuid,
    before_turn: Uuid,
    turns: u64,
) -> Result<Vec<(String, String)>, AppError> {
    let rows = chat_message::Entity::find()
        .filter(chat_message::Column::SessionId.eq(session_id))
        .filter(chat_message::Column::TurnId.ne(before_turn))
        .filter(chat_message::Column::Status.is_in([
            TurnStatus::Analyzing.as_str(),
            TurnStatus::Answered.as_str(),
            TurnStatus::Fallback.as_str(),
        ]))
        .order_by_desc(chat_message::Column::Id)
        .limit(turns * 3)
        .all(db)
        .await?;
    let mut out: Vec<(Uuid, String, String)> = vec![];
    for m in rows.into_iter().rev() {
        if m.role == "user" {
            out.push((m.turn_id, m.text, String::new()));
        } else if let Some(last) = out.last_mut()
            && last.0 == m.turn_id
        {
            last.2 = m.text;
        }
    }
    let skip = out.len().saturating_sub(turns as usize);
    Ok(out
        .into_iter()
        .skip(skip)
        .filter(|(_, _, a)| !a.is_empty())
        .map(|(_, q, a)| (q, a))
        .collect())
}

/// Whether `turn_id` belongs to `session_id`.
pub async fn turn_in_session(
    db: &DatabaseConnection,
    turn_id: Uuid,
    session_id: Uuid,
) -> Result<bool, AppError> {
    Ok(chat_message::Entity::find()
        .filter(chat_message::Column::TurnId.eq(turn_id))
        .filter(chat_message::Column::SessionId.eq(session_id))
        .one(db)
        .await?
        .is_some())
}
