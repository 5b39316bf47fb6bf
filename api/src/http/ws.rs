//! GraphQL over WebSocket: the `graphql-transport-ws` subprotocol, as the
//! graphql-ws project's PROTOCOL.md specifies it.
//!
//! async-graphql's own websocket handler does not follow that document to the
//! letter (close codes, `error` vs `next`, duplicate ids), so this module
//! speaks the protocol itself over [`Schema::execute_stream`] and axum's
//! [`WebSocket`].
//!
//! One task per socket owns the socket and runs a select loop over: incoming
//! frames, results from the operations, and the initialisation deadline.
//! Every operation runs in its own task and hands its messages to the socket
//! task through a bounded channel, so no operation ever touches the socket and
//! a slow client slows its own operations down instead of piling up memory.
//! The socket task only forwards a message while its operation is still the
//! active one for that id, so nothing is sent after a client's `complete`.
//!
//! What bounds a socket: every `subscribe` is charged to the caller's rate
//! budget (its root fields, like an HTTP request) and public callers run
//! only small operations; at most `WAYFINDER_WS_MAX_SUBSCRIPTIONS` root
//! subscription fields run at once; the server pings every
//! `WAYFINDER_WS_PING_SECS` and drops a peer that stops answering; a send
//! that the client does not read within `WAYFINDER_WS_WRITE_TIMEOUT_SECS`
//! drops the socket; a socket with nothing running for
//! `WAYFINDER_WS_IDLE_SECS` is closed (1000); a revoked API key closes its
//! sockets (4403) on every replica; shutdown closes every socket with 1001.
//!
//! [`Schema::execute_stream`]: async_graphql::Schema::execute_stream

use std::{collections::HashMap, net::IpAddr, time::Duration};

use async_graphql::{
    ErrorExtensions, Request, Response, ServerError, Value, Variables, parser::types::OperationType,
};
use axum::{
    extract::{
        State,
        ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade},
    },
    response::Response as HttpResponse,
};
use futures_util::StreamExt;
use serde::Serialize;
use serde_json::{Map, Value as Json};
use tokio::{sync::mpsc, task::AbortHandle, time::Instant};

use super::origin::RequestOrigin;
use crate::{
    auth::{self, Caller},
    error::AppError,
    graphql::operation,
    state::AppState,
};

/// The only subprotocol spoken here.
pub const PROTOCOL: &str = "graphql-transport-ws";

/// Close codes of the protocol, and the two generic ones used besides.
mod close_code {
    /// A message that is not valid JSON, not an object, or not a protocol message.
    pub const BAD_REQUEST: u16 = 4400;
    /// `subscribe` before the connection was acknowledged.
    pub const UNAUTHORIZED: u16 = 4401;
    /// `connection_init` rejected (wrong API key).
    pub const FORBIDDEN: u16 = 4403;
    /// The client did not offer `graphql-transport-ws`.
    pub const SUBPROTOCOL_NOT_ACCEPTABLE: u16 = 4406;
    /// No `connection_init` within the configured wait.
    pub const INIT_TIMEOUT: u16 = 4408;
    /// `subscribe` with the id of an operation still running.
    pub const SUBSCRIBER_EXISTS: u16 = 4409;
    /// A second `connection_init`.
    pub const TOO_MANY_INITS: u16 = 4429;
    /// A frame or message over the size limit.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// The server failed (the database, while checking the API key).
    pub const INTERNAL_ERROR: u16 = 1011;
    /// Nothing ran on the socket for the idle timeout.
    pub const NORMAL: u16 = 1000;
    /// The server is shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// The client sent messages faster than its rate budget allows.
    pub const POLICY_VIOLATION: u16 = 1008;
}

/// Messages of any kind that together cost one rate-limit unit.
const FRAMES_PER_UNIT: u32 = 20;

/// Longest ping message whose payload the pong echoes back.
const MAX_PING_ECHO: usize = 1024;

