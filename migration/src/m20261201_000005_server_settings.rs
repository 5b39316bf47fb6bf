//! Server settings: a few facts about this installation that belong to no
//! org, such as which org is the demo (`demo_org_id`).
//!
//! The `/demo` page used to find the demo org by its name, which any org can
//! take by renaming itself; the id stored here cannot be taken. An existing
//! installation keeps its demo: the demo is only ever seeded into an empty
//! database, so it is the oldest org, and it is recorded when that org still
//! has the demo's name.

use sea_orm_migration::{
    prelude::*,
    schema::*,
    sea_orm::{
        ConnectionTrait,
        prelude::{ChronoUtc, Uuid},
    },
};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The name the demo seed gives its org (`wayfinder::service::demo`).
const DEMO_ORG_NAME: &str = "Wayfinder Demo";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("server_settings")
                .col(string("key").primary_key())
                .col(text("value"))
                .col(timestamp_with_time_zone("updated_at"))
                .take(),
        )
        .await?;

        let db = m.get_connection();
        let oldest = Query::select()
            .columns(["id", "name"])
            .from("orgs")
            .order_by("id", Order::Asc)
            .limit(1)
            .to_owned();
        let Some(row) = db.query_one(&oldest).await? else {
            return Ok(());
        };
        let (id, name): (Uuid, String) = (row.try_get("", "id")?, row.try_get("", "name")?);
        if name != DEMO_ORG_NAME {
            return Ok(());
        }
        let insert = Query::insert()
            .into_table("server_settings")
            .columns(["key", "value", "updated_at"])
            .values([
                "demo_org_id".into(),
                id.to_string().into(),
                ChronoUtc::now().into(),
            ])
            .map_err(|e| DbErr::Custom(e.to_string()))?
            .to_owned();
        db.execute(&insert).await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table("server_settings").to_owned())
            .await
    }
}
