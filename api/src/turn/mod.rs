//! The chat-turn pipeline (SPEC §3): a visitor's message becomes stored,
//! streamed turn events, ending in `COMPLETED`, whatever a provider or the
//! input does.
//!
//! [`start`] validates, finds or creates the session and stores the user
//! message (`ANALYZING`) before anything else can fail; [`run`] does the rest
//! and never fails: every problem becomes the canned fallback. Order of
//! decisions: AI switched off → fallback; retrieve from the bot's knowledge
//! bases; no LLM configured → extractive answer from the best articles; else
//! a grounded, streamed LLM answer with citations; anything wrong with the
//! LLM → fallback. Traits extraction runs after the reply, detached.

pub mod answer;
pub mod events;
pub mod extractive;
pub mod generator;
pub mod matcher;
pub mod paid_call;
pub mod retrieval;
pub mod traits;

use std::{sync::Arc, time::Duration};

use entity::{bot, chat_session, chat_widget, org};
use futures_util::StreamExt;
use sea_orm::EntityTrait;
use uuid::Uuid;

use self::{
    events::{Citation, Emitter, EventPayload, TurnContent, TurnEvent},
    retrieval::Hit,
};
use crate::{
    auth::Caller,
    domain::{self, TurnStatus},
    error::AppError,
    llm::{ChatRequest, LlmProvider, StreamEvent},
    service::{self, chat, new_id},
    state::AppState,
};

/// Longest visitor message.
pub const MESSAGE_MAX: usize = 4_000;
/// Articles retrieved per turn.
const RETRIEVE: usize = 5;
/// Past exchanges considered for the prompt (then cut to a character budget).
const HISTORY_TURNS: u64 = 6;
/// Flush streamed text to subscribers once this many bytes are buffered.
const DELTA_FLUSH_BYTES: usize = 24;

/// What a visitor (or a dashboard testing a bot) sends. (`Debug` never shows the session token.)
#[derive(Clone, Default)]
pub struct TurnRequest {
    pub widget_id: Option<Uuid>,
    pub bot_id: Option<Uuid>,
    pub message: String,
    pub session_token: Option<String>,
    pub page_url: Option<String>,
    /// The host app's signed identity of the visitor, if the page sent one.
    pub identity: service::identity::IdentityClaim,
}

impl std::fmt::Debug for TurnRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnRequest")
            .field("widget_id", &self.widget_id)
            .field("bot_id", &self.bot_id)
            .field("message", &self.message)
            .field(
                "session_token",
                &crate::secret::redacted(&self.session_token),
            )
            .field("page_url", &self.page_url)
            .field("identity", &self.identity)
            .finish()
    }
}

/// A turn whose user message is stored; [`run`] finishes it.
pub struct StartedTurn {
    pub turn_id: Uuid,
    pub session_id: Uuid,
    pub session_token: String,
    /// The stored `ANALYZING` event.
    pub first: TurnEvent,
    org: org::Model,
    bot: bot::Model,
    session: chat_session::Model,
    message: String,
    page_url: Option<String>,
    /// The bot's knowledge bases, as the turn started.
    knowledge_base_ids: Vec<Uuid>,
    emitter: Emitter,
}

/// How a turn ended.
#[derive(Debug, Clone)]
pub struct TurnOutcome {
    /// `ANSWERED`, `FALLBACK`, … : the status of the reply.
    pub status: TurnStatus,
    /// The reply text.
    pub text: String,
    pub citations: Vec<Citation>,
    pub content: Option<TurnContent>,
    pub navigate_to: Option<String>,
    pub handoff_offered: bool,
    /// The stored reply message (to vote on).
    pub message_id: Option<Uuid>,
    pub model: Option<String>,
}

