//! Support tickets, as the support inbox reads them.

use chrono::{DateTime, Utc};
use entity::support_ticket;
use sea_orm::{ColumnTrait, QueryFilter};

use super::{Page, PageArgs, paginate, scoped};
use crate::{
    auth::OrgScope,
    domain::{TicketSource, TicketStatus},
    error::AppError,
    state::State,
};

/// Filters for the ticket list.
#[derive(Debug, Default, async_graphql::InputObject)]
pub struct TicketFilter {
    /// Only tickets with this status.
    pub status: Option<TicketStatus>,
    /// Only tickets from this source.
    pub source: Option<TicketSource>,
    /// Only tickets created at or after this time.
    pub created_after: Option<DateTime<Utc>>,
    /// Only tickets created before this time.
    pub created_before: Option<DateTime<Utc>>,
}

/// The caller's tickets, oldest first.
pub async fn list(
    st: &State,
    scope: &OrgScope,
    filter: TicketFilter,
    page: &PageArgs,
) -> Result<Page<support_ticket::Model>, AppError> {
    let mut q = scoped::<support_ticket::Entity>(scope);
    if let Some(s) = filter.status {
        q = q.filter(support_ticket::Column::Status.eq(s.as_str()));
    }
    if let Some(s) = filter.source {
        q = q.filter(support_ticket::Column::Source.eq(s.as_str()));
    }
    if let Some(t) = filter.created_after {
        q = q.filter(support_ticket::Column::CreatedAt.gte(t));
    }
    if let Some(t) = filter.created_before {
        q = q.filter(support_ticket::Column::CreatedAt.lt(t));
    }
    paginate(&st.db, q, page).await
}
