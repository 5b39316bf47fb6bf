//! A customer site the widget runs on, with its app map.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sites")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub base_url: String,
    /// `NOT_STARTED`, `IN_PROGRESS`, `COMPLETED` or `FAILED`.
    pub mapping_status: String,
    /// The current app map, compact JSON (see `wayfinder::appmap::AppMap`).
    pub app_map: Json,
    /// Completed mappings so far; the map above is version `map_version`.
    pub map_version: i32,
    /// Why the last mapping failed.
    pub mapping_error: Option<String>,
    /// Last sign of life of a running crawl.
    pub mapping_heartbeat_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

/// Foreign keys live in the migration; queries join by column, so no relations are declared here.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
