//! Guidance: what the app map, the crawler and generated content need.
//!
//! - `sites.map_version` counts completed mappings: the stored map is only
//!   replaced when a new mapping completes, so the old version serves
//!   visitors while a crawl runs.
//! - `sites.mapping_error` says why the last mapping failed.
//! - `sites.mapping_heartbeat_at` is touched by a running crawl; a site left
//!   `IN_PROGRESS` with an old heartbeat (its server died) is ended `FAILED`
//!   when a server starts, so mapping never stays in progress forever.
//! - `flows.health` / `tooltips.health` hold the drift check's findings
//!   (steps whose element is gone from the current map).
//! - `flows.generated_session_id` is the chat session a generated flow was
//!   made for: only that visitor may fetch it while its audience is
//!   `NO_USERS`.
//!
//! SQLite adds one column per `ALTER TABLE`, so each column is its own statement.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let add = |table: &'static str, col: ColumnDef| {
            Table::alter().table(table).add_column(col).to_owned()
        };
        m.alter_table(add("sites", integer("map_version").default(0).take()))
            .await?;
        m.alter_table(add("sites", text_null("mapping_error").take()))
            .await?;
        m.alter_table(add(
            "sites",
            timestamp_with_time_zone_null("mapping_heartbeat_at").take(),
        ))
        .await?;
        m.alter_table(add("flows", json_null("health").take()))
            .await?;
        m.alter_table(add("flows", uuid_null("generated_session_id").take()))
            .await?;
        m.alter_table(add("tooltips", json_null("health").take()))
            .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for (table, col) in [
            ("tooltips", "health"),
            ("flows", "generated_session_id"),
            ("flows", "health"),
            ("sites", "mapping_heartbeat_at"),
            ("sites", "mapping_error"),
            ("sites", "map_version"),
        ] {
            m.alter_table(Table::alter().table(table).drop_column(col).to_owned())
                .await?;
        }
        Ok(())
    }
}
