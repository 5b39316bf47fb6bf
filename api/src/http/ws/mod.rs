//! GraphQL over WebSocket: the `graphql-transport-ws` subprotocol (its
//! messages and close codes in [`protocol`]), and the connection loop.
//!
//! async-graphql's own websocket handler does not follow graphql-ws's
//! PROTOCOL.md to the letter (close codes, `error` vs `next`, duplicate ids),
//! so this module speaks the protocol itself over [`Schema::execute_stream`]
//! and axum's [`WebSocket`].
//!
//! One task per socket owns the socket and runs a select loop over: incoming
//! frames, the messages of its running operations, keep-alive ticks and the
//! initialisation deadline. The operations are streams polled by that same
//! task (no task, channel or buffer per operation: an idle socket with one
//! subscription is one small task, the socket's buffers and the
//! subscription's own state, not async-graphql's execution of it: see
//! [`live`]), so a slow client slows its own operations down
//! instead of piling up memory, and nothing is sent after a client's
//! `complete` (its stream is dropped at once). A panic in an operation ends
//! that operation with an `error`, not the socket.
//!
//! What is rare and large is boxed so that it costs only while it runs: the
//! handling of a client message (authentication, admission: database and
//! rate-limit futures) and the closing handshake. What an idle socket holds
//! is measured in `benches/sockets.rs` (README, "Performance").
//!
//! What bounds a socket: at most `WAYFINDER_WS_MAX_SOCKETS_PER_IP` sockets
//! per client address ([`sockets_per_ip`]); every `subscribe` is charged to
//! the caller's rate budget (its root fields, like an HTTP request) and
//! public callers run only small operations; at most
//! `WAYFINDER_WS_MAX_SUBSCRIPTIONS` root subscription fields run at once; the
//! server pings every `WAYFINDER_WS_PING_SECS` and drops a peer that stops
//! answering; a send that the client does not read within
//! `WAYFINDER_WS_WRITE_TIMEOUT_SECS` drops the socket; a socket with nothing
//! running for `WAYFINDER_WS_IDLE_SECS` is closed (1000); a revoked API key
//! closes its sockets (4403) on every replica; shutdown closes every socket
//! with 1001.
//!
//! [`Schema::execute_stream`]: async_graphql::Schema::execute_stream
//! [`live`]: crate::graphql::subscription::live

mod protocol;
pub mod sockets_per_ip;

use std::{
    any::Any,
    net::IpAddr,
    panic::AssertUnwindSafe,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use async_graphql::{
    ErrorExtensions, Extensions, Request, Response, ServerError, Value, Variables,
    parser::types::OperationType,
};
use axum::{
    extract::{
        State,
        ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade},
    },
    response::Response as HttpResponse,
};
use futures_util::{StreamExt, stream::BoxStream};
use serde_json::{Map, Value as Json};
use tokio::time::{Instant, Sleep};

use self::protocol::{
    ClientMessage, MAX_CLOSE_REASON, ServerMessage, SubscribePayload, close_code, encode, truncate,
};
pub use self::sockets_per_ip::{SocketPermit, SocketsPerIp};
use super::origin::RequestOrigin;
use crate::{
    auth::{self, Caller},
    error::AppError,
    graphql::{
        operation,
        subscription::live::{Delivered, Events, HandOver},
    },
    state::AppState,
};

/// The only subprotocol spoken here.
pub const PROTOCOL: &str = "graphql-transport-ws";

/// Messages of any kind that together cost one rate-limit unit.
const FRAMES_PER_UNIT: u32 = 20;

/// Longest ping message whose payload the pong echoes back.
const MAX_PING_ECHO: usize = 1024;

/// Initial capacity of a socket's read buffer, which an idle socket keeps
/// allocated while it waits for the next frame. axum's default (128 KiB per
/// socket, allocated up front) made an idle socket cost ~150 KB; graphql-ws
/// client messages are small (a `subscribe` is a few hundred bytes), and the
/// buffer grows to hold a larger frame (up to the body limit, checked by
/// `max_message_size`): a big message costs more reads, not more resident
/// memory for every socket.
const READ_BUFFER: usize = 512;

