//! Webhooks: an org's HTTP endpoints that receive its outbox events, signed.
//!
//! - **No stored secret.** A webhook's signing secret is derived from the
//!   server secret and the webhook id ([`signing_secret`]), so a database dump
//!   leaks nothing that could forge a delivery. The API shows it once, at
//!   creation.
//! - **At least once, never twice per attempt.** [`enqueue`] runs after the
//!   events are committed and inserts one `PENDING` delivery per (matching
//!   active webhook, event); the unique `(webhook_id, event_id)` index makes a
//!   replay (the outbox relay, a second replica) a no-op. The worker
//!   ([`deliver_forever`], one per replica) claims each attempt with a
//!   conditional update, so however many replicas poll, one of them sends it.
//! - **Retries with exponential backoff**, capped at an hour, given up as
//!   `FAILED` after [`MAX_ATTEMPTS`]. Receivers must still deduplicate by the
//!   event id: a receiver that answers too slowly gets the event again.
//!
//! - **Guarded like every customer-chosen URL** ([`crate::outbound`]): a URL
//!   whose host is, or resolves to, a loopback, private, link-local or
//!   metadata address is `BAD_USER_INPUT` when saved, and refused again at
//!   every connect (DNS rebinding), recorded as the delivery's `lastError`;
//!   redirects are not followed. `WAYFINDER_OUTBOUND_ALLOW` opens exceptions.
//! - **Nothing of the receiver's answer is stored but its status code**: a
//!   `lastError` that quoted the response body would let an org read what an
//!   internal server answers.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, OnceLock},
    time::Duration,
};

use reqwest::Url;

use async_graphql::{Enum, InputObject};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use entity::{event, org, webhook, webhook_delivery};
use hmac::{Hmac, KeyInit, Mac};
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect,
    sea_query::{Expr, OnConflict, Query},
};
use sha2::Sha256;
use uuid::Uuid;

use super::{OrgOwned, Page, PageArgs, event as outbox, get, new_id, paginate, scoped};
use crate::{
    auth::OrgScope,
    domain,
    error::AppError,
    outbound,
    secret::{hex, random_bytes},
    state::State,
};

/// Most webhooks one org may have.
pub const MAX_WEBHOOKS_PER_ORG: u64 = 10;
/// Attempts before a delivery is given up as `FAILED`.
pub const MAX_ATTEMPTS: i32 = 12;
/// Most deliveries one pass picks up.
pub const BATCH_SIZE: u64 = 50;
/// How often [`deliver_forever`] looks for due deliveries.
pub const POLL_EVERY: Duration = Duration::from_millis(250);
/// Time limit of one POST, connect to last byte.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a claimed attempt is reserved for the replica that claimed it.
/// Longer than [`SEND_TIMEOUT`], so a claim never expires while its POST runs;
/// a replica that dies mid-attempt delays that delivery by this much.
pub const CLAIM_FOR: Duration = Duration::from_secs(30);
/// The longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(3_600);
/// The first retry's wait unless `WAYFINDER_WEBHOOK_BACKOFF_MS` says otherwise.
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Most passes of [`deliver_forever`] in flight at once: a slow receiver
/// holds up its own pass, not every delivery behind it.
const MAX_PASSES_IN_FLIGHT: usize = 4;
/// Most event kinds one webhook may filter on.
const MAX_EVENT_KINDS: usize = 50;
/// Longest `lastError` kept.
const ERROR_MAX: usize = 500;
/// Purpose of the server-secret key that derives webhook secrets.
const SECRET_PURPOSE: &str = "webhook-secret";

const PENDING: &str = "PENDING";
const DELIVERED: &str = "DELIVERED";
const FAILED: &str = "FAILED";

/// Where a webhook delivery is in its life.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(name = "WebhookDeliveryStatus")]
pub enum DeliveryStatus {
    /// Waiting for its first attempt or for a retry (`nextAttemptAt`).
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Every attempt failed; no more are made.
    Failed,
}

impl DeliveryStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => PENDING,
            Self::Delivered => DELIVERED,
            Self::Failed => FAILED,
        }
    }

    /// Reads a stored name; unknown names are a data error.
    pub fn from_stored(s: &str) -> Result<Self, AppError> {
        match s {
            PENDING => Ok(Self::Pending),
            DELIVERED => Ok(Self::Delivered),
            FAILED => Ok(Self::Failed),
            other => Err(AppError::internal(format!(
                "unknown webhook delivery status {other:?} in the database"
            ))),
        }
    }
}

