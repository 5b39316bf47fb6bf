//! Chat widgets, and the public widget configuration.

use async_graphql::{Context, Object};
use entity::chat_widget;
use uuid::Uuid;

use crate::{
    error::GqlResult,
    graphql::{
        ContextExt, connection,
        types::{ChatWidget, ChatWidgetConnection, WidgetConfig},
    },
    service::{self, PageArgs, bot::BotLabels},
};

#[derive(Default)]
pub struct WidgetQuery;

#[Object]
impl WidgetQuery {
    /// The org's chat widgets.
    #[graphql(complexity = "crate::graphql::list_cost(first, child_complexity)")]
    async fn chat_widgets(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 1 to 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "Cursor to start after.")] after: Option<String>,
    ) -> GqlResult<ChatWidgetConnection> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        Ok(connection(
            service::chat_widget::list(st, &scope, &PageArgs { first, after }).await?,
            |m| m.id,
        ))
    }

    /// One chat widget.
    async fn chat_widget(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Its public id.")] id: Uuid,
    ) -> GqlResult<ChatWidget> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        Ok(service::get::<chat_widget::Entity>(&st.db, &scope, id)
            .await?
            .into())
    }

    /// Public: what a published widget needs to render itself, with a fresh contact-form challenge.
    async fn widget_config(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The public widget id.")] widget_id: Uuid,
    ) -> GqlResult<WidgetConfig> {
        let st = ctx.state()?;
        let (widget, bot) = service::chat_widget::public(st, widget_id).await?;
        crate::http::origin::check(ctx, &widget)?;
        if let crate::auth::Caller::Public { .. } = ctx.caller() {
            service::chat_widget::charge(st, widget.id).await?;
        }
        Ok(WidgetConfig {
            widget_id: widget.id,
            labels: BotLabels::from_stored(&bot.labels),
            persona_name: bot.persona_name,
            greeting: bot.greeting,
            primary_color: bot.primary_color,
            accent_color: bot.accent_color,
            fallback_to_human: bot.fallback_to_human,
            contact_challenge: service::chat_widget::mint_contact_challenge(st, widget.id)?,
            contact_min_fill_ms: i32::try_from(st.config.contact_min_fill_ms).unwrap_or(i32::MAX),
        })
    }
}
