//! Knowledge-base retrieval: which articles a bot answers from (SPEC §3,
//! step 3), and the dashboard's `kbSearch`.
//!
//! One entry point, [`search`], with two methods behind it:
//!
//! - [`RetrievalMode::FullText`], the default ([`fulltext`]): the database's
//!   own full-text index, ranked (SQLite FTS5 `bm25()`, PostgreSQL
//!   `ts_rank` over a weighted `tsvector`), with the engines' stemming, the
//!   title weighted above the body, the question's words ORed and widened by
//!   a small support thesaurus ([`terms`]).
//! - [`RetrievalMode::Keyword`], the baseline ([`keyword`]): substring
//!   matching re-ranked by title and body hits, as many products ship it.
//!
//! `cargo bench -p wayfinder-api --bench retrieval` measures both, for
//! latency at 1k–100k articles and for quality on a labelled FAQ set.
//!
//! Every search is confined to one org, to a set of its knowledge bases and
//! to published articles; the filters are part of the one SQL statement, so
//! no other org's article is ever read. The question never reaches SQL as
//! text: it is cut into alphanumeric words, and the expression built from
//! them is a bound parameter.

mod fulltext;
mod keyword;
pub mod snippet;
pub mod terms;

use sea_orm::{
    ColumnTrait, DatabaseConnection, DbBackend, QueryFilter, QuerySelect, Statement, Value,
};
use uuid::Uuid;

use crate::{auth::OrgScope, error::AppError, service};

/// Longest question searched, in characters; the rest is ignored.
pub const MAX_QUERY_CHARS: usize = 1_000;

/// Most hits one search returns.
pub const MAX_LIMIT: usize = 50;

/// Hits `kbSearch` returns when `first` is omitted.
pub const DEFAULT_FIRST: usize = 10;

/// Most knowledge bases `kbSearch` accepts by id.
pub const MAX_KNOWLEDGE_BASE_IDS: usize = 100;

/// One retrieved article.
#[derive(Clone, Debug, PartialEq)]
pub struct Hit {
    pub article_id: Uuid,
    pub knowledge_base_id: Uuid,
    pub title: String,
    pub body: String,
    /// Relevance; higher is better. Comparable within one search only.
    pub score: f64,
    /// At most [`snippet::MAX_CHARS`] characters of the body around the best match.
    pub snippet: String,
}

/// How articles are found and ranked (`WAYFINDER_RETRIEVAL`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetrievalMode {
    /// The database's ranked full-text index (`fulltext`, the default).
    FullText,
    /// Substring matching re-ranked by title and body hits (`keyword`).
    Keyword,
}

impl RetrievalMode {
    /// `fulltext` or `keyword` (any case); anything else is `None`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "fulltext" => Some(Self::FullText),
            "keyword" => Some(Self::Keyword),
            _ => None,
        }
    }
}

/// The published articles of org `org_id` in `knowledge_base_ids` that best
/// answer `query`, best first, at most `limit` (clamped to 1..=[`MAX_LIMIT`]).
///
/// A query with nothing searchable in it (empty, only stop words or
/// punctuation) finds nothing; so does an empty `knowledge_base_ids`.
#[tracing::instrument(skip(db, knowledge_base_ids, query), fields(%org_id, kbs = knowledge_base_ids.len()))]
pub async fn search(
    db: &DatabaseConnection,
    org_id: Uuid,
    knowledge_base_ids: &[Uuid],
    query: &str,
    limit: usize,
    mode: RetrievalMode,
) -> Result<Vec<Hit>, AppError> {
    if knowledge_base_ids.is_empty() {
        return Ok(vec![]);
    }
    let scope = Scope {
        org_id,
        knowledge_bases: Some(knowledge_base_ids),
    };
    run(db, &scope, query, limit, mode).await
}

