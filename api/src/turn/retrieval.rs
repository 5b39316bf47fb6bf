//! Knowledge-base retrieval: which articles a bot answers from (SPEC §3,
//! step 3), and the dashboard's `kbSearch`.
//!
//! One entry point, [`search`], with three ways to rank ([`RetrievalMode`]):
//!
//! - **Keyword**: BM25F over the articles' stemmed words ([`bm25`]), the
//!   title weighted above the body, the question widened by a small support
//!   thesaurus ([`terms`]), with statistics of the caller's own knowledge
//!   bases only, so no org's scores depend on another org's articles.
//! - **Semantic**: cosine between the question's embedding and every passage
//!   vector ([`vectors`]); an article scores by its best passage.
//! - **Hybrid** (the default when an embedding model is configured): both,
//!   fused per article ([`fuse`]); without a model it is keyword ranking.
//!
//! Both indexes live in each replica's memory ([`index`]), per knowledge
//! base, current to the database's revision at every search. The winners'
//! text is then read from the database, and their best passages kept for
//! the prompt ([`Hit::context`]). A fourth mode, [`RetrievalMode::Substring`]
//! ([`keyword`]), is the baseline many products ship: kept to be measured
//! against (`cargo bench -p wayfinder-api --bench retrieval`).
//!
//! Every search is confined to one org, to a set of its knowledge bases and
//! to published articles. The question never reaches SQL as text.

pub mod analyze;
pub mod bm25;
pub mod index;
mod keyword;
pub mod snippet;
pub mod terms;
pub mod vectors;

use std::{collections::HashMap, sync::Arc};

use sea_orm::{
    ColumnTrait, DatabaseConnection, DbBackend, EntityTrait, QueryFilter, QuerySelect, Statement,
    Value,
};
use uuid::Uuid;

use crate::{
    auth::OrgScope,
    embeddings::{Embedder, passages},
    error::AppError,
    service,
    state::State,
};

/// Longest question searched, in characters; the rest is ignored.
pub const MAX_QUERY_CHARS: usize = 1_000;

/// Most hits one search returns.
pub const MAX_LIMIT: usize = 50;

/// Hits `kbSearch` returns when `first` is omitted.
pub const DEFAULT_FIRST: usize = 10;

/// Most knowledge bases `kbSearch` accepts by id.
pub const MAX_KNOWLEDGE_BASE_IDS: usize = 100;

/// Candidates each ranking contributes to the fusion.
const CANDIDATES: usize = 100;

/// Passages kept per hit.
pub const PASSAGES_PER_HIT: usize = 3;

/// A synonym counts this much of the visitor's own word.
const SYNONYM_WEIGHT: f32 = 0.5;

/// Cosine below which a passage is not about the question at all. Every
/// passage has some cosine with every question; a question the knowledge
/// base cannot answer still "finds" its nearest article. Such hits keep
/// their rank (a dashboard's search shows them, and dropping them cost
/// nDCG on the labelled set) but are not [`Hit::on_topic`], so a bot falls
/// back instead of answering from them. For all-MiniLM-L6-v2, unrelated
/// sentences sit around 0.0–0.2 and paraphrases above 0.5.
const MIN_COSINE: f32 = 0.3;

/// Hybrid: share of the fused score that comes from meaning (the rest from words).
const SEMANTIC_SHARE: f64 = 0.7;

/// One passage of a hit, best first.
#[derive(Clone, Debug, PartialEq)]
pub struct HitPassage {
    /// Its position in the article (0-based).
    pub position: usize,
    pub text: String,
    /// Relevance of the passage alone (cosine, or shared-word weight for keyword hits).
    pub score: f64,
}

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
    /// Its best passages, best first, at most [`PASSAGES_PER_HIT`].
    pub passages: Vec<HitPassage>,
    /// Whether it is about the question at all: a keyword match, or a passage
    /// within [`MIN_COSINE`] of it. A bot answers only from such hits.
    pub on_topic: bool,
}

