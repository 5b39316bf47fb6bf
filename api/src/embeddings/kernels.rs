//! The encoder's element-wise steps, each fused into one pass over its data
//! and run on rayon's pool: a bias with the activation, a bias with the
//! residual and the layer norm, the padding mask with the softmax, a bias
//! with the split into heads, and the merge of the heads.
//!
//! Why: candle runs its broadcast additions, copies and our GELU on one
//! thread, so while they ran the other core spun at a barrier (a fifth of
//! indexing time in the profile), and each step read and wrote the whole
//! tensor again. These ops read it once, in parallel.
//!
//! The crate is built for baseline x86-64, whose vectors are four floats
//! wide. The row loops of the first three ops run through pulp's run-time
//! dispatch (the one gemm uses), so they are compiled a second time for
//! AVX-512 and that copy runs where the CPU has it; on other CPUs the
//! baseline copy runs.
//!
//! Every op needs contiguous `f32` tensors on the CPU and says so if it gets
//! anything else; the encoder only hands it fresh products.

use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, InplaceOp2, InplaceOp3, Layout, Result, Shape, bail,
};
use pulp::{Arch, Simd, WithSimd};
use rayon::prelude::*;

/// Elements one rayon task takes at least: enough to pay for the task.
const TASK_ELEMENTS: usize = 8192;

/// Whole rows of `cols` per task, at least one.
fn task_rows(cols: usize) -> usize {
    (TASK_ELEMENTS / cols.max(1)).max(1)
}

fn values<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<&'a [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => Ok(&v[a..b]),
        _ => bail!("{op}: needs a contiguous f32 tensor"),
    }
}

fn values_mut<'a>(s: &'a mut CpuStorage, l: &Layout, op: &str) -> Result<&'a mut [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => Ok(&mut v[a..b]),
        _ => bail!("{op}: needs a contiguous f32 tensor"),
    }
}

/// The non-linearity after the first feed-forward product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// GELU with the error function, as BERT's `gelu`.
    Gelu,
    /// GELU's tanh approximation (`gelu_new`, `gelu_pytorch_tanh`).
    GeluTanh,
    Relu,
}

/// `x ← act(x + bias)` for `x` of rows of `bias.len()`.
pub struct BiasActivation(pub Activation);

fn map_rows(x: &mut [f32], bias: &[f32], f: impl Fn(f32) -> f32 + Sync) {
    let cols = bias.len();
    x.par_chunks_mut(cols * task_rows(cols)).for_each(|rows| {
        Arch::new().dispatch(ActivationRows { rows, bias, f: &f });
    });
}

/// One task of [`BiasActivation`].
struct ActivationRows<'a, F> {
    rows: &'a mut [f32],
    bias: &'a [f32],
    f: F,
}

impl<F: Fn(f32) -> f32> WithSimd for ActivationRows<'_, F> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) {
        for row in self.rows.chunks_exact_mut(self.bias.len()) {
            for (v, b) in row.iter_mut().zip(self.bias) {
                *v = (self.f)(*v + b);
            }
        }
    }
}

impl InplaceOp2 for BiasActivation {
    fn name(&self) -> &'static str {
        "bias-activation"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<()> {
        let bias = values(s2, l2, self.name())?;
        let x = values_mut(s1, l1, self.name())?;
        if bias.is_empty() || !x.len().is_multiple_of(bias.len()) {
            bail!(
                "bias-activation: {} values are not rows of {}",
                x.len(),
                bias.len()
            );
        }
        match self.0 {
            Activation::Gelu => map_rows(x, bias, gelu),
            Activation::GeluTanh => map_rows(x, bias, gelu_tanh),
            Activation::Relu => map_rows(x, bias, |v| v.max(0.0)),
        }
        Ok(())
    }
}

/// `x ← norm(x + residual + bias) · gamma + beta`, row by row, for `x` and
/// `residual` of rows of `h` and `params` `(3, h)`: bias, gamma, beta.
pub struct BiasResidualNorm {
    pub eps: f32,
}

