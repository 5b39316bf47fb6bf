//! Embeddings from a server: Ollama's `POST /api/embed`
//! (`{"model", "input": [..]}` → `{"embeddings": [[..]]}`) or an
//! OpenAI-compatible `POST /v1/embeddings` (`{"model", "input": [..]}` →
//! `{"data": [{"index", "embedding"}]}`).
//!
//! Requests go through the outbound guard ([`crate::outbound`]): no
//! redirects, no proxy, forbidden addresses refused at connect unless the
//! operator allowlists them (`WAYFINDER_OUTBOUND_ALLOW=127.0.0.1:11434` for
//! a local Ollama). Answers are bounded in size; the dimension is learnt
//! from one call at start, and every later answer must match it.

use std::time::Duration;

use reqwest::{Client, Url, header};
use serde::Deserialize;
use serde_json::json;

use super::{EmbedError, EmbedFuture, Embedder, MAX_BATCH, normalize};
use crate::{config::Config, outbound};

/// Longest wait for one embedding call.
const TIMEOUT: Duration = Duration::from_secs(20);

/// Largest answer read, in bytes (32 vectors of 4,096 numbers as JSON is about 3 MB).
const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

/// Largest dimension accepted.
const MAX_DIMENSION: usize = 8_192;

/// Which wire format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Ollama,
    OpenAi,
}

/// See the module docs.
pub struct RemoteEmbedder {
    kind: Kind,
    client: Client,
    policy: outbound::Policy,
    url: Url,
    api_key: Option<String>,
    /// The model's name on the server.
    remote_model: String,
    name: String,
    dimension: usize,
}

#[derive(Deserialize)]
struct OllamaAnswer {
    embeddings: Vec<Vec<f32>>,
}

#[derive(Deserialize)]
struct OpenAiItem {
    index: usize,
    embedding: Vec<f32>,
}

#[derive(Deserialize)]
struct OpenAiAnswer {
    data: Vec<OpenAiItem>,
}

impl RemoteEmbedder {
    /// The provider `EMBEDDING_BASE_URL`, `EMBEDDING_MODEL` and
    /// `EMBEDDING_API_KEY` describe, after one call that learns its dimension.
    pub async fn from_config(kind: Kind, config: &Config) -> Result<Self, String> {
        let default_base = match kind {
            Kind::Ollama => "http://localhost:11434",
            Kind::OpenAi => "https://api.openai.com/v1",
        };
        let base = config
            .embedding_base_url
            .as_deref()
            .unwrap_or(default_base)
            .trim_end_matches('/');
        let path = match kind {
            Kind::Ollama => "/api/embed",
            Kind::OpenAi => "/embeddings",
        };
        let url = Url::parse(&format!("{base}{path}"))
            .map_err(|_| format!("EMBEDDING_BASE_URL={base} is not an absolute URL"))?;
        let policy = outbound::Policy::from_config(config);
        let route = policy
            .check(&url)
            .map_err(|r| format!("EMBEDDING_BASE_URL: {r}"))?;
        let client = outbound::builder(route)
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| format!("the embedding client could not be built: {e}"))?;
        let Some(model) = config
            .embedding_model
            .clone()
            .filter(|m| !m.trim().is_empty())
        else {
            return Err("EMBEDDING_MODEL must name the server's embedding model".into());
        };
        let prefix = match kind {
            Kind::Ollama => "ollama",
            Kind::OpenAi => "openai",
        };
        let mut me = Self {
            kind,
            client,
            policy,
            url,
            api_key: config.embedding_api_key.clone(),
            name: format!("{prefix}:{model}"),
            remote_model: model,
            dimension: 0,
        };
        let probe = me.call(&["ready".to_string()]).await.map_err(|e| {
            format!("the embedding server at {base} did not answer a first call: {e}")
        })?;
        let dimension = probe.first().map_or(0, Vec::len);
        if dimension == 0 || dimension > MAX_DIMENSION {
            return Err(format!(
                "the embedding server at {base} answered vectors of dimension {dimension}"
            ));
        }
        me.dimension = dimension;
        Ok(me)
    }

    async fn call(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let remote = |m: &str| EmbedError::Remote(m.to_string());
        self.policy
            .check(&self.url)
            .map_err(|r| EmbedError::Remote(r.to_string()))?;
        let mut req = self
            .client
            .post(self.url.clone())
            .json(&json!({ "model": self.remote_model, "input": texts }));
        if let Some(key) = &self.api_key {
            let mut value = header::HeaderValue::from_str(&format!("Bearer {key}"))
                .map_err(|_| remote("EMBEDDING_API_KEY is not a valid header value"))?;
            value.set_sensitive(true);
            req = req.header(header::AUTHORIZATION, value);
        }
        let response = req.send().await.map_err(|e| {
            if let Some(r) = outbound::refusal(&e) {
                return EmbedError::Remote(r.to_string());
            }
            if e.is_timeout() {
                remote("timed out")
            } else {
                remote("the request failed")
            }
        })?;
        let status = response.status();
        if !status.is_success() {
            return Err(EmbedError::Remote(format!("HTTP {}", status.as_u16())));
        }
        let body = outbound::read_limited(response, MAX_RESPONSE_BYTES)
            .await
            .map_err(|e| EmbedError::Remote(e.to_string()))?;
        let mut vectors = match self.kind {
            Kind::Ollama => {
                serde_json::from_slice::<OllamaAnswer>(&body)
                    .map_err(|_| remote("the answer is not an Ollama embed response"))?
                    .embeddings
            }
            Kind::OpenAi => {
                let mut data = serde_json::from_slice::<OpenAiAnswer>(&body)
                    .map_err(|_| remote("the answer is not an OpenAI embeddings response"))?
                    .data;
                data.sort_by_key(|d| d.index);
                data.into_iter().map(|d| d.embedding).collect()
            }
        };
        let dim = vectors.first().map_or(0, Vec::len);
        let consistent = vectors.iter().all(|v| v.len() == dim)
            && (self.dimension == 0 || dim == self.dimension)
            && vectors.iter().flatten().all(|x| x.is_finite());
        if vectors.len() != texts.len() || !consistent {
            return Err(EmbedError::Shape {
                asked: texts.len(),
                got: vectors.len(),
                dim,
            });
        }
        for v in &mut vectors {
            normalize(v);
        }
        Ok(vectors)
    }
}

impl Embedder for RemoteEmbedder {
    fn model(&self) -> &str {
        &self.name
    }

    fn dimension(&self) -> usize {
        self.dimension
    }

    fn embed<'a>(&'a self, texts: &'a [String]) -> EmbedFuture<'a> {
        Box::pin(async move { self.call(&texts[..texts.len().min(MAX_BATCH)]).await })
    }
}