impl Hit {
    /// What the LLM reads of this article, at most `max_chars` bytes: the
    /// whole body when it fits, else its best passages in article order.
    pub fn context(&self, max_chars: usize) -> String {
        let len = |t: &str| t.chars().count();
        if len(&self.body) <= max_chars || self.passages.is_empty() {
            return clip_chars(&self.body, max_chars).to_string();
        }
        let mut chosen: Vec<&HitPassage> = Vec::new();
        let mut used = 0;
        for p in &self.passages {
            let cost = len(&p.text) + 2;
            if used + cost > max_chars && !chosen.is_empty() {
                break;
            }
            used += cost;
            chosen.push(p);
        }
        chosen.sort_by_key(|p| p.position);
        let joined = chosen
            .iter()
            .map(|p| p.text.as_str())
            .collect::<Vec<_>>()
            .join("\n\n");
        clip_chars(&joined, max_chars).to_string()
    }
}

/// How articles are found and ranked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetrievalMode {
    /// BM25F on per-org statistics.
    Keyword,
    /// Passage embeddings.
    Semantic,
    /// Both, fused (keyword alone without an embedding model).
    Hybrid,
    /// Substring matching re-ranked by title and body hits: the baseline.
    Substring,
}

impl RetrievalMode {
    /// `hybrid`, `keyword` (or its old name `fulltext`), `semantic` or
    /// `substring` (any case); anything else is `None`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "hybrid" => Some(Self::Hybrid),
            "keyword" | "fulltext" => Some(Self::Keyword),
            "semantic" => Some(Self::Semantic),
            "substring" => Some(Self::Substring),
            _ => None,
        }
    }
}

/// What retrieval keeps beside the database: the embedder and the indexes.
pub struct Retriever {
    pub embedder: Option<Arc<dyn Embedder>>,
    pub index: index::IndexCache,
    /// The mode a bot uses (`WAYFINDER_RETRIEVAL`).
    pub default_mode: RetrievalMode,
    /// Wakes the background embedding job (`embeddings::indexer`).
    pub wake_indexer: tokio::sync::Notify,
}

impl Retriever {
    /// A retriever over `embedder`, keeping at most `budget_bytes` of indexes.
    pub fn new(
        embedder: Option<Arc<dyn Embedder>>,
        default_mode: RetrievalMode,
        budget_bytes: u64,
    ) -> Self {
        let model = embedder
            .as_ref()
            .map(|e| (e.model().to_string(), e.dimension()));
        Self {
            embedder,
            index: index::IndexCache::new(model, budget_bytes),
            default_mode,
            wake_indexer: tokio::sync::Notify::new(),
        }
    }

    /// Called after articles change: their vectors need computing.
    pub fn articles_changed(&self) {
        self.wake_indexer.notify_one();
    }
}

/// The published articles of org `org_id` in `knowledge_base_ids` that best
/// answer `query`, best first, at most `limit` (clamped to 1..=[`MAX_LIMIT`]).
///
/// A query with nothing searchable in it finds nothing in keyword mode; so
/// does an empty `knowledge_base_ids`. Semantic ranking needs an embedder:
/// without one (or when it fails) the search ranks by keywords.
#[tracing::instrument(skip(st, knowledge_base_ids, query), fields(%org_id, kbs = knowledge_base_ids.len()))]
pub async fn search(
    st: &State,
    org_id: Uuid,
    knowledge_base_ids: &[Uuid],
    query: &str,
    limit: usize,
    mode: RetrievalMode,
) -> Result<Vec<Hit>, AppError> {
    if knowledge_base_ids.is_empty() {
        return Ok(vec![]);
    }
    let query = clip_chars(query, MAX_QUERY_CHARS);
    let limit = limit.clamp(1, MAX_LIMIT);
    if mode == RetrievalMode::Substring {
        return substring(&st.db, org_id, knowledge_base_ids, query, limit).await;
    }
    let terms = terms::Terms::parse(query);
    let semantic = matches!(mode, RetrievalMode::Semantic | RetrievalMode::Hybrid);
    let embedder = st.retriever.embedder.as_ref().filter(|_| semantic);
    if embedder.is_none() && terms.is_empty() {
        return Ok(vec![]);
    }
    // Words are ranked while the question is embedded (on the blocking
    // pool): the embedding is most of a hybrid search's time.
    let by_words_first = mode != RetrievalMode::Semantic || embedder.is_none();
    let embedding = async {
        let e = embedder?;
        match e.embed(&[query.to_string()]).await {
            Ok(mut v) => v.pop().map(|v| vectors::quantize(&v)),
            Err(err) => {
                tracing::warn!(%err, "query embedding failed; ranking by keywords");
                None
            }
        }
    };
    let words = async {
        let held = st
            .retriever
            .index
            .get(&st.db, org_id, knowledge_base_ids)
            .await?;
        let by_words = if by_words_first {
            keyword_candidates(&held, &query_terms(&terms))
        } else {
            Scored::new()
        };
        Ok::<_, AppError>((held, by_words))
    };
    let (query_vector, words) = tokio::join!(embedding, words);
    let (held, mut by_words) = words?;
    if query_vector.is_none() && !by_words_first {
        // Semantic mode, and the embedding failed: ranked by words after all.
        by_words = keyword_candidates(&held, &query_terms(&terms));
    }
    let ranked = rank(&held, by_words, query_vector.as_ref(), limit);
    hits(
        &st.db,
        org_id,
        ranked,
        &terms,
        st.retriever.embedder.as_deref(),
    )
    .await
}

