//! Who is calling: an org (by API key), the operator (by operator key), or the
//! public (a widget on a web page).
//!
//! An [`OrgScope`] can only be made here, from a valid, unrevoked API key, and
//! every org-scoped service function takes one. That is what makes tenancy a
//! property of the service layer rather than of each resolver. An
//! [`OperatorScope`] is the same kind of proof for the operator-only
//! operations (orgs, plans, credits): it holds no org, so an operator key can
//! never stand in for an org's key, and an org's key can never make one.
//!
//! [`resolve`] is the one place a presented key becomes a caller: the HTTP and
//! graphql-ws transports call it, and a key that matches nothing (or only a
//! revoked row) is `UNAUTHENTICATED`, never a silent public caller.
//!
//! An org's API key that checked out lately is remembered ([`KnownKeys`]), so
//! a dashboard's requests do not each read the key from the store (on
//! PostgreSQL that read is two round trips: the query, and the ping sqlx sends
//! as the connection goes back to its pool). A revocation reaches the replica
//! that made it at once and every other replica within the revocation watch's
//! poll, the same as for sockets; an entry is read again from the store after
//! [`KNOWN_FOR`] whatever happens.

use std::{
    collections::{HashMap, HashSet},
    sync::Mutex,
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use entity::{api_key, operator_key};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, sea_query::Expr};
use uuid::Uuid;

use crate::{
    error::AppError,
    secret::{OPERATOR_KEY_PREFIX, hash_api_key},
};

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

/// Proof that the caller holds a valid operator key. (At the shell, the admin
/// CLI calls the services directly: whoever reaches the database is the operator.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OperatorScope {
    operator_key_id: Option<Uuid>,
}

impl OperatorScope {
    /// The operator key the caller used.
    pub fn operator_key_id(&self) -> Option<Uuid> {
        self.operator_key_id
    }
}

/// The caller of one GraphQL request or graphql-ws connection.
#[derive(Clone, Debug)]
pub enum Caller {
    /// A dashboard or integrator with an org API key.
    Org(OrgScope),
    /// The operator (a billing system, an operator's script) with an operator
    /// key: only the operator operations, and the public ones.
    Operator(OperatorScope),
    /// A visitor's browser: only public operations; a session token, when
    /// given in `connection_init`, is kept for the operations that take one.
    Public { session_token: Option<String> },
}

impl Caller {
    /// The session token the caller brings: `given` (an operation's
    /// argument), else the one a public socket sent in `connection_init`.
    pub fn session_token_or(&self, given: Option<String>) -> Option<String> {
        match self {
            Caller::Public { session_token } => given.or_else(|| session_token.clone()),
            Caller::Org(_) | Caller::Operator(_) => given,
        }
    }

    /// The id of the key (org API key or operator key) the caller presented;
    /// `None` for public callers and the operator's shell.
    pub fn key_id(&self) -> Option<Uuid> {
        match self {
            Caller::Org(scope) => scope.api_key_id(),
            Caller::Operator(scope) => scope.operator_key_id(),
            Caller::Public { .. } => None,
        }
    }

    /// The org scope; `UNAUTHENTICATED` for public callers, `FORBIDDEN` for the
    /// operator (an operator key holds no org).
    pub fn scope(&self) -> Result<&OrgScope, AppError> {
        match self {
            Caller::Org(scope) => Ok(scope),
            Caller::Operator(_) => Err(AppError::Forbidden(
                "an operator key holds no org: use one of the org's API keys for this operation"
                    .into(),
            )),
            Caller::Public { .. } => Err(AppError::Unauthenticated(
                "this operation needs an API key (x-api-key header, Authorization: Bearer, or connection_init apiKey)",
            )),
        }
    }

    /// The operator scope; `FORBIDDEN` for an org's key, `UNAUTHENTICATED` for public callers.
    pub fn operator(&self) -> Result<&OperatorScope, AppError> {
        match self {
            Caller::Operator(scope) => Ok(scope),
            Caller::Org(_) => Err(AppError::Forbidden(
                "this operation needs an operator key (wf_op_…, minted by `wayfinder operator-key create`); an org's API key may not use it"
                    .into(),
            )),
            Caller::Public { .. } => Err(AppError::Unauthenticated(
                "this operation needs an operator key (x-api-key header or Authorization: Bearer)",
            )),
        }
    }
}

/// Longest string accepted as a key before hashing.
const MAX_KEY_LEN: usize = 200;

const WRONG: AppError = AppError::Unauthenticated("invalid or revoked API key");

/// Resolves any presented key: an org's API key is [`Caller::Org`], an
/// operator key [`Caller::Operator`]; a wrong or revoked one `UNAUTHENTICATED`.
/// `known` lets an org's key that checked out lately skip the store (HTTP
/// requests); without it the key is always read (a socket's
/// `connection_init`: a socket lives on, so it never starts on a remembered key).
#[tracing::instrument(skip_all, fields(org_id, operator_key_id))]
pub async fn resolve(
    db: &DatabaseConnection,
    known: Option<&KnownKeys>,
    key: &str,
) -> Result<Caller, AppError> {
    let key = key.trim();
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(WRONG);
    }
    if key.starts_with(OPERATOR_KEY_PREFIX) {
        return Ok(Caller::Operator(operator(db, key).await?));
    }
    Ok(Caller::Org(org(db, known, key).await?))
}

