//! The semantic half of retrieval: one knowledge base's passage vectors,
//! searched exactly (every passage scored), kept as 8-bit integers.
//!
//! Why exact: at 100k passages of 384 dimensions a full scan is 38 M
//! multiply-adds, a few milliseconds on one core, and it never misses a
//! passage the way an approximate graph can; an HNSW index would pay off
//! only far beyond the knowledge bases a support bot answers from.
//!
//! Why 8 bits: the vectors are unit length, so every component lies in
//! [-1, 1]; each passage keeps its components scaled by its own largest one
//! (`i8`, plus that one `f32` scale). That is a quarter of the memory of
//! `f32` and a quarter of the bytes a scan reads (the scan is bound by
//! memory bandwidth), for cosine errors around 0.002, far below the gaps
//! that separate a right passage from a wrong one. The query is quantised
//! the same way, and the inner loop is a plain `i8 × i8 → i32` sum the
//! compiler vectorises.
//!
//! Past [`PREFILTER_FROM`] rows, a scan of every row's 8-bit values (38 MB
//! at 100k passages) costs more in memory traffic than in arithmetic, and
//! right after a query embedding (which sweeps the model's weights through
//! the cache) it reads all of it from memory. So each row also keeps its
//! components' signs (one bit each, 48 bytes a row): the scan scores every
//! row by the query's components weighted by those signs (`Σ qᵢ·sign(pᵢ)`,
//! looked up a byte at a time in a table built per query), and only the
//! best [`RESCORED`] rows get their exact 8-bit cosine. The ranking that
//! comes out is the exact one over those rows; a passage the signs rank
//! below thousands of others is not one a visitor needs.

/// A passage vector, quantised.
#[derive(Clone, Debug, PartialEq)]
pub struct Quantized {
    pub values: Vec<i8>,
    pub scale: f32,
}

/// `v` scaled into `i8` by its largest component.
pub fn quantize(v: &[f32]) -> Quantized {
    let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
    if max == 0.0 || !max.is_finite() {
        return Quantized {
            values: vec![0; v.len()],
            scale: 0.0,
        };
    }
    let scale = max / 127.0;
    Quantized {
        values: v
            .iter()
            .map(|x| (x / scale).round().clamp(-127.0, 127.0) as i8)
            .collect(),
        scale,
    }
}

/// The integer dot product of two quantised vectors of equal length.
#[inline]
fn dot(a: &[i8], b: &[i8]) -> i32 {
    // Chunks of 32 keep the partial sums in i32 lanes the compiler can vectorise.
    let mut sum = 0i32;
    let mut ca = a.chunks_exact(32);
    let mut cb = b.chunks_exact(32);
    for (x, y) in (&mut ca).zip(&mut cb) {
        let mut s = 0i32;
        for i in 0..32 {
            s += i32::from(x[i]) * i32::from(y[i]);
        }
        sum += s;
    }
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        sum += i32::from(*x) * i32::from(*y);
    }
    sum
}

/// Runs `block` on each `len`-long block of `out` (with its index), on
/// every core when `out` holds at least `parallel_from` items (rayon's
/// pool, shared with candle).
fn by_blocks<T: Send>(
    out: &mut [T],
    len: usize,
    parallel_from: usize,
    block: impl Fn((usize, &mut [T])) + Send + Sync,
) {
    if out.len() >= parallel_from {
        use rayon::prelude::*;
        out.par_chunks_mut(len).enumerate().for_each(block);
    } else {
        out.chunks_mut(len).enumerate().for_each(block);
    }
}

/// The sign scan's score of each live row of a block: the table entries its
/// sign bytes pick, summed (`out` left as it is for removed rows).
fn sign_scores(signs: &[u8], rows: &[(u32, u16)], table: &[[i16; 256]], out: &mut [i32]) {
    let width = table.len();
    for ((score, row), (slot, _)) in out.iter_mut().zip(signs.chunks_exact(width)).zip(rows) {
        if *slot != DEAD {
            *score = row
                .iter()
                .zip(table)
                .map(|(&byte, t)| i32::from(t[usize::from(byte)]))
                .sum();
        }
    }
}