/// `s` cut to at most `max` characters.
fn clip_chars(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((end, _)) => &s[..end],
        None => s,
    }
}

/// The stems a keyword search looks for: each word (weight 1), then its
/// synonyms (weight [`SYNONYM_WEIGHT`]), each stem once.
fn query_terms(terms: &terms::Terms) -> Vec<bm25::QueryTerm> {
    let stemmer = analyze::stemmer();
    let mut out: Vec<bm25::QueryTerm> = Vec::new();
    for g in &terms.groups {
        let stem = analyze::stem(&stemmer, &g.word);
        if !out.iter().any(|t| t.stem == stem) {
            out.push(bm25::QueryTerm { stem, weight: 1.0 });
        }
    }
    for g in &terms.groups {
        for s in &g.synonyms {
            let stem = analyze::stem(&stemmer, s);
            if !out.iter().any(|t| t.stem == stem) {
                out.push(bm25::QueryTerm {
                    stem,
                    weight: SYNONYM_WEIGHT,
                });
            }
        }
    }
    out
}

/// A ranked article before its text is read.
#[derive(Clone, Debug)]
struct Ranked {
    article_id: Uuid,
    knowledge_base_id: Uuid,
    score: f64,
    /// Best passages by meaning: (position, cosine), best first.
    passages: Vec<(u16, f32)>,
    /// See [`Hit::on_topic`].
    on_topic: bool,
}

/// Candidates of one ranking: article → (knowledge base, score, best passages).
type Scored = HashMap<Uuid, (Uuid, f64, Vec<(u16, f32)>)>;

/// The best [`CANDIDATES`] articles of the held indexes by words (none when
/// `terms` is empty), with statistics summed over all of them.
fn keyword_candidates(held: &index::Held, terms: &[bm25::QueryTerm]) -> Scored {
    let mut by_words: Scored = HashMap::new();
    if terms.is_empty() {
        return by_words;
    }
    let mut stats = bm25::Stats::default();
    for s in held.each(|_, ix| ix.bm25.stats(terms)) {
        stats.add(&s);
    }
    for found in held.each(|kb, ix| {
        let mut hits = ix.bm25.score(terms, &stats);
        top(&mut hits, CANDIDATES, |h| h.1);
        hits.into_iter()
            .filter_map(|(slot, score)| {
                let a = ix.articles.get(slot as usize)?.as_ref()?;
                Some((a.id, (kb, f64::from(score), vec![])))
            })
            .collect::<Vec<_>>()
    }) {
        by_words.extend(found);
    }
    keep_best(&mut by_words, CANDIDATES);
    by_words
}