/// Resolves a key that must be an org's API key: an operator key is
/// `FORBIDDEN` (it holds no org), a wrong or revoked key `UNAUTHENTICATED`.
pub async fn authenticate(
    db: &DatabaseConnection,
    known: Option<&KnownKeys>,
    key: &str,
) -> Result<OrgScope, AppError> {
    resolve(db, known, key).await?.scope().copied()
}

/// How long an org's key that checked out is taken on trust before the store
/// is read again (a bound for when the revocation watch cannot run).
pub const KNOWN_FOR: Duration = Duration::from_secs(10);

/// Most keys remembered; past it a key is checked in the store every time
/// until entries age out.
const KNOWN_MAX: usize = 10_000;

/// Org API keys (by hash) that checked out within [`KNOWN_FOR`]: their scope,
/// when they were checked, and their `last_used_at` as written.
#[derive(Debug, Default)]
pub struct KnownKeys(Mutex<Remembered>);

#[derive(Debug, Default)]
struct Remembered {
    keys: HashMap<String, Known>,
    /// When a full map was last cleared of aged entries: at most once a
    /// second, so a full map does not cost a sweep per request.
    swept: Option<Instant>,
}

/// How often a full map is swept, at most.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug)]
struct Known {
    scope: OrgScope,
    checked: Instant,
    used: Option<DateTime<Utc>>,
}

impl KnownKeys {
    /// The remembered key with hash `hash`, if it checked out within [`KNOWN_FOR`].
    fn get(&self, hash: &str) -> Option<Known> {
        let map = self.0.lock().ok()?;
        map.keys
            .get(hash)
            .filter(|k| k.checked.elapsed() < KNOWN_FOR)
            .copied()
    }

    fn put(&self, hash: String, known: Known) {
        let Ok(mut map) = self.0.lock() else { return };
        if map.keys.len() >= KNOWN_MAX && !map.keys.contains_key(&hash) {
            if map.swept.is_some_and(|t| t.elapsed() < SWEEP_EVERY) {
                return;
            }
            map.keys.retain(|_, k| k.checked.elapsed() < KNOWN_FOR);
            map.swept = Some(Instant::now());
            if map.keys.len() >= KNOWN_MAX {
                return;
            }
        }
        map.keys.insert(hash, known);
    }

    /// Forgets the keys whose ids are in `revoked`: their next use reads the store.
    pub fn forget(&self, revoked: &HashSet<Uuid>) {
        if revoked.is_empty() {
            return;
        }
        if let Ok(mut map) = self.0.lock() {
            map.keys
                .retain(|_, k| k.scope.api_key_id.is_none_or(|id| !revoked.contains(&id)));
        }
    }