/// Longest document a subscription may have: the socket keeps its text for
/// as long as it runs and parses it again for every event, so a document
/// padded with comments or unused operations would cost memory and work per
/// event. A widget's or a dashboard's subscription is a few hundred bytes.
const MAX_SUBSCRIPTION_DOCUMENT: usize = 8 * 1024;

/// Bytes buffered before a write goes to the socket: none. Every message is
/// written (and, with `TCP_NODELAY`, sent) at once instead of waiting in a
/// 128 KiB per-socket buffer; the socket task flushes after each message anyway.
const WRITE_BUFFER: usize = 0;

/// How long to wait for the client's close frame after sending ours.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Upgrades to a graphql-ws socket; every operation on it carries the
/// upgrade request's `origin` (checked by the widget operations). An address
/// that already holds its most sockets is refused with 429
/// `TOO_MANY_SOCKETS` before the upgrade.
pub async fn handler(
    State(st): State<AppState>,
    ws: WebSocketUpgrade,
    origin: RequestOrigin,
    ip: IpAddr,
) -> HttpResponse {
    let permit = match st.sockets_per_ip.acquire(ip) {
        Ok(permit) => permit,
        Err(err) => return super::graphql::refusal(err, super::media::ResponseType::Json),
    };
    let limit = st.config.body_limit;
    ws.protocols([PROTOCOL])
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| serve(st, socket, origin, ip, permit))
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
async fn serve(
    st: AppState,
    mut socket: WebSocket,
    origin: RequestOrigin,
    ip: IpAddr,
    _permit: SocketPermit,
) {
    let offered = socket
        .protocol()
        .is_some_and(|p| p.as_bytes() == PROTOCOL.as_bytes());
    if !offered {
        let refusal = Close::new(
            close_code::SUBPROTOCOL_NOT_ACCEPTABLE,
            "Subprotocol not acceptable",
        );
        Box::pin(close(&mut socket, refusal)).await;
        return;
    }

    let _open = crate::metrics::GaugeGuard::new(&crate::metrics::metrics().open_sockets);
    let init_timeout = st.config.ws_init_timeout();
    let ping_every = Duration::from_secs(st.config.ws_ping_secs.max(1));
    let write_timeout = Duration::from_secs(st.config.ws_write_timeout_secs.max(1));
    let idle_after = Duration::from_secs(st.config.ws_idle_secs.max(1));
    let mut shutdown = st.shutdown.subscribe();
    let mut revoked = st.revoked_keys.subscribe();
    let mut conn = Connection {
        st,
        origin,
        ip,
        caller: None,
        init_received: false,
        ops: Vec::new(),
        turn: 0,
        idle_since: Instant::now(),
        frames: 0,
    };

    // A zero wait means "wait forever", as in the reference server. Boxed
    // and dropped once `connection_init` arrives: an open socket keeps no
    // timer for it.
    let mut deadline: Option<Pin<Box<Sleep>>> =
        (!init_timeout.is_zero()).then(|| Box::pin(tokio::time::sleep(init_timeout)));
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
                // Boxed: authenticating and admitting are large futures
                // that an idle socket should not carry.
                match Box::pin(conn.handle(&text)).await {
                    Ok(None) => {}
                    Ok(Some(reply)) => {
                        if !send(&mut socket, Message::text(reply), write_timeout).await {
                            break None;
                        }
                    }
                    Err(close) => break Some(close),
                }
                if conn.init_received {
                    deadline = None;
                }
            }
            out = std::future::poll_fn(|cx| conn.poll_out(cx)), if !conn.ops.is_empty() => {
                if !send(&mut socket, Message::text(out), write_timeout).await {
                    break None;
                }
            }
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
                let revoked = Connection::key_revoked(conn.st.clone(), conn.caller.as_ref(), id);
                if Box::pin(revoked).await {
                    break Some(Close::new(close_code::FORBIDDEN, "Forbidden: API key revoked"));
                }
            }
            () = expired(&mut deadline) => {
                break Some(Close::new(
                    close_code::INIT_TIMEOUT,
                    "Connection initialisation timeout",
                ));
            }
        }
    };

    // Stop every operation before anything else: nothing more goes out.
    drop(conn);
    match ending {
        Some(reason) => Box::pin(close(&mut socket, reason)).await,
        None => Box::pin(drain(&mut socket)).await,
    }
}

