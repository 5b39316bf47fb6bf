//! The baseline: what many support products ship. Each word of the question
//! is matched as a case-insensitive substring of the title or body (`LIKE`
//! on SQLite, `ILIKE` on PostgreSQL), the first few matching articles are
//! taken in the database's order (newest first), then re-ranked: a word in
//! the title counts 3, in the body 1.
//!
//! No stemming, no synonyms, no notion of a rare word, and a full scan of
//! the org's articles per question. Kept as [`RetrievalMode::Keyword`] to
//! measure the default against (`cargo bench --bench retrieval`) and as an
//! escape hatch.
//!
//! [`RetrievalMode::Keyword`]: super::RetrievalMode::Keyword

use sea_orm::{DatabaseConnection, DbBackend, FromQueryResult};
use uuid::Uuid;

use super::{Candidate, Scope, SqlBuilder, terms::Terms};
use crate::error::AppError;

/// How many matching articles such products re-rank (more when the caller asks for more).
const POOL: usize = 5;

/// What one matching article scores: 3 per word in the title, 1 per word in the body.
fn score(words: &[&str], title: &str, body: &str) -> f64 {
    let (title, body) = (title.to_lowercase(), body.to_lowercase());
    words
        .iter()
        .map(|w| {
            3.0 * f64::from(u8::from(title.contains(w))) + f64::from(u8::from(body.contains(w)))
        })
        .sum()
}

#[derive(FromQueryResult)]
struct Row {
    id: Uuid,
    knowledge_base_id: Uuid,
    title: String,
    body: String,
}

/// The baseline's best `limit` articles for `terms`, best first.
pub(super) async fn search(
    db: &DatabaseConnection,
    scope: &Scope<'_>,
    terms: &Terms,
    limit: usize,
) -> Result<Vec<Candidate>, AppError> {
    let backend = db.get_database_backend();
    let like = if backend == DbBackend::Postgres {
        "ILIKE"
    } else {
        "LIKE"
    };
    let words: Vec<&str> = terms.words().collect();
    let mut q = SqlBuilder::new(backend);
    let scope_sql = q.scope(scope);
    let mut any = Vec::new();
    for w in &words {
        // Words are letters and digits only, so `%` and `_` cannot occur in them.
        let p = q.bind(format!("%{w}%"));
        let p2 = q.bind(format!("%{w}%"));
        any.push(format!("a.title {like} {p} OR a.body {like} {p2}"));
    }
    let lim = q.bind(limit.max(POOL) as i64);
    let sql = format!(
        "SELECT a.id, a.knowledge_base_id, a.title, a.body FROM kb_articles a \
         WHERE {scope_sql} AND ({}) ORDER BY a.updated_at DESC, a.id DESC LIMIT {lim}",
        any.join(" OR ")
    );
    let rows = Row::find_by_statement(q.statement(sql)).all(db).await?;
    let mut hits: Vec<Candidate> = rows
        .into_iter()
        .map(|r| Candidate {
            score: score(&words, &r.title, &r.body),
            id: r.id,
            knowledge_base_id: r.knowledge_base_id,
            title: r.title,
            body: r.body,
        })
        .collect();
    // Stable: equal scores keep the database's (newest first) order.
    hits.sort_by(|a, b| b.score.total_cmp(&a.score));
    hits.truncate(limit);
    Ok(hits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn title_words_count_three_body_words_one() {
        assert_eq!(
            score(
                &["invoice", "pdf"],
                "Your Invoice",
                "Download a PDF invoice"
            ),
            5.0
        );
        assert_eq!(score(&["refund"], "Invoices", "Billing"), 0.0);
    }
}