/// A new webhook.
#[derive(Debug, InputObject)]
pub struct CreateWebhookInput {
    /// Where to POST events: an absolute `http://` or `https://` URL on a public
    /// address. A host that is, or resolves to, a loopback, private, link-local
    /// or cloud-metadata address is `BAD_USER_INPUT` (and is refused again at
    /// every delivery).
    pub url: String,
    /// Only events of these kinds (e.g. `ticket.created_via_widget`; `ticket.*`
    /// matches every kind starting with `ticket.`). Omitted or empty: every event.
    pub event_kinds: Option<Vec<String>>,
}

/// Changes to a webhook; omitted fields stay as they are.
#[derive(Debug, InputObject)]
pub struct UpdateWebhookInput {
    /// The webhook to change.
    pub id: Uuid,
    /// New URL (public addresses only, as in `createWebhook`).
    pub url: Option<String>,
    /// New event kinds filter; an empty list means every event.
    pub event_kinds: Option<Vec<String>>,
    /// Pause (false) or resume (true) deliveries. While paused, no new
    /// deliveries are queued and pending ones wait.
    pub active: Option<bool>,
}

/// A delivery with the kind of the event it carries.
pub struct Delivery {
    pub row: webhook_delivery::Model,
    pub event_kind: String,
}

/// The signing secret of webhook `id`: `hex(HMAC(server key for webhook secrets, id))`.
pub fn signing_secret(st: &State, id: Uuid) -> Result<String, AppError> {
    let token = st.secret.sign(SECRET_PURPOSE, id.as_bytes());
    let tag = token
        .rsplit_once('.')
        .and_then(|(_, tag)| URL_SAFE_NO_PAD.decode(tag).ok())
        .ok_or_else(|| AppError::internal("signed token without a tag"))?;
    Ok(hex(&tag))
}

/// `hex(HMAC-SHA256(secret, "<timestamp>.<body>"))`: the `v1=` value of `X-Wayfinder-Signature`.
pub fn signature(secret: &str, timestamp: i64, body: &str) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        // HMAC takes keys of any length; this arm cannot be reached.
        Err(_) => unreachable!("HMAC accepts any key length"),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    hex(&mac.finalize().into_bytes())
}

/// The JSON body POSTed for `ev`: `{id, kind, orgId, createdAt, payload}`.
pub fn event_body(ev: &event::Model) -> String {
    serde_json::json!({
        "id": ev.id,
        "kind": ev.kind,
        "orgId": ev.org_id,
        "createdAt": ev.created_at,
        "payload": ev.payload,
    })
    .to_string()
}

/// The event kinds a webhook filters on, as stored.
pub fn event_kinds_of(hook: &webhook::Model) -> Vec<String> {
    match hook.event_kinds.as_array() {
        Some(kinds) => kinds
            .iter()
            .filter_map(|k| k.as_str().map(str::to_string))
            .collect(),
        None => Vec::new(),
    }
}

/// Whether `hook` wants events of `kind`.
fn wants(kinds: &[String], kind: &str) -> bool {
    kinds.is_empty()
        || kinds.iter().any(|k| match k.strip_suffix('*') {
            Some(prefix) => kind.starts_with(prefix),
            None => k == kind,
        })
}

