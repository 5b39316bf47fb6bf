//! What every provider shares: one pooled HTTP client, the call's deadlines,
//! retries with backoff, and the loop that turns a response body into
//! [`StreamEvent`]s. A provider only says how to encode a request
//! ([`WireFormat::body`]) and how to read its frames ([`Decoder`]).
//!
//! One call, in order:
//! - POST the body. On HTTP 429/5xx or a connection failure, wait (exponential
//!   backoff with jitter, or the server's `Retry-After` if longer) and try
//!   again, at most `max_retries` times, and only while no answer text has
//!   arrived: text already handed to the caller is never sent twice.
//! - Any other non-2xx status is `Status(code)`, without retry.
//! - Read frames until the decoder reports `Done`. A body that ends first is
//!   `Truncated` (unless the decoder accepts the end), a frame that does not
//!   parse is `BadResponse`.
//! - Deadlines: no answer text by `first_token_timeout`, or no end by
//!   `total_timeout` (both from the start of the call), or, once text
//!   flows, no further text (or end) within `idle_timeout` of the last piece,
//!   is `Timeout`. The idle deadline is what ends a stream that sends one
//!   chunk and then hangs; keep-alive frames without text do not extend it.
//! - An org's own base URL (`ProviderSettings::guard`) goes through the
//!   outbound guard: a forbidden IP literal is refused before any request,
//!   and a name is checked at every connect; a refusal is `Refused`, never
//!   retried.
//!
//! Sizes are bounded (frame, answer, whole body) so that a hostile server
//! cannot exhaust memory. The API key lives only in a sensitive header value;
//! error texts are fixed strings that never quote it, and the error bodies we
//! log have it masked.

use std::{collections::VecDeque, sync::Arc, time::Duration};

use futures_util::{StreamExt, stream::BoxStream};
use reqwest::{
    Client, Response, StatusCode, Url,
    header::{self, HeaderMap, HeaderValue},
};
use serde::Serialize;
use tokio::time::Instant;

use crate::outbound;

use super::{
    ChatRequest, LlmError, LlmProvider, ProviderSettings, Role, StreamEvent, Usage,
    framing::{Frame, FrameReader, Framing},
};

/// Longest answer text accepted, in bytes (a chat answer is a few KiB; the
/// largest generated flow is well under this).
pub(crate) const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// Most body bytes read in one call, framing and keep-alives included.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Most bytes of an error body kept for the log.
const MAX_ERROR_BODY_BYTES: usize = 2048;

/// First retry waits about this long; each further one twice as long.
const BACKOFF_BASE: Duration = Duration::from_millis(100);

/// Longest wait between two attempts, however many came before.
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Longest `Retry-After` honoured; the deadlines bound it further.
const RETRY_AFTER_MAX: Duration = Duration::from_secs(10);

/// One provider's wire format.
pub(crate) trait WireFormat: Send + Sync + 'static {
    /// What [`LlmProvider::name`] reports.
    const NAME: &'static str;
    /// How the response body is framed.
    const FRAMING: Framing;
    /// Reads one call's frames.
    type Decoder: Decoder;

    /// The JSON request body for `req`.
    fn body(&self, req: &ChatRequest) -> Result<Vec<u8>, LlmError>;

    /// A decoder for a new response.
    fn decoder(&self) -> Self::Decoder;
}

/// Reads the frames of one response, in order.
pub(crate) trait Decoder: Send + 'static {
    /// Reads one frame and pushes the events it carried.
    fn frame(&mut self, frame: Frame, out: &mut Vec<StreamEvent>) -> Result<(), LlmError>;

    /// The body ended before `Done`: the usage to finish with, when this
    /// provider's stream may end that way, or why the answer is incomplete.
    fn end(&mut self) -> Result<Usage, LlmError> {
        Err(LlmError::Truncated)
    }
}

/// A message of the conversation as every provider spells it.
#[derive(Serialize)]
pub(crate) struct WireMessage<'a> {
    pub role: &'static str,
    pub content: &'a str,
}