/// See the module docs. Rows belong to article slots; a removed article's
/// rows stay until the owner rebuilds ([`PassageVectors::dead_fraction`]).
#[derive(Debug)]
pub struct PassageVectors {
    dim: usize,
    values: Vec<i8>,
    scales: Vec<f32>,
    /// Per row, `dim.div_ceil(8)` bytes: bit `k % 8` of byte `k / 8` is
    /// set when component `k` is positive.
    signs: Vec<u8>,
    /// Per row: the article slot (`u32::MAX` once removed) and the passage's position in it.
    rows: Vec<(u32, u16)>,
    dead: usize,
}

/// Rows per block of a scan.
const SCAN_BLOCK: usize = 4096;

/// Rows from which a scan runs on several cores (below, a thread hand-off costs more than it saves).
const PARALLEL_FROM: usize = 16_384;

/// Rows from which a scan ranks by signs first (see the module docs);
/// below it every row gets its exact cosine.
pub const PREFILTER_FROM: usize = 32_768;

/// Rows whose exact cosine is computed after the sign scan (at least: the
/// rows tied with the last one by the histogram below come too).
pub const RESCORED: usize = 4_096;

/// Bins of the histogram that picks the rows to rescore.
const HISTOGRAM_BINS: usize = 4_096;

/// Rescored rows per block (spread over the cores).
const RESCORE_BLOCK: usize = 1_024;

/// Components per sign byte.
const BYTE: usize = 8;

/// Sentinel slot of a removed row.
const DEAD: u32 = u32::MAX;

impl PassageVectors {
    pub fn new(dim: usize) -> Self {
        Self {
            dim,
            values: Vec::new(),
            scales: Vec::new(),
            signs: Vec::new(),
            rows: Vec::new(),
            dead: 0,
        }
    }

    fn sign_bytes(&self) -> usize {
        self.dim.div_ceil(BYTE)
    }

    /// Dimension of every vector held.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Adds passage `position` of the article in `slot`; a vector of the wrong dimension is ignored.
    pub fn push(&mut self, slot: u32, position: u16, v: &Quantized) {
        if v.values.len() != self.dim {
            return;
        }
        self.values.extend_from_slice(&v.values);
        self.scales.push(v.scale);
        for chunk in v.values.chunks(BYTE) {
            let byte = chunk
                .iter()
                .enumerate()
                .fold(0u8, |b, (k, &x)| b | (u8::from(x > 0) << k));
            self.signs.push(byte);
        }
        self.rows.push((slot, position));
    }

    /// Forgets every passage of the articles for which `gone(slot)` holds.
    pub fn remove_where(&mut self, gone: impl Fn(u32) -> bool) {
        for row in &mut self.rows {
            if row.0 != DEAD && gone(row.0) {
                row.0 = DEAD;
                self.dead += 1;
            }
        }
    }

    /// Share of rows that belong to removed articles.
    pub fn dead_fraction(&self) -> f64 {
        if self.rows.is_empty() {
            0.0
        } else {
            self.dead as f64 / self.rows.len() as f64
        }
    }

    /// The same vectors with live rows moved to new slots (`new_slot[old]`).
    pub fn compacted(&self, new_slot: &[Option<u32>]) -> Self {
        let mut out = Self::new(self.dim);
        for (i, &(slot, pos)) in self.rows.iter().enumerate() {
            if let Some(Some(new)) = new_slot.get(slot as usize) {
                out.values
                    .extend_from_slice(&self.values[i * self.dim..(i + 1) * self.dim]);
                out.scales.push(self.scales[i]);
                let w = self.sign_bytes();
                out.signs.extend_from_slice(&self.signs[i * w..(i + 1) * w]);
                out.rows.push((*new, pos));
            }
        }
        out
    }

    /// Live passages.
    pub fn len(&self) -> usize {
        self.rows.len() - self.dead
    }