/// Ranks the held indexes: the keyword candidates `by_words`, semantic ones
/// when `query` is given, fused when both; the best `limit`.
fn rank(
    held: &index::Held,
    by_words: Scored,
    query: Option<&vectors::Quantized>,
    limit: usize,
) -> Vec<Ranked> {
    let mut by_meaning: Scored = HashMap::new();
    if let Some(q) = query {
        for found in held.each(|kb, ix| {
            let Some(v) = &ix.vectors else {
                return vec![];
            };
            let hits = v.nearest(q, CANDIDATES, PASSAGES_PER_HIT);
            hits.into_iter()
                .filter_map(|(slot, p)| {
                    let a = ix.articles.get(slot as usize)?.as_ref()?;
                    let score = f64::from(p.first()?.1);
                    Some((a.id, (kb, score, p)))
                })
                .collect::<Vec<_>>()
        }) {
            by_meaning.extend(found);
        }
        keep_best(&mut by_meaning, CANDIDATES);
    }
    let alone = |scored: Scored| -> Vec<Ranked> {
        scored
            .into_iter()
            .map(|(id, (kb, score, p))| Ranked {
                article_id: id,
                knowledge_base_id: kb,
                score,
                on_topic: close_enough(&p),
                passages: p,
            })
            .collect()
    };
    let mut out: Vec<Ranked> = match (by_words.is_empty(), by_meaning.is_empty()) {
        (_, true) => alone(by_words),
        (true, false) => alone(by_meaning),
        (false, false) => fuse(&by_words, &by_meaning),
    };
    out.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(a.article_id.cmp(&b.article_id))
    });
    out.truncate(limit);
    out
}

/// Keeps the `n` highest of `items` by `key`, unordered.
fn top<T>(items: &mut Vec<T>, n: usize, key: impl Fn(&T) -> f32) {
    if items.len() > n {
        items.select_nth_unstable_by(n - 1, |a, b| key(b).total_cmp(&key(a)));
        items.truncate(n);
    }
}

fn keep_best(scored: &mut Scored, n: usize) {
    if scored.len() <= n {
        return;
    }
    let mut all: Vec<(Uuid, f64)> = scored.iter().map(|(id, v)| (*id, v.1)).collect();
    all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    for (id, _) in all.into_iter().skip(n) {
        scored.remove(&id);
    }
}

/// Whether a ranking's passages make its article on topic: keyword
/// candidates carry none (a keyword match is on topic), semantic ones need a
/// passage within [`MIN_COSINE`].
fn close_enough(passages: &[(u16, f32)]) -> bool {
    passages.first().is_none_or(|p| p.1 >= MIN_COSINE)
}

/// Hybrid fusion per article: [`SEMANTIC_SHARE`] of the best passage's
/// cosine plus the rest of the keyword score scaled so the best keyword hit
/// is 1. An article only one ranking found gets that ranking's part alone
/// (its cosine is still known when the keyword side missed it, since the
/// semantic side scores every passage; a keyword-only hit scores its
/// keyword part).
fn fuse(by_words: &Scored, by_meaning: &Scored) -> Vec<Ranked> {
    let max_words = by_words
        .values()
        .map(|v| v.1)
        .fold(0.0f64, f64::max)
        .max(f64::MIN_POSITIVE);
    let mut out: HashMap<Uuid, Ranked> = HashMap::new();
    for (id, (kb, cos, p)) in by_meaning {
        out.insert(
            *id,
            Ranked {
                article_id: *id,
                knowledge_base_id: *kb,
                score: SEMANTIC_SHARE * cos,
                on_topic: close_enough(p),
                passages: p.clone(),
            },
        );
    }
    for (id, (kb, s, _)) in by_words {
        let part = (1.0 - SEMANTIC_SHARE) * s / max_words;
        out.entry(*id)
            .and_modify(|r| {
                r.score += part;
                r.on_topic = true;
            })
            .or_insert_with(|| Ranked {
                article_id: *id,
                knowledge_base_id: *kb,
                score: part,
                passages: vec![],
                on_topic: true,
            });
    }
    out.into_values().collect()
}

#[derive(sea_orm::FromQueryResult)]
struct ArticleText {
    id: Uuid,
    org_id: Uuid,
    title: String,
    body: String,
}

