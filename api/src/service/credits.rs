//! Credits: the balance on the org row, every change in the ledger.

use chrono::Utc;
use entity::{credit_ledger, org};
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, TransactionTrait,
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
    let txn = db.begin().await?;
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
