//! Recording a site's map in an org member's browser: `startSiteRecording`
//! mints a short-lived mapping token for one site; `recorder.js`, on the
//! member's own app, sends each visited page's elements with that token
//! (`POST /recorder/pages`), and [`record_page`] merges the page into the
//! map as a new version.
//!
//! The token is signed by the server ([`crate::secret::ServerSecret::sign`],
//! its own purpose) and names the org, the site and its expiry
//! (`WAYFINDER_RECORDING_TTL_SECS`); it is the only credential the public
//! endpoint takes, and it can do one thing: add pages to that one site's
//! map. Pages must come from the site's origin: the browser's `Origin`
//! header (when it sends one) and the page's URL are both checked against
//! the site's base URL. Everything else is bounded by the app map's limits
//! ([`crate::appmap::recorder::validate`]).

use chrono::{DateTime, Utc};
use entity::site;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{event, get};
use crate::{
    appmap::{
        AppMap,
        recorder::{self, RecordedPage},
    },
    auth::OrgScope,
    domain::MappingStatus,
    error::AppError,
    state::State,
};

/// The signing purpose of mapping tokens.
pub const RECORDING_PURPOSE: &str = "site-recording";
/// Where a recording starts: the fragment `recorder.js` reads its token from.
pub const START_FRAGMENT: &str = "wayfinder-record=";

/// What a mapping token says.
#[derive(Serialize, Deserialize)]
struct Claims {
    /// Org.
    o: Uuid,
    /// Site.
    s: Uuid,
    /// Expiry, Unix seconds.
    e: i64,
}

/// A recording started: the token and where to use it.
#[derive(Debug)]
pub struct Recording {
    pub site_id: Uuid,
    pub token: String,
    pub expires_at: DateTime<Utc>,
    /// The site's base URL with the token in its fragment (`#wayfinder-record=…`).
    pub start_url: String,
}

/// Mints a mapping token for one of the caller's sites.
#[tracing::instrument(skip(st, scope), fields(org_id = %scope.org_id()))]
pub async fn start(st: &State, scope: &OrgScope, site_id: Uuid) -> Result<Recording, AppError> {
    let site = get::<site::Entity>(&st.db, scope, site_id).await?;
    let ttl = st.config.recording_ttl_secs.clamp(60, 24 * 3600) as i64;
    let expires_at = Utc::now() + chrono::Duration::seconds(ttl);
    let claims = Claims {
        o: site.org_id,
        s: site.id,
        e: expires_at.timestamp(),
    };
    let payload = serde_json::to_vec(&claims).map_err(AppError::internal)?;
    let token = st.secret.sign(RECORDING_PURPOSE, &payload);
    let start_url = format!(
        "{}#{START_FRAGMENT}{token}",
        site.base_url.split('#').next().unwrap_or(&site.base_url)
    );
    Ok(Recording {
        site_id: site.id,
        token,
        expires_at,
        start_url,
    })
}

/// What recording a page did.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Recorded {
    pub site_id: Uuid,
    pub map_version: i32,
    pub page_id: String,
    pub elements: usize,
}

/// The site a token is for, if it is genuine and unexpired.
async fn site_of(st: &State, token: &str) -> Result<site::Model, AppError> {
    let refused = || AppError::Unauthenticated("the mapping token is not valid or has expired");
    let payload = st
        .secret
        .verify(RECORDING_PURPOSE, token.trim())
        .ok_or_else(refused)?;
    let claims: Claims = serde_json::from_slice(&payload).map_err(|_| refused())?;
    if claims.e < Utc::now().timestamp() {
        return Err(refused());
    }
    site::Entity::find_by_id(claims.s)
        .filter(site::Column::OrgId.eq(claims.o))
        .one(&st.db)
        .await?
        .ok_or_else(refused)
}

/// Merges a page recorded with `token` into its site's map (a new map
/// version; the mapping becomes `COMPLETED` unless a crawl is running, whose
/// result will keep the page). `origin` is the browser's `Origin` header.
#[tracing::instrument(skip_all)]
pub async fn record_page(
    st: &State,
    token: &str,
    origin: Option<&str>,
    page: RecordedPage,
) -> Result<Recorded, AppError> {
    let site = site_of(st, token).await?;
    let site_origin = reqwest::Url::parse(&site.base_url)
        .map_err(|_| AppError::bad_input("url", "the site's base URL is not a URL"))?
        .origin()
        .ascii_serialization();
    if let Some(o) = origin
        && o.trim_end_matches('/') != site_origin
    {
        return Err(AppError::Forbidden(format!(
            "pages of this site are recorded from {site_origin} only"
        )));
    }
    let page = recorder::validate(page, &site_origin)?;
    let elements = page.elements.len();
    let txn = crate::service::begin_write(&st.db).await?;
    let current = site::Entity::find_by_id(site.id)
        .one(&txn)
        .await?
        .ok_or_else(|| AppError::not_found("site"))?;
    let pattern = page.url_pattern.clone();
    let map = recorder::merge(AppMap::from_stored(&current.app_map), page)?;
    let page_id = map
        .pages
        .iter()
        .find(|p| p.url_pattern == pattern)
        .map(|p| p.id.clone())
        .unwrap_or_default();
    let version = current.map_version + 1;
    let crawling = current.mapping_status == MappingStatus::InProgress.as_str();
    let mut am: site::ActiveModel = current.into();
    am.app_map = Set(map.to_stored()?);
    am.map_version = Set(version);
    if !crawling {
        am.mapping_status = Set(MappingStatus::Completed.as_str().into());
        am.mapping_error = Set(None);
    }
    am.updated_at = Set(Utc::now());
    let model = am.update(&txn).await?;
    let ev = event::record(
        &txn,
        site.org_id,
        "site.page_recorded",
        serde_json::json!({
            "id": site.id, "pageId": page_id, "url": pattern, "elements": elements, "mapVersion": version,
        }),
    )
    .await?;
    txn.commit().await?;
    event::publish(st, &[ev]).await;
    tracing::info!(org_id = %site.org_id, site_id = %site.id, elements, version, "page recorded");
    if !crawling {
        super::mapping::recheck_content(st, &model, &map).await?;
    }
    Ok(Recorded {
        site_id: site.id,
        map_version: version,
        page_id,
        elements,
    })
}