    /// Whether no live passage is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `articles` article slots whose best passage is nearest `query`,
    /// each with its `passages` nearest passages (position, cosine), best
    /// first; articles unordered.
    ///
    /// Dense arrays instead of maps: one cosine per row (computed on every
    /// core for a long scan), one best cosine per slot, then a pass over the
    /// rows for the chosen slots only, so the scan costs a multiply-add per
    /// component and nothing per row that allocates or hashes.
    pub fn nearest(
        &self,
        query: &Quantized,
        articles: usize,
        passages: usize,
    ) -> Vec<(u32, Vec<(u16, f32)>)> {
        if query.values.len() != self.dim || self.dim == 0 || articles == 0 || passages == 0 {
            return vec![];
        }
        let slots = self
            .rows
            .iter()
            .filter(|r| r.0 != DEAD)
            .map(|r| r.0 as usize + 1)
            .max()
            .unwrap_or(0);
        let scored = if self.rows.len() >= PREFILTER_FROM {
            self.prefiltered(query)
        } else {
            self.exact(query)
        };
        let mut best = vec![f32::NEG_INFINITY; slots];
        for &(i, cos) in &scored {
            let slot = self.rows[i as usize].0 as usize;
            if cos > best[slot] {
                best[slot] = cos;
            }
        }
        let mut chosen: Vec<(u32, f32)> = best
            .iter()
            .enumerate()
            .filter(|(_, b)| b.is_finite())
            .map(|(slot, b)| (slot as u32, *b))
            .collect();
        if chosen.len() > articles {
            chosen.select_nth_unstable_by(articles - 1, |a, b| b.1.total_cmp(&a.1));
            chosen.truncate(articles);
        }
        // Slot → its place in `out` (u32::MAX: not chosen).
        let mut place = vec![u32::MAX; slots];
        for (k, (slot, _)) in chosen.iter().enumerate() {
            place[*slot as usize] = k as u32;
        }
        let mut out: Vec<(u32, Vec<(u16, f32)>)> =
            chosen.iter().map(|(slot, _)| (*slot, Vec::new())).collect();
        for &(i, cos) in &scored {
            let (slot, pos) = self.rows[i as usize];
            let k = place[slot as usize];
            if k != u32::MAX {
                out[k as usize].1.push((pos, cos));
            }
        }
        for (_, p) in &mut out {
            p.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            p.truncate(passages);
        }
        out
    }

    /// Approximate heap bytes held.
    pub fn bytes(&self) -> usize {
        self.values.capacity()
            + self.scales.capacity() * 4
            + self.signs.capacity()
            + self.rows.capacity() * 8
    }

    /// The exact cosine of row `i` (live).
    fn cosine(&self, i: usize, query: &Quantized) -> f32 {
        let row = &self.values[i * self.dim..(i + 1) * self.dim];
        dot(row, &query.values) as f32 * self.scales[i] * query.scale
    }

    /// Every live row with its exact cosine.
    pub(crate) fn exact(&self, query: &Quantized) -> Vec<(u32, f32)> {
        let mut cosines = vec![f32::NEG_INFINITY; self.rows.len()];
        let block = |(b, out): (usize, &mut [f32])| {
            let first = b * SCAN_BLOCK;
            for (k, cos) in out.iter_mut().enumerate() {
                if self.rows[first + k].0 != DEAD {
                    *cos = self.cosine(first + k, query);
                }
            }
        };
        by_blocks(&mut cosines, SCAN_BLOCK, PARALLEL_FROM, block);
        cosines
            .into_iter()
            .enumerate()
            .filter(|(i, _)| self.rows[*i].0 != DEAD)
            .map(|(i, cos)| (i as u32, cos))
            .collect()
    }