/// Messages an operation may have queued for the socket before it waits.
const OUTBOUND_BUFFER: usize = 64;

/// Initial capacity of a socket's read buffer. axum's default (128 KiB per
/// socket, allocated up front) made an idle socket cost ~150 KB; graphql-ws
/// client messages are small, and the buffer still grows for a large one
/// (up to the body limit, checked by `max_message_size`).
const READ_BUFFER: usize = 4 * 1024;

/// Bytes buffered before a write goes to the socket: none. Every message is
/// written (and, with `TCP_NODELAY`, sent) at once instead of waiting in a
/// 128 KiB per-socket buffer; the socket task flushes after each message anyway.
const WRITE_BUFFER: usize = 0;

/// How long to wait for the client's close frame after sending ours.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Longest close reason a close frame can carry (125 bytes minus the code).
const MAX_CLOSE_REASON: usize = 123;

/// Upgrades to a graphql-ws socket; every operation on it carries the
/// upgrade request's `origin` (checked by the widget operations).
pub async fn handler(
    State(st): State<AppState>,
    ws: WebSocketUpgrade,
    origin: RequestOrigin,
    ip: IpAddr,
) -> HttpResponse {
    let limit = st.config.body_limit;
    ws.protocols([PROTOCOL])
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| serve(st, socket, origin, ip))
}

/// Why the server ends the socket: a close code and its reason.
#[derive(Debug)]
struct Close {
    code: u16,
    reason: String,
}

impl Close {
    fn new(code: u16, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }

    fn bad_request(reason: impl Into<String>) -> Self {
        Self::new(close_code::BAD_REQUEST, reason)
    }
}

/// Runs one socket until either side closes it.
async fn serve(st: AppState, mut socket: WebSocket, origin: RequestOrigin, ip: IpAddr) {
    let offered = socket
        .protocol()
        .is_some_and(|p| p.as_bytes() == PROTOCOL.as_bytes());
    if !offered {
        close(
            &mut socket,
            Close::new(
                close_code::SUBPROTOCOL_NOT_ACCEPTABLE,
                "Subprotocol not acceptable",
            ),
        )
        .await;
        return;
    }

    let _open = crate::metrics::GaugeGuard::new(&crate::metrics::metrics().open_sockets);
    let init_timeout = st.config.ws_init_timeout();
    let ping_every = Duration::from_secs(st.config.ws_ping_secs.max(1));
    let write_timeout = Duration::from_secs(st.config.ws_write_timeout_secs.max(1));
    let idle_after = Duration::from_secs(st.config.ws_idle_secs.max(1));
    let mut shutdown = st.shutdown.subscribe();
    let mut revoked = st.revoked_keys.subscribe();
    let (out_tx, mut out_rx) = mpsc::channel(OUTBOUND_BUFFER);
    let (gone_tx, mut gone_rx) = mpsc::unbounded_channel();
    let mut conn = Connection {
        st,
        origin,
        ip,
        caller: None,
        init_received: false,
        ops: HashMap::new(),
        next_key: 0,
        out_tx,
        gone_tx,
        idle_since: Instant::now(),
        frames: 0,
    };

    // A zero wait means "wait forever", as in the reference server.
    let deadline = tokio::time::sleep(init_timeout);
    tokio::pin!(deadline);
    let mut ticks = tokio::time::interval_at(Instant::now() + ping_every, ping_every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();

    let ending = loop {
        tokio::select! {
            incoming = socket.recv() => {
                last_heard = Instant::now();
                let text = match incoming {
                    None => break None,
                    Some(Err(err)) => {
                        tracing::debug!(%err, "graphql-ws socket failed");
                        break too_big(&err);
                    }
                    Some(Ok(Message::Close(_))) => break None,
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Text(text))) => text.as_str().to_owned(),
                    Some(Ok(Message::Binary(bytes))) => match String::from_utf8(bytes.to_vec()) {
                        Ok(text) => text,
                        Err(_) => {
                            break Some(Close::bad_request(
                                "Invalid message received: binary frame is not valid UTF-8",
                            ));
                        }
                    },
                };
                match conn.handle(&text).await {
                    Ok(None) => {}
                    Ok(Some(reply)) => {
                        if !send(&mut socket, Message::text(reply), write_timeout).await {
                            break None;
                        }
                    }
                    Err(close) => break Some(close),
                }
            }
            Some(out) = out_rx.recv() => {
                if conn.admit(&out)
                    && !send(&mut socket, Message::text(out.text), write_timeout).await
                {
                    break None;
                }
            }
            Some((key, id)) = gone_rx.recv() => conn.forget(key, &id),
            _ = ticks.tick() => {
                if last_heard.elapsed() > ping_every * 2 + write_timeout {
                    tracing::debug!("graphql-ws peer stopped answering pings");
                    break None;
                }
                if conn.ops.is_empty() && conn.idle_since.elapsed() >= idle_after {
                    break Some(Close::new(close_code::NORMAL, "Idle timeout"));
                }
                if !send(&mut socket, Message::Ping(Default::default()), write_timeout).await {
                    break None;
                }
            }
            Ok(()) = shutdown.changed() => {
                if *shutdown.borrow() {
                    break Some(Close::new(close_code::GOING_AWAY, "Server shutting down"));
                }
            }
            id = revoked.recv() => {
                if conn.key_revoked(id).await {
                    break Some(Close::new(close_code::FORBIDDEN, "Forbidden: API key revoked"));
                }
            }
            () = &mut deadline, if !conn.init_received && !init_timeout.is_zero() => {
                break Some(Close::new(
                    close_code::INIT_TIMEOUT,
                    "Connection initialisation timeout",
                ));
            }
        }
    };

    // Stop every operation before anything else: nothing more goes out.
    conn.abort_all();
    drop(conn);
    match ending {
        Some(reason) => close(&mut socket, reason).await,
        None => drain(&mut socket).await,
    }
}