/// Validates the request, resolves widget/bot and session, and stores the user message.
pub async fn start(
    st: &AppState,
    caller: &Caller,
    req: TurnRequest,
) -> Result<StartedTurn, AppError> {
    let message = domain::text("input.message", &req.message, 1, MESSAGE_MAX)?;
    if let Some(url) = &req.page_url {
        domain::page_url("input.pageUrl", url)?;
    }
    let token = caller.session_token_or(req.session_token.clone());
    // The token's session is read beside the widget and its bot (two
    // statements at once, not one after the other); its result is looked at
    // after theirs, so errors come in the same order as ever.
    let current = async {
        match &token {
            Some(token) => chat::verify_token_with_visitor(st, token).await.map(Some),
            None => Ok(None),
        }
    };
    let place = async {
        match (req.widget_id, req.bot_id) {
            (Some(widget_id), _) => service::chat_widget::public(st, widget_id)
                .await
                .map(|(widget, bot)| (bot, Some(widget)))
                .map_err(|_| AppError::not_found_in("chat widget", "input.widgetId")),
            (None, Some(bot_id)) => {
                let scope = caller.scope()?;
                let bot =
                    service::get_ref::<bot::Entity>(&st.db, scope, bot_id, "input.botId").await?;
                Ok((bot, None))
            }
            (None, None) => Err(AppError::bad_input(
                "input.widgetId",
                "give the widgetId (or, with an API key, a botId)",
            )),
        }
    };
    let (place, current) = tokio::join!(place, current);
    let (bot, widget): (bot::Model, Option<chat_widget::Model>) = place?;
    if let (Some(widget), Caller::Public { .. }) = (&widget, caller) {
        service::chat_widget::charge(st, widget.id).await?;
    }
    let identity = match &widget {
        Some(w) => service::identity::verify(st, w, &req.identity)?,
        None => {
            service::identity::refuse_without_widget(&req.identity)?;
            None
        }
    };
    let current = current?;
    if let Some((session, _)) = &current {
        let same_place =
            session.chat_widget_id == widget.as_ref().map(|w| w.id) && session.bot_id == bot.id;
        if !same_place {
            return Err(AppError::Forbidden(
                "this session token belongs to another widget".into(),
            ));
        }
    }
    // The org (a session is always its bot's org's) and the bot's knowledge
    // bases, which `run` retrieves from, are read beside the session's writes.
    let (session, org, knowledge_base_ids) = tokio::join!(
        service::identity::session_for(st, &bot, widget.as_ref(), current, identity),
        org::Entity::find_by_id(bot.org_id).one(&st.db),
        service::bot::knowledge_base_ids(&st.db, bot.id),
    );
    let session = session?;
    let org = org?.ok_or_else(|| AppError::internal("session without org"))?;
    let knowledge_base_ids = knowledge_base_ids?;
    let session_token = chat::mint_token(st, &session)?;
    let turn_id = new_id();
    let mut emitter = Emitter::new(st.clone(), session.clone(), turn_id);
    let payload = EventPayload {
        navigate_to: None,
        ..Default::default()
    };
    let first = emitter
        .emit(
            TurnStatus::Analyzing,
            "user",
            message.clone(),
            payload,
            None,
            0,
        )
        .await?;
    chat::turn_started(&st.db, &session).await;
    Ok(StartedTurn {
        turn_id,
        session_id: session.id,
        session_token,
        first,
        org,
        bot,
        session,
        message,
        page_url: req.page_url.clone(),
        knowledge_base_ids,
        emitter,
    })
}

/// Token purpose of orgs' own LLM API keys sealed at rest.
pub const BYOK_PURPOSE: &str = "byok-llm-key";

/// The plan an org needs for its own (bring-your-own-key) LLM settings to be used.
pub const BYOK_PLAN: domain::Plan = domain::Plan::Growth;

