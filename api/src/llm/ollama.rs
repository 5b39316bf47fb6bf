//! Ollama's chat API, self-hosted or Ollama Cloud (`https://ollama.com`, the
//! key as `Authorization: Bearer`): `POST {base}/api/chat` with
//! `stream: true` answers one JSON object per line, each carrying the next
//! piece of `message.content`; the last one has `done: true` and the token
//! counts (`prompt_eval_count`, `eval_count`). A line with `error` ends the
//! stream with an error.

use reqwest::header::{self, HeaderMap};
use serde::{Deserialize, Serialize};

use super::{
    ChatRequest, LlmError, ProviderSettings, StreamEvent, Usage,
    framing::{Frame, Framing},
    http::{self, Decoder, HttpProvider, WireFormat, WireMessage},
};

/// Ollama over HTTP.
pub(crate) fn provider(settings: &ProviderSettings) -> Result<HttpProvider<Ollama>, LlmError> {
    let endpoint = http::endpoint(&settings.base_url, "/api/chat")?;
    let mut headers = HeaderMap::new();
    if let Some(key) = settings.api_key.as_deref().filter(|k| !k.is_empty()) {
        headers.insert(
            header::AUTHORIZATION,
            http::secret_header(&format!("Bearer {key}"))?,
        );
    }
    HttpProvider::new(settings, Ollama, endpoint, headers)
}

pub(crate) struct Ollama;

#[derive(Serialize)]
struct Body<'a> {
    model: &'a str,
    messages: Vec<WireMessage<'a>>,
    stream: bool,
    options: Options,
    /// `"json"` constrains the output to a JSON value.
    #[serde(skip_serializing_if = "Option::is_none")]
    format: Option<&'static str>,
}

#[derive(Serialize)]
struct Options {
    temperature: f32,
    num_predict: u32,
}

impl WireFormat for Ollama {
    const NAME: &'static str = "ollama";
    const FRAMING: Framing = Framing::Ndjson;
    type Decoder = OllamaDecoder;

    fn body(&self, req: &ChatRequest) -> Result<Vec<u8>, LlmError> {
        let system = (!req.system.is_empty()).then(|| WireMessage {
            role: "system",
            content: &req.system,
        });
        http::encode(&Body {
            model: &req.model,
            messages: system
                .into_iter()
                .chain(WireMessage::conversation(req))
                .collect(),
            stream: true,
            options: Options {
                temperature: req.temperature,
                num_predict: req.max_tokens,
            },
            format: req.json.then_some("json"),
        })
    }

    fn decoder(&self) -> OllamaDecoder {
        OllamaDecoder
    }
}

/// One line of the stream.
#[derive(Deserialize)]
struct Line {
    #[serde(default)]
    message: Option<LineMessage>,
    #[serde(default)]
    done: bool,
    /// Absent when the whole prompt came from Ollama's cache.
    #[serde(default)]
    prompt_eval_count: Option<u32>,
    #[serde(default)]
    eval_count: Option<u32>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct LineMessage {
    /// The answer text; a thinking model's reasoning (`thinking`) is not part of it.
    #[serde(default)]
    content: Option<String>,
}

pub(crate) struct OllamaDecoder;

impl Decoder for OllamaDecoder {
    fn frame(&mut self, frame: Frame, out: &mut Vec<StreamEvent>) -> Result<(), LlmError> {
        let line: Line = http::parse(Ollama::NAME, &frame.data)?;
        if let Some(error) = line.error {
            tracing::warn!(provider = Ollama::NAME, error = %http::for_log(&error), "the stream reported an error");
            return Err(LlmError::Unavailable("ollama reported an error".into()));
        }
        if let Some(text) = line.message.and_then(|m| m.content) {
            out.push(StreamEvent::Delta(text));
        }
        if line.done {
            out.push(StreamEvent::Done(Usage {
                prompt_tokens: line.prompt_eval_count.unwrap_or(0),
                completion_tokens: line.eval_count.unwrap_or(0),
            }));
        }
        Ok(())
    }
}
