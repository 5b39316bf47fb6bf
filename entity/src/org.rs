//! An organisation: the tenant every other row belongs to.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "orgs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub name: String,
    /// `FREE`, `GROWTH`, `PRO` or `ENTERPRISE`.
    pub plan: String,
    pub ai_chatbot_enabled: bool,
    pub ai_auto_traits_enabled: bool,
    /// `ollama`, `openai` or `anthropic`; `None` uses the server default.
    pub llm_provider: Option<String>,
    pub llm_model: Option<String>,
    pub llm_base_url: Option<String>,
    /// Bring-your-own provider key, sealed with the server secret; never plain text.
    pub llm_api_key_sealed: Option<String>,
    pub owner_email: String,
    /// Credits left; only ever changed together with a `credit_ledger` row.
    pub credit_balance: i64,
    /// Days conversations, tickets and events are kept; `None`: forever.
    pub retention_days: Option<i32>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

/// Foreign keys live in the migration; queries join by column, so no relations are declared here.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
