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
//! - **Guarded like every customer-chosen URL** ([`crate::outbound`]): a URL
//!   whose host is, or resolves to, a loopback, private, link-local or
//!   metadata address is `BAD_USER_INPUT` when saved, and refused again at
//!   every connect (DNS rebinding), recorded as the delivery's `lastError`;
//!   redirects are not followed. `WAYFINDER_OUTBOUND_ALLOW` opens exceptions.
//! - **Nothing of the receiver's answer is stored but its status code**: a
//!   `lastError` that quoted the response body would let an org read what an
//!   internal server answers.
//!
//! Management (create, update, list) lives here; signing in [`signing`], the
//! queue and the delivery worker in [`delivery`].

mod delivery;
mod signing;

use std::collections::HashMap;

use async_graphql::{Enum, InputObject};
use chrono::Utc;
use entity::{event, org, webhook, webhook_delivery};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter,
    sea_query::Expr,
};
use uuid::Uuid;

pub use self::{
    delivery::{
        BATCH_SIZE, CLAIM_FOR, DEFAULT_BACKOFF_BASE, MAX_ATTEMPTS, MAX_BACKOFF, POLL_EVERY,
        SEND_TIMEOUT, backoff, deliver_due, deliver_forever, enqueue,
    },
    signing::{event_body, signature, signing_secret},
};
use super::{OrgOwned, Page, PageArgs, event as outbox, get, new_id, paginate, scoped};
use crate::{auth::OrgScope, domain, error::AppError, outbound, state::State};

/// Most webhooks one org may have.
pub const MAX_WEBHOOKS_PER_ORG: u64 = 10;
/// Most event kinds one webhook may filter on.
const MAX_EVENT_KINDS: usize = 50;

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
}
