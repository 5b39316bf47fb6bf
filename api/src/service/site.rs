//! Sites and their app maps: create and change sites, upload a map
//! (`updateSiteMap`), crawl one (`mapSite`, in the background), end mappings
//! a dead server left `IN_PROGRESS`, and re-check published content against
//! each new map (drift). The map itself and its builders are in
//! [`crate::appmap`].

use std::{sync::OnceLock, time::Duration};

use async_graphql::InputObject;
use chrono::Utc;
use entity::{flow, site, tooltip};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QuerySelect,
};
use uuid::Uuid;

use crate::appmap::{
    self, AppMap, Locator, UploadElement, UploadPage,
    crawler::{self, Credentials, Limits, Progress},
    drift,
};
use crate::domain::ContentStatus;
use crate::service::content::{FlowStep, steps as flow_steps};

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

/// Credentials for crawling a staging app; sent to the site's origin only and never stored.
#[derive(InputObject, Default)]
pub struct MapSiteInput {
    /// The site to map.
    pub site_id: Uuid,
    /// One request header to send, e.g. `Authorization`.
    pub auth_header_name: Option<String>,
    /// Its value.
    #[graphql(secret)]
    pub auth_header_value: Option<String>,
    /// A `Cookie` header value to send.
    #[graphql(secret)]
    pub cookie: Option<String>,
}

impl std::fmt::Debug for MapSiteInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MapSiteInput")
            .field("site_id", &self.site_id)
            .field("auth_header_name", &self.auth_header_name)
            .field(
                "auth_header_value",
                &crate::secret::redacted(&self.auth_header_value),
            )
            .field("cookie", &crate::secret::redacted(&self.cookie))
            .finish()
    }
}

impl From<MapSiteInput> for Credentials {
    fn from(i: MapSiteInput) -> Self {
        Self {
            header: i.auth_header_name.zip(i.auth_header_value),
            cookie: i.cookie,
        }
    }
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
        recheck_content(st, &model, &map).await?;
    }
    Ok(model)
}

/// A running crawl touches its site this often.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// A site `IN_PROGRESS` without a heartbeat this long has lost its crawl.
const STALE_AFTER: Duration = Duration::from_secs(60);
/// Timeout of each crawl request.
const FETCH_TIMEOUT: Duration = Duration::from_secs(20);

fn fetcher() -> Result<&'static crate::outbound::Fetcher, AppError> {
    static CLIENT: OnceLock<crate::outbound::Fetcher> = OnceLock::new();
    if let Some(c) = CLIENT.get() {
        return Ok(c);
    }
    let c = crate::outbound::Fetcher::new(FETCH_TIMEOUT, crawler::USER_AGENT)
        .map_err(AppError::internal)?;
    Ok(CLIENT.get_or_init(|| c))
}

fn stale(site: &site::Model) -> bool {
    site.mapping_heartbeat_at.is_none_or(|at| {
        Utc::now()
            .signed_duration_since(at)
            .to_std()
            .unwrap_or_default()
            > STALE_AFTER
    })
}

async fn record_event(st: &State, org_id: Uuid, kind: &str, payload: serde_json::Value) {
    match event::record(&st.db, org_id, kind, payload).await {
        Ok(ev) => event::publish(st, &[ev]).await,
        Err(err) => tracing::warn!(%err, kind, "could not record event"),
    }
}

