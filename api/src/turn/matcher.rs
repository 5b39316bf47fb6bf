//! The content matcher (SPEC §3 step 2): when the bot is bound to a site, a
//! question that names one of the site's PUBLISHED flows or tooltips verbatim
//! (case-insensitive) starts that content, with no LLM call. The longest name
//! found wins, so "invite a teammate to a project" beats "invite".

use entity::{flow, site, tooltip};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect};
use uuid::Uuid;

use super::events::{ContentKind, TurnContent};
use crate::{
    domain::{ContentStatus, Placement},
    error::AppError,
    service::content::{FlowStep, steps},
};

/// Names shorter than this never match (too likely by accident).
const MIN_NAME_CHARS: usize = 3;
/// Published items considered per site.
const MAX_ITEMS: u64 = 2_000;

/// The published flow or tooltip of `site_id` whose name the question contains, if any.
pub async fn verbatim(
    db: &DatabaseConnection,
    org_id: Uuid,
    site_id: Uuid,
    question: &str,
) -> Result<Option<TurnContent>, AppError> {
    let q = question.to_lowercase();
    let named = |name: &str| {
        let n = name.trim().to_lowercase();
        (n.chars().count() >= MIN_NAME_CHARS && q.contains(&n)).then_some(n.chars().count())
    };
    let flows = flow::Entity::find()
        .filter(flow::Column::OrgId.eq(org_id))
        .filter(flow::Column::SiteId.eq(site_id))
        .filter(flow::Column::Status.eq(ContentStatus::Published.as_str()))
        .limit(MAX_ITEMS)
        .all(db)
        .await?;
    let tooltips = tooltip::Entity::find()
        .filter(tooltip::Column::OrgId.eq(org_id))
        .filter(tooltip::Column::SiteId.eq(site_id))
        .filter(tooltip::Column::Status.eq(ContentStatus::Published.as_str()))
        .limit(MAX_ITEMS)
        .all(db)
        .await?;
    let mut best: Option<(usize, TurnContent)> = None;
    for f in flows {
        if let Some(len) = named(&f.name)
            && best.as_ref().is_none_or(|(l, _)| len > *l)
        {
            let steps = steps(&f);
            best = Some((
                len,
                TurnContent {
                    kind: ContentKind::Flow,
                    id: f.id,
                    name: f.name.clone(),
                    start_url: steps.first().map(|s| s.page_url.clone()),
                    steps,
                },
            ));
        }
    }
    for t in tooltips {
        if let Some(len) = named(&t.name)
            && best.as_ref().is_none_or(|(l, _)| len > *l)
        {
            best = Some((
                len,
                TurnContent {
                    kind: ContentKind::Tooltip,
                    id: t.id,
                    name: t.name.clone(),
                    start_url: Some(t.page_url.clone()),
                    steps: vec![FlowStep {
                        page_url: t.page_url.clone(),
                        target_selector: t.target_selector.clone(),
                        title: t.name.clone(),
                        body: t.body.clone(),
                        placement: Placement::Bottom,
                        element_id: None,
                        locators: vec![],
                    }],
                },
            ));
        }
    }
    Ok(best.map(|(_, c)| c))
}

/// The path (and query) of a URL or path, for comparing pages.
fn path_of(url: &str) -> &str {
    let rest = url
        .split_once("://")
        .map_or(url, |(_, r)| r.find('/').map_or("/", |i| &r[i..]));
    let rest = rest.split('#').next().unwrap_or(rest);
    match rest.trim_end_matches('/') {
        "" => "/",
        p => p,
    }
}

/// Where to navigate to start `content` from `page_url`: `None` when the visitor is already there.
/// A relative start page is made absolute against the site's base URL.
pub fn navigation(
    content: &TurnContent,
    page_url: Option<&str>,
    site: Option<&site::Model>,
) -> Option<String> {
    let start = content.start_url.as_deref()?;
    if page_url.is_some_and(|p| path_of(p) == path_of(start)) {
        return None;
    }
    if start.contains("://") {
        return Some(start.to_string());
    }
    match site {
        Some(s) => {
            let base = s
                .base_url
                .split_once("://")
                .map(|(scheme, r)| (scheme, r.split('/').next().unwrap_or(r)));
            Some(match base {
                Some((scheme, host)) => format!("{scheme}://{host}{start}"),
                None => start.to_string(),
            })
        }
        None => Some(start.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(start: &str) -> TurnContent {
        TurnContent {
            kind: ContentKind::Flow,
            id: Uuid::now_v7(),
            name: "x".into(),
            start_url: Some(start.into()),
            steps: vec![],
        }
    }

    #[test]
    fn navigation_only_when_the_page_differs() {
        assert_eq!(
            navigation(
                &content("/settings"),
                Some("https://app.example.com/settings/"),
                None
            ),
            None
        );
        assert_eq!(
            navigation(
                &content("/settings"),
                Some("https://app.example.com/home"),
                None
            )
            .as_deref(),
            Some("/settings")
        );
        assert_eq!(
            navigation(&content("https://a.io/x"), None, None).as_deref(),
            Some("https://a.io/x")
        );
    }
}