impl<'a> WireMessage<'a> {
    /// The conversation of `req`, system prompt excluded.
    pub(crate) fn conversation(req: &'a ChatRequest) -> impl Iterator<Item = Self> + 'a {
        req.messages.iter().map(|m| WireMessage {
            role: match m.role {
                Role::User => "user",
                Role::Assistant => "assistant",
            },
            content: &m.content,
        })
    }
}

/// Serializes a request body.
pub(crate) fn encode(body: &impl Serialize) -> Result<Vec<u8>, LlmError> {
    serde_json::to_vec(body)
        .map_err(|_| LlmError::BadResponse("could not encode the request".into()))
}

/// Parses a frame's JSON; the error names the provider, never the frame.
pub(crate) fn parse<'de, T: serde::Deserialize<'de>>(
    provider: &'static str,
    data: &'de str,
) -> Result<T, LlmError> {
    serde_json::from_str(data).map_err(|err| {
        tracing::debug!(provider, error = %err, "unparseable LLM frame");
        LlmError::BadResponse(format!("{provider} sent a frame that does not parse"))
    })
}

/// The first 200 characters of a provider's error message, for the log.
pub(crate) fn for_log(text: &str) -> &str {
    match text.char_indices().nth(200) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

/// `base` + `path` as a URL, when `base` is `http(s)://…`.
pub(crate) fn endpoint(base: &str, path: &str) -> Result<Url, LlmError> {
    let invalid = || LlmError::Unavailable("the LLM base URL is not an http(s) URL".into());
    let url = Url::parse(&format!("{}{path}", base.trim().trim_end_matches('/')))
        .map_err(|_| invalid())?;
    match url.scheme() {
        "http" | "https" => Ok(url),
        _ => Err(invalid()),
    }
}

/// A header value holding a secret: marked sensitive so it is never printed.
pub(crate) fn secret_header(value: &str) -> Result<HeaderValue, LlmError> {
    let mut value = HeaderValue::from_str(value)
        .map_err(|_| LlmError::Unavailable("the LLM API key is not a valid header value".into()))?;
    value.set_sensitive(true);
    Ok(value)
}

/// A provider speaking `W` over HTTP.
pub(crate) struct HttpProvider<W> {
    shared: Arc<Shared<W>>,
}

struct Shared<W> {
    /// One pool per provider: connections (and TLS sessions) are reused
    /// across calls.
    client: Client,
    wire: W,
    endpoint: Url,
    headers: HeaderMap,
    /// Only to mask it in logged error bodies.
    api_key: Option<String>,
    first_token_timeout: Duration,
    total_timeout: Duration,
    idle_timeout: Duration,
    max_retries: u32,
    /// Set when the outbound guard refused the endpoint itself (an IP
    /// literal): every call fails with it before sending anything.
    refused: Option<String>,
}

impl<W: WireFormat> HttpProvider<W> {
    /// `headers` go on every request besides `content-type` and `accept`.
    pub(crate) fn new(
        settings: &ProviderSettings,
        wire: W,
        endpoint: Url,
        mut headers: HeaderMap,
    ) -> Result<Self, LlmError> {
        let mut refused = None;
        let builder = match &settings.guard {
            // Never follow a redirect with the key in the headers.
            None => Client::builder().redirect(reqwest::redirect::Policy::none()),
            Some(policy) => match policy.check(&endpoint) {
                Ok(route) => outbound::builder(route),
                Err(why) => {
                    refused = Some(why.to_string());
                    outbound::builder(outbound::Route::Guarded)
                }
            },
        };
        let client = builder
            .connect_timeout(settings.connect_timeout)
            .user_agent(concat!("wayfinder/", env!("CARGO_PKG_VERSION")))
            .tcp_nodelay(true)
            .build()
            .map_err(|err| {
                tracing::error!(error = %err, "cannot build the LLM HTTP client");
                LlmError::Unavailable("could not build the HTTP client".into())
            })?;
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static(match W::FRAMING {
                Framing::Ndjson => "application/x-ndjson",
                Framing::Sse => "text/event-stream",
            }),
        );
        Ok(Self {
            shared: Arc::new(Shared {
                client,
                wire,
                endpoint,
                headers,
                api_key: settings.api_key.clone().filter(|k| !k.is_empty()),
                first_token_timeout: settings.first_token_timeout,
                total_timeout: settings.total_timeout,
                idle_timeout: settings.idle_timeout,
                max_retries: settings.max_retries,
                refused,
            }),
        })
    }
}

impl<W: WireFormat> LlmProvider for HttpProvider<W> {
    fn name(&self) -> &'static str {
        W::NAME
    }