/// Sends `message` unless the client stops reading for `timeout`; false when
/// the socket is unusable (failed, or the client is not reading).
async fn send(socket: &mut WebSocket, message: Message, timeout: Duration) -> bool {
    match tokio::time::timeout(timeout, socket.send(message)).await {
        Ok(Ok(())) => true,
        Ok(Err(err)) => {
            tracing::debug!(%err, "graphql-ws send failed");
            false
        }
        Err(_) => {
            tracing::debug!("graphql-ws client stopped reading; dropping the socket");
            false
        }
    }
}

/// The close for a read error: 1009 when the client exceeded the size limit
/// (the connection is still usable for a close frame then), nothing otherwise.
/// axum hides tungstenite's error type, so this goes by its message.
fn too_big(err: &axum::Error) -> Option<Close> {
    err.to_string()
        .starts_with("Space limit exceeded")
        .then(|| Close::new(close_code::MESSAGE_TOO_BIG, "Message too big"))
}

/// Sends a close frame, then waits (briefly) for the client's.
async fn close(socket: &mut WebSocket, close: Close) {
    tracing::debug!(code = close.code, reason = %close.reason, "closing graphql-ws socket");
    let frame = CloseFrame {
        code: close.code,
        reason: truncate(close.reason, MAX_CLOSE_REASON).into(),
    };
    if socket.send(Message::Close(Some(frame))).await.is_ok() {
        drain(socket).await;
    }
}

/// Reads until the closing handshake completes (which also flushes our reply
/// to a client's close frame), for at most [`CLOSE_GRACE`].
async fn drain(socket: &mut WebSocket) {
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        while let Some(Ok(_)) = socket.recv().await {}
    })
    .await;
}

/// `s` cut to at most `max` bytes, on a character boundary.
fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// One running operation of a socket.
struct Op {
    /// Tells this run apart from an earlier or later one with the same id.
    key: u64,
    task: AbortHandle,
    /// What it counts against the subscription cap: its root fields for a
    /// subscription, one for a query or mutation.
    weight: usize,
}

