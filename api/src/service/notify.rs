//! Owner notifications: debounced across replicas, kept in the outbox,
//! delivered by SMTP with retries.
//!
//! Debouncing is one conditional single-row update on `debounces` (or the
//! insert of its first row), so whichever replica wins the row sends, and the
//! others see zero rows affected: exactly one email per window however many
//! turns fail and however many replicas run.

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use entity::{debounce, notification, org};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor, message::Mailbox};
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, OnConflict},
};
use uuid::Uuid;

use super::{Page, PageArgs, new_id, paginate, scoped};
use crate::{auth::OrgScope, error::AppError, state::State};

/// Attempts before a notification is given up as `FAILED`.
const MAX_ATTEMPTS: i32 = 10;

/// Claims the debounce window of `key`; true for exactly one caller per window.
pub async fn claim_window(
    db: &DatabaseConnection,
    key: &str,
    window: Duration,
) -> Result<bool, AppError> {
    let now = Utc::now();
    let cutoff =
        now - chrono::Duration::from_std(window).unwrap_or_else(|_| chrono::Duration::days(1));
    let updated = debounce::Entity::update_many()
        .col_expr(debounce::Column::LastFiredAt, Expr::value(now))
        .filter(debounce::Column::Key.eq(key))
        .filter(debounce::Column::LastFiredAt.lt(cutoff))
        .exec(db)
        .await?;
    if updated.rows_affected == 1 {
        return Ok(true);
    }
    let inserted = debounce::Entity::insert(debounce::ActiveModel {
        key: Set(key.to_string()),
        last_fired_at: Set(now),
    })
    .on_conflict(
        OnConflict::column(debounce::Column::Key)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(inserted == 1)
}

/// Queues the "out of AI credits" email to the org's owner, at most once per debounce window.
pub async fn out_of_credits(st: &State, org: &org::Model) -> Result<bool, AppError> {
    let key = format!("credits.insufficient:{}", org.id);
    if !claim_window(
        &st.db,
        &key,
        Duration::from_secs(st.config.notify_debounce_secs),
    )
    .await?
    {
        return Ok(false);
    }
    let now = Utc::now();
    notification::ActiveModel {
        id: Set(new_id()),
        org_id: Set(org.id),
        kind: Set("credits.insufficient".into()),
        recipient: Set(org.owner_email.clone()),
        subject: Set(format!("{}: your Wayfinder AI credits have run out", org.name)),
        body: Set(format!(
            "Hello,\n\nThe AI credits of {} have run out, so your chat widgets now answer with their canned fallback reply.\n\nAdd credits to turn AI answers back on.\n\n— Wayfinder",
            org.name
        )),
        status: Set("PENDING".into()),
        attempts: Set(0),
        last_error: Set(None),
        debounce_key: Set(Some(key)),
        next_attempt_at: Set(now),
        created_at: Set(now),
        sent_at: Set(None),
    }
    .insert(&st.db)
    .await?;
    Ok(true)
}

/// The caller's notifications, oldest first.
pub async fn list(
    st: &State,
    scope: &OrgScope,
    page: &PageArgs,
) -> Result<Page<notification::Model>, AppError> {
    paginate(&st.db, scoped::<notification::Entity>(scope), page).await
}

fn backoff(attempts: i32) -> chrono::Duration {
    let secs = 2_i64
        .saturating_pow(attempts.clamp(0, 12) as u32)
        .min(3_600);
    chrono::Duration::seconds(secs)
}

/// Sends what is due once; returns how many were sent.
pub async fn send_due(
    st: &State,
    mailer: &AsyncSmtpTransport<Tokio1Executor>,
) -> Result<usize, AppError> {
    let now = Utc::now();
    let due = notification::Entity::find()
        .filter(notification::Column::Status.eq("PENDING"))
        .filter(notification::Column::NextAttemptAt.lte(now))
        .order_by_asc(notification::Column::NextAttemptAt)
        .limit(20)
        .all(&st.db)
        .await?;
    let mut sent = 0;
    for n in due {
        // Claim this attempt: only the replica whose update matches sends it.
        let claimed = notification::Entity::update_many()
            .col_expr(
                notification::Column::NextAttemptAt,
                Expr::value(now + chrono::Duration::seconds(120)),
            )
            .filter(notification::Column::Id.eq(n.id))
            .filter(notification::Column::Status.eq("PENDING"))
            .filter(notification::Column::NextAttemptAt.eq(n.next_attempt_at))
            .exec(&st.db)
            .await?;
        if claimed.rows_affected != 1 {
            continue;
        }
        let result = deliver(st, mailer, &n).await;
        let attempts = n.attempts + 1;
        let mut am: notification::ActiveModel = n.into();
        am.attempts = Set(attempts);
        match result {
            Ok(()) => {
                am.status = Set("SENT".into());
                am.sent_at = Set(Some(Utc::now()));
                am.last_error = Set(None);
                sent += 1;
            }
            Err(err) => {
                tracing::warn!(%err, attempts, "notification email failed");
                am.last_error = Set(Some(err.chars().take(500).collect()));
                if attempts >= MAX_ATTEMPTS {
                    am.status = Set("FAILED".into());
                } else {
                    am.next_attempt_at = Set(Utc::now() + backoff(attempts));
                }
            }
        }
        am.update(&st.db).await?;
    }
    Ok(sent)
}

async fn deliver(
    st: &State,
    mailer: &AsyncSmtpTransport<Tokio1Executor>,
    n: &notification::Model,
) -> Result<(), String> {
    let from: Mailbox = st
        .config
        .smtp_from
        .parse()
        .map_err(|e| format!("SMTP_FROM: {e}"))?;
    let to: Mailbox = n.recipient.parse().map_err(|e| format!("recipient: {e}"))?;
    let email = Message::builder()
        .from(from)
        .to(to)
        .subject(n.subject.clone())
        .body(n.body.clone())
        .map_err(|e| e.to_string())?;
    mailer
        .send(email)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Delivers due notifications forever (when `SMTP_URL` is set), every `every`.
pub async fn send_forever(st: Arc<State>, every: Duration) {
    let Some(url) = st.config.smtp_url.clone() else {
        return;
    };
    let mailer = match AsyncSmtpTransport::<Tokio1Executor>::from_url(&url) {
        Ok(b) => b.timeout(Some(Duration::from_secs(10))).build(),
        Err(err) => {
            tracing::error!(%err, "SMTP_URL is not usable; emails stay in the outbox");
            return;
        }
    };
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        if let Err(err) = send_due(&st, &mailer).await {
            tracing::warn!(%err, "notification sender failed");
        }
    }
}

/// Org of a notification id, for tests and tools.
pub async fn get(
    db: &DatabaseConnection,
    id: Uuid,
) -> Result<Option<notification::Model>, AppError> {
    Ok(notification::Entity::find_by_id(id).one(db).await?)
}
