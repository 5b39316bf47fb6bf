//! Thin REST adapters over the same services as the GraphQL API, for servers
//! and scripts that would rather not speak GraphQL, and for people coming from
//! similar products:
//!
//! - `POST /widgets/{widgetId}/chat` `{message, sessionId?, pageUrl?}` runs a
//!   whole turn (as `sendMessage`) and answers `{reply, sessionId, …}`.
//! - `POST /chatbot/message` `{widgetId, name, email, message, honeypot,
//!   challenge}`: the contact form (as `submitContact`) → `{ok, message}`.
//! - `POST /api/v1/orgs/{orgId}/chatbots` with an API key: creates a bot (as
//!   `createBot`) in that org, and with `allowedOrigins` also a published chat
//!   widget for it. Another org's id is `404`, like a missing one.
//!
//! **`sessionId` is the session token.** Clients of similar REST APIs echo
//! back an opaque `sessionId` to continue a conversation, and a bare session
//! UUID must never be enough to join someone else's conversation. So here
//! `sessionId` (in and out) is the signed token that GraphQL calls
//! `sessionToken` (the answer repeats it as `sessionToken`), and the session's
//! UUID, GraphQL's `sessionId`, is `conversationId`.
//!
//! The public adapters check the widget's allowed origins like GraphQL does
//! (`http::origin`): a browser page that isn't allowed gets `403`.
//!
//! Errors are `{"error": {"code", "message", "field"?}}` with the codes of
//! the GraphQL API: `BAD_REQUEST`/`BAD_USER_INPUT` 400, `UNAUTHENTICATED`
//! 401, `FORBIDDEN` and `PLAN_REQUIRED` 403, `NOT_FOUND` 404,
//! `RATE_LIMITED` 429 (with `retryAfter` and a `Retry-After` header: every
//! call counts against the client's address, the widget's or the key's
//! budget, as over GraphQL), `INTERNAL` 503
//! (a database outage; the cause is logged, never sent). A turn itself never
//! fails: a broken or missing LLM answers the canned fallback with `200`.

use std::net::SocketAddr;

use axum::{
    Json, Router,
    body::Bytes,
    extract::{ConnectInfo, Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{
    origin::{self, RequestOrigin},
    rate_limit::Subject,
};
use crate::{
    auth::{self, Caller},
    error::AppError,
    service::{
        self,
        bot::{BotLabels, CreateBotInput},
        chat_widget::CreateChatWidgetInput,
        contact::ContactSubmission,
    },
    state::AppState,
    turn::{
        self, TurnRequest,
        events::{Citation, TurnContent},
    },
};

/// The REST routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/widgets/{widget_id}/chat", post(widget_chat))
        .route("/chatbot/message", post(contact))
        .route("/api/v1/orgs/{org_id}/chatbots", post(create_chatbot))
}

/// A failed REST call: the status and body it answers with.
pub(super) enum RestError {
    /// A service error, answered with its code.
    App(AppError),
    /// A body that is not the JSON the endpoint takes (`BAD_REQUEST`).
    Body(String),
}

impl From<AppError> for RestError {
    fn from(err: AppError) -> Self {
        Self::App(err)
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        let err = match self {
            Self::App(err) => err,
            Self::Body(message) => {
                return (
                    StatusCode::BAD_REQUEST,
                    Json(json!({ "error": { "code": "BAD_REQUEST", "message": message } })),
                )
                    .into_response();
            }
        };
        let status = match &err {
            AppError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) | AppError::PlanRequired { .. } => StatusCode::FORBIDDEN,
            AppError::NotFound { .. } => StatusCode::NOT_FOUND,
            AppError::BadInput { .. } | AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::RateLimited { .. } | AppError::TooManySockets { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            AppError::Internal(cause) => {
                tracing::error!(%cause, "REST adapter failed");
                StatusCode::SERVICE_UNAVAILABLE
            }
        };
        let mut body = json!({ "code": err.code(), "message": err.to_string() });
        match &err {
            AppError::BadInput { field, .. } => body["field"] = json!(field),
            AppError::NotFound { field: Some(f), .. } => body["field"] = json!(f),
            AppError::PlanRequired { required } => body["requiredPlan"] = json!(required),
            AppError::RateLimited { retry_after } => body["retryAfter"] = json!(retry_after),
            _ => {}
        }
        let mut response = (status, Json(json!({ "error": body }))).into_response();
        if let AppError::RateLimited { retry_after } = &err {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(*retry_after),
            );
        }
        response
    }
}

/// Reads a JSON body (whatever its content type: browsers send text/plain to
/// avoid a CORS preflight).
pub(super) fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, RestError> {
    serde_json::from_slice(body)
        .map_err(|err| RestError::Body(format!("the body is not valid: {err}")))
}

