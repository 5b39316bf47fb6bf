//! The default: ranked full-text search on the database's own index.
//!
//! - SQLite: the external-content FTS5 table `kb_articles_fts` (Porter
//!   stemming over `unicode61`), kept in sync with `kb_articles` by triggers
//!   (migration `m20261122_000002_kb_fulltext`), ranked by `bm25()` with the
//!   title weighted [`SQLITE_TITLE_WEIGHT`] times the body.
//! - PostgreSQL: the stored, generated `search_vector` column (title as
//!   weight A, body as B, `english` configuration) with a GIN index, ranked
//!   by `ts_rank` with PostgreSQL's default label weights, normalised by
//!   document length.
//!
//! # Bounded work: common words
//!
//! Ranking costs time per matching article (and FTS5's `bm25()` also counts
//! every article holding each query word, for its IDF). An ORed question
//! with a word found in half of 100k articles would rank 50k of them. So,
//! like Lucene's `CommonTermsQuery`, each search first looks up how many
//! articles each word group matches (SQLite: exact counts capped at
//! [`CANDIDATE_BUDGET`], from the index; PostgreSQL: the planner's
//! statistics for the column, `pg_stats.most_common_elems`), then searches
//! for the rarest groups whose matches fit in the budget and leaves the very
//! common ones out. Below the budget nothing is left out, so a knowledge
//! base of a few thousand articles gets exact BM25 over every word; a
//! common word left out of a large one carries little weight anyway (BM25's
//! IDF of a word in 5% of articles is ~3, of a rare one ~10). A question made
//! only of common words ("it doesn't work") needs all of them (AND), then
//! any (OR); either way at most [`CANDIDATE_CAP`] matching articles are
//! ranked, the first the index yields.
//!
//! Both engines rank the matching rows' ids first and only then read the
//! winners' bodies, so no losing body is copied into a sort.

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, FromQueryResult};
use uuid::Uuid;

use super::{
    Candidate, Scope, SqlBuilder,
    terms::{self, Combine, TermGroup, Terms},
};
use crate::error::AppError;

/// How much more a word in the title counts than one in the body (SQLite `bm25` column weights).
const SQLITE_TITLE_WEIGHT: f64 = 5.0;

/// PostgreSQL `ts_rank` weights for labels {D, C, B, A}: its defaults, the
/// title (A) at 2.5 times the body (B).
const PG_WEIGHTS: &str = "{0.1, 0.2, 0.4, 1.0}";

/// `ts_rank` normalisation: 1 divides by 1 + log(document length), so long
/// articles do not win by sheer size, without punishing them as hard as a
/// division by length would.
const PG_NORMALIZATION: i32 = 1;

/// Most articles the chosen word groups may match together; groups are
/// taken rarest first until the next would overflow it.
const CANDIDATE_BUDGET: i64 = 2_000;

/// Most matching articles ranked by one search, whatever the estimates said.
const CANDIDATE_CAP: i64 = 2_000;

/// Most common word groups ANDed when a question has nothing rarer.
const MAX_COMMON_GROUPS: usize = 3;

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

/// Which groups to search for, and how.
#[derive(Debug, PartialEq)]
enum Plan {
    /// The rarer groups, ORed (indexes into `Terms::groups`).
    Rare(Vec<usize>),
    /// Only common groups: these ANDed, then ORed if that finds nothing.
    Common(Vec<usize>),
}

/// Picks groups by their match counts (`counts[i]` for group `i`): rarest
/// first while the sum fits in [`CANDIDATE_BUDGET`]; groups matching nothing
/// are left out.
fn plan(counts: &[i64]) -> Plan {
    let mut order: Vec<usize> = (0..counts.len()).collect();
    order.sort_by_key(|&i| (counts[i], i));
    let mut chosen = Vec::new();
    let mut total = 0;
    for &i in &order {
        if counts[i] == 0 {
            continue;
        }
        if total + counts[i] > CANDIDATE_BUDGET {
            break;
        }
        total += counts[i];
        chosen.push(i);
    }
    if !chosen.is_empty() {
        chosen.sort_unstable();
        return Plan::Rare(chosen);
    }
    let common: Vec<usize> = (0..counts.len())
        .filter(|&i| counts[i] > 0)
        .take(MAX_COMMON_GROUPS)
        .collect();
    Plan::Common(common)
}

