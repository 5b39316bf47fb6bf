//! Chat sessions, their messages and the feedback on them, as dashboards read them.

use entity::{chat_feedback, chat_message, chat_session};
use sea_orm::{ColumnTrait, QueryFilter};
use uuid::Uuid;

use super::{Page, PageArgs, get, paginate, scoped};
use crate::{auth::OrgScope, error::AppError, state::State};

/// Which sessions to list; every given filter must match.
#[derive(Debug, Clone, Default)]
pub struct SessionFilter {
    pub widget_id: Option<Uuid>,
    pub bot_id: Option<Uuid>,
    /// One visitor's sessions (identified visitors have one per device they started on before signing in).
    pub end_user_id: Option<Uuid>,
}

/// The caller's chat sessions, optionally of one widget, bot or visitor.
pub async fn list(
    st: &State,
    scope: &OrgScope,
    filter: SessionFilter,
    page: &PageArgs,
) -> Result<Page<chat_session::Model>, AppError> {
    let mut q = scoped::<chat_session::Entity>(scope);
    if let Some(w) = filter.widget_id {
        q = q.filter(chat_session::Column::ChatWidgetId.eq(w));
    }
    if let Some(b) = filter.bot_id {
        q = q.filter(chat_session::Column::BotId.eq(b));
    }
    if let Some(u) = filter.end_user_id {
        q = q.filter(chat_session::Column::EndUserId.eq(u));
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
