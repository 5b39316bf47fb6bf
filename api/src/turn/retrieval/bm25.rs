//! The keyword half of retrieval: an inverted index over one knowledge
//! base's published articles, ranked by BM25F (title and body as two fields,
//! each with its own length normalisation, the title weighted higher).
//!
//! Why in process and not the database's full-text index: ranking needs
//! statistics (how many articles hold a word, how long articles are), and a
//! database index computes them over every tenant's rows. Then org A's
//! scores move when org B adds articles, and a probe can tell whether a
//! word occurs in other tenants' knowledge bases. Here every statistic is
//! per knowledge base, summed over the knowledge bases one search covers,
//! all of them the caller's ([`Stats`]).
//!
//! Slots: an article keeps its slot until the index is rebuilt; removing one
//! leaves its postings in place (skipped, since its slot is empty) and the
//! owner rebuilds when too many are dead ([`Bm25Index::dead_fraction`]).

use std::collections::HashMap;

use rust_stemmers::Stemmer;

use super::analyze;

/// BM25's term-frequency saturation.
const K1: f32 = 1.2;
/// Length normalisation of the title field.
const B_TITLE: f32 = 0.5;
/// Length normalisation of the body field.
const B_BODY: f32 = 0.75;
/// How much a title occurrence counts against one in the body.
pub const TITLE_WEIGHT: f32 = 3.0;

/// One article holding one term.
#[derive(Clone, Copy, Debug)]
struct Posting {
    slot: u32,
    title_tf: u16,
    body_tf: u16,
}

/// What the index remembers of one article: its terms (to undo it) and its field lengths.
#[derive(Clone, Debug)]
struct Doc {
    /// (term id, title tf, body tf).
    terms: Box<[(u32, u16, u16)]>,
    title_len: u32,
    body_len: u32,
}

/// Counts over the knowledge bases of one search, for one query.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Live articles.
    pub docs: u64,
    pub title_len_sum: u64,
    pub body_len_sum: u64,
    /// Per query term, in query order: articles holding it.
    pub df: Vec<u64>,
}

impl Stats {
    /// Adds another knowledge base's counts (same query terms).
    pub fn add(&mut self, other: &Stats) {
        self.docs += other.docs;
        self.title_len_sum += other.title_len_sum;
        self.body_len_sum += other.body_len_sum;
        if self.df.len() < other.df.len() {
            self.df.resize(other.df.len(), 0);
        }
        for (a, b) in self.df.iter_mut().zip(&other.df) {
            *a += b;
        }
    }
}

/// A term of the query with its weight (1 for the visitor's word, less for a synonym).
#[derive(Clone, Debug, PartialEq)]
pub struct QueryTerm {
    pub stem: String,
    pub weight: f32,
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct Bm25Index {
    vocab: HashMap<Box<str>, u32>,
    postings: Vec<Vec<Posting>>,
    df: Vec<u32>,
    docs: Vec<Option<Doc>>,
    /// Per slot, the field lengths `[title, body]` (`DEAD_LEN` once removed):
    /// what scoring reads for every posting, kept apart from `docs` so a scan
    /// touches 8 bytes per article.
    lens: Vec<[u32; 2]>,
    live: u64,
    title_len_sum: u64,
    body_len_sum: u64,
    postings_total: usize,
    postings_dead: usize,
}

/// Title length of an empty slot in [`Bm25Index::lens`].
const DEAD_LEN: u32 = u32::MAX;

fn saturating_u16(n: u32) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

impl Bm25Index {
    /// Indexes an article in `slot` (which must be empty).
    pub fn insert(&mut self, stemmer: &Stemmer, slot: u32, title: &str, body: &str) {
        let mut tokens = Vec::new();
        analyze::terms_of(stemmer, title, &mut tokens);
        let title_len = tokens.len();
        analyze::terms_of(stemmer, body, &mut tokens);
        let body_len = tokens.len() - title_len;
        let mut counts: HashMap<u32, (u32, u32)> = HashMap::new();
        for (i, t) in tokens.into_iter().enumerate() {
            let next = self.vocab.len() as u32;
            let id = *self.vocab.entry(t.into_boxed_str()).or_insert(next);
            if id as usize == self.postings.len() {
                self.postings.push(Vec::new());
                self.df.push(0);
            }
            let c = counts.entry(id).or_default();
            if i < title_len {
                c.0 += 1;
            } else {
                c.1 += 1;
            }
        }
        let terms: Box<[(u32, u16, u16)]> = counts
            .into_iter()
            .map(|(id, (t, b))| (id, saturating_u16(t), saturating_u16(b)))
            .collect();
        self.insert_terms(
            slot,
            Doc {
                terms,
                title_len: title_len as u32,
                body_len: body_len as u32,
            },
        );
    }