/// A message an operation wants sent.
struct Outbound {
    key: u64,
    id: String,
    /// The serialised message.
    text: String,
    /// `error` or `complete`: the operation ends with this message.
    last: bool,
}

/// The protocol state of one socket.
struct Connection {
    st: AppState,
    /// The upgrade request's `Origin`, attached to every operation.
    origin: RequestOrigin,
    /// The client's address: the budget of a public connection.
    ip: IpAddr,
    /// `Some` once the connection is acknowledged.
    caller: Option<Caller>,
    init_received: bool,
    /// Running operations by client id.
    ops: HashMap<String, Op>,
    next_key: u64,
    out_tx: mpsc::Sender<Outbound>,
    /// Told when an operation task ends without its last message (a panic).
    gone_tx: mpsc::UnboundedSender<(u64, String)>,
    /// Since when nothing has run (meaningful while `ops` is empty).
    idle_since: Instant,
    /// Messages received, for [`Connection::meter`].
    frames: u32,
}

impl Connection {
    /// Handles one client message: `Ok(Some(reply))` to send, `Err` to close.
    async fn handle(&mut self, text: &str) -> Result<Option<String>, Close> {
        let message = ClientMessage::parse(text).map_err(Close::bad_request)?;
        // A `subscribe` is charged by what it runs; everything else is metered.
        if !matches!(message, ClientMessage::Subscribe { .. }) {
            self.meter().await?;
        }
        match message {
            ClientMessage::ConnectionInit { payload } => self.init(payload).await.map(Some),
            // A large ping payload is not echoed: a pong carries at most a
            // small one back, so pings cannot make the server write much.
            ClientMessage::Ping { payload } => Ok(Some(encode(&ServerMessage::Pong {
                payload: payload.as_ref().filter(|_| text.len() <= MAX_PING_ECHO),
            }))),
            ClientMessage::Pong => Ok(None),
            ClientMessage::Subscribe { id, payload } => self.subscribe(id, payload).await,
            ClientMessage::Complete { id } => {
                if let Some(op) = self.ops.remove(&id) {
                    op.task.abort();
                }
                self.touch();
                Ok(None)
            }
        }
    }

    /// `connection_init`: decides the caller, then acknowledges.
    async fn init(&mut self, payload: Option<Map<String, Json>>) -> Result<String, Close> {
        if self.init_received {
            return Err(Close::new(
                close_code::TOO_MANY_INITS,
                "Too many initialisation requests",
            ));
        }
        self.init_received = true;
        let forbidden = || Close::new(close_code::FORBIDDEN, "Forbidden");
        let payload = payload.unwrap_or_default();
        let caller = match payload.get("apiKey") {
            Some(Json::String(key)) => match auth::resolve(&self.st.db, key).await {
                Ok(caller) => caller,
                Err(AppError::Unauthenticated(_)) => return Err(forbidden()),
                Err(err) => {
                    tracing::error!(%err, "graphql-ws connection_init: authentication failed");
                    return Err(Close::new(close_code::INTERNAL_ERROR, "Internal error"));
                }
            },
            Some(Json::Null) | None => match payload.get("sessionToken") {
                Some(Json::String(token)) => Caller::Public {
                    session_token: Some(token.clone()),
                },
                Some(Json::Null) | None => Caller::Public {
                    session_token: None,
                },
                Some(_) => return Err(forbidden()),
            },
            Some(_) => return Err(forbidden()),
        };
        self.caller = Some(caller);
        Ok(encode(&ServerMessage::ConnectionAck))
    }

    /// Whether the socket's key (API or operator key) is `id` and is revoked (on a lagged
    /// notice, whether it is revoked at all, asking the database).
    async fn key_revoked(
        &self,
        id: Result<uuid::Uuid, tokio::sync::broadcast::error::RecvError>,
    ) -> bool {
        let Some(mine) = self.caller.as_ref().and_then(Caller::key_id) else {
            return false;
        };
        match id {
            Ok(id) => id == mine,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                auth::is_revoked(&self.st.db, mine).await
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => false,
        }
    }