/// The answer of a handler: its JSON with `status`, or the error's.
pub(super) fn respond<T: Serialize>(status: StatusCode, result: Result<T, RestError>) -> Response {
    match result {
        Ok(body) => (status, Json(body)).into_response(),
        Err(err) => err.into_response(),
    }
}

/// A path segment that must be a UUID; anything else is a missing `what`.
fn path_id(raw: &str, what: &'static str) -> Result<Uuid, RestError> {
    Uuid::parse_str(raw).map_err(|_| AppError::not_found(what).into())
}

/// The body of `POST /widgets/{widgetId}/chat`. Its `Debug` leaves the
/// session token out: it unlocks a conversation.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChatBody {
    /// What the visitor wrote.
    message: String,
    /// The `sessionId` of an earlier answer (the session token), to continue it.
    #[serde(default)]
    session_id: Option<String>,
    /// Accepted as a synonym of `sessionId`.
    #[serde(default)]
    session_token: Option<String>,
    /// The page the visitor is on.
    #[serde(default)]
    page_url: Option<String>,
    /// The host app's user id (with `userHash`): a signed identity.
    #[serde(default)]
    user_id: Option<String>,
    /// `HMAC-SHA256(identitySecret, userId)`, hex.
    #[serde(default)]
    user_hash: Option<String>,
    /// Profile traits of the identified user.
    #[serde(default)]
    traits: Option<serde_json::Value>,
}

impl std::fmt::Debug for ChatBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let token = |t: &Option<String>| t.as_ref().map(|_| "<redacted>");
        f.debug_struct("ChatBody")
            .field("message", &self.message)
            .field("session_id", &token(&self.session_id))
            .field("session_token", &token(&self.session_token))
            .field("page_url", &self.page_url)
            .field("user_id", &self.user_id)
            .field("user_hash", &token(&self.user_hash))
            .finish()
    }
}

/// The answer of `POST /widgets/{widgetId}/chat`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ChatReply {
    reply: String,
    /// Send it back as `sessionId` to continue the conversation (the session token).
    session_id: String,
    /// The same token, under its GraphQL name.
    session_token: String,
    /// The session's UUID (GraphQL's `sessionId`).
    conversation_id: Uuid,
    turn_id: Uuid,
    /// The stored reply, to vote on with `submitFeedback`.
    message_id: Option<Uuid>,
    /// `ANSWERED`, `FALLBACK`, …
    status: &'static str,
    citations: Vec<Citation>,
    content: Option<TurnContent>,
    navigate_to: Option<String>,
    handoff_offered: bool,
    model: Option<String>,
}

async fn widget_chat(
    State(st): State<AppState>,
    Path(widget_id): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result: Result<_, RestError> = async {
        limit_public(&st, &headers, peer).await?;
        chat(&st, &widget_id, &headers, parse(&body)?).await
    }
    .await;
    respond(StatusCode::OK, result)
}

/// Charges one call to the client's address (public REST calls are
/// operations like any other; the widget's own budget is charged by the service).
pub(super) async fn limit_public(
    st: &AppState,
    headers: &HeaderMap,
    peer: SocketAddr,
) -> Result<(), RestError> {
    let ip = super::client_ip::client_ip(headers, peer.ip(), st.config.trusted_proxies);
    Ok(st.rate.check(Subject::Ip(ip), 1).await?)
}

async fn chat(
    st: &AppState,
    widget_id: &str,
    headers: &HeaderMap,
    body: ChatBody,
) -> Result<ChatReply, RestError> {
    let widget_id = path_id(widget_id, "chat widget")?;
    let caller = Caller::Public {
        session_token: None,
    };
    let (widget, _) = service::chat_widget::public(st, widget_id).await?;
    origin::enforce(&widget, &RequestOrigin::from_headers(headers), &caller)?;
    let session_token = body
        .session_id
        .or(body.session_token)
        .filter(|t| !t.trim().is_empty());
    let started = turn::start(
        st,
        &caller,
        TurnRequest {
            widget_id: Some(widget_id),
            message: body.message,
            session_token,
            page_url: body.page_url,
            identity: service::identity::IdentityClaim {
                user_id: body.user_id,
                user_hash: body.user_hash,
                traits: body.traits,
            },
            ..Default::default()
        },
    )
    .await?;
    let (turn_id, conversation_id, token) = (
        started.turn_id,
        started.session_id,
        started.session_token.clone(),
    );
    // Detached, so a client that hangs up can't cut the turn short.
    let outcome = tokio::spawn(turn::run(st.clone(), started))
        .await
        .map_err(AppError::internal)?;
    Ok(ChatReply {
        reply: outcome.text,
        session_id: token.clone(),
        session_token: token,
        conversation_id,
        turn_id,
        message_id: outcome.message_id,
        status: outcome.status.as_str(),
        citations: outcome.citations,
        content: outcome.content,
        navigate_to: outcome.navigate_to,
        handoff_offered: outcome.handoff_offered,
        model: outcome.model,
    })
}

