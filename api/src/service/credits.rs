//! Credits: the balance on the org row, every change in the ledger.
//!
//! The invariant: the ledger of an org always sums exactly to its balance,
//! and the balance never goes below zero, under any interleaving, on SQLite
//! and on PostgreSQL (read committed). Two rules keep it:
//! - a change that depends on the balance (a reservation, an excess charge, a
//!   revocation) either is one conditional statement whose effect is checked,
//!   or first locks the org row (`SELECT … FOR UPDATE`; SQLite's write
//!   transactions already hold the database lock), and its ledger row records
//!   what was actually applied, in the same transaction;
//! - a reservation is always settled exactly once: [`ReservationGuard`] runs
//!   the settlement in a task of its own (so cancelling the caller cannot stop
//!   it half-way) and, when the guard is dropped unsettled (a panic, a
//!   cancelled request, an early return), refunds it from `Drop`.

use chrono::Utc;
use entity::{credit_ledger, org};
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect,
    sea_query::{Expr, ExprTrait},
};
use uuid::Uuid;

use super::{Page, PageArgs, event, new_id, paginate, scoped};
use crate::{auth::OrgScope, error::AppError, state::State};

/// Largest single grant or revocation.
pub const MAX_GRANT: i64 = 1_000_000_000;

/// The caller's balance.
pub async fn balance(db: &DatabaseConnection, scope: &OrgScope) -> Result<i64, AppError> {
    Ok(super::org::get(db, scope).await?.credit_balance)
}

/// The caller's ledger, oldest first.
pub async fn ledger(
    st: &State,
    scope: &OrgScope,
    page: &PageArgs,
) -> Result<Page<credit_ledger::Model>, AppError> {
    paginate(&st.db, scoped::<credit_ledger::Entity>(scope), page).await
}

/// An operator's grant or revocation: 1 to [`MAX_GRANT`] credits.
fn check_amount(amount: i64) -> Result<(), AppError> {
    if (1..=MAX_GRANT).contains(&amount) {
        Ok(())
    } else {
        Err(AppError::bad_input(
            "input.amount",
            format!("must be between 1 and {MAX_GRANT}"),
        ))
    }
}

