//! Write operations, one object per domain, merged into the root `Mutation`.
//! Create and update take a single `input`; every change emits an outbox event.
//! Orgs, plans and credits are the operator's (`operator`): an org's key may
//! not use them.

mod chat;
mod content;
mod kb;
mod operator;
mod org;
mod support;
mod webhook;
mod widget;

use async_graphql::MergedObject;

/// Every write operation.
#[derive(MergedObject, Default)]
pub struct Mutation(
    org::OrgMutation,
    chat::ChatMutation,
    kb::KbMutation,
    content::ContentMutation,
    widget::WidgetMutation,
    support::SupportMutation,
    webhook::WebhookMutation,
    operator::OperatorMutation,
);
