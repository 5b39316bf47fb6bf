//! The retention job: each org's `retentionDays` enforced in the background.
//!
//! Every `WAYFINDER_RETENTION_INTERVAL_SECS` each replica sweeps every org
//! that set a period: chat messages created before the cutoff (with their
//! feedback), tour runs last reported before it, sessions whose last
//! activity is before it (with their remaining tour runs), support tickets
//! last changed before it, outbox events (and their webhook deliveries)
//! created before it, and end users with no session left who were last seen
//! before it. The credit ledger keeps every row, money is never forgotten:
//! the turn and message references of the deleted messages are cleared
//! first, in the same transaction.
//!
//! Work goes in batches of `WAYFINDER_RETENTION_BATCH` rows, each its own
//! short write transaction, selected by primary key and deleted by id, so
//! the same statements run on SQLite and PostgreSQL and a large backlog
//! never holds the write lock for long. Replicas sweeping at once only
//! repeat each other's deletes (a delete of a gone row is a no-op).

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use entity::{
    chat_feedback, chat_message, chat_session, end_user, event, org, support_ticket, tour_run,
};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, ExprTrait, Query},
};
use uuid::Uuid;

use crate::{error::AppError, state::State};

/// What one sweep deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Swept {
    pub messages: u64,
    pub sessions: u64,
    pub tickets: u64,
    pub events: u64,
    pub end_users: u64,
    pub tour_runs: u64,
}

/// Sweeps forever, every `retention_interval_secs` (0: never).
pub async fn sweep_forever(st: std::sync::Arc<State>) {
    let secs = st.config.retention_interval_secs;
    if secs == 0 {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_secs(secs));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match sweep(&st, Utc::now()).await {
            Ok(s) if s != Swept::default() => tracing::info!(?s, "retention sweep"),
            Ok(_) => {}
            Err(err) => tracing::warn!(%err, "retention sweep failed; retrying next interval"),
        }
    }
}

/// One sweep of every org with a retention period, as of `now`.
pub async fn sweep(st: &State, now: DateTime<Utc>) -> Result<Swept, AppError> {
    let orgs: Vec<(Uuid, Option<i32>)> = org::Entity::find()
        .select_only()
        .column(org::Column::Id)
        .column(org::Column::RetentionDays)
        .filter(org::Column::RetentionDays.is_not_null())
        .into_tuple()
        .all(&st.db)
        .await?;
    let batch = st.config.retention_batch.clamp(1, 10_000);
    let mut total = Swept::default();
    for (org_id, days) in orgs {
        let Some(days) = days.filter(|d| *d > 0) else {
            continue;
        };
        let cutoff = now - TimeDelta::days(i64::from(days));
        let s = sweep_org(st, org_id, cutoff, batch).await?;
        total.messages += s.messages;
        total.sessions += s.sessions;
        total.tickets += s.tickets;
        total.events += s.events;
        total.end_users += s.end_users;
        total.tour_runs += s.tour_runs;
    }
    Ok(total)
}

/// The ids of at most `batch` rows of `org_id` in `E` whose `time` is before
/// `cutoff`, oldest id first: the next batch every loop below deletes.
async fn older_ids<E: super::OrgOwned>(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    time: E::Column,
    cutoff: DateTime<Utc>,
    batch: u64,
) -> Result<Vec<Uuid>, sea_orm::DbErr> {
    E::find()
        .select_only()
        .column(E::id_col())
        .filter(E::org_col().eq(org_id))
        .filter(time.lt(cutoff))
        .order_by_asc(E::id_col())
        .limit(batch)
        .into_tuple()
        .all(db)
        .await
}