impl InplaceOp3 for BiasResidualNorm {
    fn name(&self) -> &'static str {
        "bias-residual-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<()> {
        let residual = values(s2, l2, self.name())?;
        let params = values(s3, l3, self.name())?;
        let x = values_mut(s1, l1, self.name())?;
        let h = params.len() / 3;
        if h == 0 || params.len() != 3 * h || x.len() != residual.len() || x.len() % h != 0 {
            bail!(
                "bias-residual-norm: shapes do not fit (x {}, params {})",
                x.len(),
                params.len()
            );
        }
        let rows = task_rows(h);
        x.par_chunks_mut(h * rows)
            .zip(residual.par_chunks(h * rows))
            .for_each(|(rows, residual)| {
                Arch::new().dispatch(NormRows {
                    rows,
                    residual,
                    params,
                    eps: self.eps,
                });
            });
        Ok(())
    }
}

/// One task of [`BiasResidualNorm`].
struct NormRows<'a> {
    rows: &'a mut [f32],
    residual: &'a [f32],
    params: &'a [f32],
    eps: f32,
}

impl WithSimd for NormRows<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) {
        let h = self.params.len() / 3;
        let (bias, rest) = self.params.split_at(h);
        let (gamma, beta) = rest.split_at(h);
        for (row, res) in self
            .rows
            .chunks_exact_mut(h)
            .zip(self.residual.chunks_exact(h))
        {
            for ((v, r), b) in row.iter_mut().zip(res).zip(bias) {
                *v += r + b;
            }
            let mean = lane_sum(row, |x| x) / h as f32;
            for v in row.iter_mut() {
                *v -= mean;
            }
            let var = lane_sum(row, |x| x * x) / h as f32;
            let inv = 1.0 / (var + self.eps).sqrt();
            for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
                *v = *v * inv * g + b;
            }
        }
    }
}

/// `Σ f(x)` over `v` in sixteen lanes, so it vectorises (a plain fold is
/// one chain of additions).
#[inline(always)]
fn lane_sum(v: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut lanes = [0f32; 16];
    let chunks = v.chunks_exact(16);
    let tail: f32 = chunks.remainder().iter().map(|&x| f(x)).sum();
    for c in chunks {
        for (l, &x) in lanes.iter_mut().zip(c) {
            *l += f(x);
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// Softmax over the last axis of attention scores `(n, heads, len, len)`,
/// in place, keys where `mask` `(n, len)` is 0 (padding) getting nothing.
pub struct MaskedSoftmax {
    pub heads: usize,
}

impl InplaceOp2 for MaskedSoftmax {
    fn name(&self) -> &'static str {
        "masked-softmax"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<()> {
        let (n, len) = l2.shape().dims2()?;
        let mask = values(s2, l2, self.name())?;
        let scores = values_mut(s1, l1, self.name())?;
        let per_input = self.heads * len;
        if len == 0 || scores.len() != n * per_input * len {
            bail!(
                "masked-softmax: {} scores for a mask of {n} x {len}",
                scores.len()
            );
        }
        let rows = task_rows(len);
        scores
            .par_chunks_mut(len * rows)
            .enumerate()
            .for_each(|(task, chunk)| {
                Arch::new().dispatch(SoftmaxRows {
                    rows: chunk,
                    first: task * rows,
                    len,
                    mask,
                    per_input,
                });
            });
        Ok(())
    }
}

/// One task of [`MaskedSoftmax`]: rows of `len` scores from row `first` on.
struct SoftmaxRows<'a> {
    rows: &'a mut [f32],
    first: usize,
    len: usize,
    mask: &'a [f32],
    per_input: usize,
}

impl WithSimd for SoftmaxRows<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) {
        let len = self.len;
        for (k, row) in self.rows.chunks_exact_mut(len).enumerate() {
            let input = (self.first + k) / self.per_input;
            let m = &self.mask[input * len..(input + 1) * len];
            let max = row
                .iter()
                .zip(m)
                .map(|(&v, &m)| if m > 0.0 { v } else { f32::MIN })
                .fold(f32::MIN, f32::max);
            for (v, m) in row.iter_mut().zip(m) {
                *v = exp(*v - max) * m;
            }
            let total = lane_sum(row, |x| x);
            let inv = if total > 0.0 { 1.0 / total } else { 0.0 };
            for v in row.iter_mut() {
                *v *= inv;
            }
        }
    }
}

