//! How tours went: runs and per-flow funnels, for dashboards.

use async_graphql::{Context, InputObject, Object};
use uuid::Uuid;

use crate::{
    error::GqlResult,
    graphql::{
        ContextExt, try_connection,
        types::{TourFunnel, TourRunConnection},
    },
    service::{self, PageArgs, tour::RunFilter},
};

/// Which tour runs to list; every given filter must match.
#[derive(InputObject, Default, Debug)]
pub struct TourRunFilter {
    /// Only runs of this flow or tooltip.
    pub content_id: Option<Uuid>,
    /// Only runs of this visitor (see `endUsers`).
    pub end_user_id: Option<Uuid>,
    /// Only runs under this chat widget.
    pub chat_widget_id: Option<Uuid>,
}

impl From<TourRunFilter> for RunFilter {
    fn from(f: TourRunFilter) -> Self {
        Self {
            content_id: f.content_id,
            end_user_id: f.end_user_id,
            chat_widget_id: f.chat_widget_id,
        }
    }
}

#[derive(Default)]
pub struct TourQuery;

#[Object]
impl TourQuery {
    /// The org's tour runs (what `tour.js` reported from visitors' pages), oldest first.
    #[graphql(complexity = "crate::graphql::list_cost(first, child_complexity)")]
    async fn tour_runs(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Filters.")] filter: Option<TourRunFilter>,
        #[graphql(desc = "Page size, 1 to 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "Cursor to start after.")] after: Option<String>,
    ) -> GqlResult<TourRunConnection> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        let page = service::tour::list(
            st,
            &scope,
            filter.unwrap_or_default().into(),
            &PageArgs { first, after },
        )
        .await?;
        Ok(try_connection(page, |m| m.id)?)
    }

    /// The funnel of one of the org's flows or tooltips: runs started (and auto-started), completed, dismissed, with a missing element, the completion rate, and per step how many runs reached it, missed its element or ended there. All zeros before any run.
    async fn tour_funnel(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The flow's or tooltip's id.")] content_id: Uuid,
    ) -> GqlResult<TourFunnel> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        Ok(service::tour::funnel(st, &scope, content_id).await?.into())
    }
}
