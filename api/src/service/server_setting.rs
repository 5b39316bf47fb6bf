//! Facts about this installation that belong to no org, in `server_settings`
//! (key → text). Today one: which org is the demo (`demo_org_id`), so the
//! `/demo` page finds it by an id nobody can take, not by a name anyone can.

use chrono::Utc;
use entity::server_setting;
use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait, sea_query::OnConflict};

use crate::error::AppError;

/// The key of the demo org's id.
pub const DEMO_ORG_ID: &str = "demo_org_id";

/// The value of `key`, if set.
pub async fn get(db: &impl ConnectionTrait, key: &str) -> Result<Option<String>, AppError> {
    Ok(server_setting::Entity::find_by_id(key.to_string())
        .one(db)
        .await?
        .map(|row| row.value))
}

/// Sets `key` to `value`, replacing what was there.
pub async fn set(db: &impl ConnectionTrait, key: &str, value: &str) -> Result<(), AppError> {
    let row = server_setting::ActiveModel {
        key: Set(key.to_string()),
        value: Set(value.to_string()),
        updated_at: Set(Utc::now()),
    };
    server_setting::Entity::insert(row)
        .on_conflict(
            OnConflict::column(server_setting::Column::Key)
                .update_columns([
                    server_setting::Column::Value,
                    server_setting::Column::UpdatedAt,
                ])
                .to_owned(),
        )
        .exec(db)
        .await?;
    Ok(())
}
