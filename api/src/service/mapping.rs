//! Mapping a site by crawling it (`mapSite`), in the background, and what
//! follows a new map: the drift check of published content. A crawl
//! heartbeats on its site row; a site left `IN_PROGRESS` by a server that
//! died is ended `FAILED` at start and by a periodic sweep on every replica,
//! so mapping never stays in progress forever. The crawler itself is
//! [`crate::appmap::crawler`]; with `WAYFINDER_CHROMIUM` each crawl runs its
//! own headless Chromium ([`crate::appmap::renderer`]).
//!
//! Crawls are capped per org (`WAYFINDER_MAP_MAX_CRAWLS_PER_ORG`) and per
//! deployment (`WAYFINDER_MAP_MAX_CRAWLS`), counted as the sites whose
//! mapping is in progress with a fresh heartbeat, in the database, so the
//! caps hold across replicas; a `mapSite` over a cap is `RATE_LIMITED`.

use std::{sync::OnceLock, time::Duration};

use async_graphql::InputObject;
use chrono::Utc;
use entity::{flow, site, tooltip};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait,
    QueryFilter, QuerySelect,
};
use uuid::Uuid;

use super::{event, get};
use crate::{
    appmap::{
        AppMap,
        crawler::{self, Credentials, Limits, Progress},
        drift,
        renderer::{RenderOptions, Renderer},
    },
    auth::OrgScope,
    domain::{ContentStatus, MappingStatus},
    error::AppError,
    service::content::{FlowStep, steps as flow_steps},
    state::State,
};

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
    check_crawl_caps(&txn, &st.config, scope.org_id()).await?;
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

/// Seconds a `mapSite` over a crawl cap is told to wait.
const CAP_RETRY_AFTER: u64 = 30;

/// Refuses a new crawl when the org or the deployment runs as many as allowed.
async fn check_crawl_caps(
    db: &impl ConnectionTrait,
    config: &crate::config::Config,
    org_id: Uuid,
) -> Result<(), AppError> {
    let fresh = Utc::now()
        - chrono::Duration::from_std(STALE_AFTER).unwrap_or_else(|_| chrono::Duration::minutes(1));
    let running = || {
        site::Entity::find()
            .filter(site::Column::MappingStatus.eq(MappingStatus::InProgress.as_str()))
            .filter(site::Column::MappingHeartbeatAt.gt(fresh))
    };
    let org = running()
        .filter(site::Column::OrgId.eq(org_id))
        .count(db)
        .await?;
    let all = running().count(db).await?;
    if org >= config.map_max_crawls_per_org as u64 || all >= config.map_max_crawls as u64 {
        tracing::info!(%org_id, org, all, "mapSite refused: crawl cap reached");
        return Err(AppError::RateLimited {
            retry_after: CAP_RETRY_AFTER,
        });
    }
    Ok(())
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
            let renderer = match st.config.chromium.as_deref().filter(|c| !c.is_empty()) {
                Some(chromium) => {
                    let options = RenderOptions {
                        chromium: chromium.to_string(),
                        timeout: Duration::from_millis(st.config.map_render_timeout_ms.max(100)),
                        max_page_bytes: limits.max_page_bytes,
                        max_total_bytes: limits.max_total_bytes,
                    };
                    match Renderer::launch(&options, policy.clone(), &base, &credentials).await {
                        Ok(r) => Some(r),
                        Err(err) => {
                            tracing::warn!(
                                err,
                                "Chromium could not start: mapping static HTML only"
                            );
                            None
                        }
                    }
                }
                None => None,
            };
            let crawl = crawler::crawl(
                fetcher,
                &policy,
                &base,
                &limits,
                &credentials,
                renderer.as_ref(),
                &tx,
            )
            .await
            .map_err(|e| e.to_string());
            if let Some(r) = renderer {
                if r.refused() > 0 {
                    tracing::info!(
                        refused = r.refused(),
                        "rendering: the guard refused requests"
                    );
                }
                r.close().await;
            }
            crawl
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
                rendered = crawl.rendered,
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

async fn finish(st: &State, site: &site::Model, mut crawl: crawler::Crawl) -> Result<(), AppError> {
    let txn = crate::service::begin_write(&st.db).await?;
    let current = site::Entity::find_by_id(site.id)
        .one(&txn)
        .await?
        .ok_or_else(|| AppError::not_found("site"))?;
    // Pages recorded in a browser (behind a login, say) stay unless the crawl mapped them itself.
    crawl
        .map
        .keep_recorded(&AppMap::from_stored(&current.app_map));
    let stored = crawl.map.to_stored()?;
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
        "disallowed": crawl.disallowed, "bytes": crawl.bytes, "rendered": crawl.rendered,
        "stoppedBy": crawl.stopped_by,
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
        wait_for_navigation: false,
    }
}
