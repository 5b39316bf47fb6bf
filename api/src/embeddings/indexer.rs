//! The background job that gives every article its passage vectors.
//!
//! An article needs them when it has none of the current model's
//! (`kb_articles.embedding_model` is `NULL`, as after every change of its
//! text, or names another model). The job takes such articles in batches,
//! oldest change first, cuts them into passages ([`super::passages`]),
//! embeds the passages of the whole batch together (sorted by length, so a
//! batch pads little), and writes each article's passages in one
//! transaction with the knowledge base's revision increased, so every
//! replica's index picks the vectors up at its next search. An article
//! edited while its vectors were computed is left for the next round: the
//! write only applies if `updated_at` is still what was read.
//!
//! Progress goes out on `orgEvents` as `knowledge_base.embedding_progress`
//! (`{knowledgeBaseId, embedded, total, model}`), once per knowledge base and
//! batch. The job wakes when articles change on this replica, and polls
//! every [`POLL`] for changes made elsewhere (another replica, the CLI).

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use chrono::{DateTime, Utc};
use entity::{kb_article, kb_passage};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, FromQueryResult,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, sea_query::Expr,
};
use uuid::Uuid;

use super::{Embedder, MAX_BATCH, passages};
use crate::{
    error::AppError,
    service::{self, event},
    state::{AppState, State},
};

/// Articles taken per round.
const ARTICLES_PER_ROUND: u64 = 32;

/// How often the job looks for work it was not woken for.
const POLL: Duration = Duration::from_secs(10);

/// Pause after a failed round.
const BACKOFF: Duration = Duration::from_secs(5);

#[derive(FromQueryResult)]
struct Pending {
    id: Uuid,
    org_id: Uuid,
    knowledge_base_id: Uuid,
    title: String,
    body: String,
    updated_at: DateTime<Utc>,
}

/// Runs forever (until aborted): embeds pending articles, then waits.
pub async fn embed_forever(st: AppState) {
    let Some(embedder) = st.retriever.embedder.clone() else {
        return;
    };
    loop {
        match embed_pending(&st, embedder.as_ref()).await {
            Ok(0) => {
                let _ = tokio::time::timeout(POLL, st.retriever.wake_indexer.notified()).await;
            }
            Ok(_) => tokio::task::yield_now().await,
            Err(err) => {
                tracing::warn!(%err, "embedding round failed; retrying");
                tokio::time::sleep(BACKOFF).await;
            }
        }
    }
}

/// Articles of any org still waiting for the current model's vectors.
fn pending(model: &str) -> Condition {
    Condition::any()
        .add(kb_article::Column::EmbeddingModel.is_null())
        .add(kb_article::Column::EmbeddingModel.ne(model))
}

