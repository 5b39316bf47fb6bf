//! Knowledge bases and articles.

use async_graphql::{Context, Object};
use uuid::Uuid;

use crate::{
    error::GqlResult,
    graphql::{
        ContextExt,
        types::{Deleted, KbArticle, KnowledgeBase},
    },
    service::{
        self,
        kb::{
            CreateKbArticleInput, CreateKnowledgeBaseInput, UpdateKbArticleInput,
            UpdateKnowledgeBaseInput,
        },
    },
};

#[derive(Default)]
pub struct KbMutation;

#[Object]
impl KbMutation {
    /// Creates a knowledge base.
    async fn create_knowledge_base(
        &self,
        ctx: &Context<'_>,
        input: CreateKnowledgeBaseInput,
    ) -> GqlResult<KnowledgeBase> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        Ok(service::kb::create(st, &scope, input).await?.into())
    }

    /// Changes a knowledge base.
    async fn update_knowledge_base(
        &self,
        ctx: &Context<'_>,
        input: UpdateKnowledgeBaseInput,
    ) -> GqlResult<KnowledgeBase> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        Ok(service::kb::update(st, &scope, input).await?.into())
    }

    /// Deletes a knowledge base and its articles.
    async fn delete_knowledge_base(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Its id.")] id: Uuid,
    ) -> GqlResult<Deleted> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        service::kb::delete(st, &scope, id).await?;
        Ok(Deleted { id })
    }

    /// Creates an article.
    async fn create_kb_article(
        &self,
        ctx: &Context<'_>,
        input: CreateKbArticleInput,
    ) -> GqlResult<KbArticle> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        Ok(service::kb::create_article(st, &scope, input).await?.into())
    }

    /// Changes an article.
    async fn update_kb_article(
        &self,
        ctx: &Context<'_>,
        input: UpdateKbArticleInput,
    ) -> GqlResult<KbArticle> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        Ok(service::kb::update_article(st, &scope, input).await?.into())
    }

    /// Deletes an article.
    async fn delete_kb_article(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Its id.")] id: Uuid,
    ) -> GqlResult<Deleted> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        service::kb::delete_article(st, &scope, id).await?;
        Ok(Deleted { id })
    }
}