/// The provider and model for `org`: its own (bring-your-own-key) settings
/// when it has them and its plan includes [`BYOK_PLAN`] (a downgraded org
/// is back on the server's provider), else the server's configured
/// provider, if any. An org's own base URL is customer-controlled: its
/// provider goes through the outbound guard.
pub fn provider_for(st: &AppState, org: &org::Model) -> Option<(Arc<dyn LlmProvider>, String)> {
    use crate::llm::{ProviderKind, ProviderSettings, build_provider};
    let server = || st.llm.clone().map(|p| (p, st.config.llm_model.clone()));
    let Some(kind) = org.llm_provider.as_deref().and_then(ProviderKind::parse) else {
        return server();
    };
    match domain::Plan::from_stored(&org.plan) {
        Ok(plan) if plan.includes(BYOK_PLAN) => {}
        Ok(_) => return server(),
        Err(err) => {
            tracing::error!(%err, org_id = %org.id, "unknown plan; ignoring the org's own LLM settings");
            return server();
        }
    }
    let model = org
        .llm_model
        .clone()
        .unwrap_or_else(|| st.config.llm_model.clone());
    if let Ok(cache) = st.org_llm.lock()
        && let Some((at, p)) = cache.get(&org.id)
        && *at == org.updated_at
    {
        return Some((p.clone(), model));
    }
    let api_key = match &org.llm_api_key_sealed {
        Some(sealed) => match st.secret.open(BYOK_PURPOSE, org.id.as_bytes(), sealed) {
            Some(k) => Some(String::from_utf8_lossy(&k).into_owned()),
            None => {
                tracing::error!(org_id = %org.id, "the org's LLM key does not decrypt (server secret changed?)");
                return None;
            }
        },
        None => None,
    };
    let settings = ProviderSettings {
        kind,
        base_url: org
            .llm_base_url
            .clone()
            .unwrap_or_else(|| kind.default_base_url().to_string()),
        api_key,
        connect_timeout: Duration::from_millis(st.config.llm_connect_timeout_ms),
        first_token_timeout: Duration::from_millis(st.config.llm_first_token_timeout_ms),
        total_timeout: crate::llm::total_timeout(&st.config),
        idle_timeout: Duration::from_millis(st.config.llm_idle_timeout_ms),
        max_retries: st.config.llm_max_retries,
        guard: Some(crate::outbound::Policy::from_config(&st.config)),
    };
    match build_provider(settings) {
        Ok(p) => {
            if let Ok(mut cache) = st.org_llm.lock() {
                cache.insert(org.id, (org.updated_at, p.clone()));
            }
            Some((p, model))
        }
        Err(err) => {
            tracing::warn!(%err, org_id = %org.id, "the org's LLM settings are unusable");
            None
        }
    }
}

/// Runs the rest of the turn. Never fails: problems become the canned fallback.
#[tracing::instrument(skip_all, fields(org_id = %turn.org.id, session_id = %turn.session_id, turn_id = %turn.turn_id))]
pub async fn run(st: AppState, mut turn: StartedTurn) -> TurnOutcome {
    let outcome = match decide(&st, &mut turn).await {
        Ok(outcome) => outcome,
        Err(err) => {
            tracing::error!(%err, "turn failed; answering with the fallback");
            match fallback(&mut turn, "internal").await {
                Ok(o) => o,
                Err(_) => TurnOutcome {
                    status: TurnStatus::Fallback,
                    text: turn.bot.fallback_message.clone(),
                    citations: vec![],
                    content: None,
                    navigate_to: None,
                    handoff_offered: turn.bot.fallback_to_human,
                    message_id: None,
                    model: None,
                },
            }
        }
    };
    crate::metrics::metrics()
        .turns
        .get_or_create(&crate::metrics::TurnLabels {
            status: outcome.status.as_str(),
        })
        .inc();
    if let Err(err) = turn
        .emitter
        .emit(
            TurnStatus::Completed,
            "status",
            "",
            EventPayload::default(),
            None,
            0,
        )
        .await
    {
        tracing::error!(%err, "could not store COMPLETED");
    }
    let payload = serde_json::json!({
        "turnId": turn.turn_id, "sessionId": turn.session_id, "status": outcome.status.as_str(), "model": outcome.model,
    });
    match service::event::record(&st.db, turn.org.id, "chat.turn.completed", payload).await {
        Ok(ev) => service::event::publish(&st, &[ev]).await,
        Err(err) => tracing::warn!(%err, "could not record chat.turn.completed"),
    }
    if turn.org.ai_auto_traits_enabled
        && let Some(user) = turn.session.end_user_id
    {
        let llm = if st.config.ai_chatbot_enabled && turn.org.ai_chatbot_enabled {
            provider_for(&st, &turn.org)
        } else {
            None
        };
        tokio::spawn(traits::extract_and_merge(
            st.clone(),
            turn.org.id,
            turn.turn_id,
            user,
            turn.message.clone(),
            llm,
        ));
    }
    outcome
}

