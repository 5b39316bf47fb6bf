//! Write operations, one object per domain, merged into the root `Mutation`.
//! Create and update take a single `input`; every change emits an outbox event.
//! Orgs, plans and credits are the operator's (`operator`): an org's key may
//! not use them.

mod chat;
mod content;
mod end_user;
mod kb;
mod operator;
mod org;
mod support;
mod tour;
mod webhook;
mod widget;

use async_graphql::MergedObject;

/// Every write operation. Who may call what:
/// - an org API key (`wf_live_…`): everything about its own org (bots,
///   knowledge bases, sites, content, widgets, API keys, settings, tickets,
///   webhooks, end users);
/// - no key (a visitor's browser): `sendMessage`, `startTurn`,
///   `submitFeedback`, `requestHandoff`, `submitContact`, and the tour
///   runtime's `visitPage` and `reportTourRun`;
/// - an operator key (`wf_op_…`): `createOrg`, `setOrgPlan`, `grantCredits`,
///   `revokeCredits`, and nothing of any org's own.
#[derive(MergedObject, Default)]
pub struct Mutation(
    org::OrgMutation,
    chat::ChatMutation,
    end_user::EndUserMutation,
    kb::KbMutation,
    content::ContentMutation,
    widget::WidgetMutation,
    support::SupportMutation,
    tour::TourMutation,
    webhook::WebhookMutation,
    operator::OperatorMutation,
);
