//! Org settings and API keys: what an org's own key may change about it.
//! Plans and credits are not among them: they are the operator's (`operator.rs`).

use async_graphql::{Context, InputObject, Object};
use uuid::Uuid;

use crate::{
    error::GqlResult,
    graphql::{
        ContextExt,
        types::{ApiKey, CreatedApiKey, Org},
    },
    service::{self, org::UpdateOrgSettingsInput},
};

/// A new API key.
#[derive(InputObject)]
pub struct CreateApiKeyInput {
    /// A human name ("CI", "dashboard").
    pub name: String,
}

/// A new name for an API key.
#[derive(InputObject)]
pub struct UpdateApiKeyInput {
    /// The key.
    pub id: Uuid,
    /// Its new name.
    pub name: String,
}

#[derive(Default)]
pub struct OrgMutation;

#[Object]
impl OrgMutation {
    /// Changes the caller's org settings.
    async fn update_org_settings(
        &self,
        ctx: &Context<'_>,
        input: UpdateOrgSettingsInput,
    ) -> GqlResult<Org> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        Ok(Org::try_from(
            service::org::update_settings(st, &scope, input).await?,
        )?)
    }

    /// Mints an API key; the key is in the answer and never shown again.
    async fn create_api_key(
        &self,
        ctx: &Context<'_>,
        input: CreateApiKeyInput,
    ) -> GqlResult<CreatedApiKey> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        let (row, key) = service::api_key::create(st, &scope, &input.name).await?;
        Ok(CreatedApiKey {
            key: key.key,
            api_key: row.into(),
        })
    }

    /// Renames an API key.
    async fn update_api_key(
        &self,
        ctx: &Context<'_>,
        input: UpdateApiKeyInput,
    ) -> GqlResult<ApiKey> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        Ok(service::api_key::rename(st, &scope, input.id, &input.name)
            .await?
            .into())
    }

    /// Revokes an API key at once. Revoking the key you are using works too.
    async fn delete_api_key(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The key's id.")] id: Uuid,
    ) -> GqlResult<ApiKey> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        Ok(service::api_key::revoke(st, &scope, id).await?.into())
    }
}
