//! Read operations, one object per domain, merged into the root `Query`.

mod chat;
mod content;
mod end_user;
mod kb;
mod operator;
mod org;
mod tour;
mod webhook;
mod widget;

use async_graphql::MergedObject;

/// Every read operation. All but two need an org API key (`wf_live_…`) and
/// read only that org: `widgetConfig` is public, and `orgs` needs an operator
/// key (`wf_op_…`), which reads no org's own data.
#[derive(MergedObject, Default)]
pub struct Query(
    org::OrgQuery,
    kb::KbQuery,
    content::ContentQuery,
    widget::WidgetQuery,
    chat::ChatQuery,
    end_user::EndUserQuery,
    tour::TourQuery,
    webhook::WebhookQuery,
    operator::OperatorQuery,
);