async fn decide(st: &AppState, turn: &mut StartedTurn) -> Result<TurnOutcome, AppError> {
    if !st.config.ai_chatbot_enabled || !turn.org.ai_chatbot_enabled {
        return fallback(turn, "ai_disabled").await;
    }
    // At most two LLM calls a turn: after the matcher and the generator, the answer is extractive.
    let mut calls_left = 2;
    if let Some(site_id) = turn.bot.site_id {
        match matcher::run(st, turn, site_id).await? {
            Ok(outcome) => return Ok(outcome),
            Err(no_match) => {
                calls_left -= u8::from(no_match.called);
                if let (true, Some((site, map))) =
                    (no_match.wants_walkthrough, no_match.generate_on)
                {
                    calls_left -= 1;
                    if let Some(outcome) = generator::run(st, turn, &site, &map).await? {
                        return Ok(outcome);
                    }
                }
            }
        }
    }
    let kb_ids = std::mem::take(&mut turn.knowledge_base_ids);
    let mode = st.retriever.default_mode;
    let hits = if kb_ids.is_empty() {
        vec![]
    } else {
        match retrieval::search(st, turn.org.id, &kb_ids, &turn.message, RETRIEVE, mode).await {
            // Nearest but unrelated articles are no answer: the bot falls back.
            Ok(h) => h.into_iter().filter(|h| h.on_topic).collect(),
            Err(err) => {
                tracing::warn!(%err, "retrieval failed");
                vec![]
            }
        }
    };
    match provider_for(st, &turn.org) {
        None => extractive_answer(turn, &hits).await,
        Some(_) if hits.is_empty() => fallback(turn, "no_articles").await,
        Some(_) if calls_left == 0 => extractive_answer(turn, &hits).await,
        Some((provider, model)) => llm_answer(st, turn, &hits, provider, model).await,
    }
}

/// Matched or generated content: `status` (`MATCHED_CONTENT` or
/// `GENERATED_CONTENT`), then `NAVIGATING` when its start page differs.
async fn presented(
    st: &AppState,
    turn: &mut StartedTurn,
    site_id: Uuid,
    content: TurnContent,
    status: TurnStatus,
) -> Result<TurnOutcome, AppError> {
    let site = entity::site::Entity::find_by_id(site_id)
        .one(&st.db)
        .await?;
    let navigate_to = matcher::navigation(&content, turn.page_url.as_deref(), site.as_ref());
    let text = format!("I can walk you through this: {}.", content.name);
    let payload = EventPayload {
        content: Some(content.clone()),
        ..Default::default()
    };
    let ev = turn
        .emitter
        .emit(status, "bot", text.clone(), payload, None, 0)
        .await?;
    if let Some(to) = &navigate_to {
        let payload = EventPayload {
            navigate_to: Some(to.clone()),
            content: Some(content.clone()),
            ..Default::default()
        };
        turn.emitter
            .emit(TurnStatus::Navigating, "status", "", payload, None, 0)
            .await?;
    }
    Ok(TurnOutcome {
        status,
        text,
        citations: vec![],
        content: Some(content),
        navigate_to,
        handoff_offered: false,
        message_id: Some(ev.message_id),
        model: None,
    })
}