/// Adds `amount` credits to `org_id` with a `GRANT` ledger row and the
/// `credits.granted` event, atomically (the event is committed, not yet published).
pub async fn grant(
    db: &DatabaseConnection,
    org_id: Uuid,
    amount: i64,
    note: Option<String>,
) -> Result<Adjustment, AppError> {
    check_amount(amount)?;
    let txn = crate::service::begin_write(db).await?;
    let res = org::Entity::update_many()
        .col_expr(
            org::Column::CreditBalance,
            Expr::col(org::Column::CreditBalance).add(amount),
        )
        .col_expr(org::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(org::Column::Id.eq(org_id))
        .exec(&txn)
        .await?;
    if res.rows_affected == 0 {
        return Err(AppError::not_found_in("org", "input.orgId"));
    }
    let entry = ledger_row(org_id, amount, "GRANT", None, None, note)
        .insert(&txn)
        .await?;
    let balance = org::Entity::find_by_id(org_id)
        .one(&txn)
        .await?
        .map(|o| o.credit_balance)
        .ok_or_else(|| AppError::not_found("org"))?;
    let ev = event::record(
        &txn,
        org_id,
        "credits.granted",
        serde_json::json!({ "ledgerEntryId": entry.id, "amount": amount, "balance": balance }),
    )
    .await?;
    txn.commit().await?;
    Ok(Adjustment {
        applied: amount,
        balance,
        entry: Some(entry),
        event: Some(ev),
    })
}

/// Credits held for one LLM call, to be settled by the tokens it used.
#[derive(Debug, Clone)]
pub struct Reservation {
    pub org_id: Uuid,
    pub turn_id: Option<Uuid>,
    pub model: String,
    pub amount: i64,
}

/// Why a reservation failed.
#[derive(Debug)]
pub enum ReserveError {
    /// The balance is below the estimate.
    Insufficient,
    /// The database failed.
    Failed(AppError),
}

/// The credits `tokens` cost at `price` per 1,000 tokens, rounded up.
pub fn cost(tokens: u64, price: i64) -> i64 {
    let price = std::cmp::max(price, 0) as u64;
    i64::try_from((tokens.saturating_mul(price)).div_ceil(1000)).unwrap_or(i64::MAX)
}

fn ledger_row(
    org_id: Uuid,
    amount: i64,
    kind: &str,
    turn_id: Option<Uuid>,
    model: Option<&str>,
    note: Option<String>,
) -> credit_ledger::ActiveModel {
    credit_ledger::ActiveModel {
        id: Set(new_id()),
        org_id: Set(org_id),
        amount: Set(amount),
        kind: Set(kind.into()),
        turn_id: Set(turn_id),
        message_id: Set(None),
        model: Set(model.map(str::to_string)),
        note: Set(note),
        created_at: Set(Utc::now()),
    }
}

/// Takes `amount` from the balance in one conditional statement that cannot
/// go below zero, with its `RESERVATION` ledger row, atomically. Only
/// [`ReservationGuard::reserve`] calls it, so every reservation has a guard.
async fn reserve(
    db: &DatabaseConnection,
    org_id: Uuid,
    turn_id: Option<Uuid>,
    model: &str,
    amount: i64,
) -> Result<Reservation, ReserveError> {
    let amount = std::cmp::max(amount, 1);
    let run = async {
        let txn = crate::service::begin_write(db).await?;
        let res = org::Entity::update_many()
            .col_expr(
                org::Column::CreditBalance,
                Expr::col(org::Column::CreditBalance).sub(amount),
            )
            .filter(org::Column::Id.eq(org_id))
            .filter(org::Column::CreditBalance.gte(amount))
            .exec(&txn)
            .await?;
        if res.rows_affected != 1 {
            txn.rollback().await?;
            return Ok::<bool, sea_orm::DbErr>(false);
        }
        ledger_row(org_id, -amount, "RESERVATION", turn_id, Some(model), None)
            .insert(&txn)
            .await?;
        txn.commit().await?;
        Ok(true)
    };
    match run.await {
        Ok(true) => Ok(Reservation {
            org_id,
            turn_id,
            model: model.to_string(),
            amount,
        }),
        Ok(false) => Err(ReserveError::Insufficient),
        Err(e) => Err(ReserveError::Failed(e.into())),
    }
}

/// The org row, locked for the rest of `txn` (`FOR UPDATE` on PostgreSQL;
/// on SQLite the write transaction holds the database lock already), so a
/// decision made on its balance still holds when the update runs.
async fn locked_org(
    txn: &impl ConnectionTrait,
    org_id: Uuid,
) -> Result<Option<org::Model>, sea_orm::DbErr> {
    org::Entity::find_by_id(org_id)
        .lock_exclusive()
        .one(txn)
        .await
}

/// Adds `delta` (signed) to the balance of the locked org row; fails unless
/// exactly that row changed and the balance stays at or above zero.
async fn apply(txn: &impl ConnectionTrait, org_id: Uuid, delta: i64) -> Result<(), AppError> {
    if delta == 0 {
        return Ok(());
    }
    let mut update = org::Entity::update_many()
        .col_expr(
            org::Column::CreditBalance,
            Expr::col(org::Column::CreditBalance).add(delta),
        )
        .filter(org::Column::Id.eq(org_id));
    if delta < 0 {
        update = update.filter(org::Column::CreditBalance.gte(-delta));
    }
    let res = update.exec(txn).await?;
    if res.rows_affected != 1 {
        // Cannot happen with the row locked; if it ever does, the caller's
        // transaction rolls back rather than record a change it did not make.
        return Err(AppError::internal(format!(
            "credit balance change of {delta} matched {} rows",
            res.rows_affected
        )));
    }
    Ok(())
}

/// Settles a reservation by what the call actually cost: refunds the
/// difference, or charges the excess as far as the balance allows (never
/// below zero; what could not be charged is noted, not recorded as a charge).
/// Every balance change gets its ledger row, of exactly the amount applied,
/// in the same transaction. Only [`ReservationGuard`] calls it.
async fn settle_noted(
    db: &DatabaseConnection,
    res: &Reservation,
    actual: i64,
    note: String,
) -> Result<(), AppError> {
    let actual = std::cmp::max(actual, 0);
    let txn = crate::service::begin_write(db).await?;
    let Some(current) = locked_org(&txn, res.org_id).await? else {
        // The org is gone, and its ledger with it: nothing left to settle.
        txn.rollback().await?;
        return Ok(());
    };
    if actual <= res.amount {
        let mut rows = vec![ledger_row(
            res.org_id,
            0,
            "SETTLEMENT",
            res.turn_id,
            Some(&res.model),
            Some(note),
        )];
        let refund = res.amount - actual;
        if refund > 0 {
            apply(&txn, res.org_id, refund).await?;
            rows.push(ledger_row(
                res.org_id,
                refund,
                "REFUND",
                res.turn_id,
                Some(&res.model),
                None,
            ));
        }
        // One statement for both rows: a turn's writes stay few.
        credit_ledger::Entity::insert_many(rows).exec(&txn).await?;
    } else {
        let owed = actual - res.amount;
        let extra = std::cmp::min(owed, std::cmp::max(current.credit_balance, 0));
        apply(&txn, res.org_id, -extra).await?;
        let note = if extra < owed {
            format!(
                "{note}; {} credits over the balance not charged",
                owed - extra
            )
        } else {
            note
        };
        ledger_row(
            res.org_id,
            -extra,
            "SETTLEMENT",
            res.turn_id,
            Some(&res.model),
            Some(note),
        )
        .insert(&txn)
        .await?;
    }
    txn.commit().await?;
    Ok(())
}

/// Attempts at a settlement before giving up (each one a whole transaction,
/// so a failed attempt changed nothing).
const SETTLE_ATTEMPTS: u32 = 3;

/// [`settle_noted`], retried with a short backoff: a database hiccup must not
/// leave the org paying a whole reservation for a call that cost less.
async fn settle_retrying(db: DatabaseConnection, res: Reservation, actual: i64, note: String) {
    for attempt in 1..=SETTLE_ATTEMPTS {
        match settle_noted(&db, &res, actual, note.clone()).await {
            Ok(()) => return,
            Err(err) if attempt < SETTLE_ATTEMPTS => {
                tracing::warn!(%err, org_id = %res.org_id, attempt, "credit settlement failed; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(100 << attempt)).await;
            }
            Err(err) => tracing::error!(
                %err,
                org_id = %res.org_id,
                turn_id = ?res.turn_id,
                reserved = res.amount,
                "credit settlement failed; the reservation stays charged"
            ),
        }
    }
}

/// A reservation that is settled exactly once, whatever happens to the call
/// it pays for.
///
/// [`ReservationGuard::settle`] settles by the tokens used. Dropped without
/// it (the call panicked, the request was cancelled, the turn task was
/// aborted), the guard refunds the whole reservation from a task it spawns in
/// `Drop`. Either way the settlement runs in a task of its own, so cancelling
/// whoever awaits it cannot stop it half-way or run it twice.
#[must_use = "a reservation must be settled (dropping the guard refunds it)"]
pub struct ReservationGuard {
    db: DatabaseConnection,
    reservation: Option<Reservation>,
}

impl ReservationGuard {
    /// Takes `amount` credits (at least 1) from the balance in one conditional
    /// statement that cannot go below zero, with its `RESERVATION` ledger row;
    /// returns the guard that settles it.
    pub async fn reserve(
        db: &DatabaseConnection,
        org_id: Uuid,
        turn_id: Option<Uuid>,
        model: &str,
        amount: i64,
    ) -> Result<Self, ReserveError> {
        let reservation = reserve(db, org_id, turn_id, model, amount).await?;
        Ok(Self {
            db: db.clone(),
            reservation: Some(reservation),
        })
    }

    /// Credits held.
    pub fn amount(&self) -> i64 {
        self.reservation.as_ref().map_or(0, |r| r.amount)
    }

    /// Settles by what the call cost (`actual` credits for `tokens` tokens).
    /// Returns when the settlement is stored (or has failed and been logged).
    pub async fn settle(mut self, actual: i64, tokens: u32) {
        let Some(res) = self.reservation.take() else {
            return;
        };
        let task = tokio::spawn(settle_retrying(
            self.db.clone(),
            res,
            actual,
            format!("{tokens} tokens"),
        ));
        if let Err(err) = task.await {
            tracing::error!(%err, "credit settlement task failed");
        }
    }
}

impl Drop for ReservationGuard {
    fn drop(&mut self) {
        let Some(res) = self.reservation.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                tracing::warn!(
                    org_id = %res.org_id,
                    turn_id = ?res.turn_id,
                    "an LLM call ended without settling its credits; refunding the reservation"
                );
                runtime.spawn(settle_retrying(
                    self.db.clone(),
                    res,
                    0,
                    "call cancelled before it finished: refunded".into(),
                ));
            }
            Err(_) => tracing::error!(
                org_id = %res.org_id,
                turn_id = ?res.turn_id,
                reserved = res.amount,
                "no runtime to refund an unsettled reservation; it stays charged"
            ),
        }
    }
}

