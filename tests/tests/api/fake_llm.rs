//! Fake LLM providers: an HTTP server on `127.0.0.1:0` that speaks one
//! provider's real streamed wire format (Ollama NDJSON, OpenAI SSE chunks,
//! Anthropic SSE events), answers as told by a [`Behaviour`], and records
//! every request it got.
//!
//! ```ignore
//! let fake = FakeLlm::start(ProviderKind::OpenAi).await;
//! fake.set_behaviour(Behaviour::text("Billing is under Settings."));
//! let app = spawn_app_with(backend, |config| fake.configure(config)).await;
//! // … run a turn …
//! assert_eq!(fake.request_count(), 1);
//! let prompt = &fake.requests()[0]["messages"];
//! ```
//!
//! Paths: Ollama `POST /api/chat`, OpenAI `POST /v1/chat/completions` (the
//! base URL ends in `/v1`), Anthropic `POST /v1/messages`. Any other path is
//! recorded and answered 404. The server stops when the `FakeLlm` drops.

// Shared by several test modules, each using a part of it.
#![allow(dead_code)]

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::State,
    http::{HeaderMap, Method, StatusCode, Uri, header},
    response::Response,
};
use futures_util::StreamExt;
use serde_json::{Value, json};
use wayfinder::{
    config::Config,
    llm::{LlmProvider, ProviderKind, ProviderSettings, build_provider},
};

/// The API key [`FakeLlm::settings`] and [`FakeLlm::configure`] use: tests
/// check that it reaches the server and never an error text.
pub const FAKE_API_KEY: &str = "sk-fake-7d1e52c0-never-show-me";

/// Usage that [`Behaviour::ReplyWith`] and [`Behaviour::SlowFirstToken`] report:
/// this many prompt tokens, and one completion token per chunk.
pub const FAKE_PROMPT_TOKENS: u32 = 10;

/// Computes a reply's chunks from the request body, for [`Behaviour::ReplyWith`].
pub type ComputeReply = Arc<dyn Fn(&Value) -> Vec<String> + Send + Sync>;

/// What the fake answers to the next requests.
#[derive(Clone)]
pub enum Behaviour {
    /// 200 and a complete stream: each chunk is one delta, in order, then the
    /// provider's completion marker with this usage.
    Reply {
        chunks: Vec<String>,
        prompt_tokens: u32,
        completion_tokens: u32,
    },
    /// Like `Reply`, the chunks computed from the request body (to echo the
    /// article ids a prompt carried, say). Usage: [`FAKE_PROMPT_TOKENS`] and
    /// one completion token per chunk.
    ReplyWith(ComputeReply),
    /// This HTTP status, with the provider's error body, at once.
    Status(u16),
    /// The first `failures` requests (counted from `set_behaviour`) get
    /// `status`; later ones get `then` (which should not itself be `FailThenReply`).
    FailThenReply {
        failures: u32,
        status: u16,
        then: Box<Behaviour>,
    },
    /// 200 with bytes that are not the provider's protocol (an HTML page).
    Garbage,
    /// The stream's opening, deltas `"Partial "` and `"answer"`, then a clean
    /// end of body without the completion marker.
    CutStream,
    /// The stream's opening, deltas `"Partial "` and `"answer"`, then the
    /// connection breaks (the body ends with a transport error).
    BreakStream,
    /// The stream's opening, these deltas (real answer text, long enough to
    /// reach subscribers), then the connection breaks without a completion
    /// marker (the body ends with a transport error).
    BreakAfter(Vec<String>),
    /// Headers and the stream's opening (`message_start`, a role-only chunk…)
    /// at once; the first delta only after this long; then the default reply.
    SlowFirstToken(Duration),
    /// Like `Reply` (usage [`FAKE_PROMPT_TOKENS`] and one completion token
    /// per chunk), each chunk this long after the one before: an answer
    /// that is still streaming while a test looks at it.
    Paced {
        chunks: Vec<String>,
        every: Duration,
    },
    /// Accepts the request and never answers (not even headers).
    Hang,
    /// Headers, the stream's opening and one delta `"Partial "` at once,
    /// then nothing more: the connection stays open and silent.
    StallAfterFirstChunk,
}

