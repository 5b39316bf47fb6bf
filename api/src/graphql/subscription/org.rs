//! The org's outbox events, live.

use async_graphql::{Context, Subscription};
use futures_util::{Stream, StreamExt, stream};
use tokio::sync::broadcast::error::RecvError;

use crate::{
    error::GqlError,
    graphql::{ContextExt, types::OrgEvent},
    pubsub::org_topic,
    service::event::BusEvent,
};

#[derive(Default)]
pub struct OrgSubscription;

#[Subscription]
impl OrgSubscription {
    /// Every outbox event of the caller's org from now on (`bot.created`, `ticket.created_via_widget`, …), on whichever replica the client is connected to.
    async fn org_events(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only events of these kinds; all when omitted.")] kinds: Option<
            Vec<String>,
        >,
    ) -> Result<impl Stream<Item = OrgEvent> + use<>, GqlError> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        let org_id = scope.org_id();
        let rx = st.bus.subscribe(&org_topic(org_id));
        let messages = stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(raw) => return Some((raw, rx)),
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(
                            skipped = n,
                            "orgEvents subscriber lagged; events skipped (query `events` to catch up)"
                        );
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        });
        Ok(messages.filter_map(move |raw| {
            let kinds = kinds.clone();
            async move {
                let ev: BusEvent = serde_json::from_str(&raw).ok()?;
                if ev.org_id != org_id {
                    return None;
                }
                if kinds.as_ref().is_some_and(|k| !k.contains(&ev.kind)) {
                    return None;
                }
                Some(OrgEvent::from(ev))
            }
        }))
    }
}