async fn extractive_answer(turn: &mut StartedTurn, hits: &[Hit]) -> Result<TurnOutcome, AppError> {
    let Some((text, pieces, citations)) = extractive::answer(hits) else {
        return fallback(turn, "no_articles").await;
    };
    for piece in pieces {
        let payload = EventPayload {
            delta: Some(piece),
            ..Default::default()
        };
        turn.emitter
            .emit(TurnStatus::AnswerDelta, "status", "", payload, None, 0)
            .await?;
    }
    answered(turn, text, citations, Some("extractive".into()), 0).await
}

async fn answered(
    turn: &mut StartedTurn,
    text: String,
    citations: Vec<Citation>,
    model: Option<String>,
    tokens: i32,
) -> Result<TurnOutcome, AppError> {
    let payload = EventPayload {
        citations: citations.clone(),
        ..Default::default()
    };
    // Stored and published with `COMPLETED`, which follows at once: one
    // statement for the chunks, the answer and the end of the turn.
    let message_id = turn.emitter.emit_with_next(
        TurnStatus::Answered,
        "bot",
        text.clone(),
        payload,
        model.clone(),
        tokens,
    )?;
    Ok(TurnOutcome {
        status: TurnStatus::Answered,
        text,
        citations,
        content: None,
        navigate_to: None,
        handoff_offered: false,
        message_id: Some(message_id),
        model,
    })
}

/// Out of credits: no LLM call, the canned reply, the outbox event and (debounced) the owner's email.
async fn insufficient_credits(
    st: &AppState,
    turn: &mut StartedTurn,
) -> Result<TurnOutcome, AppError> {
    let mut outcome = canned(
        turn,
        TurnStatus::InsufficientCredits,
        "insufficient_credits",
    )
    .await?;
    outcome.status = TurnStatus::InsufficientCredits;
    match service::event::record(
        &st.db,
        turn.org.id,
        "credits.insufficient",
        serde_json::json!({ "turnId": turn.turn_id, "sessionId": turn.session_id }),
    )
    .await
    {
        Ok(ev) => service::event::publish(st, &[ev]).await,
        Err(err) => tracing::warn!(%err, "could not record credits.insufficient"),
    }
    if let Err(err) = service::notify::out_of_credits(st, &turn.org).await {
        tracing::warn!(%err, "could not queue the out-of-credits email");
    }
    Ok(outcome)
}

/// The canned reply, with the hand-off offer when the bot has one.
async fn fallback(turn: &mut StartedTurn, reason: &str) -> Result<TurnOutcome, AppError> {
    canned(turn, TurnStatus::Fallback, reason).await
}

async fn canned(
    turn: &mut StartedTurn,
    status: TurnStatus,
    reason: &str,
) -> Result<TurnOutcome, AppError> {
    let offer = turn.bot.fallback_to_human;
    let mut text = turn.bot.fallback_message.clone();
    if offer {
        text.push_str("\n\nWould you like to talk to a person? Use the hand-off button and our team will follow up.");
    }
    let payload = EventPayload {
        handoff_offered: offer,
        reason: Some(reason.to_string()),
        ..Default::default()
    };
    let ev = turn
        .emitter
        .emit(status, "bot", text.clone(), payload, None, 0)
        .await?;
    Ok(TurnOutcome {
        status,
        text,
        citations: vec![],
        content: None,
        navigate_to: None,
        handoff_offered: offer,
        message_id: Some(ev.message_id),
        model: None,
    })
}