    fn stream(&self, req: ChatRequest) -> BoxStream<'static, Result<StreamEvent, LlmError>> {
        let call = match self.shared.wire.body(&req) {
            Ok(body) => Call::new(self.shared.clone(), body),
            Err(err) => return futures_util::stream::once(async move { Err(err) }).boxed(),
        };
        futures_util::stream::unfold(call, |mut call| async move {
            call.next().await.map(|item| (item, call))
        })
        .boxed()
    }
}

/// A failed attempt, and whether another one may follow.
struct Failure {
    error: LlmError,
    retryable: bool,
    retry_after: Option<Duration>,
}

impl Failure {
    fn fatal(error: LlmError) -> Self {
        Self {
            error,
            retryable: false,
            retry_after: None,
        }
    }

    /// A transport error: retryable, described without its URL; a refusal
    /// by the outbound guard is fatal.
    fn transport(provider: &'static str, err: &reqwest::Error) -> Self {
        if let Some(refused) = outbound::refusal(err) {
            tracing::warn!(provider, %refused, "LLM call refused by the outbound guard");
            return Self::fatal(LlmError::Refused(refused.to_string()));
        }
        tracing::warn!(provider, error = %err, "LLM connection failed");
        let error = if err.is_connect() && err.is_timeout() {
            LlmError::Timeout("connecting to the provider")
        } else if err.is_connect() {
            LlmError::Unavailable(format!("could not connect to {provider}"))
        } else if err.is_builder() {
            return Self::fatal(LlmError::Unavailable("invalid request".into()));
        } else {
            LlmError::Unavailable(format!("the connection to {provider} failed"))
        };
        Self {
            error,
            retryable: true,
            retry_after: None,
        }
    }
}

enum Phase<D> {
    /// About to send (first attempt or a retry).
    Send,
    /// Reading the body of a 2xx response (boxed: the phase moves on every event).
    Read(Box<Reading<D>>),
    /// `Done` or an error was yielded: nothing follows.
    Over,
}

struct Reading<D> {
    response: Response,
    frames: FrameReader,
    decoder: D,
    body_bytes: usize,
}

/// One streamed call: its deadlines, its attempts, what it has read.
struct Call<W: WireFormat> {
    shared: Arc<Shared<W>>,
    body: Vec<u8>,
    /// The clock starts when the stream is first polled, not when it is made.
    polled: bool,
    started: Instant,
    first_token_deadline: Instant,
    total_deadline: Instant,
    retries: u32,
    /// Answer text has arrived: no retry from now on.
    answering: bool,
    /// When the last piece of answer text arrived (the idle deadline runs from it).
    last_text: Instant,
    answer_bytes: usize,
    phase: Phase<W::Decoder>,
    /// Events read but not yet yielded; ends with `Done` once it came.
    pending: VecDeque<StreamEvent>,
    /// The error that ends the call, yielded after `pending`.
    failed: Option<LlmError>,
}

impl<W: WireFormat> Call<W> {
    fn new(shared: Arc<Shared<W>>, body: Vec<u8>) -> Self {
        let start = Instant::now();
        Self {
            started: start,
            first_token_deadline: start + shared.first_token_timeout,
            total_deadline: start + shared.total_timeout,
            polled: false,
            shared,
            body,
            retries: 0,
            answering: false,
            last_text: start,
            answer_bytes: 0,
            phase: Phase::Send,
            pending: VecDeque::new(),
            failed: None,
        }
    }