/// The best `limit` articles for `terms`, best first.
pub(super) async fn search(
    db: &DatabaseConnection,
    scope: &Scope<'_>,
    terms: &Terms,
    limit: usize,
) -> Result<Vec<Candidate>, AppError> {
    let backend = db.get_database_backend();
    let counts = match backend {
        DbBackend::Sqlite => sqlite_counts(db, &terms.groups).await?,
        DbBackend::Postgres => postgres_counts(db, &terms.groups).await?,
        other => {
            return Err(AppError::internal(format!(
                "full-text retrieval is not available on {other:?}"
            )));
        }
    };
    let pick =
        |ids: &[usize]| -> Vec<&TermGroup> { ids.iter().map(|&i| &terms.groups[i]).collect() };
    match plan(&counts) {
        Plan::Rare(ids) => ranked(db, scope, &pick(&ids), Combine::Any, limit).await,
        Plan::Common(ids) if ids.is_empty() => Ok(vec![]),
        Plan::Common(ids) => {
            let groups = pick(&ids);
            let found = ranked(db, scope, &groups, Combine::All, limit).await?;
            if !found.is_empty() || groups.len() == 1 {
                return Ok(found);
            }
            ranked(db, scope, &groups, Combine::Any, limit).await
        }
    }
}

/// How many articles (of any org) each group matches, capped just above
/// [`CANDIDATE_BUDGET`]: exact, from the FTS5 index, in one statement.
async fn sqlite_counts(
    db: &DatabaseConnection,
    groups: &[TermGroup],
) -> Result<Vec<i64>, AppError> {
    let mut q = SqlBuilder::new(DbBackend::Sqlite);
    let cap = CANDIDATE_BUDGET + 1;
    let columns: Vec<String> = groups
        .iter()
        .map(|g| {
            let m = q.bind(terms::fts5_match([g], Combine::Any));
            let lim = q.bind(cap);
            format!(
                "(SELECT count(*) FROM (SELECT 1 FROM kb_articles_fts \
                  WHERE kb_articles_fts MATCH {m} LIMIT {lim}))"
            )
        })
        .collect();
    let sql = format!("SELECT {}", columns.join(", "));
    let row = db
        .query_one_raw(q.statement(sql))
        .await?
        .ok_or_else(|| AppError::internal("match counts: no row"))?;
    (0..groups.len())
        .map(|i| row.try_get_by_index::<i64>(i).map_err(AppError::from))
        .collect()
}

/// How many articles each group matches, estimated from the planner's
/// statistics: each word's lexeme frequency among the column's most common
/// elements times the table's row count. Words too rare to be listed, and
/// tables not yet analysed, count as zero: nothing is left out.
async fn postgres_counts(
    db: &DatabaseConnection,
    groups: &[TermGroup],
) -> Result<Vec<i64>, AppError> {
    let mut q = SqlBuilder::new(DbBackend::Postgres);
    let mut owner = Vec::new();
    let mut values = Vec::new();
    for (gi, g) in groups.iter().enumerate() {
        for w in g.all() {
            let p = q.bind(w.to_string());
            values.push(format!("({}, {p})", owner.len()));
            owner.push(gi);
        }
    }
    let sql = format!(
        "SELECT w.ord, (coalesce(max(m.f), 0) * max(c.reltuples))::float8 AS n \
         FROM (VALUES {}) AS w(ord, word) \
         LEFT JOIN LATERAL unnest(tsvector_to_array(to_tsvector('english', w.word))) AS l(lexeme) ON true \
         LEFT JOIN (SELECT m.e, m.f FROM pg_stats s, \
                      unnest(s.most_common_elems::text::text[], s.most_common_elem_freqs) AS m(e, f) \
                    WHERE s.schemaname = current_schema() AND s.tablename = 'kb_articles' \
                      AND s.attname = 'search_vector') m ON m.e = l.lexeme \
         CROSS JOIN (SELECT greatest(reltuples, 0) AS reltuples FROM pg_class \
                     WHERE oid = 'kb_articles'::regclass) c \
         GROUP BY w.ord",
        values.join(", ")
    );
    let rows = db.query_all_raw(q.statement(sql)).await?;
    let mut counts = vec![0i64; groups.len()];
    for row in rows {
        let ord: i32 = row.try_get_by_index(0)?;
        let n: f64 = row.try_get_by_index(1)?;
        if let Some(&gi) = owner.get(ord as usize) {
            counts[gi] = counts[gi].saturating_add(n.ceil() as i64);
        }
    }
    // Unlisted words are rare but not absent: never let a group count as empty.
    Ok(counts.into_iter().map(|n| n.max(1)).collect())
}