    /// The [`RESCORED`] live rows the sign scan ranks best (a few more on a
    /// tie), with their exact cosines.
    pub(crate) fn prefiltered(&self, query: &Quantized) -> Vec<(u32, f32)> {
        // table[j][b]: the sum of the query's components at the set bits of
        // byte value b in byte position j of a row's signs (a u8 indexes a
        // 256-entry array without a bounds check).
        let width = self.sign_bytes();
        let mut table = vec![[0i16; 256]; width];
        for (j, t) in table.iter_mut().enumerate() {
            let q = |k: usize| query.values.get(BYTE * j + k).map_or(0, |&x| i16::from(x));
            for b in 1..256usize {
                t[b] = t[b & (b - 1)] + q(b.trailing_zeros() as usize);
            }
        }
        let mut approx = vec![i32::MIN; self.rows.len()];
        let block = |(b, out): (usize, &mut [i32])| {
            let first = b * SCAN_BLOCK;
            sign_scores(
                &self.signs[first * width..],
                &self.rows[first..],
                &table,
                out,
            );
        };
        by_blocks(&mut approx, SCAN_BLOCK, PARALLEL_FROM, block);
        // The score from which a row is rescored: a histogram of the scores
        // (one pass, no sort), walked down from the top until it holds
        // RESCORED rows.
        let live = || approx.iter().copied().filter(|&a| a != i32::MIN);
        let (lo, hi) = live().fold((i32::MAX, i32::MIN), |(lo, hi), a| (lo.min(a), hi.max(a)));
        if lo > hi {
            return vec![];
        }
        // Bins of a power of two in width, so a row's bin is one shift.
        let span = (i64::from(hi) - i64::from(lo)) as u64;
        let shift = (u64::BITS - span.leading_zeros()).saturating_sub(HISTOGRAM_BINS.ilog2());
        let bin = |a: i32| ((i64::from(a) - i64::from(lo)) as u64 >> shift) as usize;
        let mut counts = vec![0usize; HISTOGRAM_BINS];
        for a in live() {
            counts[bin(a)] += 1;
        }
        let mut kept = 0;
        let mut from_bin = HISTOGRAM_BINS;
        while from_bin > 0 && kept < RESCORED {
            from_bin -= 1;
            kept += counts[from_bin];
        }
        // In row order, so the rows are read front to back (which the
        // memory's prefetcher follows), on every core for a long list.
        let rows: Vec<u32> = approx
            .iter()
            .enumerate()
            .filter(|(_, a)| **a != i32::MIN && bin(**a) >= from_bin)
            .map(|(i, _)| i as u32)
            .collect();
        let mut scored = vec![(0u32, 0f32); rows.len()];
        let rescore = |(b, out): (usize, &mut [(u32, f32)])| {
            for (k, slot) in out.iter_mut().enumerate() {
                let i = rows[b * RESCORE_BLOCK + k];
                *slot = (i, self.cosine(i as usize, query));
            }
        };
        by_blocks(&mut scored, RESCORE_BLOCK, 2 * RESCORE_BLOCK, rescore);
        scored
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(v: &[f32]) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect()
    }

    #[test]
    fn quantised_cosines_stay_close_to_exact_ones() {
        let a = unit(
            &(0..384)
                .map(|i| ((i * 7919) % 113) as f32 - 56.0)
                .collect::<Vec<_>>(),
        );
        let b = unit(
            &(0..384)
                .map(|i| ((i * 104_729) % 97) as f32 - 48.0)
                .collect::<Vec<_>>(),
        );
        let exact: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        let mut ix = PassageVectors::new(384);
        ix.push(0, 0, &quantize(&a));
        let cos = |q: &[f32]| {
            ix.nearest(&quantize(q), 1, 1)
                .first()
                .and_then(|h| h.1.first())
                .map_or(f32::NAN, |p| p.1)
        };
        let got = cos(&b);
        assert!((got - exact).abs() < 0.01, "{got} vs {exact}");
        assert!((cos(&a) - 1.0).abs() < 0.01);
    }

    /// `ix.nearest(q, articles, passages)` as (slot, positions), by slot.
    fn positions(
        ix: &PassageVectors,
        q: &[f32],
        articles: usize,
        passages: usize,
    ) -> Vec<(u32, Vec<u16>)> {
        let mut got: Vec<(u32, Vec<u16>)> = ix
            .nearest(&quantize(q), articles, passages)
            .into_iter()
            .map(|(s, p)| (s, p.into_iter().map(|x| x.0).collect()))
            .collect();
        got.sort_by_key(|g| g.0);
        got
    }

