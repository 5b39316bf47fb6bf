//! The default: ranked full-text search on the database's own index.
//!
//! - SQLite: the external-content FTS5 table `kb_articles_fts` (Porter
//!   stemming over `unicode61`), kept in sync with `kb_articles` by triggers
//!   (migration `m20261122_000002_kb_fulltext`), ranked by `bm25()` with the
//!   title weighted [`SQLITE_TITLE_WEIGHT`] times the body.
//! - PostgreSQL: the stored, generated `search_vector` column (title as
//!   weight A, body as B, `english` configuration) with a GIN index, ranked
//!   by `ts_rank` normalised by document length.
//!
//! Both rank the matching rows' ids first and only then read the winners'
//! bodies, so no body of a row that loses is ever copied into a sort.

use sea_orm::{DatabaseConnection, DbBackend, FromQueryResult};
use uuid::Uuid;

use super::{Candidate, Scope, SqlBuilder, terms::Terms};
use crate::error::AppError;

/// How much more a word in the title counts than one in the body (SQLite `bm25` column weights).
const SQLITE_TITLE_WEIGHT: f64 = 5.0;

/// PostgreSQL `ts_rank` weights for labels {D, C, B, A}: the body (B) at a
/// fifth of the title (A), as on SQLite.
const PG_WEIGHTS: &str = "{0.1, 0.1, 0.2, 1.0}";

/// `ts_rank` normalisation: 1 divides by 1 + log(document length), so long
/// articles do not win by sheer size, without punishing them as hard as a
/// division by length would.
const PG_NORMALIZATION: i32 = 1;

#[derive(FromQueryResult)]
struct Row {
    id: Uuid,
    knowledge_base_id: Uuid,
    title: String,
    body: String,
    score: f64,
}

impl From<Row> for Candidate {
    fn from(r: Row) -> Self {
        Self {
            id: r.id,
            knowledge_base_id: r.knowledge_base_id,
            title: r.title,
            body: r.body,
            score: r.score,
        }
    }
}

/// The best `limit` articles for `terms`, best first.
pub(super) async fn search(
    db: &DatabaseConnection,
    scope: &Scope<'_>,
    terms: &Terms,
    limit: usize,
) -> Result<Vec<Candidate>, AppError> {
    let backend = db.get_database_backend();
    let mut q = SqlBuilder::new(backend);
    let sql = match backend {
        DbBackend::Sqlite => {
            let m = q.bind(terms.fts5_match());
            let scope_sql = q.scope(scope);
            let lim = q.bind(limit as i64);
            // CROSS JOIN pins the join order: walk the FTS matches, look each
            // article up by rowid; never the other way round.
            format!(
                "SELECT a.id, a.knowledge_base_id, a.title, a.body, -r.rank AS score \
                 FROM (SELECT kb_articles_fts.rowid AS rid, \
                              bm25(kb_articles_fts, {SQLITE_TITLE_WEIGHT:.1}, 1.0) AS rank \
                       FROM kb_articles_fts CROSS JOIN kb_articles a ON a.rowid = kb_articles_fts.rowid \
                       WHERE kb_articles_fts MATCH {m} AND {scope_sql} \
                       ORDER BY rank LIMIT {lim}) r \
                 CROSS JOIN kb_articles a ON a.rowid = r.rid \
                 ORDER BY r.rank, a.id"
            )
        }
        DbBackend::Postgres => {
            let tq = q.bind(terms.tsquery());
            let scope_sql = q.scope(scope);
            let lim = q.bind(limit as i64);
            let f = std::env::var("XP_F").unwrap_or("ts_rank".into());
            let xn = std::env::var("XP_N").unwrap_or("1".into());
            let xw = std::env::var("XP_W").unwrap_or(PG_WEIGHTS.into());
            format!(
                "SELECT a.id, a.knowledge_base_id, a.title, a.body, r.score \
                 FROM (SELECT a.id, {f}('{xw}'::float4[], a.search_vector, tq, {xn})::float8 AS score \
                       FROM kb_articles a, to_tsquery('english', {tq}) tq \
                       WHERE a.search_vector @@ tq AND {scope_sql} \
                       ORDER BY score DESC, a.id LIMIT {lim}) r \
                 JOIN kb_articles a ON a.id = r.id \
                 ORDER BY r.score DESC, a.id"
            )
        }
        other => {
            return Err(AppError::internal(format!(
                "full-text retrieval is not available on {other:?}"
            )));
        }
    };
    let rows = Row::find_by_statement(q.statement(sql)).all(db).await?;
    Ok(rows.into_iter().map(Candidate::from).collect())
}
