//! Knowledge bases and articles.

use async_graphql::{ComplexObject, Context, SimpleObject};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{
    error::GqlResult,
    graphql::{ContextExt, connection, types::KbArticleConnection},
    service::{self, PageArgs},
};

/// A collection of articles a bot can answer from.
#[derive(SimpleObject, Clone)]
#[graphql(complex)]
pub struct KnowledgeBase {
    /// Knowledge base id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// What it covers.
    pub description: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

#[ComplexObject]
impl KnowledgeBase {
    /// Its articles, oldest first.
    #[graphql(complexity = "crate::graphql::list_cost(first, child_complexity)")]
    async fn articles(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 1 to 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "Cursor of the article to start after.")] after: Option<String>,
    ) -> GqlResult<KbArticleConnection> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        let page =
            service::kb::list_articles(st, &scope, Some(self.id), None, &PageArgs { first, after })
                .await?;
        Ok(connection(page, |m| m.id))
    }
}

impl From<entity::knowledge_base::Model> for KnowledgeBase {
    fn from(m: entity::knowledge_base::Model) -> Self {
        Self {
            id: m.id,
            name: m.name,
            description: m.description,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

/// One knowledge base article.
#[derive(SimpleObject, Clone)]
pub struct KbArticle {
    /// Article id.
    pub id: Uuid,
    /// The knowledge base it belongs to.
    pub knowledge_base_id: Uuid,
    /// Title.
    pub title: String,
    /// Body (Markdown or plain text).
    pub body: String,
    /// Only published articles are searched and cited.
    pub published: bool,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<entity::kb_article::Model> for KbArticle {
    fn from(m: entity::kb_article::Model) -> Self {
        Self {
            id: m.id,
            knowledge_base_id: m.knowledge_base_id,
            title: m.title,
            body: m.body,
            published: m.published,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

/// One ranked article from `kbSearch`.
#[derive(SimpleObject, Clone)]
pub struct KbSearchHit {
    /// The article found.
    pub article_id: Uuid,
    /// The knowledge base it belongs to.
    pub knowledge_base_id: Uuid,
    /// Its title.
    pub title: String,
    /// Relevance, higher is better. Only comparable between hits of the same
    /// search: the scale depends on the database and the retrieval mode.
    pub score: f64,
    /// Up to 200 characters of the body around the best match.
    pub snippet: String,
}

impl From<crate::turn::retrieval::Hit> for KbSearchHit {
    fn from(h: crate::turn::retrieval::Hit) -> Self {
        Self {
            article_id: h.article_id,
            knowledge_base_id: h.knowledge_base_id,
            title: h.title,
            score: h.score,
            snippet: h.snippet,
        }
    }
}