    #[test]
    fn nearest_keeps_the_best_articles_with_their_best_passages() {
        let mut ix = PassageVectors::new(2);
        ix.push(0, 0, &quantize(&[0.0, 1.0]));
        ix.push(0, 1, &quantize(&[0.8, 0.6]));
        ix.push(1, 0, &quantize(&[1.0, 0.0]));
        ix.push(1, 1, &quantize(&[0.6, 0.8]));
        ix.push(1, 2, &quantize(&[0.0, 1.0]));
        ix.push(2, 0, &quantize(&[-1.0, 0.0]));
        ix.remove_where(|s| s == 2);
        assert_eq!(
            positions(&ix, &[1.0, 0.0], 5, 2),
            vec![(0, vec![1, 0]), (1, vec![0, 1])]
        );
        assert_eq!(positions(&ix, &[1.0, 0.0], 1, 3), vec![(1, vec![0, 1, 2])]);
        let best = ix.nearest(&quantize(&[1.0, 0.0]), 1, 1);
        assert!((best[0].1[0].1 - 1.0).abs() < 0.01);
    }

    #[test]
    fn a_long_scan_on_several_cores_ranks_like_one_by_one() {
        // Past PARALLEL_FROM rows, so the blocks run on rayon's pool.
        let n = PARALLEL_FROM as u32 + 5_000;
        let mut ix = PassageVectors::new(4);
        let mut expected: Vec<(u32, f32)> = Vec::new();
        let q = unit(&[1.0, 0.2, 0.0, -0.1]);
        for slot in 0..n {
            let v = unit(&[
                ((slot * 7919) % 101) as f32 - 50.0,
                ((slot * 104_729) % 89) as f32 - 44.0,
                ((slot * 31) % 13) as f32 - 6.0,
                1.0,
            ]);
            let quantized = quantize(&v);
            let cos = dot(&quantized.values, &quantize(&q).values) as f32
                * quantized.scale
                * quantize(&q).scale;
            expected.push((slot, cos));
            ix.push(slot, 0, &quantized);
        }
        expected.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut got = ix.nearest(&quantize(&q), 10, 1);
        got.sort_by(|a, b| b.1[0].1.total_cmp(&a.1[0].1).then(a.0.cmp(&b.0)));
        let got: Vec<u32> = got.iter().map(|g| g.0).collect();
        let want: Vec<u32> = expected.iter().take(10).map(|e| e.0).collect();
        assert_eq!(got, want);
    }

    /// A unit vector of `dim` pseudo-random components from `seed`.
    fn random_unit(seed: u64, dim: usize) -> Vec<f32> {
        let v: Vec<f32> = crate::embeddings::test_uniform(seed, dim)
            .into_iter()
            .map(|u| u - 0.5)
            .collect();
        unit(&v)
    }

    #[test]
    fn a_sign_prefiltered_scan_finds_what_the_exact_one_finds() {
        // Past PREFILTER_FROM rows of 384 dimensions, three passages per
        // article; queries near a passage and queries at random.
        let n = PREFILTER_FROM + 6_000;
        let mut ix = PassageVectors::new(384);
        let rows: Vec<Vec<f32>> = (0..n as u64).map(|i| random_unit(i, 384)).collect();
        for (i, v) in rows.iter().enumerate() {
            ix.push((i / 3) as u32, (i % 3) as u16, &quantize(v));
        }
        ix.remove_where(|s| s % 10 == 7);
        for (k, near) in [(17usize, true), (20_000, true), (0, false), (1, false)] {
            let q: Vec<f32> = if near {
                // A passage plus as much noise again: what a paraphrase does.
                let noise = random_unit(1_000_000 + k as u64, 384);
                unit(
                    &rows[k]
                        .iter()
                        .zip(&noise)
                        .map(|(a, b)| a + b)
                        .collect::<Vec<_>>(),
                )
            } else {
                random_unit(2_000_000 + k as u64, 384)
            };
            let q = quantize(&q);
            let top = |scored: Vec<(u32, f32)>| {
                let mut s = scored;
                s.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                s.into_iter().take(10).collect::<Vec<_>>()
            };
            let exact = top(ix.exact(&q));
            assert_eq!(top(ix.prefiltered(&q)), exact, "query {k} (near: {near})");
            if near {
                assert_eq!(exact[0].0 as usize, k, "the passage itself is nearest");
            }
            // `nearest` takes the prefiltered path here and agrees.
            let best = ix.nearest(&q, 1, 1);
            assert_eq!(best[0].1[0].1, exact[0].1);
        }
    }

