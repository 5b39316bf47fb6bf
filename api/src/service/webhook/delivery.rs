//! The delivery queue and worker: [`enqueue`] adds one `PENDING` row per
//! (webhook, event) after the events commit; [`deliver_forever`] (one per
//! replica) claims due attempts with a conditional update, POSTs them through
//! the outbound guard ([`crate::outbound`]) and records the outcome: the
//! status code only, never the receiver's body, or why the guard refused.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, OnceLock},
    time::Duration,
};

use chrono::{DateTime, Utc};
use entity::{event, webhook, webhook_delivery};
use reqwest::Url;
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, OnConflict, Query},
};
use uuid::Uuid;

use super::{
    DELIVERED, FAILED, PENDING, event_body, event_kinds_of, signature, signing_secret, wants,
};
use crate::{error::AppError, outbound, secret::random_bytes, service::new_id, state::State};

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
/// Longest `lastError` kept.
const ERROR_MAX: usize = 500;

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
}
