//! A bot: persona, prompts, fallbacks and the knowledge it answers from.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "bots")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    #[sea_orm(column_type = "Text")]
    pub system_prompt: String,
    pub persona_name: String,
    pub primary_color: String,
    pub accent_color: String,
    /// UI labels (`{"title": …, "placeholder": …}`), a flat string map.
    pub labels: Json,
    pub greeting: String,
    pub fallback_to_human: bool,
    pub handoff_message: String,
    pub fallback_message: String,
    pub site_id: Option<Uuid>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

/// Foreign keys live in the migration; queries join by column, so no relations are declared here.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