    fn insert_terms(&mut self, slot: u32, doc: Doc) {
        for &(id, title_tf, body_tf) in doc.terms.iter() {
            self.postings[id as usize].push(Posting {
                slot,
                title_tf,
                body_tf,
            });
            self.df[id as usize] += 1;
        }
        self.postings_total += doc.terms.len();
        self.live += 1;
        self.title_len_sum += u64::from(doc.title_len);
        self.body_len_sum += u64::from(doc.body_len);
        let i = slot as usize;
        if self.docs.len() <= i {
            self.docs.resize(i + 1, None);
            self.lens.resize(i + 1, [DEAD_LEN, 0]);
        }
        self.lens[i] = [doc.title_len.min(DEAD_LEN - 1), doc.body_len];
        self.docs[i] = Some(doc);
    }

    /// Forgets the article in `slot`, if any.
    pub fn remove(&mut self, slot: u32) {
        let Some(doc) = self.docs.get_mut(slot as usize).and_then(Option::take) else {
            return;
        };
        for &(id, _, _) in doc.terms.iter() {
            self.df[id as usize] -= 1;
        }
        if let Some(l) = self.lens.get_mut(slot as usize) {
            *l = [DEAD_LEN, 0];
        }
        self.postings_dead += doc.terms.len();
        self.live -= 1;
        self.title_len_sum -= u64::from(doc.title_len);
        self.body_len_sum -= u64::from(doc.body_len);
    }

    /// Share of postings that belong to removed articles.
    pub fn dead_fraction(&self) -> f64 {
        if self.postings_total == 0 {
            0.0
        } else {
            self.postings_dead as f64 / self.postings_total as f64
        }
    }

    /// The same index with the live articles moved to new slots
    /// (`new_slot[old]`), dead postings gone.
    pub fn compacted(&self, new_slot: &[Option<u32>]) -> Self {
        let mut out = Self {
            vocab: self.vocab.clone(),
            postings: vec![Vec::new(); self.postings.len()],
            df: vec![0; self.df.len()],
            ..Self::default()
        };
        for (old, doc) in self.docs.iter().enumerate() {
            if let (Some(doc), Some(Some(slot))) = (doc, new_slot.get(old)) {
                out.insert_terms(*slot, doc.clone());
            }
        }
        out
    }

    /// Live articles.
    pub fn len(&self) -> u64 {
        self.live
    }

    /// Whether no article is indexed.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// This index's counts for `terms`.
    pub fn stats(&self, terms: &[QueryTerm]) -> Stats {
        Stats {
            docs: self.live,
            title_len_sum: self.title_len_sum,
            body_len_sum: self.body_len_sum,
            df: terms
                .iter()
                .map(|t| {
                    self.vocab
                        .get(t.stem.as_str())
                        .map_or(0, |&id| u64::from(self.df[id as usize]))
                })
                .collect(),
        }
    }