/// The dashboard's "test your bot" search (`kbSearch`): like [`search`], for
/// the caller's org, over `knowledge_base_ids` (all of the org's when
/// `None`), returning `first` hits (default [`DEFAULT_FIRST`]).
///
/// `BAD_USER_INPUT` on `first` outside 1..=[`MAX_LIMIT`], on a `query` longer
/// than [`MAX_QUERY_CHARS`], on more than [`MAX_KNOWLEDGE_BASE_IDS`] ids;
/// `NOT_FOUND` on `knowledgeBaseIds` when one is not the caller's.
#[tracing::instrument(skip_all, fields(org_id = %scope.org_id()))]
pub async fn kb_search(
    db: &DatabaseConnection,
    scope: &OrgScope,
    knowledge_base_ids: Option<&[Uuid]>,
    query: &str,
    first: Option<i32>,
    mode: RetrievalMode,
) -> Result<Vec<Hit>, AppError> {
    let limit = match first {
        None => DEFAULT_FIRST,
        Some(n) if (1..=MAX_LIMIT as i32).contains(&n) => n as usize,
        Some(_) => {
            return Err(AppError::bad_input(
                "first",
                format!("must be between 1 and {MAX_LIMIT}"),
            ));
        }
    };
    if query.chars().count() > MAX_QUERY_CHARS {
        return Err(AppError::bad_input(
            "query",
            format!("must be at most {MAX_QUERY_CHARS} characters"),
        ));
    }
    let Some(ids) = knowledge_base_ids else {
        let scope = Scope {
            org_id: scope.org_id(),
            knowledge_bases: None,
        };
        return run(db, &scope, query, limit, mode).await;
    };
    if ids.len() > MAX_KNOWLEDGE_BASE_IDS {
        return Err(AppError::bad_input(
            "knowledgeBaseIds",
            format!("at most {MAX_KNOWLEDGE_BASE_IDS} knowledge bases"),
        ));
    }
    let mut unique = ids.to_vec();
    unique.sort_unstable();
    unique.dedup();
    use entity::knowledge_base::{Column, Entity};
    let found: Vec<Uuid> = service::scoped::<Entity>(scope)
        .filter(Column::Id.is_in(unique.iter().copied()))
        .select_only()
        .column(Column::Id)
        .into_tuple()
        .all(db)
        .await?;
    if found.len() != unique.len() {
        return Err(AppError::not_found_in("knowledge base", "knowledgeBaseIds"));
    }
    search(db, scope.org_id(), &unique, query, limit, mode).await
}

/// Where a search may look: one org, its published articles, and either
/// the listed knowledge bases or all of them.
struct Scope<'a> {
    org_id: Uuid,
    knowledge_bases: Option<&'a [Uuid]>,
}

/// An article a method found, before its snippet is cut.
struct Candidate {
    id: Uuid,
    knowledge_base_id: Uuid,
    title: String,
    body: String,
    score: f64,
}

async fn run(
    db: &DatabaseConnection,
    scope: &Scope<'_>,
    query: &str,
    limit: usize,
    mode: RetrievalMode,
) -> Result<Vec<Hit>, AppError> {
    let query = match query.char_indices().nth(MAX_QUERY_CHARS) {
        Some((end, _)) => &query[..end],
        None => query,
    };
    let terms = terms::Terms::parse(query);
    if terms.is_empty() {
        return Ok(vec![]);
    }
    let limit = limit.clamp(1, MAX_LIMIT);
    let found = match mode {
        RetrievalMode::FullText => fulltext::search(db, scope, &terms, limit).await?,
        RetrievalMode::Keyword => keyword::search(db, scope, &terms, limit).await?,
    };
    let all_terms = terms.all();
    Ok(found
        .into_iter()
        .map(|c| Hit {
            snippet: snippet::excerpt(&c.body, &all_terms),
            article_id: c.id,
            knowledge_base_id: c.knowledge_base_id,
            title: c.title,
            body: c.body,
            score: c.score,
        })
        .collect())
}

/// Raw SQL with bound values and the right placeholder syntax per backend.
struct SqlBuilder {
    backend: DbBackend,
    values: Vec<Value>,
}

impl SqlBuilder {
    fn new(backend: DbBackend) -> Self {
        Self {
            backend,
            values: Vec::new(),
        }
    }

    /// Binds `v`; returns its placeholder. Placeholders must appear in the
    /// SQL in binding order (SQLite's `?` are positional).
    fn bind(&mut self, v: impl Into<Value>) -> String {
        self.values.push(v.into());
        match self.backend {
            DbBackend::Postgres => format!("${}", self.values.len()),
            _ => "?".to_string(),
        }
    }

    /// The tenancy filter on `kb_articles a`: the org, published only, the knowledge bases.
    fn scope(&mut self, scope: &Scope<'_>) -> String {
        let org = self.bind(scope.org_id);
        let published = self.bind(true);
        let mut sql = format!("a.org_id = {org} AND a.published = {published}");
        if let Some(kbs) = scope.knowledge_bases {
            let list: Vec<String> = kbs.iter().map(|id| self.bind(*id)).collect();
            sql.push_str(&format!(
                " AND a.knowledge_base_id IN ({})",
                list.join(", ")
            ));
        }
        sql
    }

    fn statement(self, sql: String) -> Statement {
        Statement::from_sql_and_values(self.backend, sql, self.values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse() {
        assert_eq!(
            RetrievalMode::parse("fulltext"),
            Some(RetrievalMode::FullText)
        );
        assert_eq!(
            RetrievalMode::parse("Keyword"),
            Some(RetrievalMode::Keyword)
        );
        assert_eq!(RetrievalMode::parse("vector"), None);
    }
}
