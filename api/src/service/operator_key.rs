//! Operator keys: minted by the CLI (`wayfinder operator-key create`), shown
//! once, stored as a hash, revocable. They belong to no org: they unlock the
//! operator-only operations (orgs, plans, credits) and nothing of any org.

use chrono::Utc;
use entity::operator_key;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder,
};
use uuid::Uuid;

use super::new_id;
use crate::{
    domain,
    error::AppError,
    secret::{NewApiKey, generate_operator_key},
};

/// Mints an operator key named `name`; the plain key is only in the returned [`NewApiKey`].
pub async fn create(
    db: &DatabaseConnection,
    name: &str,
) -> Result<(operator_key::Model, NewApiKey), AppError> {
    let name = domain::name("--name", name)?;
    let key = generate_operator_key().map_err(AppError::internal)?;
    let row = operator_key::ActiveModel {
        id: Set(new_id()),
        name: Set(name),
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

/// Revokes operator key `id` at once (the row stays for the audit trail).
pub async fn revoke(db: &DatabaseConnection, id: Uuid) -> Result<operator_key::Model, AppError> {
    let current = operator_key::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| AppError::not_found_in("operator key", "--id"))?;
    if current.revoked_at.is_some() {
        return Ok(current);
    }
    let mut am: operator_key::ActiveModel = current.into();
    am.revoked_at = Set(Some(Utc::now()));
    Ok(am.update(db).await?)
}

/// Every operator key, oldest first; revoked ones only when asked for.
pub async fn list(
    db: &DatabaseConnection,
    include_revoked: bool,
) -> Result<Vec<operator_key::Model>, AppError> {
    let mut select = operator_key::Entity::find().order_by_asc(operator_key::Column::Id);
    if !include_revoked {
        select = select.filter(operator_key::Column::RevokedAt.is_null());
    }
    Ok(select.all(db).await?)
}
