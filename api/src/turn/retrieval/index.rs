//! Each replica's in-memory index of the knowledge bases it serves: per
//! knowledge base, the BM25F keyword index of its published articles
//! ([`super::bm25`]) and their passage vectors ([`super::vectors`]).
//!
//! - **Loaded on first use.** The first search of a knowledge base reads its
//!   published articles and their current-model vectors; concurrent searches
//!   wait for that one load instead of each doing it.
//! - **Current without trusting the bus.** Before every search the
//!   knowledge bases' revisions are read (one primary-key query); writers
//!   increase them in the writing transaction (`service::kb::bump_revision`).
//!   A changed revision reloads only the articles whose own revision moved,
//!   and drops those that were deleted or unpublished. A replica that missed
//!   every bus message while Redis was down still answers like the others.
//! - **Bounded memory.** Each index knows roughly what it holds; when the
//!   total passes the budget (`WAYFINDER_INDEX_MEMORY_MB`), the knowledge
//!   bases searched least recently are dropped (they load again on their
//!   next search). Memory follows the working set, not the deployment's
//!   whole corpus.
//! - **Compacted.** Removing articles leaves holes; an index with more than
//!   a third of its entries dead is rebuilt from what it holds, without
//!   touching the database.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicU64, Ordering},
    },
};

use sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, FromQueryResult, QueryFilter, QueryOrder,
    QuerySelect,
};
use uuid::Uuid;

use super::{bm25::Bm25Index, vectors::PassageVectors};
use crate::{error::AppError, turn::retrieval::vectors};

/// Articles read per query while loading (bounded statement size).
const LOAD_CHUNK: usize = 500;

/// Rebuild an index once this share of its entries belongs to removed articles.
const COMPACT_AT: f64 = 0.34;

/// One indexed article.
#[derive(Clone, Debug)]
pub struct IndexedArticle {
    pub id: Uuid,
    pub revision: i64,
    /// Whether its vectors (of the current model) are in the index.
    pub embedded: bool,
}

/// One knowledge base's index. Searches hold its read lock while scoring.
#[derive(Debug)]
pub struct KbIndex {
    pub revision: i64,
    pub bm25: Bm25Index,
    pub vectors: Option<PassageVectors>,
    /// By slot; `None` once removed.
    pub articles: Vec<Option<IndexedArticle>>,
    slots: HashMap<Uuid, u32>,
}

impl KbIndex {
    fn new(dim: Option<usize>) -> Self {
        Self {
            revision: -1,
            bm25: Bm25Index::default(),
            vectors: dim.map(PassageVectors::new),
            articles: Vec::new(),
            slots: HashMap::new(),
        }
    }

    /// Approximate heap bytes held.
    pub fn bytes(&self) -> usize {
        self.bm25.bytes()
            + self.vectors.as_ref().map_or(0, PassageVectors::bytes)
            + self.articles.len() * 48
            + self.slots.len() * 40
    }

    /// Embedded articles and all articles.
    pub fn coverage(&self) -> (usize, usize) {
        let live = self.articles.iter().flatten();
        let (mut embedded, mut all) = (0, 0);
        for a in live {
            all += 1;
            embedded += usize::from(a.embedded);
        }
        (embedded, all)
    }

    fn remove(&mut self, id: Uuid) {
        if let Some(slot) = self.slots.remove(&id) {
            self.bm25.remove(slot);
            if let Some(v) = &mut self.vectors {
                v.remove_where(|s| s == slot);
            }
            if let Some(a) = self.articles.get_mut(slot as usize) {
                *a = None;
            }
        }
    }

    fn insert(
        &mut self,
        stemmer: &rust_stemmers::Stemmer,
        row: &ArticleRow,
        passages: &[PassageRow],
    ) {
        self.remove(row.id);
        let slot = self.articles.len() as u32;
        self.bm25.insert(stemmer, slot, &row.title, &row.body);
        let mut embedded = false;
        if let Some(v) = &mut self.vectors {
            for p in passages {
                if let Some(q) = decode(&p.vector, v.dim()) {
                    v.push(slot, u16::try_from(p.position).unwrap_or(u16::MAX), &q);
                    embedded = true;
                }
            }
        }
        self.articles.push(Some(IndexedArticle {
            id: row.id,
            revision: row.revision,
            embedded,
        }));
        self.slots.insert(row.id, slot);
    }

