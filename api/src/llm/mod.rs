//! LLM providers behind one trait: Ollama (`/api/chat`, NDJSON), OpenAI chat
//! completions and compatible servers (SSE), Anthropic messages (SSE). Every
//! provider streams; [`complete`] collects a stream for non-streaming callers.
//!
//! A stream yields `Delta`s, then exactly one `Done` with the usage the
//! provider reported. A stream that ends without `Done`, an HTTP error, a
//! timeout or an unparseable frame yields one `Err` and ends.
//!
//! [`settings_from_config`] reads the `LLM_*` settings and [`build_provider`]
//! makes the provider; the HTTP side every provider shares (deadlines,
//! retries, size bounds) lives in `http`, stream framing in `framing`.
//!
//! Deadlines: connect, first token, idle between pieces of text, and total.
//! The total is kept under the HTTP request timeout ([`total_timeout`]), so a
//! turn that waits for a provider always answers its request with the
//! fallback before the server's 408 could cut it off.
//!
//! The server's own provider is the operator's and trusted; an org's own
//! (bring-your-own-key) base URL is a customer's and goes through the
//! outbound guard ([`ProviderSettings::guard`], [`crate::outbound`]).

mod anthropic;
mod framing;
mod http;
mod ollama;
mod openai;

use std::{sync::Arc, time::Duration};

use futures_util::{StreamExt, stream::BoxStream};

/// Who said a message of the conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
}

/// One message of the conversation sent to the model (the system prompt is separate).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LlmMessage {
    pub role: Role,
    pub content: String,
}

/// One call to a model.
#[derive(Clone, Debug)]
pub struct ChatRequest {
    /// Model name as the provider knows it.
    pub model: String,
    /// The system prompt.
    pub system: String,
    /// The conversation, oldest first, ending with the user's message.
    pub messages: Vec<LlmMessage>,
    /// Upper bound of generated tokens.
    pub max_tokens: u32,
    /// Sampling temperature.
    pub temperature: f32,
    /// Ask for a JSON object answer (provider's JSON mode where it has one).
    pub json: bool,
}

/// Tokens a call used, as the provider reported them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

impl Usage {
    /// Prompt plus completion tokens.
    pub fn total(&self) -> u32 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }
}

/// One item of a streamed answer.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamEvent {
    /// The next piece of the answer text.
    Delta(String),
    /// The answer is complete.
    Done(Usage),
}

/// Why a call failed. None of these reach a widget: the turn falls back.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("timed out: {0}")]
    Timeout(&'static str),
    #[error("provider unreachable: {0}")]
    Unavailable(String),
    #[error("provider answered HTTP {0}")]
    Status(u16),
    #[error("unexpected response: {0}")]
    BadResponse(String),
    #[error("the stream ended before the answer was complete")]
    Truncated,
    /// The outbound guard refused the provider's address (an org's own base URL).
    #[error("{0}")]
    Refused(String),
}

/// A collected answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Completion {
    pub text: String,
    pub usage: Usage,
}

/// An LLM provider.
pub trait LlmProvider: Send + Sync + 'static {
    /// `ollama`, `openai` or `anthropic`.
    fn name(&self) -> &'static str;
    /// Streams the answer to `req`.
    fn stream(&self, req: ChatRequest) -> BoxStream<'static, Result<StreamEvent, LlmError>>;
}

/// Runs `req` to the end and returns the whole answer.
pub async fn complete(
    provider: &dyn LlmProvider,
    req: ChatRequest,
) -> Result<Completion, LlmError> {
    let mut stream = provider.stream(req);
    let mut text = String::new();
    while let Some(item) = stream.next().await {
        match item? {
            StreamEvent::Delta(d) => text.push_str(&d),
            StreamEvent::Done(usage) => return Ok(Completion { text, usage }),
        }
    }
    Err(LlmError::Truncated)
}

/// Base URL of a self-hosted Ollama, used when `LLM_PROVIDER=ollama` comes
/// without an API key nor a base URL (Ollama Cloud always needs a key).
pub const LOCAL_OLLAMA_BASE_URL: &str = "http://localhost:11434";

/// Which wire format a provider speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProviderKind {
    /// Ollama's `/api/chat` (Ollama Cloud or self-hosted), NDJSON stream.
    Ollama,
    /// OpenAI chat completions, or any OpenAI-compatible server, SSE stream.
    OpenAi,
    /// Anthropic messages, SSE stream.
    Anthropic,
}