/// One round: embeds up to [`ARTICLES_PER_ROUND`] pending articles and
/// returns how many were written.
pub async fn embed_pending(st: &State, embedder: &dyn Embedder) -> Result<usize, AppError> {
    use kb_article::{Column, Entity};
    let model = embedder.model().to_string();
    let batch = Entity::find()
        .filter(pending(&model))
        .select_only()
        .column(Column::Id)
        .column(Column::OrgId)
        .column(Column::KnowledgeBaseId)
        .column(Column::Title)
        .column(Column::Body)
        .column(Column::UpdatedAt)
        .order_by_asc(Column::UpdatedAt)
        .order_by_asc(Column::Id)
        .limit(ARTICLES_PER_ROUND)
        .into_model::<Pending>()
        .all(&st.db)
        .await?;
    if batch.is_empty() {
        return Ok(0);
    }
    // (article index, passage) for the whole batch, embedded shortest first.
    let mut work: Vec<(usize, passages::Passage, String)> = Vec::new();
    for (i, a) in batch.iter().enumerate() {
        for p in passages::split(&a.body) {
            let input = passages::embedding_input(&a.title, &p.text);
            work.push((i, p, input));
        }
    }
    work.sort_by_key(|w| w.2.len());
    let mut vectors: Vec<Vec<f32>> = Vec::with_capacity(work.len());
    for chunk in work.chunks(MAX_BATCH) {
        let inputs: Vec<String> = chunk.iter().map(|w| w.2.clone()).collect();
        let got = embedder
            .embed(&inputs)
            .await
            .map_err(|e| AppError::internal(e.to_string()))?;
        if got.len() != inputs.len() {
            return Err(AppError::internal("the embedder returned too few vectors"));
        }
        vectors.extend(got);
    }
    let mut per_article: HashMap<usize, Vec<(passages::Passage, Vec<f32>)>> = HashMap::new();
    for ((i, p, _), v) in work.into_iter().zip(vectors) {
        per_article.entry(i).or_default().push((p, v));
    }
    let now = Utc::now();
    let txn = service::begin_write(&st.db).await?;
    let mut written = 0;
    // One revision per knowledge base and round: its index reloads every article stamped with it.
    let mut revisions: HashMap<Uuid, i64> = HashMap::new();
    let mut touched: HashSet<(Uuid, Uuid)> = HashSet::new();
    for (i, a) in batch.iter().enumerate() {
        let revision = match revisions.get(&a.knowledge_base_id) {
            Some(r) => *r,
            None => {
                let r = service::kb::bump_revision(&txn, a.knowledge_base_id).await?;
                revisions.insert(a.knowledge_base_id, r);
                r
            }
        };
        let applied = Entity::update_many()
            .col_expr(Column::EmbeddingModel, Expr::value(model.clone()))
            .col_expr(Column::Revision, Expr::value(revision))
            .filter(Column::Id.eq(a.id))
            .filter(Column::UpdatedAt.eq(a.updated_at))
            .exec(&txn)
            .await?;
        if applied.rows_affected == 0 {
            continue; // Changed meanwhile: the next round embeds the new text.
        }
        kb_passage::Entity::delete_many()
            .filter(kb_passage::Column::ArticleId.eq(a.id))
            .exec(&txn)
            .await?;
        let mut rows: Vec<kb_passage::ActiveModel> = Vec::new();
        let mut list = per_article.remove(&i).unwrap_or_default();
        list.sort_by_key(|(p, _)| p.position);
        for (p, v) in list {
            rows.push(kb_passage::ActiveModel {
                id: Set(service::new_id()),
                org_id: Set(a.org_id),
                article_id: Set(a.id),
                position: Set(p.position as i32),
                text: Set(p.text),
                model: Set(model.clone()),
                dimension: Set(v.len() as i32),
                vector: Set(v.iter().flat_map(|x| x.to_le_bytes()).collect()),
                created_at: Set(now),
            });
        }
        if !rows.is_empty() {
            kb_passage::Entity::insert_many(rows).exec(&txn).await?;
        }
        written += 1;
        touched.insert((a.org_id, a.knowledge_base_id));
    }
    let mut events = Vec::new();
    for (org_id, kb) in touched {
        let (embedded, total) = coverage(&txn, kb, &model).await?;
        events.push(
            event::record(
                &txn,
                org_id,
                "knowledge_base.embedding_progress",
                serde_json::json!({
                    "knowledgeBaseId": kb,
                    "embedded": embedded,
                    "total": total,
                    "model": model,
                }),
            )
            .await?,
        );
    }
    txn.commit().await?;
    event::publish(st, &events).await;
    Ok(written.max(1))
}

/// Articles of knowledge base `kb` with the current model's vectors, and all of its articles.
async fn coverage(
    db: &impl ConnectionTrait,
    kb: Uuid,
    model: &str,
) -> Result<(u64, u64), AppError> {
    use kb_article::{Column, Entity};
    let total = Entity::find()
        .filter(Column::KnowledgeBaseId.eq(kb))
        .count(db)
        .await?;
    let embedded = Entity::find()
        .filter(Column::KnowledgeBaseId.eq(kb))
        .filter(Column::EmbeddingModel.eq(model))
        .count(db)
        .await?;
    Ok((embedded, total))
}

/// Embeds until nothing is pending (for the CLI and tests); returns articles written.
pub async fn embed_all(
    st: &State,
    embedder: &dyn Embedder,
    mut progress: impl FnMut(u64, u64),
) -> Result<u64, AppError> {
    let model = embedder.model().to_string();
    let left = kb_article::Entity::find()
        .filter(pending(&model))
        .count(&st.db)
        .await?;
    let mut done = 0u64;
    progress(done, left);
    loop {
        let n = embed_pending(st, embedder).await?;
        let still = kb_article::Entity::find()
            .filter(pending(&model))
            .count(&st.db)
            .await?;
        done = left.saturating_sub(still);
        progress(done, left);
        if n == 0 || still == 0 {
            return Ok(done);
        }
    }
}