    /// Charges every [`FRAMES_PER_UNIT`]-th message other than `subscribe` to the socket's budget
    /// (its address before `connection_init`), so pings, completes and other
    /// cheap messages cannot be sent without limit; over budget, the socket
    /// closes with 1008.
    async fn meter(&mut self) -> Result<(), Close> {
        self.frames = self.frames.wrapping_add(1);
        if !self.frames.is_multiple_of(FRAMES_PER_UNIT) {
            return Ok(());
        }
        let subject = match &self.caller {
            Some(caller) => super::graphql::budget(caller, self.ip),
            None => Some(super::rate_limit::Subject::Ip(self.ip)),
        };
        match subject {
            Some(subject) if self.st.rate.check(subject, 1).await.is_err() => Err(Close::new(
                close_code::POLICY_VIOLATION,
                "Too many messages: slow down",
            )),
            _ => Ok(()),
        }
    }

    /// Restarts the idle clock when nothing runs any more.
    fn touch(&mut self) {
        if self.ops.is_empty() {
            self.idle_since = Instant::now();
        }
    }

    /// `subscribe`: admits the operation (its size, the caller's rate budget,
    /// the socket's cap), then starts it in its own task.
    async fn subscribe(
        &mut self,
        id: String,
        payload: SubscribePayload,
    ) -> Result<Option<String>, Close> {
        let Some(caller) = self.caller.clone() else {
            return Err(Close::new(close_code::UNAUTHORIZED, "Unauthorized"));
        };
        if self.ops.contains_key(&id) {
            return Err(Close::new(
                close_code::SUBSCRIBER_EXISTS,
                format!("Subscriber for {id} already exists"),
            ));
        }
        let refuse = |err: AppError| {
            let extended = err.extend();
            let mut error = ServerError::new(extended.message, None);
            error.extensions = extended.extensions;
            Ok(Some(encode(&ServerMessage::Error {
                id: &id,
                payload: std::slice::from_ref(&error),
            })))
        };

        let mut request = Request::new(payload.query)
            .data(caller.clone())
            .data(self.origin.clone())
            .data(self.st.clone());
        if let Some(name) = payload.operation_name {
            request = request.operation_name(name);
        }
        if let Some(variables) = payload.variables {
            request = request.variables(Variables::from_json(Json::Object(variables)));
        }
        for (name, value) in payload.extensions.unwrap_or_default() {
            match Value::from_json(value) {
                Ok(value) => {
                    request.extensions.insert(name, value);
                }
                Err(err) => {
                    return Err(Close::bad_request(format!(
                        "\"subscribe\" message payload has an invalid extension '{name}': {err}"
                    )));
                }
            }
        }

        // Refused or not, a `subscribe` was parsed: it costs at least one unit.
        let budget = super::graphql::budget(&caller, self.ip);
        let charge = |units: u32| {
            let st = self.st.clone();
            async move {
                match budget {
                    Some(subject) => st.rate.check(subject, units).await,
                    None => Ok(()),
                }
            }
        };
        let (weight, cost) = match operation::shape(&mut request) {
            Some(shape) => {
                if let Err(err) =
                    operation::admit(&caller, &shape, self.st.config.public_max_root_fields)
                {
                    return refuse(charge(1).await.err().unwrap_or(err));
                }
                crate::metrics::metrics()
                    .operations
                    .get_or_create(&crate::metrics::OperationLabels {
                        kind: super::graphql::kind_name(shape.kind),
                        transport: "ws",
                    })
                    .inc();
                let weight = match shape.kind {
                    OperationType::Subscription => shape.root_fields.max(1),
                    _ => 1,
                };
                (weight, shape.cost())
            }
            None => (1, 1),
        };
        let running: usize = self.ops.values().map(|op| op.weight).sum();
        if running + weight > self.st.config.ws_max_subscriptions {
            let over = AppError::BadRequest(format!(
                "too many active subscriptions on this connection (at most {})",
                self.st.config.ws_max_subscriptions
            ));
            return refuse(charge(1).await.err().unwrap_or(over));
        }
        if let Err(err) = charge(cost).await {
            return refuse(err);
        }

        let key = self.next_key;
        self.next_key += 1;
        let stream = self.st.schema.execute_stream(request);
        let guard = GoneGuard {
            key,
            id: Some(id.clone()),
            tx: self.gone_tx.clone(),
        };
        let out = self.out_tx.clone();
        let op_id = id.clone();
        let task = tokio::spawn(async move {
            let mut guard = guard;
            run_operation(stream, op_id, key, out).await;
            guard.disarm();
        });
        self.ops.insert(
            id,
            Op {
                key,
                task: task.abort_handle(),
                weight,
            },
        );
        Ok(None)
    }

