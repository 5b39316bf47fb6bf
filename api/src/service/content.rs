//! Product-tour content: flows (ordered steps) and tooltips.
//!
//! A flow's steps are stored as one JSON array on the flow row: they are
//! always read and written whole, and order is the array's order.

use async_graphql::{InputObject, Json, SimpleObject};
use chrono::Utc;
use entity::{flow, site, tooltip};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, QueryFilter};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Page, PageArgs, event, get, get_ref, new_id, paginate, scoped, tour::audience};
use crate::{
    appmap::{self, Locator},
    auth::OrgScope,
    domain::{self, Audience, ContentSource, ContentStatus, Placement},
    error::AppError,
    state::State,
};

/// Most steps in one flow.
pub const MAX_STEPS: usize = 50;
/// Largest audience rules document, serialised.
const MAX_RULES_BYTES: usize = 10_000;

/// One step of a flow.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, SimpleObject, InputObject)]
#[graphql(input_name = "FlowStepInput")]
#[serde(rename_all = "camelCase")]
pub struct FlowStep {
    /// The page the step runs on (absolute URL or a path on the site).
    pub page_url: String,
    /// CSS selector of the element the step points at.
    pub target_selector: String,
    /// Step title.
    pub title: String,
    /// Step text.
    pub body: String,
    /// Where the step's bubble sits.
    pub placement: Placement,
    /// The app-map id of the element (generated steps always have one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[graphql(default)]
    pub element_id: Option<String>,
    /// Ways to find the element, best first: tour.js tries them in order, then `targetSelector`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[graphql(default)]
    pub locators: Vec<Locator>,
    /// When the step is on another page: `true` waits for the app's own navigation there (the visitor clicks a link, the app changes route); `false` (the default) makes tour.js go there.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    #[graphql(default)]
    pub wait_for_navigation: bool,
}

/// Reads a flow's stored steps.
pub fn steps(flow: &flow::Model) -> Vec<FlowStep> {
    serde_json::from_value(flow.steps.clone()).unwrap_or_default()
}

fn validate_steps(steps: Vec<FlowStep>) -> Result<Vec<FlowStep>, AppError> {
    if steps.len() > MAX_STEPS {
        return Err(AppError::bad_input(
            "input.steps",
            format!("at most {MAX_STEPS} steps"),
        ));
    }
    steps
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            Ok(FlowStep {
                page_url: domain::page_url(&format!("input.steps[{i}].pageUrl"), &s.page_url)?,
                target_selector: domain::selector(
                    &format!("input.steps[{i}].targetSelector"),
                    &s.target_selector,
                )?,
                title: domain::text(&format!("input.steps[{i}].title"), &s.title, 1, 200)?,
                body: domain::text(
                    &format!("input.steps[{i}].body"),
                    &s.body,
                    0,
                    domain::SHORT_TEXT_MAX,
                )?,
                placement: s.placement,
                element_id: s
                    .element_id
                    .map(|id| domain::text(&format!("input.steps[{i}].elementId"), &id, 1, 60))
                    .transpose()?,
                locators: validate_locators(&format!("input.steps[{i}].locators"), s.locators)?,
                wait_for_navigation: s.wait_for_navigation,
            })
        })
        .collect()
}

fn validate_locators(field: &str, locators: Vec<Locator>) -> Result<Vec<Locator>, AppError> {
    if locators.len() > appmap::MAX_LOCATORS {
        return Err(AppError::bad_input(
            field,
            format!("at most {} locators", appmap::MAX_LOCATORS),
        ));
    }
    locators
        .into_iter()
        .enumerate()
        .map(|(k, l)| {
            Ok(Locator {
                kind: l.kind,
                value: domain::selector(&format!("{field}[{k}].value"), &l.value)?,
            })
        })
        .collect()
}

fn rules(field: &str, v: Option<Json<serde_json::Value>>) -> Result<serde_json::Value, AppError> {
    let v = v.map(|j| j.0).unwrap_or(serde_json::Value::Null);
    if !(v.is_null() || v.is_object() || v.is_array()) {
        return Err(AppError::bad_input(field, "must be an object or an array"));
    }
    if serde_json::to_string(&v)
        .map(|s| s.len())
        .unwrap_or(usize::MAX)
        > MAX_RULES_BYTES
    {
        return Err(AppError::bad_input(
            field,
            format!("must be at most {MAX_RULES_BYTES} bytes"),
        ));
    }
    if !v.is_null() {
        audience::parse(field, &v)?;
    }
    Ok(v)
}