/// `(n·len, 3h)` products plus their bias `(3h)`, split into queries, keys
/// and values by head: `(3, n, heads, len, d)`.
pub struct SplitHeads {
    pub n: usize,
    pub len: usize,
    pub heads: usize,
    pub head_size: usize,
}

impl CustomOp2 for SplitHeads {
    fn name(&self) -> &'static str {
        "split-heads"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, len, heads, d) = (self.n, self.len, self.heads, self.head_size);
        let h = heads * d;
        let x = values(s1, l1, self.name())?;
        let bias = values(s2, l2, self.name())?;
        if d == 0 || len == 0 || x.len() != n * len * 3 * h || bias.len() != 3 * h {
            bail!(
                "split-heads: {} values, {} biases for {n} x {len} x 3 x {h}",
                x.len(),
                bias.len()
            );
        }
        let mut out = vec![0f32; x.len()];
        // One block per (q/k/v, input, head): `len` rows of `d`.
        out.par_chunks_mut(len * d)
            .enumerate()
            .for_each(|(block, o)| {
                let head = block % heads;
                let input = (block / heads) % n;
                let which = block / (heads * n);
                let col = which * h + head * d;
                let b = &bias[col..col + d];
                for (t, row) in o.chunks_exact_mut(d).enumerate() {
                    let start = (input * len + t) * 3 * h + col;
                    for ((o, v), b) in row.iter_mut().zip(&x[start..start + d]).zip(b) {
                        *o = v + b;
                    }
                }
            });
        Ok((CpuStorage::F32(out), Shape::from((3, n, heads, len, d))))
    }
}

/// Per-head context `(n, heads, len, d)` back to token rows `(n·len, heads·d)`.
pub struct MergeHeads;

impl CustomOp1 for MergeHeads {
    fn name(&self) -> &'static str {
        "merge-heads"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, heads, len, d) = l.shape().dims4()?;
        let x = values(s, l, self.name())?;
        let h = heads * d;
        let mut out = vec![0f32; x.len()];
        if h > 0 {
            let rows = task_rows(h);
            out.par_chunks_mut(h * rows)
                .enumerate()
                .for_each(|(task, chunk)| {
                    for (k, row) in chunk.chunks_exact_mut(h).enumerate() {
                        let r = task * rows + k;
                        let (input, t) = (r / len, r % len);
                        for (head, o) in row.chunks_exact_mut(d).enumerate() {
                            let start = ((input * heads + head) * len + t) * d;
                            o.copy_from_slice(&x[start..start + d]);
                        }
                    }
                });
        }
        Ok((CpuStorage::F32(out), Shape::from((n * len, h))))
    }
}

/// GELU with the error function, `x · (1 + erf(x/√2)) / 2`.
#[inline(always)]
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// GELU's tanh form, `x · (1 + tanh(√(2/π) · (x + 0.044715 x³))) / 2`,
/// with `tanh(y) = 1 − 2 / (e^{2y} + 1)`.
#[inline(always)]
fn gelu_tanh(x: f32) -> f32 {
    const C: f32 = 0.797_884_6; // √(2/π)
    let y = C * (x + 0.044_715 * x * x * x);
    let tanh = 1.0 - 2.0 / (exp(2.0 * y) + 1.0);
    0.5 * x * (1.0 + tanh)
}

/// `exp(x)` for `x` in [-87, 88], relative error below 3e-7; no branches
/// and no calls, so a loop over it vectorises.
#[inline(always)]
fn exp(x: f32) -> f32 {
    // exp(x) = 2^n · e^f with n = round(x / ln 2) and |f| ≤ ln2 / 2; f is
    // found with ln 2 split in two (Cody and Waite) so that n · ln 2 loses
    // no digits: LN2_HI has few significant bits, LN2_LO is the rest.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.0, 88.0);
    // Round to the nearest integer by adding and removing 1.5·2^23: in
    // between, the low bits of `t`'s mantissa hold n itself.
    let t = x * std::f32::consts::LOG2_E + 12_582_912.0;
    let n = t - 12_582_912.0;
    let f = (x - n * LN2_HI) - n * LN2_LO;
    // e^f by its Taylor series to f^7/7! (error ~1e-9 for |f| ≤ 0.35).
    let p = 1.0
        + f * (1.0
            + f * (0.5
                + f * (1.0 / 6.0
                    + f * (1.0 / 24.0
                        + f * (1.0 / 120.0 + f * (1.0 / 720.0 + f * (1.0 / 5040.0)))))));
    // 2^n, built from those bits: t's are 0x4B40_0000 + n, and shifting
    // n + 127 (1..=254 after the clamp) into the exponent field drops the
    // rest. Integer steps only, where `n as i32` was a scalar conversion
    // with a NaN check for every element.
    let scale = f32::from_bits(t.to_bits().wrapping_add(127) << 23);
    p * scale
}