/// Reads the ranked articles' text (still the org's and published) and cuts
/// their snippets and passages.
async fn hits(
    db: &DatabaseConnection,
    org_id: Uuid,
    ranked: Vec<Ranked>,
    terms: &terms::Terms,
    embedder: Option<&dyn Embedder>,
) -> Result<Vec<Hit>, AppError> {
    use entity::kb_article as a;
    if ranked.is_empty() {
        return Ok(vec![]);
    }
    let ids: Vec<Uuid> = ranked.iter().map(|r| r.article_id).collect();
    // By primary key only, the org checked here: with `org_id = ?` beside
    // `id IN (…)`, SQLite's planner (without statistics) walks the org's
    // index, every article of the org (tens of milliseconds at 100k).
    let rows = a::Entity::find()
        .filter(a::Column::Id.is_in(ids.iter().copied()))
        .filter(a::Column::Published.eq(true))
        .select_only()
        .column(a::Column::Id)
        .column(a::Column::OrgId)
        .column(a::Column::Title)
        .column(a::Column::Body)
        .into_model::<ArticleText>()
        .all(db)
        .await?;
    let mut text: HashMap<Uuid, ArticleText> = rows
        .into_iter()
        .filter(|r| r.org_id == org_id)
        .map(|r| (r.id, r))
        .collect();
    let mut stored: HashMap<(Uuid, i32), String> = HashMap::new();
    if let Some(e) = embedder {
        use entity::kb_passage as p;
        let wanted: Vec<Uuid> = ranked
            .iter()
            .filter(|r| !r.passages.is_empty())
            .map(|r| r.article_id)
            .collect();
        if !wanted.is_empty() {
            let rows: Vec<(Uuid, i32, String)> = p::Entity::find()
                .filter(p::Column::OrgId.eq(org_id))
                .filter(p::Column::ArticleId.is_in(wanted))
                .filter(p::Column::Model.eq(e.model()))
                .select_only()
                .column(p::Column::ArticleId)
                .column(p::Column::Position)
                .column(p::Column::Text)
                .into_tuple()
                .all(db)
                .await?;
            stored = rows.into_iter().map(|(a, pos, t)| ((a, pos), t)).collect();
        }
    }
    let all_terms = terms.all();
    let mut out = Vec::with_capacity(ranked.len());
    for r in ranked {
        // Unpublished or deleted since the index was read: skipped.
        let Some(article) = text.remove(&r.article_id) else {
            continue;
        };
        let mut passages: Vec<HitPassage> = r
            .passages
            .iter()
            .filter_map(|(pos, cos)| {
                let t = stored.get(&(r.article_id, i32::from(*pos)))?;
                Some(HitPassage {
                    position: usize::from(*pos),
                    text: t.clone(),
                    score: f64::from(*cos),
                })
            })
            .collect();
        if passages.is_empty() {
            passages = keyword_passages(&article.body, &all_terms);
        }
        let snippet_source = passages
            .first()
            .filter(|p| !p.text.is_empty())
            .map_or(article.body.as_str(), |p| p.text.as_str());
        out.push(Hit {
            snippet: snippet::excerpt(snippet_source, &all_terms),
            article_id: r.article_id,
            knowledge_base_id: r.knowledge_base_id,
            title: article.title,
            body: article.body,
            score: r.score,
            on_topic: r.on_topic,
            passages,
        });
    }
    Ok(out)
}

/// The passages of `body` holding the most of `terms` (by shared prefix),
/// best first; ties keep article order.
fn keyword_passages(body: &str, terms: &[&str]) -> Vec<HitPassage> {
    let mut scored: Vec<HitPassage> = passages::split(body)
        .into_iter()
        .map(|p| {
            let words: Vec<String> = p
                .text
                .split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
                .map(str::to_lowercase)
                .collect();
            let score = terms
                .iter()
                .filter(|t| words.iter().any(|w| snippet::word_matches(t, w)))
                .count() as f64;
            HitPassage {
                position: p.position,
                text: p.text,
                score,
            }
        })
        .collect();
    scored.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(a.position.cmp(&b.position))
    });
    scored.truncate(PASSAGES_PER_HIT);
    scored
}

/// The substring baseline ([`keyword`]).
async fn substring(
    db: &DatabaseConnection,
    org_id: Uuid,
    knowledge_base_ids: &[Uuid],
    query: &str,
    limit: usize,
) -> Result<Vec<Hit>, AppError> {
    let terms = terms::Terms::parse(query);
    if terms.is_empty() {
        return Ok(vec![]);
    }
    let scope = Scope {
        org_id,
        knowledge_bases: Some(knowledge_base_ids),
    };
    let found = keyword::search(db, &scope, &terms, limit).await?;
    let all_terms = terms.all();
    Ok(found
        .into_iter()
        .map(|c| Hit {
            snippet: snippet::excerpt(&c.body, &all_terms),
            passages: keyword_passages(&c.body, &all_terms),
            on_topic: true,
            article_id: c.id,
            knowledge_base_id: c.knowledge_base_id,
            title: c.title,
            body: c.body,
            score: c.score,
        })
        .collect())
}

