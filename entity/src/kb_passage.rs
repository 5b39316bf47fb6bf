//! One passage of an article, with its embedding vector.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "kb_passages")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub org_id: Uuid,
    pub article_id: Uuid,
    /// 0-based position in the article.
    pub position: i32,
    #[sea_orm(column_type = "Text")]
    pub text: String,
    /// The embedding model that made `vector`.
    pub model: String,
    /// Number of `f32`s in `vector`.
    pub dimension: i32,
    /// Little-endian `f32`s, unit length.
    #[sea_orm(column_type = "Blob")]
    pub vector: Vec<u8>,
    pub created_at: DateTimeUtc,
}

/// Foreign keys live in the migration; queries join by column, so no relations are declared here.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