    /// Whether `out` may go to the client; frees the id after its last message.
    fn admit(&mut self, out: &Outbound) -> bool {
        match self.ops.get(&out.id) {
            Some(op) if op.key == out.key => {
                if out.last {
                    self.ops.remove(&out.id);
                    self.touch();
                }
                true
            }
            // Completed by the client (or superseded): send nothing more.
            _ => false,
        }
    }

    /// Frees the id of an operation whose task ended abnormally.
    fn forget(&mut self, key: u64, id: &str) {
        if self.ops.get(id).is_some_and(|op| op.key == key) {
            self.ops.remove(id);
            self.touch();
        }
    }

    fn abort_all(&mut self) {
        for (_, op) in self.ops.drain() {
            op.task.abort();
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.abort_all();
    }
}

/// Reports an operation task that ended without sending its last message
/// (it panicked), so its id does not stay taken forever.
struct GoneGuard {
    key: u64,
    /// `None` once the task finished normally.
    id: Option<String>,
    tx: mpsc::UnboundedSender<(u64, String)>,
}

impl GoneGuard {
    /// The task finished normally: its last message is already queued.
    fn disarm(&mut self) {
        self.id = None;
    }
}

impl Drop for GoneGuard {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            let _ = self.tx.send((self.key, id));
        }
    }
}

/// Streams an operation's results as `next` messages, then `complete`; or a
/// single `error` when the request never reached execution.
async fn run_operation(
    mut stream: futures_util::stream::BoxStream<'static, Response>,
    id: String,
    key: u64,
    out: mpsc::Sender<Outbound>,
) {
    let send = |text: String, last: bool| {
        out.send(Outbound {
            key,
            id: id.clone(),
            text,
            last,
        })
    };
    let mut first = true;
    while let Some(response) = stream.next().await {
        if first && is_request_error(&response) {
            let _ = send(
                encode(&ServerMessage::Error {
                    id: &id,
                    payload: &response.errors,
                }),
                true,
            )
            .await;
            return;
        }
        first = false;
        let text = encode(&ServerMessage::Next {
            id: &id,
            payload: &response,
        });
        if send(text, false).await.is_err() {
            return; // the socket is gone
        }
    }
    let _ = send(encode(&ServerMessage::Complete { id: &id }), true).await;
}

/// A response to a request that was never executed: parse, validation,
/// variable or operation-selection errors. Those carry no data and no path;
/// a resolver's error always has a path, even when it nulls the whole data.
pub(crate) fn is_request_error(response: &Response) -> bool {
    response.data == Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|e| e.path.is_empty())
}

/// Messages the server sends.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ServerMessage<'a> {
    ConnectionAck,
    Pong {
        #[serde(skip_serializing_if = "Option::is_none")]
        payload: Option<&'a Map<String, Json>>,
    },
    Next {
        id: &'a str,
        payload: &'a Response,
    },
    Error {
        id: &'a str,
        payload: &'a [ServerError],
    },
    Complete {
        id: &'a str,
    },
}

