//! Chat sessions, their messages and the feedback on them, as dashboards read them.

use entity::{chat_feedback, chat_message, chat_session};
use sea_orm::{ColumnTrait, QueryFilter};
use uuid::Uuid;

use super::{Page, PageArgs, get, paginate, scoped};
use crate::{auth::OrgScope, error::AppError, state::State};

/// The caller's chat sessions, optionally of one widget or bot.
pub async fn list(
    st: &State,
    scope: &OrgScope,
    widget_id: Option<Uuid>,
    bot_id: Option<Uuid>,
    page: &PageArgs,
) -> Result<Page<chat_session::Model>, AppError> {
    let mut q = scoped::<chat_session::Entity>(scope);
    if let Some(w) = widget_id {
        q = q.filter(chat_session::Column::ChatWidgetId.eq(w));
    }
    if let Some(b) = bot_id {
        q = q.filter(chat_session::Column::BotId.eq(b));
    }
    paginate(&st.db, q, page).await
}

/// One of the caller's sessions.
pub async fn one(st: &State, scope: &OrgScope, id: Uuid) -> Result<chat_session::Model, AppError> {
    get::<chat_session::Entity>(&st.db, scope, id).await
}

/// A session's messages in order.
pub async fn messages(
    st: &State,
    scope: &OrgScope,
    session_id: Uuid,
    page: &PageArgs,
) -> Result<Page<chat_message::Model>, AppError> {
    let q = scoped::<chat_message::Entity>(scope)
        .filter(chat_message::Column::SessionId.eq(session_id));
    paginate(&st.db, q, page).await
}

/// The caller's feedback, optionally only up or down votes.
pub async fn feedback(
    st: &State,
    scope: &OrgScope,
    vote: Option<&str>,
    page: &PageArgs,
) -> Result<Page<chat_feedback::Model>, AppError> {
    let mut q = scoped::<chat_feedback::Entity>(scope);
    if let Some(v) = vote {
        q = q.filter(chat_feedback::Column::Vote.eq(v));
    }
    paginate(&st.db, q, page).await
}