/// An auto-start pattern: absent or empty is none.
fn auto_start(field: &str, v: Option<String>) -> Result<Option<String>, AppError> {
    match v.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(p) => audience::pattern(field, p).map(Some),
    }
}

/// A new flow.
#[derive(Debug, InputObject)]
pub struct CreateFlowInput {
    /// The flow's name; the chat matcher looks for it verbatim in questions.
    pub name: String,
    /// What the flow walks a visitor through.
    pub description: Option<String>,
    /// The site it runs on.
    pub site_id: Option<Uuid>,
    /// The steps, in order.
    pub steps: Vec<FlowStep>,
    /// Default: `DRAFT`.
    pub status: Option<ContentStatus>,
    /// Default: `ALL`.
    pub audience: Option<Audience>,
    /// Targeting rules when `audience` is `RULES` (README, "Tours": `trait`, `identified`, `page`, combined with `all` / `any` / `not`).
    pub audience_rules: Option<Json<serde_json::Value>>,
    /// Page URL pattern (`/billing/*`, `/projects/:id`, or an absolute URL) on which the published content starts by itself, once per visitor, for its audience; none: only the chat or the SDK starts it.
    pub auto_start: Option<String>,
}

/// Changes to a flow; omitted fields stay as they are, `steps` replaces all steps.
#[derive(Debug, InputObject)]
pub struct UpdateFlowInput {
    /// The flow to change.
    pub id: Uuid,
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New site.
    pub site_id: Option<Uuid>,
    /// Replaces every step.
    pub steps: Option<Vec<FlowStep>>,
    /// New status.
    pub status: Option<ContentStatus>,
    /// New audience.
    pub audience: Option<Audience>,
    /// New audience rules.
    pub audience_rules: Option<Json<serde_json::Value>>,
    /// New auto-start pattern; an empty string removes it.
    pub auto_start: Option<String>,
}

/// A new tooltip.
#[derive(Debug, InputObject)]
pub struct CreateTooltipInput {
    /// The tooltip's name; the chat matcher looks for it verbatim in questions.
    pub name: String,
    /// The site it runs on.
    pub site_id: Option<Uuid>,
    /// The page it shows on.
    pub page_url: String,
    /// CSS selector of the element it points at.
    pub target_selector: String,
    /// Its text.
    pub body: String,
    /// Default: `DRAFT`.
    pub status: Option<ContentStatus>,
    /// Default: `ALL`.
    pub audience: Option<Audience>,
    /// Targeting rules when `audience` is `RULES` (README, "Tours": `trait`, `identified`, `page`, combined with `all` / `any` / `not`).
    pub audience_rules: Option<Json<serde_json::Value>>,
    /// Page URL pattern (`/billing/*`, `/projects/:id`, or an absolute URL) on which the published content starts by itself, once per visitor, for its audience; none: only the chat or the SDK starts it.
    pub auto_start: Option<String>,
}

/// Changes to a tooltip; omitted fields stay as they are.
#[derive(Debug, InputObject)]
pub struct UpdateTooltipInput {
    /// The tooltip to change.
    pub id: Uuid,
    /// New name.
    pub name: Option<String>,
    /// New site.
    pub site_id: Option<Uuid>,
    /// New page.
    pub page_url: Option<String>,
    /// New target.
    pub target_selector: Option<String>,
    /// New text.
    pub body: Option<String>,
    /// New status.
    pub status: Option<ContentStatus>,
    /// New audience.
    pub audience: Option<Audience>,
    /// New audience rules.
    pub audience_rules: Option<Json<serde_json::Value>>,
    /// New auto-start pattern; an empty string removes it.
    pub auto_start: Option<String>,
}

/// Filters for content lists.
#[derive(Debug, Default, InputObject)]
pub struct ContentFilter {
    /// Only this site's content.
    pub site_id: Option<Uuid>,
    /// Only content with this status.
    pub status: Option<ContentStatus>,
    /// Only content from this source.
    pub source: Option<ContentSource>,
}

