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
//! articles each word group matches (SQLite: exact counts from the index,
//! capped just above the budget; PostgreSQL: the planner's statistics for
//! the column, `pg_stats.most_common_elems`), then searches
//! for the rarest groups whose matches fit in the budget and leaves the very
//! common ones out. Below the budget nothing is left out, so a knowledge
//! base of up to a thousand articles is ranked on every word; a common word
//! left out of a larger one carries little weight anyway (BM25's IDF of a
//! word in 5% of articles is ~3, of a rare one ~10). A question made
//! only of common words ("it doesn't work") needs all of them (AND), then
//! any (OR); either way at most [`CANDIDATE_BUDGET`] matching articles are
//! ranked, the first the index yields.
//!
//! The counts are over every org's articles (that is what the work is
//! proportional to), so words rare overall may be absent from the caller's
//! knowledge bases while its common ones are not: when the rare words find
//! fewer hits than asked for, the common words are searched too and their
//! hits follow.
//!
//! Both engines rank the matching rows' ids first and only then read the
//! winners' bodies, so no losing body is copied into a sort.

use std::collections::HashMap;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, FromQueryResult, Statement};
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
/// taken rarest first until the next would overflow it. Also the most
/// matching articles one search ranks, whatever the estimates said. Ranking
/// costs about 2 µs per article on SQLite (an FTS5 row and a rowid lookup)
/// and 5 µs on PostgreSQL (a heap fetch and `ts_rank`), so a search stays
/// within a few milliseconds however large the knowledge base.
const CANDIDATE_BUDGET: i64 = 1_000;

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

/// Which groups to search for (indexes into `Terms::groups`).
#[derive(Debug, PartialEq)]
struct Plan {
    /// The rarer groups, searched first, ORed.
    rare: Vec<usize>,
    /// The common ones, in question order: searched (ANDed, else ORed) only
    /// when the rare ones find too little.
    common: Vec<usize>,
}

/// Splits groups by their match counts (`counts[i]` for group `i`): rarest
/// first while the sum fits in `budget`; groups matching nothing are left
/// out.
fn plan(counts: &[i64], budget: i64) -> Plan {
    let mut order: Vec<usize> = (0..counts.len()).collect();
    order.sort_by_key(|&i| (counts[i], i));
    let mut rare = Vec::new();
    let mut total = 0;
    for &i in &order {
        if counts[i] == 0 {
            continue;
        }
        if total + counts[i] > budget {
            break;
        }
        total += counts[i];
        rare.push(i);
    }
    rare.sort_unstable();
    let common = (0..counts.len())
        .filter(|&i| counts[i] > 0 && !rare.contains(&i))
        .take(MAX_COMMON_GROUPS)
        .collect();
    Plan { rare, common }
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
    let plan = plan(&counts, CANDIDATE_BUDGET);
    let mut found = if plan.rare.is_empty() {
        vec![]
    } else {
        let rare: Vec<TermGroup> = plan.rare.iter().map(|&i| terms.groups[i].clone()).collect();
        ranked(db, scope, &rare, Combine::Any, limit).await?
    };
    if found.len() >= limit || plan.common.is_empty() {
        return Ok(found);
    }
    // The counts are over every org's articles: rare words may be absent
    // from this scope while its common ones are not. Widen with the common
    // words themselves (each synonym would cost FTS5 a full IDF count): all
    // of them, else any. Their hits rank after the rare words' hits.
    let common: Vec<TermGroup> = plan
        .common
        .iter()
        .map(|&i| TermGroup {
            word: terms.groups[i].word.clone(),
            synonyms: vec![],
        })
        .collect();
    let mut more = ranked(db, scope, &common, Combine::All, limit).await?;
    if more.is_empty() && common.len() > 1 {
        more = ranked(db, scope, &common, Combine::Any, limit).await?;
    }
    let floor = found.last().map(|c| c.score);
    let top = more.first().map_or(0.0, |c| c.score);
    for mut c in more {
        if found.len() >= limit {
            break;
        }
        if !found.iter().any(|f| f.id == c.id) {
            // Below every rare-word hit, in their own order.
            if let Some(floor) = floor {
                c.score = floor - (top - c.score).abs() - f64::EPSILON;
            }
            found.push(c);
        }
    }
    Ok(found)
}

