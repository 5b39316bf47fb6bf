//! Sites and their app maps: create and change sites, and upload a map
//! (`updateSiteMap`). Crawling (`mapSite`) and drift checks are in
//! [`super::mapping`]; the map itself and its builders in [`crate::appmap`].

use async_graphql::InputObject;
use chrono::Utc;
use entity::site;
use sea_orm::{ActiveModelTrait, ActiveValue::Set};
use uuid::Uuid;

use crate::appmap::{self, AppMap, Locator, UploadElement, UploadPage};

use super::{Page, PageArgs, event, get, new_id, paginate, scoped};
use crate::{
    auth::OrgScope,
    domain::{self, MappingStatus},
    error::AppError,
    state::State,
};

/// A new site.
#[derive(Debug, InputObject)]
pub struct CreateSiteInput {
    /// Shown in the dashboard.
    pub name: String,
    /// The site's base URL (`https://app.example.com`).
    pub base_url: String,
}

/// Changes to a site; omitted fields stay as they are.
#[derive(Debug, InputObject)]
pub struct UpdateSiteInput {
    /// The site to change.
    pub id: Uuid,
    /// New name.
    pub name: Option<String>,
    /// New base URL.
    pub base_url: Option<String>,
}

/// One element of an uploaded page.
#[derive(Debug, InputObject)]
pub struct AppMapElementInput {
    /// Its map id (letters, digits, `-`, `_`); assigned when omitted.
    pub id: Option<String>,
    /// What a person would call it ("Save").
    pub label: String,
    /// Its ARIA role (`button`, `link`, `textbox`…). Default: `generic`.
    pub role: Option<String>,
    /// A CSS selector that finds it (kept as its last, `CSS` locator).
    pub selector: Option<String>,
    /// Locators, best first; none may be shared with another element of the page.
    #[graphql(default)]
    pub locators: Vec<Locator>,
}

/// One uploaded page.
#[derive(Debug, InputObject)]
pub struct AppMapPageInput {
    /// The page's URL (absolute, or a path on the site).
    pub url: String,
    /// Its URL pattern (`/projects/:id`). Default: computed from `url`.
    pub url_pattern: Option<String>,
    /// The page's title.
    pub title: Option<String>,
    /// Interactive elements on the page (at most 300).
    pub elements: Vec<AppMapElementInput>,
}

impl From<AppMapPageInput> for UploadPage {
    fn from(p: AppMapPageInput) -> Self {
        Self {
            url: p.url,
            url_pattern: p.url_pattern,
            title: p.title,
            elements: p
                .elements
                .into_iter()
                .map(|e| UploadElement {
                    id: e.id,
                    role: e.role,
                    label: e.label,
                    selector: e.selector,
                    locators: e.locators,
                })
                .collect(),
        }
    }
}

/// A new app map for a site, replacing the old one.
#[derive(Debug, InputObject)]
pub struct UpdateSiteMapInput {
    /// The site.
    pub site_id: Uuid,
    /// Every mapped page (at most 500).
    pub pages: Vec<AppMapPageInput>,
    /// Where mapping stands. Default: `COMPLETED`.
    pub mapping_status: Option<MappingStatus>,
}

/// The caller's sites.
pub async fn list(
    st: &State,
    scope: &OrgScope,
    page: &PageArgs,
) -> Result<Page<site::Model>, AppError> {
    paginate(&st.db, scoped::<site::Entity>(scope), page).await
}

/// A new, unmapped site.
pub async fn create(
    st: &State,
    scope: &OrgScope,
    input: CreateSiteInput,
) -> Result<site::Model, AppError> {
    let now = Utc::now();
    let txn = crate::service::begin_write(&st.db).await?;
    let model = site::ActiveModel {
        id: Set(new_id()),
        org_id: Set(scope.org_id()),
        name: Set(domain::name("input.name", &input.name)?),
        base_url: Set(domain::http_url("input.baseUrl", &input.base_url)?),
        mapping_status: Set(MappingStatus::NotStarted.as_str().into()),
        app_map: Set(AppMap::default().to_stored()?),
        map_version: Set(0),
        mapping_error: Set(None),
        mapping_heartbeat_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await?;
    event::commit_with_event::<site::Entity>(st, txn, scope.org_id(), "created", model.id).await?;
    Ok(model)
}

/// Applies `input` to one of the caller's sites.
pub async fn update(
    st: &State,
    scope: &OrgScope,
    input: UpdateSiteInput,
) -> Result<site::Model, AppError> {
    let txn = crate::service::begin_write(&st.db).await?;
    let mut am: site::ActiveModel = get::<site::Entity>(&txn, scope, input.id).await?.into();
    if let Some(v) = input.name {
        am.name = Set(domain::name("input.name", &v)?);
    }
    if let Some(v) = input.base_url {
        am.base_url = Set(domain::http_url("input.baseUrl", &v)?);
    }
    am.updated_at = Set(Utc::now());
    let model = am.update(&txn).await?;
    event::commit_with_event::<site::Entity>(st, txn, scope.org_id(), "updated", input.id).await?;
    Ok(model)
}

/// Replaces a site's app map (validated: counts, sizes, locators unique
/// per page) and sets its mapping status; a completed map is a new version
/// and published content is re-checked against it.
pub async fn update_map(
    st: &State,
    scope: &OrgScope,
    site_id: Uuid,
    pages: Vec<UploadPage>,
    status: Option<MappingStatus>,
) -> Result<site::Model, AppError> {
    let map = appmap::validate_upload(pages)?;
    let status = status.unwrap_or(MappingStatus::Completed);
    let txn = crate::service::begin_write(&st.db).await?;
    let current = get::<site::Entity>(&txn, scope, site_id).await?;
    let version = current.map_version + 1;
    let mut am: site::ActiveModel = current.into();
    am.app_map = Set(map.to_stored()?);
    am.map_version = Set(version);
    am.mapping_status = Set(status.as_str().into());
    am.mapping_error = Set(None);
    am.mapping_heartbeat_at = Set(None);
    am.updated_at = Set(Utc::now());
    let model = am.update(&txn).await?;
    event::commit_with_event::<site::Entity>(st, txn, scope.org_id(), "mapped", site_id).await?;
    if status == MappingStatus::Completed {
        super::mapping::recheck_content(st, &model, &map).await?;
    }
    Ok(model)
}

/// Deletes one of the caller's sites; bots, widgets and content bound to it are unbound.
pub async fn delete(st: &State, scope: &OrgScope, id: Uuid) -> Result<(), AppError> {
    let txn = crate::service::begin_write(&st.db).await?;
    super::delete::<site::Entity>(&txn, scope, id).await?;
    event::commit_with_event::<site::Entity>(st, txn, scope.org_id(), "deleted", id).await
}
