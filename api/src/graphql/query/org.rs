//! The caller's org, its API keys, credits and events.

use async_graphql::{Context, Object};

use crate::{
    error::GqlResult,
    graphql::{
        ContextExt, connection,
        types::{ApiKeyConnection, Credits, Org, OrgEventConnection},
    },
    service::{self, PageArgs},
};

#[derive(Default)]
pub struct OrgQuery;

#[Object]
impl OrgQuery {
    /// The caller's org and plan.
    async fn org(&self, ctx: &Context<'_>) -> GqlResult<Org> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        Ok(Org::try_from(service::org::get(&st.db, &scope).await?)?)
    }

    /// The org's API keys (secrets are never shown again).
    #[graphql(complexity = "crate::graphql::list_cost(first, child_complexity)")]
    async fn api_keys(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Include revoked keys.", default = false)] include_revoked: bool,
        #[graphql(desc = "Page size, 1 to 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "Cursor to start after.")] after: Option<String>,
    ) -> GqlResult<ApiKeyConnection> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        let page =
            service::api_key::list(st, &scope, include_revoked, &PageArgs { first, after }).await?;
        Ok(connection(page, |m| m.id))
    }

    /// The org's credit balance and ledger.
    async fn credits(&self, ctx: &Context<'_>) -> GqlResult<Credits> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        Ok(Credits {
            balance: service::credits::balance(&st.db, &scope).await?,
        })
    }

    /// Emails to the org's owner and their delivery status, oldest first.
    #[graphql(complexity = "crate::graphql::list_cost(first, child_complexity)")]
    async fn notifications(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 1 to 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "Cursor to start after.")] after: Option<String>,
    ) -> GqlResult<crate::graphql::types::NotificationConnection> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        Ok(connection(
            service::notify::list(st, &scope, &PageArgs { first, after }).await?,
            |m| m.id,
        ))
    }

    /// The org's outbox events, oldest first.
    #[graphql(complexity = "crate::graphql::list_cost(first, child_complexity)")]
    async fn events(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only events of this kind, e.g. `ticket.created_via_widget`.")]
        kind: Option<String>,
        #[graphql(desc = "Page size, 1 to 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "Cursor to start after.")] after: Option<String>,
    ) -> GqlResult<OrgEventConnection> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        let page =
            service::event::list(st, &scope, kind.as_deref(), &PageArgs { first, after }).await?;
        Ok(connection(page, |m| m.id))
    }
}