    /// Every live article matching at least one of `terms`, with its BM25F
    /// score under `stats` (the whole search's counts), unordered.
    pub fn score(&self, terms: &[QueryTerm], stats: &Stats) -> Vec<(u32, f32)> {
        if stats.docs == 0 {
            return vec![];
        }
        let n = stats.docs as f32;
        let avg_title = (stats.title_len_sum as f32 / n).max(1.0);
        let avg_body = (stats.body_len_sum as f32 / n).max(1.0);
        // A dense accumulator, one score per slot: every posting costs an
        // indexed add, not a hash lookup. A matching article's score is
        // positive (idf and tf are), so 0 means "not matched".
        let mut acc = vec![0f32; self.docs.len()];
        for (i, term) in terms.iter().enumerate() {
            let Some(&id) = self.vocab.get(term.stem.as_str()) else {
                continue;
            };
            let df = stats.df.get(i).copied().unwrap_or(0) as f32;
            let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
            let weight = term.weight * idf * (K1 + 1.0);
            for p in &self.postings[id as usize] {
                let Some(&[title_len, body_len]) = self.lens.get(p.slot as usize) else {
                    continue;
                };
                if title_len == DEAD_LEN {
                    continue;
                }
                let title_norm = 1.0 - B_TITLE + B_TITLE * title_len as f32 / avg_title;
                let body_norm = 1.0 - B_BODY + B_BODY * body_len as f32 / avg_body;
                let tf = TITLE_WEIGHT * f32::from(p.title_tf) / title_norm
                    + f32::from(p.body_tf) / body_norm;
                acc[p.slot as usize] += weight * tf / (K1 + tf);
            }
        }
        acc.into_iter()
            .enumerate()
            .filter(|(_, s)| *s > 0.0)
            .map(|(slot, s)| (slot as u32, s))
            .collect()
    }

    /// Approximate heap bytes held.
    pub fn bytes(&self) -> usize {
        let vocab: usize = self.vocab.keys().map(|k| k.len() + 40).sum();
        let postings = self.postings_total * std::mem::size_of::<Posting>()
            + self.postings.len() * std::mem::size_of::<Vec<Posting>>();
        let docs: usize = self
            .docs
            .iter()
            .map(|d| 40 + d.as_ref().map_or(0, |d| d.terms.len() * 12))
            .sum();
        vocab + postings + docs + self.df.len() * 4 + self.lens.len() * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(words: &[&str]) -> Vec<QueryTerm> {
        let s = analyze::stemmer();
        words
            .iter()
            .map(|w| QueryTerm {
                stem: analyze::stem(&s, w),
                weight: 1.0,
            })
            .collect()
    }

    fn ranked(ix: &Bm25Index, words: &[&str]) -> Vec<u32> {
        let terms = q(words);
        let mut hits = ix.score(&terms, &ix.stats(&terms));
        hits.sort_by(|a, b| b.1.total_cmp(&a.1));
        hits.into_iter().map(|(s, _)| s).collect()
    }

    #[test]
    fn title_and_rare_words_rank_first() {
        let s = analyze::stemmer();
        let mut ix = Bm25Index::default();
        ix.insert(&s, 0, "Download invoices", "Open billing to see invoices.");
        ix.insert(
            &s,
            1,
            "Change your password",
            "Security settings hold the password form.",
        );
        ix.insert(
            &s,
            2,
            "Billing overview",
            "Invoices are mentioned once here among many other words about plans and seats.",
        );
        assert_eq!(ranked(&ix, &["invoicing"]), vec![0, 2]);
        assert_eq!(ranked(&ix, &["passwords"]), vec![1]);
    }

    #[test]
    fn removal_undoes_counts_and_compaction_keeps_scores() {
        let s = analyze::stemmer();
        let mut ix = Bm25Index::default();
        ix.insert(&s, 0, "Alpha", "one two");
        ix.insert(&s, 1, "Beta", "two three");
        ix.insert(&s, 2, "Gamma", "three four");
        let terms = q(&["three"]);
        let before: Vec<f32> = {
            let mut h = ix.score(&terms, &ix.stats(&terms));
            h.sort_by_key(|h| h.0);
            h.into_iter().map(|h| h.1).collect()
        };
        ix.remove(0);
        assert_eq!(ix.len(), 2);
        assert_eq!(ix.stats(&q(&["one"])).df, vec![0]);
        let compact = ix.compacted(&[None, Some(0), Some(1)]);
        assert_eq!(compact.dead_fraction(), 0.0);
        let terms = q(&["three"]);
        let after = compact.score(&terms, &compact.stats(&terms));
        assert_eq!(after.len(), 2);
        // Removing "Alpha" changed the statistics, so scores differ from before; both hold "three".
        assert_eq!(before.len(), 2);
    }
}
