//! Operator-only writes: create orgs, set plans, grant and revoke credits (a
//! billing system's webhook handler calls these). Each needs an operator key
//! (`wf_op_…`, minted by `wayfinder operator-key create`); an org's API key is
//! `FORBIDDEN`, no key `UNAUTHENTICATED`. The resolvers only convert inputs
//! into the plain structs of `service::operator`.

use async_graphql::{Context, InputObject, Object};
use uuid::Uuid;

use crate::{
    domain::Plan,
    error::GqlResult,
    graphql::{
        ContextExt,
        types::{CreatedApiKey, CreatedOrg, CreditAdjustment, Org},
    },
    service::{self, operator},
};

/// A new org.
#[derive(InputObject)]
pub struct CreateOrgInput {
    /// The org's name.
    pub name: String,
    /// Its plan.
    pub plan: Plan,
    /// The owner's email, who gets notifications such as "out of credits".
    pub owner_email: String,
}

impl From<CreateOrgInput> for operator::NewOrg {
    fn from(i: CreateOrgInput) -> Self {
        Self {
            name: i.name,
            plan: i.plan,
            owner_email: i.owner_email,
        }
    }
}

/// A new plan for an org.
#[derive(InputObject)]
pub struct SetOrgPlanInput {
    /// The org.
    pub org_id: Uuid,
    /// Its new plan.
    pub plan: Plan,
}

impl From<SetOrgPlanInput> for operator::PlanChange {
    fn from(i: SetOrgPlanInput) -> Self {
        Self {
            org_id: i.org_id,
            plan: i.plan,
        }
    }
}

/// Credits to add to an org.
#[derive(InputObject)]
pub struct GrantCreditsInput {
    /// The org.
    pub org_id: Uuid,
    /// How many, 1 to 1,000,000,000.
    pub amount: i64,
    /// Why (kept in the ledger, at most 500 characters): an invoice number, a plan renewal…
    pub note: Option<String>,
}

impl From<GrantCreditsInput> for operator::CreditChange {
    fn from(i: GrantCreditsInput) -> Self {
        Self {
            org_id: i.org_id,
            amount: i.amount,
            note: i.note,
        }
    }
}

/// Credits to take from an org.
#[derive(InputObject)]
pub struct RevokeCreditsInput {
    /// The org.
    pub org_id: Uuid,
    /// How many, 1 to 1,000,000,000. More than the balance takes the whole
    /// balance (the answer's `applied` says how much): it never goes below zero.
    pub amount: i64,
    /// Why (kept in the ledger, at most 500 characters): a refund, a chargeback…
    pub note: Option<String>,
}

impl From<RevokeCreditsInput> for operator::CreditChange {
    fn from(i: RevokeCreditsInput) -> Self {
        Self {
            org_id: i.org_id,
            amount: i.amount,
            note: i.note,
        }
    }
}

#[derive(Default)]
pub struct OperatorMutation;

#[Object]
impl OperatorMutation {
    /// Creates an org and its first API key (in the answer, shown once).
    /// **Operator key only** (`wf_op_…`); an org's API key gets `FORBIDDEN`.
    async fn create_org(&self, ctx: &Context<'_>, input: CreateOrgInput) -> GqlResult<CreatedOrg> {
        let (st, scope) = (ctx.state()?, ctx.operator()?);
        let (org, row, key) = service::operator::create_org(st, &scope, input.into()).await?;
        Ok(CreatedOrg {
            org: Org::try_from(org)?,
            api_key: CreatedApiKey {
                key: key.key,
                api_key: row.into(),
            },
        })
    }

    /// Sets an org's plan (features unlock at higher plans); the org's
    /// outbox gets `org.updated`. **Operator key only** (`wf_op_…`); an org's
    /// API key gets `FORBIDDEN`.
    async fn set_org_plan(&self, ctx: &Context<'_>, input: SetOrgPlanInput) -> GqlResult<Org> {
        let (st, scope) = (ctx.state()?, ctx.operator()?);
        Ok(Org::try_from(
            service::operator::set_plan(st, &scope, input.into()).await?,
        )?)
    }

    /// Adds credits to an org, with a `GRANT` ledger entry and the
    /// `credits.granted` event in the org's outbox. **Operator key only**
    /// (`wf_op_…`); an org's API key gets `FORBIDDEN`.
    async fn grant_credits(
        &self,
        ctx: &Context<'_>,
        input: GrantCreditsInput,
    ) -> GqlResult<CreditAdjustment> {
        let (st, scope) = (ctx.state()?, ctx.operator()?);
        let (org_id, requested) = (input.org_id, input.amount);
        let done = service::operator::grant_credits(st, &scope, input.into()).await?;
        Ok(CreditAdjustment::new(org_id, requested, done))
    }

    /// Takes credits from an org, with a `REVOKE` ledger entry and the
    /// `credits.revoked` event in the org's outbox. Never below zero: asked
    /// for more than the balance, it takes the whole balance (`applied`).
    /// **Operator key only** (`wf_op_…`); an org's API key gets `FORBIDDEN`.
    async fn revoke_credits(
        &self,
        ctx: &Context<'_>,
        input: RevokeCreditsInput,
    ) -> GqlResult<CreditAdjustment> {
        let (st, scope) = (ctx.state()?, ctx.operator()?);
        let (org_id, requested) = (input.org_id, input.amount);
        let done = service::operator::revoke_credits(st, &scope, input.into()).await?;
        Ok(CreditAdjustment::new(org_id, requested, done))
    }
}
