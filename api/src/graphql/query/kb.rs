//! Knowledge bases and articles.

use async_graphql::{Context, Object};
use entity::{kb_article, knowledge_base};
use uuid::Uuid;

use crate::{
    error::GqlResult,
    graphql::{
        ContextExt, connection,
        types::{KbArticle, KbArticleConnection, KnowledgeBase, KnowledgeBaseConnection},
    },
    service::{self, PageArgs},
};

#[derive(Default)]
pub struct KbQuery;

#[Object]
impl KbQuery {
    /// The org's knowledge bases.
    #[graphql(complexity = "crate::graphql::list_cost(first, child_complexity)")]
    async fn knowledge_bases(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 1 to 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "Cursor to start after.")] after: Option<String>,
    ) -> GqlResult<KnowledgeBaseConnection> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        Ok(connection(
            service::kb::list(st, &scope, &PageArgs { first, after }).await?,
            |m| m.id,
        ))
    }

    /// One knowledge base.
    async fn knowledge_base(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Its id.")] id: Uuid,
    ) -> GqlResult<KnowledgeBase> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        Ok(service::get::<knowledge_base::Entity>(&st.db, &scope, id)
            .await?
            .into())
    }

    /// The org's articles, optionally of one knowledge base.
    #[graphql(complexity = "crate::graphql::list_cost(first, child_complexity)")]
    async fn kb_articles(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only this knowledge base's articles.")] knowledge_base_id: Option<Uuid>,
        #[graphql(desc = "Only published (true) or unpublished (false) articles.")]
        published: Option<bool>,
        #[graphql(desc = "Page size, 1 to 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "Cursor to start after.")] after: Option<String>,
    ) -> GqlResult<KbArticleConnection> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        let page = service::kb::list_articles(
            st,
            &scope,
            knowledge_base_id,
            published,
            &PageArgs { first, after },
        )
        .await?;
        Ok(connection(page, |m| m.id))
    }

    /// One article.
    async fn kb_article(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Its id.")] id: Uuid,
    ) -> GqlResult<KbArticle> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        Ok(service::get::<kb_article::Entity>(&st.db, &scope, id)
            .await?
            .into())
    }
}