/// `POST /chatbot/message`: the contact form.
async fn contact(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result: Result<_, RestError> = async {
        limit_public(&st, &headers, peer).await?;
        let input: ContactSubmission = parse(&body)?;
        let (widget, _) = service::chat_widget::public(&st, input.widget_id).await?;
        origin::enforce(
            &widget,
            &RequestOrigin::from_headers(&headers),
            &Caller::Public {
                session_token: None,
            },
        )?;
        let outcome = service::contact::submit_contact(&st, input).await?;
        Ok(json!({ "ok": outcome.ok, "message": outcome.message }))
    }
    .await;
    respond(StatusCode::OK, result)
}

/// The body of `POST /api/v1/orgs/{orgId}/chatbots`: `createBot`'s input,
/// plus `allowedOrigins` to get an embeddable widget at once.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ChatbotBody {
    name: String,
    system_prompt: Option<String>,
    persona_name: Option<String>,
    greeting: Option<String>,
    knowledge_base_ids: Option<Vec<Uuid>>,
    site_id: Option<Uuid>,
    fallback_to_human: Option<bool>,
    handoff_message: Option<String>,
    fallback_message: Option<String>,
    primary_color: Option<String>,
    accent_color: Option<String>,
    labels: Option<BotLabels>,
    /// When given (even empty), a published chat widget is created for the bot.
    allowed_origins: Option<Vec<String>>,
}

async fn create_chatbot(
    State(st): State<AppState>,
    Path(org_id): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result: Result<_, RestError> = async {
        // Who is asking comes before what they ask: no key, no hints about the body.
        let scope = match authorize(&st, &org_id, &headers).await {
            Ok(scope) => scope,
            Err(RestError::App(AppError::Unauthenticated(msg))) => {
                // A missing or wrong key costs the address, like a public call.
                limit_public(&st, &headers, peer).await?;
                return Err(AppError::Unauthenticated(msg).into());
            }
            Err(err) => return Err(err),
        };
        if let Some(key_id) = scope.api_key_id() {
            st.rate.check(Subject::ApiKey(key_id), 1).await?;
        }
        create(&st, &scope, parse(&body)?).await
    }
    .await;
    respond(StatusCode::CREATED, result)
}

/// The caller's scope, when its API key belongs to org `org_id`.
async fn authorize(
    st: &AppState,
    org_id: &str,
    headers: &HeaderMap,
) -> Result<auth::OrgScope, RestError> {
    let key = super::graphql::api_key(headers).ok_or(AppError::Unauthenticated(
        "this endpoint needs an API key (x-api-key header or Authorization: Bearer)",
    ))?;
    let scope = auth::authenticate(&st.db, Some(&st.keys), key).await?;
    if path_id(org_id, "org")? != scope.org_id() {
        return Err(AppError::not_found("org").into());
    }
    Ok(scope)
}

async fn create(
    st: &AppState,
    scope: &auth::OrgScope,
    body: ChatbotBody,
) -> Result<Value, RestError> {
    let bot = service::bot::create(
        st,
        scope,
        CreateBotInput {
            name: body.name,
            system_prompt: body.system_prompt,
            persona_name: body.persona_name,
            greeting: body.greeting,
            knowledge_base_ids: body.knowledge_base_ids,
            site_id: body.site_id,
            fallback_to_human: body.fallback_to_human,
            handoff_message: body.handoff_message,
            fallback_message: body.fallback_message,
            primary_color: body.primary_color,
            accent_color: body.accent_color,
            labels: body.labels,
        },
    )
    .await?;
    let widget = match body.allowed_origins {
        Some(origins) => Some(
            service::chat_widget::create(
                st,
                scope,
                CreateChatWidgetInput {
                    bot_id: bot.id,
                    site_id: bot.site_id,
                    name: Some(bot.name.clone()),
                    allowed_origins: Some(origins),
                    published: Some(true),
                    identity_required: None,
                },
            )
            .await?,
        ),
        None => None,
    };
    Ok(json!({
        "id": bot.id,
        "orgId": bot.org_id,
        "name": bot.name,
        "personaName": bot.persona_name,
        "greeting": bot.greeting,
        "systemPrompt": bot.system_prompt,
        "siteId": bot.site_id,
        "fallbackToHuman": bot.fallback_to_human,
        "primaryColor": bot.primary_color,
        "accentColor": bot.accent_color,
        "createdAt": bot.created_at,
        "widget": widget.map(|(w, identity_secret)| json!({
            "id": w.id,
            "allowedOrigins": service::chat_widget::allowed_origins(&w),
            "published": w.published,
            "identityRequired": w.identity_required,
            // Shown this once: only its sealed form is stored.
            "identitySecret": identity_secret,
        })),
    }))
}
