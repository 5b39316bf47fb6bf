//! End users (visitors): the list dashboards filter, and the export for access requests.

use async_graphql::{Context, InputObject, Json, Object};
use uuid::Uuid;

use crate::{
    error::GqlResult,
    graphql::{
        ContextExt, connection,
        types::{EndUser, EndUserConnection},
    },
    service::{
        self, PageArgs,
        end_user::{EndUserFilter, EndUserSelector},
    },
};

/// Which end users to list; every given filter must match.
#[derive(InputObject, Default, Debug)]
pub struct EndUserFilterInput {
    /// Only visitors of this widget.
    pub chat_widget_id: Option<Uuid>,
    /// Only the identified visitor(s) with this host-app user id.
    pub user_id: Option<String>,
    /// Only identified (`true`) or only anonymous (`false`) visitors.
    pub identified: Option<bool>,
}

impl From<EndUserFilterInput> for EndUserFilter {
    fn from(i: EndUserFilterInput) -> Self {
        Self {
            chat_widget_id: i.chat_widget_id,
            user_id: i.user_id,
            identified: i.identified,
        }
    }
}

#[derive(Default)]
pub struct EndUserQuery;

#[Object]
impl EndUserQuery {
    /// The org's end users (visitors), oldest first, with their identity and traits.
    #[graphql(complexity = "crate::graphql::list_cost(first, child_complexity)")]
    async fn end_users(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Filters.")] filter: Option<EndUserFilterInput>,
        #[graphql(desc = "Page size, 1 to 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "Cursor to start after.")] after: Option<String>,
    ) -> GqlResult<EndUserConnection> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        let page = service::end_user::list(
            st,
            &scope,
            filter.unwrap_or_default().into(),
            &PageArgs { first, after },
        )
        .await?;
        Ok(connection(page, |m| m.id))
    }

    /// One end user.
    async fn end_user(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Its id.")] id: Uuid,
    ) -> GqlResult<EndUser> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        Ok(service::end_user::one(st, &scope, id).await?.into())
    }

    /// Everything stored about a visitor, as one JSON document (for access requests): `{exportedAt, truncated, endUsers: [{id, userId, traits, hostTraits, sessions: [{messages, feedback}], tickets}]}`. Give `id`, or `userId` (every end user with it, optionally only on `chatWidgetId`).
    async fn export_end_user(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The end user's id.")] id: Option<Uuid>,
        #[graphql(desc = "The host app's user id (instead of `id`).")] user_id: Option<String>,
        #[graphql(desc = "With `userId`: only on this widget.")] chat_widget_id: Option<Uuid>,
    ) -> GqlResult<Json<serde_json::Value>> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        let sel = EndUserSelector::from_args(id, user_id, chat_widget_id)?;
        Ok(Json(service::end_user::export(st, &scope, sel).await?))
    }
}
