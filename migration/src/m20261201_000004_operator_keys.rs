//! Operator keys: what a billing system or an operator's script presents to
//! the operator-only GraphQL operations (orgs, plans, credits).
//!
//! The only table not owned by an org: an operator key acts across orgs, so it
//! has no `org_id` and no foreign key. Like API keys, only a SHA-256 hash of
//! the key is stored, next to a short prefix humans can tell keys apart by.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("operator_keys")
                .col(pk_uuid("id"))
                .col(string("name"))
                .col(string("prefix"))
                .col(string_uniq("key_hash"))
                .col(timestamp_with_time_zone_null("revoked_at"))
                .col(timestamp_with_time_zone_null("last_used_at"))
                .col(timestamp_with_time_zone("created_at"))
                .take(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table("operator_keys").to_owned())
            .await
    }
}