/// The error function, by Abramowitz and Stegun's formula 7.1.26 (absolute
/// error below 1.5e-7, and below 5e-7 once computed in f32).
#[inline(always)]
fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152_1 + t * 1.061_405_4))));
    let r = 1.0 - poly * exp(-a * a);
    r.copysign(x)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use candle_core::{D, Device, Tensor};

    use super::*;

    /// erf by its Taylor series in f64 (exact to ~1e-10 for |x| ≤ 4).
    fn erf_reference(x: f64) -> f64 {
        let (mut term, mut sum) = (x, x);
        for n in 1..200 {
            term *= -x * x / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn exp_and_erf_are_accurate_to_float_precision() {
        for i in -8_700..=8_800 {
            let x = i as f32 / 100.0;
            let (got, want) = (f64::from(exp(x)), f64::from(x).exp());
            assert!(
                ((got - want) / want).abs() < 3e-7,
                "exp({x}) = {got}, want {want}"
            );
        }
        for i in -400..=400 {
            let x = i as f32 / 100.0;
            let (got, want) = (f64::from(erf(x)), erf_reference(f64::from(x)));
            assert!((got - want).abs() < 5e-7, "erf({x}) = {got}, want {want}");
        }
        // Beyond the clamp: finite, never 0 or infinity.
        for x in [-1e30f32, f32::NEG_INFINITY, f32::MIN] {
            assert!(exp(x) > 0.0 && exp(x) < 1e-37, "exp({x}) = {}", exp(x));
        }
        for x in [1e30f32, f32::INFINITY, f32::MAX] {
            assert!(exp(x).is_finite() && exp(x) > 1e38, "exp({x}) = {}", exp(x));
        }
        for x in [4.5f32, 6.0, 10.0, 1e6] {
            assert!((erf(x) - 1.0).abs() < 1e-7 && (erf(-x) + 1.0).abs() < 1e-7);
        }
        assert!(erf(0.0).abs() < 5e-7);
    }

    /// Deterministic values in about [-3, 3), different for each `seed`.
    fn noise(shape: &[usize], seed: u64) -> Tensor {
        let values: Vec<f32> = crate::embeddings::test_uniform(seed, shape.iter().product())
            .into_iter()
            .map(|u| u * 6.0 - 3.0)
            .collect();
        Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
    }

    fn assert_close(got: &Tensor, want: &Tensor, tolerance: f32, what: &str) {
        assert_eq!(got.dims(), want.dims(), "{what}: shapes");
        let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let want = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < tolerance, "{what}: off by up to {worst}");
    }

    // Sizes that do not divide a task's rows evenly, so tasks end mid-way.
    const ROWS: usize = 203;
    const COLS: usize = 61;

    #[test]
    fn bias_and_activation_match_candle() {
        let bias = noise(&[COLS], 1);
        for (act, reference) in [
            (Activation::Gelu, "gelu_erf"),
            (Activation::GeluTanh, "gelu"),
            (Activation::Relu, "relu"),
        ] {
            let x = noise(&[ROWS, COLS], 2);
            let sum = x.broadcast_add(&bias).unwrap();
            let want = match reference {
                "gelu_erf" => sum.gelu_erf(),
                "gelu" => sum.gelu(),
                _ => sum.relu(),
            }
            .unwrap();
            x.inplace_op2(&bias, &BiasActivation(act)).unwrap();
            assert_close(&x, &want, 2e-6, reference);
        }
        let wrong = noise(&[COLS + 1], 3);
        assert!(
            noise(&[ROWS, COLS], 2)
                .inplace_op2(&wrong, &BiasActivation(Activation::Gelu))
                .is_err()
        );
    }

    #[test]
    fn bias_residual_and_norm_match_candle() {
        let (x, residual) = (noise(&[ROWS, COLS], 4), noise(&[ROWS, COLS], 5));
        let (bias, gamma, beta) = (noise(&[COLS], 6), noise(&[COLS], 7), noise(&[COLS], 8));
        let want = candle_nn::ops::layer_norm(
            &(x.broadcast_add(&bias).unwrap() + &residual).unwrap(),
            &gamma,
            &beta,
            1e-12,
        )
        .unwrap();
        let params = Tensor::stack(&[&bias, &gamma, &beta], 0).unwrap();
        x.inplace_op3(&residual, &params, &BiasResidualNorm { eps: 1e-12 })
            .unwrap();
        assert_close(&x, &want, 2e-5, "bias, residual and norm");
    }

    #[test]
    fn masked_softmax_matches_candle_and_gives_padding_nothing() {
        let (n, heads, len) = (5, 3, 37);
        let scores = noise(&[n, heads, len, len], 9);
        // Input i has its last 3·i tokens padded.
        let mask: Vec<f32> = (0..n)
            .flat_map(|i| (0..len).map(move |t| if t + 3 * i < len { 1.0 } else { 0.0 }))
            .collect();
        let mask = Tensor::from_vec(mask, (n, len), &Device::Cpu).unwrap();
        let penalty = ((&mask - 1.0).unwrap() * 1e9)
            .unwrap()
            .reshape((n, 1, 1, len))
            .unwrap();
        let want =
            candle_nn::ops::softmax_last_dim(&scores.broadcast_add(&penalty).unwrap()).unwrap();
        scores.inplace_op2(&mask, &MaskedSoftmax { heads }).unwrap();
        assert_close(&scores, &want, 1e-6, "masked softmax");
        let padded = scores
            .broadcast_mul(&(1.0 - &mask).unwrap().reshape((n, 1, 1, len)).unwrap())
            .unwrap();
        assert_eq!(
            padded
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap(),
            0.0
        );
        let totals = scores.sum(D::Minus1).unwrap();
        assert_close(&totals, &totals.ones_like().unwrap(), 1e-5, "rows sum to 1");
        // A row with no real key at all gives nothing, not NaN.
        let lone = noise(&[1, 1, 4, 4], 13);
        lone.inplace_op2(
            &Tensor::zeros((1, 4), candle_core::DType::F32, &Device::Cpu).unwrap(),
            &MaskedSoftmax { heads: 1 },
        )
        .unwrap();
        assert_eq!(
            lone.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            vec![0.0; 16]
        );
    }

    #[test]
    fn split_and_merge_heads_match_candle() {
        // 3 x 150 rows of 20: MergeHeads' tasks take 409 rows, so the second
        // task starts mid-input.
        let (n, len, heads, d) = (3, 150, 4, 5);
        let h = heads * d;
        let x = noise(&[n * len, 3 * h], 10);
        let bias = noise(&[3 * h], 11);
        let want = x
            .broadcast_add(&bias)
            .unwrap()
            .reshape((n, len, 3, heads, d))
            .unwrap()
            .permute((2, 0, 3, 1, 4))
            .unwrap()
            .contiguous()
            .unwrap();
        let split = SplitHeads {
            n,
            len,
            heads,
            head_size: d,
        };
        let got = x.apply_op2_no_bwd(&bias, &split).unwrap();
        assert_close(&got, &want, 1e-6, "split heads");
        let context = noise(&[n, heads, len, d], 12);
        let want = context
            .transpose(1, 2)
            .unwrap()
            .contiguous()
            .unwrap()
            .reshape((n * len, h))
            .unwrap();
        let merged = context.apply_op1_no_bwd(&MergeHeads).unwrap();
        assert_close(&merged, &want, 0.0 + f32::MIN_POSITIVE, "merge heads");
        // A strided view is refused with an error, not misread.
        assert!(
            context
                .transpose(1, 2)
                .unwrap()
                .apply_op1_no_bwd(&MergeHeads)
                .is_err()
        );
    }
}
