//! Webhooks.

use async_graphql::{Context, Object};
use entity::webhook;
use uuid::Uuid;

use crate::{
    error::GqlResult,
    graphql::{
        ContextExt, connection,
        types::{Webhook, WebhookConnection},
    },
    service::{self, PageArgs},
};

#[derive(Default)]
pub struct WebhookQuery;

#[Object]
impl WebhookQuery {
    /// The org's webhooks, oldest first.
    #[graphql(complexity = "crate::graphql::list_cost(first, child_complexity)")]
    async fn webhooks(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 1 to 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "Cursor to start after.")] after: Option<String>,
    ) -> GqlResult<WebhookConnection> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        Ok(connection(
            service::webhook::list(st, &scope, &PageArgs { first, after }).await?,
            |m| m.id,
        ))
    }

    /// One webhook.
    async fn webhook(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Its id.")] id: Uuid,
    ) -> GqlResult<Webhook> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        Ok(service::get::<webhook::Entity>(&st.db, &scope, id)
            .await?
            .into())
    }
}
