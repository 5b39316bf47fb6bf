//! A visitor of one widget, anonymous or identified.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "end_users")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub org_id: Uuid,
    pub chat_widget_id: Option<Uuid>,
    /// The host app's user id, set only from a verified identity (`userId`).
    pub external_id: Option<String>,
    pub anonymous: bool,
    /// Every trait: the host app's (which win) over the ones extracted from chat.
    pub traits: Json,
    /// The traits the host app passed with a signed identity, kept apart so chat extraction never overwrites them.
    pub host_traits: Option<Json>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

/// Foreign keys live in the migration; queries join by column, so no relations are declared here.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
