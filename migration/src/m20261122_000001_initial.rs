//! The whole data model of SPEC §2: every table, its foreign keys and an index
//! for every org-scoped lookup.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// A foreign key from `table.column` to `target.id`.
fn fk(
    table: &'static str,
    column: &'static str,
    target: &'static str,
    on_delete: ForeignKeyAction,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(format!("fk_{table}_{column}"))
        .from(table, column)
        .to(target, "id")
        .on_delete(on_delete)
        .take()
}

/// A table with a UUID primary key and an `org_id` owned by `orgs`.
fn org_table(name: &'static str) -> TableCreateStatement {
    Table::create()
        .table(name)
        .col(pk_uuid("id"))
        .col(uuid("org_id"))
        .foreign_key(&mut fk(name, "org_id", "orgs", ForeignKeyAction::Cascade))
        .take()
}

fn created(t: &mut TableCreateStatement) -> &mut TableCreateStatement {
    t.col(timestamp_with_time_zone("created_at"))
}

fn created_updated(t: &mut TableCreateStatement) -> &mut TableCreateStatement {
    t.col(timestamp_with_time_zone("created_at"))
        .col(timestamp_with_time_zone("updated_at"))
}

fn index(table: &'static str, columns: &[&'static str]) -> IndexCreateStatement {
    let mut idx = Index::create();
    idx.name(format!("idx_{table}_{}", columns.join("_")))
        .table(table);
    for c in columns {
        idx.col(*c);
    }
    idx.take()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        use ForeignKeyAction::{Cascade, SetNull};

        let mut orgs = Table::create();
        orgs.table("orgs")
            .col(pk_uuid("id"))
            .col(string("name"))
            .col(string("plan"))
            .col(boolean("ai_chatbot_enabled"))
            .col(boolean("ai_auto_traits_enabled"))
            .col(string_null("llm_provider"))
            .col(string_null("llm_model"))
            .col(string_null("llm_base_url"))
            .col(text_null("llm_api_key_sealed"))
            .col(string("owner_email"))
            .col(big_integer("credit_balance"));
        created_updated(&mut orgs);
        m.create_table(orgs).await?;

        let mut t = org_table("api_keys");
        t.col(string("name"))
            .col(string("prefix"))
            .col(string_uniq("key_hash"))
            .col(timestamp_with_time_zone_null("revoked_at"))
            .col(timestamp_with_time_zone_null("last_used_at"));
        created(&mut t);
        m.create_table(t).await?;

        let mut t = org_table("knowledge_bases");
        t.col(string("name")).col(text("description"));
        created_updated(&mut t);
        m.create_table(t).await?;

        let mut t = org_table("kb_articles");
        t.col(uuid("knowledge_base_id"))
            .col(string("title"))
            .col(text("body"))
            .col(boolean("published"))
            .foreign_key(&mut fk(
                "kb_articles",
                "knowledge_base_id",
                "knowledge_bases",
                Cascade,
            ));
        created_updated(&mut t);
        m.create_table(t).await?;

        let mut t = org_table("sites");
        t.col(string("name"))
            .col(string("base_url"))
            .col(string("mapping_status"))
            .col(json("app_map"));
        created_updated(&mut t);
        m.create_table(t).await?;

        let mut t = org_table("bots");
        t.col(string("name"))
            .col(text("system_prompt"))
            .col(string("persona_name"))
            .col(string("primary_color"))
            .col(string("accent_color"))
            .col(json("labels"))
            .col(text("greeting"))
            .col(boolean("fallback_to_human"))
            .col(text("handoff_message"))
            .col(text("fallback_message"))
            .col(uuid_null("site_id"))
            .foreign_key(&mut fk("bots", "site_id", "sites", SetNull));
        created_updated(&mut t);
        m.create_table(t).await?;

        let mut t = Table::create();
        t.table("bot_knowledge_bases")
            .col(uuid("bot_id"))
            .col(uuid("knowledge_base_id"))
            .col(uuid("org_id"))
            .primary_key(Index::create().col("bot_id").col("knowledge_base_id"))
            .foreign_key(&mut fk("bot_knowledge_bases", "bot_id", "bots", Cascade))
            .foreign_key(&mut fk(
                "bot_knowledge_bases",
                "knowledge_base_id",
                "knowledge_bases",
                Cascade,
            ))
            .foreign_key(&mut fk("bot_knowledge_bases", "org_id", "orgs", Cascade));
        m.create_table(t).await?;

        for name in ["flows", "tooltips"] {
            let mut t = org_table(name);
            t.col(uuid_null("site_id")).col(string("name"));
            if name == "flows" {
                t.col(text("description")).col(json("steps"));
            } else {
                t.col(string("page_url"))
                    .col(string("target_selector"))
                    .col(text("body"));
            }
            t.col(string("status"))
                .col(string("source"))
                .col(string("audience"))
                .col(json("audience_rules"))
                .foreign_key(&mut fk(name, "site_id", "sites", SetNull));
            created_updated(&mut t);
            m.create_table(t).await?;
        }

        let mut t = org_table("chat_widgets");
        t.col(uuid("bot_id"))
            .col(uuid_null("site_id"))
            .col(string("name"))
            .col(json("allowed_origins"))
            .col(boolean("published"))
            .foreign_key(&mut fk("chat_widgets", "bot_id", "bots", Cascade))
            .foreign_key(&mut fk("chat_widgets", "site_id", "sites", SetNull));
        created_updated(&mut t);
        m.create_table(t).await?;

        let mut t = org_table("end_users");
        t.col(uuid_null("chat_widget_id"))
            .col(string_null("external_id"))
            .col(boolean("anonymous"))
            .col(json("traits"))
            .foreign_key(&mut fk(
                "end_users",
                "chat_widget_id",
                "chat_widgets",
                Cascade,
            ));
        created_updated(&mut t);
        m.create_table(t).await?;

        let mut t = org_table("chat_sessions");
        t.col(uuid("bot_id"))
            .col(uuid_null("chat_widget_id"))
            .col(uuid_null("end_user_id"))
            .foreign_key(&mut fk("chat_sessions", "bot_id", "bots", Cascade))
            .foreign_key(&mut fk(
                "chat_sessions",
                "chat_widget_id",
                "chat_widgets",
                Cascade,
            ))
            .foreign_key(&mut fk(
                "chat_sessions",
                "end_user_id",
                "end_users",
                Cascade,
            ));
        created_updated(&mut t);
        m.create_table(t).await?;

        let mut t = org_table("chat_messages");
        t.col(uuid("session_id"))
            .col(uuid("turn_id"))
            .col(integer("seq"))
            .col(string("role"))
            .col(string("status"))
            .col(text("text"))
            .col(json("payload"))
            .col(string_null("model"))
            .col(integer("tokens_used"))
            .foreign_key(&mut fk(
                "chat_messages",
                "session_id",
                "chat_sessions",
                Cascade,
            ));
        created(&mut t);
        m.create_table(t).await?;

        let mut t = org_table("chat_feedback");
        t.col(uuid_uniq("message_id"))
            .col(uuid("session_id"))
            .col(string("vote"))
            .col(text_null("comment"))
            .foreign_key(&mut fk(
                "chat_feedback",
                "message_id",
                "chat_messages",
                Cascade,
            ))
            .foreign_key(&mut fk(
                "chat_feedback",
                "session_id",
                "chat_sessions",
                Cascade,
            ));
        created_updated(&mut t);
        m.create_table(t).await?;

        let mut t = org_table("support_tickets");
        t.col(string("source"))
            .col(string("status"))
            .col(string_null("name"))
            .col(string_null("email"))
            .col(text("message"))
            .col(uuid_null("session_id"))
            .col(text_null("assignee_note"))
            .foreign_key(&mut fk(
                "support_tickets",
                "session_id",
                "chat_sessions",
                SetNull,
            ));
        created_updated(&mut t);
        m.create_table(t).await?;

        let mut t = org_table("credit_ledger");
        t.col(big_integer("amount"))
            .col(string("kind"))
            .col(uuid_null("turn_id"))
            .col(uuid_null("message_id"))
            .col(string_null("model"))
            .col(text_null("note"));
        created(&mut t);
        m.create_table(t).await?;

        let mut t = org_table("events");
        t.col(string("kind"))
            .col(json("payload"))
            .col(timestamp_with_time_zone_null("published_at"));
        created(&mut t);
        m.create_table(t).await?;

        let mut t = org_table("notifications");
        t.col(string("kind"))
            .col(string("recipient"))
            .col(string("subject"))
            .col(text("body"))
            .col(string("status"))
            .col(integer("attempts"))
            .col(text_null("last_error"))
            .col(string_null("debounce_key"))
            .col(timestamp_with_time_zone("next_attempt_at"))
            .col(timestamp_with_time_zone_null("sent_at"));
        created(&mut t);
        m.create_table(t).await?;

        let indexes: &[(&str, &[&str])] = &[
            ("api_keys", &["org_id"]),
            ("knowledge_bases", &["org_id", "id"]),
            ("kb_articles", &["org_id", "knowledge_base_id", "id"]),
            ("kb_articles", &["knowledge_base_id", "published"]),
            ("sites", &["org_id", "id"]),
            ("bots", &["org_id", "id"]),
            ("bots", &["site_id"]),
            ("bot_knowledge_bases", &["knowledge_base_id"]),
            ("bot_knowledge_bases", &["org_id"]),
            ("flows", &["org_id", "id"]),
            ("flows", &["site_id", "status"]),
            ("tooltips", &["org_id", "id"]),
            ("tooltips", &["site_id", "status"]),
            ("chat_widgets", &["org_id", "id"]),
            ("chat_widgets", &["bot_id"]),
            ("chat_widgets", &["site_id"]),
            ("end_users", &["org_id", "id"]),
            ("end_users", &["chat_widget_id", "external_id"]),
            ("chat_sessions", &["org_id", "id"]),
            ("chat_sessions", &["bot_id"]),
            ("chat_sessions", &["chat_widget_id"]),
            ("chat_sessions", &["end_user_id"]),
            ("chat_messages", &["org_id", "id"]),
            ("chat_messages", &["session_id", "id"]),
            ("chat_messages", &["turn_id", "seq"]),
            ("chat_feedback", &["org_id", "id"]),
            ("chat_feedback", &["session_id"]),
            ("support_tickets", &["org_id", "id"]),
            ("support_tickets", &["org_id", "status"]),
            ("support_tickets", &["session_id"]),
            ("credit_ledger", &["org_id", "id"]),
            ("credit_ledger", &["turn_id"]),
            ("events", &["org_id", "id"]),
            ("notifications", &["org_id", "id"]),
            ("notifications", &["status", "next_attempt_at"]),
            ("notifications", &["org_id", "debounce_key"]),
        ];
        for (table, columns) in indexes {
            let mut idx = index(table, columns);
            if *table == "chat_messages" && columns == &["turn_id", "seq"] {
                idx.unique();
            }
            m.create_index(idx).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            "notifications",
            "events",
            "credit_ledger",
            "support_tickets",
            "chat_feedback",
            "chat_messages",
            "chat_sessions",
            "end_users",
            "chat_widgets",
            "tooltips",
            "flows",
            "bot_knowledge_bases",
            "bots",
            "sites",
            "kb_articles",
            "knowledge_bases",
            "api_keys",
            "orgs",
        ] {
            m.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
