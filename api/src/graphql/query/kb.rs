//! Knowledge bases and articles.

use async_graphql::{Context, Object};
use entity::{kb_article, knowledge_base};
use uuid::Uuid;

use crate::{
    error::GqlResult,
    graphql::{
        ContextExt, connection,
        types::{
            KbArticle, KbArticleConnection, KbSearchHit, KbSearchMode, KnowledgeBase,
            KnowledgeBaseConnection, UnansweredQuestionGroup,
        },
    },
    service::{self, PageArgs},
    turn::retrieval::{self, RetrievalMode},
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

    /// Searches the org's published articles the way a bot retrieves them
    /// before answering: the dashboard's "test your bot" tool. Ranked by
    /// `mode`, or the server's mode (`WAYFINDER_RETRIEVAL`, hybrid by
    /// default) when omitted. Best hit first, each with its best passages;
    /// in keyword mode a query with nothing searchable in it (only stop
    /// words or punctuation) returns an empty list.
    #[graphql(complexity = "crate::graphql::list_cost(first.or(Some(10)), child_complexity)")]
    async fn kb_search(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "Only these knowledge bases (at most 100); omitted: all of the org's. An id that is not the org's gives NOT_FOUND."
        )]
        knowledge_base_ids: Option<Vec<Uuid>>,
        #[graphql(desc = "The visitor's question, at most 1000 characters.")] query: String,
        #[graphql(desc = "Number of hits, 1 to 50 (default 10).")] first: Option<i32>,
        #[graphql(
            desc = "How to rank; omitted: the server's mode. SEMANTIC without an embedding model on the server gives BAD_USER_INPUT."
        )]
        mode: Option<KbSearchMode>,
    ) -> GqlResult<Vec<KbSearchHit>> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        let hits = retrieval::kb_search(
            st,
            &scope,
            knowledge_base_ids.as_deref(),
            &query,
            first,
            mode.map(RetrievalMode::from),
        )
        .await?;
        Ok(hits.into_iter().map(KbSearchHit::from).collect())
    }

    /// The visitor questions the knowledge base could not answer, grouped by
    /// meaning (by shared words without an embedding model): turns that ended
    /// in the fallback and answers voted down, of the last `days`. Biggest
    /// group first: what to write next.
    #[graphql(complexity = "crate::graphql::list_cost(first.or(Some(20)), child_complexity)")]
    async fn unanswered_questions(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Days to look back, 1 to 365 (default 30).")] days: Option<i32>,
        #[graphql(desc = "Most groups returned, 1 to 100 (default 20).")] first: Option<i32>,
    ) -> GqlResult<Vec<UnansweredQuestionGroup>> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        let days = days.unwrap_or(30);
        if !(1..=365).contains(&days) {
            return Err(
                crate::error::AppError::bad_input("days", "must be between 1 and 365").into(),
            );
        }
        let first = first.unwrap_or(20);
        if !(1..=100).contains(&first) {
            return Err(
                crate::error::AppError::bad_input("first", "must be between 1 and 100").into(),
            );
        }
        let groups =
            service::unanswered::groups(st, &scope, i64::from(days), first as usize).await?;
        Ok(groups.into_iter().map(Into::into).collect())
    }
}
