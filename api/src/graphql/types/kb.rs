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
    /// Up to 200 characters around the best match (of the best passage when there is one).
    pub snippet: String,
    /// The article's passages that answer best, best first (at most 3): what a bot hands its LLM.
    pub passages: Vec<KbSearchPassage>,
}

/// A passage of a found article.
#[derive(SimpleObject, Clone)]
pub struct KbSearchPassage {
    /// Its position in the article, from 0.
    pub position: i32,
    /// Its text, under its heading when it has one.
    pub text: String,
    /// How well the passage alone matches: a cosine for semantic matches, shared words for keyword ones.
    pub score: f64,
}

/// How `kbSearch` ranks.
#[derive(async_graphql::Enum, Clone, Copy, PartialEq, Eq)]
pub enum KbSearchMode {
    /// BM25F over stemmed words, statistics of the org's own knowledge bases only.
    Keyword,
    /// Sentence embeddings of passages (needs an embedding model on the server).
    Semantic,
    /// Words and meaning fused; words alone when the server has no embedding model.
    Hybrid,
}

impl From<KbSearchMode> for crate::turn::retrieval::RetrievalMode {
    fn from(m: KbSearchMode) -> Self {
        match m {
            KbSearchMode::Keyword => Self::Keyword,
            KbSearchMode::Semantic => Self::Semantic,
            KbSearchMode::Hybrid => Self::Hybrid,
        }
    }
}

impl From<crate::turn::retrieval::Hit> for KbSearchHit {
    fn from(h: crate::turn::retrieval::Hit) -> Self {
        Self {
            article_id: h.article_id,
            knowledge_base_id: h.knowledge_base_id,
            title: h.title,
            score: h.score,
            snippet: h.snippet,
            passages: h
                .passages
                .into_iter()
                .map(|p| KbSearchPassage {
                    position: i32::try_from(p.position).unwrap_or(i32::MAX),
                    text: p.text,
                    score: p.score,
                })
                .collect(),
        }
    }
}

/// Questions like one another that the knowledge base could not answer.
#[derive(SimpleObject, Clone)]
pub struct UnansweredQuestionGroup {
    /// How many questions of the period are in the group.
    pub count: i32,
    /// Its most recent question.
    pub example: String,
    /// Other wordings of it, most recent first (at most 4).
    pub other_wordings: Vec<String>,
    /// When a question of the group was last asked.
    pub last_asked_at: DateTime<Utc>,
    /// Why its questions count: the fallback's reason (`no_articles`, `ai_disabled`, `llm_unavailable`, …) or `downvoted`.
    pub reasons: Vec<String>,
}

impl From<service::unanswered::UnansweredGroup> for UnansweredQuestionGroup {
    fn from(g: service::unanswered::UnansweredGroup) -> Self {
        Self {
            count: i32::try_from(g.count).unwrap_or(i32::MAX),
            example: g.example,
            other_wordings: g.others,
            last_asked_at: g.last_asked_at,
            reasons: g.reasons,
        }
    }
}
