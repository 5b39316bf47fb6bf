//! Tours: what the walkthrough runtime reports, and when content starts by itself.
//!
//! - `tour_runs`: one row per run of a flow or tooltip in one visitor's
//!   browser (`run_key` is the runtime's own id of the run, unique per
//!   session). Steps seen and steps whose element was missing are bit masks
//!   (a flow has at most 50 steps), so a per-step funnel is one aggregate
//!   query on both databases. `auto_key` (`end user:content`) is set only on
//!   runs the server started by itself; its unique index is what makes an
//!   auto-start happen at most once per visitor, even from two tabs at once
//!   (both databases allow many NULLs in a unique index).
//! - `flows.auto_start` / `tooltips.auto_start`: the page URL pattern on
//!   which published content starts by itself (NULL: never).
//!
//! SQLite adds one column per `ALTER TABLE`, so each column is its own statement.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

fn fk(
    column: &'static str,
    target: &'static str,
    on_delete: ForeignKeyAction,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(format!("fk_tour_runs_{column}"))
        .from("tour_runs", column)
        .to(target, "id")
        .on_delete(on_delete)
        .take()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        use ForeignKeyAction::Cascade;
        let mut t = Table::create();
        t.table("tour_runs")
            .col(pk_uuid("id"))
            .col(uuid("org_id"))
            .col(uuid_null("chat_widget_id"))
            .col(uuid("session_id"))
            .col(uuid_null("end_user_id"))
            .col(uuid("content_id"))
            .col(string_len("content_kind", 16))
            .col(string_len("run_key", 64))
            .col(string_len("trigger", 16))
            .col(string_len("status", 16))
            .col(integer("steps_total"))
            .col(integer("furthest_step"))
            .col(big_integer("seen_mask"))
            .col(big_integer("missing_mask"))
            .col(integer("target_missing"))
            .col(integer_null("dismissed_at_step"))
            .col(json_null("last_missing"))
            .col(string_null("page_url"))
            .col(string_len_null("auto_key", 80))
            .col(timestamp_with_time_zone("created_at"))
            .col(timestamp_with_time_zone("updated_at"))
            .col(timestamp_with_time_zone_null("ended_at"))
            .foreign_key(&mut fk("org_id", "orgs", Cascade))
            .foreign_key(&mut fk("chat_widget_id", "chat_widgets", Cascade))
            .foreign_key(&mut fk("session_id", "chat_sessions", Cascade))
            .foreign_key(&mut fk("end_user_id", "end_users", Cascade));
        m.create_table(t.to_owned()).await?;
        for (name, cols, unique) in [
            (
                "uniq_tour_runs_session_run",
                &["session_id", "run_key"][..],
                true,
            ),
            ("uniq_tour_runs_auto_key", &["auto_key"][..], true),
            (
                "idx_tour_runs_org_content",
                &["org_id", "content_id"][..],
                false,
            ),
            (
                "idx_tour_runs_org_end_user",
                &["org_id", "end_user_id"][..],
                false,
            ),
            (
                "idx_tour_runs_org_updated",
                &["org_id", "updated_at"][..],
                false,
            ),
        ] {
            let mut idx = Index::create();
            idx.name(name).table("tour_runs");
            for c in cols {
                idx.col(*c);
            }
            if unique {
                idx.unique();
            }
            m.create_index(idx.to_owned()).await?;
        }
        for table in ["flows", "tooltips"] {
            m.alter_table(
                Table::alter()
                    .table(table)
                    .add_column(string_null("auto_start"))
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for table in ["tooltips", "flows"] {
            m.alter_table(
                Table::alter()
                    .table(table)
                    .drop_column("auto_start")
                    .to_owned(),
            )
            .await?;
        }
        m.drop_table(Table::drop().table("tour_runs").to_owned())
            .await?;
        Ok(())
    }
}
