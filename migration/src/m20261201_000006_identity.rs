//! Signed visitor identity, retention and deletion on request (issue 14).
//!
//! - `chat_widgets.identity_secret_sealed`: the widget's identity secret,
//!   sealed with the server secret (never plain text), and
//!   `identity_required`: whether visitors must be identified.
//! - `end_users.host_traits`: the traits the host app signed in with, kept
//!   apart so chat-extracted traits never overwrite them; a unique index on
//!   `(chat_widget_id, external_id)` makes one end user per identified user
//!   (NULL external ids, the anonymous visitors, never collide).
//! - `orgs.retention_days`: how long conversations, tickets and events are
//!   kept (NULL: forever).
//! - `support_tickets.end_user_id` / `user_id`: who opened a hand-off or
//!   downvote ticket. No foreign key (SQLite cannot add one to an existing
//!   table): deleting an end user clears these columns itself.
//!
//! One column per `ALTER TABLE`: SQLite takes only one change per statement.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let add = |table: &'static str, col: ColumnDef| {
            let mut col = col;
            Table::alter().table(table).add_column(&mut col).to_owned()
        };
        m.alter_table(add("chat_widgets", text_null("identity_secret_sealed")))
            .await?;
        m.alter_table(add(
            "chat_widgets",
            boolean("identity_required").default(false).take(),
        ))
        .await?;
        m.alter_table(add("end_users", json_null("host_traits")))
            .await?;
        m.alter_table(add("orgs", integer_null("retention_days")))
            .await?;
        m.alter_table(add("support_tickets", uuid_null("end_user_id")))
            .await?;
        m.alter_table(add("support_tickets", string_null("user_id")))
            .await?;
        m.create_index(
            Index::create()
                .name("uniq_end_users_widget_external")
                .table("end_users")
                .col("chat_widget_id")
                .col("external_id")
                .unique()
                .to_owned(),
        )
        .await?;
        for (name, table, cols) in [
            (
                "idx_support_tickets_end_user",
                "support_tickets",
                &["end_user_id"][..],
            ),
            (
                "idx_chat_sessions_org_updated",
                "chat_sessions",
                &["org_id", "updated_at"][..],
            ),
            (
                "idx_chat_messages_org_created",
                "chat_messages",
                &["org_id", "created_at"][..],
            ),
            (
                "idx_support_tickets_org_created",
                "support_tickets",
                &["org_id", "created_at"][..],
            ),
            (
                "idx_events_org_created",
                "events",
                &["org_id", "created_at"][..],
            ),
        ] {
            let mut idx = Index::create();
            idx.name(name).table(table);
            for c in cols {
                idx.col(*c);
            }
            m.create_index(idx.to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for (name, table) in [
            ("idx_events_org_created", "events"),
            ("idx_support_tickets_org_created", "support_tickets"),
            ("idx_chat_messages_org_created", "chat_messages"),
            ("idx_chat_sessions_org_updated", "chat_sessions"),
            ("idx_support_tickets_end_user", "support_tickets"),
            ("uniq_end_users_widget_external", "end_users"),
        ] {
            m.drop_index(Index::drop().name(name).table(table).to_owned())
                .await?;
        }
        for (table, col) in [
            ("support_tickets", "user_id"),
            ("support_tickets", "end_user_id"),
            ("orgs", "retention_days"),
            ("end_users", "host_traits"),
            ("chat_widgets", "identity_required"),
            ("chat_widgets", "identity_secret_sealed"),
        ] {
            m.alter_table(Table::alter().table(table).drop_column(col).to_owned())
                .await?;
        }
        Ok(())
    }
}
