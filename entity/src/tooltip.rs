//! A tooltip pinned to one element of one page.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "tooltips")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub org_id: Uuid,
    pub site_id: Option<Uuid>,
    pub name: String,
    pub page_url: String,
    pub target_selector: String,
    #[sea_orm(column_type = "Text")]
    pub body: String,
    pub status: String,
    pub source: String,
    pub audience: String,
    pub audience_rules: Json,
    /// Drift check findings: `{"brokenSteps": [0], "mapVersion": n}`; null when never checked.
    pub health: Option<Json>,
    /// Page URL pattern on which the published content starts by itself (once per visitor); `None`: never.
    pub auto_start: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

/// Foreign keys live in the migration; queries join by column, so no relations are declared here.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