    /// The sign scan on real embeddings (the benchmark's help centre and
    /// its labelled questions through the real model; skipped without it,
    /// unless `WAYFINDER_EMBEDDING_TESTS=1`): each of 360 lines of the help
    /// centre and ~90 perturbed copies of each, then every third question's
    /// ten nearest rows, prefiltered and exact.
    #[tokio::test]
    async fn on_real_embeddings_the_sign_scan_finds_the_exact_nearest() {
        use crate::embeddings::{Embedder, local::LocalEmbedder};
        let Some(dir) = crate::embeddings::test_model_dir() else {
            return;
        };
        let model = LocalEmbedder::load(&dir).unwrap();
        let model = &model;
        let embed = |texts: Vec<String>| async move {
            let mut out = vec![];
            for chunk in texts.chunks(16) {
                out.extend(model.embed(chunk).await.unwrap());
            }
            out
        };
        let faq = include_str!("../../../benches/data/faq.txt");
        let lines: Vec<String> = faq
            .lines()
            .map(|l| l.trim_start_matches("title: ").trim())
            .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with("==="))
            .take(360)
            .map(str::to_string)
            .collect();
        let questions: Vec<String> = include_str!("../../../benches/data/questions.txt")
            .lines()
            .filter_map(|l| l.split_once(" | ").map(|(_, q)| q.to_string()))
            .step_by(3)
            .collect();
        let (passages, queries) = (embed(lines).await, embed(questions).await);
        let copies = PREFILTER_FROM / passages.len() + 1;
        let mut ix = PassageVectors::new(384);
        for (j, v) in passages.iter().enumerate() {
            for c in 0..copies {
                let noise = random_unit((j * copies + c) as u64, 384);
                let w = if c == 0 { 0.0 } else { 0.5 };
                let row = unit(
                    &v.iter()
                        .zip(&noise)
                        .map(|(a, b)| a + w * b)
                        .collect::<Vec<_>>(),
                );
                ix.push((j * copies + c) as u32, 0, &quantize(&row));
            }
        }
        assert!(ix.len() >= PREFILTER_FROM);
        let top = |scored: Vec<(u32, f32)>| {
            let mut s = scored;
            s.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            s.into_iter().take(10).map(|r| r.0).collect::<Vec<_>>()
        };
        let mut same = 0;
        for q in &queries {
            let q = quantize(q);
            same += usize::from(top(ix.prefiltered(&q)) == top(ix.exact(&q)));
        }
        assert_eq!(
            same,
            queries.len(),
            "questions whose ten nearest rows agree"
        );
    }

    #[test]
    fn removed_rows_are_skipped_and_compacted_away() {
        let mut ix = PassageVectors::new(2);
        ix.push(0, 0, &quantize(&[1.0, 0.0]));
        ix.push(1, 0, &quantize(&[0.0, 1.0]));
        ix.push(1, 1, &quantize(&[0.6, 0.8]));
        ix.remove_where(|s| s == 0);
        assert_eq!(ix.len(), 2);
        assert_eq!(positions(&ix, &[1.0, 0.0], 5, 5), vec![(1, vec![1, 0])]);
        let c = ix.compacted(&[None, Some(0)]);
        assert_eq!(c.dead_fraction(), 0.0);
        assert_eq!(positions(&c, &[1.0, 0.0], 5, 5), vec![(0, vec![1, 0])]);
    }
}
