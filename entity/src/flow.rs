//! A product tour: ordered steps stored as one JSON array (always read and written whole).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "flows")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub org_id: Uuid,
    pub site_id: Option<Uuid>,
    pub name: String,
    pub description: String,
    /// `DRAFT` or `PUBLISHED`.
    pub status: String,
    /// `MANUAL` or `AI`.
    pub source: String,
    /// `ALL`, `NO_USERS` or `RULES`.
    pub audience: String,
    pub audience_rules: Json,
    /// `[{"pageUrl", "targetSelector", "title", "body", "placement"}]`.
    pub steps: Json,
    /// Drift check findings: `{"brokenSteps": [..], "mapVersion": n}`; null when never checked.
    pub health: Option<Json>,
    /// The chat session a generated flow was made for.
    pub generated_session_id: Option<Uuid>,
    /// Page URL pattern on which the published content starts by itself (once per visitor); `None`: never.
    pub auto_start: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

/// Foreign keys live in the migration; queries join by column, so no relations are declared here.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
