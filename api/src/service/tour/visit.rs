//! `visitPage`: which flow or tooltip, if any, starts by itself on the page
//! a visitor just opened.
//!
//! Candidates are the published content of the widget's site with an
//! `autoStart` pattern the page URL matches and an audience of `ALL`, or
//! `RULES` that hold for the visitor (host-app traits of a verified identity,
//! whether they are identified, the page URL; see [`super::audience`]).
//! `NO_USERS` content never starts by itself. The oldest candidate this
//! visitor has not been auto-started on wins, and its run is recorded at
//! once with an `auto_key` of `end user:content`: that key's unique index is
//! what keeps it to once per visitor, even when two tabs ask at the same
//! moment. An anonymous visitor without a session gets one only when there
//! is something to start (so plain page views store nothing).

use std::collections::HashSet;

use entity::{end_user, flow, tooltip, tour_run};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{NewRun, audience, new_run, visitor_session};
use crate::{
    domain::{self, Audience, ContentStatus, TourTrigger},
    error::AppError,
    service::{chat, chat_widget, identity},
    state::State,
    turn::{
        events::TurnContent,
        matcher::{flow_content, tooltip_content},
    },
};

/// Most auto-start candidates looked at per page view.
const MAX_CANDIDATES: u64 = 200;

/// A page view, as `tour.js` reports it.
#[derive(Debug, Clone)]
pub struct PageVisit {
    pub widget_id: Uuid,
    pub session_token: Option<String>,
    pub page_url: String,
    pub identity: identity::IdentityClaim,
    /// Whether the caller is public (charged to the widget's budget).
    pub public: bool,
}

/// What the page should do.
#[derive(Debug, Clone)]
pub struct Visited {
    /// The visitor's session (and a token for it), when there is one.
    pub session: Option<(Uuid, String)>,
    /// The content to start now, if any.
    pub content: Option<TurnContent>,
    /// The run key to report it under.
    pub run_key: Option<String>,
}

/// One auto-start candidate.
struct Candidate {
    id: Uuid,
    audience: String,
    rules: Value,
    content: TurnContent,
}

/// Answers a page view: the session, and the content to auto-start (see the module docs).
#[tracing::instrument(skip_all, fields(widget_id = %v.widget_id))]
pub async fn visit(st: &State, v: PageVisit) -> Result<Visited, AppError> {
    let page_url = domain::http_url("input.pageUrl", &v.page_url)?;
    let (widget, bot) = chat_widget::public(st, v.widget_id)
        .await
        .map_err(|_| AppError::not_found_in("chat widget", "input.widgetId"))?;
    if v.public {
        chat_widget::charge(st, widget.id).await?;
    }
    let (mut session, verified) =
        visitor_session(st, &widget, &bot, v.session_token.as_deref(), &v.identity).await?;
    let user = match session.as_ref().and_then(|s| s.end_user_id) {
        Some(id) => end_user::Entity::find_by_id(id).one(&st.db).await?,
        None => None,
    };
    let identified = verified && user.as_ref().is_some_and(|u| u.external_id.is_some());
    // Only traits the host app signed target: chat-extracted ones are what anyone typed.
    let traits: Option<Map<String, Value>> = user
        .as_ref()
        .filter(|_| identified)
        .map(identity::host_traits);
    let visitor = audience::Visitor {
        traits: traits.as_ref(),
        identified,
        page_url: &page_url,
    };
    let candidates = match bot.site_id {
        Some(site_id) => candidates(st, widget.org_id, site_id, &page_url).await?,
        None => vec![],
    };
    let eligible: Vec<Candidate> = candidates
        .into_iter()
        .filter(|c| !c.content.steps.is_empty())
        .filter(|c| match Audience::from_stored(&c.audience) {
            Ok(Audience::All) => true,
            Ok(Audience::Rules) => audience::parse("audienceRules", &c.rules)
                .is_ok_and(|r| !c.rules.is_null() && audience::holds(&r, &visitor)),
            _ => false,
        })
        .collect();
    let mut content = None;
    let mut run_key = None;
    if !eligible.is_empty() {
        let already: HashSet<Uuid> = match user.as_ref() {
            Some(u) => tour_run::Entity::find()
                .select_only()
                .column(tour_run::Column::ContentId)
                .filter(tour_run::Column::EndUserId.eq(u.id))
                .filter(tour_run::Column::Trigger.eq(TourTrigger::Auto.as_str()))
                .filter(tour_run::Column::ContentId.is_in(eligible.iter().map(|c| c.id)))
                .into_tuple()
                .all(&st.db)
                .await?
                .into_iter()
                .collect(),
            None => HashSet::new(),
        };
        for c in eligible.into_iter().filter(|c| !already.contains(&c.id)) {
            let s = match session.take() {
                Some(s) => s,
                None => chat::start_session(&st.db, bot.org_id, bot.id, Some(&widget)).await?,
            };
            let key = format!("auto-{}", c.id.simple());
            let started = record_auto_run(st, &s, &c, &key, &page_url).await?;
            session = Some(s);
            if started {
                run_key = Some(key);
                content = Some(c.content);
                break;
            }
        }
    }
    let session = match session {
        Some(s) => Some((s.id, chat::mint_token(st, &s)?)),
        None => None,
    };
    Ok(Visited {
        session,
        content,
        run_key,
    })
}

