//! Who is calling: an org (by API key) or the public (a widget on a web page).
//!
//! An [`OrgScope`] can only be made here, from a valid, unrevoked key, and
//! every org-scoped service function takes one. That is what makes tenancy a
//! property of the service layer rather than of each resolver.

use chrono::Utc;
use entity::api_key;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, sea_query::Expr};
use uuid::Uuid;

use crate::{error::AppError, secret::hash_api_key};

/// Proof that the caller holds a valid API key of `org_id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrgScope {
    org_id: Uuid,
    api_key_id: Option<Uuid>,
}

impl OrgScope {
    /// The caller's org.
    pub fn org_id(&self) -> Uuid {
        self.org_id
    }

    /// The key the caller used (`None` for the operator's CLI).
    pub fn api_key_id(&self) -> Option<Uuid> {
        self.api_key_id
    }

    /// The operator acting on an org from the shell (admin CLI, demo seed).
    pub(crate) fn operator(org_id: Uuid) -> Self {
        Self {
            org_id,
            api_key_id: None,
        }
    }
}

/// The caller of one GraphQL request or graphql-ws connection.
#[derive(Clone, Debug)]
pub enum Caller {
    /// A dashboard or integrator with an org API key.
    Org(OrgScope),
    /// A visitor's browser: only public operations; a session token, when
    /// given in `connection_init`, is kept for the operations that take one.
    Public { session_token: Option<String> },
}

impl Caller {
    /// The org scope, or `UNAUTHENTICATED` for public callers.
    pub fn scope(&self) -> Result<&OrgScope, AppError> {
        match self {
            Caller::Org(scope) => Ok(scope),
            Caller::Public { .. } => Err(AppError::Unauthenticated(
                "this operation needs an API key (x-api-key header, Authorization: Bearer, or connection_init apiKey)",
            )),
        }
    }
}

/// Longest string accepted as an API key before hashing.
const MAX_KEY_LEN: usize = 200;

/// Resolves an API key to its org, or `UNAUTHENTICATED`.
#[tracing::instrument(skip_all, fields(org_id))]
pub async fn authenticate(db: &DatabaseConnection, key: &str) -> Result<OrgScope, AppError> {
    const WRONG: AppError = AppError::Unauthenticated("invalid or revoked API key");
    let key = key.trim();
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(WRONG);
    }
    let found = api_key::Entity::find()
        .filter(api_key::Column::KeyHash.eq(hash_api_key(key)))
        .filter(api_key::Column::RevokedAt.is_null())
        .one(db)
        .await?
        .ok_or(WRONG)?;
    tracing::Span::current().record("org_id", tracing::field::display(found.org_id));
    // Record use at most once a minute per key, so reads don't each cost a write.
    let now = Utc::now();
    if found
        .last_used_at
        .is_none_or(|t| now.signed_duration_since(t).num_seconds() >= 60)
    {
        api_key::Entity::update_many()
            .col_expr(api_key::Column::LastUsedAt, Expr::value(now))
            .filter(api_key::Column::Id.eq(found.id))
            .exec(db)
            .await?;
    }
    Ok(OrgScope {
        org_id: found.org_id,
        api_key_id: Some(found.id),
    })
}

/// Whether API key `id` is revoked (or gone). A database failure answers
/// `false`: the next check decides.
pub async fn is_revoked(db: &DatabaseConnection, id: Uuid) -> bool {
    match api_key::Entity::find_by_id(id).one(db).await {
        Ok(found) => found.is_none_or(|k| k.revoked_at.is_some()),
        Err(err) => {
            tracing::warn!(%err, "could not check whether an API key is revoked");
            false
        }
    }
}

/// Keys revoked at or after `since`: the revocation watch tells every socket
/// of this replica that used one of them to close.
pub async fn revoked_since(
    db: &DatabaseConnection,
    since: chrono::DateTime<Utc>,
) -> Result<Vec<Uuid>, sea_orm::DbErr> {
    use sea_orm::QuerySelect;
    api_key::Entity::find()
        .select_only()
        .column(api_key::Column::Id)
        .filter(api_key::Column::RevokedAt.gte(since))
        .limit(10_000)
        .into_tuple()
        .all(db)
        .await
}
