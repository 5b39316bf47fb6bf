//! The operator's operations: what the business running Wayfinder (and its
//! billing system) does to orgs: create them, list them, set their plan,
//! grant and revoke their credits.
//!
//! None of this is an org's own business: an org's API key cannot reach any of
//! it, and every function takes an [`OperatorScope`], which only an operator
//! key (or the shell) makes. Inputs are plain domain structs, so the GraphQL
//! resolvers, the CLI and tests call the same functions. Every change lands in
//! the affected org's own outbox (`org.created`, `org.updated`,
//! `credits.granted`, `credits.revoked`), so the org's dashboard and webhooks
//! see what the operator did.

use chrono::Utc;
use entity::{api_key, org};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use uuid::Uuid;

use super::{Page, PageArgs, credits, event};
use crate::{
    auth::OperatorScope, domain, domain::Plan, error::AppError, secret::NewApiKey, state::State,
};

/// A new org.
#[derive(Clone, Debug)]
pub struct NewOrg {
    pub name: String,
    pub plan: Plan,
    /// Who gets the org's notifications ("out of credits").
    pub owner_email: String,
}

/// A plan change.
#[derive(Clone, Copy, Debug)]
pub struct PlanChange {
    pub org_id: Uuid,
    pub plan: Plan,
}

/// Credits to grant or revoke, with a note for the ledger.
#[derive(Clone, Debug)]
pub struct CreditChange {
    pub org_id: Uuid,
    /// 1 to [`credits::MAX_GRANT`].
    pub amount: i64,
    /// Why (at most 500 characters): an invoice number, a refund reference…
    pub note: Option<String>,
}

/// Longest ledger note.
const NOTE_MAX: usize = 500;

/// Creates an org and its first API key (the key is shown once, in the answer).
#[tracing::instrument(skip_all, fields(operator_key_id = ?scope.operator_key_id()))]
pub async fn create_org(
    st: &State,
    scope: &OperatorScope,
    new: NewOrg,
) -> Result<(org::Model, api_key::Model, NewApiKey), AppError> {
    let created = super::org::create_recorded(
        &st.db,
        &new.name,
        new.plan,
        &new.owner_email,
        "input.name",
        "input.ownerEmail",
    )
    .await?;
    event::publish(st, &[created.3]).await;
    Ok((created.0, created.1, created.2))
}

/// Every org, oldest first.
#[tracing::instrument(skip_all, fields(operator_key_id = ?scope.operator_key_id()))]
pub async fn orgs(
    st: &State,
    scope: &OperatorScope,
    page: &PageArgs,
) -> Result<Page<org::Model>, AppError> {
    let limit = domain::page_size(page.first)?;
    let mut select = org::Entity::find().order_by_asc(org::Column::Id);
    if let Some(after) = &page.after {
        let after = Uuid::parse_str(after)
            .map_err(|_| AppError::bad_input("after", "not a cursor from this list"))?;
        select = select.filter(org::Column::Id.gt(after));
    }
    let mut items = select.limit(limit + 1).all(&st.db).await?;
    let has_next = items.len() as u64 > limit;
    items.truncate(limit as usize);
    Ok(Page {
        items,
        has_previous: page.after.is_some(),
        has_next,
    })
}

/// Sets an org's plan; the org's outbox gets `org.updated` with the old and new plan.
#[tracing::instrument(skip_all, fields(org_id = %change.org_id, operator_key_id = ?scope.operator_key_id()))]
pub async fn set_plan(
    st: &State,
    scope: &OperatorScope,
    change: PlanChange,
) -> Result<org::Model, AppError> {
    let txn = super::begin_write(&st.db).await?;
    let current = org::Entity::find_by_id(change.org_id)
        .one(&txn)
        .await?
        .ok_or_else(|| AppError::not_found_in("org", "input.orgId"))?;
    let from = current.plan.clone();
    let mut am: org::ActiveModel = current.into();
    am.plan = Set(change.plan.as_str().to_string());
    am.updated_at = Set(Utc::now());
    let updated = am.update(&txn).await?;
    let ev = event::record(
        &txn,
        updated.id,
        "org.updated",
        serde_json::json!({ "id": updated.id, "plan": change.plan.as_str(), "previousPlan": from }),
    )
    .await?;
    txn.commit().await?;
    event::publish(st, &[ev]).await;
    Ok(updated)
}

fn note(note: Option<String>) -> Result<Option<String>, AppError> {
    note.map(|n| domain::text("input.note", &n, 0, NOTE_MAX))
        .transpose()
}

/// Adds credits to an org (`GRANT` ledger row, `credits.granted` event).
#[tracing::instrument(skip_all, fields(org_id = %change.org_id, amount = change.amount, operator_key_id = ?scope.operator_key_id()))]
pub async fn grant_credits(
    st: &State,
    scope: &OperatorScope,
    change: CreditChange,
) -> Result<credits::Adjustment, AppError> {
    let note = note(change.note)?;
    let done = credits::grant(&st.db, change.org_id, change.amount, note).await?;
    publish(st, &done).await;
    Ok(done)
}

/// Takes credits from an org (`REVOKE` ledger row, `credits.revoked` event).
/// Asked for more than the balance, it takes the whole balance and says so
/// (`applied` below the amount asked for): the balance never goes below zero.
#[tracing::instrument(skip_all, fields(org_id = %change.org_id, amount = change.amount, operator_key_id = ?scope.operator_key_id()))]
pub async fn revoke_credits(
    st: &State,
    scope: &OperatorScope,
    change: CreditChange,
) -> Result<credits::Adjustment, AppError> {
    let note = note(change.note)?;
    let done = credits::revoke(&st.db, change.org_id, change.amount, note).await?;
    publish(st, &done).await;
    Ok(done)
}

async fn publish(st: &State, done: &credits::Adjustment) {
    if let Some(ev) = &done.event {
        event::publish(st, std::slice::from_ref(ev)).await;
    }
}