/// Published content of the site that may show to more than one visitor and
/// auto-starts on `page_url`, oldest first.
async fn candidates(
    st: &State,
    org_id: Uuid,
    site_id: Uuid,
    page_url: &str,
) -> Result<Vec<Candidate>, AppError> {
    let published = ContentStatus::Published.as_str();
    let no_users = Audience::NoUsers.as_str();
    let flows = flow::Entity::find()
        .filter(flow::Column::OrgId.eq(org_id))
        .filter(flow::Column::SiteId.eq(site_id))
        .filter(flow::Column::Status.eq(published))
        .filter(flow::Column::Audience.ne(no_users))
        .filter(flow::Column::AutoStart.is_not_null())
        .order_by_asc(flow::Column::Id)
        .limit(MAX_CANDIDATES)
        .all(&st.db)
        .await?;
    let tooltips = tooltip::Entity::find()
        .filter(tooltip::Column::OrgId.eq(org_id))
        .filter(tooltip::Column::SiteId.eq(site_id))
        .filter(tooltip::Column::Status.eq(published))
        .filter(tooltip::Column::Audience.ne(no_users))
        .filter(tooltip::Column::AutoStart.is_not_null())
        .order_by_asc(tooltip::Column::Id)
        .limit(MAX_CANDIDATES)
        .all(&st.db)
        .await?;
    let matches = |pattern: &Option<String>| {
        pattern
            .as_deref()
            .is_some_and(|p| audience::url_matches(p, page_url))
    };
    let mut out: Vec<Candidate> = flows
        .into_iter()
        .filter(|f| matches(&f.auto_start))
        .map(|f| Candidate {
            id: f.id,
            content: flow_content(&f),
            audience: f.audience,
            rules: f.audience_rules,
        })
        .chain(
            tooltips
                .into_iter()
                .filter(|t| matches(&t.auto_start))
                .map(|t| Candidate {
                    id: t.id,
                    content: tooltip_content(&t),
                    audience: t.audience,
                    rules: t.audience_rules,
                }),
        )
        .collect();
    // Ids are time-ordered: oldest first across both kinds.
    out.sort_by_key(|c| c.id);
    Ok(out)
}

/// Records the auto-started run; `false` when this visitor already had it (the unique `auto_key`).
async fn record_auto_run(
    st: &State,
    session: &entity::chat_session::Model,
    c: &Candidate,
    run_key: &str,
    page_url: &str,
) -> Result<bool, AppError> {
    let Some(user_id) = session.end_user_id else {
        return Ok(false);
    };
    let row = new_run(
        session,
        NewRun {
            content_id: c.id,
            kind: c.content.kind,
            key: run_key,
            trigger: TourTrigger::Auto,
            steps: c.content.steps.len(),
            page_url: Some(page_url.into()),
            auto_key: Some(format!("{user_id}:{}", c.id)),
        },
    );
    let inserted = tour_run::Entity::insert(row)
        .on_conflict_do_nothing_on([tour_run::Column::AutoKey])
        .exec_without_returning(&st.db)
        .await?;
    Ok(matches!(inserted, sea_orm::TryInsertResult::Inserted(n) if n > 0))
}