/// `message` as JSON text. Serialising these types cannot fail in practice;
/// if it ever does, the client gets a well-formed message saying so.
fn encode(message: &ServerMessage<'_>) -> String {
    match serde_json::to_string(message) {
        Ok(text) => text,
        Err(err) => {
            tracing::error!(%err, "graphql-ws message could not be serialised");
            let error = ServerError::new("internal error", None);
            let fallback = match message {
                ServerMessage::Next { id, .. } | ServerMessage::Error { id, .. } => {
                    ServerMessage::Error {
                        id,
                        payload: std::slice::from_ref(&error),
                    }
                }
                _ => ServerMessage::ConnectionAck,
            };
            serde_json::to_string(&fallback).unwrap_or_default()
        }
    }
}

/// The payload of `subscribe`.
#[derive(Debug)]
struct SubscribePayload {
    query: String,
    operation_name: Option<String>,
    variables: Option<Map<String, Json>>,
    extensions: Option<Map<String, Json>>,
}

/// Messages a client may send.
#[derive(Debug)]
enum ClientMessage {
    ConnectionInit {
        payload: Option<Map<String, Json>>,
    },
    Ping {
        payload: Option<Map<String, Json>>,
    },
    Pong,
    Subscribe {
        id: String,
        payload: SubscribePayload,
    },
    Complete {
        id: String,
    },
}

impl ClientMessage {
    /// Parses and validates one message; `Err` is the close reason.
    fn parse(text: &str) -> Result<Self, String> {
        let value: Json = serde_json::from_str(text)
            .map_err(|_| "Invalid message received: not valid JSON".to_string())?;
        let Json::Object(mut message) = value else {
            return Err(format!(
                "Message is expected to be an object, but got {}",
                kind(&value)
            ));
        };
        let ty = match message.get("type") {
            Some(Json::String(ty)) if !ty.is_empty() => ty.clone(),
            None | Some(Json::Null) => {
                return Err("Message is missing the 'type' property".into());
            }
            Some(other) => {
                return Err(format!(
                    "Message expects the 'type' property to be a non-empty string, but got {}",
                    kind(other)
                ));
            }
        };
        let payload = message.remove("payload");
        match ty.as_str() {
            "connection_init" => Ok(Self::ConnectionInit {
                payload: optional_object(&ty, "payload", payload)?,
            }),
            "ping" => Ok(Self::Ping {
                payload: optional_object(&ty, "payload", payload)?,
            }),
            "pong" => {
                optional_object(&ty, "payload", payload)?;
                Ok(Self::Pong)
            }
            "subscribe" => {
                let id = required_id(&ty, message.remove("id"))?;
                let Some(Json::Object(mut payload)) = payload else {
                    return Err(format!(
                        "\"subscribe\" message expects the 'payload' property to be an object, but got {}",
                        payload.as_ref().map_or("undefined", kind)
                    ));
                };
                let query = match payload.remove("query") {
                    Some(Json::String(query)) => query,
                    other => {
                        return Err(format!(
                            "\"subscribe\" message payload expects the 'query' property to be a string, but got {}",
                            other.as_ref().map_or("undefined", kind)
                        ));
                    }
                };
                let operation_name = match payload.remove("operationName") {
                    Some(Json::String(name)) => Some(name),
                    None | Some(Json::Null) => None,
                    Some(other) => {
                        return Err(format!(
                            "\"subscribe\" message payload expects the 'operationName' property to be a string or nullish or missing, but got {}",
                            kind(&other)
                        ));
                    }
                };
                let variables =
                    optional_object(&ty, "payload.variables", payload.remove("variables"))?;
                let extensions =
                    optional_object(&ty, "payload.extensions", payload.remove("extensions"))?;
                Ok(Self::Subscribe {
                    id,
                    payload: SubscribePayload {
                        query,
                        operation_name,
                        variables,
                        extensions,
                    },
                })
            }
            "complete" => Ok(Self::Complete {
                id: required_id(&ty, message.remove("id"))?,
            }),
            "connection_ack" | "next" | "error" => Err(format!(
                "Unexpected message of type \"{ty}\" received: only the server sends it"
            )),
            _ => Err(format!("Invalid message 'type' property \"{ty}\"")),
        }
    }
}

