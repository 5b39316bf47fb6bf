//! Orgs: creation by the operator (see `service::operator`), settings by the org itself.
//!
//! Bring-your-own LLM settings need a paid plan ([`crate::turn::BYOK_PLAN`]),
//! as on the products Wayfinder replaces, and an org's own base URL is a
//! customer-chosen URL the server will call: it must pass the outbound guard
//! ([`crate::outbound`]) when it is saved, and again at every connect.

use chrono::Utc;
use entity::{api_key, org};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, DatabaseConnection, EntityTrait};
use uuid::Uuid;

use super::{api_key::insert_key, event, new_id};
use crate::{
    auth::OrgScope, domain, domain::Plan, error::AppError, secret::NewApiKey, state::State,
};

/// The caller's org.
pub async fn get(db: &DatabaseConnection, scope: &OrgScope) -> Result<org::Model, AppError> {
    org::Entity::find_by_id(scope.org_id())
        .one(db)
        .await?
        .ok_or_else(|| AppError::not_found("org"))
}

/// A new org and its first API key, made in one transaction (the
/// `org.created` event is published by the outbox relay).
pub async fn create(
    db: &DatabaseConnection,
    name: &str,
    plan: Plan,
    owner_email: &str,
) -> Result<(org::Model, api_key::Model, NewApiKey), AppError> {
    let (org, key_row, key, _) =
        create_recorded(db, name, plan, owner_email, "name", "ownerEmail").await?;
    Ok((org, key_row, key))
}

/// [`create`], also returning the committed `org.created` event for the
/// caller to publish; validation errors name `name_field` / `email_field`.
pub(crate) async fn create_recorded(
    db: &DatabaseConnection,
    name: &str,
    plan: Plan,
    owner_email: &str,
    name_field: &str,
    email_field: &str,
) -> Result<(org::Model, api_key::Model, NewApiKey, entity::event::Model), AppError> {
    let name = domain::name(name_field, name)?;
    let owner_email = domain::email(email_field, owner_email)?;
    let now = Utc::now();
    let txn = crate::service::begin_write(db).await?;
    let org = org::ActiveModel {
        id: Set(new_id()),
        name: Set(name),
        plan: Set(plan.as_str().to_string()),
        ai_chatbot_enabled: Set(true),
        ai_auto_traits_enabled: Set(false),
        llm_provider: Set(None),
        llm_model: Set(None),
        llm_base_url: Set(None),
        llm_api_key_sealed: Set(None),
        owner_email: Set(owner_email),
        credit_balance: Set(0),
        retention_days: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await?;
    let (key_row, key) = insert_key(&txn, org.id, "default").await?;
    let ev = event::record(
        &txn,
        org.id,
        "org.created",
        serde_json::json!({ "id": org.id }),
    )
    .await?;
    txn.commit().await?;
    Ok((org, key_row, key, ev))
}

/// Settings an org may change about itself; omitted fields stay as they are.
/// (`Debug` shows whether `llmApiKey` is set, never the key.)
#[derive(Default, async_graphql::InputObject)]
pub struct UpdateOrgSettingsInput {
    /// New org name.
    pub name: Option<String>,
    /// New owner email (receives notifications).
    pub owner_email: Option<String>,
    /// Turn AI answers on or off for every bot of the org.
    pub ai_chatbot_enabled: Option<bool>,
    /// Turn profile-trait extraction on or off.
    pub ai_auto_traits_enabled: Option<bool>,
    /// Bring your own LLM (plan GROWTH or higher, else `PLAN_REQUIRED`): `ollama`, `openai` (or compatible) or `anthropic`; `null` returns to the server's provider.
    pub llm_provider: async_graphql::MaybeUndefined<String>,
    /// The model to use with your provider; `null` uses the server's default model name.
    pub llm_model: async_graphql::MaybeUndefined<String>,
    /// Your provider's base URL (plan GROWTH or higher); `null` uses the provider's public API. It must reach a public address: a host that is or resolves to a loopback, private, link-local or metadata address is `BAD_USER_INPUT`.
    pub llm_base_url: async_graphql::MaybeUndefined<String>,
    /// Your provider's API key (plan GROWTH or higher). Write-only: stored encrypted, never returned; `null` removes it.
    #[graphql(secret)]
    pub llm_api_key: async_graphql::MaybeUndefined<String>,
    /// Days to keep conversations (sessions, messages, feedback), support tickets and events after their last activity, 1 to 3,650; `null` keeps them forever (the default). A background job deletes what is older; the credit ledger keeps its rows, with their turn references cleared.
    pub retention_days: async_graphql::MaybeUndefined<i32>,
}

/// Longest retention period an org may set, in days (ten years).
pub const RETENTION_DAYS_MAX: i32 = 3_650;

impl std::fmt::Debug for UpdateOrgSettingsInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use async_graphql::MaybeUndefined::{Null, Undefined, Value};
        let key = match &self.llm_api_key {
            Undefined => "undefined",
            Null => "null",
            Value(_) => "<redacted>",
        };
        f.debug_struct("UpdateOrgSettingsInput")
            .field("name", &self.name)
            .field("owner_email", &self.owner_email)
            .field("ai_chatbot_enabled", &self.ai_chatbot_enabled)
            .field("ai_auto_traits_enabled", &self.ai_auto_traits_enabled)
            .field("llm_provider", &self.llm_provider)
            .field("llm_model", &self.llm_model)
            .field(
                "llm_base_url",
                &self
                    .llm_base_url
                    .value()
                    .map(|u| crate::config::redact_url(u)),
            )
            .field("llm_api_key", &key)
            .field("retention_days", &self.retention_days)
            .finish()
    }
}

