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
//! - every element-wise step after a product (bias, activation, residual,
//!   layer norm, mask, softmax, the split into heads and their merge) is one
//!   parallel pass of [`super::kernels`], in place where it can be, with
//!   an `exp` and `erf` that vectorise instead of `libm`'s scalar ones.

use candle_core::{DType, Result, Tensor};
use candle_nn::VarBuilder;
use serde::Deserialize;

use super::kernels::{
    Activation, BiasActivation, BiasResidualNorm, MaskedSoftmax, MergeHeads, SplitHeads,
};

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

    /// `x · w`, without the bias: the op after the product adds it.
    fn product(&self, x: &Tensor) -> Result<Tensor> {
        x.matmul(&self.w)
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

    /// `(3, h)`: the bias of the product before this norm, gamma, beta, as
    /// [`BiasResidualNorm`] takes them.
    fn packed_with(&self, bias: &Tensor) -> Result<Tensor> {
        Tensor::stack(&[bias, &self.gamma, &self.beta], 0)?.contiguous()
    }
}

/// A product whose bias is added, with the residual, by the layer norm
/// after it.
struct Normed {
    w: Tensor,
    /// See [`Norm::packed_with`].
    params: Tensor,
    eps: f32,
}

impl Normed {
    fn new(dense: Dense, norm: &Norm) -> Result<Self> {
        Ok(Self {
            params: norm.packed_with(&dense.b)?,
            w: dense.w,
            eps: norm.eps,
        })
    }

    /// `norm(x · w + bias + residual)`.
    fn forward(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        let y = x.matmul(&self.w)?;
        y.inplace_op3(residual, &self.params, &BiasResidualNorm { eps: self.eps })?;
        Ok(y)
    }
}

struct Layer {
    qkv: Dense,
    attention_out: Normed,
    up: Dense,
    down: Normed,
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
            let eps = config.layer_norm_eps;
            layers.push(Layer {
                qkv,
                attention_out: Normed::new(
                    Dense::load(&att.pp("output").pp("dense"), h, h)?,
                    &Norm::load(&att.pp("output").pp("LayerNorm"), h, eps)?,
                )?,
                up: Dense::load(
                    &l.pp("intermediate").pp("dense"),
                    h,
                    config.intermediate_size,
                )?,
                down: Normed::new(
                    Dense::load(&l.pp("output").pp("dense"), config.intermediate_size, h)?,
                    &Norm::load(&l.pp("output").pp("LayerNorm"), h, eps)?,
                )?,
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

    /// Length of every token vector.
    pub fn hidden_size(&self) -> usize {
        self.hidden
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
        // 1 for a real token, 0 for padding, which softmax gives nothing.
        let mask = mask.to_dtype(DType::F32)?.contiguous()?;
        for layer in &self.layers {
            x = self.layer(layer, &x, n, len, &mask)?;
        }
        x.reshape((n, len, h))
    }

    fn layer(&self, l: &Layer, x: &Tensor, n: usize, len: usize, mask: &Tensor) -> Result<Tensor> {
        let heads = self.heads;
        // (n·len, 3h) → (3, n, heads, len, d)
        let qkv = l.qkv.product(x)?.apply_op2_no_bwd(
            &l.qkv.b,
            &SplitHeads {
                n,
                len,
                heads,
                head_size: self.head_size,
            },
        )?;
        let (q, k, v) = (qkv.get(0)?, qkv.get(1)?, qkv.get(2)?);
        let scores = q.matmul(&k.transpose(2, 3)?)?;
        scores.inplace_op2(mask, &MaskedSoftmax { heads })?;
        let context = scores.matmul(&v)?.apply_op1_no_bwd(&MergeHeads)?;
        let a = l.attention_out.forward(&context, x)?;
        let u = l.up.product(&a)?;
        u.inplace_op2(&l.up.b, &BiasActivation(self.activation))?;
        l.down.forward(&u, &a)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use candle_core::Device;

    use super::*;

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
        // One unpadded input (its mask all ones) gives what it gave in the batch.
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
