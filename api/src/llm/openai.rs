//! OpenAI chat completions, and every server that copies them (vLLM,
//! llama.cpp, LM Studio, OpenRouter, Azure-style gateways…):
//! `POST {base}/chat/completions` with `stream: true` and
//! `stream_options.include_usage` answers server-sent events whose `data:` is
//! a chunk with `choices[0].delta.content`; the last chunk before
//! `data: [DONE]` has empty `choices` and the `usage`.
//!
//! A compatible server that ignores `include_usage` still ends well: after
//! `[DONE]`, or at the end of the body after a `finish_reason`, the answer is
//! complete with zero usage.

use reqwest::header::{self, HeaderMap};
use serde::{Deserialize, Serialize};

use super::{
    ChatRequest, LlmError, ProviderSettings, StreamEvent, Usage,
    framing::{Frame, Framing},
    http::{self, Decoder, HttpProvider, WireFormat, WireMessage},
};

/// The hosted OpenAI API, which has its own rules on token limits and sampling.
const OPENAI_HOST: &str = "api.openai.com";

/// OpenAI (or a compatible server) over HTTP.
pub(crate) fn provider(settings: &ProviderSettings) -> Result<HttpProvider<OpenAi>, LlmError> {
    let endpoint = http::endpoint(&settings.base_url, "/chat/completions")?;
    let mut headers = HeaderMap::new();
    if let Some(key) = settings.api_key.as_deref().filter(|k| !k.is_empty()) {
        headers.insert(
            header::AUTHORIZATION,
            http::secret_header(&format!("Bearer {key}"))?,
        );
    }
    let wire = OpenAi {
        hosted: endpoint.host_str() == Some(OPENAI_HOST),
    };
    HttpProvider::new(settings, wire, endpoint, headers)
}

pub(crate) struct OpenAi {
    /// The hosted API: `max_completion_tokens` (`max_tokens` is refused by
    /// its reasoning models) and no `temperature` for those models.
    /// Compatible servers get the long-standing `max_tokens`.
    hosted: bool,
}

#[derive(Serialize)]
struct Body<'a> {
    model: &'a str,
    messages: Vec<WireMessage<'a>>,
    stream: bool,
    stream_options: StreamOptions,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<ResponseFormat>,
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

#[derive(Serialize)]
struct ResponseFormat {
    #[serde(rename = "type")]
    kind: &'static str,
}

/// JSON mode is refused unless the word "JSON" appears in the messages.
const JSON_HINT: &str = "Answer with a single JSON object.";

/// Reasoning models of the hosted API accept only the default temperature.
fn is_reasoning_model(model: &str) -> bool {
    ["o1", "o3", "o4", "gpt-5"]
        .iter()
        .any(|prefix| model.starts_with(prefix))
}

impl WireFormat for OpenAi {
    const NAME: &'static str = "openai";
    const FRAMING: Framing = Framing::Sse;
    type Decoder = OpenAiDecoder;

    fn body(&self, req: &ChatRequest) -> Result<Vec<u8>, LlmError> {
        let mentions_json = req.system.to_ascii_lowercase().contains("json")
            || req
                .messages
                .iter()
                .any(|m| m.content.to_ascii_lowercase().contains("json"));
        let system = if req.json && !mentions_json {
            if req.system.is_empty() {
                JSON_HINT.to_owned()
            } else {
                format!("{}\n\n{JSON_HINT}", req.system)
            }
        } else {
            req.system.clone()
        };
        let system = (!system.is_empty()).then(|| WireMessage {
            role: "system",
            content: &system,
        });
        let reasoning = self.hosted && is_reasoning_model(&req.model);
        http::encode(&Body {
            model: &req.model,
            messages: system
                .into_iter()
                .chain(WireMessage::conversation(req))
                .collect(),
            stream: true,
            stream_options: StreamOptions {
                include_usage: true,
            },
            max_tokens: (!self.hosted).then_some(req.max_tokens),
            max_completion_tokens: self.hosted.then_some(req.max_tokens),
            temperature: (!reasoning).then_some(req.temperature),
            response_format: req.json.then_some(ResponseFormat {
                kind: "json_object",
            }),
        })
    }

    fn decoder(&self) -> OpenAiDecoder {
        OpenAiDecoder::default()
    }
}

/// One `data:` chunk.
#[derive(Deserialize)]
struct Chunk {
    /// Empty (or, on some compatible servers, null or absent) in the usage chunk.
    #[serde(default)]
    choices: Option<Vec<Choice>>,
    /// Null on every chunk but the last one.
    #[serde(default)]
    usage: Option<WireUsage>,
    /// Some compatible servers report failures inside the stream.
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    index: u32,
    #[serde(default)]
    delta: Option<ChoiceDelta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct ChoiceDelta {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u32,
    #[serde(default)]
    completion_tokens: u32,
}

#[derive(Default)]
pub(crate) struct OpenAiDecoder {
    usage: Option<Usage>,
    /// A `finish_reason` came: the answer text is complete.
    finished: bool,
}

impl Decoder for OpenAiDecoder {
    fn frame(&mut self, frame: Frame, out: &mut Vec<StreamEvent>) -> Result<(), LlmError> {
        if frame.data.trim() == "[DONE]" {
            out.push(StreamEvent::Done(self.usage.unwrap_or_default()));
            return Ok(());
        }
        let chunk: Chunk = http::parse(OpenAi::NAME, &frame.data)?;
        if let Some(error) = chunk.error.filter(|e| !e.is_null()) {
            let kind = error
                .get("type")
                .or_else(|| error.get("code"))
                .map(|k| k.to_string())
                .unwrap_or_default();
            tracing::warn!(provider = OpenAi::NAME, kind = %http::for_log(&kind), "the stream reported an error");
            return Err(LlmError::Unavailable("openai reported an error".into()));
        }
        for choice in chunk.choices.unwrap_or_default() {
            if choice.index != 0 {
                continue; // we ask for one choice; ignore any other
            }
            if let Some(text) = choice.delta.and_then(|d| d.content) {
                out.push(StreamEvent::Delta(text));
            }
            if choice.finish_reason.is_some() {
                self.finished = true;
            }
        }
        if let Some(usage) = chunk.usage {
            self.usage = Some(Usage {
                prompt_tokens: usage.prompt_tokens,
                completion_tokens: usage.completion_tokens,
            });
        }
        Ok(())
    }

    fn end(&mut self) -> Result<Usage, LlmError> {
        if self.finished {
            Ok(self.usage.unwrap_or_default())
        } else {
            Err(LlmError::Truncated)
        }
    }
}