/// Takes up to `amount` credits from `org_id` with a `REVOKE` ledger row:
/// never more than the balance, so the balance stops at zero. Returns the
/// credits actually taken (0: nothing changed, nothing recorded), the new
/// balance, and the ledger row and event when something was taken.
pub async fn revoke(
    db: &DatabaseConnection,
    org_id: Uuid,
    amount: i64,
    note: Option<String>,
) -> Result<Adjustment, AppError> {
    check_amount(amount)?;
    let txn = crate::service::begin_write(db).await?;
    let current = locked_org(&txn, org_id)
        .await?
        .ok_or_else(|| AppError::not_found_in("org", "input.orgId"))?;
    let taken = std::cmp::min(amount, std::cmp::max(current.credit_balance, 0));
    if taken == 0 {
        txn.rollback().await?;
        return Ok(Adjustment {
            applied: 0,
            balance: current.credit_balance,
            entry: None,
            event: None,
        });
    }
    apply(&txn, org_id, -taken).await?;
    let entry = ledger_row(org_id, -taken, "REVOKE", None, None, note)
        .insert(&txn)
        .await?;
    let balance = current.credit_balance - taken;
    let ev = event::record(
        &txn,
        org_id,
        "credits.revoked",
        serde_json::json!({
            "ledgerEntryId": entry.id, "requested": amount, "amount": taken, "balance": balance
        }),
    )
    .await?;
    txn.commit().await?;
    Ok(Adjustment {
        applied: taken,
        balance,
        entry: Some(entry),
        event: Some(ev),
    })
}