/// How many articles (of any org) each group matches, capped just above the
/// candidate budget: exact, from the FTS5 index, in one statement.
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
/// elements (`pg_stats.most_common_elems`) times the table's row count.
/// Words too rare to be listed, and tables not yet analysed, count as one:
/// nothing is left out. The statistics query takes no parameters, so each
/// connection plans it once (planning the `pg_stats` view costs more than
/// running it).
async fn postgres_counts(
    db: &DatabaseConnection,
    groups: &[TermGroup],
) -> Result<Vec<i64>, AppError> {
    let stats = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT coalesce(array_to_string(s.most_common_elems::text::text[], ' '), '') AS elems, \
                    coalesce(array_to_string(s.most_common_elem_freqs, ' '), '') AS freqs, \
                    greatest(c.reltuples, 0)::float8 AS rows \
             FROM pg_class c \
             LEFT JOIN pg_stats s ON s.schemaname = current_schema() \
                  AND s.tablename = 'kb_articles' AND s.attname = 'search_vector' \
             WHERE c.oid = 'kb_articles'::regclass",
        ))
        .await?
        .ok_or_else(|| AppError::internal("kb_articles statistics: no row"))?;
    let elems: String = stats.try_get("", "elems")?;
    let freqs: String = stats.try_get("", "freqs")?;
    let rows: f64 = stats.try_get("", "rows")?;
    if elems.is_empty() {
        return Ok(vec![1; groups.len()]);
    }
    let frequency: HashMap<&str, f64> = elems
        .split(' ')
        .zip(freqs.split(' ').filter_map(|f| f.parse::<f64>().ok()))
        .collect();

    // The lexemes of every word, as the column's configuration stems them.
    let mut owner = Vec::new();
    let mut words = Vec::new();
    for (gi, g) in groups.iter().enumerate() {
        for w in g.all() {
            owner.push(gi);
            words.push(w);
        }
    }
    let mut q = SqlBuilder::new(DbBackend::Postgres);
    // Words are letters and digits only: a space cannot occur in one.
    let list = q.bind(words.join(" "));
    let sql = format!(
        "SELECT w.ord::int4, l.lexeme \
         FROM unnest(string_to_array({list}, ' ')) WITH ORDINALITY AS w(word, ord), \
              unnest(tsvector_to_array(to_tsvector('english', w.word))) AS l(lexeme)"
    );
    let mut counts = vec![1i64; groups.len()];
    for row in db.query_all_raw(q.statement(sql)).await? {
        let ord: i32 = row.try_get_by_index(0)?;
        let lexeme: String = row.try_get_by_index(1)?;
        let group = usize::try_from(ord - 1).ok().and_then(|i| owner.get(i));
        if let (Some(&gi), Some(f)) = (group, frequency.get(lexeme.as_str())) {
            counts[gi] = counts[gi].saturating_add((f * rows).ceil() as i64);
        }
    }
    Ok(counts)
}

/// The best `limit` articles matching `groups` combined by `how`, ranking at
/// most the candidate budget's worth of matches.
async fn ranked(
    db: &DatabaseConnection,
    scope: &Scope<'_>,
    groups: &[TermGroup],
    how: Combine,
    limit: usize,
) -> Result<Vec<Candidate>, AppError> {
    let backend = db.get_database_backend();
    let mut q = SqlBuilder::new(backend);
    let sql = if backend == DbBackend::Postgres {
        let tq = q.bind(terms::tsquery(groups, how));
        let scope_sql = q.scope(scope);
        let cap = q.bind(CANDIDATE_BUDGET);
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
        let m = q.bind(terms::fts5_match(groups, how));
        let scope_sql = q.scope(scope);
        let cap = q.bind(CANDIDATE_BUDGET);
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

    fn p(rare: &[usize], common: &[usize]) -> Plan {
        Plan {
            rare: rare.to_vec(),
            common: common.to_vec(),
        }
    }

    #[test]
    fn small_counts_keep_every_group() {
        assert_eq!(plan(&[3, 40, 1], 2_000), p(&[0, 1, 2], &[]));
        assert_eq!(plan(&[0, 5], 2_000), p(&[1], &[]));
        assert_eq!(plan(&[0, 0], 2_000), p(&[], &[]));
    }

    #[test]
    fn common_groups_are_left_for_later_rarest_first() {
        let b = 2_000;
        assert_eq!(plan(&[b + 1, 10, b - 20, 30], 2_000), p(&[1, 3], &[0, 2]));
        assert_eq!(plan(&[b + 1, b / 2, b / 2], 2_000), p(&[1, 2], &[0]));
        assert_eq!(
            plan(&[b + 1, b + 1, 0, b + 1, b + 1], 2_000),
            p(&[], &[0, 1, 3])
        );
    }
}
