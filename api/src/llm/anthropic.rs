//! Anthropic messages: `POST {base}/v1/messages` with `x-api-key`,
//! `anthropic-version: 2023-06-01` and `stream: true` answers server-sent
//! events: `message_start` (input tokens in `message.usage`), then per
//! content block `content_block_start`, `content_block_delta`s (`text_delta`
//! carries the text), `content_block_stop`; then `message_delta` (output
//! tokens in `usage`) and `message_stop`, which completes the answer. `ping`
//! may come anywhere; an `error` event ends the stream with an error.
//!
//! The API has no JSON mode: a JSON request gets an instruction appended to
//! the system prompt instead.

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

use super::{
    ChatRequest, LlmError, ProviderSettings, StreamEvent, Usage,
    framing::{Frame, Framing},
    http::{self, Decoder, HttpProvider, WireFormat, WireMessage},
};

/// The API version this wire format follows.
const API_VERSION: &str = "2023-06-01";

/// Appended to the system prompt of a JSON request.
const JSON_INSTRUCTION: &str =
    "Answer with a single JSON object and nothing else: no prose, no code fence.";

/// Anthropic over HTTP.
pub(crate) fn provider(settings: &ProviderSettings) -> Result<HttpProvider<Anthropic>, LlmError> {
    let endpoint = http::endpoint(&settings.base_url, "/v1/messages")?;
    let mut headers = HeaderMap::new();
    headers.insert(
        HeaderName::from_static("anthropic-version"),
        HeaderValue::from_static(API_VERSION),
    );
    if let Some(key) = settings.api_key.as_deref().filter(|k| !k.is_empty()) {
        headers.insert(
            HeaderName::from_static("x-api-key"),
            http::secret_header(key)?,
        );
    }
    HttpProvider::new(settings, Anthropic, endpoint, headers)
}

pub(crate) struct Anthropic;

#[derive(Serialize)]
struct Body<'a> {
    model: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    system: &'a str,
    messages: Vec<WireMessage<'a>>,
    max_tokens: u32,
    temperature: f32,
    stream: bool,
}

impl WireFormat for Anthropic {
    const NAME: &'static str = "anthropic";
    const FRAMING: Framing = Framing::Sse;
    type Decoder = AnthropicDecoder;

    fn body(&self, req: &ChatRequest) -> Result<Vec<u8>, LlmError> {
        let system = match (req.json, req.system.is_empty()) {
            (false, _) => req.system.clone(),
            (true, true) => JSON_INSTRUCTION.to_owned(),
            (true, false) => format!("{}\n\n{JSON_INSTRUCTION}", req.system),
        };
        http::encode(&Body {
            model: &req.model,
            system: &system,
            messages: WireMessage::conversation(req).collect(),
            max_tokens: req.max_tokens,
            // The API accepts 0 to 1.
            temperature: if req.temperature.is_finite() {
                req.temperature.clamp(0.0, 1.0)
            } else {
                0.0
            },
            stream: true,
        })
    }

    fn decoder(&self) -> AnthropicDecoder {
        AnthropicDecoder::default()
    }
}

/// One event's `data:`; its `type` repeats the SSE event name.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Event {
    MessageStart {
        message: StartedMessage,
    },
    ContentBlockDelta {
        delta: BlockDelta,
    },
    MessageDelta {
        #[serde(default)]
        usage: Option<WireUsage>,
    },
    MessageStop,
    Error {
        error: ErrorBody,
    },
    /// `ping`, `content_block_start`, `content_block_stop` and events added later.
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct StartedMessage {
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockDelta {
    TextDelta {
        text: String,
    },
    /// Tool input, thinking, signatures: not answer text.
    #[serde(other)]
    Other,
}

/// Counts so far; `message_delta`'s are cumulative.
#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    input_tokens: Option<u32>,
    #[serde(default)]
    output_tokens: Option<u32>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(rename = "type", default)]
    kind: String,
}

#[derive(Default)]
pub(crate) struct AnthropicDecoder {
    usage: Usage,
}

impl AnthropicDecoder {
    fn count(&mut self, usage: Option<WireUsage>) {
        let Some(usage) = usage else { return };
        if let Some(input) = usage.input_tokens {
            self.usage.prompt_tokens = self.usage.prompt_tokens.max(input);
        }
        if let Some(output) = usage.output_tokens {
            self.usage.completion_tokens = self.usage.completion_tokens.max(output);
        }
    }
}

impl Decoder for AnthropicDecoder {
    fn frame(&mut self, frame: Frame, out: &mut Vec<StreamEvent>) -> Result<(), LlmError> {
        match http::parse::<Event>(Anthropic::NAME, &frame.data)? {
            Event::MessageStart { message } => self.count(message.usage),
            Event::ContentBlockDelta {
                delta: BlockDelta::TextDelta { text },
            } => out.push(StreamEvent::Delta(text)),
            Event::ContentBlockDelta { .. } | Event::Other => {}
            Event::MessageDelta { usage } => self.count(usage),
            Event::MessageStop => out.push(StreamEvent::Done(self.usage)),
            Event::Error { error } => {
                // Only a short machine name (`overloaded_error`…) goes into the error text.
                let kind = if !error.kind.is_empty()
                    && error.kind.len() <= 40
                    && error
                        .kind
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c == '_')
                {
                    error.kind
                } else {
                    "unknown".to_owned()
                };
                tracing::warn!(provider = Anthropic::NAME, kind = %kind, "the stream reported an error");
                return Err(LlmError::Unavailable(format!("anthropic reported {kind}")));
            }
        }
        Ok(())
    }
}
