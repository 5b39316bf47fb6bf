//! Every change to an org credit balance, signed.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "credit_ledger")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub org_id: Uuid,
    pub amount: i64,
    /// `GRANT`, `REVOKE`, `RESERVATION`, `SETTLEMENT` or `REFUND`.
    pub kind: String,
    pub turn_id: Option<Uuid>,
    pub message_id: Option<Uuid>,
    pub model: Option<String>,
    pub note: Option<String>,
    pub created_at: DateTimeUtc,
}

/// Foreign keys live in the migration; queries join by column, so no relations are declared here.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
