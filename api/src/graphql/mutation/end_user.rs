//! Deleting a visitor on request.

use async_graphql::{Context, Object};
use uuid::Uuid;

use crate::{
    error::GqlResult,
    graphql::{ContextExt, types::EndUserDeletion},
    service,
};

#[derive(Default)]
pub struct EndUserMutation;

#[Object]
impl EndUserMutation {
    /// Deletes everything stored about a visitor in one transaction (their traits, sessions, messages, feedback, the events about their conversations, their tickets' personal fields; the credit ledger keeps its rows with turn references cleared), emits `end_user.deleted`, and answers what was removed. Give `id`, or `userId` (every end user with it, optionally only on `chatWidgetId`). Another org's id is `NOT_FOUND`.
    async fn delete_end_user(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The end user's id.")] id: Option<Uuid>,
        #[graphql(desc = "The host app's user id (instead of `id`).")] user_id: Option<String>,
        #[graphql(desc = "With `userId`: only on this widget.")] chat_widget_id: Option<Uuid>,
    ) -> GqlResult<EndUserDeletion> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        let sel = service::end_user::EndUserSelector::from_args(id, user_id, chat_widget_id)?;
        Ok(service::end_user::delete(st, &scope, sel).await?.into())
    }
}
