//! One step of a chat turn: the user message, a status, the reply or an error.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "chat_messages")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub org_id: Uuid,
    pub session_id: Uuid,
    pub turn_id: Uuid,
    /// Increasing within a turn, starting at 1 for the user message.
    pub seq: i32,
    /// `user`, `bot` or `status`.
    pub role: String,
    /// A `TurnStatus` name.
    pub status: String,
    #[sea_orm(column_type = "Text")]
    pub text: String,
    /// Citations, content, navigation target: whatever the status carries.
    pub payload: Json,
    pub model: Option<String>,
    pub tokens_used: i32,
    pub created_at: DateTimeUtc,
}

/// Foreign keys live in the migration; queries join by column, so no relations are declared here.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
