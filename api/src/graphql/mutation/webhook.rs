//! Webhooks.

use async_graphql::{Context, Object};
use uuid::Uuid;

use crate::{
    error::GqlResult,
    graphql::{
        ContextExt,
        types::{CreatedWebhook, Deleted, Webhook},
    },
    service::{
        self,
        webhook::{CreateWebhookInput, UpdateWebhookInput},
    },
};

#[derive(Default)]
pub struct WebhookMutation;

#[Object]
impl WebhookMutation {
    /// Creates a webhook (at most 10 per org) and returns its signing secret,
    /// shown this once.
    ///
    /// Every event of the org from now on whose kind matches `eventKinds` is
    /// POSTed to `url` as JSON `{id, kind, orgId, createdAt, payload}` with
    /// the headers `X-Wayfinder-Event` (the kind), `X-Wayfinder-Delivery` (the
    /// delivery id), `X-Wayfinder-Timestamp` (Unix seconds) and
    /// `X-Wayfinder-Signature: v1=<hex>`. Any 2xx answer within 10 seconds
    /// accepts it; anything else is retried with exponential backoff (1 s,
    /// 2 s, 4 s … at most 1 h apart) and given up after 12 attempts.
    /// Redirects are not followed, and `url` must reach a public address
    /// (checked when it is saved and again at every delivery).
    ///
    /// To verify a delivery: compute HMAC-SHA256 with the secret (its 64
    /// characters as UTF-8 bytes) as key over `<timestamp>.<raw body>` (the
    /// `X-Wayfinder-Timestamp` value, a dot, the body bytes exactly as
    /// received), hex-encode it in lower case, and compare it in constant time
    /// with the value after `v1=`. Reject timestamps more than 5 minutes from
    /// your clock (replays). Deliveries are at least once: deduplicate on the
    /// body's `id` (the event id).
    async fn create_webhook(
        &self,
        ctx: &Context<'_>,
        input: CreateWebhookInput,
    ) -> GqlResult<CreatedWebhook> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        let (row, secret) = service::webhook::create(st, &scope, input).await?;
        Ok(CreatedWebhook {
            secret,
            webhook: row.into(),
        })
    }

    /// Changes a webhook's URL or event kinds, or pauses and resumes it. The secret stays the same.
    async fn update_webhook(
        &self,
        ctx: &Context<'_>,
        input: UpdateWebhookInput,
    ) -> GqlResult<Webhook> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        Ok(service::webhook::update(st, &scope, input).await?.into())
    }

    /// Deletes a webhook and its deliveries; pending ones are not sent.
    async fn delete_webhook(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Its id.")] id: Uuid,
    ) -> GqlResult<Deleted> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        service::webhook::delete(st, &scope, id).await?;
        Ok(Deleted { id })
    }
}