    fn compact_if_needed(&mut self) {
        let dead_articles = self.articles.len() - self.slots.len();
        let vectors_dead = self
            .vectors
            .as_ref()
            .map_or(0.0, PassageVectors::dead_fraction);
        if self.bm25.dead_fraction() < COMPACT_AT
            && vectors_dead < COMPACT_AT
            && (dead_articles as f64) < COMPACT_AT * self.articles.len() as f64
        {
            return;
        }
        let mut new_slot = vec![None; self.articles.len()];
        let mut articles = Vec::with_capacity(self.slots.len());
        for (old, a) in self.articles.iter().enumerate() {
            if let Some(a) = a {
                new_slot[old] = Some(articles.len() as u32);
                articles.push(Some(a.clone()));
            }
        }
        self.bm25 = self.bm25.compacted(&new_slot);
        self.vectors = self.vectors.as_ref().map(|v| v.compacted(&new_slot));
        self.slots = articles
            .iter()
            .enumerate()
            .filter_map(|(i, a)| a.as_ref().map(|a| (a.id, i as u32)))
            .collect();
        self.articles = articles;
    }
}

/// A stored vector (little-endian `f32`s) of dimension `dim`, quantised.
fn decode(bytes: &[u8], dim: usize) -> Option<vectors::Quantized> {
    if bytes.len() != dim * 4 {
        return None;
    }
    let v: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Some(vectors::quantize(&v))
}

#[derive(FromQueryResult)]
struct ArticleRow {
    id: Uuid,
    revision: i64,
    title: String,
    body: String,
}

#[derive(FromQueryResult)]
struct PassageRow {
    article_id: Uuid,
    position: i32,
    vector: Vec<u8>,
}

/// One cached knowledge base.
struct Slot {
    index: RwLock<KbIndex>,
    /// Serialises loads of this knowledge base.
    loading: tokio::sync::Mutex<()>,
    last_used: AtomicU64,
    bytes: AtomicU64,
}

/// Shared read access to the indexes of one search.
pub struct Held {
    slots: Vec<(Uuid, Arc<Slot>)>,
}

impl Held {
    /// Runs `f` over each knowledge base's index, under its read lock.
    pub fn each<T>(&self, mut f: impl FnMut(Uuid, &KbIndex) -> T) -> Vec<T> {
        self.slots
            .iter()
            .filter_map(|(id, s)| s.index.read().ok().map(|ix| f(*id, &ix)))
            .collect()
    }
}

/// See the module docs.
pub struct IndexCache {
    slots: Mutex<HashMap<Uuid, Arc<Slot>>>,
    /// `(model, dimension)` of the vectors kept, when an embedder is configured.
    model: Option<(String, usize)>,
    budget_bytes: u64,
    clock: AtomicU64,
}

impl IndexCache {
    pub fn new(model: Option<(String, usize)>, budget_bytes: u64) -> Self {
        Self {
            slots: Mutex::new(HashMap::new()),
            model,
            budget_bytes,
            clock: AtomicU64::new(0),
        }
    }

    /// Total approximate bytes held by every cached index.
    pub fn bytes(&self) -> u64 {
        self.slots
            .lock()
            .map(|m| m.values().map(|s| s.bytes.load(Ordering::Relaxed)).sum())
            .unwrap_or(0)
    }

    /// The current indexes of org `org_id`'s knowledge bases `kbs` (those
    /// that exist; others are skipped), each refreshed to its stored revision.
    pub async fn get(
        &self,
        db: &DatabaseConnection,
        org_id: Uuid,
        kbs: &[Uuid],
    ) -> Result<Held, AppError> {
        use entity::knowledge_base::{Column, Entity};
        let revisions: Vec<(Uuid, i64)> = Entity::find()
            .filter(Column::OrgId.eq(org_id))
            .filter(Column::Id.is_in(kbs.iter().copied()))
            .select_only()
            .column(Column::Id)
            .column(Column::Revision)
            .into_tuple()
            .all(db)
            .await?;
        let tick = self.clock.fetch_add(1, Ordering::Relaxed);
        let mut held = Vec::with_capacity(revisions.len());
        for (kb, revision) in revisions {
            let slot = self.slot(kb);
            slot.last_used.store(tick, Ordering::Relaxed);
            let current = slot.index.read().map(|ix| ix.revision).unwrap_or(-1);
            if current != revision {
                let _one_loader = slot.loading.lock().await;
                let current = slot.index.read().map(|ix| ix.revision).unwrap_or(-1);
                if current != revision {
                    self.refresh(db, kb, &slot).await?;
                }
            }
            held.push((kb, slot));
        }
        self.evict(&held);
        Ok(Held { slots: held })
    }

    fn slot(&self, kb: Uuid) -> Arc<Slot> {
        let Ok(mut map) = self.slots.lock() else {
            return Arc::new(self.empty_slot());
        };
        Arc::clone(map.entry(kb).or_insert_with(|| Arc::new(self.empty_slot())))
    }

    fn empty_slot(&self) -> Slot {
        Slot {
            index: RwLock::new(KbIndex::new(self.model.as_ref().map(|m| m.1))),
            loading: tokio::sync::Mutex::new(()),
            last_used: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }
    }

