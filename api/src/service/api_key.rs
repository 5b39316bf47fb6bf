//! API keys: minted here, shown once, stored as a hash, revocable.

use chrono::Utc;
use entity::api_key;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, QueryFilter};
use uuid::Uuid;

use super::{Page, PageArgs, event, get, new_id, paginate, scoped};
use crate::{
    auth::OrgScope,
    domain,
    error::AppError,
    secret::{NewApiKey, generate_api_key},
    state::State,
};

/// Inserts a freshly minted key for `org_id`; the plain key is only in the returned [`NewApiKey`].
pub async fn insert_key(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    name: &str,
) -> Result<(api_key::Model, NewApiKey), AppError> {
    let key = generate_api_key().map_err(AppError::internal)?;
    let row = api_key::ActiveModel {
        id: Set(new_id()),
        org_id: Set(org_id),
        name: Set(name.to_string()),
        prefix: Set(key.prefix.clone()),
        key_hash: Set(key.hash.clone()),
        revoked_at: Set(None),
        last_used_at: Set(None),
        created_at: Set(Utc::now()),
    }
    .insert(db)
    .await?;
    Ok((row, key))
}

/// A new key for the caller's org.
pub async fn create(
    st: &State,
    scope: &OrgScope,
    name: &str,
) -> Result<(api_key::Model, NewApiKey), AppError> {
    let name = domain::name("input.name", name)?;
    let txn = crate::service::begin_write(&st.db).await?;
    let (row, key) = insert_key(&txn, scope.org_id(), &name).await?;
    event::commit_with_event::<api_key::Entity>(st, txn, scope.org_id(), "created", row.id).await?;
    Ok((row, key))
}

/// Renames a key.
pub async fn rename(
    st: &State,
    scope: &OrgScope,
    id: Uuid,
    name: &str,
) -> Result<api_key::Model, AppError> {
    let name = domain::name("input.name", name)?;
    let txn = crate::service::begin_write(&st.db).await?;
    let mut am: api_key::ActiveModel = get::<api_key::Entity>(&txn, scope, id).await?.into();
    am.name = Set(name);
    let row = am.update(&txn).await?;
    event::commit_with_event::<api_key::Entity>(st, txn, scope.org_id(), "updated", id).await?;
    Ok(row)
}

/// Revokes a key: it stops working at once on this replica and within the
/// revocation watch's poll on the others (see `auth`), and is kept for the
/// audit trail.
pub async fn revoke(st: &State, scope: &OrgScope, id: Uuid) -> Result<api_key::Model, AppError> {
    let txn = crate::service::begin_write(&st.db).await?;
    let current = get::<api_key::Entity>(&txn, scope, id).await?;
    if current.revoked_at.is_some() {
        return Ok(current);
    }
    let mut am: api_key::ActiveModel = current.into();
    am.revoked_at = Set(Some(Utc::now()));
    let row = am.update(&txn).await?;
    event::commit_with_event::<api_key::Entity>(st, txn, scope.org_id(), "revoked", id).await?;
    st.keys.forget(&std::collections::HashSet::from([id]));
    Ok(row)
}

/// The caller's org's keys (revoked ones too, flagged).
pub async fn list(
    st: &State,
    scope: &OrgScope,
    include_revoked: bool,
    page: &PageArgs,
) -> Result<Page<api_key::Model>, AppError> {
    let mut select = scoped::<api_key::Entity>(scope);
    if !include_revoked {
        select = select.filter(api_key::Column::RevokedAt.is_null());
    }
    paginate(&st.db, select, page).await
}