    /// The next event, or `None` after `Done` or an error.
    async fn next(&mut self) -> Option<Result<StreamEvent, LlmError>> {
        if !self.polled {
            self.polled = true;
            self.started = Instant::now();
            self.first_token_deadline = self.started + self.shared.first_token_timeout;
            self.total_deadline = self.started + self.shared.total_timeout;
        }
        loop {
            if let Some(event) = self.pending.pop_front() {
                if let StreamEvent::Done(usage) = &event {
                    tracing::debug!(
                        provider = W::NAME,
                        prompt_tokens = usage.prompt_tokens,
                        completion_tokens = usage.completion_tokens,
                        retries = self.retries,
                        elapsed_ms = self.started.elapsed().as_millis() as u64,
                        "LLM answer complete"
                    );
                    self.phase = Phase::Over;
                    self.pending.clear();
                }
                return Some(Ok(event));
            }
            if let Some(error) = self.failed.take() {
                return Some(Err(error));
            }
            let failure = match std::mem::replace(&mut self.phase, Phase::Over) {
                Phase::Over => return None,
                Phase::Send => match self.send().await {
                    Ok(reading) => {
                        self.phase = Phase::Read(reading);
                        continue;
                    }
                    Err(failure) => failure,
                },
                Phase::Read(mut reading) => match self.read(&mut reading).await {
                    Ok(()) => {
                        self.phase = Phase::Read(reading);
                        continue;
                    }
                    Err(failure) => failure,
                },
            };
            match self.retry(failure).await {
                None => self.phase = Phase::Send,
                // Text read before the failure goes out first, in order.
                Some(error) => self.failed = Some(error),
            }
        }
    }

    /// The deadline in force: the first-token one until text arrives, then
    /// the idle one; the total one whenever it is earlier.
    fn deadline(&self) -> (Instant, &'static str) {
        let (at, what) = if self.answering {
            (
                // An absurdly large setting means no idle deadline, not a panic.
                self.last_text
                    .checked_add(self.shared.idle_timeout)
                    .unwrap_or(self.total_deadline),
                "the answer stalled for longer than the idle timeout",
            )
        } else {
            (
                self.first_token_deadline,
                "no answer text within the first-token timeout",
            )
        };
        if at < self.total_deadline {
            (at, what)
        } else {
            (
                self.total_deadline,
                "the answer took longer than the total timeout",
            )
        }
    }

