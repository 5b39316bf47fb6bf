//! A support ticket from the contact form, a hand-off or a downvote.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "support_tickets")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub org_id: Uuid,
    /// `CONTACT_FORM`, `HANDOFF` or `FEEDBACK`.
    pub source: String,
    /// `OPEN`, `PENDING` or `CLOSED`.
    pub status: String,
    pub name: Option<String>,
    pub email: Option<String>,
    #[sea_orm(column_type = "Text")]
    pub message: String,
    pub session_id: Option<Uuid>,
    /// The end user who opened it (hand-off, downvote); cleared when they are deleted.
    pub end_user_id: Option<Uuid>,
    /// The host app's user id of an identified visitor.
    pub user_id: Option<String>,
    pub assignee_note: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

/// Foreign keys live in the migration; queries join by column, so no relations are declared here.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