impl Default for Behaviour {
    /// `Reply` of `"Hello"`, `" world"` with usage 10 + 2.
    fn default() -> Self {
        Self::reply(&["Hello", " world"], 10, 2)
    }
}

impl Behaviour {
    /// `Reply` with these chunks and usage.
    pub fn reply(chunks: &[&str], prompt_tokens: u32, completion_tokens: u32) -> Self {
        Self::Reply {
            chunks: chunks.iter().map(|c| (*c).to_owned()).collect(),
            prompt_tokens,
            completion_tokens,
        }
    }

    /// `ReplyWith` from a closure.
    pub fn reply_with(compute: impl Fn(&Value) -> Vec<String> + Send + Sync + 'static) -> Self {
        Self::ReplyWith(Arc::new(compute))
    }

    /// `BreakAfter` these chunks.
    pub fn break_after(chunks: &[&str]) -> Self {
        Self::BreakAfter(chunks.iter().map(|c| (*c).to_owned()).collect())
    }

    /// `Reply` of `answer` cut after each space; usage
    /// [`FAKE_PROMPT_TOKENS`] + one per chunk.
    pub fn text(answer: &str) -> Self {
        let chunks = split_words(answer);
        let completion_tokens = chunks.len() as u32;
        Self::Reply {
            chunks,
            prompt_tokens: FAKE_PROMPT_TOKENS,
            completion_tokens,
        }
    }
}

impl std::fmt::Debug for Behaviour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Reply { chunks, .. } => write!(f, "Reply({chunks:?})"),
            Self::ReplyWith(_) => write!(f, "ReplyWith(..)"),
            Self::Status(code) => write!(f, "Status({code})"),
            Self::FailThenReply {
                failures,
                status,
                then,
            } => write!(f, "FailThenReply({failures} x {status}, then {then:?})"),
            Self::Garbage => write!(f, "Garbage"),
            Self::CutStream => write!(f, "CutStream"),
            Self::BreakStream => write!(f, "BreakStream"),
            Self::BreakAfter(chunks) => write!(f, "BreakAfter({chunks:?})"),
            Self::SlowFirstToken(d) => write!(f, "SlowFirstToken({d:?})"),
            Self::Paced { chunks, every } => {
                write!(f, "Paced({} chunks, every {every:?})", chunks.len())
            }
            Self::Hang => write!(f, "Hang"),
            Self::StallAfterFirstChunk => write!(f, "StallAfterFirstChunk"),
        }
    }
}

/// A JSON-mode answer: `value` serialized, streamed in three pieces, usage
/// [`FAKE_PROMPT_TOKENS`] + 3.
pub fn json_reply(value: Value) -> Behaviour {
    let text = value.to_string();
    let chars: Vec<char> = text.chars().collect();
    let third = chars.len().div_ceil(3).max(1);
    let chunks: Vec<String> = chars
        .chunks(third)
        .map(|piece| piece.iter().collect())
        .collect();
    let completion_tokens = chunks.len() as u32;
    Behaviour::Reply {
        chunks,
        prompt_tokens: FAKE_PROMPT_TOKENS,
        completion_tokens,
    }
}

/// One request the fake received.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    /// The JSON body (`Null` when it was not JSON).
    pub body: Value,
}

