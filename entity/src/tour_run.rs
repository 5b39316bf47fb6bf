//! One run of a flow or tooltip in one visitor's browser, as the walkthrough runtime reported it.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "tour_runs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub org_id: Uuid,
    pub chat_widget_id: Option<Uuid>,
    pub session_id: Uuid,
    pub end_user_id: Option<Uuid>,
    /// The flow's or tooltip's id (no foreign key: runs outlive deleted content in the figures).
    pub content_id: Uuid,
    /// `FLOW` or `TOOLTIP`.
    pub content_kind: String,
    /// The runtime's own id of the run, unique per session.
    pub run_key: String,
    /// `AUTO` (the server started it on a page) or `MANUAL` (the chat, the SDK, the visitor).
    pub trigger: String,
    /// `STARTED`, `COMPLETED` or `DISMISSED`.
    pub status: String,
    pub steps_total: i32,
    /// One past the highest step index seen (0: none seen yet).
    pub furthest_step: i32,
    /// Bit `i` set: step `i` was shown.
    pub seen_mask: i64,
    /// Bit `i` set: step `i`'s element could not be found.
    pub missing_mask: i64,
    /// How many target-missing reports the run made.
    pub target_missing: i32,
    pub dismissed_at_step: Option<i32>,
    /// The last missing target: `{"step": n, "locators": ["…"]}`.
    pub last_missing: Option<Json>,
    pub page_url: Option<String>,
    /// `end user id:content id` on server-started runs (unique: once per visitor).
    pub auto_key: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub ended_at: Option<DateTimeUtc>,
}

/// Foreign keys live in the migration; queries join by column, so no relations are declared here.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