/// What [`grant`] or [`revoke`] did.
#[derive(Debug)]
pub struct Adjustment {
    /// Credits added (grant) or taken (revoke, at most the balance), as a positive number.
    pub applied: i64,
    /// The balance afterwards.
    pub balance: i64,
    /// The `GRANT` or `REVOKE` ledger row; `None` when nothing changed.
    pub entry: Option<credit_ledger::Model>,
    /// The `credits.granted` or `credits.revoked` event (committed, not yet published).
    pub event: Option<entity::event::Model>,
}

/// Credits used on one day by one model.
#[derive(Debug, Clone, async_graphql::SimpleObject)]
pub struct UsageRow {
    /// The day (UTC), `YYYY-MM-DD`.
    pub day: String,
    /// The model charged for.
    pub model: String,
    /// Credits spent (reservations less refunds).
    pub credits: i64,
    /// LLM calls.
    pub calls: i64,
}

/// Credits spent per day and model over the last `days` days, newest day first.
pub async fn usage(st: &State, scope: &OrgScope, days: u32) -> Result<Vec<UsageRow>, AppError> {
    use std::collections::BTreeMap;
    let since = Utc::now() - chrono::Duration::days(i64::from(days.clamp(1, 366)));
    let rows = scoped::<credit_ledger::Entity>(scope)
        .filter(credit_ledger::Column::CreatedAt.gte(since))
        .filter(credit_ledger::Column::Kind.is_in(["RESERVATION", "SETTLEMENT", "REFUND"]))
        .limit(200_000)
        .all(&st.db)
        .await?;
    let mut by: BTreeMap<(String, String), (i64, i64)> = BTreeMap::new();
    for r in rows {
        let key = (
            r.created_at.format("%Y-%m-%d").to_string(),
            r.model.clone().unwrap_or_default(),
        );
        let e = by.entry(key).or_default();
        e.0 -= r.amount;
        if r.kind == "RESERVATION" {
            e.1 += 1;
        }
    }
    let mut out: Vec<UsageRow> = by
        .into_iter()
        .map(|((day, model), (credits, calls))| UsageRow {
            day,
            model,
            credits,
            calls,
        })
        .collect();
    out.reverse();
    Ok(out)
}

/// Clears the turn and message references of `org_id`'s ledger rows that
/// point at the chat messages `messages` selects, or at their turns: the rows
/// and their amounts stay (money is never forgotten), the link to what was
/// said does not. Returns the rows changed. Used by retention and by a
/// visitor's deletion, before the messages go.
pub async fn forget_message_references(
    db: &impl sea_orm::ConnectionTrait,
    org_id: Uuid,
    messages: sea_orm::Condition,
) -> Result<u64, sea_orm::DbErr> {
    use entity::chat_message;
    use sea_orm::sea_query::Query;
    let turns = Query::select()
        .column(chat_message::Column::TurnId)
        .from(chat_message::Entity)
        .cond_where(messages.clone())
        .to_owned();
    let ids = Query::select()
        .column(chat_message::Column::Id)
        .from(chat_message::Entity)
        .cond_where(messages)
        .to_owned();
    Ok(credit_ledger::Entity::update_many()
        .col_expr(
            credit_ledger::Column::TurnId,
            Expr::value(Option::<Uuid>::None),
        )
        .col_expr(
            credit_ledger::Column::MessageId,
            Expr::value(Option::<Uuid>::None),
        )
        .filter(credit_ledger::Column::OrgId.eq(org_id))
        .filter(
            sea_orm::Condition::any()
                .add(credit_ledger::Column::TurnId.in_subquery(turns))
                .add(credit_ledger::Column::MessageId.in_subquery(ids)),
        )
        .exec(db)
        .await?
        .rows_affected)
}