    async fn send(&mut self) -> Result<Box<Reading<W::Decoder>>, Failure> {
        let shared = &self.shared;
        if let Some(refused) = &shared.refused {
            tracing::warn!(provider = W::NAME, %refused, "LLM call refused by the outbound guard");
            return Err(Failure::fatal(LlmError::Refused(refused.clone())));
        }
        let request = shared
            .client
            .post(shared.endpoint.clone())
            .headers(shared.headers.clone())
            .body(self.body.clone());
        let (deadline, what) = self.deadline();
        let response = match tokio::time::timeout_at(deadline, request.send()).await {
            Err(_) => return Err(Failure::fatal(LlmError::Timeout(what))),
            Ok(Err(err)) => return Err(Failure::transport(W::NAME, &err)),
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        if !status.is_success() {
            let retry_after = retry_after(response.headers());
            log_error_body(
                W::NAME,
                self.shared.api_key.as_deref(),
                status,
                response,
                deadline,
            )
            .await;
            return Err(Failure {
                error: LlmError::Status(status.as_u16()),
                retryable: status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error(),
                retry_after,
            });
        }
        Ok(Box::new(Reading {
            response,
            frames: FrameReader::new(W::FRAMING),
            decoder: self.shared.wire.decoder(),
            body_bytes: 0,
        }))
    }

    /// Reads the next piece of the body into `pending`.
    async fn read(&mut self, reading: &mut Reading<W::Decoder>) -> Result<(), Failure> {
        let (deadline, what) = self.deadline();
        let chunk = match tokio::time::timeout_at(deadline, reading.response.chunk()).await {
            Err(_) => return Err(Failure::fatal(LlmError::Timeout(what))),
            Ok(Err(err)) => return Err(Failure::transport(W::NAME, &err)),
            Ok(Ok(chunk)) => chunk,
        };
        let (frames, ended) = match chunk {
            Some(bytes) => {
                reading.body_bytes += bytes.len();
                if reading.body_bytes > MAX_BODY_BYTES {
                    return Err(Failure::fatal(LlmError::BadResponse(format!(
                        "the response is longer than {MAX_BODY_BYTES} bytes"
                    ))));
                }
                (reading.frames.push(&bytes).map_err(Failure::fatal)?, false)
            }
            None => (reading.frames.finish().map_err(Failure::fatal)?, true),
        };
        let mut events = Vec::new();
        for frame in frames {
            reading
                .decoder
                .frame(frame, &mut events)
                .map_err(Failure::fatal)?;
            if self.take(&mut events).map_err(Failure::fatal)? {
                return Ok(());
            }
        }
        if ended {
            let usage = reading.decoder.end().map_err(Failure::fatal)?;
            self.pending.push_back(StreamEvent::Done(usage));
        }
        Ok(())
    }

    /// Moves decoded events to `pending`; true once `Done` is among them.
    fn take(&mut self, events: &mut Vec<StreamEvent>) -> Result<bool, LlmError> {
        for event in events.drain(..) {
            match event {
                StreamEvent::Delta(text) if text.is_empty() => {}
                StreamEvent::Delta(text) => {
                    self.answer_bytes += text.len();
                    if self.answer_bytes > MAX_ANSWER_BYTES {
                        return Err(LlmError::BadResponse(format!(
                            "the answer is longer than {MAX_ANSWER_BYTES} bytes"
                        )));
                    }
                    self.answering = true;
                    self.last_text = Instant::now();
                    self.pending.push_back(StreamEvent::Delta(text));
                }
                done @ StreamEvent::Done(_) => {
                    self.pending.push_back(done);
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// `None`: try again (after waiting); `Some`: the call fails with it.
    async fn retry(&mut self, failure: Failure) -> Option<LlmError> {
        if !failure.retryable || self.answering || self.retries >= self.shared.max_retries {
            return Some(failure.error);
        }
        let backoff = BACKOFF_BASE
            .saturating_mul(1u32 << self.retries.min(16))
            .min(BACKOFF_MAX);
        // Full jitter over the upper half: callers that failed together do
        // not come back together.
        let jitter = getrandom::u64().unwrap_or(0) % (backoff.as_millis() as u64 / 2 + 1);
        let mut wait = backoff / 2 + Duration::from_millis(jitter);
        if let Some(after) = failure.retry_after {
            wait = wait.max(after.min(RETRY_AFTER_MAX));
        }
        let (deadline, _) = self.deadline();
        if Instant::now() + wait >= deadline {
            return Some(failure.error);
        }
        self.retries += 1;
        tracing::warn!(
            provider = W::NAME,
            attempt = self.retries + 1,
            error = %failure.error,
            wait_ms = wait.as_millis() as u64,
            "retrying the LLM call"
        );
        tokio::time::sleep(wait).await;
        None
    }
}

/// Logs the start of an error body (the key masked), within the deadline.
async fn log_error_body(
    provider: &'static str,
    api_key: Option<&str>,
    status: StatusCode,
    mut response: Response,
    deadline: Instant,
) {
    let mut body = Vec::new();
    let read = async {
        while body.len() < MAX_ERROR_BODY_BYTES {
            match response.chunk().await {
                Ok(Some(bytes)) => body.extend_from_slice(&bytes),
                _ => break,
            }
        }
    };
    let until = deadline.min(Instant::now() + Duration::from_secs(1));
    let _ = tokio::time::timeout_at(until, read).await;
    body.truncate(MAX_ERROR_BODY_BYTES);
    let mut text = String::from_utf8_lossy(&body).into_owned();
    if let Some(key) = api_key {
        text = text.replace(key, "[redacted]");
    }
    tracing::warn!(
        provider,
        status = status.as_u16(),
        body = %text,
        "the LLM provider answered with an error"
    );
}

/// `Retry-After` in seconds (the HTTP-date form is ignored).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds: f64 = headers
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds.min(3600.0)))
}