/// The dashboard's "test your bot" search (`kbSearch`): like [`search`], for
/// the caller's org, over `knowledge_base_ids` (all of the org's when
/// `None`), returning `first` hits (default [`DEFAULT_FIRST`]) ranked by
/// `mode` (the server's default when `None`).
///
/// `BAD_USER_INPUT` on `first` outside 1..=[`MAX_LIMIT`], on a `query` longer
/// than [`MAX_QUERY_CHARS`], on more than [`MAX_KNOWLEDGE_BASE_IDS`] ids, on
/// `SEMANTIC` without an embedding model; `NOT_FOUND` on `knowledgeBaseIds`
/// when one is not the caller's.
#[tracing::instrument(skip_all, fields(org_id = %scope.org_id()))]
pub async fn kb_search(
    st: &State,
    scope: &OrgScope,
    knowledge_base_ids: Option<&[Uuid]>,
    query: &str,
    first: Option<i32>,
    mode: Option<RetrievalMode>,
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
    if mode == Some(RetrievalMode::Semantic) && st.retriever.embedder.is_none() {
        return Err(AppError::bad_input(
            "mode",
            "semantic search needs an embedding model on the server (EMBEDDING_MODEL_DIR or EMBEDDING_PROVIDER)",
        ));
    }
    let mode = mode.unwrap_or(st.retriever.default_mode);
    use entity::knowledge_base::{Column, Entity};
    let unique = match knowledge_base_ids {
        None => {
            service::scoped::<Entity>(scope)
                .select_only()
                .column(Column::Id)
                .into_tuple()
                .all(&st.db)
                .await?
        }
        Some(ids) => {
            if ids.len() > MAX_KNOWLEDGE_BASE_IDS {
                return Err(AppError::bad_input(
                    "knowledgeBaseIds",
                    format!("at most {MAX_KNOWLEDGE_BASE_IDS} knowledge bases"),
                ));
            }
            let mut unique = ids.to_vec();
            unique.sort_unstable();
            unique.dedup();
            let found: Vec<Uuid> = service::scoped::<Entity>(scope)
                .filter(Column::Id.is_in(unique.iter().copied()))
                .select_only()
                .column(Column::Id)
                .into_tuple()
                .all(&st.db)
                .await?;
            if found.len() != unique.len() {
                return Err(AppError::not_found_in("knowledge base", "knowledgeBaseIds"));
            }
            unique
        }
    };
    search(st, scope.org_id(), &unique, query, limit, mode).await
}

/// Where the substring baseline may look: one org, its published articles,
/// and either the listed knowledge bases or all of them.
struct Scope<'a> {
    org_id: Uuid,
    knowledge_bases: Option<&'a [Uuid]>,
}

/// An article the substring baseline found, before its snippet is cut.
struct Candidate {
    id: Uuid,
    knowledge_base_id: Uuid,
    title: String,
    body: String,
    score: f64,
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
            Some(RetrievalMode::Keyword)
        );
        assert_eq!(RetrievalMode::parse("Hybrid"), Some(RetrievalMode::Hybrid));
        assert_eq!(
            RetrievalMode::parse("substring"),
            Some(RetrievalMode::Substring)
        );
        assert_eq!(RetrievalMode::parse("vector"), None);
    }

    #[test]
    fn context_keeps_best_passages_in_article_order() {
        let p = |position, text: &str, score| HitPassage {
            position,
            text: text.to_string(),
            score,
        };
        let hit = Hit {
            article_id: Uuid::nil(),
            knowledge_base_id: Uuid::nil(),
            title: "T".into(),
            body: "x".repeat(500),
            score: 1.0,
            snippet: String::new(),
            passages: vec![p(3, "third", 0.9), p(1, "first", 0.8), p(7, "late", 0.1)],
            on_topic: true,
        };
        assert_eq!(hit.context(14), "first\n\nthird");
        assert_eq!(hit.context(1000).len(), 500);
    }
}
