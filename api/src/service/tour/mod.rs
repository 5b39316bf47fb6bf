//! Tours on visitors' pages: what starts by itself ([`visit`]), what the
//! walkthrough runtime reports ([`report`]), and what dashboards read about
//! it (runs and per-flow funnels, [`funnel`]).
//!
//! Both public calls come from `tour.js` with the visitor's session token
//! (the one `chat.js` keeps, or one they mint), like the chat's own calls:
//! the widget's allowed origins are checked by the resolver, the widget's
//! budget is charged here, every input is bounded. A token that no longer
//! opens its session (expired, deleted, another widget's) is treated as
//! absent rather than refused: these calls never read a conversation, and a
//! tour should not break on a stale token.
//!
//! A verified identity (the same `userId` / `userHash` / `traits` a chat
//! message carries) makes the visitor the identified end user, merging an
//! anonymous session into it, exactly as a chat turn does
//! (`identity::session_for`); audience rules see traits only then.

pub mod audience;
mod funnel;
mod report;
mod visit;

pub use funnel::{Funnel, FunnelStep, funnel};
pub use report::{Reported, TourEvent, TourReport, report};
pub use visit::{PageVisit, Visited, visit};

use chrono::Utc;
use entity::{bot, chat_session, chat_widget, tour_run};
use sea_orm::{ActiveValue::Set, ColumnTrait, QueryFilter};
use uuid::Uuid;

use super::{Page, PageArgs, chat, content, identity, new_id, paginate, scoped};
use crate::{
    auth::OrgScope,
    domain::{TourRunStatus, TourTrigger},
    error::AppError,
    state::State,
    turn::events::ContentKind,
};

/// What a new run row says before anything was seen.
struct NewRun<'a> {
    content_id: Uuid,
    kind: ContentKind,
    key: &'a str,
    trigger: TourTrigger,
    /// Steps the content has.
    steps: usize,
    page_url: Option<String>,
    /// Set on server-started runs: `end user:content` (see `visit`).
    auto_key: Option<String>,
}

/// The row of a new run of `session`'s visitor.
fn new_run(session: &chat_session::Model, run: NewRun<'_>) -> tour_run::ActiveModel {
    let now = Utc::now();
    tour_run::ActiveModel {
        id: Set(new_id()),
        org_id: Set(session.org_id),
        chat_widget_id: Set(session.chat_widget_id),
        session_id: Set(session.id),
        end_user_id: Set(session.end_user_id),
        content_id: Set(run.content_id),
        content_kind: Set(kind_name(run.kind).into()),
        run_key: Set(run.key.into()),
        trigger: Set(run.trigger.as_str().into()),
        status: Set(TourRunStatus::Started.as_str().into()),
        steps_total: Set(i32::try_from(run.steps.min(content::MAX_STEPS)).unwrap_or(0)),
        furthest_step: Set(0),
        seen_mask: Set(0),
        missing_mask: Set(0),
        target_missing: Set(0),
        dismissed_at_step: Set(None),
        last_missing: Set(None),
        page_url: Set(run.page_url),
        auto_key: Set(run.auto_key),
        created_at: Set(now),
        updated_at: Set(now),
        ended_at: Set(None),
    }
}

/// How a content kind is stored (`FLOW`, `TOOLTIP`).
fn kind_name(kind: ContentKind) -> &'static str {
    match kind {
        ContentKind::Flow => "FLOW",
        ContentKind::Tooltip => "TOOLTIP",
    }
}

/// Which runs a dashboard lists.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    /// Only runs of this flow or tooltip.
    pub content_id: Option<Uuid>,
    /// Only runs of this visitor.
    pub end_user_id: Option<Uuid>,
    /// Only runs of this chat widget.
    pub chat_widget_id: Option<Uuid>,
}

/// The caller's tour runs, oldest first.
pub async fn list(
    st: &State,
    scope: &OrgScope,
    filter: RunFilter,
    page: &PageArgs,
) -> Result<Page<tour_run::Model>, AppError> {
    let mut q = scoped::<tour_run::Entity>(scope);
    if let Some(c) = filter.content_id {
        q = q.filter(tour_run::Column::ContentId.eq(c));
    }
    if let Some(u) = filter.end_user_id {
        q = q.filter(tour_run::Column::EndUserId.eq(u));
    }
    if let Some(w) = filter.chat_widget_id {
        q = q.filter(tour_run::Column::ChatWidgetId.eq(w));
    }
    paginate(&st.db, q, page).await
}

/// The visitor behind a public tour call: the session `token` opens on this
/// widget's bot (if still valid), moved onto the verified identity if one
/// came (then `true`). Without an identity a token keeps its session even
/// when its visitor signed in (unlike a chat turn, which would read their
/// conversation, a tour call only records what ran), but their traits are
/// used only with the signed identity. `None` when there is neither a usable
/// token nor an identity: the caller decides whether a new anonymous session
/// is worth making.
async fn visitor_session(
    st: &State,
    widget: &chat_widget::Model,
    bot: &bot::Model,
    token: Option<&str>,
    claim: &identity::IdentityClaim,
) -> Result<(Option<chat_session::Model>, bool), AppError> {
    let verified = identity::verify(st, widget, claim)?;
    let current = match token {
        Some(t) => chat::verify_token_with_visitor(st, t)
            .await
            .ok()
            .filter(|(s, _)| s.chat_widget_id == Some(widget.id) && s.bot_id == bot.id),
        None => None,
    };
    if verified.is_none() {
        return Ok((current.map(|(s, _)| s), false));
    }
    Ok((
        Some(identity::session_for(st, bot, Some(widget), current, verified).await?),
        true,
    ))
}