/// Starts crawling one of the caller's sites in the background: the site
/// is `IN_PROGRESS` on return; `site.mapping_progress`, then `site.mapped`
/// or `site.mapping_failed` follow on `orgEvents`. The old map serves until
/// the new one completes.
pub async fn map_site(
    st: &crate::state::AppState,
    scope: &OrgScope,
    site_id: Uuid,
    credentials: Credentials,
) -> Result<site::Model, AppError> {
    credentials
        .headers()
        .map_err(|m| AppError::bad_input("input.authHeaderValue", m))?;
    let txn = crate::service::begin_write(&st.db).await?;
    let current = get::<site::Entity>(&txn, scope, site_id).await?;
    if current.mapping_status == MappingStatus::InProgress.as_str() && !stale(&current) {
        return Err(AppError::bad_input(
            "input.siteId",
            "this site is being mapped already",
        ));
    }
    let base = reqwest::Url::parse(&current.base_url)
        .map_err(|_| AppError::bad_input("input.siteId", "the site's base URL is not a URL"))?;
    let policy = crate::outbound::Policy::from_config(&st.config);
    policy
        .check(&base)
        .map_err(|r| AppError::bad_input("input.siteId", r.to_string()))?;
    let mut am: site::ActiveModel = current.into();
    am.mapping_status = Set(MappingStatus::InProgress.as_str().into());
    am.mapping_error = Set(None);
    am.mapping_heartbeat_at = Set(Some(Utc::now()));
    am.updated_at = Set(Utc::now());
    let model = am.update(&txn).await?;
    event::commit_with_event::<site::Entity>(st, txn, scope.org_id(), "mapping_started", site_id)
        .await?;
    tokio::spawn(run_crawl(
        st.clone(),
        model.clone(),
        base,
        policy,
        credentials,
    ));
    Ok(model)
}

/// The crawl task: heartbeats and progress events while it runs, then the
/// new map version (and the drift check) or `FAILED` with the error.
#[tracing::instrument(skip_all, fields(org_id = %site.org_id, site_id = %site.id))]
async fn run_crawl(
    st: crate::state::AppState,
    site: site::Model,
    base: reqwest::Url,
    policy: crate::outbound::Policy,
    credentials: Credentials,
) {
    let limits = Limits {
        max_pages: st.config.map_max_pages,
        max_depth: st.config.map_max_depth,
        max_page_bytes: st.config.map_page_bytes,
        max_total_bytes: st.config.map_total_bytes,
        deadline: Duration::from_secs(st.config.map_timeout_secs.max(1)),
        concurrency: st.config.map_concurrency,
    };
    let (tx, mut rx) = tokio::sync::watch::channel(Progress::default());
    let beat = {
        let st = st.clone();
        let (org_id, site_id) = (site.org_id, site.id);
        async move {
            let mut last = Progress::default();
            loop {
                tokio::select! {
                    changed = rx.changed() => if changed.is_err() { return },
                    () = tokio::time::sleep(HEARTBEAT) => {}
                }
                let now = *rx.borrow_and_update();
                if let Err(err) = site::Entity::update_many()
                    .col_expr(
                        site::Column::MappingHeartbeatAt,
                        sea_orm::sea_query::Expr::value(Utc::now()),
                    )
                    .filter(site::Column::Id.eq(site_id))
                    .exec(&st.db)
                    .await
                {
                    tracing::warn!(%err, "mapping heartbeat not stored");
                }
                if now != last {
                    last = now;
                    record_event(&st, org_id, "site.mapping_progress", serde_json::json!({
                        "id": site_id, "pagesMapped": now.pages_mapped, "pagesQueued": now.pages_queued,
                    })).await;
                    // At most one progress event per heartbeat.
                    tokio::time::sleep(HEARTBEAT).await;
                }
            }
        }
    };
    let result = {
        let work = async {
            let fetcher = fetcher().map_err(|e| e.to_string())?;
            crawler::crawl(fetcher, &policy, &base, &limits, &credentials, &tx)
                .await
                .map_err(|e| e.to_string())
        };
        tokio::pin!(beat);
        tokio::select! {
            r = work => r,
            () = &mut beat => Err("mapping heartbeat ended".to_string()),
        }
    };
    drop(tx);
    let outcome = match result {
        Ok(crawl) => {
            tracing::info!(
                pages = crawl.map.pages.len(),
                elements = crawl.map.element_count(),
                fetched = crawl.fetched,
                skipped = crawl.skipped,
                disallowed = crawl.disallowed,
                bytes = crawl.bytes,
                stopped_by = crawl.stopped_by,
                ms = crawl.elapsed.as_millis() as u64,
                "site mapped"
            );
            finish(&st, &site, crawl).await
        }
        Err(message) => fail(&st, &site, &message).await,
    };
    if let Err(err) = outcome {
        tracing::error!(%err, "could not store the mapping's end");
        let _ = fail(&st, &site, "internal error while storing the map").await;
    }
}

