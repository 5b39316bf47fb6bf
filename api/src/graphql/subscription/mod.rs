//! Live streams, merged into the root `Subscription`.

mod chat;
pub mod live;
mod org;

use async_graphql::MergedSubscription;

/// Every subscription.
#[derive(MergedSubscription, Default)]
pub struct Subscription(org::OrgSubscription, chat::ChatSubscription);