impl RecordedRequest {
    /// A header's value, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// A running fake provider.
pub struct FakeLlm {
    kind: ProviderKind,
    addr: SocketAddr,
    state: Arc<FakeState>,
    server: tokio::task::JoinHandle<()>,
}

struct FakeState {
    kind: ProviderKind,
    inner: Mutex<Inner>,
}

struct Inner {
    behaviour: Behaviour,
    /// Failures served under the current `FailThenReply`.
    failures_served: u32,
    requests: Vec<RecordedRequest>,
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeLlm {
    /// Starts a fake `kind` provider on a free port, answering [`Behaviour::default`].
    pub async fn start(kind: ProviderKind) -> FakeLlm {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake LLM");
        let addr = listener.local_addr().expect("fake LLM address");
        let state = Arc::new(FakeState {
            kind,
            inner: Mutex::new(Inner {
                behaviour: Behaviour::default(),
                failures_served: 0,
                requests: Vec::new(),
            }),
        });
        let router = Router::new().fallback(answer).with_state(state.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        FakeLlm {
            kind,
            addr,
            state,
            server,
        }
    }

    /// The provider this fake speaks.
    pub fn kind(&self) -> ProviderKind {
        self.kind
    }

    /// The `WAYFINDER_OUTBOUND_ALLOW` entry that lets an org's own provider
    /// setting reach this loopback fake.
    pub fn allow_entry(&self) -> String {
        self.addr.to_string()
    }

    /// Adds this fake to `config`'s outbound allowlist.
    pub fn allow(&self, config: &mut Config) {
        let entry = self.allow_entry();
        config.outbound_allow = Some(match config.outbound_allow.take() {
            Some(list) if !list.is_empty() => format!("{list},{entry}"),
            _ => entry,
        });
    }

    /// What to set as the provider's base URL (`LLM_BASE_URL`).
    pub fn base_url(&self) -> String {
        match self.kind {
            ProviderKind::OpenAi => format!("http://{}/v1", self.addr),
            ProviderKind::Ollama | ProviderKind::Anthropic => format!("http://{}", self.addr),
        }
    }

    /// Settings for this fake: [`FAKE_API_KEY`], connect 1 s, first token
    /// 2 s, idle 2 s, total 5 s, 2 retries, trusted (no outbound guard).
    /// Adjust fields as a test needs.
    pub fn settings(&self) -> ProviderSettings {
        ProviderSettings {
            kind: self.kind,
            base_url: self.base_url(),
            api_key: Some(FAKE_API_KEY.to_owned()),
            connect_timeout: Duration::from_secs(1),
            first_token_timeout: Duration::from_secs(2),
            total_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(2),
            max_retries: 2,
            guard: None,
        }
    }

    /// A provider built from [`FakeLlm::settings`].
    pub fn provider(&self) -> Arc<dyn LlmProvider> {
        build_provider(self.settings()).expect("fake LLM settings are valid")
    }

    /// Points a server configuration at this fake (the `LLM_*` settings, with
    /// the same key and timeouts as [`FakeLlm::settings`]).
    ///
    /// The server's own provider is trusted; to use this fake as an org's
    /// own (bring-your-own-key) provider, also [`FakeLlm::allow`] it.
    pub fn configure(&self, config: &mut Config) {
        let settings = self.settings();
        config.llm_provider = Some(self.kind.as_str().to_owned());
        config.llm_base_url = Some(settings.base_url);
        config.llm_api_key = settings.api_key;
        config.llm_connect_timeout_ms = settings.connect_timeout.as_millis() as u64;
        config.llm_first_token_timeout_ms = settings.first_token_timeout.as_millis() as u64;
        config.llm_total_timeout_ms = settings.total_timeout.as_millis() as u64;
        config.llm_idle_timeout_ms = settings.idle_timeout.as_millis() as u64;
        config.llm_max_retries = settings.max_retries;
    }

    /// Answers the next requests with `behaviour` (and restarts the
    /// `FailThenReply` count).
    pub fn set_behaviour(&self, behaviour: Behaviour) {
        let mut inner = self.state.inner.lock().unwrap();
        inner.behaviour = behaviour;
        inner.failures_served = 0;
    }

    /// The JSON bodies received, oldest first.
    pub fn requests(&self) -> Vec<Value> {
        self.recorded_requests()
            .into_iter()
            .map(|r| r.body)
            .collect()
    }

    /// Everything received (method, path, headers, body), oldest first.
    pub fn recorded_requests(&self) -> Vec<RecordedRequest> {
        self.state.inner.lock().unwrap().requests.clone()
    }

    /// How many requests arrived.
    pub fn request_count(&self) -> usize {
        self.state.inner.lock().unwrap().requests.len()
    }
}

/// The path each provider is called on.
fn chat_path(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::Ollama => "/api/chat",
        ProviderKind::OpenAi => "/v1/chat/completions",
        ProviderKind::Anthropic => "/v1/messages",
    }
}

async fn answer(
    State(state): State<Arc<FakeState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let behaviour = {
        let mut inner = state.inner.lock().unwrap();
        inner.requests.push(RecordedRequest {
            method: method.to_string(),
            path: uri.path().to_owned(),
            headers: headers
                .iter()
                .map(|(name, value)| {
                    (
                        name.as_str().to_owned(),
                        value.to_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect(),
            body: body.clone(),
        });
        if method != Method::POST || uri.path() != chat_path(state.kind) {
            return plain(
                StatusCode::NOT_FOUND,
                "text/plain",
                "no such endpoint".into(),
            );
        }
        match inner.behaviour.clone() {
            Behaviour::FailThenReply {
                failures,
                status,
                then,
            } => {
                if inner.failures_served < failures {
                    inner.failures_served += 1;
                    Behaviour::Status(status)
                } else {
                    *then
                }
            }
            other => other,
        }
    };
    respond(state.kind, behaviour, &body).await
}

async fn respond(kind: ProviderKind, behaviour: Behaviour, request: &Value) -> Response {
    let wire = Wire::new(kind, request);
    match behaviour {
        Behaviour::Reply {
            chunks,
            prompt_tokens,
            completion_tokens,
        } => wire.stream(
            &chunks,
            Some((prompt_tokens, completion_tokens)),
            Duration::ZERO,
            End::Complete,
        ),
        Behaviour::ReplyWith(compute) => {
            let chunks = compute(request);
            let usage = (FAKE_PROMPT_TOKENS, chunks.len() as u32);
            wire.stream(&chunks, Some(usage), Duration::ZERO, End::Complete)
        }
        Behaviour::Status(code) | Behaviour::FailThenReply { status: code, .. } => wire.error(code),
        Behaviour::Garbage => plain(
            StatusCode::OK,
            "text/html",
            "<html><body><h1>Welcome!</h1>This is not a model.</body></html>\n".into(),
        ),
        Behaviour::CutStream => wire.stream(&cut_chunks(), None, Duration::ZERO, End::Cut),
        Behaviour::BreakStream => wire.stream(&cut_chunks(), None, Duration::ZERO, End::Break),
        Behaviour::BreakAfter(chunks) => wire.stream(&chunks, None, Duration::ZERO, End::Break),
        Behaviour::SlowFirstToken(delay) => {
            let chunks = ["Hello".to_owned(), " world".to_owned()];
            wire.stream(&chunks, Some((FAKE_PROMPT_TOKENS, 2)), delay, End::Complete)
        }
        Behaviour::Paced { chunks, every } => {
            let usage = (FAKE_PROMPT_TOKENS, chunks.len() as u32);
            wire.paced_stream(&chunks, Some(usage), Duration::ZERO, every, End::Complete)
        }
        Behaviour::Hang => std::future::pending::<Response>().await,
        Behaviour::StallAfterFirstChunk => {
            wire.stream(&["Partial ".to_owned()], None, Duration::ZERO, End::Stall)
        }
    }
}

fn cut_chunks() -> Vec<String> {
    vec!["Partial ".to_owned(), "answer".to_owned()]
}

fn split_words(text: &str) -> Vec<String> {
    text.split_inclusive(' ').map(str::to_owned).collect()
}

fn plain(status: StatusCode, content_type: &str, body: String) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .unwrap()
}

/// How a stream ends.
enum End {
    /// With the provider's completion marker and usage.
    Complete,
    /// Clean end of body, no marker.
    Cut,
    /// The connection breaks.
    Break,
    /// Nothing more is ever sent; the connection stays open.
    Stall,
}

/// One provider's frames for one request.
struct Wire {
    kind: ProviderKind,
    model: String,
    /// OpenAI: the request asked for `stream_options.include_usage`.
    include_usage: bool,
}

impl Wire {
    fn new(kind: ProviderKind, request: &Value) -> Self {
        Self {
            kind,
            model: request["model"].as_str().unwrap_or("fake-model").to_owned(),
            include_usage: request["stream_options"]["include_usage"] == json!(true),
        }
    }

    /// A streamed 200: opening frames at once, the first delta after
    /// `first_delay`, then the others, then the end.
    fn stream(
        &self,
        chunks: &[String],
        usage: Option<(u32, u32)>,
        first_delay: Duration,
        end: End,
    ) -> Response {
        self.paced_stream(chunks, usage, first_delay, Duration::ZERO, end)
    }

    /// [`Wire::stream`] with `every` before each chunk after the first.
    fn paced_stream(
        &self,
        chunks: &[String],
        usage: Option<(u32, u32)>,
        first_delay: Duration,
        every: Duration,
        end: End,
    ) -> Response {
        let (prompt_tokens, completion_tokens) = usage.unwrap_or((FAKE_PROMPT_TOKENS, 0));
        let mut frames: Vec<(Duration, Result<String, std::io::Error>)> = self
            .opening(prompt_tokens)
            .into_iter()
            .map(|f| (Duration::ZERO, Ok(f)))
            .collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let delay = if i == 0 { first_delay } else { every };
            frames.push((delay, Ok(self.delta(chunk))));
        }
        match end {
            End::Complete => frames.extend(
                self.closing(prompt_tokens, completion_tokens)
                    .into_iter()
                    .map(|f| (Duration::ZERO, Ok(f))),
            ),
            End::Cut | End::Stall => {}
            // The pause lets the text reach the client before the break.
            End::Break => frames.push((
                Duration::from_millis(100),
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "fake break",
                )),
            )),
        }
        let stall = matches!(end, End::Stall);
        let body = futures_util::stream::iter(frames)
            .then(|(delay, frame)| async move {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                frame.map(Bytes::from)
            })
            // A stall: the body never ends.
            .chain(
                futures_util::stream::iter(
                    stall.then(futures_util::stream::pending::<Result<Bytes, std::io::Error>>),
                )
                .flatten(),
            );
        Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, self.content_type())
            .header(header::CACHE_CONTROL, "no-cache")
            .body(Body::from_stream(body))
            .unwrap()
    }

