//! Credits: the balance on the org row, every change in the ledger.

use chrono::Utc;
use entity::{credit_ledger, org};
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect,
    sea_query::{Expr, ExprTrait},
};
use uuid::Uuid;

use super::{Page, PageArgs, event, new_id, paginate, scoped};
use crate::{auth::OrgScope, error::AppError, state::State};

/// Largest single grant.
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

/// Adds `amount` credits to `org_id` with a `GRANT` ledger row, atomically; returns the new balance.
pub async fn grant(
    db: &DatabaseConnection,
    org_id: Uuid,
    amount: i64,
    note: Option<String>,
) -> Result<(i64, Vec<entity::event::Model>), AppError> {
    if !(1..=MAX_GRANT).contains(&amount) {
        return Err(AppError::bad_input(
            "input.amount",
            format!("must be between 1 and {MAX_GRANT}"),
        ));
    }
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
        return Err(AppError::not_found("org"));
    }
    let entry = credit_ledger::ActiveModel {
        id: Set(new_id()),
        org_id: Set(org_id),
        amount: Set(amount),
        kind: Set("GRANT".into()),
        turn_id: Set(None),
        message_id: Set(None),
        model: Set(None),
        note: Set(note),
        created_at: Set(Utc::now()),
    }
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
    Ok((balance, vec![ev]))
}

/// [`grant`] for the caller's own org, publishing the event.
pub async fn grant_own(
    st: &State,
    scope: &OrgScope,
    amount: i64,
    note: Option<String>,
) -> Result<i64, AppError> {
    let note = note
        .map(|n| crate::domain::text("input.note", &n, 0, 500))
        .transpose()?;
    let (balance, events) = grant(&st.db, scope.org_id(), amount, note).await?;
    event::publish(st, &events).await;
    Ok(balance)
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
    model: &str,
    note: Option<String>,
) -> credit_ledger::ActiveModel {
    credit_ledger::ActiveModel {
        id: Set(new_id()),
        org_id: Set(org_id),
        amount: Set(amount),
        kind: Set(kind.into()),
        turn_id: Set(turn_id),
        message_id: Set(None),
        model: Set(Some(model.to_string())),
        note: Set(note),
        created_at: Set(Utc::now()),
    }
}

/// Takes `amount` from the balance in one conditional statement that cannot
/// go below zero, with its `RESERVATION` ledger row, atomically.
pub async fn reserve(
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
        ledger_row(org_id, -amount, "RESERVATION", turn_id, model, None)
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

/// Settles a reservation by what the call actually cost: refunds the
/// difference, or charges the excess as far as the balance allows (never
/// below zero). Every balance change gets its ledger row in the same transaction.
pub async fn settle(
    db: &DatabaseConnection,
    res: &Reservation,
    actual: i64,
    tokens: u32,
) -> Result<(), AppError> {
    let actual = std::cmp::max(actual, 0);
    let note = Some(format!("{tokens} tokens"));
    let txn = crate::service::begin_write(db).await?;
    if actual <= res.amount {
        ledger_row(res.org_id, 0, "SETTLEMENT", res.turn_id, &res.model, note)
            .insert(&txn)
            .await?;
        let refund = res.amount - actual;
        if refund > 0 {
            org::Entity::update_many()
                .col_expr(
                    org::Column::CreditBalance,
                    Expr::col(org::Column::CreditBalance).add(refund),
                )
                .filter(org::Column::Id.eq(res.org_id))
                .exec(&txn)
                .await?;
            ledger_row(res.org_id, refund, "REFUND", res.turn_id, &res.model, None)
                .insert(&txn)
                .await?;
        }
    } else {
        let balance = org::Entity::find_by_id(res.org_id)
            .one(&txn)
            .await?
            .map(|o| o.credit_balance)
            .unwrap_or(0);
        let extra = std::cmp::min(actual - res.amount, std::cmp::max(balance, 0));
        if extra > 0 {
            org::Entity::update_many()
                .col_expr(
                    org::Column::CreditBalance,
                    Expr::col(org::Column::CreditBalance).sub(extra),
                )
                .filter(org::Column::Id.eq(res.org_id))
                .filter(org::Column::CreditBalance.gte(extra))
                .exec(&txn)
                .await?;
        }
        ledger_row(
            res.org_id,
            -extra,
            "SETTLEMENT",
            res.turn_id,
            &res.model,
            note,
        )
        .insert(&txn)
        .await?;
    }
    txn.commit().await?;
    Ok(())
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
