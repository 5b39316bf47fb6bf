//! Bots, sites, flows and tooltips.

use async_graphql::{Context, Object};
use entity::{bot, flow, site, tooltip};
use uuid::Uuid;

use crate::{
    error::GqlResult,
    graphql::{
        ContextExt, connection, try_connection,
        types::{
            Bot, BotConnection, Flow, FlowConnection, Site, SiteConnection, Tooltip,
            TooltipConnection,
        },
    },
    service::{self, PageArgs, content::ContentFilter},
};

#[derive(Default)]
pub struct ContentQuery;

#[Object]
impl ContentQuery {
    /// The org's bots.
    #[graphql(complexity = "crate::graphql::list_cost(first, child_complexity)")]
    async fn bots(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 1 to 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "Cursor to start after.")] after: Option<String>,
    ) -> GqlResult<BotConnection> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        Ok(connection(
            service::bot::list(st, &scope, &PageArgs { first, after }).await?,
            |m| m.id,
        ))
    }

    /// One bot.
    async fn bot(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Its id.")] id: Uuid,
    ) -> GqlResult<Bot> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        Ok(service::get::<bot::Entity>(&st.db, &scope, id)
            .await?
            .into())
    }

    /// The org's sites.
    #[graphql(complexity = "crate::graphql::list_cost(first, child_complexity)")]
    async fn sites(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 1 to 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "Cursor to start after.")] after: Option<String>,
    ) -> GqlResult<SiteConnection> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        Ok(try_connection(
            service::site::list(st, &scope, &PageArgs { first, after }).await?,
            |m| m.id,
        )?)
    }

    /// One site.
    async fn site(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Its id.")] id: Uuid,
    ) -> GqlResult<Site> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        Ok(Site::try_from(
            service::get::<site::Entity>(&st.db, &scope, id).await?,
        )?)
    }

    /// The org's flows.
    #[graphql(complexity = "crate::graphql::list_cost(first, child_complexity)")]
    async fn flows(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Filters.")] filter: Option<ContentFilter>,
        #[graphql(desc = "Page size, 1 to 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "Cursor to start after.")] after: Option<String>,
    ) -> GqlResult<FlowConnection> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        let page = service::content::list_flows(
            st,
            &scope,
            filter.unwrap_or_default(),
            &PageArgs { first, after },
        )
        .await?;
        Ok(try_connection(page, |m| m.id)?)
    }

    /// One flow.
    async fn flow(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Its id.")] id: Uuid,
    ) -> GqlResult<Flow> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        Ok(Flow::try_from(
            service::get::<flow::Entity>(&st.db, &scope, id).await?,
        )?)
    }

    /// The org's tooltips.
    #[graphql(complexity = "crate::graphql::list_cost(first, child_complexity)")]
    async fn tooltips(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Filters.")] filter: Option<ContentFilter>,
        #[graphql(desc = "Page size, 1 to 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "Cursor to start after.")] after: Option<String>,
    ) -> GqlResult<TooltipConnection> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        let page = service::content::list_tooltips(
            st,
            &scope,
            filter.unwrap_or_default(),
            &PageArgs { first, after },
        )
        .await?;
        Ok(try_connection(page, |m| m.id)?)
    }

    /// One tooltip.
    async fn tooltip(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Its id.")] id: Uuid,
    ) -> GqlResult<Tooltip> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        Ok(Tooltip::try_from(
            service::get::<tooltip::Entity>(&st.db, &scope, id).await?,
        )?)
    }
}