    fn content_type(&self) -> &'static str {
        match self.kind {
            ProviderKind::Ollama => "application/x-ndjson",
            ProviderKind::OpenAi | ProviderKind::Anthropic => "text/event-stream",
        }
    }

    /// Frames before the first text.
    fn opening(&self, prompt_tokens: u32) -> Vec<String> {
        match self.kind {
            ProviderKind::Ollama => vec![],
            ProviderKind::OpenAi => vec![sse(
                None,
                &self.openai_chunk(json!([{
                    "index": 0,
                    "delta": {"role": "assistant", "content": ""},
                    "logprobs": null,
                    "finish_reason": null
                }])),
            )],
            ProviderKind::Anthropic => vec![
                sse(
                    Some("message_start"),
                    &json!({
                        "type": "message_start",
                        "message": {
                            "id": "msg_fake", "type": "message", "role": "assistant",
                            "content": [], "model": self.model,
                            "stop_reason": null, "stop_sequence": null,
                            "usage": {"input_tokens": prompt_tokens, "output_tokens": 1}
                        }
                    }),
                ),
                sse(
                    Some("content_block_start"),
                    &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
                ),
                sse(Some("ping"), &json!({"type": "ping"})),
            ],
        }
    }

    /// One piece of answer text.
    fn delta(&self, text: &str) -> String {
        match self.kind {
            ProviderKind::Ollama => ndjson(&json!({
                "model": self.model,
                "created_at": "2025-01-01T00:00:00Z",
                "message": {"role": "assistant", "content": text},
                "done": false
            })),
            ProviderKind::OpenAi => sse(
                None,
                &self.openai_chunk(json!([{
                    "index": 0,
                    "delta": {"content": text},
                    "logprobs": null,
                    "finish_reason": null
                }])),
            ),
            ProviderKind::Anthropic => sse(
                Some("content_block_delta"),
                &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}),
            ),
        }
    }

    /// Frames after the last text, completion marker included.
    fn closing(&self, prompt_tokens: u32, completion_tokens: u32) -> Vec<String> {
        match self.kind {
            ProviderKind::Ollama => vec![ndjson(&json!({
                "model": self.model,
                "created_at": "2025-01-01T00:00:01Z",
                "message": {"role": "assistant", "content": ""},
                "done": true,
                "done_reason": "stop",
                "total_duration": 1_000_000,
                "load_duration": 1000,
                "prompt_eval_count": prompt_tokens,
                "prompt_eval_duration": 1000,
                "eval_count": completion_tokens,
                "eval_duration": 1000
            }))],
            ProviderKind::OpenAi => {
                let mut frames = vec![sse(
                    None,
                    &self.openai_chunk(json!([{
                        "index": 0, "delta": {}, "logprobs": null, "finish_reason": "stop"
                    }])),
                )];
                if self.include_usage {
                    let mut last = self.openai_chunk(json!([]));
                    last["usage"] = json!({
                        "prompt_tokens": prompt_tokens,
                        "completion_tokens": completion_tokens,
                        "total_tokens": prompt_tokens + completion_tokens
                    });
                    frames.push(sse(None, &last));
                }
                frames.push("data: [DONE]\n\n".to_owned());
                frames
            }
            ProviderKind::Anthropic => vec![
                sse(
                    Some("content_block_stop"),
                    &json!({"type": "content_block_stop", "index": 0}),
                ),
                sse(
                    Some("message_delta"),
                    &json!({
                        "type": "message_delta",
                        "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                        "usage": {"output_tokens": completion_tokens}
                    }),
                ),
                sse(Some("message_stop"), &json!({"type": "message_stop"})),
            ],
        }
    }

    fn openai_chunk(&self, choices: Value) -> Value {
        let mut chunk = json!({
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": 1_735_689_600,
            "model": self.model,
            "system_fingerprint": "fp_fake",
            "choices": choices
        });
        if self.include_usage {
            chunk["usage"] = Value::Null;
        }
        chunk
    }

    /// The provider's error answer.
    fn error(&self, code: u16) -> Response {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = match self.kind {
            ProviderKind::Ollama => json!({"error": "fake failure"}),
            ProviderKind::OpenAi => json!({
                "error": {"message": "fake failure", "type": "server_error", "param": null, "code": null}
            }),
            ProviderKind::Anthropic => json!({
                "type": "error",
                "error": {"type": if code == 429 { "rate_limit_error" } else { "api_error" }, "message": "fake failure"}
            }),
        };
        plain(status, "application/json", body.to_string())
    }
}

fn ndjson(value: &Value) -> String {
    format!("{value}\n")
}

fn sse(event: Option<&str>, data: &Value) -> String {
    match event {
        Some(event) => format!("event: {event}\ndata: {data}\n\n"),
        None => format!("data: {data}\n\n"),
    }
}