async fn llm_answer(
    st: &AppState,
    turn: &mut StartedTurn,
    hits: &[Hit],
    provider: Arc<dyn LlmProvider>,
    model: String,
) -> Result<TurnOutcome, AppError> {
    let history = chat::history(&st.db, turn.session_id, turn.turn_id, HISTORY_TURNS).await?;
    let req = ChatRequest {
        model: model.clone(),
        system: answer::system_prompt(&turn.bot.system_prompt, &turn.bot.persona_name),
        messages: answer::messages(&history, hits, &turn.message),
        max_tokens: 700,
        temperature: 0.2,
        json: false,
    };
    // Pay before calling: reserve a generous estimate, settle by real usage.
    let prompt_chars: usize =
        req.system.len() + req.messages.iter().map(|m| m.content.len()).sum::<usize>();
    let estimate_tokens = (prompt_chars / 3) as u64 + u64::from(req.max_tokens);
    let price = st.config.credit_price(&model);
    let reservation = match service::credits::ReservationGuard::reserve(
        &st.db,
        turn.org.id,
        Some(turn.turn_id),
        &model,
        service::credits::cost(estimate_tokens, price),
    )
    .await
    {
        Ok(r) => r,
        Err(service::credits::ReserveError::Insufficient) => {
            crate::metrics::metrics().credit_refusals.inc();
            return insufficient_credits(st, turn).await;
        }
        Err(service::credits::ReserveError::Failed(err)) => return Err(err),
    };
    // The provider enforces the same total itself; this also bounds a provider
    // that never yields, and ends before the HTTP request timeout.
    let deadline = crate::llm::total_timeout(&st.config);
    let mut stream = provider.stream(req);
    let mut full = String::new();
    let mut buffer = String::new();
    let mut usage = None;
    let mut failure: Option<String> = None;
    let started = tokio::time::Instant::now();
    loop {
        let left = deadline.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, stream.next()).await {
            Err(_) => {
                failure = Some("timeout".into());
                break;
            }
            Ok(None) => {
                failure = Some("stream ended early".into());
                break;
            }
            Ok(Some(Err(err))) => {
                failure = Some(err.to_string());
                break;
            }
            Ok(Some(Ok(StreamEvent::Done(u)))) => {
                usage = Some(u);
                break;
            }
            Ok(Some(Ok(StreamEvent::Delta(d)))) => {
                full.push_str(&d);
                buffer.push_str(&d);
                if buffer.len() >= DELTA_FLUSH_BYTES || buffer.contains('\n') {
                    let payload = EventPayload {
                        delta: Some(std::mem::take(&mut buffer)),
                        ..Default::default()
                    };
                    if let Err(err) = turn
                        .emitter
                        .emit(TurnStatus::AnswerDelta, "status", "", payload, None, 0)
                        .await
                    {
                        failure = Some(err.to_string());
                        break;
                    }
                }
            }
        }
    }
    // Settle by what the provider reported (nothing reported: nothing charged).
    // Had anything above panicked or been cancelled, dropping the guard refunds.
    let used = usage.map(|u| u.total()).unwrap_or(0);
    let usable = usage.is_some() && failure.is_none() && !full.trim().is_empty();
    crate::metrics::metrics().llm_call(provider.name(), &model, usable, used, started.elapsed());
    reservation
        .settle(service::credits::cost(u64::from(used), price), used)
        .await;
    let usage = match (usage, failure) {
        (Some(u), None) if !full.trim().is_empty() => u,
        (_, failure) => {
            tracing::warn!(
                provider = provider.name(),
                reason = failure.as_deref().unwrap_or("empty answer"),
                "LLM answer unusable; falling back"
            );
            return fallback(turn, "llm_unavailable").await;
        }
    };
    if !buffer.is_empty() {
        let payload = EventPayload {
            delta: Some(buffer),
            ..Default::default()
        };
        turn.emitter
            .emit(TurnStatus::AnswerDelta, "status", "", payload, None, 0)
            .await?;
    }
    let citations = answer::citations(&full, hits);
    let tokens = i32::try_from(usage.total()).unwrap_or(i32::MAX);
    answered(
        turn,
        full.trim().to_string(),
        citations,
        Some(model),
        tokens,
    )
    .await
}
