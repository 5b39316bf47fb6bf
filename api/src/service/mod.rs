//! Domain operations on the database, one module per concept.
//!
//! Every org-scoped function takes an [`OrgScope`] and filters by it through
//! [`scoped`]; nothing outside this module builds an unscoped query on an
//! org-owned table. Multi-row writes run in one transaction, together with the
//! outbox event that announces them.

pub mod api_key;
pub mod bot;
pub mod chat;
pub mod chat_widget;
pub mod contact;
pub mod content;
pub mod credits;
pub mod demo;
pub mod end_user;
pub mod event;
pub mod feedback;
pub mod handoff;
pub mod identity;
pub mod kb;
pub mod kb_import;
pub mod mapping;
pub mod notify;
pub mod operator;
pub mod operator_key;
pub mod org;
pub mod recording;
pub mod retention;
pub mod server_setting;
pub mod session;
pub mod site;
pub mod ticket;
pub mod tour;
pub mod unanswered;
pub mod webhook;

use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Select,
};
use uuid::Uuid;

use crate::{auth::OrgScope, domain, error::AppError};

/// An entity whose rows each belong to one org.
pub trait OrgOwned: EntityTrait {
    /// What clients call one row, for `NOT_FOUND` messages.
    const NOUN: &'static str;
    /// The `org_id` column.
    fn org_col() -> Self::Column;
    /// The `id` column (a UUIDv7, so ordering by it is ordering by creation).
    fn id_col() -> Self::Column;
}

macro_rules! org_owned {
    ($($module:ident => $noun:literal),+ $(,)?) => {
        $(impl OrgOwned for entity::$module::Entity {
            const NOUN: &'static str = $noun;
            fn org_col() -> Self::Column { entity::$module::Column::OrgId }
            fn id_col() -> Self::Column { entity::$module::Column::Id }
        })+
    };
}

org_owned!(
    api_key => "API key",
    bot => "bot",
    knowledge_base => "knowledge base",
    kb_article => "KB article",
    site => "site",
    flow => "flow",
    tooltip => "tooltip",
    tour_run => "tour run",
    chat_widget => "chat widget",
    end_user => "end user",
    chat_session => "chat session",
    chat_message => "chat message",
    chat_feedback => "feedback",
    support_ticket => "support ticket",
    credit_ledger => "ledger entry",
    event => "event",
    notification => "notification",
    webhook => "webhook",
    webhook_delivery => "webhook delivery",
);

/// Every row of `E` in the caller's org, and nothing else.
pub fn scoped<E: OrgOwned>(scope: &OrgScope) -> Select<E> {
    E::find().filter(E::org_col().eq(scope.org_id()))
}

/// The row `id` of the caller's org; another org's id is `NOT_FOUND`, exactly like a missing one.
pub async fn get<E: OrgOwned>(
    db: &impl ConnectionTrait,
    scope: &OrgScope,
    id: Uuid,
) -> Result<E::Model, AppError> {
    scoped::<E>(scope)
        .filter(E::id_col().eq(id))
        .one(db)
        .await?
        .ok_or_else(|| AppError::not_found(E::NOUN))
}

/// Like [`get`], but a miss names the input `field` that referred to it.
pub async fn get_ref<E: OrgOwned>(
    db: &impl ConnectionTrait,
    scope: &OrgScope,
    id: Uuid,
    field: &'static str,
) -> Result<E::Model, AppError> {
    get::<E>(db, scope, id)
        .await
        .map_err(|_| AppError::not_found_in(E::NOUN, field))
}

/// Deletes row `id` of the caller's org; `NOT_FOUND` when there is none.
pub async fn delete<E: OrgOwned>(
    db: &impl ConnectionTrait,
    scope: &OrgScope,
    id: Uuid,
) -> Result<(), AppError> {
    let res = E::delete_many()
        .filter(E::org_col().eq(scope.org_id()))
        .filter(E::id_col().eq(id))
        .exec(db)
        .await?;
    if res.rows_affected == 0 {
        return Err(AppError::not_found(E::NOUN));
    }
    Ok(())
}

/// Forward cursor pagination: `first` rows after the row whose id is `after`.
#[derive(Clone, Debug, Default)]
pub struct PageArgs {
    pub first: Option<i32>,
    pub after: Option<String>,
}

/// One page of rows, oldest first.
pub struct Page<M> {
    pub items: Vec<M>,
    pub has_previous: bool,
    pub has_next: bool,
}

/// Pages through `select` by id. Cursors are row ids; a malformed one is `BAD_USER_INPUT` on `after`.
pub async fn paginate<E: OrgOwned>(
    db: &impl ConnectionTrait,
    select: Select<E>,
    args: &PageArgs,
) -> Result<Page<E::Model>, AppError> {
    let limit = domain::page_size(args.first)?;
    let mut select = select.order_by_asc(E::id_col());
    let has_previous = args.after.is_some();
    if let Some(after) = &args.after {
        let after = Uuid::parse_str(after)
            .map_err(|_| AppError::bad_input("after", "not a cursor from this list"))?;
        select = select.filter(E::id_col().gt(after));
    }
    let mut items = select.limit(limit + 1).all(db).await?;
    let has_next = items.len() as u64 > limit;
    items.truncate(limit as usize);
    Ok(Page {
        items,
        has_previous,
        has_next,
    })
}

/// Starts a write transaction. On SQLite it is `BEGIN IMMEDIATE`: it takes
/// the write lock up front (waiting up to the busy timeout), so a transaction
/// that reads before it writes can't fail with "database is locked" when
/// another writer commits in between. PostgreSQL ignores the option.
pub async fn begin_write(
    db: &sea_orm::DatabaseConnection,
) -> Result<sea_orm::DatabaseTransaction, sea_orm::DbErr> {
    use sea_orm::{SqliteTransactionMode, TransactionOptions, TransactionTrait};
    db.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..Default::default()
    })
    .await
}

/// A new time-ordered id.
pub fn new_id() -> Uuid {
    Uuid::now_v7()
}
