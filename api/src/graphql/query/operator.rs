//! Operator-only reads: every org. Needs an operator key (`wf_op_…`); an
//! org's API key is `FORBIDDEN`, no key `UNAUTHENTICATED`.

use async_graphql::{Context, Object};

use crate::{
    error::GqlResult,
    graphql::{ContextExt, try_connection, types::OrgConnection},
    service::{self, PageArgs},
};

#[derive(Default)]
pub struct OperatorQuery;

#[Object]
impl OperatorQuery {
    /// Every org of this server, oldest first, with plan and credit balance.
    /// **Operator key only** (`wf_op_…`); an org's API key gets `FORBIDDEN`.
    #[graphql(complexity = "crate::graphql::list_cost(first, child_complexity)")]
    async fn orgs(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 1 to 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "Cursor to start after.")] after: Option<String>,
    ) -> GqlResult<OrgConnection> {
        let (st, scope) = (ctx.state()?, ctx.operator()?);
        let page = service::operator::orgs(st, &scope, &PageArgs { first, after }).await?;
        Ok(try_connection(page, |m| m.id)?)
    }
}
