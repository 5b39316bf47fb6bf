//! One article of a knowledge base.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "kb_articles")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub org_id: Uuid,
    pub knowledge_base_id: Uuid,
    pub title: String,
    #[sea_orm(column_type = "Text")]
    pub body: String,
    pub published: bool,
    /// Its knowledge base's revision when it last changed.
    pub revision: i64,
    /// The embedding model its passages were made with; `None` until embedded.
    pub embedding_model: Option<String>,
    /// The file it was imported from (`wayfinder kb import`), relative to the imported folder.
    pub source_path: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

/// Foreign keys live in the migration; queries join by column, so no relations are declared here.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
