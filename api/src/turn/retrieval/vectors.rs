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

/// See the module docs. Rows belong to article slots; a removed article's
/// rows stay until the owner rebuilds ([`PassageVectors::dead_fraction`]).
#[derive(Debug)]
pub struct PassageVectors {
    dim: usize,
    values: Vec<i8>,
    scales: Vec<f32>,
    /// Per row: the article slot (`u32::MAX` once removed) and the passage's position in it.
    rows: Vec<(u32, u16)>,
    dead: usize,
}

/// Rows per block of a scan.
const SCAN_BLOCK: usize = 4096;

/// Rows from which a scan runs on several cores (below, a thread hand-off costs more than it saves).
const PARALLEL_FROM: usize = 16_384;

/// Sentinel slot of a removed row.
const DEAD: u32 = u32::MAX;

impl PassageVectors {
    pub fn new(dim: usize) -> Self {
        Self {
            dim,
            values: Vec::new(),
            scales: Vec::new(),
            rows: Vec::new(),
            dead: 0,
        }
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
        // The dot products, in blocks spread over the cores when the scan is
        // long enough to pay for it (rayon's pool, shared with candle).
        let mut cosines = vec![f32::NEG_INFINITY; self.rows.len()];
        let block = |(b, out): (usize, &mut [f32])| {
            let first = b * SCAN_BLOCK;
            for (k, cos) in out.iter_mut().enumerate() {
                let i = first + k;
                if self.rows[i].0 == DEAD {
                    continue;
                }
                let row = &self.values[i * self.dim..(i + 1) * self.dim];
                *cos = dot(row, &query.values) as f32 * self.scales[i] * query.scale;
            }
        };
        if self.rows.len() >= PARALLEL_FROM {
            use rayon::prelude::*;
            cosines
                .par_chunks_mut(SCAN_BLOCK)
                .enumerate()
                .for_each(block);
        } else {
            cosines.chunks_mut(SCAN_BLOCK).enumerate().for_each(block);
        }
        let mut best = vec![f32::NEG_INFINITY; slots];
        for (&(slot, _), &cos) in self.rows.iter().zip(&cosines) {
            if slot != DEAD && cos > best[slot as usize] {
                best[slot as usize] = cos;
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
        for (&(slot, pos), &cos) in self.rows.iter().zip(&cosines) {
            if slot == DEAD {
                continue;
            }
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
        self.values.capacity() + self.scales.capacity() * 4 + self.rows.capacity() * 8
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