impl ProviderKind {
    /// `ollama`, `openai` or `anthropic`, in any case.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        [Self::Ollama, Self::OpenAi, Self::Anthropic]
            .into_iter()
            .find(|kind| kind.as_str().eq_ignore_ascii_case(s))
    }

    /// The name `parse` accepts and providers report.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ollama => "ollama",
            Self::OpenAi => "openai",
            Self::Anthropic => "anthropic",
        }
    }

    /// The provider's hosted API: Ollama Cloud, OpenAI, Anthropic.
    pub fn default_base_url(self) -> &'static str {
        match self {
            Self::Ollama => "https://ollama.com",
            Self::OpenAi => "https://api.openai.com/v1",
            Self::Anthropic => "https://api.anthropic.com",
        }
    }
}

/// Where a provider is and how patient to be with it.
#[derive(Clone)]
pub struct ProviderSettings {
    pub kind: ProviderKind,
    /// Without the endpoint path: `https://api.openai.com/v1`, `http://localhost:11434`.
    pub base_url: String,
    /// Sent as `Authorization: Bearer` (Ollama, OpenAI) or `x-api-key` (Anthropic); never logged.
    pub api_key: Option<String>,
    /// To open the TCP (and TLS) connection.
    pub connect_timeout: Duration,
    /// From the start of a call to its first answer text, retries included.
    pub first_token_timeout: Duration,
    /// From the start of a call to its last byte, retries included.
    pub total_timeout: Duration,
    /// Longest silence between two pieces of answer text, once the first arrived.
    pub idle_timeout: Duration,
    /// Extra attempts on HTTP 429/5xx and connection failures, only before the first token.
    pub max_retries: u32,
    /// `None` for the operator's own provider (trusted); for an org's own base
    /// URL, the outbound policy its address is checked against at every connect.
    pub guard: Option<crate::outbound::Policy>,
}

impl std::fmt::Debug for ProviderSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderSettings")
            .field("kind", &self.kind)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .field("connect_timeout", &self.connect_timeout)
            .field("first_token_timeout", &self.first_token_timeout)
            .field("total_timeout", &self.total_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_retries", &self.max_retries)
            .field("guarded", &self.guard.is_some())
            .finish()
    }
}

/// A provider for `settings`, with one connection pool of its own: build it
/// once and share it. Fails only on a base URL that is not `http(s)://…`.
pub fn build_provider(settings: ProviderSettings) -> Result<Arc<dyn LlmProvider>, LlmError> {
    Ok(match settings.kind {
        ProviderKind::Ollama => Arc::new(ollama::provider(&settings)?),
        ProviderKind::OpenAi => Arc::new(openai::provider(&settings)?),
        ProviderKind::Anthropic => Arc::new(anthropic::provider(&settings)?),
    })
}

/// From config: None when no provider is configured (LLM_PROVIDER unset/none
/// and no LLM_API_KEY); LLM_PROVIDER unset with LLM_API_KEY set means Ollama
/// Cloud. `ollama` with neither key nor base URL means a self-hosted Ollama
/// at [`LOCAL_OLLAMA_BASE_URL`]. An unknown provider name is logged and
/// treated as none.
pub fn settings_from_config(config: &crate::config::Config) -> Option<ProviderSettings> {
    fn set(value: &Option<String>) -> Option<&str> {
        value.as_deref().map(str::trim).filter(|v| !v.is_empty())
    }
    let api_key = set(&config.llm_api_key).map(str::to_owned);
    let kind = match set(&config.llm_provider) {
        None if api_key.is_some() => ProviderKind::Ollama,
        None => return None,
        Some(name) if name.eq_ignore_ascii_case("none") => return None,
        Some(name) => match ProviderKind::parse(name) {
            Some(kind) => kind,
            None => {
                tracing::warn!(
                    provider = name,
                    "unknown LLM_PROVIDER (expected ollama, openai, anthropic or none); answering without an LLM"
                );
                return None;
            }
        },
    };
    let base_url = match set(&config.llm_base_url) {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None if kind == ProviderKind::Ollama && api_key.is_none() => {
            LOCAL_OLLAMA_BASE_URL.to_owned()
        }
        None => kind.default_base_url().to_owned(),
    };
    Some(ProviderSettings {
        kind,
        base_url,
        api_key,
        connect_timeout: Duration::from_millis(config.llm_connect_timeout_ms),
        first_token_timeout: Duration::from_millis(config.llm_first_token_timeout_ms),
        total_timeout: total_timeout(config),
        idle_timeout: Duration::from_millis(config.llm_idle_timeout_ms),
        max_retries: config.llm_max_retries,
        guard: None,
    })
}

/// The longest one LLM call may take: `LLM_TOTAL_TIMEOUT_MS`, but at most the
/// request timeout less a margin to answer with the fallback (5 s, or half
/// the request timeout when that is under 10 s).
pub fn total_timeout(config: &crate::config::Config) -> Duration {
    let request = Duration::from_secs(config.request_timeout_secs.max(1));
    let margin = (request / 2).min(Duration::from_secs(5));
    Duration::from_millis(config.llm_total_timeout_ms).min(request - margin)
}