/// Resolves when the initialisation deadline passes; never without one.
async fn expired(deadline: &mut Option<Pin<Box<Sleep>>>) {
    match deadline {
        Some(sleep) => sleep.as_mut().await,
        None => std::future::pending().await,
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

/// A message an operation wants sent.
struct Outbound {
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
    /// Running operations, polled by the socket task ([`Connection::poll_out`]);
    /// a client's `complete` drops its operation at once. Bounded by the
    /// subscription cap.
    ops: Vec<OperationMessages>,
    /// Which of `ops` is polled first next time, so that none starves.
    turn: usize,
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
                self.ops.retain(|op| op.id != id);
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
            Some(Json::String(key)) => match auth::resolve(&self.st.db, None, key).await {
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
    /// (Not a method: the connection's streams are not `Sync`, so a borrow
    /// of it cannot be held across an await.)
    async fn key_revoked(
        st: AppState,
        caller: Option<&Caller>,
        id: Result<uuid::Uuid, tokio::sync::broadcast::error::RecvError>,
    ) -> bool {
        let Some(mine) = caller.and_then(Caller::key_id) else {
            return false;
        };
        match id {
            Ok(id) => id == mine,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                auth::is_revoked(&st.db, mine).await
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
        if self.ops.iter().any(|op| op.id == id) {
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

        let mut extensions = Extensions::default();
        for (name, value) in payload.extensions.unwrap_or_default() {
            match Value::from_json(value) {
                Ok(value) => {
                    extensions.insert(name, value);
                }
                Err(err) => {
                    return Err(Close::bad_request(format!(
                        "\"subscribe\" message payload has an invalid extension '{name}': {err}"
                    )));
                }
            }
        }
        let recipe = Recipe {
            query: payload.query,
            operation_name: payload.operation_name,
            variables: payload
                .variables
                .map(|v| Variables::from_json(Json::Object(v)))
                .unwrap_or_default(),
            extensions,
            caller: caller.clone(),
            origin: self.origin.clone(),
        };
        let handed = Arc::new(HandOver::default());
        let mut request = recipe.request(&self.st).data(handed.clone());

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
                if shape.kind == OperationType::Subscription
                    && recipe.query.len() > MAX_SUBSCRIPTION_DOCUMENT
                {
                    let err = AppError::BadRequest(format!(
                        "a subscription's document is at most {MAX_SUBSCRIPTION_DOCUMENT} bytes (it is kept, and parsed again for every event)"
                    ));
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
        let running: usize = self.ops.iter().map(|op| op.weight).sum();
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

        // One place at a time: most sockets run one subscription, and a
        // doubling Vec would hold room for four (~1 KB) for it.
        self.ops.reserve_exact(1);
        self.ops.push(OperationMessages {
            results: Some(self.st.schema.execute_stream(request)),
            st: self.st.clone(),
            recipe,
            handed: Some(handed),
            events: None,
            id,
            weight,
            first: true,
        });
        Ok(None)
    }

    /// The next message of any running operation, taking them in turn; an
    /// operation is dropped with its last message, which frees its id.
    fn poll_out(&mut self, cx: &mut Context<'_>) -> Poll<String> {
        let mut i = 0;
        while i < self.ops.len() {
            let at = (self.turn + i) % self.ops.len();
            match self.ops[at].poll_message(cx) {
                Poll::Ready(out) => {
                    if out.last {
                        drop(self.ops.swap_remove(at));
                        self.touch();
                    }
                    self.turn = at + 1;
                    return Poll::Ready(out.text);
                }
                Poll::Pending => i += 1,
            }
        }
        Poll::Pending
    }
}

/// What it takes to execute an operation again: the `subscribe` message's
/// request and the socket's caller and origin.
struct Recipe {
    query: String,
    operation_name: Option<String>,
    variables: Variables,
    extensions: Extensions,
    caller: Caller,
    origin: RequestOrigin,
}

impl Recipe {
    fn request(&self, st: &AppState) -> Request {
        let mut request = Request::new(self.query.clone())
            .variables(self.variables.clone())
            .data(self.caller.clone())
            .data(self.origin.clone())
            .data(st.clone());
        request.operation_name = self.operation_name.clone();
        request.extensions = self.extensions.clone();
        request
    }
}

/// One operation's protocol messages: its results as `next` messages, then
/// `complete`; or a single `error` when the request never reached execution
/// (or a resolver panicked).
///
/// A subscription's root field hands its event stream over in its first
/// execution ([`live`]); the operation then owns it and resolves each event by
/// executing the operation again with it, one event at a time, in order.
struct OperationMessages {
    /// The execution whose results are being sent, if one runs.
    results: Option<BoxStream<'static, Response>>,
    st: AppState,
    recipe: Recipe,
    /// Where the first execution's root field leaves its events; taken
    /// into `events` when it ends.
    handed: Option<Arc<HandOver>>,
    /// The handed-over stream, with its response key.
    events: Option<(String, Events)>,
    /// The client's id of the operation.
    id: String,
    /// What it counts against the subscription cap: its root fields for a
    /// subscription, one for a query or mutation.
    weight: usize,
    /// No result seen yet (a request error can only be the first).
    first: bool,
}

impl OperationMessages {
    fn message(&self, message: &ServerMessage<'_>, last: bool) -> Outbound {
        Outbound {
            text: encode(message),
            last,
        }
    }

    fn panicked(&self) -> Outbound {
        tracing::error!(id = %self.id, "a graphql-ws operation panicked");
        let error = ServerError::new("internal error", None);
        let error = ServerMessage::Error {
            id: &self.id,
            payload: std::slice::from_ref(&error),
        };
        self.message(&error, true)
    }

    /// The next handed-over event, with the key of its field; `Ready(None)`
    /// once its stream has ended (or when nothing was handed over).
    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<(String, Box<dyn Any + Send>)>> {
        let Some((key, events)) = self.events.as_mut() else {
            return Poll::Ready(None);
        };
        events
            .poll_next_unpin(cx)
            .map(|event| event.map(|event| (key.clone(), event)))
    }

    /// The operation's next message. After one marked `last` it must not be
    /// polled again: [`Connection::poll_out`] drops it.
    fn poll_message(&mut self, cx: &mut Context<'_>) -> Poll<Outbound> {
        loop {
            // A panicking resolver ends its operation with an `error`, like
            // any failure; the socket and its other operations go on.
            if let Some(results) = self.results.as_mut() {
                match std::panic::catch_unwind(AssertUnwindSafe(|| results.poll_next_unpin(cx))) {
                    Ok(Poll::Pending) => return Poll::Pending,
                    Ok(Poll::Ready(Some(response))) => {
                        let first = std::mem::replace(&mut self.first, false);
                        let out = if first && is_request_error(&response) {
                            let error = ServerMessage::Error {
                                id: &self.id,
                                payload: &response.errors,
                            };
                            self.message(&error, true)
                        } else {
                            let next = ServerMessage::Next {
                                id: &self.id,
                                payload: &response,
                            };
                            self.message(&next, false)
                        };
                        return Poll::Ready(out);
                    }
                    Ok(Poll::Ready(None)) => {
                        self.results = None;
                        // Only the first execution's first result can be a
                        // request error; an event's result is always `next`.
                        self.first = false;
                        if let Some(handed) = self.handed.take() {
                            self.events = handed.take();
                        }
                    }
                    Err(_) => return Poll::Ready(self.panicked()),
                }
            }
            match std::panic::catch_unwind(AssertUnwindSafe(|| self.poll_event(cx))) {
                Ok(Poll::Pending) => return Poll::Pending,
                Ok(Poll::Ready(Some((key, event)))) => {
                    let request = self
                        .recipe
                        .request(&self.st)
                        .data(Delivered::new(key, event));
                    self.results = Some(self.st.schema.execute_stream(request));
                }
                Ok(Poll::Ready(None)) => {
                    return Poll::Ready(
                        self.message(&ServerMessage::Complete { id: &self.id }, true),
                    );
                }
                Err(_) => return Poll::Ready(self.panicked()),
            }
        }
    }
}

/// A response to a request that was never executed: parse, validation,
/// variable or operation-selection errors. Those carry no data and no path;
/// a resolver's error always has a path, even when it nulls the whole data.
pub(crate) fn is_request_error(response: &Response) -> bool {
    response.data == Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|e| e.path.is_empty())
}
