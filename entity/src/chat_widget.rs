//! A chat widget: the public UUID a script tag carries.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "chat_widgets")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub org_id: Uuid,
    pub bot_id: Uuid,
    pub site_id: Option<Uuid>,
    pub name: String,
    /// Origins allowed to use the widget (`https://example.com`), a JSON array of strings.
    pub allowed_origins: Json,
    pub published: bool,
    /// The identity secret host apps sign user ids with, sealed with the server secret; never plain text.
    pub identity_secret_sealed: Option<String>,
    /// Whether every visitor must come with a valid signed identity.
    pub identity_required: bool,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

/// Foreign keys live in the migration; queries join by column, so no relations are declared here.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
