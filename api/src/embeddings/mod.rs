//! Sentence embeddings: what turns a question and a passage into vectors
//! whose cosine says how close their meanings are, so "my card got
//! declined" finds "Failed payments" with no word in common.
//!
//! One trait, [`Embedder`], and three providers:
//! - [`local`] (the default when `EMBEDDING_MODEL_DIR` is set): a BERT-family
//!   sentence-transformers model run in this process with candle, on CPU,
//!   on rayon's pool;
//! - [`remote`]: Ollama (`/api/embed`) or an OpenAI-compatible
//!   `/v1/embeddings`, through the outbound guard;
//! - none: retrieval ranks by keywords alone.
//!
//! [`passages`] cuts articles into the pieces that are embedded, and
//! [`indexer`] computes and stores their vectors in the background.

pub mod bert;
pub mod indexer;
pub mod kernels;
pub mod local;
pub mod passages;
pub mod remote;

use std::{future::Future, pin::Pin, sync::Arc};

use crate::config::Config;

/// Most texts one call embeds; callers split larger sets.
pub const MAX_BATCH: usize = 32;

/// Why an embedding call failed. Texts are for logs and the operator; they
/// never quote an API key or a response body.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("the embedding model failed: {0}")]
    Model(String),
    #[error("the embedding server failed: {0}")]
    Remote(String),
    #[error("the embedding server answered {got} vectors of dimension {dim} for {asked} texts")]
    Shape {
        asked: usize,
        got: usize,
        dim: usize,
    },
}

/// A boxed future, so the trait stays object safe.
pub type EmbedFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<Vec<f32>>, EmbedError>> + Send + 'a>>;

/// Turns texts into unit-length vectors of [`Embedder::dimension`] numbers.
pub trait Embedder: Send + Sync + 'static {
    /// The model's name as stored beside every vector: vectors of another
    /// model are never compared with this one's, and are recomputed.
    fn model(&self) -> &str;
    /// Length of every vector.
    fn dimension(&self) -> usize;
    /// One vector per text, in order, each of unit length; at most [`MAX_BATCH`] texts.
    fn embed<'a>(&'a self, texts: &'a [String]) -> EmbedFuture<'a>;
}

/// Scales `v` to unit length (a zero vector stays zero).
pub fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 && n.is_finite() {
        for x in v.iter_mut() {
            *x /= n;
        }
    }
}

/// The embedder `config` asks for: `EMBEDDING_PROVIDER` (`local`, `ollama`,
/// `openai`, `none`; default `local` when `EMBEDDING_MODEL_DIR` is set, else
/// `none`). `Err` says what is wrong in words an operator can act on; the
/// caller logs it and carries on with keyword retrieval.
pub async fn from_config(config: &Config) -> Result<Option<Arc<dyn Embedder>>, String> {
    let provider = match config.embedding_provider.as_deref().map(str::trim) {
        Some(p) if !p.is_empty() => p.to_ascii_lowercase(),
        _ if config.embedding_model_dir.is_some() => "local".to_string(),
        _ => return Ok(None),
    };
    match provider.as_str() {
        "none" | "off" => Ok(None),
        "local" => {
            let Some(dir) = config.embedding_model_dir.clone() else {
                return Err("EMBEDDING_PROVIDER=local needs EMBEDDING_MODEL_DIR, a folder with config.json, tokenizer.json and model.safetensors".into());
            };
            let model = tokio::task::spawn_blocking(move || local::LocalEmbedder::load(&dir))
                .await
                .map_err(|e| format!("loading the embedding model stopped: {e}"))??;
            Ok(Some(Arc::new(model)))
        }
        "ollama" | "openai" => {
            let kind = if provider == "ollama" {
                remote::Kind::Ollama
            } else {
                remote::Kind::OpenAi
            };
            Ok(Some(Arc::new(
                remote::RemoteEmbedder::from_config(kind, config).await?,
            )))
        }
        other => Err(format!(
            "EMBEDDING_PROVIDER={other} is not one of local, ollama, openai, none"
        )),
    }
}

/// `count` deterministic values in [0, 1) from `seed` (xorshift64), for
/// tests that need noise they can repeat.
#[cfg(test)]
pub fn test_uniform(seed: u64, count: usize) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..count)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect()
}

/// The real model's folder for tests (`EMBEDDING_MODEL_DIR`), or `None` to
/// skip them; with `WAYFINDER_EMBEDDING_TESTS=1` a missing model fails.
#[cfg(test)]
pub fn test_model_dir() -> Option<std::path::PathBuf> {
    let dir = std::env::var_os("EMBEDDING_MODEL_DIR").map(std::path::PathBuf::from);
    let dir = dir.filter(|d| d.join("model.safetensors").exists());
    if dir.is_none() {
        assert!(
            std::env::var("WAYFINDER_EMBEDDING_TESTS").as_deref() != Ok("1"),
            "WAYFINDER_EMBEDDING_TESTS=1 but EMBEDDING_MODEL_DIR holds no model"
        );
        eprintln!("EMBEDDING_MODEL_DIR not set: skipped");
    }
    dir
}