/// Validates an event kinds filter: lower-case `noun.verb` names, `*` only at the end.
fn parse_event_kinds(field: &str, kinds: Vec<String>) -> Result<Vec<String>, AppError> {
    if kinds.len() > MAX_EVENT_KINDS {
        return Err(AppError::bad_input(
            field,
            format!("at most {MAX_EVENT_KINDS} event kinds"),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(kinds.len());
    for kind in kinds {
        let kind = domain::text(field, &kind, 1, 100)?;
        let body = kind.strip_suffix('*').unwrap_or(&kind);
        let ok = body
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_'));
        if !ok || (body.is_empty() && kind != "*") {
            return Err(AppError::bad_input(
                field,
                format!(
                    "{kind:?} is not an event kind (lower-case like \"ticket.created_via_widget\", or a prefix ending in * like \"ticket.*\")"
                ),
            ));
        }
        if !out.contains(&kind) {
            out.push(kind);
        }
    }
    Ok(out)
}

/// The caller's webhooks, oldest first.
pub async fn list(
    st: &State,
    scope: &OrgScope,
    page: &PageArgs,
) -> Result<Page<webhook::Model>, AppError> {
    paginate(&st.db, scoped::<webhook::Entity>(scope), page).await
}

/// A new webhook and its signing secret (shown this once).
pub async fn create(
    st: &State,
    scope: &OrgScope,
    input: CreateWebhookInput,
) -> Result<(webhook::Model, String), AppError> {
    let url = domain::http_url("input.url", &input.url)?;
    let kinds = parse_event_kinds("input.eventKinds", input.event_kinds.unwrap_or_default())?;
    // Before the transaction: a DNS lookup must not hold the write lock.
    outbound::Policy::from_config(&st.config)
        .check_when_set("input.url", &url)
        .await?;
    let txn = crate::service::begin_write(&st.db).await?;
    // A no-op write to the org's row first: concurrent creates of one org
    // queue on its row lock (PostgreSQL) or the write lock (SQLite), so the
    // limit below holds under races. Writing before reading also keeps SQLite
    // from failing the transaction with SQLITE_BUSY_SNAPSHOT when another
    // connection writes between our read and our write.
    org::Entity::update_many()
        .col_expr(org::Column::UpdatedAt, Expr::col(org::Column::UpdatedAt))
        .filter(org::Column::Id.eq(scope.org_id()))
        .exec(&txn)
        .await?;
    let existing = scoped::<webhook::Entity>(scope).count(&txn).await?;
    if existing >= MAX_WEBHOOKS_PER_ORG {
        return Err(AppError::Forbidden(format!(
            "an org can have at most {MAX_WEBHOOKS_PER_ORG} webhooks; delete one first"
        )));
    }
    let now = Utc::now();
    let model = webhook::ActiveModel {
        id: Set(new_id()),
        org_id: Set(scope.org_id()),
        url: Set(url),
        event_kinds: Set(serde_json::json!(kinds)),
        active: Set(true),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await?;
    let secret = signing_secret(st, model.id)?;
    outbox::commit_with_event::<webhook::Entity>(st, txn, scope.org_id(), "created", model.id)
        .await?;
    Ok((model, secret))
}

/// Applies `input` to one of the caller's webhooks.
pub async fn update(
    st: &State,
    scope: &OrgScope,
    input: UpdateWebhookInput,
) -> Result<webhook::Model, AppError> {
    let url = input
        .url
        .map(|u| domain::http_url("input.url", &u))
        .transpose()?;
    if let Some(url) = &url {
        outbound::Policy::from_config(&st.config)
            .check_when_set("input.url", url)
            .await?;
    }
    let kinds = input
        .event_kinds
        .map(|k| parse_event_kinds("input.eventKinds", k))
        .transpose()?;
    let txn = crate::service::begin_write(&st.db).await?;
    // Write first, then read back (see `create` for why on SQLite).
    let mut change = webhook::Entity::update_many()
        .col_expr(webhook::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(webhook::Column::OrgId.eq(scope.org_id()))
        .filter(webhook::Column::Id.eq(input.id));
    if let Some(url) = url {
        change = change.col_expr(webhook::Column::Url, Expr::value(url));
    }
    if let Some(kinds) = kinds {
        change = change.col_expr(
            webhook::Column::EventKinds,
            Expr::value(serde_json::json!(kinds)),
        );
    }
    if let Some(active) = input.active {
        change = change.col_expr(webhook::Column::Active, Expr::value(active));
    }
    if change.exec(&txn).await?.rows_affected == 0 {
        return Err(AppError::not_found(webhook::Entity::NOUN));
    }
    let model = get::<webhook::Entity>(&txn, scope, input.id).await?;
    outbox::commit_with_event::<webhook::Entity>(st, txn, scope.org_id(), "updated", input.id)
        .await?;
    Ok(model)
}

/// Deletes a webhook and its deliveries.
pub async fn delete(st: &State, scope: &OrgScope, id: Uuid) -> Result<(), AppError> {
    let txn = crate::service::begin_write(&st.db).await?;
    // Writes only; a miss is NOT_FOUND from the second and rolls the first back.
    webhook_delivery::Entity::delete_many()
        .filter(webhook_delivery::Column::OrgId.eq(scope.org_id()))
        .filter(webhook_delivery::Column::WebhookId.eq(id))
        .exec(&txn)
        .await?;
    super::delete::<webhook::Entity>(&txn, scope, id).await?;
    outbox::commit_with_event::<webhook::Entity>(st, txn, scope.org_id(), "deleted", id).await
}

/// The deliveries of one of the caller's webhooks, oldest first, optionally only those in `status`.
pub async fn list_deliveries(
    st: &State,
    scope: &OrgScope,
    webhook_id: Uuid,
    status: Option<DeliveryStatus>,
    page: &PageArgs,
) -> Result<Page<Delivery>, AppError> {
    let mut select = scoped::<webhook_delivery::Entity>(scope)
        .filter(webhook_delivery::Column::WebhookId.eq(webhook_id));
    if let Some(status) = status {
        select = select.filter(webhook_delivery::Column::Status.eq(status.as_str()));
    }
    let rows = paginate(&st.db, select, page).await?;
    let event_ids: Vec<Uuid> = rows.items.iter().map(|d| d.event_id).collect();
    let kinds: HashMap<Uuid, String> = scoped::<event::Entity>(scope)
        .filter(event::Column::Id.is_in(event_ids))
        .all(&st.db)
        .await?
        .into_iter()
        .map(|e| (e.id, e.kind))
        .collect();
    Ok(Page {
        items: rows
            .items
            .into_iter()
            .map(|row| Delivery {
                event_kind: kinds.get(&row.event_id).cloned().unwrap_or_default(),
                row,
            })
            .collect(),
        has_previous: rows.has_previous,
        has_next: rows.has_next,
    })
}

/// Queues one `PENDING` delivery per (active webhook of the event's org that
/// wants its kind, event). Call it after the events are committed; calling it
/// again for the same events adds nothing. Webhooks created after an event do
/// not get it. Returns how many deliveries were queued.
pub async fn enqueue(st: &State, events: &[event::Model]) -> Result<u64, AppError> {
    enqueue_in(&st.db, events).await
}

async fn enqueue_in(db: &impl ConnectionTrait, events: &[event::Model]) -> Result<u64, AppError> {
    if events.is_empty() {
        return Ok(0);
    }
    let org_ids: HashSet<Uuid> = events.iter().map(|e| e.org_id).collect();
    let hooks = webhook::Entity::find()
        .filter(webhook::Column::OrgId.is_in(org_ids))
        .filter(webhook::Column::Active.eq(true))
        .all(db)
        .await?;
    if hooks.is_empty() {
        return Ok(0);
    }
    let hooks: Vec<(webhook::Model, Vec<String>)> = hooks
        .into_iter()
        .map(|h| {
            let kinds = event_kinds_of(&h);
            (h, kinds)
        })
        .collect();
    let now = Utc::now();
    let mut rows = Vec::new();
    for ev in events {
        for (hook, kinds) in &hooks {
            if hook.org_id == ev.org_id
                && hook.created_at <= ev.created_at
                && wants(kinds, &ev.kind)
            {
                rows.push(webhook_delivery::ActiveModel {
                    id: Set(new_id()),
                    org_id: Set(ev.org_id),
                    webhook_id: Set(hook.id),
                    event_id: Set(ev.id),
                    status: Set(PENDING.into()),
                    attempts: Set(0),
                    next_attempt_at: Set(now),
                    last_status_code: Set(None),
                    last_error: Set(None),
                    created_at: Set(now),
                    delivered_at: Set(None),
                });
            }
        }
    }
    let mut queued = 0;
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        // 11 columns a row: 500 rows stay under every backend's bind-parameter limit.
        let chunk: Vec<_> = rows.by_ref().take(500).collect();
        queued += webhook_delivery::Entity::insert_many(chunk)
            .on_conflict(
                OnConflict::columns([
                    webhook_delivery::Column::WebhookId,
                    webhook_delivery::Column::EventId,
                ])
                .do_nothing()
                .to_owned(),
            )
            .exec_without_returning(db)
            .await?;
    }
    Ok(queued)
}

/// The wait after failed attempt number `attempts` (1-based): `base · 2^(attempts-1)`,
/// capped at [`MAX_BACKOFF`], plus up to 10 % jitter so retries of one outage spread out.
pub fn backoff(base: Duration, attempts: i32) -> Duration {
    let exp = attempts.clamp(1, 31) as u32 - 1;
    let delay = base
        .saturating_mul(2_u32.saturating_pow(exp))
        .min(MAX_BACKOFF);
    let jitter = random_bytes::<2>()
        .map(|b| u16::from_le_bytes(b) as f64 / u16::MAX as f64)
        .unwrap_or(0.0);
    delay + delay.mul_f64(0.1 * jitter)
}

/// Delivers what is due once: picks up to [`BATCH_SIZE`] due `PENDING`
/// deliveries of active webhooks, claims each attempt, sends the claimed ones
/// concurrently and records the outcomes, retrying after
/// [`backoff`]`(backoff_base, attempts)`. Returns how many were delivered.
/// Safe to run on many replicas, and many times at once.
pub async fn deliver_due(st: &State, backoff_base: Duration) -> Result<usize, AppError> {
    let now = Utc::now();
    let active_hooks = Query::select()
        .column(webhook::Column::Id)
        .from(webhook::Entity)
        .and_where(webhook::Column::Active.eq(true))
        .to_owned();
    let due = webhook_delivery::Entity::find()
        .filter(webhook_delivery::Column::Status.eq(PENDING))
        .filter(webhook_delivery::Column::NextAttemptAt.lte(now))
        .filter(webhook_delivery::Column::WebhookId.in_subquery(active_hooks))
        .order_by_asc(webhook_delivery::Column::NextAttemptAt)
        .limit(BATCH_SIZE)
        .all(&st.db)
        .await?;
    if due.is_empty() {
        return Ok(0);
    }
    let hooks: HashMap<Uuid, webhook::Model> = webhook::Entity::find()
        .filter(webhook::Column::Id.is_in(due.iter().map(|d| d.webhook_id)))
        .all(&st.db)
        .await?
        .into_iter()
        .map(|h| (h.id, h))
        .collect();
    let events: HashMap<Uuid, event::Model> = event::Entity::find()
        .filter(event::Column::Id.is_in(due.iter().map(|d| d.event_id)))
        .all(&st.db)
        .await?
        .into_iter()
        .map(|e| (e.id, e))
        .collect();

    // Claim each attempt: only the replica whose update matches the old
    // `next_attempt_at` sends it; the others see zero rows affected.
    let claimed_until = to_micros(now + chrono::Duration::from_std(CLAIM_FOR).unwrap_or_default());
    let mut attempts = Vec::new();
    for d in due {
        let (Some(hook), Some(ev)) = (hooks.get(&d.webhook_id), events.get(&d.event_id)) else {
            continue;
        };
        let claim = webhook_delivery::Entity::update_many()
            .col_expr(
                webhook_delivery::Column::NextAttemptAt,
                Expr::value(claimed_until),
            )
            .filter(webhook_delivery::Column::Id.eq(d.id))
            .filter(webhook_delivery::Column::Status.eq(PENDING))
            .filter(webhook_delivery::Column::NextAttemptAt.eq(d.next_attempt_at))
            .exec(&st.db)
            .await?;
        if claim.rows_affected == 1 {
            attempts.push(attempt(st, d, hook, ev, claimed_until, backoff_base));
        }
    }
    let mut delivered = 0;
    for result in futures_util::future::join_all(attempts).await {
        match result {
            Ok(true) => delivered += 1,
            Ok(false) => {}
            Err(err) => tracing::warn!(%err, "webhook delivery outcome not recorded"),
        }
    }
    Ok(delivered)
}

/// Delivers due webhook deliveries forever, every [`POLL_EVERY`], with the
/// backoff base of `WAYFINDER_WEBHOOK_BACKOFF_MS`. Spawn one per replica at startup.
pub async fn deliver_forever(st: Arc<State>) {
    let base = Duration::from_millis(st.config.webhook_backoff_ms.max(1));
    let mut tick = tokio::time::interval(POLL_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut passes = tokio::task::JoinSet::new();
    loop {
        tick.tick().await;
        while let Some(done) = passes.try_join_next() {
            if let Err(err) = done {
                tracing::error!(%err, "webhook delivery pass panicked");
            }
        }
        if passes.len() >= MAX_PASSES_IN_FLIGHT {
            continue;
        }
        let st = st.clone();
        passes.spawn(async move {
            if let Err(err) = deliver_due(&st, base).await {
                tracing::warn!(%err, "webhook delivery pass failed");
            }
        });
    }
}

/// How one POST went.
enum Outcome {
    Delivered(u16),
    Failed { status: Option<u16>, error: String },
}

/// Makes one claimed attempt and records it; true when delivered.
#[tracing::instrument(skip_all, fields(org_id = %d.org_id, webhook_id = %hook.id, delivery_id = %d.id, event_id = %ev.id))]
async fn attempt(
    st: &State,
    d: webhook_delivery::Model,
    hook: &webhook::Model,
    ev: &event::Model,
    claimed_until: DateTime<Utc>,
    backoff_base: Duration,
) -> Result<bool, AppError> {
    let outcome = post(st, &d, hook, ev).await;
    let attempts = d.attempts + 1;
    let now = Utc::now();
    let mut update = webhook_delivery::Entity::update_many()
        .col_expr(webhook_delivery::Column::Attempts, Expr::value(attempts))
        .filter(webhook_delivery::Column::Id.eq(d.id))
        .filter(webhook_delivery::Column::Status.eq(PENDING))
        .filter(webhook_delivery::Column::NextAttemptAt.eq(claimed_until));
    let delivered = matches!(outcome, Outcome::Delivered(_));
    match outcome {
        Outcome::Delivered(code) => {
            update = update
                .col_expr(webhook_delivery::Column::Status, Expr::value(DELIVERED))
                .col_expr(
                    webhook_delivery::Column::DeliveredAt,
                    Expr::value(Some(now)),
                )
                .col_expr(
                    webhook_delivery::Column::LastStatusCode,
                    Expr::value(Some(i32::from(code))),
                )
                .col_expr(
                    webhook_delivery::Column::LastError,
                    Expr::value(Option::<String>::None),
                );
        }
        Outcome::Failed { status, error } => {
            tracing::info!(attempts, status, %error, "webhook delivery attempt failed");
            let (state, next) = if attempts >= MAX_ATTEMPTS {
                (FAILED, now)
            } else {
                let wait = chrono::Duration::from_std(backoff(backoff_base, attempts))
                    .unwrap_or_else(|_| chrono::Duration::hours(1));
                (PENDING, now + wait)
            };
            update = update
                .col_expr(webhook_delivery::Column::Status, Expr::value(state))
                .col_expr(
                    webhook_delivery::Column::NextAttemptAt,
                    Expr::value(to_micros(next)),
                )
                .col_expr(
                    webhook_delivery::Column::LastStatusCode,
                    Expr::value(status.map(i32::from)),
                )
                .col_expr(
                    webhook_delivery::Column::LastError,
                    Expr::value(Some(bounded(&error, ERROR_MAX))),
                );
        }
    }
    let recorded = update.exec(&st.db).await?;
    if recorded.rows_affected != 1 {
        // The claim ran out (a stalled replica) or the webhook was deleted meanwhile.
        tracing::warn!("webhook delivery claim lost before its outcome was recorded");
        return Ok(false);
    }
    Ok(delivered)
}

/// POSTs `ev` to `hook`, signed, through the outbound guard. Only the
/// answer's status is kept: its body is never read.
async fn post(
    st: &State,
    d: &webhook_delivery::Model,
    hook: &webhook::Model,
    ev: &event::Model,
) -> Outcome {
    let failed = |error: String| Outcome::Failed {
        status: None,
        error,
    };
    let refused = |refused: &outbound::Refused| {
        tracing::warn!(%refused, "webhook delivery refused by the outbound guard");
        failed(refused.to_string())
    };
    let fetcher = match http_client() {
        Ok(c) => c,
        Err(err) => return failed(err),
    };
    let Ok(url) = Url::parse(&hook.url) else {
        return failed("the webhook URL does not parse".into());
    };
    let policy = outbound::Policy::from_config(&st.config);
    let client = match fetcher.client_for(&policy, &url) {
        Ok(client) => client,
        Err(r) => return refused(&r),
    };
    let secret = match signing_secret(st, hook.id) {
        Ok(s) => s,
        Err(err) => return failed(format!("signing failed: {err}")),
    };
    let body = event_body(ev);
    let timestamp = Utc::now().timestamp();
    let sent = client
        .post(url)
        .header("Content-Type", "application/json")
        .header("X-Wayfinder-Event", ev.kind.as_str())
        .header("X-Wayfinder-Delivery", d.id.to_string())
        .header("X-Wayfinder-Timestamp", timestamp.to_string())
        .header(
            "X-Wayfinder-Signature",
            format!("v1={}", signature(&secret, timestamp, &body)),
        )
        .body(body)
        .send()
        .await;
    match sent {
        Ok(resp) if resp.status().is_success() => Outcome::Delivered(resp.status().as_u16()),
        Ok(resp) => {
            let status = resp.status().as_u16();
            Outcome::Failed {
                status: Some(status),
                error: format!("HTTP {status}"),
            }
        }
        Err(err) => match outbound::refusal(&err) {
            Some(r) => refused(r),
            None => failed(describe(err)),
        },
    }
}

/// The clients of webhook deliveries: [`SEND_TIMEOUT`], no redirects, the
/// outbound guard.
fn http_client() -> Result<&'static outbound::Fetcher, String> {
    static CLIENT: OnceLock<outbound::Fetcher> = OnceLock::new();
    if let Some(client) = CLIENT.get() {
        return Ok(client);
    }
    let client = outbound::Fetcher::new(
        SEND_TIMEOUT,
        concat!("Wayfinder-Webhooks/", env!("CARGO_PKG_VERSION")),
    )
    .map_err(|e| format!("HTTP client: {e}"))?;
    Ok(CLIENT.get_or_init(|| client))
}

/// A transport error with its causes, without the URL (it may carry tokens).
fn describe(err: reqwest::Error) -> String {
    let err = err.without_url();
    let mut out = if err.is_timeout() {
        format!("timed out after {} s", SEND_TIMEOUT.as_secs())
    } else {
        err.to_string()
    };
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// At most `max` characters of `s`, control characters as spaces.
fn bounded(s: &str, max: usize) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect()
}

/// `t` at the database's precision (microseconds), so a claim compares equal to what was stored.
fn to_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_kind_filters() {
        let kinds = |k: &[&str]| k.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(wants(&[], "bot.created"));
        assert!(wants(&kinds(&["bot.created"]), "bot.created"));
        assert!(!wants(&kinds(&["bot.created"]), "bot.updated"));
        assert!(wants(&kinds(&["ticket.*"]), "ticket.created_via_widget"));
        assert!(!wants(&kinds(&["ticket.*"]), "tickets.x"));
        assert!(wants(&kinds(&["*"]), "anything"));
        assert_eq!(
            parse_event_kinds("k", kinds(&[" bot.created ", "bot.created", "ticket.*"])).unwrap(),
            kinds(&["bot.created", "ticket.*"])
        );
        for bad in ["", "Bot.created", "bot created", "a*b", "**"] {
            assert!(parse_event_kinds("k", kinds(&[bad])).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let base = Duration::from_secs(1);
        let within = |d: Duration, lo: u64| {
            d >= Duration::from_secs(lo) && d <= Duration::from_secs(lo).mul_f64(1.1)
        };
        assert!(within(backoff(base, 1), 1));
        assert!(within(backoff(base, 2), 2));
        assert!(within(backoff(base, 5), 16));
        assert!(within(backoff(base, 12), 2048));
        assert!(within(backoff(base, 40), 3600));
    }

    #[test]
    fn signatures_cover_timestamp_and_body() {
        let sig = signature("secret", 1_700_000_000, r#"{"a":1}"#);
        assert_eq!(sig.len(), 64);
        assert_ne!(sig, signature("secret", 1_700_000_001, r#"{"a":1}"#));
        assert_ne!(sig, signature("secret", 1_700_000_000, r#"{"a":2}"#));
        assert_ne!(sig, signature("other", 1_700_000_000, r#"{"a":1}"#));
    }
}