/// Whether `change` sets any bring-your-own LLM setting to a value.
fn sets_byok(change: &UpdateOrgSettingsInput) -> bool {
    change.llm_provider.is_value()
        || change.llm_base_url.is_value()
        || change.llm_api_key.is_value()
}

/// `PLAN_REQUIRED` when `change` sets a bring-your-own LLM setting on an org
/// whose plan does not include it (removing one is always allowed).
fn check_byok_plan(org: &org::Model, change: &UpdateOrgSettingsInput) -> Result<(), AppError> {
    if sets_byok(change) {
        plan(org)?.require(crate::turn::BYOK_PLAN)?;
    }
    Ok(())
}

/// Applies `change` to the caller's org.
pub async fn update_settings(
    st: &State,
    scope: &OrgScope,
    change: UpdateOrgSettingsInput,
) -> Result<org::Model, AppError> {
    // Outside the transaction: the plan first (no lookups for an org that may
    // not use the setting), then the base URL's DNS lookup, which must not
    // hold the write lock.
    if sets_byok(&change) {
        check_byok_plan(&get(&st.db, scope).await?, &change)?;
    }
    if let async_graphql::MaybeUndefined::Value(u) = &change.llm_base_url {
        let url = domain::http_url("input.llmBaseUrl", u)?;
        crate::outbound::Policy::from_config(&st.config)
            .check_when_set("input.llmBaseUrl", &url)
            .await?;
    }
    let txn = crate::service::begin_write(&st.db).await?;
    let current = org::Entity::find_by_id(scope.org_id())
        .one(&txn)
        .await?
        .ok_or_else(|| AppError::not_found("org"))?;
    // Again on the row this transaction writes: the plan may have changed meanwhile.
    check_byok_plan(&current, &change)?;
    let mut am: org::ActiveModel = current.into();
    if let Some(name) = change.name {
        am.name = Set(domain::name("input.name", &name)?);
    }
    if let Some(email) = change.owner_email {
        am.owner_email = Set(domain::email("input.ownerEmail", &email)?);
    }
    if let Some(v) = change.ai_chatbot_enabled {
        am.ai_chatbot_enabled = Set(v);
    }
    if let Some(v) = change.ai_auto_traits_enabled {
        am.ai_auto_traits_enabled = Set(v);
    }
    use async_graphql::MaybeUndefined::{Null, Undefined, Value};
    match change.llm_provider {
        Undefined => {}
        Null => am.llm_provider = Set(None),
        Value(p) => match crate::llm::ProviderKind::parse(&p) {
            Some(kind) => am.llm_provider = Set(Some(kind.as_str().to_string())),
            None => {
                return Err(AppError::bad_input(
                    "input.llmProvider",
                    "must be ollama, openai or anthropic",
                ));
            }
        },
    }
    match change.llm_model {
        Undefined => {}
        Null => am.llm_model = Set(None),
        Value(m) => am.llm_model = Set(Some(domain::text("input.llmModel", &m, 1, 200)?)),
    }
    match change.llm_base_url {
        Undefined => {}
        Null => am.llm_base_url = Set(None),
        Value(u) => {
            am.llm_base_url = Set(Some(
                domain::http_url("input.llmBaseUrl", &u)?
                    .trim_end_matches('/')
                    .to_string(),
            ))
        }
    }
    match change.llm_api_key {
        Undefined => {}
        Null => am.llm_api_key_sealed = Set(None),
        Value(k) => {
            let k = domain::text("input.llmApiKey", &k, 1, 1_000)?;
            let sealed = st
                .secret
                .seal(
                    crate::turn::BYOK_PURPOSE,
                    scope.org_id().as_bytes(),
                    k.as_bytes(),
                )
                .map_err(AppError::internal)?;
            am.llm_api_key_sealed = Set(Some(sealed));
        }
    }
    match change.retention_days {
        Undefined => {}
        Null => am.retention_days = Set(None),
        Value(d) if (1..=RETENTION_DAYS_MAX).contains(&d) => am.retention_days = Set(Some(d)),
        Value(_) => {
            return Err(AppError::bad_input(
                "input.retentionDays",
                format!("must be 1 to {RETENTION_DAYS_MAX} days, or null to keep everything"),
            ));
        }
    }
    am.updated_at = Set(Utc::now());
    let updated = am.update(&txn).await?;
    let ev = event::record(
        &txn,
        scope.org_id(),
        "org.updated",
        serde_json::json!({ "id": updated.id }),
    )
    .await?;
    txn.commit().await?;
    event::publish(st, &[ev]).await;
    Ok(updated)
}

/// An org by id, for the operator's CLI.
pub async fn find(db: &DatabaseConnection, id: Uuid) -> Result<org::Model, AppError> {
    org::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| AppError::not_found("org"))
}

/// The org's plan.
pub fn plan(org: &org::Model) -> Result<Plan, AppError> {
    Plan::from_stored(&org.plan)
}
