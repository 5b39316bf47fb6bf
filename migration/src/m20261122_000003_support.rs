//! Support plumbing: single-use contact challenges, cross-replica debounce
//! windows for notifications, webhook endpoints and their delivery attempts.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // A challenge nonce is inserted when used; a second use hits the primary key.
        m.create_table(
            Table::create()
                .table("used_challenges")
                .col(string("nonce").primary_key())
                .col(timestamp_with_time_zone("expires_at"))
                .take(),
        )
        .await?;
        // One row per debounced notification key; a single-row conditional update claims the window.
        m.create_table(
            Table::create()
                .table("debounces")
                .col(string("key").primary_key())
                .col(timestamp_with_time_zone("last_fired_at"))
                .take(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("webhooks")
                .col(pk_uuid("id"))
                .col(uuid("org_id"))
                .col(string("url"))
                .col(json("event_kinds"))
                .col(boolean("active"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_webhooks_org_id")
                        .from("webhooks", "org_id")
                        .to("orgs", "id")
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .take(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("webhook_deliveries")
                .col(pk_uuid("id"))
                .col(uuid("org_id"))
                .col(uuid("webhook_id"))
                .col(uuid("event_id"))
                .col(string("status"))
                .col(integer("attempts"))
                .col(timestamp_with_time_zone("next_attempt_at"))
                .col(integer_null("last_status_code"))
                .col(text_null("last_error"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone_null("delivered_at"))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_webhook_deliveries_webhook_id")
                        .from("webhook_deliveries", "webhook_id")
                        .to("webhooks", "id")
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_webhook_deliveries_event_id")
                        .from("webhook_deliveries", "event_id")
                        .to("events", "id")
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .take(),
        )
        .await?;
        for (table, cols, unique) in [
            ("webhooks", &["org_id", "id"][..], false),
            ("webhook_deliveries", &["org_id", "id"][..], false),
            (
                "webhook_deliveries",
                &["status", "next_attempt_at"][..],
                false,
            ),
            ("webhook_deliveries", &["webhook_id", "event_id"][..], true),
            ("used_challenges", &["expires_at"][..], false),
        ] {
            let mut idx = Index::create();
            idx.name(format!("idx_{table}_{}", cols.join("_")))
                .table(table);
            for c in cols {
                idx.col(*c);
            }
            if unique {
                idx.unique();
            }
            m.create_index(idx).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            "webhook_deliveries",
            "webhooks",
            "debounces",
            "used_challenges",
        ] {
            m.drop_table(Table::drop().table(t).to_owned()).await?;
        }
        Ok(())
    }
}