    /// How many keys are remembered.
    pub fn len(&self) -> usize {
        self.0.lock().map_or(0, |m| m.keys.len())
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Whether a key's `last_used_at` is old enough to be written again: at most
/// once a minute per key, so reads don't each cost a write.
fn stale(last_used_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    last_used_at.is_none_or(|t| now.signed_duration_since(t).num_seconds() >= 60)
}

async fn org(
    db: &DatabaseConnection,
    known: Option<&KnownKeys>,
    key: &str,
) -> Result<OrgScope, AppError> {
    let hash = hash_api_key(key);
    let now = Utc::now();
    if let Some(k) = known.and_then(|known| known.get(&hash))
        && !stale(k.used, now)
    {
        tracing::Span::current().record("org_id", tracing::field::display(k.scope.org_id));
        return Ok(k.scope);
    }
    let found = api_key::Entity::find()
        .filter(api_key::Column::KeyHash.eq(&hash))
        .filter(api_key::Column::RevokedAt.is_null())
        .one(db)
        .await?
        .ok_or(WRONG)?;
    tracing::Span::current().record("org_id", tracing::field::display(found.org_id));
    let mut used = found.last_used_at;
    if stale(used, now) {
        api_key::Entity::update_many()
            .col_expr(api_key::Column::LastUsedAt, Expr::value(now))
            .filter(api_key::Column::Id.eq(found.id))
            .exec(db)
            .await?;
        used = Some(now);
    }
    let scope = OrgScope {
        org_id: found.org_id,
        api_key_id: Some(found.id),
    };
    if let Some(known) = known {
        let checked = Instant::now();
        known.put(
            hash,
            Known {
                scope,
                checked,
                used,
            },
        );
    }
    Ok(scope)
}

/// Whether key `id` (an org API key or an operator key) is revoked or gone.
/// A database failure answers `false`: the next check decides.
pub async fn is_revoked(db: &DatabaseConnection, id: Uuid) -> bool {
    let found = async {
        if let Some(k) = api_key::Entity::find_by_id(id).one(db).await? {
            return Ok::<_, sea_orm::DbErr>(k.revoked_at.is_some());
        }
        Ok(operator_key::Entity::find_by_id(id)
            .one(db)
            .await?
            .is_none_or(|k| k.revoked_at.is_some()))
    };
    match found.await {
        Ok(revoked) => revoked,
        Err(err) => {
            tracing::warn!(%err, "could not check whether a key is revoked");
            false
        }
    }
}

/// Keys (org API keys and operator keys) revoked at or after `since`: the
/// revocation watch tells every socket of this replica that used one of them
/// to close.
pub async fn revoked_since(
    db: &DatabaseConnection,
    since: chrono::DateTime<Utc>,
) -> Result<Vec<Uuid>, sea_orm::DbErr> {
    use sea_orm::QuerySelect;
    let mut ids: Vec<Uuid> = api_key::Entity::find()
        .select_only()
        .column(api_key::Column::Id)
        .filter(api_key::Column::RevokedAt.gte(since))
        .limit(10_000)
        .into_tuple()
        .all(db)
        .await?;
    let operators: Vec<Uuid> = operator_key::Entity::find()
        .select_only()
        .column(operator_key::Column::Id)
        .filter(operator_key::Column::RevokedAt.gte(since))
        .limit(1_000)
        .into_tuple()
        .all(db)
        .await?;
    ids.extend(operators);
    Ok(ids)
}

async fn operator(db: &DatabaseConnection, key: &str) -> Result<OperatorScope, AppError> {
    let found = operator_key::Entity::find()
        .filter(operator_key::Column::KeyHash.eq(hash_api_key(key)))
        .filter(operator_key::Column::RevokedAt.is_null())
        .one(db)
        .await?
        .ok_or(WRONG)?;
    tracing::Span::current().record("operator_key_id", tracing::field::display(found.id));
    let now = Utc::now();
    if stale(found.last_used_at, now) {
        operator_key::Entity::update_many()
            .col_expr(operator_key::Column::LastUsedAt, Expr::value(now))
            .filter(operator_key::Column::Id.eq(found.id))
            .exec(db)
            .await?;
    }
    Ok(OperatorScope {
        operator_key_id: Some(found.id),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(key_id: Uuid, checked: Instant) -> Known {
        Known {
            scope: OrgScope {
                org_id: Uuid::new_v4(),
                api_key_id: Some(key_id),
            },
            checked,
            used: Some(Utc::now()),
        }
    }

    #[test]
    fn a_key_is_remembered_until_it_ages_out_or_is_revoked() {
        let keys = KnownKeys::default();
        let (kept, revoked, old) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let now = Instant::now();
        keys.put("kept".into(), known(kept, now));
        keys.put("revoked".into(), known(revoked, now));
        let aged = now.checked_sub(KNOWN_FOR).expect("an instant in the past");
        keys.put("old".into(), known(old, aged));
        assert_eq!(
            keys.get("kept").and_then(|k| k.scope.api_key_id),
            Some(kept)
        );
        assert!(
            keys.get("old").is_none(),
            "past KNOWN_FOR the store decides"
        );
        assert!(keys.get("unknown").is_none());

        keys.forget(&HashSet::from([revoked, Uuid::new_v4()]));
        assert!(keys.get("revoked").is_none());
        assert!(
            keys.get("kept").is_some(),
            "only the revoked key is forgotten"
        );
    }

    #[test]
    fn remembered_keys_are_bounded() {
        let keys = KnownKeys::default();
        let now = Instant::now();
        let aged = now.checked_sub(KNOWN_FOR).expect("an instant in the past");
        for i in 0..KNOWN_MAX {
            keys.put(format!("old{i}"), known(Uuid::new_v4(), aged));
        }
        // Full of aged entries: they make way.
        keys.put("fresh".into(), known(Uuid::new_v4(), now));
        assert_eq!(keys.len(), 1);
        for i in 1..KNOWN_MAX {
            keys.put(format!("new{i}"), known(Uuid::new_v4(), now));
        }
        assert_eq!(keys.len(), KNOWN_MAX);
        // Full of live entries: a new key is not remembered, the others stay.
        keys.put("one more".into(), known(Uuid::new_v4(), now));
        assert_eq!(keys.len(), KNOWN_MAX);
        assert!(keys.get("one more").is_none());
        assert!(keys.get("fresh").is_some());
        // Swept a moment ago: the next sweep waits its turn.
        keys.0.lock().expect("lock").keys.clear();
        for i in 0..KNOWN_MAX {
            keys.put(format!("aged{i}"), known(Uuid::new_v4(), aged));
        }
        keys.put("too soon".into(), known(Uuid::new_v4(), now));
        assert!(keys.get("too soon").is_none(), "at most one sweep a second");
        let earlier = now
            .checked_sub(SWEEP_EVERY)
            .expect("an instant in the past");
        keys.0.lock().expect("lock").swept = Some(earlier);
        keys.put("in time".into(), known(Uuid::new_v4(), now));
        assert!(keys.get("in time").is_some());
        assert_eq!(keys.len(), 1);
    }
}
