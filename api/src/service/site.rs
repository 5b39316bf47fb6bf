//! Sites and their app maps (the pages and interactive elements the flow
//! generator may use).

use async_graphql::{InputObject, SimpleObject};
use chrono::Utc;
use entity::site;
use sea_orm::{ActiveModelTrait, ActiveValue::Set};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Page, PageArgs, event, get, new_id, paginate, scoped};
use crate::{
    auth::OrgScope,
    domain::{self, MappingStatus},
    error::AppError,
    state::State,
};

/// Most pages in one app map.
pub const MAX_PAGES: usize = 500;
/// Most elements on one mapped page.
pub const MAX_ELEMENTS: usize = 300;

/// One interactive element of a mapped page.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, SimpleObject, InputObject)]
#[graphql(input_name = "AppMapElementInput")]
#[serde(rename_all = "camelCase")]
pub struct AppMapElement {
    /// What a person would call it ("Save button").
    pub label: String,
    /// A stable CSS selector that finds it.
    pub selector: String,
    /// Its ARIA role or tag (`button`, `link`, `textbox`…), when known.
    pub role: Option<String>,
}

/// One page of a site's app map.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, SimpleObject, InputObject)]
#[graphql(input_name = "AppMapPageInput")]
#[serde(rename_all = "camelCase")]
pub struct AppMapPage {
    /// The page's URL (absolute, or a path on the site).
    pub url: String,
    /// The page's title.
    pub title: Option<String>,
    /// Interactive elements on the page.
    pub elements: Vec<AppMapElement>,
}

/// Reads a stored app map, tolerating an empty or older document.
pub fn pages(site: &site::Model) -> Vec<AppMapPage> {
    site.app_map
        .get("pages")
        .and_then(|p| serde_json::from_value(p.clone()).ok())
        .unwrap_or_default()
}

fn validate_pages(pages: Vec<AppMapPage>) -> Result<Vec<AppMapPage>, AppError> {
    if pages.len() > MAX_PAGES {
        return Err(AppError::bad_input(
            "input.pages",
            format!("at most {MAX_PAGES} pages"),
        ));
    }
    pages
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            if p.elements.len() > MAX_ELEMENTS {
                return Err(AppError::bad_input(
                    format!("input.pages[{i}].elements"),
                    format!("at most {MAX_ELEMENTS} elements per page"),
                ));
            }
            Ok(AppMapPage {
                url: domain::page_url(&format!("input.pages[{i}].url"), &p.url)?,
                title: p
                    .title
                    .map(|t| domain::text(&format!("input.pages[{i}].title"), &t, 0, 300))
                    .transpose()?,
                elements: p
                    .elements
                    .into_iter()
                    .enumerate()
                    .map(|(j, e)| {
                        Ok(AppMapElement {
                            label: domain::text(
                                &format!("input.pages[{i}].elements[{j}].label"),
                                &e.label,
                                1,
                                300,
                            )?,
                            selector: domain::selector(
                                &format!("input.pages[{i}].elements[{j}].selector"),
                                &e.selector,
                            )?,
                            role: e
                                .role
                                .map(|r| {
                                    domain::text(
                                        &format!("input.pages[{i}].elements[{j}].role"),
                                        &r,
                                        1,
                                        50,
                                    )
                                })
                                .transpose()?,
                        })
                    })
                    .collect::<Result<_, AppError>>()?,
            })
        })
        .collect()
}

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

/// A new app map for a site, replacing the old one.
#[derive(Debug, InputObject)]
pub struct UpdateSiteMapInput {
    /// The site.
    pub site_id: Uuid,
    /// Every mapped page.
    pub pages: Vec<AppMapPage>,
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
        app_map: Set(serde_json::json!({ "pages": [] })),
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

/// Replaces a site's app map and mapping status.
pub async fn update_map(
    st: &State,
    scope: &OrgScope,
    input: UpdateSiteMapInput,
) -> Result<site::Model, AppError> {
    let pages = validate_pages(input.pages)?;
    let txn = crate::service::begin_write(&st.db).await?;
    let mut am: site::ActiveModel = get::<site::Entity>(&txn, scope, input.site_id)
        .await?
        .into();
    am.app_map = Set(serde_json::json!({ "pages": pages }));
    am.mapping_status = Set(input
        .mapping_status
        .unwrap_or(MappingStatus::Completed)
        .as_str()
        .into());
    am.updated_at = Set(Utc::now());
    let model = am.update(&txn).await?;
    event::commit_with_event::<site::Entity>(st, txn, scope.org_id(), "mapped", input.site_id)
        .await?;
    Ok(model)
}

/// Deletes one of the caller's sites; bots, widgets and content bound to it are unbound.
pub async fn delete(st: &State, scope: &OrgScope, id: Uuid) -> Result<(), AppError> {
    let txn = crate::service::begin_write(&st.db).await?;
    super::delete::<site::Entity>(&txn, scope, id).await?;
    event::commit_with_event::<site::Entity>(st, txn, scope.org_id(), "deleted", id).await
}
