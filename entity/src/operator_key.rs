//! A key of the operator (who runs Wayfinder for many orgs): unlocks the
//! operator-only operations. The one table not owned by an org. Only a
//! SHA-256 hash of the secret is stored.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "operator_keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub name: String,
    /// The first characters of the key, shown to humans to tell keys apart.
    pub prefix: String,
    #[sea_orm(unique)]
    pub key_hash: String,
    pub revoked_at: Option<DateTimeUtc>,
    pub last_used_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
}

/// No relations: operator keys belong to no org.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
