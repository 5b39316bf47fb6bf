//! The BERT encoder of a sentence-transformers model, run for inference on
//! the CPU with candle tensors: token, position and type embeddings, then
//! `num_hidden_layers` of self-attention and feed-forward, each closed by a
//! residual sum and a layer norm. It returns one vector per token; pooling
//! is the caller's.
//!
//! It replaces candle-transformers' `BertModel` (which its test compares it
//! with), written for speed on small inputs (a visitor's question is ~30
//! tokens):
//! - on a CPU with AVX-512, every dense weight is kept transposed, `(in,
//!   out)` and contiguous, so gemm's AVX-512 kernel reads it as it lies
//!   instead of repacking the whole matrix on every product (repacking was
//!   ~40 % of a query's time); see [`weights_as_rows`];
//! - the query, key and value projections are one product with one weight;
//! - the attention scale `1/√d` is folded into the query weights;
//! - an attention mask is applied only when the batch has padding;
//! - GELU is computed with [`erf`] below, which vectorises, instead of
//!   `libm`'s scalar `erff`.

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;
use serde::Deserialize;

/// The fields of a Hugging Face BERT `config.json` the encoder needs.
#[derive(Clone, Debug, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub pad_token_id: usize,
    #[serde(default = "default_position")]
    pub position_embedding_type: String,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_position() -> String {
    "absolute".into()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Activation {
    /// GELU with the error function, as BERT's `gelu`.
    Gelu,
    /// GELU's tanh approximation (`gelu_new`, `gelu_pytorch_tanh`).
    GeluTanh,
    Relu,
}

/// `x · w + b`, with `w` an `(in, out)` matrix.
struct Dense {
    w: Tensor,
    b: Tensor,
}

/// Whether dense weights are kept as `(in, out)` rows in memory (a
/// transposed copy) rather than as a transposed view of the `(out, in)`
/// rows they are stored in. With gemm's AVX-512 kernels the copy is faster
/// (gemm reads it as it lies); with its AVX2 kernels the view is (gemm
/// repacks it, but its packed kernel is the faster one there). Measured
/// for a 20-word question on this machine: 11.8 ms against 17.4 ms with
/// AVX-512, 17.1 ms against 13.0 ms without (docs/decisions.md).
fn weights_as_rows() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

impl Dense {
    /// From a weight as stored, `(out, in)`, and its bias `(out)`.
    fn new(w: Tensor, b: Tensor) -> Result<Self> {
        let w = w.t()?;
        let w = if weights_as_rows() {
            w.contiguous()?
        } else {
            w
        };
        Ok(Self { w, b })
    }

    /// `prefix.weight` (`(out, in)`) and `prefix.bias`, as stored.
    fn read(vb: &VarBuilder, input: usize, output: usize) -> Result<(Tensor, Tensor)> {
        Ok((vb.get((output, input), "weight")?, vb.get(output, "bias")?))
    }

    fn load(vb: &VarBuilder, input: usize, output: usize) -> Result<Self> {
        let (w, b) = Self::read(vb, input, output)?;
        Self::new(w, b)
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.matmul(&self.w)?.broadcast_add(&self.b)
    }
}

struct Norm {
    gamma: Tensor,
    beta: Tensor,
    eps: f32,
}

impl Norm {
    fn load(vb: &VarBuilder, size: usize, eps: f64) -> Result<Self> {
        // Older checkpoints name the parameters gamma and beta.
        let (g, b) = if vb.contains_tensor("weight") {
            ("weight", "bias")
        } else {
            ("gamma", "beta")
        };
        Ok(Self {
            gamma: vb.get(size, g)?,
            beta: vb.get(size, b)?,
            eps: eps as f32,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        candle_nn::ops::layer_norm(x, &self.gamma, &self.beta, self.eps)
    }
}

struct Layer {
    qkv: Dense,
    attention_out: Dense,
    attention_norm: Norm,
    up: Dense,
    down: Dense,
    out_norm: Norm,
}

/// See the module docs.
pub struct BertEncoder {
    words: Tensor,
    /// Position embeddings with the type-0 embedding added (every input is one segment).
    positions: Tensor,
    embedding_norm: Norm,
    layers: Vec<Layer>,
    heads: usize,
    head_size: usize,
    hidden: usize,
    intermediate: usize,
    activation: Activation,
}

impl BertEncoder {
    pub fn load(vb: VarBuilder, config: &BertConfig) -> Result<Self> {
        let h = config.hidden_size;
        let heads = config.num_attention_heads;
        if heads == 0 || !h.is_multiple_of(heads) {
            candle_core::bail!("hidden_size {h} is not a multiple of num_attention_heads {heads}");
        }
        if config.position_embedding_type != "absolute" {
            candle_core::bail!(
                "position_embedding_type {} is not supported (only absolute)",
                config.position_embedding_type
            );
        }
        let activation = match config.hidden_act.as_str() {
            "gelu" => Activation::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
            "relu" => Activation::Relu,
            other => candle_core::bail!("hidden_act {other} is not supported"),
        };
        let vb = if vb.contains_tensor("bert.embeddings.word_embeddings.weight") {
            vb.pp("bert")
        } else {
            vb
        };
        let emb = vb.pp("embeddings");
        let words = emb
            .pp("word_embeddings")
            .get((config.vocab_size, h), "weight")?;
        let positions = emb
            .pp("position_embeddings")
            .get((config.max_position_embeddings, h), "weight")?;
        let types = emb
            .pp("token_type_embeddings")
            .get((config.type_vocab_size.max(1), h), "weight")?;
        let positions = positions.broadcast_add(&types.narrow(0, 0, 1)?)?;
        let embedding_norm = Norm::load(&emb.pp("LayerNorm"), h, config.layer_norm_eps)?;
        let head_size = h / heads;
        let scale = 1.0 / (head_size as f64).sqrt();
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let l = vb.pp(format!("encoder.layer.{i}"));
            let att = l.pp("attention");
            let own = att.pp("self");
            let (qw, qb) = Dense::read(&own.pp("query"), h, h)?;
            let (kw, kb) = Dense::read(&own.pp("key"), h, h)?;
            let (vw, v_bias) = Dense::read(&own.pp("value"), h, h)?;
            let qkv = Dense::new(
                Tensor::cat(&[(qw * scale)?, kw, vw], 0)?,
                Tensor::cat(&[(qb * scale)?, kb, v_bias], 0)?,
            )?;
            layers.push(Layer {
                qkv,
                attention_out: Dense::load(&att.pp("output").pp("dense"), h, h)?,
                attention_norm: Norm::load(
                    &att.pp("output").pp("LayerNorm"),
                    h,
                    config.layer_norm_eps,
                )?,
                up: Dense::load(
                    &l.pp("intermediate").pp("dense"),
                    h,
                    config.intermediate_size,
                )?,
                down: Dense::load(&l.pp("output").pp("dense"), config.intermediate_size, h)?,
                out_norm: Norm::load(&l.pp("output").pp("LayerNorm"), h, config.layer_norm_eps)?,
            });
        }
        Ok(Self {
            words,
            positions,
            embedding_norm,
            layers,
            heads,
            head_size,
            hidden: h,
            intermediate: config.intermediate_size,
            activation,
        })
    }

    /// Bytes of the largest intermediate tensor of a pass over `n` inputs
    /// of `len` tokens: the attention scores or the widest projection.
    pub fn pass_bytes(&self, n: usize, len: usize) -> usize {
        let widest = self.intermediate.max(3 * self.hidden);
        let scores = self.heads.saturating_mul(len).saturating_mul(len);
        n.saturating_mul(len.saturating_mul(widest).max(scores))
            .saturating_mul(std::mem::size_of::<f32>())
    }

    /// Longest input, in tokens.
    pub fn max_tokens(&self) -> usize {
        self.positions.dim(0).unwrap_or(0)
    }

    /// Token vectors `(n, len, hidden)` for token ids `(n, len)`; `mask`
    /// `(n, len)` is 1 for a real token and 0 for padding.
    pub fn forward(&self, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (n, len) = ids.dims2()?;
        if len > self.max_tokens() {
            candle_core::bail!("{len} tokens, at most {}", self.max_tokens());
        }
        let h = self.hidden;
        let x = self
            .words
            .index_select(&ids.flatten_all()?, 0)?
            .reshape((n, len, h))?;
        let x = x.broadcast_add(&self.positions.narrow(0, 0, len)?)?;
        let mut x = self.embedding_norm.forward(&x.reshape((n * len, h))?)?;
        // Padding gets a large negative score, so softmax gives it nothing.
        let m = mask.to_dtype(DType::F32)?;
        let padded = m.min_all()?.to_scalar::<f32>()? < 1.0;
        let bias = if padded {
            Some(((m - 1.0)? * 1e9)?.reshape((n, 1, 1, len))?)
        } else {
            None
        };
        for layer in &self.layers {
            x = self.layer(layer, &x, n, len, bias.as_ref())?;
        }
        x.reshape((n, len, h))
    }

    fn layer(
        &self,
        l: &Layer,
        x: &Tensor,
        n: usize,
        len: usize,
        bias: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (heads, d) = (self.heads, self.head_size);
        // (n·len, 3h) → (3, n, heads, len, d)
        let qkv = l
            .qkv
            .forward(x)?
            .reshape((n, len, 3, heads, d))?
            .permute((2, 0, 3, 1, 4))?
            .contiguous()?;
        let (q, k, v) = (qkv.get(0)?, qkv.get(1)?, qkv.get(2)?);
        let mut scores = q.matmul(&k.transpose(2, 3)?)?;
        if let Some(b) = bias {
            scores = scores.broadcast_add(b)?;
        }
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let context = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((n * len, self.hidden))?;
        let a = l
            .attention_norm
            .forward(&(l.attention_out.forward(&context)? + x)?)?;
        let u = self.activate(&l.up.forward(&a)?)?;
        l.out_norm.forward(&(l.down.forward(&u)? + a)?)
    }

    fn activate(&self, x: &Tensor) -> Result<Tensor> {
        match self.activation {
            Activation::Gelu => gelu(x),
            Activation::GeluTanh => x.gelu(),
            Activation::Relu => x.relu(),
        }
    }
}

/// GELU with the error function, `x · (1 + erf(x/√2)) / 2`, element-wise.
fn gelu(x: &Tensor) -> Result<Tensor> {
    let shape = x.shape().clone();
    let mut v = x.flatten_all()?.to_vec1::<f32>()?;
    for e in &mut v {
        *e = 0.5 * *e * (1.0 + erf(*e * std::f32::consts::FRAC_1_SQRT_2));
    }
    Tensor::from_vec(v, shape, &Device::Cpu)
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
    // Round to the nearest integer by adding and removing 1.5·2^23.
    let n = (x * std::f32::consts::LOG2_E + 12_582_912.0) - 12_582_912.0;
    let f = (x - n * LN2_HI) - n * LN2_LO;
    // e^f by its Taylor series to f^7/7! (error ~1e-9 for |f| ≤ 0.35).
    let p = 1.0
        + f * (1.0
            + f * (0.5
                + f * (1.0 / 6.0
                    + f * (1.0 / 24.0
                        + f * (1.0 / 120.0 + f * (1.0 / 720.0 + f * (1.0 / 5040.0)))))));
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
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
        for i in -8_000..=8_000 {
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
        for x in [4.5f32, 6.0, 10.0, 1e6] {
            assert!((erf(x) - 1.0).abs() < 1e-7 && (erf(-x) + 1.0).abs() < 1e-7);
        }
        assert!(erf(0.0).abs() < 5e-7);
    }

    /// Our encoder and candle-transformers' BERT give the same token vectors
    /// for a padded batch of the real model (skipped without it, unless
    /// `WAYFINDER_EMBEDDING_TESTS=1`).
    #[test]
    fn agrees_with_the_reference_bert_on_the_real_model() {
        use candle_transformers::models::bert::{BertModel, Config};
        use tokenizers::{PaddingParams, Tokenizer};
        let Some(dir) = crate::embeddings::test_model_dir() else {
            return;
        };
        let config_json = std::fs::read(dir.join("config.json")).unwrap();
        let weights = std::fs::read(dir.join("model.safetensors")).unwrap();
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &Device::Cpu).unwrap();
        let reference = BertModel::load(
            vb.clone(),
            &serde_json::from_slice::<Config>(&config_json).unwrap(),
        )
        .unwrap();
        let ours = BertEncoder::load(
            vb,
            &serde_json::from_slice::<BertConfig>(&config_json).unwrap(),
        )
        .unwrap();
        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
        tokenizer.with_padding(Some(PaddingParams::default()));
        let texts = [
            "How do I reset my password?",
            "We were charged twice for the annual plan this month and would like a refund of the second payment, please.",
            "SSO",
        ];
        let enc = tokenizer.encode_batch(texts.to_vec(), true).unwrap();
        let (n, len) = (enc.len(), enc[0].get_ids().len());
        let flat = |f: fn(&tokenizers::Encoding) -> &[u32]| -> Vec<u32> {
            enc.iter().flat_map(|e| f(e).to_vec()).collect()
        };
        let ids = Tensor::from_vec(flat(|e| e.get_ids()), (n, len), &Device::Cpu).unwrap();
        let mask =
            Tensor::from_vec(flat(|e| e.get_attention_mask()), (n, len), &Device::Cpu).unwrap();
        let want: Vec<Vec<Vec<f32>>> = reference
            .forward(&ids, &ids.zeros_like().unwrap(), Some(&mask))
            .unwrap()
            .to_vec3()
            .unwrap();
        let got: Vec<Vec<Vec<f32>>> = ours.forward(&ids, &mask).unwrap().to_vec3().unwrap();
        let mut worst = 0f32;
        for (b, e) in enc.iter().enumerate() {
            for (t, real) in e.get_attention_mask().iter().enumerate() {
                if *real == 1 {
                    for (x, y) in got[b][t].iter().zip(&want[b][t]) {
                        worst = worst.max((x - y).abs());
                    }
                }
            }
        }
        assert!(worst < 1e-3, "token vectors differ by up to {worst}");
        // One unpadded input (no mask is applied) gives what it gave in the batch.
        let single = tokenizer.encode(texts[0], true).unwrap();
        let k = single.get_ids().len();
        let ids1 = Tensor::from_vec(single.get_ids().to_vec(), (1, k), &Device::Cpu).unwrap();
        let alone: Vec<Vec<Vec<f32>>> = ours
            .forward(&ids1, &ids1.ones_like().unwrap())
            .unwrap()
            .to_vec3()
            .unwrap();
        for t in 0..k {
            for (x, y) in alone[0][t].iter().zip(&got[0][t]) {
                assert!(
                    (x - y).abs() < 1e-3,
                    "token {t}: {x} alone, {y} in the batch"
                );
            }
        }
    }
}
