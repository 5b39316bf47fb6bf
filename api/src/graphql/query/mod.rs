//! Read operations, one object per domain, merged into the root `Query`.

mod chat;
mod content;
mod kb;
mod operator;
mod org;
mod webhook;
mod widget;

use async_graphql::MergedObject;

/// Every read operation. All but `widgetConfig` need an org API key, except
/// `orgs`, which needs an operator key.
#[derive(MergedObject, Default)]
pub struct Query(
    org::OrgQuery,
    kb::KbQuery,
    content::ContentQuery,
    widget::WidgetQuery,
    chat::ChatQuery,
    webhook::WebhookQuery,
    operator::OperatorQuery,
);