async fn finish(st: &State, site: &site::Model, crawl: crawler::Crawl) -> Result<(), AppError> {
    let stored = crawl.map.to_stored()?;
    let txn = crate::service::begin_write(&st.db).await?;
    let current = site::Entity::find_by_id(site.id)
        .one(&txn)
        .await?
        .ok_or_else(|| AppError::not_found("site"))?;
    let version = current.map_version + 1;
    let mut am: site::ActiveModel = current.into();
    am.app_map = Set(stored);
    am.map_version = Set(version);
    am.mapping_status = Set(MappingStatus::Completed.as_str().into());
    am.mapping_error = Set(None);
    am.mapping_heartbeat_at = Set(None);
    am.updated_at = Set(Utc::now());
    let model = am.update(&txn).await?;
    let ev = event::record(&txn, site.org_id, "site.mapped", serde_json::json!({
        "id": site.id, "mapVersion": version, "pages": crawl.map.pages.len(),
        "elements": crawl.map.element_count(), "fetched": crawl.fetched, "skipped": crawl.skipped,
        "disallowed": crawl.disallowed, "bytes": crawl.bytes, "stoppedBy": crawl.stopped_by,
        "ms": crawl.elapsed.as_millis() as u64,
    }))
    .await?;
    txn.commit().await?;
    event::publish(st, &[ev]).await;
    recheck_content(st, &model, &crawl.map).await
}

async fn fail(st: &State, site: &site::Model, message: &str) -> Result<(), AppError> {
    let message: String = message.chars().take(500).collect();
    site::Entity::update_many()
        .col_expr(
            site::Column::MappingStatus,
            sea_orm::sea_query::Expr::value(MappingStatus::Failed.as_str()),
        )
        .col_expr(
            site::Column::MappingError,
            sea_orm::sea_query::Expr::value(message.clone()),
        )
        .col_expr(
            site::Column::MappingHeartbeatAt,
            sea_orm::sea_query::Expr::value(Option::<chrono::DateTime<Utc>>::None),
        )
        .col_expr(
            site::Column::UpdatedAt,
            sea_orm::sea_query::Expr::value(Utc::now()),
        )
        .filter(site::Column::Id.eq(site.id))
        .exec(&st.db)
        .await?;
    record_event(
        st,
        site.org_id,
        "site.mapping_failed",
        serde_json::json!({ "id": site.id, "error": message }),
    )
    .await;
    Ok(())
}

/// At start: a site left `IN_PROGRESS` by a server that died (no heartbeat
/// for [`STALE_AFTER`]) ends `FAILED`, so mapping never stays in progress
/// forever; running `mapSite` again starts over (credentials are never
/// stored, so the crawl cannot resume by itself).
pub async fn end_abandoned_mappings(st: &State) -> Result<usize, AppError> {
    let stuck = site::Entity::find()
        .filter(site::Column::MappingStatus.eq(MappingStatus::InProgress.as_str()))
        .limit(10_000)
        .all(&st.db)
        .await?;
    let mut n = 0;
    for s in stuck.iter().filter(|s| stale(s)) {
        fail(
            st,
            s,
            "interrupted: the server stopped during mapping; run mapSite again",
        )
        .await?;
        n += 1;
    }
    Ok(n)
}

