//! Conversations, feedback and tickets.

use async_graphql::{Context, Object};
use uuid::Uuid;

use crate::{
    error::GqlResult,
    graphql::{
        ContextExt, connection, try_connection,
        types::{ChatSession, ChatSessionConnection, FeedbackConnection, SupportTicketConnection},
    },
    service::{self, PageArgs, ticket::TicketFilter},
};

#[derive(Default)]
pub struct ChatQuery;

#[Object]
impl ChatQuery {
    /// The org's chat sessions, oldest first.
    #[graphql(complexity = "crate::graphql::list_cost(first, child_complexity)")]
    async fn chat_sessions(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only this widget's sessions.")] widget_id: Option<Uuid>,
        #[graphql(desc = "Only this bot's sessions.")] bot_id: Option<Uuid>,
        #[graphql(desc = "Only this visitor's sessions (see `endUsers`).")] end_user_id: Option<
            Uuid,
        >,
        #[graphql(desc = "Page size, 1 to 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "Cursor to start after.")] after: Option<String>,
    ) -> GqlResult<ChatSessionConnection> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        let filter = service::session::SessionFilter {
            widget_id,
            bot_id,
            end_user_id,
        };
        Ok(connection(
            service::session::list(st, &scope, filter, &PageArgs { first, after }).await?,
            |m| m.id,
        ))
    }

    /// One chat session with its messages.
    async fn chat_session(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Its id.")] id: Uuid,
    ) -> GqlResult<ChatSession> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        Ok(service::session::one(st, &scope, id).await?.into())
    }

    /// Votes on bot messages, oldest first.
    #[graphql(complexity = "crate::graphql::list_cost(first, child_complexity)")]
    async fn feedback(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only `UP` or only `DOWN` votes.")] vote: Option<String>,
        #[graphql(desc = "Page size, 1 to 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "Cursor to start after.")] after: Option<String>,
    ) -> GqlResult<FeedbackConnection> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        Ok(connection(
            service::session::feedback(st, &scope, vote.as_deref(), &PageArgs { first, after })
                .await?,
            |m| m.id,
        ))
    }

    /// Support tickets, oldest first.
    #[graphql(complexity = "crate::graphql::list_cost(first, child_complexity)")]
    async fn support_tickets(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Filters.")] filter: Option<TicketFilter>,
        #[graphql(desc = "Page size, 1 to 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "Cursor to start after.")] after: Option<String>,
    ) -> GqlResult<SupportTicketConnection> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        let page = service::ticket::list(
            st,
            &scope,
            filter.unwrap_or_default(),
            &PageArgs { first, after },
        )
        .await?;
        Ok(try_connection(page, |m| m.id)?)
    }
}