/// The best `limit` articles matching `groups` combined by `how`, ranking at
/// most [`CANDIDATE_CAP`] matches.
async fn ranked(
    db: &DatabaseConnection,
    scope: &Scope<'_>,
    groups: &[&TermGroup],
    how: Combine,
    limit: usize,
) -> Result<Vec<Candidate>, AppError> {
    let backend = db.get_database_backend();
    let mut q = SqlBuilder::new(backend);
    let sql = if backend == DbBackend::Postgres {
        let tq = q.bind(terms::tsquery(groups.iter().copied(), how));
        let scope_sql = q.scope(scope);
        let cap = q.bind(CANDIDATE_CAP);
        let lim = q.bind(limit as i64);
        format!(
            "SELECT a.id, a.knowledge_base_id, a.title, a.body, r.score \
             FROM (SELECT c.id, ts_rank('{PG_WEIGHTS}'::float4[], c.search_vector, c.tq, {PG_NORMALIZATION})::float8 AS score \
                   FROM (SELECT a.id, a.search_vector, tq \
                         FROM kb_articles a, to_tsquery('english', {tq}) tq \
                         WHERE a.search_vector @@ tq AND {scope_sql} LIMIT {cap}) c \
                   ORDER BY score DESC, c.id LIMIT {lim}) r \
             JOIN kb_articles a ON a.id = r.id \
             ORDER BY r.score DESC, a.id"
        )
    } else {
        let m = q.bind(terms::fts5_match(groups.iter().copied(), how));
        let scope_sql = q.scope(scope);
        let cap = q.bind(CANDIDATE_CAP);
        let lim = q.bind(limit as i64);
        // CROSS JOIN pins the join order: walk the FTS matches and look each
        // article up by rowid, never the other way round.
        format!(
            "SELECT a.id, a.knowledge_base_id, a.title, a.body, -r.rank AS score \
             FROM (SELECT rid, rank FROM \
                     (SELECT kb_articles_fts.rowid AS rid, \
                             bm25(kb_articles_fts, {SQLITE_TITLE_WEIGHT:.1}, 1.0) AS rank \
                      FROM kb_articles_fts CROSS JOIN kb_articles a ON a.rowid = kb_articles_fts.rowid \
                      WHERE kb_articles_fts MATCH {m} AND {scope_sql} LIMIT {cap}) \
                   ORDER BY rank LIMIT {lim}) r \
             CROSS JOIN kb_articles a ON a.rowid = r.rid \
             ORDER BY r.rank, a.id"
        )
    };
    let rows = Row::find_by_statement(q.statement(sql)).all(db).await?;
    Ok(rows.into_iter().map(Candidate::from).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_counts_keep_every_group() {
        assert_eq!(plan(&[3, 40, 1]), Plan::Rare(vec![0, 1, 2]));
        assert_eq!(plan(&[0, 5]), Plan::Rare(vec![1]));
        assert_eq!(plan(&[0, 0]), Plan::Common(vec![]));
    }

    #[test]
    fn common_groups_are_left_out_rarest_first() {
        let b = CANDIDATE_BUDGET;
        assert_eq!(plan(&[b + 1, 10, b - 20, 30]), Plan::Rare(vec![1, 3]));
        assert_eq!(plan(&[b + 1, b / 2, b / 2]), Plan::Rare(vec![1, 2]));
        assert_eq!(
            plan(&[b + 1, b + 1, 0, b + 1, b + 1]),
            Plan::Common(vec![0, 1, 3])
        );
    }
}