/// An object, or nothing for a missing or `null` field.
fn optional_object(
    ty: &str,
    field: &str,
    value: Option<Json>,
) -> Result<Option<Map<String, Json>>, String> {
    match value {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Object(map)) => Ok(Some(map)),
        Some(other) => Err(format!(
            "\"{ty}\" message expects the '{field}' property to be an object or nullish or missing, but got {}",
            kind(&other)
        )),
    }
}

/// A non-empty string id.
fn required_id(ty: &str, value: Option<Json>) -> Result<String, String> {
    match value {
        Some(Json::String(id)) if !id.is_empty() => Ok(id),
        Some(Json::String(_)) => Err(format!(
            "\"{ty}\" message requires a non-empty 'id' property"
        )),
        other => Err(format!(
            "\"{ty}\" message expects the 'id' property to be a string, but got {}",
            other.as_ref().map_or("undefined", kind)
        )),
    }
}

/// The JSON type of `value`, for close reasons.
fn kind(value: &Json) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "boolean",
        Json::Number(_) => "number",
        Json::String(_) => "string",
        Json::Array(_) => "array",
        Json::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_subscribe() {
        let msg = ClientMessage::parse(
            r#"{"type":"subscribe","id":"1","payload":{"query":"{ a }","operationName":null,"variables":{"x":1}}}"#,
        );
        match msg {
            Ok(ClientMessage::Subscribe { id, payload }) => {
                assert_eq!(id, "1");
                assert_eq!(payload.query, "{ a }");
                assert!(payload.operation_name.is_none());
                assert!(payload.variables.is_some());
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn rejects_invalid_messages() {
        for text in [
            "not json",
            "[]",
            r#"{"id":"1"}"#,
            r#"{"type":5}"#,
            r#"{"type":"nope"}"#,
            r#"{"type":"next","id":"1","payload":{}}"#,
            r#"{"type":"connection_ack"}"#,
            r#"{"type":"connection_init","payload":"x"}"#,
            r#"{"type":"subscribe","id":"","payload":{"query":"{a}"}}"#,
            r#"{"type":"subscribe","id":1,"payload":{"query":"{a}"}}"#,
            r#"{"type":"subscribe","id":"1"}"#,
            r#"{"type":"subscribe","id":"1","payload":{"query":1}}"#,
            r#"{"type":"subscribe","id":"1","payload":{"query":"{a}","variables":[]}}"#,
            r#"{"type":"complete"}"#,
        ] {
            assert!(ClientMessage::parse(text).is_err(), "{text} was accepted");
        }
    }

    #[test]
    fn accepts_optional_payloads() {
        for text in [
            r#"{"type":"connection_init"}"#,
            r#"{"type":"connection_init","payload":null}"#,
            r#"{"type":"ping","payload":{"a":1}}"#,
            r#"{"type":"pong"}"#,
            r#"{"type":"complete","id":"x"}"#,
        ] {
            assert!(ClientMessage::parse(text).is_ok(), "{text} was rejected");
        }
    }

    #[test]
    fn encodes_messages() {
        assert_eq!(
            encode(&ServerMessage::ConnectionAck),
            r#"{"type":"connection_ack"}"#
        );
        assert_eq!(
            encode(&ServerMessage::Pong { payload: None }),
            r#"{"type":"pong"}"#
        );
        assert_eq!(
            encode(&ServerMessage::Complete { id: "7" }),
            r#"{"type":"complete","id":"7"}"#
        );
    }

    #[test]
    fn truncates_on_char_boundary() {
        let s = "é".repeat(100);
        let t = truncate(s, MAX_CLOSE_REASON);
        assert!(t.len() <= MAX_CLOSE_REASON);
        assert_eq!(t.len() % 2, 0);
    }
}
