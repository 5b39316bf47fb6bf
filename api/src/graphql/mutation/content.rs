//! Bots, sites, flows and tooltips.

use async_graphql::{Context, Object};
use uuid::Uuid;

use crate::{
    error::GqlResult,
    graphql::{
        ContextExt,
        types::{Bot, Deleted, Flow, Site, SiteRecording, Tooltip},
    },
    service::{
        self,
        bot::{CreateBotInput, UpdateBotInput},
        content::{CreateFlowInput, CreateTooltipInput, UpdateFlowInput, UpdateTooltipInput},
        mapping::MapSiteInput,
        site::{CreateSiteInput, UpdateSiteInput, UpdateSiteMapInput},
    },
};

#[derive(Default)]
pub struct ContentMutation;

#[Object]
impl ContentMutation {
    /// Creates a bot (GROWTH plan or higher).
    async fn create_bot(&self, ctx: &Context<'_>, input: CreateBotInput) -> GqlResult<Bot> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        Ok(service::bot::create(st, &scope, input).await?.into())
    }

    /// Changes a bot.
    async fn update_bot(&self, ctx: &Context<'_>, input: UpdateBotInput) -> GqlResult<Bot> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        Ok(service::bot::update(st, &scope, input).await?.into())
    }

    /// Deletes a bot, its widgets and their conversations.
    async fn delete_bot(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Its id.")] id: Uuid,
    ) -> GqlResult<Deleted> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        service::bot::delete(st, &scope, id).await?;
        Ok(Deleted { id })
    }

    /// Creates a site.
    async fn create_site(&self, ctx: &Context<'_>, input: CreateSiteInput) -> GqlResult<Site> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        Ok(Site::try_from(
            service::site::create(st, &scope, input).await?,
        )?)
    }

    /// Changes a site.
    async fn update_site(&self, ctx: &Context<'_>, input: UpdateSiteInput) -> GqlResult<Site> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        Ok(Site::try_from(
            service::site::update(st, &scope, input).await?,
        )?)
    }

    /// Replaces a site's app map with an uploaded one (at most 500 pages of 300 elements; no locator shared by two elements of a page) and sets its mapping status; a completed map is a new version, and published content is re-checked against it (`health`, `content.broken`).
    async fn update_site_map(
        &self,
        ctx: &Context<'_>,
        input: UpdateSiteMapInput,
    ) -> GqlResult<Site> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        let pages = input.pages.into_iter().map(Into::into).collect();
        Ok(Site::try_from(
            service::site::update_map(st, &scope, input.site_id, pages, input.mapping_status)
                .await?,
        )?)
    }

    /// Starts mapping a site by crawling it from its base URL (same origin, robots.txt respected, bounded by the `WAYFINDER_MAP_*` settings), in the background: returns the site `IN_PROGRESS`; `site.mapping_progress`, then `site.mapped` or `site.mapping_failed` follow on `orgEvents`. The current map serves until the new one completes.
    async fn map_site(&self, ctx: &Context<'_>, input: MapSiteInput) -> GqlResult<Site> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        let site_id = input.site_id;
        Ok(Site::try_from(
            service::mapping::map_site(st, &scope, site_id, input.into()).await?,
        )?)
    }

    /// Starts recording a site's map in an org member's own browser, for apps behind a login no crawler can enter: returns a short-lived signed mapping token (`WAYFINDER_RECORDING_TTL_SECS`). With it, `recorder.js` computes each visited page's elements and their locators in the real DOM and sends them to `POST /recorder/pages`; each page is merged into the map as a new version (`site.page_recorded` on `orgEvents`).
    async fn start_site_recording(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The site to record.")] site_id: Uuid,
    ) -> GqlResult<SiteRecording> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        Ok(service::recording::start(st, &scope, site_id).await?.into())
    }

    /// Deletes a site; what was bound to it is unbound.
    async fn delete_site(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Its id.")] id: Uuid,
    ) -> GqlResult<Deleted> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        service::site::delete(st, &scope, id).await?;
        Ok(Deleted { id })
    }

    /// Creates a flow with its steps.
    async fn create_flow(&self, ctx: &Context<'_>, input: CreateFlowInput) -> GqlResult<Flow> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        Ok(Flow::try_from(
            service::content::create_flow(st, &scope, input).await?,
        )?)
    }

    /// Changes a flow; `steps` replaces all steps.
    async fn update_flow(&self, ctx: &Context<'_>, input: UpdateFlowInput) -> GqlResult<Flow> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        Ok(Flow::try_from(
            service::content::update_flow(st, &scope, input).await?,
        )?)
    }

    /// Publishes a flow (it needs at least one step).
    async fn publish_flow(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Its id.")] id: Uuid,
    ) -> GqlResult<Flow> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        Ok(Flow::try_from(
            service::content::publish_flow(st, &scope, id).await?,
        )?)
    }

    /// Deletes a flow.
    async fn delete_flow(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Its id.")] id: Uuid,
    ) -> GqlResult<Deleted> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        service::content::delete_flow(st, &scope, id).await?;
        Ok(Deleted { id })
    }

    /// Creates a tooltip.
    async fn create_tooltip(
        &self,
        ctx: &Context<'_>,
        input: CreateTooltipInput,
    ) -> GqlResult<Tooltip> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        Ok(Tooltip::try_from(
            service::content::create_tooltip(st, &scope, input).await?,
        )?)
    }

    /// Changes a tooltip.
    async fn update_tooltip(
        &self,
        ctx: &Context<'_>,
        input: UpdateTooltipInput,
    ) -> GqlResult<Tooltip> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        Ok(Tooltip::try_from(
            service::content::update_tooltip(st, &scope, input).await?,
        )?)
    }

    /// Deletes a tooltip.
    async fn delete_tooltip(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Its id.")] id: Uuid,
    ) -> GqlResult<Deleted> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        service::content::delete_tooltip(st, &scope, id).await?;
        Ok(Deleted { id })
    }
}