    /// Brings `slot` up to knowledge base `kb`'s stored state.
    async fn refresh(
        &self,
        db: &DatabaseConnection,
        kb: Uuid,
        slot: &Slot,
    ) -> Result<(), AppError> {
        use entity::{kb_article as a, knowledge_base as k};
        // The revision first: a write that lands while we read is seen again next time.
        let revision: Option<i64> = k::Entity::find_by_id(kb)
            .select_only()
            .column(k::Column::Revision)
            .into_tuple()
            .one(db)
            .await?;
        let Some(revision) = revision else {
            return Ok(());
        };
        let stored: Vec<(Uuid, i64)> = a::Entity::find()
            .filter(a::Column::KnowledgeBaseId.eq(kb))
            .filter(a::Column::Published.eq(true))
            .select_only()
            .column(a::Column::Id)
            .column(a::Column::Revision)
            .into_tuple()
            .all(db)
            .await?;
        let (changed, gone): (Vec<Uuid>, Vec<Uuid>) = {
            let ix = slot
                .index
                .read()
                .map_err(|_| AppError::internal("retrieval index lock poisoned"))?;
            let stored_ids: HashMap<Uuid, i64> = stored.iter().copied().collect();
            let changed = stored
                .iter()
                .filter(|(id, rev)| {
                    ix.slots
                        .get(id)
                        .and_then(|s| ix.articles.get(*s as usize))
                        .and_then(Option::as_ref)
                        .is_none_or(|a| a.revision != *rev)
                })
                .map(|(id, _)| *id)
                .collect();
            let gone = ix
                .slots
                .keys()
                .filter(|id| !stored_ids.contains_key(id))
                .copied()
                .collect();
            (changed, gone)
        };
        let stemmer = super::analyze::stemmer();
        {
            let mut ix = slot
                .index
                .write()
                .map_err(|_| AppError::internal("retrieval index lock poisoned"))?;
            for id in gone {
                ix.remove(id);
            }
        }
        for chunk in changed.chunks(LOAD_CHUNK) {
            let rows = a::Entity::find()
                .filter(a::Column::Id.is_in(chunk.iter().copied()))
                .filter(a::Column::Published.eq(true))
                .select_only()
                .column(a::Column::Id)
                .column(a::Column::Revision)
                .column(a::Column::Title)
                .column(a::Column::Body)
                .into_model::<ArticleRow>()
                .all(db)
                .await?;
            let mut passages: HashMap<Uuid, Vec<PassageRow>> = HashMap::new();
            if let Some((model, _)) = &self.model {
                use entity::kb_passage as p;
                let found = p::Entity::find()
                    .filter(p::Column::ArticleId.is_in(chunk.iter().copied()))
                    .filter(p::Column::Model.eq(model.as_str()))
                    .select_only()
                    .column(p::Column::ArticleId)
                    .column(p::Column::Position)
                    .column(p::Column::Vector)
                    .order_by_asc(p::Column::Position)
                    .into_model::<PassageRow>()
                    .all(db)
                    .await?;
                for row in found {
                    passages.entry(row.article_id).or_default().push(row);
                }
            }
            let mut ix = slot
                .index
                .write()
                .map_err(|_| AppError::internal("retrieval index lock poisoned"))?;
            for row in &rows {
                let p = passages.get(&row.id).map_or(&[][..], Vec::as_slice);
                ix.insert(&stemmer, row, p);
            }
        }
        let mut ix = slot
            .index
            .write()
            .map_err(|_| AppError::internal("retrieval index lock poisoned"))?;
        ix.compact_if_needed();
        ix.revision = revision;
        slot.bytes.store(ix.bytes() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Drops the least recently searched indexes (never one of `keep`) while over budget.
    fn evict(&self, keep: &[(Uuid, Arc<Slot>)]) {
        let Ok(mut map) = self.slots.lock() else {
            return;
        };
        let mut total: u64 = map.values().map(|s| s.bytes.load(Ordering::Relaxed)).sum();
        if total <= self.budget_bytes {
            return;
        }
        let mut by_age: Vec<(u64, Uuid, u64)> = map
            .iter()
            .filter(|(id, _)| !keep.iter().any(|(k, _)| k == *id))
            .map(|(id, s)| {
                (
                    s.last_used.load(Ordering::Relaxed),
                    *id,
                    s.bytes.load(Ordering::Relaxed),
                )
            })
            .collect();
        by_age.sort_unstable();
        for (_, id, bytes) in by_age {
            if total <= self.budget_bytes {
                break;
            }
            map.remove(&id);
            total = total.saturating_sub(bytes);
            tracing::debug!(knowledge_base_id = %id, bytes, "retrieval index evicted");
        }
    }

    /// Whether knowledge base `kb`'s index is in memory (for tests and metrics).
    pub fn holds(&self, kb: Uuid) -> bool {
        self.slots.lock().is_ok_and(|m| m.contains_key(&kb))
    }
}