/// Deletes what of `org_id` is older than `cutoff`, `batch` rows at a time.
async fn sweep_org(
    st: &State,
    org_id: Uuid,
    cutoff: DateTime<Utc>,
    batch: u64,
) -> Result<Swept, AppError> {
    let mut swept = Swept::default();
    // Messages first (their ledger references cleared with them), then the sessions they emptied.
    loop {
        let ids = older_ids::<chat_message::Entity>(
            &st.db,
            org_id,
            chat_message::Column::CreatedAt,
            cutoff,
            batch,
        )
        .await?;
        if ids.is_empty() {
            break;
        }
        let txn = super::begin_write(&st.db).await?;
        clear_ledger(&txn, org_id, &ids).await?;
        chat_feedback::Entity::delete_many()
            .filter(chat_feedback::Column::MessageId.is_in(ids.clone()))
            .exec(&txn)
            .await?;
        swept.messages += chat_message::Entity::delete_many()
            .filter(chat_message::Column::Id.is_in(ids))
            .exec(&txn)
            .await?
            .rows_affected;
        txn.commit().await?;
        tokio::task::yield_now().await;
    }
    // Tour runs last reported before the cutoff (a quiet session's newer ones go with it below).
    loop {
        let ids = older_ids::<tour_run::Entity>(
            &st.db,
            org_id,
            tour_run::Column::UpdatedAt,
            cutoff,
            batch,
        )
        .await?;
        if ids.is_empty() {
            break;
        }
        swept.tour_runs += tour_run::Entity::delete_many()
            .filter(tour_run::Column::Id.is_in(ids))
            .exec(&st.db)
            .await?
            .rows_affected;
        tokio::task::yield_now().await;
    }
    loop {
        let ids = older_ids::<chat_session::Entity>(
            &st.db,
            org_id,
            chat_session::Column::UpdatedAt,
            cutoff,
            batch,
        )
        .await?;
        if ids.is_empty() {
            break;
        }
        let txn = super::begin_write(&st.db).await?;
        // A quiet session can still hold a few messages newer than the cutoff: they go with it.
        let left: Vec<Uuid> = chat_message::Entity::find()
            .select_only()
            .column(chat_message::Column::Id)
            .filter(chat_message::Column::SessionId.is_in(ids.clone()))
            .into_tuple()
            .all(&txn)
            .await?;
        for chunk in left.chunks(500) {
            clear_ledger(&txn, org_id, chunk).await?;
        }
        support_ticket::Entity::update_many()
            .col_expr(
                support_ticket::Column::SessionId,
                Expr::value(Option::<Uuid>::None),
            )
            .filter(support_ticket::Column::SessionId.is_in(ids.clone()))
            .exec(&txn)
            .await?;
        chat_feedback::Entity::delete_many()
            .filter(chat_feedback::Column::SessionId.is_in(ids.clone()))
            .exec(&txn)
            .await?;
        swept.tour_runs += tour_run::Entity::delete_many()
            .filter(tour_run::Column::SessionId.is_in(ids.clone()))
            .exec(&txn)
            .await?
            .rows_affected;
        swept.messages += chat_message::Entity::delete_many()
            .filter(chat_message::Column::SessionId.is_in(ids.clone()))
            .exec(&txn)
            .await?
            .rows_affected;
        swept.sessions += chat_session::Entity::delete_many()
            .filter(chat_session::Column::Id.is_in(ids))
            .exec(&txn)
            .await?
            .rows_affected;
        txn.commit().await?;
        tokio::task::yield_now().await;
    }
    loop {
        let ids = older_ids::<support_ticket::Entity>(
            &st.db,
            org_id,
            support_ticket::Column::UpdatedAt,
            cutoff,
            batch,
        )
        .await?;
        if ids.is_empty() {
            break;
        }
        swept.tickets += support_ticket::Entity::delete_many()
            .filter(support_ticket::Column::Id.is_in(ids))
            .exec(&st.db)
            .await?
            .rows_affected;
        tokio::task::yield_now().await;
    }
    loop {
        let ids =
            older_ids::<event::Entity>(&st.db, org_id, event::Column::CreatedAt, cutoff, batch)
                .await?;
        if ids.is_empty() {
            break;
        }
        swept.events += event::Entity::delete_many()
            .filter(event::Column::Id.is_in(ids))
            .exec(&st.db)
            .await?
            .rows_affected;
        tokio::task::yield_now().await;
    }
    loop {
        let has_session = Query::select()
            .expr(Expr::val(1))
            .from(chat_session::Entity)
            .and_where(
                Expr::col((chat_session::Entity, chat_session::Column::EndUserId))
                    .equals((end_user::Entity, end_user::Column::Id)),
            )
            .to_owned();
        let ids: Vec<Uuid> = end_user::Entity::find()
            .select_only()
            .column(end_user::Column::Id)
            .filter(end_user::Column::OrgId.eq(org_id))
            .filter(end_user::Column::UpdatedAt.lt(cutoff))
            .filter(Condition::all().add(Expr::exists(has_session).not()))
            .order_by_asc(end_user::Column::Id)
            .limit(batch)
            .into_tuple()
            .all(&st.db)
            .await?;
        if ids.is_empty() {
            break;
        }
        let txn = super::begin_write(&st.db).await?;
        support_ticket::Entity::update_many()
            .col_expr(
                support_ticket::Column::EndUserId,
                Expr::value(Option::<Uuid>::None),
            )
            .filter(support_ticket::Column::EndUserId.is_in(ids.clone()))
            .exec(&txn)
            .await?;
        swept.end_users += end_user::Entity::delete_many()
            .filter(end_user::Column::Id.is_in(ids))
            .exec(&txn)
            .await?
            .rows_affected;
        txn.commit().await?;
        tokio::task::yield_now().await;
    }
    Ok(swept)
}

/// Clears the ledger's references to the chat messages `message_ids` (see
/// [`super::credits::forget_message_references`]).
async fn clear_ledger(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    message_ids: &[Uuid],
) -> Result<(), AppError> {
    super::credits::forget_message_references(
        db,
        org_id,
        Condition::all().add(chat_message::Column::Id.is_in(message_ids.to_vec())),
    )
    .await?;
    Ok(())
}
