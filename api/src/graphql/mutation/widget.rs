//! Chat widgets.

use async_graphql::{Context, Object};
use uuid::Uuid;

use crate::{
    error::GqlResult,
    graphql::{
        ContextExt,
        types::{ChatWidget, Deleted},
    },
    service::{
        self,
        chat_widget::{CreateChatWidgetInput, UpdateChatWidgetInput},
    },
};

#[derive(Default)]
pub struct WidgetMutation;

#[Object]
impl WidgetMutation {
    /// Creates a chat widget; its `id` is the public UUID for the `<script>` tag. The answer carries its `identitySecret`, this once.
    async fn create_chat_widget(
        &self,
        ctx: &Context<'_>,
        input: CreateChatWidgetInput,
    ) -> GqlResult<ChatWidget> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        let (model, secret) = service::chat_widget::create(st, &scope, input).await?;
        Ok(ChatWidget {
            identity_secret: Some(secret),
            ..model.into()
        })
    }

    /// Replaces a chat widget's identity secret and returns the new one in `identitySecret`, this once; the old one stops verifying at once.
    async fn rotate_chat_widget_identity_secret(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The widget's public id.")] id: Uuid,
    ) -> GqlResult<ChatWidget> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        let (model, secret) = service::chat_widget::rotate_identity_secret(st, &scope, id).await?;
        Ok(ChatWidget {
            identity_secret: Some(secret),
            ..model.into()
        })
    }

    /// Changes a chat widget.
    async fn update_chat_widget(
        &self,
        ctx: &Context<'_>,
        input: UpdateChatWidgetInput,
    ) -> GqlResult<ChatWidget> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        Ok(service::chat_widget::update(st, &scope, input)
            .await?
            .into())
    }

    /// Deletes a chat widget and its conversations.
    async fn delete_chat_widget(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Its public id.")] id: Uuid,
    ) -> GqlResult<Deleted> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        service::chat_widget::delete(st, &scope, id).await?;
        Ok(Deleted { id })
    }
}