/// Runs [`end_abandoned_mappings`] every [`STALE_AFTER`]: a crawl whose
/// server died while another replica kept running (or that restarted within
/// a minute) ends `FAILED` within two minutes, not at the next start.
pub async fn end_abandoned_forever(st: crate::state::AppState) {
    let mut tick = tokio::time::interval(STALE_AFTER);
    tick.tick().await;
    loop {
        tick.tick().await;
        if let Err(err) = end_abandoned_mappings(&st).await {
            tracing::warn!(%err, "could not end abandoned mappings");
        }
    }
}

/// Most published items re-checked per site and kind.
const MAX_RECHECK: u64 = 2_000;

/// Health as stored on content.
fn health(broken: &[usize], version: i32) -> serde_json::Value {
    serde_json::json!({ "brokenSteps": broken, "mapVersion": version, "checkedAt": Utc::now() })
}

fn broken_before(h: &Option<serde_json::Value>) -> Vec<usize> {
    h.as_ref()
        .and_then(|h| serde_json::from_value(h["brokenSteps"].clone()).ok())
        .unwrap_or_default()
}

/// Re-checks the site's published flows and tooltips against `map`: stores
/// each one's health and emits `content.broken` for content whose broken
/// steps changed and are not none.
pub async fn recheck_content(st: &State, site: &site::Model, map: &AppMap) -> Result<(), AppError> {
    let published = ContentStatus::Published.as_str();
    let flows = flow::Entity::find()
        .filter(flow::Column::SiteId.eq(site.id))
        .filter(flow::Column::Status.eq(published))
        .limit(MAX_RECHECK)
        .all(&st.db)
        .await?;
    let mut events = vec![];
    for f in flows {
        let broken = drift::broken_steps(map, &flow_steps(&f));
        let before = broken_before(&f.health);
        flow::Entity::update_many()
            .col_expr(
                flow::Column::Health,
                sea_orm::sea_query::Expr::value(health(&broken, site.map_version)),
            )
            .filter(flow::Column::Id.eq(f.id))
            .exec(&st.db)
            .await?;
        if !broken.is_empty() && broken != before {
            events.push(("FLOW", f.id, broken));
        }
    }
    let tooltips = tooltip::Entity::find()
        .filter(tooltip::Column::SiteId.eq(site.id))
        .filter(tooltip::Column::Status.eq(published))
        .limit(MAX_RECHECK)
        .all(&st.db)
        .await?;
    for t in tooltips {
        let step = tooltip_step(&t);
        let broken = drift::broken_steps(map, std::slice::from_ref(&step));
        let before = broken_before(&t.health);
        tooltip::Entity::update_many()
            .col_expr(
                tooltip::Column::Health,
                sea_orm::sea_query::Expr::value(health(&broken, site.map_version)),
            )
            .filter(tooltip::Column::Id.eq(t.id))
            .exec(&st.db)
            .await?;
        if !broken.is_empty() && broken != before {
            events.push(("TOOLTIP", t.id, broken));
        }
    }
    for (kind, id, broken) in events {
        record_event(st, site.org_id, "content.broken", serde_json::json!({
            "kind": kind, "id": id, "siteId": site.id, "brokenSteps": broken, "mapVersion": site.map_version,
        }))
        .await;
    }
    Ok(())
}

/// A tooltip as the one step it is.
pub fn tooltip_step(t: &tooltip::Model) -> FlowStep {
    FlowStep {
        page_url: t.page_url.clone(),
        target_selector: t.target_selector.clone(),
        title: t.name.clone(),
        body: t.body.clone(),
        placement: crate::domain::Placement::Bottom,
        element_id: None,
        locators: vec![],
    }
}

/// Deletes one of the caller's sites; bots, widgets and content bound to it are unbound.
pub async fn delete(st: &State, scope: &OrgScope, id: Uuid) -> Result<(), AppError> {
    let txn = crate::service::begin_write(&st.db).await?;
    super::delete::<site::Entity>(&txn, scope, id).await?;
    event::commit_with_event::<site::Entity>(st, txn, scope.org_id(), "deleted", id).await
}