/// The caller's flows.
pub async fn list_flows(
    st: &State,
    scope: &OrgScope,
    filter: ContentFilter,
    page: &PageArgs,
) -> Result<Page<flow::Model>, AppError> {
    let mut q = scoped::<flow::Entity>(scope);
    if let Some(s) = filter.site_id {
        q = q.filter(flow::Column::SiteId.eq(s));
    }
    if let Some(s) = filter.status {
        q = q.filter(flow::Column::Status.eq(s.as_str()));
    }
    if let Some(s) = filter.source {
        q = q.filter(flow::Column::Source.eq(s.as_str()));
    }
    paginate(&st.db, q, page).await
}

/// A new manual flow.
pub async fn create_flow(
    st: &State,
    scope: &OrgScope,
    input: CreateFlowInput,
) -> Result<flow::Model, AppError> {
    let steps = validate_steps(input.steps)?;
    let txn = crate::service::begin_write(&st.db).await?;
    if let Some(s) = input.site_id {
        get_ref::<site::Entity>(&txn, scope, s, "input.siteId").await?;
    }
    let now = Utc::now();
    let model = flow::ActiveModel {
        id: Set(new_id()),
        org_id: Set(scope.org_id()),
        site_id: Set(input.site_id),
        name: Set(domain::name("input.name", &input.name)?),
        description: Set(domain::text(
            "input.description",
            input.description.as_deref().unwrap_or(""),
            0,
            domain::SHORT_TEXT_MAX,
        )?),
        status: Set(input.status.unwrap_or(ContentStatus::Draft).as_str().into()),
        source: Set(ContentSource::Manual.as_str().into()),
        audience: Set(input.audience.unwrap_or(Audience::All).as_str().into()),
        audience_rules: Set(rules("input.audienceRules", input.audience_rules)?),
        steps: Set(serde_json::to_value(steps).map_err(AppError::internal)?),
        health: Set(None),
        generated_session_id: Set(None),
        auto_start: Set(auto_start("input.autoStart", input.auto_start)?),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await?;
    event::commit_with_event::<flow::Entity>(st, txn, scope.org_id(), "created", model.id).await?;
    Ok(model)
}

/// Applies `input` to one of the caller's flows.
pub async fn update_flow(
    st: &State,
    scope: &OrgScope,
    input: UpdateFlowInput,
) -> Result<flow::Model, AppError> {
    let txn = crate::service::begin_write(&st.db).await?;
    let mut am: flow::ActiveModel = get::<flow::Entity>(&txn, scope, input.id).await?.into();
    if let Some(v) = input.name {
        am.name = Set(domain::name("input.name", &v)?);
    }
    if let Some(v) = input.description {
        am.description = Set(domain::text(
            "input.description",
            &v,
            0,
            domain::SHORT_TEXT_MAX,
        )?);
    }
    if let Some(s) = input.site_id {
        get_ref::<site::Entity>(&txn, scope, s, "input.siteId").await?;
        am.site_id = Set(Some(s));
    }
    if let Some(steps) = input.steps {
        am.steps = Set(serde_json::to_value(validate_steps(steps)?).map_err(AppError::internal)?);
    }
    if let Some(v) = input.status {
        am.status = Set(v.as_str().into());
    }
    if let Some(v) = input.audience {
        am.audience = Set(v.as_str().into());
    }
    if input.audience_rules.is_some() {
        am.audience_rules = Set(rules("input.audienceRules", input.audience_rules)?);
    }
    if input.auto_start.is_some() {
        am.auto_start = Set(auto_start("input.autoStart", input.auto_start)?);
    }
    am.updated_at = Set(Utc::now());
    let model = am.update(&txn).await?;
    event::commit_with_event::<flow::Entity>(st, txn, scope.org_id(), "updated", input.id).await?;
    Ok(model)
}

/// Publishes one of the caller's flows; a flow without steps cannot be published.
pub async fn publish_flow(st: &State, scope: &OrgScope, id: Uuid) -> Result<flow::Model, AppError> {
    let txn = crate::service::begin_write(&st.db).await?;
    let current = get::<flow::Entity>(&txn, scope, id).await?;
    if steps(&current).is_empty() {
        return Err(AppError::bad_input(
            "id",
            "a flow needs at least one step to be published",
        ));
    }
    let mut am: flow::ActiveModel = current.into();
    am.status = Set(ContentStatus::Published.as_str().into());
    am.updated_at = Set(Utc::now());
    let model = am.update(&txn).await?;
    event::commit_with_event::<flow::Entity>(st, txn, scope.org_id(), "published", id).await?;
    Ok(model)
}

/// Deletes one of the caller's flows.
pub async fn delete_flow(st: &State, scope: &OrgScope, id: Uuid) -> Result<(), AppError> {
    let txn = crate::service::begin_write(&st.db).await?;
    super::delete::<flow::Entity>(&txn, scope, id).await?;
    event::commit_with_event::<flow::Entity>(st, txn, scope.org_id(), "deleted", id).await
}

/// The caller's tooltips.
pub async fn list_tooltips(
    st: &State,
    scope: &OrgScope,
    filter: ContentFilter,
    page: &PageArgs,
) -> Result<Page<tooltip::Model>, AppError> {
    let mut q = scoped::<tooltip::Entity>(scope);
    if let Some(s) = filter.site_id {
        q = q.filter(tooltip::Column::SiteId.eq(s));
    }
    if let Some(s) = filter.status {
        q = q.filter(tooltip::Column::Status.eq(s.as_str()));
    }
    if let Some(s) = filter.source {
        q = q.filter(tooltip::Column::Source.eq(s.as_str()));
    }
    paginate(&st.db, q, page).await
}

/// A new manual tooltip.
pub async fn create_tooltip(
    st: &State,
    scope: &OrgScope,
    input: CreateTooltipInput,
) -> Result<tooltip::Model, AppError> {
    let txn = crate::service::begin_write(&st.db).await?;
    if let Some(s) = input.site_id {
        get_ref::<site::Entity>(&txn, scope, s, "input.siteId").await?;
    }
    let now = Utc::now();
    let model = tooltip::ActiveModel {
        id: Set(new_id()),
        org_id: Set(scope.org_id()),
        site_id: Set(input.site_id),
        name: Set(domain::name("input.name", &input.name)?),
        page_url: Set(domain::page_url("input.pageUrl", &input.page_url)?),
        target_selector: Set(domain::selector(
            "input.targetSelector",
            &input.target_selector,
        )?),
        body: Set(domain::text(
            "input.body",
            &input.body,
            1,
            domain::LONG_TEXT_MAX,
        )?),
        status: Set(input.status.unwrap_or(ContentStatus::Draft).as_str().into()),
        source: Set(ContentSource::Manual.as_str().into()),
        audience: Set(input.audience.unwrap_or(Audience::All).as_str().into()),
        audience_rules: Set(rules("input.audienceRules", input.audience_rules)?),
        health: Set(None),
        auto_start: Set(auto_start("input.autoStart", input.auto_start)?),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await?;
    event::commit_with_event::<tooltip::Entity>(st, txn, scope.org_id(), "created", model.id)
        .await?;
    Ok(model)
}

/// Applies `input` to one of the caller's tooltips.
pub async fn update_tooltip(
    st: &State,
    scope: &OrgScope,
    input: UpdateTooltipInput,
) -> Result<tooltip::Model, AppError> {
    let txn = crate::service::begin_write(&st.db).await?;
    let mut am: tooltip::ActiveModel = get::<tooltip::Entity>(&txn, scope, input.id).await?.into();
    if let Some(v) = input.name {
        am.name = Set(domain::name("input.name", &v)?);
    }
    if let Some(s) = input.site_id {
        get_ref::<site::Entity>(&txn, scope, s, "input.siteId").await?;
        am.site_id = Set(Some(s));
    }
    if let Some(v) = input.page_url {
        am.page_url = Set(domain::page_url("input.pageUrl", &v)?);
    }
    if let Some(v) = input.target_selector {
        am.target_selector = Set(domain::selector("input.targetSelector", &v)?);
    }
    if let Some(v) = input.body {
        am.body = Set(domain::text("input.body", &v, 1, domain::LONG_TEXT_MAX)?);
    }
    if let Some(v) = input.status {
        am.status = Set(v.as_str().into());
    }
    if let Some(v) = input.audience {
        am.audience = Set(v.as_str().into());
    }
    if input.audience_rules.is_some() {
        am.audience_rules = Set(rules("input.audienceRules", input.audience_rules)?);
    }
    if input.auto_start.is_some() {
        am.auto_start = Set(auto_start("input.autoStart", input.auto_start)?);
    }
    am.updated_at = Set(Utc::now());
    let model = am.update(&txn).await?;
    event::commit_with_event::<tooltip::Entity>(st, txn, scope.org_id(), "updated", input.id)
        .await?;
    Ok(model)
}

/// Deletes one of the caller's tooltips.
pub async fn delete_tooltip(st: &State, scope: &OrgScope, id: Uuid) -> Result<(), AppError> {
    let txn = crate::service::begin_write(&st.db).await?;
    super::delete::<tooltip::Entity>(&txn, scope, id).await?;
    event::commit_with_event::<tooltip::Entity>(st, txn, scope.org_id(), "deleted", id).await
}

/// A flow the generator drafted, already checked against the app map.
#[derive(Debug, Clone)]
pub struct GeneratedFlow {
    pub org_id: Uuid,
    pub site_id: Uuid,
    /// The chat session it was made for: only that visitor may fetch it.
    pub session_id: Uuid,
    pub name: String,
    pub description: String,
    pub steps: Vec<FlowStep>,
    /// The map version its steps were checked against.
    pub map_version: i32,
}

/// Stores a generated flow: source `AI`, status `PUBLISHED`, audience
/// `NO_USERS` (it never auto-shows to anyone), healthy against the map it
/// was made from; emits `flow.generated`. Operators review, edit, re-target
/// or delete it in the library like any flow.
pub async fn store_generated_flow(st: &State, g: GeneratedFlow) -> Result<flow::Model, AppError> {
    let now = Utc::now();
    let steps: Vec<FlowStep> = g.steps.into_iter().take(MAX_STEPS).collect();
    let health =
        serde_json::json!({ "brokenSteps": [], "mapVersion": g.map_version, "checkedAt": now });
    let txn = crate::service::begin_write(&st.db).await?;
    let model = flow::ActiveModel {
        id: Set(new_id()),
        org_id: Set(g.org_id),
        site_id: Set(Some(g.site_id)),
        name: Set(g.name),
        description: Set(g.description),
        status: Set(ContentStatus::Published.as_str().into()),
        source: Set(ContentSource::Ai.as_str().into()),
        audience: Set(Audience::NoUsers.as_str().into()),
        audience_rules: Set(serde_json::Value::Null),
        steps: Set(serde_json::to_value(steps).map_err(AppError::internal)?),
        health: Set(Some(health)),
        generated_session_id: Set(Some(g.session_id)),
        auto_start: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await?;
    event::commit_with_event::<flow::Entity>(st, txn, g.org_id, "generated", model.id).await?;
    Ok(model)
}

/// A flow or tooltip the visitor of `session` may fetch: of the session's
/// org and its bot's site, published, and either for everyone (audience not
/// `NO_USERS`) or generated in this very session. Anything else is `NOT_FOUND`.
pub async fn visible_to_session(
    st: &State,
    session: &entity::chat_session::Model,
    id: Uuid,
) -> Result<crate::turn::events::TurnContent, AppError> {
    use sea_orm::EntityTrait;
    let not_found = || AppError::not_found_in("content", "id");
    let site_id = entity::bot::Entity::find_by_id(session.bot_id)
        .one(&st.db)
        .await?
        .and_then(|b| b.site_id)
        .ok_or_else(not_found)?;
    let published = ContentStatus::Published.as_str();
    let no_users = Audience::NoUsers.as_str();
    if let Some(f) = flow::Entity::find_by_id(id).one(&st.db).await? {
        let visible = f.org_id == session.org_id
            && f.site_id == Some(site_id)
            && f.status == published
            && (f.audience != no_users || f.generated_session_id == Some(session.id));
        return visible
            .then(|| crate::turn::matcher::flow_content(&f))
            .ok_or_else(not_found);
    }
    if let Some(t) = tooltip::Entity::find_by_id(id).one(&st.db).await? {
        let visible = t.org_id == session.org_id
            && t.site_id == Some(site_id)
            && t.status == published
            && t.audience != no_users;
        return visible
            .then(|| crate::turn::matcher::tooltip_content(&t))
            .ok_or_else(not_found);
    }
    Err(not_found())
}
